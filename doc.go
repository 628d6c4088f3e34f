// Package httpbreaker gives every route group of a net/http service its own
// circuit breaker, so that one failing part (a plugin, an upstream provider,
// an API version) is cut off quickly and comes back carefully, while the rest
// of the server keeps serving, without touching that part's code.
//
// Most users create one Breakers with New and wrap each route group with
// Middleware, keyed by the group's name:
//
//	breakers, err := httpbreaker.New(
//		httpbreaker.WithConfig(cfg), // from LoadConfig
//		httpbreaker.WithRegisterer(prometheus.DefaultRegisterer),
//	)
//	if err != nil {
//		return err // an invalid option or policy, named
//	}
//	defer breakers.Close() // stops its background work
//	mux.Handle("/api/catalog/", breakers.Middleware("catalog")(catalogHandler))
//
// KeyedMiddleware picks the key per request instead, for example by the
// matched route pattern with RoutePattern. The same breakers guard outgoing
// calls: Transport and KeyedTransport are http.RoundTrippers whose rejected
// calls touch no network and return a *RejectedError (errors.Is(err,
// ErrOpen)), and Do runs any other call, a database query or a gRPC call,
// behind a key's breaker.
//
// A route group that fails because its upstream does is not tripped for
// it: when a handler's call through a client-side breaker of the same set,
// made with the request's context, fails or is rejected, and the handler
// passes the failure on as a gateway answer (502, 503, 504, or a 429), the
// failure is blamed on the upstream (an UpstreamFailure, counted apart, in
// no window), so that the route group trips only on failures of its own and
// serves its fallback as soon as the upstream's breaker opens. A 500, a
// panic, or a failure after a retry of the upstream succeeded is the route
// group's own (DefaultClassifier).
//
// # One request
//
// The middleware looks the key's breaker up (created on first use; no lock
// shared by all keys) and asks it to admit the request. A state forced with
// ForceOpen or ForceClose decides first; in disabled mode the request goes
// straight to the handler. Closed, the breaker admits it and counts its
// outcome in a rolling window, which decides when to trip. Tripped, it is
// open for its cooldown, then half-open: it admits HalfOpenRequests probes
// and closes when they succeed. A rejected request gets the reject response
// (503, Retry-After, an RFC 9457 problem document, or WithRejectHandler's
// answer) and the handler never runs; in observe mode it runs anyway and is
// counted as a would-be rejection. An admitted request runs with a wrapped
// ResponseWriter that records its final status; the Classifier turns what
// happened into Success, Failure, Excluded or UpstreamFailure, which goes to the breaker, to
// the metrics, and, when the state changes, to the log and the hooks.
//
// By default (DefaultClassifier) a failure is a final status of 500 or
// more, or 429, a panic, a transport error on the client side, or a call
// slower than the policy's SlowCall. A client that went away is nobody's
// failure, and a breaker's own rejections never are.
//
// # Policies, observing, operating
//
// A Policy says when a breaker trips, how long it stays open and how it
// comes back; a Config holds defaults and per-key overrides, and LoadConfig
// reads one from YAML or JSON. With WithRegisterer each Breakers exports
// Prometheus metrics read at scrape time; every state change is one
// log/slog record, and WithStateChangeHook calls a function of yours with
// the same facts. Snapshot returns what every key is doing, and StatusHandler
// serves it as JSON or as an HTML page, with buttons for ForceOpen,
// ForceClose, Release and Reset if AllowControl lets it.
//
// Replicas of one service can share what their breakers learn with
// WithSharedState: a store of package sharedstate, such as the redisstate
// module's on Redis. No request waits on the store; a goroutine of the set
// syncs in the background until Close: close every set you make (a set with
// shared state dropped without Close keeps syncing, and the fleet counts it
// as a live replica).
package httpbreaker
