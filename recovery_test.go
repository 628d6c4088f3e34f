package httpbreaker

import (
	"bufio"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

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
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Second, MaxOpenFor: time.Minute}))
		h := b.Middleware("p")(newStatusHandler(500))
		record(h, "/")
		if rec := record(h, "/"); rec.Header().Get("Retry-After") != "1" {
			t.Fatalf("first cooldown: Retry-After %q, want 1", rec.Header().Get("Retry-After"))
		}
		time.Sleep(time.Second + time.Millisecond)
		if st := b.State("p"); st != StateHalfOpen {
			t.Fatalf("after the cooldown: %v, want half-open", st)
		}
		if rec := record(h, "/"); rec.Code != 500 {
			t.Fatalf("probe: status %d, want the handler's 500", rec.Code)
		}
		if st := b.State("p"); st != StateOpen {
			t.Fatalf("after a failed probe: state %v, want open", st)
		}
		// Twice the first cooldown, less at most a fifth of jitter: 1.6s to 2s.
		s := status(t, b, "p")
		if s.RetryAfter < 1600*time.Millisecond || s.RetryAfter > 2*time.Second {
			t.Fatalf("second cooldown has %v left, want 1.6s to 2s", s.RetryAfter)
		}
		if rec := record(h, "/"); rec.Header().Get("Retry-After") != "2" {
			t.Fatalf("second cooldown: Retry-After %q, want 2", rec.Header().Get("Retry-After"))
		}
	})
}

func TestUpstreamRetryAfterKeepsTheBreakerOpenLonger(t *testing.T) {
	for _, tc := range []struct {
		name, header string
		status       int
		rule         RetryAfterRule
		maxOpenFor   time.Duration
		want         string
	}{
		{"seconds", "120", 503, 0, 5 * time.Minute, "120"},
		{"capped by MaxOpenFor", "3600", 503, 0, 5 * time.Minute, "300"},
		{"shorter than OpenFor", "5", 503, 0, 5 * time.Minute, "30"},
		{"HTTP date", "in 90s", 503, 0, 5 * time.Minute, "90"},
		{"malformed", "soon", 503, 0, 5 * time.Minute, "30"},
		{"MaxOpenFor off caps at OpenFor", "120", 503, 0, Off, "30"},
		{"seconds that overflow a duration", "999999999999", 503, 0, 5 * time.Minute, "300"},
		{"the largest seconds", "9223372036854775807", 503, 0, 5 * time.Minute, "300"},
		{"a date in year 9999", "Fri, 31 Dec 9999 23:59:59 GMT", 503, 0, 5 * time.Minute, "300"},
		{"a 429's by default: one caller's rate limit", "120", 429, 0, 5 * time.Minute, "30"},
		{"a 429's when the rate limit is everyone's", "120", 429, RetryAfterOn429And503, 5 * time.Minute, "120"},
		{"a 503's with on_429_and_503", "120", 503, RetryAfterOn429And503, 5 * time.Minute, "120"},
		{"none when off", "120", 503, RetryAfterOff, 5 * time.Minute, "30"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 2, OpenFor: 30 * time.Second, MaxOpenFor: tc.maxOpenFor,
					UpstreamRetryAfter: tc.rule}))
				time.Sleep(time.Minute) // the set's clock has moved, as it has in a running service
				h := b.Middleware("llm")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					after := tc.header
					if after == "in 90s" {
						after = time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
					}
					w.Header().Set("Retry-After", after)
					w.WriteHeader(tc.status)
				}))
				record(h, "/")
				record(h, "/") // trips
				if got := record(h, "/").Header().Get("Retry-After"); got != tc.want {
					t.Fatalf("Retry-After %q, want %q", got, tc.want)
				}
			})
		})
	}
}

func TestUpstreamRetryAfterThatHasPassedIsIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// A ten-minute window keeps the first failure in it two minutes on.
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 2, OpenFor: 30 * time.Second, Window: 10 * time.Minute}))
		var after string
		h := b.Middleware("llm")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", after)
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
		after = "60"
		record(h, "/")
		time.Sleep(2 * time.Minute)
		after = ""
		record(h, "/") // trips, two minutes after the Retry-After
		if got := record(h, "/").Header().Get("Retry-After"); got != "30" {
			t.Fatalf("Retry-After %q, want OpenFor's 30: the upstream's delay had passed", got)
		}
	})
}

