// Command fleet measures httpbreaker's fleet state on a real redis-server,
// and gobreaker's DistributedCircuitBreaker beside it on the same Redis,
// and prints BENCHMARKS.md's "Fleet" section:
//
//	go run ./benchmarks/fleet          # the full run, about two minutes
//	go run ./benchmarks/fleet -quick   # every measurement once, briefly (CI)
//	go run ./benchmarks/fleet -only scale -replicas 30 -keys 1000
//
// Every replica runs in this process, each with its own Breakers, Store and
// Redis client, so that one clock times them all.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/httpbreaker/httpbreaker"
	"github.com/httpbreaker/httpbreaker/internal/redisserver"
	"github.com/httpbreaker/httpbreaker/redisstate"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

func main() {
	quick := flag.Bool("quick", false, "every measurement once, briefly: to check that it runs")
	only := flag.String("only", "", "run one measurement: "+strings.Join(stepNames(), ", "))
	replicas := flag.Int("replicas", 100, "scale: how many replicas")
	keys := flag.Int("keys", 1000, "scale: how many active keys each replica serves")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	flag.Parse()
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fleet:", err)
			os.Exit(1)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "fleet:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if *only != "" && !slices.Contains(stepNames(), *only) {
		fmt.Fprintf(os.Stderr, "fleet: -only %q: no such measurement\n", *only)
		os.Exit(2)
	}
	redis.SetLogger(quiet{})
	m := &measure{out: os.Stdout, quick: *quick, only: *only, replicas: *replicas, keys: *keys}
	if err := m.run(); err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// steps are the measurements, in the order they print.
var steps = []struct {
	name string
	run  func(*measure) error
}{
	{"request-path", (*measure).requestPath}, {"redis-load", (*measure).redisLoad},
	{"propagation", (*measure).propagation}, {"absorbed", (*measure).absorbed},
	{"gobreaker", (*measure).gobreaker}, {"scale", (*measure).scale}, {"cost", (*measure).cost},
}

func stepNames() []string {
	var names []string
	for _, st := range steps {
		names = append(names, st.name)
	}
	return names
}

func (m *measure) run() error {
	srv, err := redisserver.Start()
	if err != nil {
		return err
	}
	defer srv.Kill()
	m.srv = srv
	out := m.out
	fmt.Fprintf(out, "Measured by `go run ./benchmarks/fleet` on a real redis-server on loopback, every replica in one process "+
		"(its own Breakers, Store and client), sync interval %v.\n\n", redisstate.DefaultSyncInterval)
	for _, st := range steps {
		if m.only != "" && st.name != m.only {
			continue
		}
		if err := st.run(m); err != nil {
			return err
		}
	}
	return nil
}

type measure struct {
	out   io.Writer
	quick bool
	only  string // one step, or all
	// scale's fleet
	replicas, keys int
	srv            *redisserver.Server
	prefix         int
}

func (m *measure) printf(format string, args ...any) { fmt.Fprintf(m.out, format, args...) }

// replica is one replica in this process.
type replica struct {
	name   string
	set    *httpbreaker.Breakers
	client *redis.Client
	reg    *prometheus.Registry
	h      map[string]http.Handler
	events chan httpbreaker.Event
}

func (r *replica) close() {
	_ = r.set.Close()
	_ = r.client.Close()
}

// newReplica makes a replica with keys wired to h, sharing state through
// Redis under prefix unless prefix is empty.
func (m *measure) newReplica(name, prefix string, p httpbreaker.Policy, keys []string, h http.Handler) (*replica, error) {
	r := &replica{name: name, client: redis.NewClient(&redis.Options{Addr: m.srv.Addr(), MaxRetries: -1,
		ContextTimeoutEnabled: true}), reg: prometheus.NewRegistry(), h: map[string]http.Handler{},
		events: make(chan httpbreaker.Event, 4096)}
	opts := []httpbreaker.Option{httpbreaker.WithPolicy(p), httpbreaker.WithReplica(name),
		httpbreaker.WithLogger(slog.New(slog.DiscardHandler)), httpbreaker.WithRegisterer(r.reg),
		httpbreaker.WithStateChangeHook(func(e httpbreaker.Event) {
			select {
			case r.events <- e:
			default:
			}
		})}
	if prefix != "" {
		store, err := redisstate.New(r.client, redisstate.WithPrefix(prefix))
		if err != nil {
			return nil, err
		}
		opts = append(opts, httpbreaker.WithSharedState(store))
	}
	set, err := httpbreaker.New(opts...)
	if err != nil {
		return nil, err
	}
	r.set = set
	for _, k := range keys {
		r.h[k] = set.Middleware(k)(h)
	}
	return r, nil
}

