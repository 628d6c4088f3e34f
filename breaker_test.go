package httpbreaker

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sony/gobreaker/v2"
)

func gobreakerCounts(failures, successes uint32) gobreaker.Counts {
	return gobreaker.Counts{Requests: failures + successes, TotalFailures: failures, TotalSuccesses: successes}
}

func TestTripsOnFailureRate(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{FailureRate: 0.5, MinRequests: 10, ConsecutiveFailures: Off}))
	h := newStatusHandler(200)
	srv := serve(t, b, map[string]http.Handler{"p": h})

	// Alternate success and failure: the rate is 0.5 from the second request
	// on, but the breaker must wait for MinRequests outcomes.
	for i := range 9 {
		h.set([]int{200, 500}[i%2])
		get(t, srv.URL+"/p/")
		if st := b.State("p"); st != StateClosed {
			t.Fatalf("after %d outcomes (%d failures): state %v, want closed", i+1, (i+1)/2, st)
		}
	}
	h.set(500)
	get(t, srv.URL+"/p/") // 10 outcomes, 5 failures
	if st := b.State("p"); st != StateOpen {
		t.Fatalf("after 10 outcomes, 5 failures: state %v, want open", st)
	}
}

func TestFailureRateBelowThresholdDoesNotTrip(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{FailureRate: 0.5, MinRequests: 10, ConsecutiveFailures: Off}))
	h := newStatusHandler(200)
	srv := serve(t, b, map[string]http.Handler{"p": h})
	// 4 failures in 10, then success, failure pairs keep the rate under 0.5.
	for i := range 40 {
		h.set([]int{200, 200, 500}[i%3])
		get(t, srv.URL+"/p/")
	}
	if st := b.State("p"); st != StateClosed {
		t.Fatalf("a third of requests failing with failure_rate 0.5: state %v, want closed", st)
	}
}

func TestFailureRateIgnoresRequestsInFlightAndExcluded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{FailureRate: 0.3, MinRequests: 10, ConsecutiveFailures: Off}))
		release := make(chan struct{})
		h := b.Middleware("p")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/slow":
				<-release
			case "/gone":
				w.WriteHeader(http.StatusBadGateway) // after the client left: excluded
			default:
				w.WriteHeader(http.StatusInternalServerError)
			}
		}))
		for range 5 {
			go record(h, "/slow")
		}
		synctest.Wait() // five requests in flight
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		for range 5 {
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/gone", nil).WithContext(ctx))
		}
		for range 5 {
			record(h, "/fail")
		}
		// 15 requests admitted, 5 of them failed: a third, over failure_rate.
		// But only those 5 are outcomes that count, fewer than MinRequests.
		if st := b.State("p"); st != StateClosed {
			t.Fatalf("5 failures, 5 excluded, 5 in flight: state %v, want closed", st)
		}
		close(release)
	})
}

func TestReadyToTripRate(t *testing.T) {
	// The rate compares like the decimal the user wrote: 3 of 10 is 0.3,
	// although 0.3 * 10 > 3 in floating point.
	for _, tc := range []struct {
		rate                float64
		failures, successes uint32
		want                bool
	}{
		{0.3, 3, 7, true},
		{0.3, 2, 8, false},
		{0.7, 7, 3, true},
		{0.1, 1, 9, true},
		{1, 9, 1, false},
		{1, 10, 0, true},
		{0.5, 4, 5, false}, // 9 outcomes, below MinRequests
	} {
		p := Policy{FailureRate: tc.rate, MinRequests: 10, ConsecutiveFailures: Off}.resolve()
		br := &breaker{policy: p}
		got := br.readyToTrip(&instance{}, gobreakerCounts(tc.failures, tc.successes))
		if got != tc.want {
			t.Errorf("rate %v with %d failures, %d successes: trip = %v, want %v", tc.rate, tc.failures, tc.successes, got, tc.want)
		}
	}
}

func TestTripsOnConsecutiveFailures(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 3, FailureRate: Off}))
	h := newStatusHandler(500)
	srv := serve(t, b, map[string]http.Handler{"p": h})

	hit(t, srv.URL+"/p/", 2)
	h.set(200)
	get(t, srv.URL+"/p/") // a success resets the run
	h.set(500)
	hit(t, srv.URL+"/p/", 2)
	if st := b.State("p"); st != StateClosed {
		t.Fatalf("after 2 failures in a row: state %v, want closed", st)
	}
	get(t, srv.URL+"/p/")
	if st := b.State("p"); st != StateOpen {
		t.Fatalf("after 3 failures in a row: state %v, want open", st)
	}
}

