package httpbreaker

// These tests run in a synctest bubble: time.Now, for this package and for
// gobreaker alike, is a fake clock that moves only when every goroutine in
// the bubble is blocked, so time.Sleep(d) advances it by exactly d.

import (
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestCooldownIsExactlyOpenFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: 30 * time.Second}))
		h := b.Middleware("p")(newStatusHandler(500))
		record(h, "/")
		time.Sleep(30 * time.Second)
		if st := b.State("p"); st != StateOpen {
			t.Fatalf("at exactly OpenFor: state %v, want open", st)
		}
		if rec := record(h, "/"); rec.Header().Get("Retry-After") != "1" {
			t.Fatalf("Retry-After %q at the end of the cooldown, want the minimum 1", rec.Header().Get("Retry-After"))
		}
		time.Sleep(time.Nanosecond)
		if st := b.State("p"); st != StateHalfOpen {
			t.Fatalf("just after OpenFor: state %v, want half_open", st)
		}
	})
}

func TestCooldownDoublesWithJitterUpToMaxOpenForAndResetsOnClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const openFor, maxOpenFor = 10 * time.Second, 60 * time.Second
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: openFor, MaxOpenFor: maxOpenFor, HalfOpenRequests: 1}))
		handler := newStatusHandler(500)
		h := b.Middleware("p")(handler)

		record(h, "/") // trips from closed: exactly OpenFor
		cooldown := status(t, b, "p").RetryAfter
		if cooldown != openFor {
			t.Fatalf("first cooldown %v, want %v", cooldown, openFor)
		}
		for i, nominal := range []time.Duration{20 * time.Second, 40 * time.Second, 60 * time.Second, 60 * time.Second} {
			time.Sleep(cooldown)
			if st := b.State("p"); st != StateOpen {
				t.Fatalf("cooldown %d: state %v at its last instant, want open", i, st)
			}
			time.Sleep(time.Nanosecond)
			if rec := record(h, "/"); rec.Code != 500 { // the probe fails
				t.Fatalf("cooldown %d: probe got %d, want the handler's 500", i, rec.Code)
			}
			cooldown = status(t, b, "p").RetryAfter
			if cooldown > nominal || cooldown < nominal*4/5 {
				t.Fatalf("after failed probe %d: cooldown %v, want in [%v, %v]", i+1, cooldown, nominal*4/5, nominal)
			}
		}

		// A probe that succeeds closes the breaker, and the next trip waits
		// OpenFor again.
		time.Sleep(cooldown + time.Nanosecond)
		handler.set(200)
		record(h, "/")
		if st := b.State("p"); st != StateClosed {
			t.Fatalf("after a good probe: state %v, want closed", st)
		}
		handler.set(500)
		record(h, "/")
		if got := status(t, b, "p").RetryAfter; got != openFor {
			t.Fatalf("cooldown after closing and tripping again %v, want OpenFor %v", got, openFor)
		}
	})
}

func TestMaxOpenForOffKeepsCooldownAtOpenFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: 10 * time.Second, MaxOpenFor: Off, HalfOpenRequests: 1}))
		h := b.Middleware("p")(newStatusHandler(500))
		record(h, "/")
		for range 3 {
			time.Sleep(10*time.Second + time.Nanosecond)
			record(h, "/")
			if got := status(t, b, "p").RetryAfter; got != 10*time.Second {
				t.Fatalf("cooldown %v, want 10s every time", got)
			}
		}
	})
}

func TestBackoffDoublesUpToMaxOpenFor(t *testing.T) {
	br := &breaker{policy: Policy{OpenFor: time.Second, MaxOpenFor: 5 * time.Second}}
	for _, tc := range []struct{ last, want time.Duration }{
		{time.Second, 2 * time.Second},
		{2 * time.Second, 4 * time.Second},
		{4 * time.Second, 5 * time.Second},
		{5 * time.Second, 5 * time.Second},
	} {
		if got := br.backoff(tc.last); got != tc.want {
			t.Errorf("backoff(%v) = %v, want %v", tc.last, got, tc.want)
		}
	}
	br.policy.MaxOpenFor = Off
	if got := br.backoff(4 * time.Second); got != time.Second {
		t.Errorf("backoff with MaxOpenFor off = %v, want OpenFor", got)
	}
}

