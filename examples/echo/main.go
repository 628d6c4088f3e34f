// Command echo puts each route group of an echo server behind its own
// circuit breaker: a failing scaffolder plugin is cut off while catalog
// keeps answering, and the items API has a breaker per route.
//
//	go run ./examples/echo
package main

import (
	"context"
	"flag"
	"log"
	"net/http"
	"strconv"

	"github.com/httpbreaker/httpbreaker"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// newBreakers makes the set with rejected as its reject handler, so that
// a request a breaker turns away gets echo's usual error answer.
func newBreakers(opts ...httpbreaker.Option) (*httpbreaker.Breakers, error) {
	return httpbreaker.New(append(opts, httpbreaker.WithRejectHandler(http.HandlerFunc(rejected)))...)
}

// newEcho mounts two plugin groups, each behind its own breaker, and an
// items API with a breaker per route.
func newEcho(breakers *httpbreaker.Breakers, scaffolder, getItem echo.HandlerFunc) *echo.Echo {
	e := echo.New()
	// Recover sits on the server, outside every breaker: a handler's panic
	// goes up through the breaker, which counts it as a failure and lets it
	// go on, and Recover answers 500 on echo's own response. A Recover
	// inside the breaker (after wrap in a group) answers the panic with a
	// 500 before the breaker sees it: that still counts, through the
	// breaker's writer, but a Recover there configured to answer below 500
	// would hide the failure.
	e.Use(middleware.Recover())

	catalog := e.Group("/api/catalog", wrap(breakers.Middleware("catalog")))
	catalog.GET("/entities", func(c echo.Context) error {
		return c.JSON(http.StatusOK, echo.Map{"entities": []string{"component:default/website"}})
	})

	e.Group("/api/scaffolder", wrap(breakers.Middleware("scaffolder"))).POST("/tasks", scaffolder)

	// One breaker per route and method: "GET /api/items/:id" and
	// "POST /api/items/:id", whatever the id.
	items := e.Group("/api/items", wrap(breakers.KeyedMiddleware(routeKey)))
	items.GET("/:id", getItem)
	items.POST("/:id", func(c echo.Context) error {
		return c.JSON(http.StatusOK, echo.Map{"id": c.Param("id"), "updated": true})
	})
	return e
}

// wrap makes echo middleware of a net/http one, such as
// breakers.Middleware("catalog"). echo.WrapMiddleware does the main part:
// the handlers behind run on an echo.Response over the writer the breaker
// hands in, so the breaker sees what they write. It leaves two gaps:
//
//   - An error a handler returns (echo.NewHTTPError(502, ...), or any
//     error) is answered by echo's HTTPErrorHandler only once the whole
//     chain has returned, outside the breaker, which would see no status
//     and count a success. wrap answers it inside, with c.Error, and
//     returns it on for the middleware further out, as echo's own
//     RequestLogger does; the error handler answers once.
//   - It leaves c.Response() on the breaker's writer after the breaker is
//     done with it: the error handler, or a middleware further out, would
//     then write to a writer the breaker has recycled. wrap puts echo's own
//     response and request back.
//
// The request carries c in its context, for routeKey and rejected.
func wrap(mw func(http.Handler) http.Handler) echo.MiddlewareFunc {
	wrapped := echo.WrapMiddleware(mw)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		inside := wrapped(func(c echo.Context) error {
			err := next(c)
			if err != nil {
				c.Error(err)
			}
			return err
		})
		return func(c echo.Context) error {
			req, res := c.Request(), c.Response()
			defer func() { c.SetRequest(req); c.SetResponse(res) }()
			c.SetRequest(req.WithContext(context.WithValue(req.Context(), echoContextKey{}, c)))
			return inside(c)
		}
	}
}

type echoContextKey struct{}

// routeKey is a KeyFunc for one breaker per echo route, keyed as
// httpbreaker.RoutePattern keys ServeMux and chi routes: the method and the
// route's template, "GET /api/items/:id", never the path. echo has the
// template once its router has picked the route, before the route's and
// its groups' middleware run, as c.Path(); a KeyFunc sees only the request,
// so it reads c from the request's context, where wrap put it.
//
// A group's middleware also runs for paths in the group that match no
// route (Group.Use adds a catch-all, "/api/items/*"), with any method a
// client sends: keyed by any method, they would make keys without bound,
// so requests with other methods than these pass untracked.
func routeKey(r *http.Request) string {
	c, ok := r.Context().Value(echoContextKey{}).(echo.Context)
	if !ok || c.Path() == "" {
		return ""
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return r.Method + " " + c.Path()
	}
	return ""
}

// rejected answers a request that a breaker turned away as echo answers
// every error, through the server's HTTPErrorHandler: echo's default one
// writes {"message": "..."} for an *echo.HTTPError. It answers on the
// echo.Context that wrap passes along, so every breaker of the set must be
// used through wrap.
func rejected(w http.ResponseWriter, r *http.Request) {
	rj, _ := httpbreaker.RejectionFrom(r)
	c := r.Context().Value(echoContextKey{}).(echo.Context)
	c.SetResponse(echo.NewResponse(w, c.Echo())) // wrap puts echo's own back
	w.Header().Set("Retry-After", strconv.Itoa(rj.RetryAfterSeconds()))
	c.Error(echo.NewHTTPError(http.StatusServiceUnavailable,
		rj.Key+" is unavailable: its circuit breaker is "+rj.State.String()+"; retry after the delay in Retry-After"))
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	if err := listen(*addr); err != nil {
		log.Fatal(err)
	}
}

// listen serves the example on addr until it fails, and then closes the
// breakers (log.Fatal would skip a deferred Close in main).
func listen(addr string) error {
	breakers, err := newBreakers()
	if err != nil {
		return err
	}
	defer breakers.Close()
	scaffolder := func(c echo.Context) error {
		return echo.NewHTTPError(http.StatusBadGateway, "template repository unreachable")
	}
	getItem := func(c echo.Context) error { return c.JSON(http.StatusOK, echo.Map{"id": c.Param("id")}) }
	log.Printf("listening on http://%s: GET /api/catalog/entities answers, POST /api/scaffolder/tasks fails until its breaker opens", addr)
	return newEcho(breakers, scaffolder, getItem).Start(addr)
}