func TestConsecutiveFailuresCanBeTurnedOff(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: Off, FailureRate: 0.5, MinRequests: 20}))
	h := newStatusHandler(500)
	srv := serve(t, b, map[string]http.Handler{"p": h})
	hit(t, srv.URL+"/p/", 19)
	if st := b.State("p"); st != StateClosed {
		t.Fatalf("19 failures in a row, consecutive_failures off, min_requests 20: state %v, want closed", st)
	}
	get(t, srv.URL+"/p/")
	if st := b.State("p"); st != StateOpen {
		t.Fatalf("20 failures, min_requests 20: state %v, want open", st)
	}
}

func TestKeysAreIsolated(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 3}))
	catalog, scaffolder := newStatusHandler(200), newStatusHandler(500)
	srv := serve(t, b, map[string]http.Handler{"catalog": catalog, "scaffolder": scaffolder})

	for range 10 {
		get(t, srv.URL+"/scaffolder/")
		if code, _, _ := get(t, srv.URL+"/catalog/"); code != 200 {
			t.Fatalf("catalog answered %d while scaffolder failed, want 200", code)
		}
	}
	if st := b.State("scaffolder"); st != StateOpen {
		t.Fatalf("scaffolder: state %v, want open", st)
	}
	if st := b.State("catalog"); st != StateClosed {
		t.Fatalf("catalog: state %v, want closed", st)
	}
	if n := catalog.calls.Load(); n != 10 {
		t.Fatalf("catalog handler ran %d times, want 10", n)
	}
	if n := scaffolder.calls.Load(); n != 3 {
		t.Fatalf("scaffolder handler ran %d times, want 3 (then the breaker rejected)", n)
	}
}

func TestRejectResponse(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: 30 * time.Second}))
	h := newStatusHandler(500)
	srv := serve(t, b, map[string]http.Handler{"scaffolder": h})
	get(t, srv.URL+"/scaffolder/")

	code, header, body := get(t, srv.URL+"/scaffolder/")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", code)
	}
	if n := h.calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1: an open breaker must not run it", n)
	}
	for name, want := range map[string]string{
		"Content-Type":  "application/problem+json",
		"Cache-Control": "no-store",
		// The cooldown began a moment ago: 29.99...s rounds up to 30.
		"Retry-After": "30",
	} {
		if got := header.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	var problem map[string]any
	if err := json.Unmarshal([]byte(body), &problem); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, body)
	}
	want := map[string]any{
		"title":  "Service Unavailable",
		"status": 503.0,
		"detail": `circuit breaker "scaffolder" is open; retry after the delay in Retry-After`,
		"key":    "scaffolder",
		"state":  "open",
	}
	if len(problem) != len(want) {
		t.Errorf("body has members %v, want exactly %v", problem, want)
	}
	for k, v := range want {
		if problem[k] != v {
			t.Errorf("body %s: %v, want %v", k, problem[k], v)
		}
	}
}

func TestRejectBodyEscapesKey(t *testing.T) {
	key := "GET /a/{id} \"quoted\" \\ <tag>"
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1}))
	h := b.Middleware(key)(newStatusHandler(500))
	record(h, "/")
	rec := record(h, "/")
	var problem struct{ Key, Detail string }
	if err := json.Unmarshal(rec.Body.Bytes(), &problem); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, rec.Body)
	}
	if problem.Key != key {
		t.Fatalf("key %q, want %q", problem.Key, key)
	}
}

func TestRejectionsAreNotFailures(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 2, OpenFor: time.Minute}))
	srv := serve(t, b, map[string]http.Handler{"p": newStatusHandler(500)})
	hit(t, srv.URL+"/p/", 2)
	if got := hit(t, srv.URL+"/p/", 20); got[503] != 20 {
		t.Fatalf("got %v, want 20 rejections", got)
	}
	s := status(t, b, "p")
	if s.Totals.Failure != 2 || s.Totals.Rejected != 20 {
		t.Fatalf("totals %+v, want 2 failures and 20 rejections", s.Totals)
	}
	if s.Window.Failures != 0 {
		t.Fatalf("window %+v: rejections reached the breaker's counts", s.Window)
	}
}

