package httpbreaker

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
)

// TestAnIdleKeysWindowEmptiesWithTime holds that the window rolls with
// time whenever it is read, not only when a request comes: three failures,
// then a minute with no request, and the snapshot, the status JSON and the
// page say the window is empty.
func TestAnIdleKeysWindowEmptiesWithTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: Off, MinRequests: 100}))
		h := b.Middleware("p")(newStatusHandler(500))
		for range 3 {
			record(h, "/")
		}
		if s := status(t, b, "p"); s.Window.Failures != 3 || s.Window.FailureRate() != 1 {
			t.Fatalf("window %+v, want the 3 failures", s.Window)
		}
		time.Sleep(time.Minute)
		if s := status(t, b, "p"); s.Window.Failures != 0 || s.Window.FailureRate() != 0 || s.Totals.Failures != 3 {
			t.Errorf("a minute later with no request: window %+v, totals %+v; want an empty window and the totals kept", s.Window, s.Totals)
		}
		page := httptest.NewRecorder()
		b.StatusHandler().ServeHTTP(page, httptest.NewRequest(http.MethodGet, "/", nil))
		var got StatusPage
		if err := json.Unmarshal(page.Body.Bytes(), &got); err != nil || len(got.Keys) != 1 || got.Keys[0].Window.Failures != 0 {
			t.Errorf("the status JSON still shows old outcomes: %v %s", err, page.Body)
		}
	})
}

// TestTheFailureRateIsCheckedAfterASuccess holds that the rate is judged
// after every outcome: 9 failures then 1 success is 10 outcomes at 90%, and
// the 11th request is rejected.
func TestTheFailureRateIsCheckedAfterASuccess(t *testing.T) {
	b, sink := newSet(t, WithPolicy(Policy{FailureRate: 0.5, MinRequests: 10, ConsecutiveFailures: Off}))
	up := newStatusHandler(500)
	h := b.Middleware("p")(up)
	for range 9 {
		record(h, "/")
	}
	if st := b.State("p"); st != StateClosed {
		t.Fatalf("after 9 outcomes: %v, want closed (MinRequests is 10)", st)
	}
	up.set(200)
	record(h, "/")
	if rec := record(h, "/"); rec.Code != http.StatusServiceUnavailable || up.calls.Load() != 10 {
		t.Fatalf("the 11th request got %d and the handler ran %d times, want 503 and 10", rec.Code, up.calls.Load())
	}
	trips := sink.matching("state changed")
	if len(trips) != 1 || trips[0].attrs["reason"] != "failure_rate" || trips[0].attrs["failures"] != "9" || trips[0].attrs["successes"] != "1" {
		t.Fatalf("trip records %+v, want one, on failure_rate at 9 failures and 1 success", trips)
	}
}

// TestASuccessNeverTripsTheBreakerItCouldNot holds the other side of the
// check: successes after MinRequests only lower the rate.
func TestASuccessNeverTripsTheBreakerItCouldNot(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{FailureRate: 0.5, MinRequests: 4, ConsecutiveFailures: Off}))
	up := newStatusHandler(200)
	h := b.Middleware("p")(up)
	for i := range 20 {
		up.set([]int{200, 200, 500}[i%3]) // a third fail
		record(h, "/")
	}
	if st := b.State("p"); st != StateClosed {
		t.Fatalf("a third failing: %v, want closed", st)
	}
}

func TestLastCallsJudgesTheLastNOutcomesWhateverTheirAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, sink := newSet(t, WithPolicy(Policy{LastCalls: 5, MinRequests: 5, FailureRate: 0.6, ConsecutiveFailures: Off}))
		up := newStatusHandler(500)
		h := b.Middleware("p")(up)
		record(h, "/")
		record(h, "/")
		time.Sleep(time.Hour) // a count window does not forget with time
		up.set(200)
		for range 3 {
			record(h, "/")
		}
		if s := status(t, b, "p"); s.State != StateClosed || s.Window.Failures != 2 || s.Window.Successes != 3 {
			t.Fatalf("2 failures, 3 successes of the last 5: %v with %+v, want closed with all five", s.State, s.Window)
		}
		// The oldest failures leave as new calls come: still 2 of 5 ...
		up.set(500)
		record(h, "/") // f s s s f: the first failure left
		if s := status(t, b, "p"); s.Window.Failures != 2 || s.Window.Successes != 3 || s.State != StateClosed {
			t.Fatalf("after a sixth call: %v with %+v, want the last five, 2 failed", s.State, s.Window)
		}
		record(h, "/") // s s s f f
		record(h, "/") // s s f f f: 3 of 5 = 60%
		if st := b.State("p"); st != StateOpen {
			t.Fatalf("3 failures of the last 5 calls: %v, want open", st)
		}
		if trips := sink.matching("state changed"); len(trips) != 1 || trips[0].attrs["failures"] != "3" || trips[0].attrs["successes"] != "2" {
			t.Fatalf("trip %+v, want it on 3 failures and 2 successes", trips)
		}
	})
}

