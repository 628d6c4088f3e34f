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
//	mux.Handle("/api/catalog/", breakers.Middleware("catalog")(catalogHandler))
//
// KeyedMiddleware picks the key per request instead, for example by the
// matched route pattern with RoutePattern.
//
// The same breakers guard outgoing calls: Transport(key, base) and
// KeyedTransport(Host, base) are http.RoundTrippers for an http.Client. A
// rejected call touches no network and returns a *RejectedError, which
// errors.Is(err, ErrOpen) matches:
//
//	github := &http.Client{Transport: breakers.Transport("github", nil)}
//
// # One request
//
// The middleware looks the key's breaker up (created on first use; no lock
// shared by all keys) and asks it to admit the request. A state forced with
// ForceOpen or ForceClose decides first. In disabled mode the request goes
// straight to the handler. Closed, the breaker admits it and counts its
// outcome in a github.com/sony/gobreaker/v2 instance's rolling window, which
// decides when to trip. Tripped, the breaker is open for its cooldown and
// rejects, then half-open: it admits up to HalfOpenRequests probes at a
// time, and closes when they all succeed, or, with a RecoveryRamp, recovers
// first, admitting a rising share. A rejected request gets the reject
// response and the handler never runs; in observe mode it runs anyway and is
// counted as a would-be rejection. An admitted request runs with a wrapped
// ResponseWriter that records its final status; the Classifier turns what
// happened into Success, Failure or Excluded, and that outcome goes back to
// the breaker, to the metrics, and, if the state changed, to the log and the
// hooks.
//
// # Outcomes
//
// By default (DefaultClassifier) a failure is a final status of 500 or more,
// or 429; a panic (recorded, then raised again with its stack intact); on
// the client side a transport error; or, when the policy sets SlowCall, a
// call that took longer. Everything else succeeds, 4xx included. A request is excluded, counted nowhere, when the
// client went away before a failure status was written, when a hijacked
// connection never wrote a status, or when a breaker nested inside rejected
// it. A breaker's own rejections are never failures.
//
// # Policies
//
// A Policy says when a breaker trips (a failure rate over a rolling window,
// or consecutive failures), how long it stays open (OpenFor, doubling with
// jitter after each failed probe, up to MaxOpenFor), and how many probes it
// admits when half-open. A Config holds defaults and per-key overrides;
// LoadConfig reads one from YAML or JSON. Zero fields inherit; Off turns a
// field off.
//
// # Rejections
//
// While open, the middleware answers 503 Service Unavailable with
// Retry-After (whole seconds until probes are admitted, rounded up, at least
// 1, and at least what an upstream's Retry-After asked for), Cache-Control:
// no-store, and an RFC 9457 problem document:
//
//	{"title":"Service Unavailable","status":503,
//	 "detail":"circuit breaker \"scaffolder\" is open; retry after the delay in Retry-After",
//	 "key":"scaffolder","state":"open"}
//
// WithRejectHandler replaces that answer with a fallback of your own.
//
// # Observing
//
// With WithRegisterer, each Breakers exports three metric families, read at
// scrape time: httpbreaker_state{key,state}, httpbreaker_requests_total{key,
// result} and httpbreaker_transitions_total{key,from,to}. Every state change
// is one log/slog record (WARN when a breaker opens, with the reason and the
// counts that tripped it), and WithStateChangeHook calls a function of yours
// with an Event that carries the same facts. Snapshot returns every key's
// state, counts, last trip and policy.
//
// # Operating
//
// StatusHandler serves every key's status as JSON, or as an HTML page to
// browsers; with AllowControl it also takes ForceOpen, ForceClose, Release
// and Reset as POST actions; these act only on keys that exist, so that a
// typo makes no key. Keys unused for their policy's IdleTTL are
// dropped with their metric series, so many short-lived keys keep memory
// flat.
//
// # Fleets
//
// Replicas of one service can share what their breakers learn: with
// WithSharedState (the redisstate module provides a SharedState on Redis),
// a fleet-wide window trips a key on every replica once failures come from
// Quorum replicas, the fleet probes it with HalfOpenRequests probes in all,
// and manual control applies everywhere. No request waits on the store: a
// goroutine of the set syncs in the background, Close stops it, and while
// the store is unreachable each replica's breakers work alone.
//
// # Reading the code
//
// breaker.go holds one key's breaker and its admission path, which every
// side of the package uses: admit a call, or say why not, and record how it
// ended. middleware.go is the server side over it, with status_writer.go
// capturing what the handler answered; transport.go is the client side. breakers.go is the set (New, keys,
// the idle sweep); policy.go the Policy and the table of its fields, which
// config.go, the config file codec, reads; outcome.go what a finished call
// means; snapshot.go and status_page.go what the set shows; metrics.go and
// events.go what it reports; control.go the manual control; options.go the
// options of New; shared.go the SharedState interface, fleet.go the
// fleet's background sync, and fleet_hold.go what the fleet does to a key's
// breaker.
package httpbreaker
