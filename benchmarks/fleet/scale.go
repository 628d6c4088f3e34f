package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/httpbreaker/httpbreaker"
	"github.com/httpbreaker/httpbreaker/internal/redisserver"
	"github.com/httpbreaker/httpbreaker/redisstate"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// scale simulates a large fleet in this process: n replicas, each with its
// own Breakers, Store and Redis client, serving k active keys at one
// request per key per second each, on one Redis and on a 3-master Redis
// Cluster. While it runs, keys trip fleet-wide one after another: a burst
// of failures on every replica, each replica short of tripping on its own.
func (m *measure) scale() error {
	sizes, span := [][2]int{{m.replicas, m.keys / 10}, {m.replicas, m.keys}}, 20*time.Second
	if m.quick {
		sizes, span = [][2]int{{4, 50}}, 2*time.Second
	}
	m.printf("### Toward a hundred replicas\n\nReplicas in one process, each with its own `Breakers`, `Store` and client, "+
		"each serving its keys at one request per key per second (every key active: it has news for the fleet every "+
		"second); for %v, one more key trips fleet-wide every second: a quiet key (no other traffic) to which every "+
		"replica sends 5 failures, short of the 20 its own breaker needs, so that the fleet's window trips it. "+
		"*Key syncs/s*: the keys with news that the fleet asks Redis to apply, per second. "+
		"*Sync interval*: the mean time between one replica's syncs (%v asked), and the slowest replica's. "+
		"*Trip to everywhere*: from the hold's arrival on the replica whose sync made it to its arrival on each "+
		"other replica; *arrivals* counts those seen within a second of the last trip, of all there should be. "+
		"*Redis CPU*: Redis's own user and system CPU time (`INFO cpu`) over the run, summed over the masters: 1.0 "+
		"is one core. Every replica and Redis share this machine's cores, which a real fleet does not.\n\n",
		span, redisstate.DefaultSyncInterval)
	m.printf("| Redis | replicas | keys each | key syncs/s | sync interval, mean | slowest replica | trip to everywhere p50 | p99 | max | arrivals | Redis CPU |\n" +
		"|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")

	single := &scaleTarget{name: "one server", addrs: []string{m.srv.Addr()}, client: func() redis.UniversalClient {
		return redis.NewClient(&redis.Options{Addr: m.srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	}}
	cluster, err := redisserver.StartCluster(3, 0)
	if err != nil {
		return err
	}
	defer cluster.Close()
	three := &scaleTarget{name: "Cluster, 3 masters", addrs: cluster.Addrs(), client: func() redis.UniversalClient {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster.Addrs(), MaxRetries: -1, ContextTimeoutEnabled: true})
	}}
	for _, size := range sizes {
		for _, t := range []*scaleTarget{single, three} {
			if err := m.scaleOn(t, size[0], size[1], span); err != nil {
				return err
			}
		}
	}
	m.printf("\n")
	return nil
}

// scaleTarget is a Redis deployment the simulation runs on.
type scaleTarget struct {
	name   string
	addrs  []string // the masters, whose CPU is measured
	client func() redis.UniversalClient
}

// cpu returns the CPU seconds the masters have used.
func (t *scaleTarget) cpu(ctx context.Context) (float64, error) {
	var total float64
	for _, addr := range t.addrs {
		c := redis.NewClient(&redis.Options{Addr: addr})
		info, err := c.Info(ctx, "cpu").Result()
		_ = c.Close()
		if err != nil {
			return 0, err
		}
		for line := range strings.SplitSeq(info, "\n") {
			name, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if ok && (name == "used_cpu_user" || name == "used_cpu_sys") {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return 0, fmt.Errorf("INFO cpu %s=%q: %w", name, v, err)
				}
				total += f
			}
		}
	}
	return total, nil
}

// scaleReplica is one replica of the simulation.
type scaleReplica struct {
	set    *httpbreaker.Breakers
	client redis.UniversalClient
	reg    *prometheus.Registry
	h      []http.Handler // the active keys'
	trip   []http.Handler // the quiet keys', which fail
}