func TestLastCallsAndAWindowInOnePolicyIsAnError(t *testing.T) {
	for _, tc := range []struct {
		opts []Option
		want []string
	}{
		{[]Option{WithPolicy(Policy{LastCalls: 100, Window: 5 * time.Second})}, []string{"defaults.last_calls", "window"}},
		{[]Option{WithPolicy(Policy{LastCalls: 100}), WithKeyPolicy("k", Policy{Window: time.Second})},
			[]string{"keys.k.window", "last_calls"}},
		{[]Option{WithPolicy(Policy{LastCalls: 5, MinRequests: 10})}, []string{"last_calls", "min_requests"}},
	} {
		_, err := New(tc.opts...)
		for _, want := range tc.want {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("New: %v, want an error naming %s", err, want)
			}
		}
	}
	// A key that turns the defaults' count window off may set a time window.
	if _, err := New(WithPolicy(Policy{LastCalls: 100}), WithKeyPolicy("k", Policy{LastCalls: Off, Window: time.Second})); err != nil {
		t.Errorf("last_calls off with a window: %v", err)
	}
}

// slowHandler answers 200 or code after sleeping d (a fake sleep in a
// synctest bubble).
func slowHandler(d time.Duration, code int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(d)
		w.WriteHeader(code)
	})
}

func TestSlowCallRateTripsOnSlowCallsThatSucceeded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		b, sink := newSet(t, WithRegisterer(reg), WithPolicy(Policy{SlowCall: 100 * time.Millisecond, SlowCallRate: 0.5,
			MinRequests: 4, ConsecutiveFailures: 2}))
		fast := b.Middleware("p")(newStatusHandler(200))
		slow := b.Middleware("p")(slowHandler(200*time.Millisecond, 200))
		record(fast, "/")
		record(fast, "/")
		record(slow, "/")
		record(slow, "/") // two slow calls in a row are no failures in a row
		if st := b.State("p"); st != StateOpen {
			t.Fatalf("2 slow calls of 4: %v, want open on the slow call rate", st)
		}
		s := status(t, b, "p")
		if s.Totals.Slow != 2 || s.Totals.Successes != 2 || s.Totals.Failures != 0 || s.LastTrip.Slow != 2 {
			t.Errorf("totals %+v, trip %+v: want 2 slow calls counted as slow, not failed", s.Totals, s.LastTrip)
		}
		if trips := sink.matching("state changed"); len(trips) != 1 || trips[0].attrs["reason"] != "slow_call_rate" || trips[0].attrs["slow"] != "2" {
			t.Errorf("trip records %+v, want one on slow_call_rate with slow=2", trips)
		}
		if n := gatheredRequests(t, reg, "p", "slow"); n != 2 {
			t.Errorf("requests_total{result=slow} = %v, want 2", n)
		}
	})
}

func TestWithSlowCallRateASlowFailureCountsInBothRates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{SlowCall: 100 * time.Millisecond, SlowCallRate: 0.9, FailureRate: 0.5,
			MinRequests: 2, ConsecutiveFailures: Off}))
		record(b.Middleware("p")(newStatusHandler(200)), "/")
		record(b.Middleware("p")(slowHandler(time.Second, 500)), "/")
		s := status(t, b, "p")
		if s.State != StateOpen || s.LastTrip == nil || s.LastTrip.Reason != ReasonFailureRate || s.LastTrip.Failures != 1 || s.LastTrip.Slow != 1 {
			t.Fatalf("%v, last trip %+v: want open on failure_rate, the slow failure counted as a failure and as slow", s.State, s.LastTrip)
		}
	})
}