func TestFailedProbeWithRetryAfterReopensForThatLong(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: 10 * time.Second, HalfOpenRequests: 1}))
		var after string
		h := b.Middleware("llm")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", after)
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
		record(h, "/")
		time.Sleep(11 * time.Second)
		after = "240"
		record(h, "/") // the probe fails with Retry-After: 240
		if got := record(h, "/").Header().Get("Retry-After"); got != "240" {
			t.Fatalf("Retry-After %q, want the upstream's 240 over the doubled cooldown", got)
		}
	})
}

// recovering returns key "p" of a new set, in a synctest bubble, just after
// its probe succeeded: tripped by one failure, open for 10s, one probe, and
// a recovery ramp that has just begun. The handler answers 200.
func recovering(t *testing.T, ramp time.Duration, opts ...Option) (*Breakers, *logSink, *statusHandler, http.Handler) {
	t.Helper()
	b, sink := newSet(t, append([]Option{WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: 10 * time.Second,
		HalfOpenRequests: 1, RecoveryRamp: ramp})}, opts...)...)
	handler := newStatusHandler(500)
	h := b.Middleware("p")(handler)
	record(h, "/")
	time.Sleep(11 * time.Second)
	handler.set(200)
	record(h, "/") // the probe succeeds: the ramp begins
	return b, sink, handler, h
}

func TestRecoveryRampAdmitsARisingShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ramp = 100 * time.Second
		b, sink, _, h := recovering(t, ramp, WithPolicy(Policy{FailureRate: Off}))
		if st := b.State("p"); st != StateRecovering {
			t.Fatalf("after the probe: %v, want recovering", st)
		}
		for _, at := range []float64{0.1, 0.25, 0.5, 0.75, 0.9} {
			time.Sleep(time.Duration(at*float64(ramp)) - b.sinceRampStart("p"))
			admitted := 0
			for range 1000 {
				if record(h, "/").Code == 200 {
					admitted++
				}
			}
			if got := float64(admitted) / 1000; got < at-0.02 || got > at+0.02 {
				t.Fatalf("%.0f%% into the ramp %d of 1000 admitted, want %.0f%%", at*100, admitted, at*100)
			}
		}
		time.Sleep(ramp)
		for range 100 {
			if rec := record(h, "/"); rec.Code != 200 {
				t.Fatalf("after the ramp: %d", rec.Code)
			}
		}
		want := []string{"p: closed -> open", "p: open -> half_open", "p: half_open -> recovering", "p: recovering -> closed"}
		if got := sink.changes(); !slices.Equal(got, want) {
			t.Fatalf("logged %q, want %q", got, want)
		}
	})
}

func TestRecoveryRampTripsAgainOnFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, sink, handler, h := recovering(t, time.Minute)
		time.Sleep(30 * time.Second)
		handler.set(500)
		for b.State("p") == StateRecovering {
			record(h, "/")
		}
		if st := b.State("p"); st != StateOpen {
			t.Fatalf("a failure while recovering left the breaker %v, want open", st)
		}
		changes := sink.changes()
		if last := changes[len(changes)-1]; last != "p: recovering -> open" {
			t.Fatalf("last change %q, want recovering -> open", last)
		}
		rec := record(h, "/")
		if !strings.Contains(rec.Body.String(), `"state":"open"`) {
			t.Fatalf("reject body %s", rec.Body)
		}
	})
}

func TestRecoveryRampRejectsWithItsOwnState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, _, _, h := recovering(t, time.Minute)
		rec := record(h, "/") // at the very start of the ramp nothing is admitted
		if rec.Code != 503 || rec.Header().Get("Retry-After") != "1" || !strings.Contains(rec.Body.String(), `"state":"recovering"`) {
			t.Fatalf("ramp rejection: %d Retry-After %q %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
		}
	})
}

// sinceRampStart returns how long key's recovery ramp has run.
func (b *Breakers) sinceRampStart(key string) time.Duration {
	return time.Duration(b.now() - b.lookup(key).phase.Load().rampStart)
}

func TestCooldownIsExactlyOpenFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: 30 * time.Second}))
		h := b.Middleware("p")(newStatusHandler(500))
		record(h, "/")
		time.Sleep(30*time.Second - time.Nanosecond)
		if s := status(t, b, "p"); s.State != StateOpen || s.RetryAfter != time.Nanosecond {
			t.Fatalf("a nanosecond before OpenFor: state %v, RetryAfter %v; want open, 1ns", s.State, s.RetryAfter)
		}
		if rec := record(h, "/"); rec.Header().Get("Retry-After") != "1" {
			t.Fatalf("Retry-After %q at the end of the cooldown, want the minimum 1", rec.Header().Get("Retry-After"))
		}
		time.Sleep(time.Nanosecond)
		// At exactly OpenFor the cooldown is over: half-open, never open
		// with nothing left to wait.
		if s := status(t, b, "p"); s.State != StateHalfOpen || s.RetryAfter != 0 || s.Since != s.HistorySince.Add(30*time.Second) {
			t.Fatalf("at exactly OpenFor: state %v, RetryAfter %v, since %v; want half_open, 0, dated at OpenFor",
				s.State, s.RetryAfter, s.Since.Sub(s.HistorySince))
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
			time.Sleep(cooldown - time.Nanosecond)
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
	br := &keyBreaker{policy: &Policy{OpenFor: time.Second, MaxOpenFor: 5 * time.Second}}
	for _, tc := range []struct{ last, want time.Duration }{
		{time.Second, 2 * time.Second},
		{2 * time.Second, 4 * time.Second},
		{4 * time.Second, 5 * time.Second},
		{5 * time.Second, 5 * time.Second},
	} {
		if got := br.backedOff(tc.last); got != tc.want {
			t.Errorf("backoff(%v) = %v, want %v", tc.last, got, tc.want)
		}
	}
	br.policy.MaxOpenFor = Off
	if got := br.backedOff(4 * time.Second); got != time.Second {
		t.Errorf("backoff with MaxOpenFor off = %v, want OpenFor", got)
	}
}

func TestJitterTakesUpToAFifthAndNeverGoesBelowOpenFor(t *testing.T) {
	br := &keyBreaker{policy: &Policy{OpenFor: time.Second}}
	var lo, hi time.Duration = time.Hour, 0
	for range 10000 {
		got := br.withJitter(10 * time.Second)
		if got < 8*time.Second || got > 10*time.Second {
			t.Fatalf("jitter(10s) = %v, want in [8s, 10s]", got)
		}
		lo, hi = min(lo, got), max(hi, got)
		if got := br.withJitter(time.Second); got != time.Second {
			t.Fatalf("jitter(OpenFor) = %v, want OpenFor", got)
		}
	}
	// The draws spread over the range: replicas do not probe in step.
	if hi-lo < time.Second {
		t.Fatalf("10000 draws spread over [%v, %v] only", lo, hi)
	}
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

// blocking answers code once released; until then it blocks, after writing
// and flushing its status if stream is set.
type blocking struct {
	code    int
	stream  bool
	release chan struct{}
	once    sync.Once
	entered atomic.Int32
}

// tripped returns a set whose key "p" has just tripped on one failure, and
// the middleware that serves h behind it.
func tripped(t *testing.T, p Policy, h http.Handler) (*Breakers, *logSink, http.Handler) {
	t.Helper()
	p.ConsecutiveFailures = 1
	b, sink := newSet(t, WithPolicy(p))
	var failed atomic.Bool
	mw := b.Middleware("p")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !failed.Swap(true) {
			w.WriteHeader(500)
			return
		}
		h.ServeHTTP(w, r)
	}))
	record(mw, "/")
	if st := b.State("p"); st != StateOpen {
		t.Fatalf("state %v, want open after the first failure", st)
	}
	return b, sink, mw
}

