// Package echobreaker puts the route groups of an echo server behind
// httpbreaker's circuit breakers. It is a module of its own, so that the
// library's module never requires echo.
//
// Wrap makes echo middleware of any net/http middleware, such as
// breakers.Middleware("catalog"), and judges an error a handler returns as
// the status echo answers it with:
//
//	breakers, err := httpbreaker.New(httpbreaker.WithRejectHandler(echobreaker.RejectHandler()))
//	...
//	e := echo.New()
//	e.Use(middleware.Recover()) // outside every breaker
//	e.Group("/api/catalog", echobreaker.Wrap(breakers.Middleware("catalog")))
//	items := e.Group("/api/items", echobreaker.Wrap(breakers.KeyedMiddleware(echobreaker.RouteKey)))
//
// RouteKey keys a breaker per echo route ("GET /api/items/:id"), and
// RejectHandler answers a rejected request as echo answers every error,
// through the server's HTTPErrorHandler.
package echobreaker

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/httpbreaker/httpbreaker"
	"github.com/labstack/echo/v4"
)

// Wrap makes echo middleware of a net/http one, such as
// breakers.Middleware("catalog"). echo.WrapMiddleware does the main part:
// the handlers behind run on an echo.Response over the writer the breaker
// hands in, so the breaker sees what they write. Wrap fills its two gaps:
//
//   - An error a handler returns (echo.NewHTTPError(502, ...), or any
//     error) is answered by echo's HTTPErrorHandler only once the whole
//     chain has returned, outside the breaker, which would see no status
//     and count a success. Wrap answers it inside, with c.Error, so that
//     the breaker judges the status it becomes (a 502, or the 500 of any
//     other error), and returns it on for the middleware further out, as
//     echo's own RequestLogger does; the error handler answers once.
//   - echo.WrapMiddleware leaves c.Response() on the breaker's writer after
//     the breaker is done with it: the error handler, or a middleware
//     further out, would then write to a writer the breaker has recycled.
//     Wrap puts echo's own response and request back.
//
// The request carries c in its context, for RouteKey, RejectHandler and
// Context.
//
// Put echo's Recover outside the breaker (e.Use on the server): a
// handler's panic then goes up through the breaker, which counts it as a
// failure, and Recover answers 500 on echo's own response. A Recover
// inside (after Wrap in a group) answers the panic with a 500 through the
// breaker's writer, which counts too, but one configured to answer below
// 500 would hide the failure.
func Wrap(mw func(http.Handler) http.Handler) echo.MiddlewareFunc {
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
			c.SetRequest(req.WithContext(context.WithValue(req.Context(), contextKey{}, c)))
			return inside(c)
		}
	}
}

type contextKey struct{}

// Context returns the echo.Context of a request that Wrap passed on, or
// nil: a KeyFunc or a reject handler reads echo's route, parameters and
// values with it.
func Context(r *http.Request) echo.Context {
	c, _ := r.Context().Value(contextKey{}).(echo.Context)
	return c
}

// RouteKey is a KeyFunc for one breaker per echo route, keyed as
// httpbreaker.RoutePattern keys ServeMux and chi routes: the method and the
// route's template, "GET /api/items/:id", never the path. echo has the
// template once its router has picked the route, before the route's and
// its groups' middleware run, as c.Path(); a request that did not come
// through Wrap passes untracked.
//
// A group's middleware also runs for paths in the group that match no
// route (Group.Use adds a catch-all, "/api/items/*"), with any method a
// client sends: keyed by any method, they would make keys without bound,
// so requests with other methods than the standard ones (GET, HEAD, POST,
// PUT, PATCH, DELETE, OPTIONS) pass untracked.
func RouteKey(r *http.Request) string {
	c := Context(r)
	if c == nil || c.Path() == "" {
		return ""
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return r.Method + " " + c.Path()
	}
	return ""
}

// RejectHandler returns a reject handler (httpbreaker.WithRejectHandler)
// that answers as echo answers every error: with
// c.Error(echo.NewHTTPError(503, "...")), so that the server's
// HTTPErrorHandler writes it (echo's default writes {"message": "..."}),
// and a Retry-After of the whole seconds until the breaker admits requests
// again. The message names the key and the breaker's state. A request that
// did not come through Wrap (a set whose breakers also guard plain
// net/http handlers) gets the JSON echo's default handler writes, written
// without echo.
func RejectHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rj, _ := httpbreaker.RejectionFrom(r)
		w.Header().Set("Retry-After", strconv.Itoa(rj.RetryAfterSeconds()))
		msg := rj.Key + " is unavailable: its circuit breaker is " + rj.State.String() + "; retry after the delay in Retry-After"
		c := Context(r)
		if c == nil {
			w.Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
			return
		}
		c.SetResponse(echo.NewResponse(w, c.Echo())) // Wrap puts echo's own back
		c.Error(echo.NewHTTPError(http.StatusServiceUnavailable, msg))
	})
}
