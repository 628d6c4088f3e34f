// Package benchmarks measures httpbreaker beside the alternatives a user
// would pick, in a module of its own so that the library's go.mod names none
// of them.
package benchmarks

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

	"github.com/felixge/httpsnoop"
	"github.com/httpbreaker/httpbreaker"
	"github.com/sony/gobreaker/v2"
)

// netWriter stands for net/http's HTTP/1 response writer: a reused header
// map and the optional interfaces that one has.
type netWriter struct {
	header http.Header
	code   int
}

func (w *netWriter) Header() http.Header         { return w.header }
func (w *netWriter) WriteHeader(code int)        { w.code = code }
func (w *netWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *netWriter) Flush()                      {}
func (w *netWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, errors.New("not hijackable")
}
func (w *netWriter) ReadFrom(r io.Reader) (int64, error) { return io.Copy(io.Discard, r) }

var body = []byte("ok")

var handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
})

func request() (*netWriter, *http.Request) {
	return &netWriter{header: http.Header{}}, httptest.NewRequest(http.MethodGet, "/api/catalog/entities", nil)
}

var sinkCode int

// BenchmarkStatusCapture compares ways of learning the status a handler
// wrote, each around the same gobreaker Execute: httpsnoop's Wrap with a
// WriteHeader hook (the cheapest use of httpsnoop), httpsnoop's
// CaptureMetrics, and httpbreaker's middleware, whose pooled writer does it.
func BenchmarkStatusCapture(b *testing.B) {
	b.Run("httpsnoop-wrap", func(b *testing.B) {
		w, r := request()
		cb := gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{})
		b.ReportAllocs()
		for b.Loop() {
			_, _ = cb.Execute(func() (struct{}, error) {
				code := 0
				ww := httpsnoop.Wrap(w, httpsnoop.Hooks{
					WriteHeader: func(next httpsnoop.WriteHeaderFunc) httpsnoop.WriteHeaderFunc {
						return func(c int) {
							if code == 0 {
								code = c
							}
							next(c)
						}
					},
					Write: func(next httpsnoop.WriteFunc) httpsnoop.WriteFunc {
						return func(p []byte) (int, error) {
							if code == 0 {
								code = http.StatusOK
							}
							return next(p)
						}
					},
				})
				handler.ServeHTTP(ww, r)
				sinkCode = code
				return struct{}{}, nil
			})
		}
	})
	b.Run("httpsnoop-capturemetrics", func(b *testing.B) {
		w, r := request()
		cb := gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{})
		b.ReportAllocs()
		for b.Loop() {
			_, _ = cb.Execute(func() (struct{}, error) {
				m := httpsnoop.CaptureMetrics(handler, w, r)
				sinkCode = m.Code
				return struct{}{}, nil
			})
		}
	})
	b.Run("httpbreaker", func(b *testing.B) {
		w, r := request()
		set, err := httpbreaker.New(httpbreaker.WithLogger(slog.New(slog.DiscardHandler)),
			httpbreaker.WithPolicy(httpbreaker.Policy{Window: 10 * time.Second}))
		if err != nil {
			b.Fatal(err)
		}
		h := set.Middleware("catalog")(handler)
		b.ReportAllocs()
		for b.Loop() {
			h.ServeHTTP(w, r)
		}
	})
}
