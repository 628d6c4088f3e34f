package httpbreaker

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"testing/synctest"
	"time"
)

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
		got := tripRule(p, windowCounts{counts: counts{failure: uint64(tc.failures), success: uint64(tc.successes)}}) == ReasonFailureRate
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

func TestObserveModeNeverRejects(t *testing.T) {
	b, sink := newSet(t, WithPolicy(Policy{Mode: ModeObserve, ConsecutiveFailures: 2, OpenFor: time.Minute}))
	h := newStatusHandler(500)
	srv := serve(t, b, map[string]http.Handler{"p": h})
	got := hit(t, srv.URL+"/p/", 12)
	if got[500] != 12 {
		t.Fatalf("observe mode answered %v, want every request to reach the handler", got)
	}
	if n := h.calls.Load(); n != 12 {
		t.Fatalf("handler ran %d times, want 12", n)
	}
	s := status(t, b, "p")
	if s.State != StateOpen {
		t.Fatalf("state %v, want open: observe mode trips as enforce would", s.State)
	}
	if s.Totals.Failure != 2 || s.Totals.WouldReject != 10 || s.Totals.Rejected != 0 {
		t.Fatalf("totals %+v, want 2 failures and 10 would-be rejections", s.Totals)
	}
	changes := sink.matching("state changed")
	if len(changes) != 1 || changes[0].attrs["mode"] != "observe" || changes[0].attrs["to"] != "open" {
		t.Fatalf("logs %+v, want the trip logged with mode observe", changes)
	}
}

func TestDisabledModePassesThroughAndRecordsNothing(t *testing.T) {
	b, sink := newSet(t,
		WithPolicy(Policy{ConsecutiveFailures: 1}),
		WithKeyPolicy("p", Policy{Mode: ModeDisabled}))
	h := newStatusHandler(500)
	srv := serve(t, b, map[string]http.Handler{"p": h})
	if got := hit(t, srv.URL+"/p/", 10); got[500] != 10 {
		t.Fatalf("disabled answered %v, want the handler's 500 every time", got)
	}
	s := status(t, b, "p")
	if s.State != StateClosed || s.Totals != (Totals{}) || s.Window != (Counts{}) {
		t.Fatalf("status %+v, want closed with nothing recorded", s)
	}
	if logs := sink.all(); len(logs) != 0 {
		t.Fatalf("disabled breaker logged %+v", logs)
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

func TestGoexitInAClosedCallIsAFailureOfTheWindow(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 2}))
	h := b.Middleware("p")(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { runtime.Goexit() }))
	for want := range 2 {
		done := make(chan struct{})
		go func() {
			defer close(done)
			record(h, "/")
		}()
		<-done
		s := status(t, b, "p")
		if want == 0 && (s.Window.Failures != 1 || s.Window.InFlight != 0 || s.Totals.Failure != 1) {
			t.Fatalf("after one Goexit: window %+v totals %+v, want one failure and nothing in flight", s.Window, s.Totals)
		}
	}
	if st := b.State("p"); st != StateOpen {
		t.Fatalf("state %v after two Goexits with consecutive_failures 2, want open", st)
	}
}

// TestClosedPathAllocatesNothing holds what BenchmarkClosed and
// BenchmarkTransport measure: a call through a closed breaker, on either
// side and keyed either way, allocates nothing.
func TestClosedPathAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's sync.Pool drops writers at random: allocation counts are its own")
	}
	w, in := benchRequest()
	in.Pattern = "GET /api/catalog/entities"
	out := httptest.NewRequest(http.MethodGet, "http://api.example.com/v1/models", nil)
	base := cannedTransport{resp: &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody}}
	serve := func(h http.Handler) func() { return func() { h.ServeHTTP(w, in) } }
	send := func(rt http.RoundTripper) func() { return func() { _, _ = rt.RoundTrip(out) } }
	b := benchSet(t)
	for name, call := range map[string]func(){
		"Middleware":      serve(b.Middleware("catalog")(okHandler)),
		"KeyedMiddleware": serve(b.KeyedMiddleware(RoutePattern)(okHandler)),
		"Transport":       send(b.Transport("models", base)),
		"KeyedTransport":  send(b.KeyedTransport(Host, base)),
	} {
		call() // the key's breaker is made
		if n := testing.AllocsPerRun(200, call); n != 0 {
			t.Errorf("%s: %v allocations per call through a closed breaker, want 0", name, n)
		}
	}
}