func (m *measure) scaleOn(t *scaleTarget, n, k int, span time.Duration) error {
	prefix := m.nextPrefix()
	keys := make([]string, k)
	for i := range keys {
		keys[i] = "key" + strconv.Itoa(i)
	}
	quiet := make([]string, int(span/time.Second)+1) // the keys that trip, one a second
	for i := range quiet {
		quiet[i] = "quiet" + strconv.Itoa(i)
	}
	type opened struct {
		key, replica, by string
		at               time.Time
	}
	var mu sync.Mutex
	var opens []opened
	var rs []*scaleReplica
	defer func() {
		for _, r := range rs {
			_ = r.set.Close()
			_ = r.client.Close()
		}
	}()
	for i := range n {
		name := "r" + strconv.Itoa(i+1)
		r := &scaleReplica{client: t.client(), reg: prometheus.NewRegistry()}
		store, err := redisstate.New(r.client, redisstate.WithPrefix(prefix))
		if err != nil {
			return err
		}
		r.set, err = httpbreaker.New(httpbreaker.WithPolicy(fleetPolicy()), httpbreaker.WithReplica(name),
			httpbreaker.WithLogger(slog.New(slog.DiscardHandler)), httpbreaker.WithRegisterer(r.reg),
			httpbreaker.WithSharedState(store),
			httpbreaker.WithStateChangeHook(func(e httpbreaker.Event) {
				if e.To == httpbreaker.StateOpen && e.Fleet {
					mu.Lock()
					opens = append(opens, opened{key: e.Key, replica: name, by: e.Replica, at: e.Time})
					mu.Unlock()
				}
			}))
		if err != nil {
			return err
		}
		for _, key := range keys {
			r.h = append(r.h, r.set.Middleware(key)(okHandler))
		}
		for _, key := range quiet {
			r.trip = append(r.trip, r.set.Middleware(key)(newUpstream(http.StatusInternalServerError)))
		}
		rs = append(rs, r)
	}

	// Traffic: each replica serves every key once a second, a tenth of
	// them every 100ms.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Go(func() {
			w, req := &nullWriter{header: http.Header{}}, httptest.NewRequest(http.MethodGet, "/api/x/", nil)
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for slot := 0; ; slot = (slot + 1) % 10 {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				for ki := slot; ki < k; ki += 10 {
					r.h[ki].ServeHTTP(w, req)
				}
			}
		})
	}
	time.Sleep(3 * time.Second) // every replica has synced every key
	syncs0 := make([]uint64, n)
	for i, r := range rs {
		syncs0[i] = syncCount(r.reg)
	}
	cpu0, err := t.cpu(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	trips := 0
	for ki := 0; time.Since(start) < span && ki < len(quiet); ki++ {
		for _, r := range rs {
			for range 5 {
				serve(r.trip[ki])
			}
		}
		trips++
		time.Sleep(time.Second)
	}
	time.Sleep(time.Second) // the last trip arrives
	elapsed := time.Since(start)
	cpu1, err := t.cpu(ctx)
	if err != nil {
		return err
	}
	var intervals []time.Duration
	for i, r := range rs {
		if d := syncCount(r.reg) - syncs0[i]; d > 0 {
			intervals = append(intervals, elapsed/time.Duration(d))
		} else {
			intervals = append(intervals, elapsed)
		}
	}
	stop()
	wg.Wait()

	// Per key, the hold arrives first on the replica whose sync made it.
	mu.Lock()
	first := map[string]time.Time{}
	maker := map[string]string{}
	for _, o := range opens {
		if o.replica == o.by {
			first[o.key], maker[o.key] = o.at, o.replica
		}
	}
	var delays []time.Duration
	for _, o := range opens {
		if t0, ok := first[o.key]; ok && o.replica != maker[o.key] {
			delays = append(delays, max(0, o.at.Sub(t0)))
		}
	}
	mu.Unlock()
	if len(delays) == 0 {
		delays = append(delays, elapsed) // nothing arrived: not a figure to print as if it were
	}
	slices.Sort(delays)
	slices.Sort(intervals)
	mean := time.Duration(0)
	for _, d := range intervals {
		mean += d
	}
	mean /= time.Duration(len(intervals))
	m.printf("| %s | %d | %d | %d | %v | %v | %v | %v | %v | %d of %d | %.2f |\n", t.name, n, k, n*k, mean.Round(time.Millisecond),
		intervals[len(intervals)-1].Round(time.Millisecond), pct(delays, 50), pct(delays, 99),
		delays[len(delays)-1].Round(10*time.Microsecond), len(delays), trips*(n-1), (cpu1-cpu0)/elapsed.Seconds())
	return nil
}
