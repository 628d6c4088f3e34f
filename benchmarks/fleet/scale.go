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
	"sync/atomic"
	"time"

	"github.com/httpbreaker/httpbreaker"
	"github.com/httpbreaker/httpbreaker/internal/redisserver"
	"github.com/httpbreaker/httpbreaker/redisstate"
	"github.com/httpbreaker/httpbreaker/sharedstate"
	"github.com/redis/go-redis/v9"
)

// scale simulates a large fleet in this process: n replicas, each with its
// own Breakers, Store and Redis client, serving k active keys (a tenth of
// m.keys, m.keys and ten times as many), on one Redis and on a 3-master
// Redis Cluster. While it runs, keys trip fleet-wide one after another: a
// burst of failures on every replica, each replica short of tripping on its
// own.
func (m *measure) scale() error {
	sizes, span := [][2]int{{m.replicas, m.keys / 10}, {m.replicas, m.keys}, {m.replicas, m.keys * 10}}, 20*time.Second
	if m.quick {
		sizes, span = [][2]int{{4, 50}}, 2*time.Second
	}
	m.printf("### Toward a hundred replicas\n\n"+scaleSetup+"*Sync interval*: the mean time between one replica's "+
		"syncs (%v asked; a replica syncs sooner when the fleet announces a change or failures call for it), and the "+
		"slowest replica's. *Trip to everywhere*: from the hold's arrival on the replica whose sync made it to its "+
		"arrival on each other replica; *arrivals* counts those seen within a second of the last trip, of all there "+
		"should be.\n\n", span, redisstate.DefaultSyncInterval)
	m.printf("| Redis | replicas | keys each | requests/s | key syncs/s | sync interval, mean | slowest replica | trip to everywhere p50 | p99 | max | arrivals | Redis CPU |\n" +
		"|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")

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
			row, err := m.scaleOn(t, size[0], size[1], span)
			if err != nil {
				return err
			}
			m.printf("| %s | %d | %d | %s |\n", t.name, size[0], size[1], row.full())
		}
	}
	m.printf("\n")
	return nil
}

// scaleSetup says what scaleOn simulates and what its columns mean.
const scaleSetup = "Replicas in one process, each with its own `Breakers`, `Store` and client, each serving each of " +
	"its keys once a second (at most 1000 requests a second a replica: past 1000 keys, each key less often), every " +
	"response a success; for %v, one more key trips fleet-wide every second: a quiet key (no other traffic) to " +
	"which every replica sends 5 failures, short of the 20 its own breaker needs, so that the fleet's window trips " +
	"it. *Key syncs/s*: the keys that the replicas' syncs carried to Redis, per second (a key that only succeeds is " +
	"read when its breaker is new, or found in the fleet's index when many are, and then only when the fleet " +
	"announces it). *Redis CPU*: Redis's own user and system " +
	"CPU time (`INFO cpu`) over the run, summed over the masters: 1.0 is one core. Every replica and Redis share " +
	"this machine's cores, which a real fleet does not. "

// scaleRow is what scaleOn measured.
type scaleRow struct {
	requests, keySyncs float64 // per second
	mean, slowest      time.Duration
	p50, p99, slowTrip time.Duration
	arrivals, want     int
	cpu, usecPerSync   float64
}

// full is the row's cells after replicas and keys, as the scale table
// prints them.
func (r scaleRow) full() string {
	return fmt.Sprintf("%.0f | %.0f | %v | %v | %v | %v | %v | %d of %d | %.2f", r.requests, r.keySyncs,
		r.mean.Round(time.Millisecond), r.slowest.Round(time.Millisecond), r.p50, r.p99,
		r.slowTrip.Round(10*time.Microsecond), r.arrivals, r.want, r.cpu)
}

// countingStore counts the syncs and the keys they carry.
type countingStore struct {
	sharedstate.Store
	syncs, keys *atomic.Int64
}

func (c countingStore) Sync(ctx context.Context, s *sharedstate.Sync) error {
	c.syncs.Add(1)
	c.keys.Add(int64(len(s.Keys)))
	return c.Store.Sync(ctx, s)
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
	set         *httpbreaker.Breakers
	client      redis.UniversalClient
	h           []http.Handler // the active keys'
	trip        []http.Handler // the quiet keys', which fail
	syncs, keys atomic.Int64   // the syncs it made, the keys they carried
}