func (m *measure) nextPrefix() string {
	m.prefix++
	return "bench" + strconv.Itoa(m.prefix)
}

// serve sends one request through h, and returns the status it answered.
// Each request is new, as a server's are: a rejection marks its request.
func serve(h http.Handler) int {
	w := &statusWriter{header: http.Header{}}
	r, _ := http.NewRequest(http.MethodGet, "/api/search/", nil)
	h.ServeHTTP(w, r)
	return w.code
}

type statusWriter struct {
	header http.Header
	code   int
}

func (w *statusWriter) Header() http.Header { return w.header }
func (w *statusWriter) WriteHeader(c int) {
	if w.code == 0 {
		w.code = c
	}
}
func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = 200
	}
	return len(p), nil
}

// upstream answers code, and counts its calls.
type upstream struct {
	code  atomic.Int32
	calls atomic.Int64
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	u.calls.Add(1)
	w.WriteHeader(int(u.code.Load()))
}

func newUpstream(code int) *upstream {
	u := &upstream{}
	u.code.Store(int32(code))
	return u
}

// fleetPolicy trips on 50% failures over at least 20 outcomes, as the
// fleet demo's does.
func fleetPolicy() httpbreaker.Policy {
	p := httpbreaker.DefaultPolicy()
	p.ConsecutiveFailures = httpbreaker.Off
	p.FailureRate = 0.5
	p.MinRequests = 20
	p.Window = 10 * time.Second
	p.OpenFor = time.Minute
	p.MaxOpenFor = time.Hour
	p.HalfOpenRequests = 1
	return p
}

// requestPath measures the closed path of one key with the set alone and
// with its state shared through Redis (syncing in the background as it
// runs), in alternating rounds of testing.Benchmark.
func (m *measure) requestPath() error {
	rounds := 5
	if m.quick {
		rounds = 1
	}
	bench := func(prefix string) (testing.BenchmarkResult, error) {
		r, err := m.newReplica("r1", prefix, fleetPolicy(), []string{"search"}, okHandler)
		if err != nil {
			return testing.BenchmarkResult{}, err
		}
		defer r.close()
		h := r.h["search"]
		w, req := &nullWriter{header: http.Header{}}, httptest.NewRequest(http.MethodGet, "/api/search/", nil)
		time.Sleep(300 * time.Millisecond) // connected
		return testing.Benchmark(func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, req)
			}
		}), nil
	}
	var local, shared []float64
	var allocs int64
	for range rounds {
		l, err := bench("")
		if err != nil {
			return err
		}
		s, err := bench(m.nextPrefix())
		if err != nil {
			return err
		}
		local, shared = append(local, float64(l.NsPerOp())), append(shared, float64(s.NsPerOp()))
		allocs = max(allocs, l.AllocsPerOp(), s.AllocsPerOp())
	}
	slices.Sort(local)
	slices.Sort(shared)
	lm, sm := local[len(local)/2], shared[len(shared)/2]
	m.printf("### The request path\n\nOne key's closed path (`Middleware` around a handler that writes 200), `testing.Benchmark` in %d "+
		"alternating rounds, the median: the set alone, and the set sharing its state through Redis while it runs.\n\n", rounds)
	m.printf("| | ns/op | allocs/op |\n|---|---:|---:|\n| alone | %.0f | %d |\n| shared through Redis | %.0f | %d |\n\n"+
		"Shared over alone: %.2fx. The request path reads one more atomic pointer; the sync runs on its own goroutine.\n\n",
		lm, allocs, sm, allocs, sm/lm)
	return nil
}

