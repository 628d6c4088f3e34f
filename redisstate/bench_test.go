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
	"github.com/httpbreaker/httpbreaker/redisstate"
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

// BenchmarkSync measures what Redis spends per key of a sync, in its own
// time in the scripts (redis-us/key; Redis's per-command accounting, so
// what the network and its event loop cost is not in it), for the kinds of
// key syncs a fleet makes:
//
//   - report: a key whose failures changed, reported by one of 100
//     replicas, outside a gathering;
//   - gather: a key the fleet gathers, reported at every sync by each of
//     100 replicas (the reports are summed again at most once an interval);
//   - read: a key read without a report (a forced key, an announced one);
//   - heartbeat: a sync without keys, which every sync is besides its keys.
//
// Each sync but the heartbeat's carries 100 keys; redis-us/key includes a
// hundredth of the sync's heartbeat.
func BenchmarkSync(b *testing.B) {
	srv := startRedis(b)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	ctx := context.Background()
	const keys, replicas = 100, 100
	for _, kind := range []string{"report", "gather", "read", "heartbeat"} {
		b.Run(kind, func(b *testing.B) {
			s := newStore(b, c, redisstate.WithPrefix("bench-"+kind))
			names := make([]*sharedstate.Sync, replicas)
			for r := range names {
				names[r] = &sharedstate.Sync{Replica: "replica-" + strconv.Itoa(r), Session: 1, Live: time.Minute}
				if kind != "heartbeat" {
					names[r].Keys = make([]sharedstate.KeySync, keys)
				}
				for i := range names[r].Keys {
					ks := &names[r].Keys[i]
					*ks = sharedstate.KeySync{Key: "key" + strconv.Itoa(i), Window: 10 * time.Second, Slots: 1, Need: 1,
						MaxHold: time.Minute, TripFailures: 10, Quorum: 2}
					switch kind {
					case "report":
						ks.TripFailures = 1 << 30 // never a gathering
						ks.Report = true
					case "gather":
						ks.Report, ks.Over = true, true
					}
				}
			}
			// Every replica heartbeats once, so that all are live.
			for _, sy := range names {
				sy.Seq++
				if err := s.Sync(ctx, &sharedstate.Sync{Replica: sy.Replica, Session: 1, Seq: sy.Seq, Live: time.Minute}); err != nil {
					b.Fatal(err)
				}
			}
			if err := c.ConfigResetStat(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			n := 0
			for b.Loop() {
				sy := names[n%replicas]
				n++
				sy.Seq++
				for i := range sy.Keys {
					if k := &sy.Keys[i]; k.Report {
						k.Successes, k.Failures = uint64(n%7), uint64(1+n%5) // a new window each time
					}
				}
				if err := s.Sync(ctx, sy); err != nil {
					b.Fatal(err)
				}
				if kind == "gather" && n == replicas && !sy.Keys[0].Reply.Gathering {
					b.Fatalf("no gathering: %+v", sy.Keys[0].Reply)
				}
			}
			info, err := c.Info(ctx, "commandstats").Result()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(cmdUsec(info, "cmdstat_evalsha:")/float64(b.N), "redis-us/sync")
			if kind != "heartbeat" {
				b.ReportMetric(cmdUsec(info, "cmdstat_evalsha:")/float64(b.N*keys), "redis-us/key")
			}
		})
	}
}

// cmdUsec returns the microseconds that INFO commandstats says the command
// of prefix took in all.
func cmdUsec(info, prefix string) float64 {
	for line := range strings.SplitSeq(info, "\n") {
		if strings.HasPrefix(line, prefix) {
			_, rest, _ := strings.Cut(line, "usec=")
			v, _ := strconv.ParseFloat(rest[:strings.IndexByte(rest, ',')], 64)
			return v
		}
	}
	return 0
}