func TestNestedBreakerRejectionIsNotAFailureOutside(t *testing.T) {
	b, _ := newSet(t,
		WithKeyPolicy("inner", Policy{ConsecutiveFailures: 2, OpenFor: time.Minute}),
		WithKeyPolicy("outer", Policy{ConsecutiveFailures: 5}))
	inner := b.Middleware("inner")(newStatusHandler(500))
	outer := b.Middleware("outer")(inner)
	for range 2 {
		record(outer, "/")
	}
	for range 10 {
		if rec := record(outer, "/"); rec.Code != 503 {
			t.Fatalf("status %d, want the inner breaker's 503", rec.Code)
		}
	}
	if s := status(t, b, "outer"); s.Totals.Excluded != 10 || s.Totals.Failure != 2 {
		t.Fatalf("outer totals %+v, want the 10 inner rejections excluded", s.Totals)
	}
	if st := b.State("outer"); st != StateClosed {
		t.Fatalf("outer state %v, want closed: 2 failures then 10 of the inner breaker's rejections", st)
	}
}

func TestHalfOpenAdmitsAtMostNProbes(t *testing.T) {
	const probes = 3
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: 50 * time.Millisecond, HalfOpenRequests: probes}))
	var entered atomic.Int64
	release := make(chan struct{})
	failing := atomic.Bool{}
	failing.Store(true)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(500)
			return
		}
		entered.Add(1)
		<-release
	})
	srv := serve(t, b, map[string]http.Handler{"p": h})
	get(t, srv.URL+"/p/")
	failing.Store(false)
	waitFor(t, "half-open", func() bool { return b.State("p") == StateHalfOpen })

	const clients = 100
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	start := make(chan struct{})
	for range clients {
		wg.Go(func() {
			<-start
			resp, err := http.Get(srv.URL + "/p/")
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		})
	}
	close(start)
	waitFor(t, "all but the probes rejected", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return codes[503] == clients-probes
	})
	if n := entered.Load(); n != probes {
		t.Fatalf("%d requests reached the handler in half-open, want %d", n, probes)
	}
	close(release)
	wg.Wait()
	if codes[200] != probes {
		t.Fatalf("codes %v, want %d probes answered 200", codes, probes)
	}
	if st := b.State("p"); st != StateClosed {
		t.Fatalf("after %d successful probes: state %v, want closed", probes, st)
	}
}

func TestRecoversToClosed(t *testing.T) {
	b, sink := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 2, OpenFor: 50 * time.Millisecond, HalfOpenRequests: 2}))
	h := newStatusHandler(500)
	srv := serve(t, b, map[string]http.Handler{"p": h})
	hit(t, srv.URL+"/p/", 2)
	h.set(200)
	waitFor(t, "half-open", func() bool { return b.State("p") == StateHalfOpen })
	if got := hit(t, srv.URL+"/p/", 2); got[200] != 2 {
		t.Fatalf("probes got %v, want 2 x 200", got)
	}
	if st := b.State("p"); st != StateClosed {
		t.Fatalf("state %v, want closed", st)
	}
	if got := hit(t, srv.URL+"/p/", 20); got[200] != 20 {
		t.Fatalf("after closing got %v, want 20 x 200", got)
	}
	want := []string{"p: closed -> open", "p: open -> half_open", "p: half_open -> closed"}
	if got := sink.changes(); !slices.Equal(got, want) {
		t.Fatalf("logged changes %q, want %q", got, want)
	}
}

func TestFailedProbeReopensWithLongerCooldown(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Second, MaxOpenFor: time.Minute}))
	srv := serve(t, b, map[string]http.Handler{"p": newStatusHandler(500)})
	get(t, srv.URL+"/p/")
	if _, header, _ := get(t, srv.URL+"/p/"); header.Get("Retry-After") != "1" {
		t.Fatalf("first cooldown: Retry-After %q, want 1", header.Get("Retry-After"))
	}
	waitFor(t, "half-open", func() bool { return b.State("p") == StateHalfOpen })
	if code, _, _ := get(t, srv.URL+"/p/"); code != 500 {
		t.Fatalf("probe: status %d, want the handler's 500", code)
	}
	if st := b.State("p"); st != StateOpen {
		t.Fatalf("after a failed probe: state %v, want open", st)
	}
	// Twice the first cooldown, less at most a fifth of jitter: 1.6s to 2s.
	s := status(t, b, "p")
	if s.RetryAfter <= 1200*time.Millisecond || s.RetryAfter > 2*time.Second {
		t.Fatalf("second cooldown has %v left, want about 1.6s to 2s", s.RetryAfter)
	}
	if _, header, _ := get(t, srv.URL+"/p/"); header.Get("Retry-After") != "2" {
		t.Fatalf("second cooldown: Retry-After %q, want 2", header.Get("Retry-After"))
	}
}