func (m *measure) scaleOn(t *scaleTarget, n, k int, span time.Duration) (scaleRow, error) {
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
		r := &scaleReplica{client: t.client()}
		store, err := redisstate.New(r.client, redisstate.WithPrefix(prefix))
		if err != nil {
			return scaleRow{}, err
		}
		r.set, err = httpbreaker.New(httpbreaker.WithPolicy(fleetPolicy()), httpbreaker.WithReplica(name),
			httpbreaker.WithLogger(slog.New(slog.DiscardHandler)),
			httpbreaker.WithSharedState(countingStore{Store: store, syncs: &r.syncs, keys: &r.keys}),
			httpbreaker.WithStateChangeHook(func(e httpbreaker.Event) {
				if e.To == httpbreaker.StateOpen && e.Fleet {
					mu.Lock()
					opens = append(opens, opened{key: e.Key, replica: name, by: e.Replica, at: e.Time})
					mu.Unlock()
				}
			}))
		if err != nil {
			return scaleRow{}, err
		}
		for _, key := range keys {
			r.h = append(r.h, r.set.Middleware(key)(okHandler))
		}
		for _, key := range quiet {
			r.trip = append(r.trip, r.set.Middleware(key)(newUpstream(http.StatusInternalServerError)))
		}
		rs = append(rs, r)
	}

	// Traffic: each replica serves every key once a period (a second, or
	// more past 1000 keys), a tenth of them every tenth of it.
	period := time.Second * time.Duration(max(1, (k+999)/1000))
	var served atomic.Int64
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Go(func() {
			w, req := &nullWriter{header: http.Header{}}, httptest.NewRequest(http.MethodGet, "/api/x/", nil)
			tick := time.NewTicker(period / 10)
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
				served.Add(int64((k - slot + 9) / 10))
			}
		})
	}
	time.Sleep(3*time.Second + period) // every replica has served and synced every key
	syncs0, keys0 := make([]int64, n), make([]int64, n)
	for i, r := range rs {
		syncs0[i], keys0[i] = r.syncs.Load(), r.keys.Load()
	}
	served0 := served.Load()
	cpu0, err := t.cpu(ctx)
	if err != nil {
		return scaleRow{}, err
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
		return scaleRow{}, err
	}
	var intervals []time.Duration
	var syncs, keySyncs int64
	for i, r := range rs {
		d := r.syncs.Load() - syncs0[i]
		syncs, keySyncs = syncs+d, keySyncs+r.keys.Load()-keys0[i]
		if d > 0 {
			intervals = append(intervals, elapsed/time.Duration(d))
		} else {
			intervals = append(intervals, elapsed)
		}
	}
	requests := served.Load() - served0
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
	secs := elapsed.Seconds()
	return scaleRow{requests: float64(requests) / secs, keySyncs: float64(keySyncs) / secs, mean: mean,
		slowest: intervals[len(intervals)-1], p50: pct(delays, 50), p99: pct(delays, 99), slowTrip: delays[len(delays)-1],
		arrivals: len(delays), want: trips * (n - 1), cpu: (cpu1 - cpu0) / secs,
		usecPerSync: (cpu1 - cpu0) * 1e6 / float64(max(syncs, 1))}, nil
}

// cost measures what Redis spends on one server as the keys per replica
// grow, from 1 to 10000, and as the replicas do: the fleet of scale, each
// row for a shorter span. A key that only succeeds costs nothing, so the
// work per sync stays flat: what one server holds is its syncs.
func (m *measure) cost() error {
	span, keys, replicas := 10*time.Second, []int{1, 10, 100, 1000, 10000}, []int{m.replicas, 2 * m.replicas, 4 * m.replicas}
	if m.quick {
		span, keys, replicas = 2*time.Second, []int{1, 10}, []int{4}
	}
	single := &scaleTarget{name: "one server", addrs: []string{m.srv.Addr()}, client: func() redis.UniversalClient {
		return redis.NewClient(&redis.Options{Addr: m.srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	}}
	m.printf("### What Redis spends, by keys and by replicas\n\nOne redis-server. "+scaleSetup+"*Redis per sync*: "+
		"Redis's CPU time over the syncs of every replica (the heartbeat, and the keys a sync carries).\n\n", span)
	m.printf("| replicas | keys each | requests/s | syncs/s | key syncs/s | Redis CPU | Redis per sync |\n" +
		"|---:|---:|---:|---:|---:|---:|---:|\n")
	var perSync, syncsPerReplica []float64
	row := func(n, k int) error {
		r, err := m.scaleOn(single, n, k, span)
		if err != nil {
			return err
		}
		syncs := float64(n) * float64(time.Second) / float64(r.mean)
		m.printf("| %d | %d | %.0f | %.0f | %.0f | %.2f | %.1fµs |\n", n, k, r.requests, syncs, r.keySyncs, r.cpu, r.usecPerSync)
		perSync, syncsPerReplica = append(perSync, r.usecPerSync), append(syncsPerReplica, syncs/float64(n))
		return nil
	}
	for _, k := range keys {
		if err := row(replicas[0], k); err != nil {
			return err
		}
	}
	for _, n := range replicas[1:] {
		if err := row(n, 100); err != nil {
			return err
		}
	}
	// The largest fleet's row: Redis's own housekeeping (its timers, ten
	// times a second) weighs on the few syncs of a small one.
	us, rate := perSync[len(perSync)-1], syncsPerReplica[len(syncsPerReplica)-1]
	m.printf("\nAt what Redis spent per sync for the largest fleet above (%.1fµs, %.1f syncs a second per replica), "+
		"one core of Redis holds about %d replicas at the default interval, whatever their keys, while most keys "+
		"only succeed.\n\n", us, rate, int(1e6/(us*rate)))
	return nil
}