func TestHungProbeTimesOutReopensWithBackoffAndIsCountedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hung := &blocking{code: 200, release: make(chan struct{})}
		defer hung.free()
		b, sink, h := tripped(t, Policy{OpenFor: 10 * time.Second, MaxOpenFor: time.Minute, HalfOpenRequests: 1, ProbeTimeout: 5 * time.Second}, hung)
		time.Sleep(10*time.Second + 1)
		go record(h, "/") // the probe hangs
		synctest.Wait()
		time.Sleep(5*time.Second - time.Nanosecond) // just before its deadline: still half-open, rejecting
		if rec := record(h, "/"); rec.Code != 503 || !strings.Contains(rec.Body.String(), `"state":"half_open"`) {
			t.Fatalf("before the deadline: %d %s, want a half-open rejection", rec.Code, rec.Body)
		}
		time.Sleep(time.Nanosecond)
		rec := record(h, "/") // at it: the probe failed, and the breaker is open again
		if rec.Code != 503 || !strings.Contains(rec.Body.String(), `"state":"open"`) {
			t.Fatalf("at the deadline: %d %s, want an open rejection", rec.Code, rec.Body)
		}
		synctest.Wait() // the alarm may have judged the probe: its record is queued
		s := status(t, b, "p")
		if s.RetryAfter < 16*time.Second || s.RetryAfter > 20*time.Second {
			t.Fatalf("cooldown %v after the timed-out probe, want twice OpenFor less jitter (16s to 20s)", s.RetryAfter)
		}
		logs := sink.matching("state changed")
		last := logs[len(logs)-1]
		ran, _ := time.ParseDuration(last.attrs["probe_ran_for"])
		if last.attrs["from"] != "half_open" || last.attrs["to"] != "open" || last.attrs["reason"] != "probe_timeout" || ran != 5*time.Second {
			t.Fatalf("reopen logged as %v, want half_open -> open for probe_timeout after 5s", last.attrs)
		}
		hung.free() // the probe's own 200 comes late: it must not count
		synctest.Wait()
		if s := status(t, b, "p"); s.Totals.Failures != 2 || s.Totals.Successes != 0 || s.State != StateOpen {
			t.Fatalf("after the late answer: %v with totals %+v, want open with 2 failures and no success", s.State, s.Totals)
		}
		time.Sleep(20 * time.Second)
		if rec := record(h, "/"); rec.Code != 200 || b.State("p") != StateClosed {
			t.Fatalf("next probe: %d in %v, want 200 and closed", rec.Code, b.State("p"))
		}
	})
}

func TestProbeTimeoutIsSeenWithoutARequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hung := &blocking{code: 200, release: make(chan struct{})}
		defer hung.free()
		b, _, h := tripped(t, Policy{OpenFor: time.Second, HalfOpenRequests: 1, ProbeTimeout: 5 * time.Second}, hung)
		time.Sleep(time.Second + 1)
		go record(h, "/")
		synctest.Wait()
		time.Sleep(5*time.Second + 1)
		if st := b.State("p"); st != StateOpen {
			t.Fatalf("state %v past the probe's deadline with no request, want open", st)
		}
		hung.free()
		synctest.Wait()
	})
}

func TestStreamingProbeThatAnsweredSucceedsAtItsDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stream := &blocking{code: 200, stream: true, release: make(chan struct{})}
		defer stream.free()
		b, _, h := tripped(t, Policy{OpenFor: time.Second, HalfOpenRequests: 1, ProbeTimeout: 5 * time.Second}, stream)
		time.Sleep(time.Second + 1)
		go record(h, "/") // an event stream: 200, then it stays open
		synctest.Wait()
		time.Sleep(5*time.Second + 1)
		if st := b.State("p"); st != StateClosed {
			t.Fatalf("state %v once the streaming probe outlived its deadline, want closed: it answered 200", st)
		}
		stream.free()
		synctest.Wait()
		if s := status(t, b, "p"); s.Totals.Successes != 1 {
			t.Fatalf("totals %+v, want the stream counted once, as a success", s.Totals)
		}
	})
}

func TestFailedStreamingProbeFailsAtItsDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stream := &blocking{code: 503, stream: true, release: make(chan struct{})}
		defer stream.free()
		b, _, h := tripped(t, Policy{OpenFor: time.Second, HalfOpenRequests: 1, ProbeTimeout: 5 * time.Second}, stream)
		time.Sleep(time.Second + 1)
		go record(h, "/")
		synctest.Wait()
		time.Sleep(5*time.Second + 1)
		if st := b.State("p"); st != StateOpen {
			t.Fatalf("state %v, want open: the probe answered 503", st)
		}
		stream.free()
		synctest.Wait()
	})
}

// hijackWriter is a ResponseWriter whose connection can be taken over.
type hijackWriter struct{ *httptest.ResponseRecorder }

