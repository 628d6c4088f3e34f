package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"

	"github.com/gin-gonic/gin"
)

// wrap makes a gin middleware of a net/http one, such as
// breakers.Middleware("catalog"): the rest of the gin chain (c.Next) runs
// inside it, so that the breaker sees what the handlers answer.
//
// While the chain runs, c.Writer writes through the http.ResponseWriter
// that the middleware hands in (the breaker's, which captures the status)
// and c.Request is the request it passes on; both are put back afterwards,
// even after a panic, so that gin and the middleware further out answer on
// their own writer. If the middleware does not call the chain (the breaker
// rejected the request), the chain is aborted: no handler behind it runs.
// The request carries c in its context, for routeKey and rejected. Like
// echo.WrapMiddleware, wrap applies mw to a handler made for each request.
func wrap(mw func(http.Handler) http.Handler) gin.HandlerFunc {
	return func(c *gin.Context) {
		admitted := false
		mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			admitted = true
			onGin(c, w, r, (*gin.Context).Next)
		})).ServeHTTP(c.Writer, c.Request.WithContext(context.WithValue(c.Request.Context(), ginContextKey{}, c)))
		if !admitted {
			c.Abort()
		}
	}
}

type ginContextKey struct{}

// ginContext returns the gin.Context that wrap put in r's context, or nil.
func ginContext(r *http.Request) *gin.Context {
	c, _ := r.Context().Value(ginContextKey{}).(*gin.Context)
	return c
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

// ginWriter is a gin.ResponseWriter over an http.ResponseWriter. It keeps
// gin's own rule: WriteHeader only records the status, which goes out with
// the first byte of the body or WriteHeaderNow, so that handlers can still
// set headers after c.Status (c.JSON does).
type ginWriter struct {
	http.ResponseWriter
	outer  gin.ResponseWriter // gin's own writer, for CloseNotify
	status int
	size   int // -1 until the header is sent
}

var _ gin.ResponseWriter = (*ginWriter)(nil)

func (w *ginWriter) WriteHeader(code int) {
	if code > 0 && !w.Written() {
		w.status = code
	}
}

func (w *ginWriter) WriteHeaderNow() {
	if !w.Written() {
		w.size = 0
		w.ResponseWriter.WriteHeader(w.status)
	}
}

func (w *ginWriter) Write(b []byte) (int, error) {
	w.WriteHeaderNow()
	n, err := w.ResponseWriter.Write(b)
	w.size += n
	return n, err
}

func (w *ginWriter) WriteString(s string) (int, error) {
	w.WriteHeaderNow()
	n, err := io.WriteString(w.ResponseWriter, s)
	w.size += n
	return n, err
}

func (w *ginWriter) Status() int   { return w.status }
func (w *ginWriter) Size() int     { return w.size }
func (w *ginWriter) Written() bool { return w.size != -1 }

func (w *ginWriter) Flush() {
	w.WriteHeaderNow()
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *ginWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.size = max(w.size, 0) // no header may follow on a hijacked connection
	}
	return conn, rw, err
}

func (w *ginWriter) CloseNotify() <-chan bool { return w.outer.CloseNotify() }

func (w *ginWriter) Pusher() http.Pusher {
	p, _ := w.ResponseWriter.(http.Pusher)
	return p
}

// Unwrap lets http.ResponseController, and a breaker further out, reach the
// writers underneath.
func (w *ginWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
