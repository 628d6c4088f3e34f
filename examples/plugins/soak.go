package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/httpbreaker/httpbreaker"
)

// The soak's load. Tenant keys come from the request (as a careless KeyFunc
// would take them) and churn far past soakMaxKeys; an IdleTTL drops the idle
// ones, so the set, its memory and its metric series must stay bounded.
const (
	soakWorkers  = 16
	soakTenants  = 5000 // distinct tenant keys the load cycles through
	soakMaxKeys  = 200
	soakIdleTTL  = 2 * time.Second
	soakFlapping = 1500 * time.Millisecond // how often a plugin's fault toggles
	soakHookCost = 20 * time.Millisecond   // a slow state-change hook
)

// soakSample is what the soak measures each second.
type soakSample struct {
	at         time.Duration
	goroutines int
	heap       uint64 // bytes in use after a collection
	series     int    // httpbreaker_ series in a scrape
	keys       int
}

// runSoak serves the plugin host on a free loopback port and loads it for
// d: plugins' faults flapping, tenant keys churning past WithMaxKeys, a slow
// hook, the status page and metrics polled. It prints the figures to out and
// returns an error if a request went unanswered or goroutines, heap or
// metric series grew over the run.
func runSoak(ctx context.Context, cfg httpbreaker.Config, d time.Duration, out io.Writer) error {
	var hookCalls atomic.Int64
	slowHook := func(httpbreaker.Event) {
		hookCalls.Add(1)
		time.Sleep(soakHookCost)
	}
	h, err := newHost(cfg, slog.New(slog.DiscardHandler), slices.Concat(quickCooldowns, []httpbreaker.Option{
		httpbreaker.WithMaxKeys(soakMaxKeys),
		httpbreaker.WithPolicy(httpbreaker.Policy{IdleTTL: soakIdleTTL}),
		httpbreaker.WithStateChangeHook(slowHook)})...)
	if err != nil {
		return err
	}
	defer h.close()
	tenants := h.breakers.KeyedMiddleware(func(r *http.Request) string { return "tenant-" + r.PathValue("tenant") })
	mux := http.NewServeMux()
	mux.Handle("/api/tenants/{tenant}", tenants(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rand.IntN(10) == 0 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		_, _ = io.WriteString(w, `{"ok":true}`)
	})))
	mux.Handle("/", h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: soakWorkers * 2}}
	defer client.CloseIdleConnections()

	fmt.Fprintf(out, "soak: %v of load on %s: %d workers over catalog, scaffolder, search and %d tenant keys (at most %d tracked, idle after %v);\n"+
		"faults flap every %v, a state-change hook takes %v, the status page and metrics are polled.\n\n",
		d, base, soakWorkers, soakTenants, soakMaxKeys, soakIdleTTL, soakFlapping, soakHookCost)

	load, stop := context.WithTimeout(ctx, d)
	defer stop()
	var sent, answered, failed, rejected atomic.Int64
	var firstErr atomic.Value
	var workers sync.WaitGroup
	paths := []string{"/api/catalog/entities", "/api/search/query?term=pay"}
	for range soakWorkers {
		workers.Go(func() {
			for load.Err() == nil {
				var path, method = paths[rand.IntN(len(paths))], http.MethodGet
				switch n := rand.IntN(10); {
				case n < 3:
					path = fmt.Sprintf("/api/tenants/%d", rand.IntN(soakTenants))
				case n < 5:
					path, method = "/api/scaffolder/tasks", http.MethodPost
				}
				sent.Add(1)
				status, err := soakRequest(client, method, base+path)
				switch {
				case err != nil && load.Err() != nil:
					sent.Add(-1) // cut off by the end of the soak
				case err != nil:
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				default:
					answered.Add(1)
					if status == http.StatusServiceUnavailable {
						rejected.Add(1)
					}
				}
			}
		})
	}
	workers.Go(func() { flapFaults(load, h.faults) })
	workers.Go(func() {
		every(load, 500*time.Millisecond, func() {
			for _, accept := range []string{"application/json", "text/html"} {
				if err := soakPoll(client, base+"/breakers", accept); err != nil && load.Err() == nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
	})

	var samples []soakSample
	start := time.Now()
	fmt.Fprintf(out, "%7s %10s %11s %11s %10s %7s %7s\n", "time", "requests", "goroutines", "heap", "series", "keys", "failed")
	every(load, time.Second, func() {
		s, err := soakMeasure(client, base, h.breakers)
		if err != nil {
			if load.Err() == nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
			return
		}
		s.at = time.Since(start)
		samples = append(samples, s)
		if len(samples)%max(1, int(d/time.Second)/20) == 0 {
			fmt.Fprintf(out, "%6.0fs %10d %11d %10.1fM %10d %7d %7d\n", s.at.Seconds(), answered.Load(), s.goroutines,
				float64(s.heap)/(1<<20), s.series, s.keys, failed.Load())
		}
	})
	workers.Wait()

	fmt.Fprintf(out, "\n%d requests answered (%d rejected by a breaker with a 503), %d not answered; %d state-change hook calls\n",
		answered.Load(), rejected.Load(), failed.Load(), hookCalls.Load())
	var problems []string
	if failed.Load() > 0 {
		problems = append(problems, fmt.Sprintf("%d requests got no answer (the first: %v)", failed.Load(), firstErr.Load()))
	}
	if rejected.Load() == 0 || hookCalls.Load() == 0 {
		problems = append(problems, "no breaker changed state: the soak did not exercise the breakers")
	}
	verdict, flat := soakFlat(samples)
	fmt.Fprint(out, verdict)
	if !flat {
		problems = append(problems, "the host grew during the soak")
	}
	if len(problems) > 0 {
		return errors.New("soak: " + strings.Join(problems, "; "))
	}
	fmt.Fprintln(out, "soak: flat, and every request was answered")
	return nil
}

// soakRequest sends one request and reads its answer whole.
func soakRequest(client *http.Client, method, url string) (int, error) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

func soakPoll(client *http.Client, url, accept string) error {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", accept)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

// soakMeasure takes one sample: goroutines and heap after a collection, and
// the breaker series of a scrape.
func soakMeasure(client *http.Client, base string, breakers *httpbreaker.Breakers) (soakSample, error) {
	resp, err := client.Get(base + "/metrics")
	if err != nil {
		return soakSample{}, err
	}
	defer resp.Body.Close()
	var s soakSample
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() {
		if strings.HasPrefix(lines.Text(), "httpbreaker_") {
			s.series++
		}
	}
	if err := lines.Err(); err != nil {
		return soakSample{}, err
	}
	s.keys = len(breakers.Snapshot())
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	s.heap = m.HeapAlloc
	s.goroutines = runtime.NumGoroutine()
	return s, nil
}

// flapFaults toggles scaffolder's and search's faults until ctx ends:
// scaffolder fails outright, search slows past its slow_call.
func flapFaults(ctx context.Context, fs *faults) {
	on := false
	every(ctx, soakFlapping, func() {
		on = !on
		if on {
			fs.set("scaffolder", fault{Status: http.StatusInternalServerError, ErrorRate: 0.8, Delay: 5 * time.Millisecond})
			fs.set("search", fault{Delay: 2500 * time.Millisecond})
		} else {
			fs.clear("scaffolder")
			fs.clear("search")
		}
	})
	fs.clear("scaffolder")
	fs.clear("search")
}

// soakFlat compares the end of the run with its settled start: the
// medians of the second and the last quarter of the samples. It allows the
// noise of a collector and of connections coming and going, not growth.
func soakFlat(samples []soakSample) (string, bool) {
	if len(samples) < 8 {
		return "too few samples to judge\n", false
	}
	q := len(samples) / 4
	median := func(part []soakSample, f func(soakSample) float64) float64 {
		v := make([]float64, len(part))
		for i, s := range part {
			v[i] = f(s)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	var b strings.Builder
	flat := true
	check := func(name string, f func(soakSample) float64, slack func(float64) float64, unit string) {
		settled, end := median(samples[q:2*q], f), median(samples[3*q:], f)
		ok := end <= settled+slack(settled)
		if !ok {
			flat = false
		}
		fmt.Fprintf(&b, "  %-10s settled %8.1f%s, at the end %8.1f%s: %s\n", name, settled, unit, end, unit, map[bool]string{true: "flat", false: "GREW"}[ok])
	}
	b.WriteString("\nsecond quarter against last quarter, medians:\n")
	check("goroutines", func(s soakSample) float64 { return float64(s.goroutines) }, func(v float64) float64 { return v/5 + 10 }, "")
	check("heap", func(s soakSample) float64 { return float64(s.heap) / (1 << 20) }, func(v float64) float64 { return v/2 + 2 }, " MiB")
	check("series", func(s soakSample) float64 { return float64(s.series) }, func(v float64) float64 { return v / 10 }, "")
	check("keys", func(s soakSample) float64 { return float64(s.keys) }, func(v float64) float64 { return v / 10 }, "")
	return b.String(), flat
}