func TestTakenOverProbeFreesItsSlotAtItsDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var once sync.Once
		free := func() { once.Do(func() { close(release) }) }
		defer free()
		ws := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/ws" {
				conn, _, _ := w.(http.Hijacker).Hijack()
				defer conn.Close()
				<-release // a websocket, open for a long time
			}
		})
		b, _, h := tripped(t, Policy{OpenFor: time.Second, HalfOpenRequests: 1, ProbeTimeout: 5 * time.Second}, ws)
		time.Sleep(time.Second + 1)
		go h.ServeHTTP(hijackWriter{httptest.NewRecorder()}, httptest.NewRequest("GET", "/ws", nil))
		synctest.Wait()
		if rec := record(h, "/"); rec.Code != 503 {
			t.Fatalf("with the websocket probing: %d, want a rejection", rec.Code)
		}
		time.Sleep(5*time.Second + 1)
		if rec := record(h, "/"); rec.Code != 200 || b.State("p") != StateClosed {
			t.Fatalf("past the websocket's deadline: %d in %v, want its slot given to a probe that closes the breaker", rec.Code, b.State("p"))
		}
		free()
		synctest.Wait()
	})
}

func TestProbeTimeoutOffWaitsForTheProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hung := &blocking{code: 200, release: make(chan struct{})}
		defer hung.free()
		b, _, h := tripped(t, Policy{OpenFor: time.Second, HalfOpenRequests: 1, ProbeTimeout: Off}, hung)
		time.Sleep(time.Second + 1)
		go record(h, "/")
		synctest.Wait()
		time.Sleep(24 * time.Hour)
		if st := b.State("p"); st != StateHalfOpen {
			t.Fatalf("state %v a day later, want half_open: the probe may take as long as it takes", st)
		}
		hung.free()
		synctest.Wait()
		if st := b.State("p"); st != StateClosed {
			t.Fatalf("state %v once the probe answered 200, want closed", st)
		}
	})
}

func TestGoexitInAProbeFailsItAndFreesTheKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		exit := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { runtime.Goexit() })
		b, _, h := tripped(t, Policy{OpenFor: time.Second, HalfOpenRequests: 1, ProbeTimeout: Off}, exit)
		time.Sleep(time.Second + 1)
		done := make(chan struct{})
		go func() {
			defer close(done)
			record(h, "/")
		}()
		<-done
		s := status(t, b, "p")
		if s.State != StateOpen || s.Totals.Failures != 2 || s.Window.InFlight != 0 {
			t.Fatalf("after a probe's Goexit: %v, totals %+v, in flight %d; want open again, 2 failures, none in flight",
				s.State, s.Totals, s.Window.InFlight)
		}
	})
}

// free lets the handler answer; it may be called more than once, so that a
// test can defer it and still free the handler midway.
func (h *blocking) free() { h.once.Do(func() { close(h.release) }) }

func (h *blocking) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.entered.Add(1)
	if h.stream {
		w.WriteHeader(h.code)
		w.(http.Flusher).Flush()
	}
	<-h.release
	if !h.stream {
		w.WriteHeader(h.code)
	}
}

func (hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, _ := net.Pipe()
	return c, bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c)), nil
}

// TestHalfOpenRoundUnderStress runs a key that trips and probes over and
// over, with many callers at once and every way a probe can end: a
// success, a failure, a panic, a Goexit, a probe that outlives its
// ProbeTimeout, and one that answered before it did, while others read the
// state and the snapshot. Run with -race it finds any data race in the
// round; in any run, every request is counted once and nothing stays in
// flight. (TestHalfOpenAdmitsAtMostNProbes holds the bound on probes.)
func TestHalfOpenRoundUnderStress(t *testing.T) {
	const slots = 2
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Millisecond, MaxOpenFor: 2 * time.Millisecond,
		HalfOpenRequests: slots, ProbeTimeout: 2 * time.Millisecond}))
	var calls atomic.Uint64
	h := b.Middleware("p")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		switch rand.N(7) {
		case 0:
			w.WriteHeader(500)
		case 1:
			panic("a probe that panics")
		case 2:
			runtime.Goexit()
		case 3:
			time.Sleep(3 * time.Millisecond) // past the ProbeTimeout
		case 4:
			w.WriteHeader(200)
			time.Sleep(3 * time.Millisecond) // a stream that answered
		default:
			w.WriteHeader(200)
		}
	}))
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					_ = b.Snapshot()
					_ = b.State("p")
				}
			}
		})
	}
	var sent atomic.Uint64
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			for range 50 {
				done := make(chan struct{})
				go func() { // its own goroutine, which a Goexit may end
					defer close(done)
					defer func() { _ = recover() }()
					sent.Add(1)
					h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
				}()
				<-done
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	s := status(t, b, "p")
	counted := s.Totals.Successes + s.Totals.Failures + s.Totals.Excluded + s.Totals.Rejected
	if counted != sent.Load() {
		t.Errorf("%d requests counted (%+v), %d sent: each must be counted once", counted, s.Totals, sent.Load())
	}
	if s.Window.InFlight != 0 {
		t.Errorf("%d requests still in flight after all returned", s.Window.InFlight)
	}
	if calls.Load() == 0 || s.Totals.Rejected == 0 {
		t.Errorf("the key never ran (%d calls) or never rejected (%+v): the stress did not stress", calls.Load(), s.Totals)
	}
}

