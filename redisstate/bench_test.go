package redisstate_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/httpbreaker/httpbreaker"
	"github.com/httpbreaker/httpbreaker/sharedstate"
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

// BenchmarkSync measures one replica's sync of 1000 active keys (every key
// gained successes since its last sync), the work Redis does for a fleet
// that grows: b.N syncs, and Redis's own time in the scripts per key.
func BenchmarkSync(b *testing.B) {
	srv := startRedis(b)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	s := newStore(b, c)
	ctx := context.Background()
	const keys = 1000
	sy := &sharedstate.Sync{Replica: "r1", Live: 2 * time.Second, Keys: make([]sharedstate.KeySync, keys)}
	for i := range sy.Keys {
		sy.Keys[i] = sharedstate.KeySync{Key: "key" + strconv.Itoa(i), Window: 10 * time.Second, Buckets: 10,
			Incarnation: 1, Slots: 1, Need: 1, MaxHold: time.Minute, First: true}
	}
	if err := c.ConfigResetStat(ctx).Err(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		sy.Seq++
		for i := range sy.Keys {
			k := &sy.Keys[i]
			k.Successes += 3
			k.RecentSuccesses, k.First = 30, false
		}
		if err := s.Sync(ctx, sy); err != nil {
			b.Fatal(err)
		}
	}
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	var usec float64
	for line := range strings.SplitSeq(info, "\n") {
		if strings.HasPrefix(line, "cmdstat_eval") {
			_, rest, _ := strings.Cut(line, "usec=")
			v, _ := strconv.ParseFloat(rest[:strings.IndexByte(rest, ',')], 64)
			usec += v
		}
	}
	b.ReportMetric(usec*1000/float64(b.N*keys), "redis-ns/key")
}