// okHandler answers 200.
var okHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })

// nullWriter is a reused response writer.
type nullWriter struct{ header http.Header }

func (w *nullWriter) Header() http.Header         { return w.header }
func (w *nullWriter) WriteHeader(int)             {}
func (w *nullWriter) Write(p []byte) (int, error) { return len(p), nil }

// redisLoad measures the Redis commands one replica sends, against its
// number of keys and its request rate.
func (m *measure) redisLoad() error {
	m.printf("### Redis work per replica\n\nOne replica, every key serving successes at the rate given, spread evenly; " +
		"the replica's round trips to Redis " +
		"(`shared_sync_seconds` count) and Redis's own count of the script calls it ran (`INFO commandstats`: " +
		"a heartbeat per round trip, and a call for the keys it carries, which a key that only succeeds is not), " +
		"per second.\n\n")
	m.printf("| keys | requests/s | round trips/s | script calls/s |\n|---:|---:|---:|---:|\n")
	span := 3 * time.Second
	keyCounts, rates := []int{1, 10, 100, 1000}, []int{1000, 20000}
	if m.quick {
		span, keyCounts, rates = 500*time.Millisecond, []int{1, 100}, []int{1000}
	}
	admin := redis.NewClient(&redis.Options{Addr: m.srv.Addr()})
	defer admin.Close()
	ctx := context.Background()
	for _, n := range keyCounts {
		for _, rate := range rates {
			keys := make([]string, n)
			for i := range keys {
				keys[i] = "key" + strconv.Itoa(i)
			}
			r, err := m.newReplica("r1", m.nextPrefix(), fleetPolicy(), keys, newUpstream(200))
			if err != nil {
				return err
			}
			time.Sleep(300 * time.Millisecond) // the first full sync
			before, syncs0 := scriptCalls(ctx, admin), syncCount(r.reg)
			start := time.Now()
			sent := 0
			for time.Since(start) < span {
				due := int(time.Since(start).Seconds() * float64(rate))
				for ; sent < due; sent++ {
					serve(r.h[keys[sent%n]])
				}
				time.Sleep(time.Millisecond)
			}
			elapsed := time.Since(start).Seconds()
			after, syncs1 := scriptCalls(ctx, admin), syncCount(r.reg)
			r.close()
			m.printf("| %d | %d | %.1f | %.0f |\n", n, rate, float64(syncs1-syncs0)/elapsed, float64(after-before)/elapsed)
		}
	}
	m.printf("\n")
	return nil
}

// scriptCalls returns how many script calls (EVALSHA, EVAL) Redis has run:
// the heartbeat, and the calls for the keys a sync carries.
func scriptCalls(ctx context.Context, c *redis.Client) int64 {
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0
	}
	var total int64
	for line := range strings.SplitSeq(info, "\n") {
		// cmdstat_evalsha:calls=12,usec=...
		if !strings.HasPrefix(line, "cmdstat_eval") {
			continue
		}
		_, rest, _ := strings.Cut(line, "calls=")
		n, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
		total += n
	}
	return total
}

