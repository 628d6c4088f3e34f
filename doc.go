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
// KeyedMiddleware picks the key per request (RoutePattern, say); Transport,
// KeyedTransport and Do guard outgoing calls, and an upstream's failure a
// route group passes on is the upstream's. A breaker trips by its Policy,
// answers 503 with Retry-After while open, then probes; every change is a
// log/slog record and a hook call, and metrics, a status page, manual
// control and a fleet's shared state (WithSharedState) are options.
package httpbreaker
