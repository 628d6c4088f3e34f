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
// KeyedMiddleware picks the key per request (RoutePattern, say). The same
// breakers guard outgoing calls: Transport and KeyedTransport for HTTP, Do
// for any other call; a rejected call touches nothing and returns a
// *RejectedError (errors.Is(err, ErrOpen)). A route group that passes an
// upstream's failure on (a 502 after its call through the set failed) is
// not tripped for it: the failure is the upstream's (DefaultClassifier).
//
// A key's breaker admits every call while closed and counts outcomes in a
// rolling window; a trip (Policy) opens it for a cooldown, then it admits a
// few probes and closes when they succeed. While open, requests get a 503
// with Retry-After and a JSON problem body (or WithRejectHandler's answer).
// Every change of state is one log/slog record and a call of
// WithStateChangeHook's functions; metrics go to WithRegisterer's registry;
// StatusHandler serves a status page; ForceOpen, ForceClose, Release, Reset
// and Probe control a key by hand. WithSharedState shares what a fleet of
// replicas learns, in the background: close every set you make (Close).
package httpbreaker
