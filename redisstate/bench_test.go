package redisstate_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/httpbreaker/httpbreaker"
	"github.com/redis/go-redis/v9"
)

// benchWriter stands for net/http's response writer, reused.
type benchWriter struct{ header http.Header }

func (w *benchWriter) Header() http.Header         { return w.header }
func (w *benchWriter) WriteHeader(int)             {}
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })

// BenchmarkClosed measures the closed path of one key, in one run, with
// the set alone and with its state shared through a real Redis (synced in
// the background every DefaultSyncInterval while the benchmark runs): the
// request path is the same, and does not allocate.
func BenchmarkClosed(b *testing.B) {
	run := func(b *testing.B, opts ...httpbreaker.Option) {
		set, err := httpbreaker.New(append([]httpbreaker.Option{httpbreaker.WithLogger(slog.New(slog.DiscardHandler))}, opts...)...)
		if err != nil {
			b.Fatal(err)
		}
		defer set.Close()
		h := set.Middleware("catalog")(okHandler)
		w, r := &benchWriter{header: http.Header{}}, httptest.NewRequest(http.MethodGet, "/api/catalog/entities", nil)
		b.ReportAllocs()
		for b.Loop() {
			h.ServeHTTP(w, r)
		}
	}
	b.Run("local", func(b *testing.B) { run(b) })
	b.Run("shared", func(b *testing.B) {
		srv := startRedis(b)
		c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		defer c.Close()
		run(b, httpbreaker.WithSharedState(newStore(b, c)))
	})
}