func TestJitterTakesUpToAFifthAndNeverGoesBelowOpenFor(t *testing.T) {
	br := &breaker{policy: Policy{OpenFor: time.Second}}
	var lo, hi time.Duration = time.Hour, 0
	for range 10000 {
		got := br.jitter(10 * time.Second)
		if got < 8*time.Second || got > 10*time.Second {
			t.Fatalf("jitter(10s) = %v, want in [8s, 10s]", got)
		}
		lo, hi = min(lo, got), max(hi, got)
		if got := br.jitter(time.Second); got != time.Second {
			t.Fatalf("jitter(OpenFor) = %v, want OpenFor", got)
		}
	}
	// The draws spread over the range: replicas do not probe in step.
	if hi-lo < time.Second {
		t.Fatalf("10000 draws spread over [%v, %v] only", lo, hi)
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

func TestStateReadsHalfOpenWithoutARequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, sink := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: 5 * time.Second}))
		record(b.Middleware("p")(newStatusHandler(500)), "/")
		time.Sleep(5*time.Second + 1)
		snap := b.Snapshot()
		if snap[0].State != StateHalfOpen {
			t.Fatalf("snapshot after the cooldown, with no request since: %v, want half_open", snap[0].State)
		}
		want := []string{"p: closed -> open", "p: open -> half_open"}
		if got := sink.changes(); !slices.Equal(got, want) {
			t.Fatalf("logged %q, want %q", got, want)
		}
	})
}

func TestStatusReportsSinceAndRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 2, OpenFor: 30 * time.Second}))
		created := time.Now()
		h := b.Middleware("p")(newStatusHandler(500))
		time.Sleep(time.Minute)
		if s := status(t, b, "p"); !s.Since.Equal(created) || s.RetryAfter != 0 {
			t.Fatalf("closed: since %v retry %v, want since creation %v and no retry", s.Since, s.RetryAfter, created)
		}
		record(h, "/")
		record(h, "/")
		tripped := time.Now()
		time.Sleep(10 * time.Second)
		s := status(t, b, "p")
		if !s.Since.Equal(tripped) || s.RetryAfter != 20*time.Second {
			t.Fatalf("open: since %v retry %v, want %v and 20s", s.Since, s.RetryAfter, tripped)
		}
		if s.Totals.Failure != 2 || s.Window != (Counts{}) {
			t.Fatalf("open: totals %+v window %+v, want 2 failures in totals and a fresh window", s.Totals, s.Window)
		}
	})
}

func TestTripIsLoggedWithTheCountsThatTrippedIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, sink := newSet(t, WithPolicy(Policy{FailureRate: 0.6, MinRequests: 5, ConsecutiveFailures: Off, OpenFor: 30 * time.Second, HalfOpenRequests: 1}))
		handler := newStatusHandler(200)
		h := b.Middleware("catalog")(handler)
		for _, code := range []int{200, 500, 200, 500, 500} {
			handler.set(code)
			record(h, "/")
		}
		time.Sleep(31 * time.Second)
		record(h, "/") // probe fails: reopens
		time.Sleep(61 * time.Second)
		handler.set(200)
		record(h, "/") // probe succeeds: closes

		logs := sink.matching("state changed")
		if len(logs) != 5 {
			t.Fatalf("got %d state change records, want 5: %+v", len(logs), logs)
		}
		trip := logs[0]
		wantTrip := map[string]string{
			"key": "catalog", "from": "closed", "to": "open", "mode": "enforce",
			"reason": "failure_rate", "failures": "3", "successes": "2",
			"consecutive_failures": "2", "failure_rate": "0.6", "open_for": "30s",
		}
		if trip.level != slog.LevelWarn {
			t.Errorf("trip logged at %v, want WARN", trip.level)
		}
		for k, v := range wantTrip {
			if trip.attrs[k] != v {
				t.Errorf("trip record %s=%q, want %q (record %v)", k, trip.attrs[k], v, trip.attrs)
			}
		}
		for i, want := range []struct {
			from, to string
			level    slog.Level
		}{
			{"open", "half_open", slog.LevelInfo},
			{"half_open", "open", slog.LevelWarn},
			{"open", "half_open", slog.LevelInfo},
			{"half_open", "closed", slog.LevelInfo},
		} {
			got := logs[i+1]
			if got.attrs["from"] != want.from || got.attrs["to"] != want.to || got.level != want.level {
				t.Errorf("record %d: %s %s -> %s, want %s %s -> %s", i+1, got.level, got.attrs["from"], got.attrs["to"], want.level, want.from, want.to)
			}
		}
		if reopen := logs[2]; reopen.attrs["open_for"] == "" || reopen.attrs["reason"] != "" {
			t.Errorf("reopen record %v, want its cooldown and no trip counts", reopen.attrs)
		}
	})
}

func TestHookGetsEveryChangeInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var got []string
		hook := func(key string, from, to State) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, key+": "+from.String()+" -> "+to.String())
		}
		b, _ := newSet(t, WithStateChangeHook(hook), WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Second, HalfOpenRequests: 1}))
		handler := newStatusHandler(500)
		h := b.Middleware("p")(handler)
		record(h, "/")
		time.Sleep(2 * time.Second)
		handler.set(200)
		record(h, "/")
		synctest.Wait() // the hook runs on its own goroutine
		want := []string{"p: closed -> open", "p: open -> half_open", "p: half_open -> closed"}
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(got, want) {
			t.Fatalf("hook saw %q, want %q", got, want)
		}
	})
}

func TestBlockingHookDoesNotHoldUpRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		unblock := make(chan struct{})
		var calls int
		var mu sync.Mutex
		hook := func(string, State, State) {
			mu.Lock()
			calls++
			mu.Unlock()
			<-unblock
		}
		b, _ := newSet(t, WithStateChangeHook(hook), WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Second, HalfOpenRequests: 1}))
		handler := newStatusHandler(500)
		h := b.Middleware("p")(handler)
		record(h, "/") // trips: the hook blocks on it
		for range 3 {  // three failed probes, while the hook is stuck
			time.Sleep(time.Hour)
			record(h, "/")
		}
		handler.set(200)
		time.Sleep(time.Hour)
		if rec := record(h, "/"); rec.Code != 200 {
			t.Fatalf("with a blocked hook the breaker answered %d, want the probe to pass", rec.Code)
		}
		if st := b.State("p"); st != StateClosed {
			t.Fatalf("state %v, want closed", st)
		}
		synctest.Wait()
		mu.Lock()
		if calls != 1 {
			t.Fatalf("hook called %d times while blocked, want 1", calls)
		}
		mu.Unlock()
		close(unblock)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		// The trip, (half-open, open) three times, half-open, closed: 9 changes.
		if calls != 9 {
			t.Fatalf("hook called %d times after unblocking, want all 9 changes", calls)
		}
	})
}

func TestPanickingHookIsLoggedAndRequestsGoOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hook := func(key string, from, to State) { panic("hook bug") }
		b, sink := newSet(t, WithStateChangeHook(hook), WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Second, HalfOpenRequests: 1}))
		handler := newStatusHandler(500)
		h := b.Middleware("p")(handler)
		record(h, "/")
		time.Sleep(2 * time.Second)
		handler.set(200)
		if rec := record(h, "/"); rec.Code != 200 {
			t.Fatalf("probe got %d, want 200", rec.Code)
		}
		synctest.Wait()
		logs := sink.matching("hook panicked")
		if len(logs) != 3 || logs[0].attrs["panic"] != "hook bug" || logs[0].level != slog.LevelError {
			t.Fatalf("hook panic logs %+v, want 3 errors with the panic value", logs)
		}
	})
}

func TestHalfOpenProbeSlotsFreeWhenAProbeIsExcluded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Second, HalfOpenRequests: 1}))
		var code int
		h := b.Middleware("p")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if code == -1 {
				panic(http.ErrAbortHandler) // with the client still there: a failure
			}
			w.WriteHeader(code)
		}))
		code = 500
		record(h, "/")
		time.Sleep(2 * time.Second)
		code = 200
		record(h, "/")
		if st := b.State("p"); st != StateClosed {
			t.Fatalf("state %v, want closed", st)
		}
	})
}