func TestWithoutSlowCallRateASlowCallIsAFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{SlowCall: 100 * time.Millisecond, ConsecutiveFailures: 2}))
		h := b.Middleware("p")(slowHandler(time.Second, 200))
		record(h, "/")
		record(h, "/")
		if s := status(t, b, "p"); s.State != StateOpen || s.Totals.Failures != 2 || s.Totals.Slow != 0 {
			t.Fatalf("%v with totals %+v, want open after 2 slow failures", s.State, s.Totals)
		}
	})
}

func TestSlowCallRateNeedsSlowCall(t *testing.T) {
	_, err := New(WithPolicy(Policy{SlowCallRate: 0.5}))
	if err == nil || !strings.Contains(err.Error(), "defaults.slow_call_rate") || !strings.Contains(err.Error(), "slow_call") {
		t.Fatalf("New: %v, want an error naming slow_call_rate and slow_call", err)
	}
}

// TestConsecutiveFailuresThatLeftTheWindowDoNotCount: four failures, a
// window's time, then one more is one failure in a row, not five.
func TestConsecutiveFailuresThatLeftTheWindowDoNotCount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 5, FailureRate: Off}))
		h := b.Middleware("p")(newStatusHandler(500))
		for range 4 {
			record(h, "/")
		}
		time.Sleep(11 * time.Second)
		record(h, "/")
		if s := status(t, b, "p"); s.State != StateClosed || s.Window.ConsecutiveFailures != 1 {
			t.Fatalf("%v with %+v, want closed with 1 failure in a row", s.State, s.Window)
		}
	})
}

// TestTheWindowCountsEveryOutcomeUnderLoad sends outcomes from many
// goroutines at once: the window and the totals count each exactly once.
func TestTheWindowCountsEveryOutcomeUnderLoad(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: Off, FailureRate: Off, SlowCall: time.Hour, SlowCallRate: 1,
		Window: time.Hour}))
	ok := b.Middleware("p")(newStatusHandler(200))
	failing := b.Middleware("p")(newStatusHandler(500))
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 500 {
				if (g+i)%4 == 0 {
					record(failing, "/")
				} else {
					record(ok, "/")
				}
			}
		})
	}
	wg.Wait()
	s := status(t, b, "p")
	if s.Window.Failures != 2000 || s.Window.Successes != 6000 || s.Totals.Failures != 2000 || s.Totals.Successes != 6000 || s.Window.InFlight != 0 {
		t.Fatalf("window %+v, totals %+v: want 2000 failures and 6000 successes in both, none in flight", s.Window, s.Totals)
	}
}

// gatheredRequests returns requests_total{key,result} from reg.
func gatheredRequests(t *testing.T, reg *prometheus.Registry, key, result string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if !strings.HasSuffix(f.GetName(), "requests_total") {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["key"] == key && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no requests_total{key=%q,result=%q}", key, result)
	return 0
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

func TestTripRuleRate(t *testing.T) {
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
		got := tripRule(&p, windowCounts{outcomeCounts: outcomeCounts{failure: uint64(tc.failures), success: uint64(tc.successes)}}) == ReasonFailureRate
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

func TestWindowForgetsOldOutcomes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{
			FailureRate: 0.5, MinRequests: 4, ConsecutiveFailures: Off,
			Window: 10 * time.Second, Buckets: 10,
		}))
		handler := newStatusHandler(500)
		h := b.Middleware("p")(handler)
		for range 3 {
			record(h, "/")
		}
		// The three failures leave the window one bucket at a time.
		time.Sleep(10 * time.Second)
		record(h, "/")
		s := status(t, b, "p")
		if s.State != StateClosed || s.Window.Failures != 1 {
			t.Fatalf("after the window passed: %v with %+v, want closed with 1 failure", s.State, s.Window)
		}
		// Within the window, they add up: 4 failures of 4 trips it.
		for range 3 {
			time.Sleep(time.Second)
			record(h, "/")
		}
		if st := b.State("p"); st != StateOpen {
			t.Fatalf("4 failures within the window: state %v, want open", st)
		}
	})
}