// probesOf trips key "p" of a new set with a policy of HalfOpenRequests
// probes, HalfOpenSuccesses of which must succeed, and waits out the
// cooldown: the next calls are the probes. The handler answers code.
func probesOf(t *testing.T, requests, successes int) (*Breakers, *logSink, *statusHandler, http.Handler) {
	t.Helper()
	b, sink := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Second,
		HalfOpenRequests: requests, HalfOpenSuccesses: successes}))
	up := newStatusHandler(500)
	h := b.Middleware("p")(up)
	record(h, "/")
	time.Sleep(time.Second + time.Millisecond)
	if st := b.State("p"); st != StateHalfOpen {
		t.Fatalf("after the cooldown: %v, want half-open", st)
	}
	return b, sink, up, h
}

func TestHalfOpenSuccessesClosesOnceEnoughProbesSucceed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, sink, up, h := probesOf(t, 3, 2)
		record(h, "/") // a failure: 2 successes of the 2 probes left can still come
		if st := b.State("p"); st != StateHalfOpen {
			t.Fatalf("after 1 failed probe of 3, 2 needed: %v, want half-open", st)
		}
		up.set(200)
		record(h, "/")
		record(h, "/")
		if st := b.State("p"); st != StateClosed {
			t.Fatalf("after 2 probes of 3 succeeded: %v, want closed", st)
		}
		closed := sink.matching("state changed")
		last := closed[len(closed)-1]
		if last.attrs["reason"] != "probes_succeeded" || last.attrs["probes_succeeded"] != "2" || last.attrs["probes_failed"] != "1" {
			t.Fatalf("close record %v, want the probes' counts: 2 succeeded, 1 failed", last.attrs)
		}
	})
}

func TestHalfOpenSuccessesReopensOnceTheyCanNoLongerCome(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _, _, h := probesOf(t, 3, 2)
		record(h, "/")
		if st := b.State("p"); st != StateHalfOpen {
			t.Fatalf("after 1 failure: %v, want half-open", st)
		}
		record(h, "/") // 2 of 3 failed: 2 successes can no longer come
		if st := b.State("p"); st != StateOpen {
			t.Fatalf("after 2 failed probes of 3, 2 needed: %v, want open", st)
		}
	})
}

func TestHalfOpenSuccessesDefaultsToEveryProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _, _, h := probesOf(t, 3, 0)
		record(h, "/")
		if st := b.State("p"); st != StateOpen {
			t.Fatalf("one failed probe with the default: %v, want open", st)
		}
		if s := status(t, b, "p"); s.Policy.HalfOpenSuccesses != 3 {
			t.Fatalf("resolved HalfOpenSuccesses %d, want HalfOpenRequests (3)", s.Policy.HalfOpenSuccesses)
		}
	})
	if _, err := New(WithPolicy(Policy{HalfOpenRequests: 2, HalfOpenSuccesses: 3})); err == nil ||
		!strings.Contains(err.Error(), "half_open_successes") || !strings.Contains(err.Error(), "half_open_requests") {
		t.Errorf("3 successes of 2 probes: %v, want an error naming both fields", err)
	}
}

func TestHalfOpenShowsTheProbesOutcomes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _, up, h := probesOf(t, 4, 2)
		record(h, "/")
		up.set(200)
		record(h, "/")
		if s := status(t, b, "p"); s.State != StateHalfOpen || s.Window.Successes != 1 || s.Window.Failures != 1 || s.Window.InFlight != 0 {
			t.Fatalf("%v with %+v, want half-open showing the probes: 1 succeeded, 1 failed", s.State, s.Window)
		}
	})
}
