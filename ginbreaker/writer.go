package ginbreaker

import (
	"bufio"
	"io"
	"net"
	"net/http"

	"github.com/gin-gonic/gin"
)

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