func TestWindowRollsByBucket(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{
			FailureRate: 0.5, MinRequests: 10, ConsecutiveFailures: Off,
			Window: 10 * time.Second, Buckets: 5,
		}))
		h := b.Middleware("p")(newStatusHandler(200))
		for i := range 6 {
			if i > 0 {
				time.Sleep(2 * time.Second) // one bucket
			}
			record(h, "/")
		}
		// Six successes two seconds apart: the window of five buckets holds
		// the last five.
		if got := status(t, b, "p").Window.Successes; got != 5 {
			t.Fatalf("window holds %d successes, want 5", got)
		}
	})
}

func TestHotStructsFillALine(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the padding is written for 64-bit layouts: on a 32-bit port the structs are smaller, " +
			"and they are left unaligned there (such ports run on few cores, where a shared line costs little)")
	}
	for name, size := range map[string]uintptr{
		"keyHandler":   unsafe.Sizeof(keyHandler{}),
		"keyedHandler": unsafe.Sizeof(keyedHandler{}),
		"keyRef":       unsafe.Sizeof(keyRef{}),
		"statusWriter": unsafe.Sizeof(statusWriter{}),
		"stripe":       unsafe.Sizeof(stripe{}),
	} {
		if size%64 != 0 {
			t.Errorf("%s is %d bytes, not a whole number of cache lines: fix its padding", name, size)
		}
	}
}

// TestAWindowThatLosesItsSuccessesTripsAtTheNextCall: a roll that drops
// old successes can make the rate hold with no new failure; the next call
// checks it.
func TestAWindowThatLosesItsSuccessesTripsAtTheNextCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{FailureRate: 0.5, MinRequests: 10, ConsecutiveFailures: Off,
			Window: 10 * time.Second, Buckets: 10}))
		defer b.Close()
		up := newStatusHandler(200)
		h := b.Middleware("p")(up)
		for range 12 {
			record(h, "/") // 12 successes, in the window's first bucket
		}
		time.Sleep(5 * time.Second)
		up.set(500)
		for range 10 {
			record(h, "/") // 10 failures: 10 of 22, under the rate
		}
		if st := b.State("p"); st != StateClosed {
			t.Fatalf("10 failures of 22: %v, want closed", st)
		}
		time.Sleep(5 * time.Second) // the successes' bucket leaves: 10 of 10, and the next call makes 10 of 11
		up.set(200)
		record(h, "/")
		if st := b.State("p"); st != StateOpen {
			t.Fatalf("after the successes left the window: %v, want open", st)
		}
	})
}

// TestAHealthyKeyNeverWakesTheEngine: successes alone, over many rolls,
// never reach gobreaker, whose instance is not even made.
func TestAHealthyKeyNeverWakesTheEngine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{Window: time.Second, Buckets: 10}))
		defer b.Close()
		h := b.Middleware("p")(newStatusHandler(200))
		for range 100 {
			record(h, "/")
			time.Sleep(37 * time.Millisecond)
		}
		if b.lookup("p").window.engine.Load() != nil {
			t.Fatal("a key that only succeeded made a gobreaker instance")
		}
	})
}

// TestTheWindowsSumOfEndedBucketsIsTheirSum rolls a window by every
// pattern of skipped buckets and holds its running sum to the buckets it
// holds.
func TestTheWindowsSumOfEndedBucketsIsTheirSum(t *testing.T) {
	p := Policy{Window: 10 * time.Second, Buckets: 10}
	var c counters
	w := &tripWindow{}
	w.setUp(&p, &c, &clock{epoch: time.Now()}, 0)
	rng := rand.New(rand.NewPCG(3, 4))
	now := int64(0)
	for range 2000 {
		for range rng.IntN(5) {
			c.inc([]int{countSuccess, countFailure, countExcluded, countSlowSuccess}[rng.IntN(4)], 0)
		}
		now += rng.Int64N(int64(3 * time.Second))
		w.rollTo(now)
		var want outcomeCounts
		for k := w.cur - 9; k < w.cur; k++ {
			want = want.plus(w.ring[((k%10)+10)%10].asCounts())
		}
		if w.ended != want {
			t.Fatalf("at bucket %d the running sum is %+v, the buckets hold %+v", w.cur, w.ended, want)
		}
	}
}