func TestStateOfUnknownKeyIsClosed(t *testing.T) {
	b, _ := newSet(t)
	if st := b.State("nobody"); st != StateClosed {
		t.Fatalf("state %v, want closed", st)
	}
	if n := len(b.Snapshot()); n != 0 {
		t.Fatalf("State created a breaker: %d in the snapshot", n)
	}
}

func TestMiddlewareCreatesTheBreakerUpFront(t *testing.T) {
	b, _ := newSet(t, WithKeyPolicy("catalog", Policy{Mode: ModeObserve, OpenFor: time.Minute}))
	b.Middleware("catalog")
	snap := b.Snapshot()
	if len(snap) != 1 || snap[0].Key != "catalog" || snap[0].State != StateClosed {
		t.Fatalf("snapshot %+v, want catalog closed", snap)
	}
	if p := snap[0].Policy; p.Mode != ModeObserve || p.OpenFor != time.Minute || p.FailureRate != 0.5 {
		t.Fatalf("policy %+v, want the key's override on top of the defaults", p)
	}
}

func TestMiddlewarePanicsOnEmptyKey(t *testing.T) {
	b, _ := newSet(t)
	defer func() {
		if p := recover(); p == nil {
			t.Fatal("Middleware(\"\") did not panic")
		}
	}()
	b.Middleware("")
}

func TestMaxKeysBoundsBreakersAndPassesTheRestThrough(t *testing.T) {
	b, sink := newSet(t, WithMaxKeys(2), WithPolicy(Policy{ConsecutiveFailures: 1}))
	h := newStatusHandler(500)
	mw := b.KeyedMiddleware(func(r *http.Request) string { return r.URL.Query().Get("tenant") })(h)
	for _, tenant := range []string{"a", "b", "c", "d", "c"} {
		record(mw, "/?tenant="+tenant)
	}
	// c and d are past the bound: their failures trip nothing and their
	// requests keep reaching the handler.
	for range 3 {
		if rec := record(mw, "/?tenant=c"); rec.Code != 500 {
			t.Fatalf("untracked key: status %d, want the handler's 500", rec.Code)
		}
	}
	var keys []string
	for _, s := range b.Snapshot() {
		keys = append(keys, s.Key)
	}
	if !slices.Equal(keys, []string{"a", "b"}) {
		t.Fatalf("keys %q, want [a b]", keys)
	}
	if n := b.untracked.Load(); n != 6 {
		t.Fatalf("untracked count %d, want 6", n)
	}
	if logs := sink.matching("key limit reached"); len(logs) != 1 || logs[0].attrs["first_untracked_key"] != "c" {
		t.Fatalf("key limit logs %+v, want one naming c", logs)
	}
}

func TestConcurrentKeysUnderLoad(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 5, OpenFor: time.Millisecond, HalfOpenRequests: 1}))
	mw := b.KeyedMiddleware(func(r *http.Request) string { return r.URL.Path })
	var n atomic.Int64
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%3 == 0 {
			w.WriteHeader(500)
		}
	}))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				record(h, "/k"+string(rune('a'+(g+i)%5)))
				if i%50 == 0 {
					b.Snapshot()
				}
			}
		})
	}
	wg.Wait()
	var total uint64
	for _, s := range b.Snapshot() {
		c := s.Totals
		total += c.Success + c.Failure + c.Excluded + c.Rejected
	}
	if total != 8*500 {
		t.Fatalf("counted %d requests, want %d: each request counts once", total, 8*500)
	}
}

func TestStatusJSON(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 4, OpenFor: 30 * time.Second}))
		handler := newStatusHandler(200)
		h := b.Middleware("catalog")(handler)
		record(h, "/")
		handler.set(500)
		record(h, "/")
		out, err := json.Marshal(b.Snapshot()[0])
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		window := got["window"].(map[string]any)
		if got["key"] != "catalog" || got["state"] != "closed" || got["mode"] != "enforce" ||
			got["retry_after_seconds"] != 0.0 || window["failure_rate"] != 0.5 || window["failures"] != 1.0 ||
			got["totals"].(map[string]any)["success"] != 1.0 || got["policy"].(map[string]any)["open_for"] != "30s" {
			t.Fatalf("status JSON %s", out)
		}
		for range 3 {
			record(h, "/")
		}
		time.Sleep(10 * time.Second)
		out, _ = json.Marshal(b.Snapshot()[0])
		if err := json.Unmarshal(out, &got); err != nil || got["state"] != "open" || got["retry_after_seconds"] != 20.0 {
			t.Fatalf("open status JSON %s", out)
		}
	})
}
