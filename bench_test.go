package httpbreaker

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
)

// benchWriter stands for net/http's HTTP/1 response writer: a reused header
// map, and the optional interfaces that one has.
type benchWriter struct {
	header http.Header
	code   int
}

func (w *benchWriter) Header() http.Header         { return w.header }
func (w *benchWriter) WriteHeader(code int)        { w.code = code }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *benchWriter) Flush()                      {}
func (w *benchWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, errors.New("not hijackable")
}
func (w *benchWriter) ReadFrom(r io.Reader) (int64, error) { return io.Copy(io.Discard, r) }

var benchBody = []byte("ok")

// okHandler is the handler every benchmark wraps: it writes a status and a
// short body, as a small JSON endpoint does.
var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(benchBody)
})

func benchRequest() (*benchWriter, *http.Request) {
	return &benchWriter{header: http.Header{}}, httptest.NewRequest(http.MethodGet, "/api/catalog/entities", nil)
}

func benchSet(b *testing.B, opts ...Option) *Breakers {
	b.Helper()
	set, err := New(append([]Option{WithLogger(slog.New(slog.DiscardHandler))}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	return set
}

// BenchmarkClosed compares, in one run, the cost of a request through a
// closed breaker with the handler alone and with gobreaker's own Execute
// around it (gobreaker's floor: two mutex sections and two clock reads).
func BenchmarkClosed(b *testing.B) {
	b.Run("bare", func(b *testing.B) {
		w, r := benchRequest()
		b.ReportAllocs()
		for b.Loop() {
			okHandler.ServeHTTP(w, r)
		}
	})
	b.Run("gobreaker-execute", func(b *testing.B) {
		w, r := benchRequest()
		cb := gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{Interval: 10 * time.Second, BucketPeriod: time.Second})
		b.ReportAllocs()
		for b.Loop() {
			_, _ = cb.Execute(func() (struct{}, error) {
				okHandler.ServeHTTP(w, r)
				return struct{}{}, nil
			})
		}
	})
	b.Run("middleware", func(b *testing.B) {
		w, r := benchRequest()
		h := benchSet(b).Middleware("catalog")(okHandler)
		b.ReportAllocs()
		for b.Loop() {
			h.ServeHTTP(w, r)
		}
	})
	b.Run("keyed-middleware", func(b *testing.B) {
		w, r := benchRequest()
		r.Pattern = "GET /api/catalog/entities"
		h := benchSet(b).KeyedMiddleware(RoutePattern)(okHandler)
		b.ReportAllocs()
		for b.Loop() {
			h.ServeHTTP(w, r)
		}
	})
}

// BenchmarkOpen measures a rejection with the 503 problem response written.
func BenchmarkOpen(b *testing.B) {
	w, r := benchRequest()
	set := benchSet(b, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Hour}))
	h := set.Middleware("catalog")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	h.ServeHTTP(w, r)
	if set.State("catalog") != StateOpen {
		b.Fatal("breaker did not open")
	}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}