// syncCount returns how many syncs the replica has timed.
func syncCount(reg *prometheus.Registry) uint64 {
	families, _ := reg.Gather()
	for _, f := range families {
		if strings.HasSuffix(f.GetName(), "shared_sync_seconds") {
			return f.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}

// propagation measures how long a fleet trip takes to reach the other
// replicas: from the hold's arrival on the replica that tripped it to its
// arrival on each other replica.
func (m *measure) propagation() error {
	trips := 200
	if m.quick {
		trips = 10
	}
	keys := make([]string, trips)
	for i := range keys {
		keys[i] = "key" + strconv.Itoa(i)
	}
	prefix := m.nextPrefix()
	up := newUpstream(500)
	var rs []*replica
	for i := range 3 {
		r, err := m.newReplica("r"+strconv.Itoa(i+1), prefix, fleetPolicy(), keys, up)
		if err != nil {
			return err
		}
		defer r.close()
		rs = append(rs, r)
	}
	time.Sleep(300 * time.Millisecond)
	var delays []time.Duration
	for _, key := range keys {
		for range 10 { // 20 failures from two replicas: a fleet trip
			serve(rs[0].h[key])
			serve(rs[1].h[key])
		}
		at := map[string]time.Time{}
		var tripper string
		deadline := time.After(10 * time.Second)
		for len(at) < len(rs) {
			for _, r := range rs {
			drain:
				for {
					select {
					case e := <-r.events:
						if e.Key == key && e.Fleet && e.To == httpbreaker.StateOpen {
							at[r.name], tripper = e.Time, e.Replica
						}
					default:
						break drain
					}
				}
			}
			select {
			case <-deadline:
				return fmt.Errorf("propagation: %s never opened everywhere (%v)", key, at)
			case <-time.After(time.Millisecond):
			}
		}
		for name, t := range at {
			if name != tripper {
				delays = append(delays, t.Sub(at[tripper]))
			}
		}
	}
	slices.Sort(delays)
	m.printf("### From a trip to rejection everywhere\n\nThree replicas; %d fleet trips, one key each. The time from the hold's "+
		"arrival on the replica whose sync made it to its arrival on each of the two others (%d samples; the hold rejects "+
		"from then on):\n\n", trips, len(delays))
	m.printf("| p50 | p90 | p99 | max |\n|---:|---:|---:|---:|\n| %v | %v | %v | %v |\n\n",
		pct(delays, 50), pct(delays, 90), pct(delays, 99), delays[len(delays)-1].Round(10*time.Microsecond))
	return nil
}

func pct(d []time.Duration, p int) time.Duration {
	return d[min(len(d)-1, len(d)*p/100)].Round(10 * time.Microsecond)
}

// absorbed measures how many failures a dead upstream takes before every
// replica stops calling it: with every window empty at the start (cold),
// and after steady traffic that filled them with successes (warm).
func (m *measure) absorbed() error {
	m.printf("### Failures the upstream absorbs\n\nAn upstream that dies behind n replicas, 1000 requests a second spread " +
		"round-robin; the policy trips at 50%% failures over at least 20 outcomes in 10s. Failures that reached the " +
		"upstream before every replica was open, the median of the runs: *cold*, every window empty when it dies (a " +
		"deploy, a quiet night, a key with little traffic); *warm*, after 2s of successes at that rate.\n\n")
	m.printf("| replicas | cold, alone | cold, shared | warm, alone | warm, shared |\n|---:|---:|---:|---:|---:|\n")
	runs := 5
	if m.quick {
		runs = 1
	}
	for _, n := range []int{3, 10} {
		var row []int64
		for _, warm := range []time.Duration{0, 2 * time.Second} {
			for _, share := range []bool{false, true} {
				var got []int64
				for range runs {
					a, err := m.absorbOnce(n, share, warm)
					if err != nil {
						return err
					}
					got = append(got, a)
				}
				slices.Sort(got)
				row = append(row, got[len(got)/2])
			}
		}
		m.printf("| %d | %d | %d | %d | %d |\n", n, row[0], row[1], row[2], row[3])
	}
	m.printf("\n")
	return nil
}

// absorbOnce runs one upstream's death behind n replicas, after warm of
// successes, and returns the failures it took.
func (m *measure) absorbOnce(n int, share bool, warm time.Duration) (int64, error) {
	prefix := ""
	if share {
		prefix = m.nextPrefix()
	}
	up := newUpstream(200)
	var rs []*replica
	for i := range n {
		r, err := m.newReplica("r"+strconv.Itoa(i+1), prefix, fleetPolicy(), []string{"search"}, up)
		if err != nil {
			return 0, err
		}
		defer r.close()
		rs = append(rs, r)
	}
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	sent := 0
	send := func() {
		due := int(time.Since(start).Seconds() * 1000)
		for ; sent < due; sent++ {
			serve(rs[sent%n].h["search"])
		}
		time.Sleep(time.Millisecond)
	}
	for time.Since(start) < warm {
		send()
	}
	up.code.Store(http.StatusInternalServerError)
	up.calls.Store(0)
	died := time.Now()
	for {
		open := 0
		for _, r := range rs {
			if r.set.State("search") == httpbreaker.StateOpen {
				open++
			}
		}
		if open == n {
			return up.calls.Load(), nil
		}
		if time.Since(died) > 20*time.Second {
			return 0, fmt.Errorf("absorbed: %d of %d replicas open 20s after the upstream died", open, n)
		}
		send()
	}
}

// gobreaker compares the request path of ours and of gobreaker's
// DistributedCircuitBreaker on the same Redis.
func (m *measure) gobreaker() error {
	span := 3 * time.Second
	if m.quick {
		span = 300 * time.Millisecond
	}
	m.printf("### Beside gobreaker's DistributedCircuitBreaker\n\nOne replica, one key, a handler that only "+
		"answers 200, closed; `C` clients in a loop for %v. gobreaker's `DistributedCircuitBreaker` reads, locks "+
		"and writes its state in Redis on every request, through the store adapter in `benchmarks/fleet/gobreaker.go`; "+
		"ours syncs in the background.\n\n", span)
	m.printf("| | C | requests/s | p50 | p99 | errors |\n|---|---:|---:|---:|---:|---:|\n")
	ours, err := m.newReplica("r1", m.nextPrefix(), fleetPolicy(), []string{"search"}, newUpstream(200))
	if err != nil {
		return err
	}
	defer ours.close()
	theirs, closeTheirs, err := newDistributed(m.srv.Addr(), newUpstream(200))
	if err != nil {
		return err
	}
	defer closeTheirs()
	for _, c := range []int{1, 16} {
		for _, side := range []struct {
			name string
			h    http.Handler
		}{{"httpbreaker + redisstate", ours.h["search"]}, {"gobreaker DistributedCircuitBreaker", theirs}} {
			res := load(side.h, c, span, nil)
			m.printf("| %s | %d | %.0f | %v | %v | %d |\n", side.name, c, float64(res.ok)/span.Seconds(),
				res.pct(50), res.pct(99), res.failed)
		}
	}
	pause, whole := 4*time.Second, 6*time.Second
	if m.quick {
		pause, whole = 300*time.Millisecond, 600*time.Millisecond
	}
	m.printf("\nThe same, 16 clients for %v, with Redis paused (SIGSTOP) for %v of them:\n\n", whole, pause)
	m.printf("| | requests answered | failed | p99 | slowest |\n|---|---:|---:|---:|---:|\n")
	for _, side := range []struct {
		name string
		h    http.Handler
	}{{"httpbreaker + redisstate", ours.h["search"]}, {"gobreaker DistributedCircuitBreaker", theirs}} {
		res := load(side.h, 16, whole, func() {
			time.Sleep((whole - pause) / 2)
			m.srv.Pause()
			time.Sleep(pause)
			m.srv.Resume()
		})
		m.printf("| %s | %d | %d | %v | %v |\n", side.name, res.ok, res.failed, res.pct(99), res.max().Round(time.Millisecond))
		time.Sleep(500 * time.Millisecond)
	}
	m.printf("\n")
	return nil
}

// result is what a load run saw.
type result struct {
	ok, failed int
	latencies  []time.Duration
}

func (r *result) pct(p int) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[min(len(r.latencies)-1, len(r.latencies)*p/100)].Round(100 * time.Nanosecond)
}

func (r *result) max() time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[len(r.latencies)-1]
}

// load runs c clients sending requests through h for span, and during runs
// alongside if it is not nil.
func load(h http.Handler, c int, span time.Duration, during func()) *result {
	var mu sync.Mutex
	total := &result{}
	var wg sync.WaitGroup
	deadline := time.Now().Add(span)
	for range c {
		wg.Go(func() {
			local := &result{}
			for time.Now().Before(deadline) {
				start := time.Now()
				code := serve(h)
				local.latencies = append(local.latencies, time.Since(start))
				if code == http.StatusOK {
					local.ok++
				} else {
					local.failed++
				}
			}
			mu.Lock()
			total.ok += local.ok
			total.failed += local.failed
			total.latencies = append(total.latencies, local.latencies...)
			mu.Unlock()
		})
	}
	if during != nil {
		during()
	}
	wg.Wait()
	slices.Sort(total.latencies)
	return total
}
