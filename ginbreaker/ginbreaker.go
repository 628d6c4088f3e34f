// Package ginbreaker puts the route groups of a gin engine behind
// httpbreaker's circuit breakers. It is a module of its own, so that the
// library's module never requires gin.
//
// Wrap makes gin middleware of any net/http middleware, such as
// breakers.Middleware("catalog"): the rest of gin's chain runs inside it,
// so that the breaker sees every way a gin handler answers (c.JSON,
// c.AbortWithStatus, c.Status with no body, a panic, a stream):
//
//	breakers, err := httpbreaker.New(httpbreaker.WithRejectHandler(ginbreaker.RejectHandler()))
//	...
//	r := gin.Default()
//	r.Group("/api/catalog", ginbreaker.Wrap(breakers.Middleware("catalog")))
//	items := r.Group("/api/items", ginbreaker.Wrap(breakers.KeyedMiddleware(ginbreaker.RouteKey)))
//
// RouteKey keys a breaker per gin route ("GET /api/items/:id"), and
// RejectHandler answers a rejected request as gin handlers answer errors.
package ginbreaker

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
	"github.com/httpbreaker/httpbreaker"
)

// Wrap makes a gin middleware of a net/http one, such as
// breakers.Middleware("catalog"): the rest of the gin chain (c.Next) runs
// inside it, so that the breaker sees what the handlers answer.
//
// While the chain runs, c.Writer writes through the http.ResponseWriter
// that the middleware hands in (the breaker's, which captures the status)
// and c.Request is the request it passes on; both are put back afterwards,
// even after a panic, so that gin and the middleware further out answer on
// their own writer and see what was answered. If the middleware does not
// call the chain (the breaker rejected the request), the chain is aborted:
// no handler behind it runs, whatever answered the rejection. The request
// carries c in its context, for RouteKey, RejectHandler and Context. Like
// echo.WrapMiddleware, Wrap applies mw to a handler made for each request.
//
// Put gin's Recovery outside the breaker (gin.Default puts it on the
// engine, before every group): a handler's panic then goes up through the
// breaker, which counts it as a failure, and Recovery answers 500 on gin's
// own writer. A Recovery inside (after Wrap in a group) answers the panic
// with a 500 through the breaker's writer, which counts too, but a
// CustomRecovery there that answers below 500 would hide the failure.
func Wrap(mw func(http.Handler) http.Handler) gin.HandlerFunc {
	return func(c *gin.Context) {
		admitted := false
		mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			admitted = true
			onGin(c, w, r, (*gin.Context).Next)
		})).ServeHTTP(c.Writer, c.Request.WithContext(context.WithValue(c.Request.Context(), contextKey{}, c)))
		if !admitted {
			c.Abort()
		}
	}
}

type contextKey struct{}

// Context returns the gin.Context of a request that Wrap passed on, or
// nil: a KeyFunc or a reject handler reads the route, parameters and keys
// of gin with it.
func Context(r *http.Request) *gin.Context {
	c, _ := r.Context().Value(contextKey{}).(*gin.Context)
	return c
}

// RouteKey is a KeyFunc for one breaker per gin route, keyed as
// httpbreaker.RoutePattern keys ServeMux and chi routes: the method and the
// route's template, "GET /api/items/:id", never the path. gin has the
// template once it has picked the route, before any middleware runs, as
// c.FullPath(); it is empty when no route matched, which leaves the request
// untracked, as is a request that did not come through Wrap. gin picks
// routes by method too, so the method in a key is always one the route was
// registered for, and the keys are as few as the routes.
func RouteKey(r *http.Request) string {
	c := Context(r)
	if c == nil || c.FullPath() == "" {
		return ""
	}
	return r.Method + " " + c.FullPath()
}

// RejectHandler returns a reject handler (httpbreaker.WithRejectHandler)
// that answers as gin handlers answer errors, with
// c.AbortWithStatusJSON(503, gin.H{"error": "..."}), and a Retry-After of
// the whole seconds until the breaker admits requests again. The message
// names the key and the breaker's state. A request that did not come
// through Wrap (a set whose breakers also guard plain net/http handlers)
// gets the same JSON, written without gin.
func RejectHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rj, _ := httpbreaker.RejectionFrom(r)
		w.Header().Set("Retry-After", strconv.Itoa(rj.RetryAfterSeconds()))
		msg := rj.Key + " is unavailable: its circuit breaker is " + rj.State.String() + "; retry after the delay in Retry-After"
		c := Context(r)
		if c == nil {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(gin.H{"error": msg})
			return
		}
		onGin(c, w, r, func(c *gin.Context) {
			c.AbortWithStatusJSON(http.StatusServiceUnavailable, gin.H{"error": msg})
		})
	})
}

// onGin runs f with c writing through w and reading r, then puts c's own
// writer and request back.
func onGin(c *gin.Context, w http.ResponseWriter, r *http.Request, f func(*gin.Context)) {
	writer, req := c.Writer, c.Request
	defer func() { c.Writer, c.Request = writer, req }()
	gw := &ginWriter{ResponseWriter: w, outer: writer, status: http.StatusOK, size: -1}
	c.Writer, c.Request = gw, r
	f(c)
	// A status set with c.Status and no body is sent by gin only once the
	// whole chain has returned; send it now, while the breaker still watches.
	gw.WriteHeaderNow()
}
