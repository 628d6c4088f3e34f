package httpbreaker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// Scenarios of other circuit breakers' own test suites, ported to this API.
// Each test names the peer and its scenario, and cites the peer's file and
// test. Where the peer asserts something this library deliberately does
// otherwise, the test asserts this library's behaviour and names the
// difference, as docs/migrating.md states it. Every timed scenario runs in
// a synctest bubble: time.Sleep(d) moves the fake clock by exactly d.

var (
	errPeer    = errors.New("peer: the call failed")
	errIgnored = errors.New("peer: an ignored error")   // excluded, as an ignored exception
	errFilter  = errors.New("peer: a filtered error")   // a success, as opossum's errorFilter
	errSuccess = errors.New("peer: a successful error") // a success, as gobreaker's IsSuccessful
)

// peerClassifier excludes errIgnored and calls errFilter and errSuccess
// successes, as the peers' ignore and filter settings do; the rest is the
// default.
func peerClassifier(c Call) Outcome {
	switch {
	case errors.Is(c.Err, errIgnored):
		return Excluded
	case errors.Is(c.Err, errFilter), errors.Is(c.Err, errSuccess):
		return Success
	}
	return DefaultClassifier(c)
}

// peerRig is one key's breaker driven through Do, with the changes its
// hook saw.
type peerRig struct {
	t   *testing.T
	b   *Breakers
	key string

	mu     sync.Mutex
	events []Event
}

func newPeerRig(t *testing.T, p Policy, opts ...Option) *peerRig {
	t.Helper()
	r := &peerRig{t: t, key: "k"}
	// A per-key policy names the key, so that ForceOpen, ForceClose, Probe
	// and Reset find its breaker before its first call (ErrNoBreaker).
	base := []Option{WithKeyPolicy(r.key, p), WithClassifier(peerClassifier), WithStateChangeHook(func(e Event) {
		r.mu.Lock()
		r.events = append(r.events, e)
		r.mu.Unlock()
	})}
	r.b, _ = newSet(t, append(base, opts...)...)
	t.Cleanup(func() { _ = r.b.Close() })
	return r
}

// call runs one call that takes d and returns err, and returns Do's error.
func (r *peerRig) call(err error, d time.Duration) error {
	return r.b.Do(context.Background(), r.key, func(context.Context) error {
		if d > 0 {
			time.Sleep(d)
		}
		return err
	})
}

// ok and fail run an instant success and failure, failing the test if the
// call was not admitted.
func (r *peerRig) ok() { r.t.Helper(); r.mustRun(nil) }

func (r *peerRig) fail() { r.t.Helper(); r.mustRun(errPeer) }

func (r *peerRig) mustRun(want error) {
	r.t.Helper()
	if err := r.call(want, 0); err != want {
		r.t.Fatalf("call returned %v, want %v (admitted; state %v)", err, want, r.state())
	}
}

// rejected reports whether a call (that would succeed) is rejected, and
// returns the rejection.
func (r *peerRig) rejected() (*RejectedError, bool) {
	var rj *RejectedError
	err := r.call(nil, 0)
	return rj, errors.As(err, &rj)
}

func (r *peerRig) mustReject(state State) *RejectedError {
	r.t.Helper()
	rj, ok := r.rejected()
	if !ok {
		r.t.Fatalf("a call was admitted in state %v, want it rejected", r.state())
	}
	if rj.State != state {
		r.t.Fatalf("rejected in state %v, want %v", rj.State, state)
	}
	return rj
}

func (r *peerRig) state() State { return r.b.State(r.key) }

func (r *peerRig) wantState(want State) {
	r.t.Helper()
	if got := r.state(); got != want {
		r.t.Fatalf("state %v, want %v", got, want)
	}
}

func (r *peerRig) status() Status { r.t.Helper(); return status(r.t, r.b, r.key) }

// wantWindow checks the window's successes and failures.
func (r *peerRig) wantWindow(successes, failures uint32) {
	r.t.Helper()
	if w := r.status().Window; w.Successes != successes || w.Failures != failures {
		r.t.Fatalf("window %+v, want %d successes and %d failures", w, successes, failures)
	}
}

// changes returns the hook's changes so far as "from->to".
func (r *peerRig) changes() []string {
	r.t.Helper()
	if err := r.b.Flush(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.events))
	for i, e := range r.events {
		out[i] = e.From.String() + "->" + e.To.String()
	}
	return out
}

func (r *peerRig) wantChanges(want ...string) {
	r.t.Helper()
	if got := r.changes(); fmt.Sprint(got) != fmt.Sprint(want) {
		r.t.Fatalf("changes %v, want %v", got, want)
	}
}

func (r *peerRig) lastEvent() Event {
	r.t.Helper()
	r.changes()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) == 0 {
		r.t.Fatal("no change reported")
	}
	return r.events[len(r.events)-1]
}

// inFlight is a call admitted and running until finish.
type inFlight struct {
	result chan error
	end    chan error
}

// start begins a call and waits (in the bubble) until it is admitted or
// rejected; admitted reports which.
func (r *peerRig) start() (*inFlight, bool) {
	f := &inFlight{result: make(chan error, 1), end: make(chan error)}
	admitted := make(chan struct{})
	go func() {
		f.result <- r.b.Do(context.Background(), r.key, func(context.Context) error {
			close(admitted)
			return <-f.end
		})
	}()
	synctest.Wait()
	select {
	case <-admitted:
		return f, true
	default:
		<-f.result
		return nil, false
	}
}

func (f *inFlight) finish(err error) error {
	f.end <- err
	return <-f.result
}

// trip opens a rig's breaker with n failures (the policy's trip rule must
// take n) and checks it opened.
func (r *peerRig) trip(n int) {
	r.t.Helper()
	for range n {
		r.fail()
	}
	r.wantState(StateOpen)
}

// ---- sony/gobreaker v2 (v2/gobreaker_test.go) ----

// gobreakerDefaults is docs/migrating.md's policy for gobreaker's default
// Settings.
func gobreakerDefaults() Policy {
	return Policy{ConsecutiveFailures: 6, FailureRate: Off, LastCalls: 100, OpenFor: 60 * time.Second,
		MaxOpenFor: Off, HalfOpenRequests: 1}
}

// v2/gobreaker_test.go, TestDefaultCircuitBreaker: more than five failures
// in a row trip; a success between resets the run; Timeout to half-open;
// one failed probe reopens; one good probe closes, with empty counts.
func TestGobreakerDefaultCircuitBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, gobreakerDefaults())
		for range 5 {
			r.fail()
		}
		r.wantState(StateClosed)
		if w := r.status().Window; w.Failures != 5 || w.ConsecutiveFailures != 5 {
			t.Fatalf("window %+v, want 5 failures, 5 in a row", w)
		}
		r.ok()
		if w := r.status().Window; w.Successes != 1 || w.ConsecutiveFailures != 0 || w.ConsecutiveSuccesses != 1 {
			t.Fatalf("window %+v after a success", w)
		}
		r.fail()
		r.wantState(StateClosed)
		r.trip(5) // 6 in a row
		r.mustReject(StateOpen)
		if err := r.call(errPeer, 0); !errors.Is(err, ErrOpen) {
			t.Fatalf("a failing call while open: %v, want ErrOpen", err)
		}
		time.Sleep(59 * time.Second)
		r.wantState(StateOpen)
		time.Sleep(time.Second)
		r.wantState(StateHalfOpen)
		r.fail()
		r.wantState(StateOpen)
		time.Sleep(60 * time.Second) // MaxOpenFor: Off keeps Timeout fixed
		r.wantState(StateHalfOpen)
		r.ok()
		r.wantState(StateClosed)
		r.wantWindow(0, 0)
		r.wantChanges("closed->open", "open->half_open", "half_open->open", "open->half_open", "half_open->closed")
	})
}

// v2/gobreaker_test.go, TestCustomCircuitBreaker: ReadyToTrip at 3 requests
// and a 0.6 failure ratio, Interval 30s, MaxRequests 3, Timeout 90s.
// Documented difference (docs/migrating.md, gobreaker: Interval is a rolling
// Window, never cleared at once): gobreaker clears its counts at 30s, so
// S F S F after it trip on 2 of 3; here the success at 29s is still in the
// window, and a third failure is needed.
func TestGobreakerCustomCircuitBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, Policy{FailureRate: 0.6, MinRequests: 3, ConsecutiveFailures: Off, Window: 30 * time.Second,
			OpenFor: 90 * time.Second, MaxOpenFor: Off, HalfOpenRequests: 3})
		for range 5 {
			r.ok()
			r.fail()
		}
		r.wantState(StateClosed)
		r.wantWindow(5, 5)
		time.Sleep(29 * time.Second)
		r.ok()
		r.wantWindow(6, 5)
		time.Sleep(time.Second) // the first outcomes leave the window; gobreaker clears them all
		r.fail()
		r.wantWindow(1, 1)
		r.ok()
		r.fail() // gobreaker: F S F since the clearing, 2/3 >= 0.6, open
		r.wantState(StateClosed)
		r.wantWindow(2, 2)
		r.fail() // 3 of 5
		r.wantState(StateOpen)
		if e := r.lastEvent(); e.Reason != ReasonFailureRate || e.Failures != 3 || e.Successes != 2 {
			t.Fatalf("trip %+v, want the failure rate on 3 failures and 2 successes", e.Transition)
		}
		time.Sleep(90 * time.Second)
		r.wantState(StateHalfOpen)
		r.ok()
		r.ok()
		r.wantState(StateHalfOpen)
		if w := r.status().Window; w.Successes != 2 || w.ConsecutiveSuccesses != 2 {
			t.Fatalf("half-open window %+v, want the 2 probes' successes", w)
		}
		third, ok := r.start()
		if !ok {
			t.Fatal("the third probe was rejected")
		}
		r.mustReject(StateHalfOpen) // over MaxRequests
		if err := third.finish(nil); err != nil {
			t.Fatal(err)
		}
		r.wantState(StateClosed)
		r.wantWindow(0, 0)
	})
}

// v2/gobreaker_test.go, TestRollingWindowCircuitBreaker: Interval 30s in
// buckets of 3s; the oldest bucket leaves whole; 14 failures of 23 trip at
// 0.6.
func TestGobreakerRollingWindowCircuitBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, Policy{FailureRate: 0.6, MinRequests: 3, ConsecutiveFailures: Off, Window: 30 * time.Second,
			Buckets: 10, OpenFor: 90 * time.Second, MaxOpenFor: Off, HalfOpenRequests: 3})
		for range 5 {
			r.ok()
			r.fail()
		}
		r.wantWindow(5, 5)
		time.Sleep(3 * time.Second)
		r.ok()
		r.wantWindow(6, 5)
		time.Sleep(2 * time.Second)
		r.ok()
		r.wantWindow(7, 5)
		time.Sleep(2 * time.Second)
		r.ok()
		r.wantWindow(8, 5)
		time.Sleep(2 * time.Second)
		r.fail()
		r.wantWindow(8, 6)
		for i := range 6 {
			time.Sleep(3 * time.Second)
			r.ok()
			r.fail()
			r.wantWindow(uint32(9+i), uint32(7+i))
		}
		time.Sleep(3 * time.Second) // the first bucket (5 and 5) leaves
		r.fail()
		r.wantWindow(9, 8)
		for i := range 5 {
			r.fail()
			r.wantWindow(9, uint32(9+i))
		}
		r.wantState(StateClosed) // 13 of 22
		r.fail()                 // 14 of 23 > 0.6
		r.wantState(StateOpen)
		time.Sleep(90 * time.Second)
		r.wantState(StateHalfOpen)
		for range 3 {
			r.ok()
		}
		r.wantState(StateClosed)
		r.wantChanges("closed->open", "open->half_open", "half_open->closed")
	})
}

// v2/gobreaker_test.go, TestPanicInRequest: a panic in the call is a
// failure, and goes on.
func TestGobreakerPanicInRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, Policy{ConsecutiveFailures: 1})
		func() {
			defer func() {
				if p := recover(); p != "oops" {
					t.Fatalf("recovered %v, want the call's panic", p)
				}
			}()
			_ = r.b.Do(context.Background(), r.key, func(context.Context) error { panic("oops") })
		}()
		if tot := r.status().Totals; tot.Failures != 1 {
			t.Fatalf("totals %+v, want the panic counted as a failure", tot)
		}
		r.wantState(StateOpen)
	})
}

// v2/gobreaker_test.go, TestCircuitBreakerInParallel: successes from many
// goroutines at once are each counted once.
func TestGobreakerCircuitBreakerInParallel(t *testing.T) {
	r := newPeerRig(t, Policy{})
	const goroutines, each = 100, 50
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range each {
				if err := r.call(nil, 0); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if tot := r.status().Totals; tot.Successes != goroutines*each {
		t.Fatalf("totals %+v, want %d successes", tot, goroutines*each)
	}
}

// v2/gobreaker_test.go, TestCustomIsSuccessful (IsSuccessful) and the
// IsExcluded setting: an error judged a success resets the failures in a
// row; an excluded one counts nowhere and leaves the run as it was.
func TestGobreakerCustomIsSuccessfulAndIsExcluded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, Policy{ConsecutiveFailures: 3, FailureRate: Off})
		r.fail()
		r.fail()
		r.mustRun(errSuccess)
		r.fail()
		r.fail()
		r.wantState(StateClosed)
		if w := r.status().Window; w.ConsecutiveFailures != 2 || w.Successes != 1 {
			t.Fatalf("window %+v, want the success to have reset the run", w)
		}
		r.mustRun(errIgnored)
		if w := r.status().Window; w.ConsecutiveFailures != 2 || w.Excluded != 1 {
			t.Fatalf("window %+v, want an excluded call to leave the run at 2", w)
		}
		r.fail()
		r.wantState(StateOpen)
	})
}

// v2/gobreaker_test.go (ErrOpenState vs ErrTooManyRequests, asserted in
// TestCustomCircuitBreaker's "over MaxRequests"): a rejection says whether
// the breaker was open or its probes were all taken.
func TestGobreakerOpenStateAndTooManyRequestsAreTold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, Policy{ConsecutiveFailures: 1, OpenFor: 10 * time.Second, MaxOpenFor: Off, HalfOpenRequests: 1})
		r.trip(1)
		if rj := r.mustReject(StateOpen); rj.RetryAfter != 10*time.Second {
			t.Fatalf("open: RetryAfter %v, want 10s", rj.RetryAfter)
		}
		time.Sleep(10 * time.Second)
		probe, ok := r.start()
		if !ok {
			t.Fatal("the probe was rejected")
		}
		if rj := r.mustReject(StateHalfOpen); rj.RetryAfter != 0 {
			t.Fatalf("half-open: RetryAfter %v, want 0", rj.RetryAfter)
		}
		if err := probe.finish(nil); err != nil {
			t.Fatal(err)
		}
		r.wantState(StateClosed)
	})
}

// ---- failsafe-go (circuitbreaker/closedstate_test.go, halfopenstate_test.go) ----

// failsafeCount is failsafe-go's count-based threshold: k failures of the
// last n calls, as docs/migrating.md maps WithFailureThresholdRatio.
func failsafeCount(k, n int) Policy {
	return Policy{LastCalls: n, MinRequests: n, FailureRate: float64(k) / float64(n), ConsecutiveFailures: Off}
}

// closedstate_test.go, TestClosedStateFailureWithFailureThreshold:
// WithFailureThreshold(3) opens on the third failure in a row, not before.
func TestFailsafeClosedStateFailureWithFailureThreshold(t *testing.T) {
	r := newPeerRig(t, Policy{ConsecutiveFailures: 3, FailureRate: Off})
	r.fail()
	r.ok()
	r.fail()
	r.fail()
	r.wantState(StateClosed)
	r.fail()
	r.wantState(StateOpen)
}

// closedstate_test.go, TestClosedStateFailureWithFailureRatio:
// WithFailureThresholdRatio(2, 3) opens on F S F.
func TestFailsafeClosedStateFailureWithFailureRatio(t *testing.T) {
	r := newPeerRig(t, failsafeCount(2, 3))
	r.fail()
	r.ok()
	r.wantState(StateClosed)
	r.fail()
	r.wantState(StateOpen)
}

// closedstate_test.go, TestClosedStateSuccessWithFailureRatio: 3 of 4 is
// never reached by alternating calls.
func TestFailsafeClosedStateSuccessWithFailureRatio(t *testing.T) {
	r := newPeerRig(t, failsafeCount(3, 4))
	for range 20 {
		r.ok()
		r.fail()
		r.wantState(StateClosed)
	}
}

// closedstate_test.go, TestClosedStateSuccessWithFailureThreshold: 2 in a
// row is never reached by alternating calls.
func TestFailsafeClosedStateSuccessWithFailureThreshold(t *testing.T) {
	r := newPeerRig(t, Policy{ConsecutiveFailures: 2, FailureRate: Off})
	for range 20 {
		r.ok()
		r.fail()
		r.wantState(StateClosed)
	}
}

// halfOpenRig returns a rig tripped by one failure and half-open, with the
// half-open round given.
func halfOpenRig(t *testing.T, p Policy) *peerRig {
	t.Helper()
	p.ConsecutiveFailures, p.OpenFor, p.MaxOpenFor = 1, 10*time.Second, Off
	r := newPeerRig(t, p)
	r.trip(1)
	time.Sleep(10 * time.Second)
	r.wantState(StateHalfOpen)
	return r
}

// halfopenstate_test.go, TestHalfOpenStateFailureWithDefaultConfig and
// TestHalfOpenSuccessWithDefaultConfig: one trial call decides.
func TestFailsafeHalfOpenDefaultConfigOneCallDecides(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := halfOpenRig(t, Policy{HalfOpenRequests: 1})
		r.fail()
		r.wantState(StateOpen)
		time.Sleep(10 * time.Second)
		r.ok()
		r.wantState(StateClosed)
	})
}

// halfopenstate_test.go, TestHalfOpenSuccessWithSuccessThreshold:
// WithSuccessThreshold(3) closes on the third success.
func TestFailsafeHalfOpenSuccessWithSuccessThreshold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := halfOpenRig(t, Policy{HalfOpenRequests: 3})
		for range 3 {
			r.wantState(StateHalfOpen)
			r.ok()
		}
		r.wantState(StateClosed)
	})
}

// halfopenstate_test.go, TestHalfOpenFailureWithSuccessThreshold: with
// WithSuccessThreshold(3), S then F opens.
func TestFailsafeHalfOpenFailureWithSuccessThreshold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := halfOpenRig(t, Policy{HalfOpenRequests: 3})
		r.ok()
		r.fail()
		r.wantState(StateOpen)
	})
}

// halfopenstate_test.go, TestHalfOpenSuccessWithSuccessRatio:
// WithSuccessThresholdRatio(2, 3), F S half-open, S closes.
func TestFailsafeHalfOpenSuccessWithSuccessRatio(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := halfOpenRig(t, Policy{HalfOpenRequests: 3, HalfOpenSuccesses: 2})
		r.fail()
		r.ok()
		r.wantState(StateHalfOpen)
		r.ok()
		r.wantState(StateClosed)
	})
}

// halfopenstate_test.go, TestHalfOpenFailureWithSuccessRatio:
// WithSuccessThresholdRatio(2, 3), F S half-open, F opens.
func TestFailsafeHalfOpenFailureWithSuccessRatio(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := halfOpenRig(t, Policy{HalfOpenRequests: 3, HalfOpenSuccesses: 2})
		r.fail()
		r.ok()
		r.wantState(StateHalfOpen)
		r.fail()
		r.wantState(StateOpen)
		if e := r.lastEvent(); e.Reason != ReasonProbeFailed || e.Successes != 1 || e.Failures != 2 {
			t.Fatalf("reopening %+v, want probe_failed on 1 success and 2 failures", e.Transition)
		}
	})
}

// halfopenstate_test.go, TestHalfOpenSuccessWithSuccessAndFailureRatios
// and TestHalfOpenFailureWithSuccessAndFailureRatios:
// WithSuccessThresholdRatio(3, 4): S F S then S closes, F opens.
func TestFailsafeHalfOpenSuccessAndFailureRatios(t *testing.T) {
	for _, tc := range []struct {
		last bool
		want State
	}{{true, StateClosed}, {false, StateOpen}} {
		t.Run(tc.want.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := halfOpenRig(t, Policy{HalfOpenRequests: 4, HalfOpenSuccesses: 3})
				r.ok()
				r.fail()
				r.ok()
				r.wantState(StateHalfOpen)
				if tc.last {
					r.ok()
				} else {
					r.fail()
				}
				r.wantState(tc.want)
			})
		})
	}
}

// halfopenstate_test.go, TestHalfOpenFailureWithSuccessRatioAndFailureThreshold:
// WithSuccessThresholdRatio(2, 4): S F F stays half-open, a third F opens.
func TestFailsafeHalfOpenFailureWithSuccessRatioAndFailureThreshold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := halfOpenRig(t, Policy{HalfOpenRequests: 4, HalfOpenSuccesses: 2})
		r.ok()
		r.fail()
		r.fail()
		r.wantState(StateHalfOpen)
		r.fail()
		r.wantState(StateOpen)
	})
}

// halfopenstate_test.go, TestRemainingDelayInHalfOpenState: no delay
// remains once half-open.
func TestFailsafeRemainingDelayInHalfOpenState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := halfOpenRig(t, Policy{HalfOpenRequests: 1})
		if s := r.status(); s.RetryAfter != 0 || s.Rejecting {
			t.Fatalf("half-open: RetryAfter %v, rejecting %v; want 0 and admitting", s.RetryAfter, s.Rejecting)
		}
	})
}

// openstate_test.go (the remaining delay while open): it falls as time
// passes, and is gone when the delay is.
func TestFailsafeOpenStateRemainingDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, Policy{ConsecutiveFailures: 1, OpenFor: time.Minute, MaxOpenFor: Off})
		r.trip(1)
		if s := r.status(); s.RetryAfter != time.Minute {
			t.Fatalf("RetryAfter %v at the trip, want 1m", s.RetryAfter)
		}
		time.Sleep(40 * time.Second)
		if rj := r.mustReject(StateOpen); rj.RetryAfter != 20*time.Second {
			t.Fatalf("RetryAfter %v after 40s, want 20s", rj.RetryAfter)
		}
		time.Sleep(20 * time.Second)
		r.wantState(StateHalfOpen)
	})
}

// ---- resilience4j (CircuitBreakerStateMachineTest.java) ----

// r4jPolicy is the suite's setUp: failureRateThreshold 50, 4 calls in
// half-open, slow above 4s at 50%, a window of 5, 5s open; without our
// in-a-row rule, as resilience4j has none, and with a fixed wait.
func r4jPolicy() Policy {
	return Policy{FailureRate: 0.5, LastCalls: 5, MinRequests: 5, ConsecutiveFailures: Off, SlowCall: 4 * time.Second,
		SlowCallRate: 0.5, OpenFor: 5 * time.Second, MaxOpenFor: Off, HalfOpenRequests: 4, HalfOpenSuccesses: 3}
}

// r4jHalfOpen trips the r4jPolicy rig on five failures and waits for half-open.
func r4jHalfOpen(t *testing.T, p Policy) *peerRig {
	t.Helper()
	r := newPeerRig(t, p)
	r.trip(5)
	time.Sleep(5 * time.Second)
	r.wantState(StateHalfOpen)
	return r
}

// shouldThrowCallNotPermittedExceptionWhenStateIsOpen and
// ...WhenStateIsForcedOpen: a rejection, counted once as not permitted.
func TestResilience4jCallNotPermittedWhenOpenAndForcedOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, r4jPolicy())
		r.trip(5)
		r.mustReject(StateOpen)
		if tot := r.status().Totals; tot.Rejected != 1 || tot.Failures != 5 {
			t.Fatalf("totals %+v, want 1 rejected, 5 failures", tot)
		}
		if err := r.b.Reset(r.key); err != nil {
			t.Fatal(err)
		}
		if err := r.b.ForceOpen(r.key, 0); err != nil {
			t.Fatal(err)
		}
		r.mustReject(StateForcedOpen)
		if tot := r.status().Totals; tot.Rejected != 2 {
			t.Fatalf("totals %+v, want 2 rejected", tot)
		}
	})
}

// shouldOnlyPermitFourCallsInHalfOpenState (and
// shouldThrowCallNotPermittedExceptionWhenNotFurtherTestCallsArePermitted):
// 4 calls in flight, the 5th and 6th turned away; the same in the next round.
func TestResilience4jHalfOpenPermitsOnlyNCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := r4jHalfOpen(t, r4jPolicy())
		for round := range 2 {
			var probes []*inFlight
			for range 4 {
				f, ok := r.start()
				if !ok {
					t.Fatalf("round %d: probe %d rejected", round, len(probes)+1)
				}
				probes = append(probes, f)
			}
			r.mustReject(StateHalfOpen)
			r.mustReject(StateHalfOpen)
			for _, f := range probes {
				_ = f.finish(errPeer)
			}
			r.wantState(StateOpen)
			time.Sleep(5 * time.Second)
			r.wantState(StateHalfOpen)
		}
	})
}

// shouldOpenAfterFailureRateThresholdExceeded: F F F S stays closed (the
// window is not full), the fifth call, a success, opens at 60%; the next
// call is not permitted.
func TestResilience4jOpensAfterFailureRateThresholdExceeded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, r4jPolicy())
		r.fail()
		r.fail()
		r.fail()
		r.ok()
		r.wantState(StateClosed)
		r.wantWindow(1, 3)
		r.ok()
		r.wantState(StateOpen)
		e := r.lastEvent()
		if e.Reason != ReasonFailureRate || e.Failures != 3 || e.Successes != 2 || e.FailureRate() != 0.6 {
			t.Fatalf("trip %+v, want the failure rate at 60%%, 3 of 5", e.Transition)
		}
		r.mustReject(StateOpen)
		if tot := r.status().Totals; tot.Rejected != 1 {
			t.Fatalf("totals %+v, want 1 not permitted", tot)
		}
	})
}

// shouldOpenAfterSlowCallRateThresholdExceeded: 3 slow calls of 5 (60%)
// open, while the failure rate is 40%.
func TestResilience4jOpensAfterSlowCallRateThresholdExceeded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, r4jPolicy())
		_ = r.call(errPeer, 5*time.Second)
		_ = r.call(nil, 5*time.Second)
		_ = r.call(errPeer, 100*time.Millisecond)
		_ = r.call(nil, 100*time.Millisecond)
		r.wantState(StateClosed)
		_ = r.call(nil, 5*time.Second)
		r.wantState(StateOpen)
		e := r.lastEvent()
		if e.Reason != ReasonSlowCallRate || e.Slow != 3 || e.Failures != 2 || e.Successes != 3 {
			t.Fatalf("trip %+v, want the slow-call rate on 3 slow of 5, 2 failed", e.Transition)
		}
	})
}

// shouldTransitionToHalfOpenAfterWaitDuration: still open (and rejecting)
// 3s into a 5s wait; half-open after 6s, with the window's counts empty.
func TestResilience4jTransitionsToHalfOpenAfterWaitDuration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, r4jPolicy())
		r.trip(5)
		r.mustReject(StateOpen)
		time.Sleep(3 * time.Second)
		r.wantState(StateOpen)
		if rj := r.mustReject(StateOpen); rj.RetryAfter != 2*time.Second {
			t.Fatalf("RetryAfter %v, want 2s", rj.RetryAfter)
		}
		time.Sleep(3 * time.Second)
		r.ok()
		r.wantState(StateHalfOpen)
		r.wantWindow(1, 0) // the probe's, none from before
		if e := r.lastEvent(); e.From != StateOpen || e.To != StateHalfOpen || e.Reason != ReasonCooldown ||
			!e.Time.Equal(r.status().Since) {
			t.Fatalf("change %+v", e.Transition)
		}
	})
}

// shouldTransitionToHalfOpenAfterWaitInterval: with exponential backoff
// the wait grows after a failed round (5s, then longer). Ours doubles with
// up to a fifth less of jitter (docs/migrating.md, "Cooldowns double"): the
// second wait is in [8s, 10s], where resilience4j's is 7.5s.
func TestResilience4jTransitionsToHalfOpenAfterWaitInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := r4jPolicy()
		p.MaxOpenFor = time.Minute
		r := r4jHalfOpen(t, p)
		r.fail()
		r.fail() // 3 successes can no longer come
		r.wantState(StateOpen)
		e := r.lastEvent()
		if e.OpenFor < 8*time.Second || e.OpenFor > 10*time.Second {
			t.Fatalf("second cooldown %v, want 10s less up to a fifth", e.OpenFor)
		}
		time.Sleep(8*time.Second - time.Millisecond)
		r.wantState(StateOpen)
		time.Sleep(e.OpenFor - 8*time.Second + time.Millisecond)
		r.wantState(StateHalfOpen)
	})
}

// shouldTransitionBackToOpenStateWhenFailureRateIsAboveThreshold: F F S F
// of 4 (75%) reopens. Documented difference (docs/migrating.md,
// resilience4j edges: "decides as soon as the answer is known"): with 3 of
// 4 to succeed, the second failure already reopens.
func TestResilience4jBackToOpenWhenFailureRateIsAboveThreshold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := r4jHalfOpen(t, r4jPolicy())
		r.fail()
		r.wantState(StateHalfOpen)
		r.fail()
		r.wantState(StateOpen)
		r.mustReject(StateOpen)
	})
}

// shouldTransitionBackToOpenStateWhenSlowCallRateIsAboveThreshold: 3 slow
// successes of 4 probes reopen, though none failed.
func TestResilience4jBackToOpenWhenSlowCallRateIsAboveThreshold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := r4jHalfOpen(t, r4jPolicy())
		for range 3 {
			_ = r.call(nil, 5*time.Second)
		}
		_ = r.call(nil, time.Second)
		r.wantState(StateOpen)
	})
}

// shouldTransitionBackToClosedStateWhenFailureIsBelowThreshold: F S S S
// closes; the closed window starts empty, then counts the next call.
func TestResilience4jBackToClosedWhenFailureIsBelowThreshold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := r4jHalfOpen(t, r4jPolicy())
		r.fail()
		r.ok()
		r.ok()
		r.wantState(StateHalfOpen)
		r.ok()
		r.wantState(StateClosed)
		r.wantWindow(0, 0)
		r.ok()
		r.wantWindow(1, 0)
	})
}

// shouldReleasePermissionWhenExceptionIgnored: an ignored error in
// half-open frees its permit and counts nowhere. Documented difference
// (decided as soon as known): the third success closes here, where
// resilience4j waits for its fourth call.
func TestResilience4jReleasesPermissionWhenExceptionIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := r4jHalfOpen(t, r4jPolicy())
		r.ok()
		r.ok()
		r.wantWindow(2, 0)
		r.mustRun(errIgnored)
		r.wantState(StateHalfOpen)
		r.wantWindow(2, 0)
		var probes []*inFlight
		for range 2 { // the ignored call's permit is free again
			f, ok := r.start()
			if !ok {
				t.Fatal("a probe was rejected: the ignored call kept its permit")
			}
			probes = append(probes, f)
		}
		r.mustReject(StateHalfOpen)
		_ = probes[0].finish(nil)
		r.wantState(StateClosed)
		_ = probes[1].finish(nil)
	})
}

// shouldIgnoreExceptionsAndThenTransitionToClosed: four ignored calls leave
// it half-open with nothing counted; then the successes close it.
func TestResilience4jIgnoresExceptionsThenTransitionsToClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := r4jHalfOpen(t, r4jPolicy())
		for range 4 {
			r.mustRun(errIgnored)
			r.wantState(StateHalfOpen)
		}
		r.wantWindow(0, 0)
		r.ok()
		r.ok()
		r.wantState(StateHalfOpen)
		r.ok()
		r.wantState(StateClosed)
		r.wantWindow(0, 0)
	})
}

// shouldResetMetrics and shouldResetClosedState: Reset empties the window.
func TestResilience4jResetMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, r4jPolicy())
		r.ok()
		r.fail()
		r.wantWindow(1, 1)
		if err := r.b.Reset(r.key); err != nil {
			t.Fatal(err)
		}
		r.wantState(StateClosed)
		r.wantWindow(0, 0)
	})
}

// shouldResetToClosedState: Reset closes an open breaker, with one change.
func TestResilience4jResetToClosedState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, r4jPolicy())
		r.trip(5)
		if err := r.b.Reset(r.key); err != nil {
			t.Fatal(err)
		}
		r.wantState(StateClosed)
		r.ok()
		r.wantChanges("closed->open", "open->closed")
		if e := r.lastEvent(); e.Reason != ReasonReset {
			t.Fatalf("reason %v, want reset", e.Reason)
		}
	})
}

// shouldDisableCircuitBreaker: disabled admits every call and records none.
func TestResilience4jDisableCircuitBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := r4jPolicy()
		p.Mode = ModeDisabled
		r := newPeerRig(t, p)
		r.ok()
		for range 10 {
			r.fail()
		}
		r.wantState(StateClosed)
		if s := r.status(); s.Totals != (Totals{}) || s.Window != (Counts{}) {
			t.Fatalf("disabled recorded %+v, %+v", s.Totals, s.Window)
		}
		r.wantChanges()
	})
}

// shouldForceOpenCircuitBreaker: forced open rejects, and stays so past the
// wait duration.
func TestResilience4jForceOpenCircuitBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, r4jPolicy())
		if err := r.b.ForceOpen(r.key, 0); err != nil {
			t.Fatal(err)
		}
		r.wantState(StateForcedOpen)
		r.mustReject(StateForcedOpen)
		time.Sleep(6 * time.Second)
		r.mustReject(StateForcedOpen)
		r.wantState(StateForcedOpen)
		if tot := r.status().Totals; tot.Rejected != 2 {
			t.Fatalf("totals %+v, want 2 rejected", tot)
		}
		r.wantChanges("closed->forced_open")
		if e := r.lastEvent(); e.To != StateForcedOpen || e.Reason != ReasonForceOpen {
			t.Fatalf("change %+v, want forced open", e.Transition)
		}
	})
}

// shouldForceCloseCircuitBreaker: forced closed admits and still counts a
// success and a failure.
func TestResilience4jForceCloseCircuitBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, r4jPolicy())
		if err := r.b.ForceClose(r.key); err != nil {
			t.Fatal(err)
		}
		r.wantState(StateForcedClosed)
		_ = r.call(nil, time.Second)
		_ = r.call(errPeer, time.Second)
		r.wantState(StateForcedClosed)
		r.wantWindow(1, 1)
	})
}

// shouldNotAllowTransitionFromClosedToHalfOpen: asking a closed breaker for
// probes is refused, and changes nothing.
func TestResilience4jNoTransitionFromClosedToHalfOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, r4jPolicy())
		if err := r.b.Probe(r.key); !errors.Is(err, ErrNotOpen) {
			t.Fatalf("Probe on closed: %v, want ErrNotOpen", err)
		}
		r.wantState(StateClosed)
		r.wantChanges()
	})
}

// shouldRecordMetricsInMetricsOnlyState: metrics-only admits every call and
// counts it. Undocumented difference, now in docs/migrating.md: resilience4j's
// METRICS_ONLY never changes state (it only emits FailureRateExceeded); our
// observe mode trips, reports and probes as enforce does, and counts what
// it would have rejected.
func TestResilience4jRecordsMetricsInMetricsOnlyState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := r4jPolicy()
		p.Mode = ModeObserve
		r := newPeerRig(t, p)
		r.fail()
		r.fail()
		r.fail()
		r.ok()
		r.wantWindow(1, 3)
		r.ok()
		if e := r.lastEvent(); e.To != StateOpen || e.Reason != ReasonFailureRate || e.Mode != ModeObserve {
			t.Fatalf("change %+v, want an observed trip", e)
		}
		r.fail() // admitted still
		if tot := r.status().Totals; tot.WouldReject != 1 || tot.Rejected != 0 {
			t.Fatalf("totals %+v, want 1 would_reject, none rejected", tot)
		}
	})
}

// ---- hystrix-go (hystrix/circuit_test.go, hystrix/metrics_test.go) ----

// hystrixPolicy is hystrix-go's defaults: 20 requests, 50% errors, a 10s
// rolling window, a 5s sleep window, one test request.
func hystrixPolicy() Policy {
	return Policy{MinRequests: 20, FailureRate: 0.5, ConsecutiveFailures: Off, Window: 10 * time.Second,
		OpenFor: 5 * time.Second, MaxOpenFor: Off, HalfOpenRequests: 1}
}

// circuit_test.go, TestIsOpen (the volume and error-percent rule): below
// RequestVolumeThreshold nothing opens; at 50% of 20 it opens (hystrix's
// IsHealthy is errPct < threshold: it opens at the threshold, as ours).
func TestHystrixOpensAtErrorPercentOnceVolumeIsMet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, hystrixPolicy())
		for range 19 {
			r.fail()
		}
		r.wantState(StateClosed)
		if err := r.b.Reset(r.key); err != nil {
			t.Fatal(err)
		}
		for range 10 {
			r.ok()
		}
		for range 9 {
			r.fail()
		}
		r.wantState(StateClosed)
		r.fail() // 10 of 20
		r.wantState(StateOpen)
	})
}

// circuit_test.go, TestAllowSingleTest (AllowRequest after the sleep
// window): one test request, the others refused until it answers.
func TestHystrixAllowSingleTest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, hystrixPolicy())
		r.trip(20)
		time.Sleep(5 * time.Second)
		probe, ok := r.start()
		if !ok {
			t.Fatal("the single test was rejected")
		}
		for range 3 {
			r.mustReject(StateHalfOpen)
		}
		_ = probe.finish(errPeer)
		r.wantState(StateOpen)
		r.mustReject(StateOpen)
	})
}

// circuit_test.go, TestReportEventOpenThenClose: a success after the sleep
// window closes the circuit and its metrics start anew.
func TestHystrixReportEventOpenThenClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, hystrixPolicy())
		r.trip(20)
		time.Sleep(5 * time.Second)
		r.ok()
		r.wantState(StateClosed)
		r.wantWindow(0, 0)
		r.wantChanges("closed->open", "open->half_open", "half_open->closed")
	})
}

// circuit_test.go, TestReportEventMultiThreaded: outcomes reported from
// many goroutines at once are all counted, and trip once.
func TestHystrixReportEventMultiThreaded(t *testing.T) {
	r := newPeerRig(t, Policy{MinRequests: 20, FailureRate: 0.5, ConsecutiveFailures: Off, Window: time.Minute,
		OpenFor: time.Hour, MaxOpenFor: Off})
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			for range 20 {
				if i%2 == 0 {
					_ = r.call(nil, 0)
				} else {
					_ = r.call(errPeer, 0)
				}
			}
		})
	}
	wg.Wait()
	tot := r.status().Totals
	if tot.Successes+tot.Failures+tot.Rejected != 1000 {
		t.Fatalf("totals %+v, want 1000 calls", tot)
	}
	if got := r.changes(); len(got) != 1 || got[0] != "closed->open" {
		t.Fatalf("changes %v, want one trip", got)
	}
}

// ---- Polly (CircuitBreakerSpecs.cs, AdvancedCircuitBreakerSpecs.cs) ----

// pollyPolicy is CircuitBreaker(2, durationOfBreak): two exceptions in a
// row break it for a minute; one trial call.
func pollyPolicy() Policy {
	return Policy{ConsecutiveFailures: 2, FailureRate: Off, OpenFor: time.Minute, MaxOpenFor: Off, HalfOpenRequests: 1}
}

// CircuitBreakerSpecs, Should_open_circuit_blocking_executions_and_noting_
// the_last_raised_exception_after_specified_number_of_specified_exception_
// have_been_raised: two failures break it; the third call never runs.
func TestPollyOpensAfterSpecifiedNumberOfExceptions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, pollyPolicy())
		r.fail()
		r.wantState(StateClosed)
		r.fail()
		r.wantState(StateOpen)
		ran := false
		err := r.b.Do(context.Background(), r.key, func(context.Context) error { ran = true; return nil })
		if ran || !errors.Is(err, ErrOpen) {
			t.Fatalf("while broken: ran %v, err %v", ran, err)
		}
	})
}

// CircuitBreakerSpecs, Should_not_open_circuit_if_exception_raised_is_not_
// the_specified_exception: errors the policy does not handle never break.
func TestPollyDoesNotOpenOnUnhandledExceptions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, pollyPolicy())
		for range 5 {
			r.mustRun(errIgnored)
		}
		r.wantState(StateClosed)
		if tot := r.status().Totals; tot.Excluded != 5 || tot.Failures != 0 {
			t.Fatalf("totals %+v, want 5 excluded", tot)
		}
	})
}

// CircuitBreakerSpecs, Should_halfopen_circuit_after_the_specified_duration_
// has_passed: half-open at durationOfBreak exactly, open a tick before.
func TestPollyHalfOpensAfterTheSpecifiedDuration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, pollyPolicy())
		r.trip(2)
		time.Sleep(time.Minute - time.Nanosecond)
		r.wantState(StateOpen)
		if s := r.status(); s.RetryAfter <= 0 {
			t.Fatalf("open with RetryAfter %v", s.RetryAfter)
		}
		time.Sleep(time.Nanosecond)
		r.wantState(StateHalfOpen)
		if s := r.status(); s.Rejecting || s.RetryAfter != 0 {
			t.Fatalf("half-open: rejecting %v, RetryAfter %v", s.Rejecting, s.RetryAfter)
		}
	})
}

// CircuitBreakerSpecs, Should_open_circuit_again_after_the_specified_
// duration_has_passed_if_the_next_call_raises_an_exception, and
// Should_reset_circuit_after_the_specified_duration_has_passed_if_the_next_
// call_does_not_raise_an_exception.
func TestPollyTrialCallDecides(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, pollyPolicy())
		r.trip(2)
		time.Sleep(time.Minute)
		r.fail()
		r.wantState(StateOpen)
		r.mustReject(StateOpen)
		time.Sleep(time.Minute)
		r.ok()
		r.wantState(StateClosed)
		r.fail() // one failure after closing does not break it again
		r.wantState(StateClosed)
	})
}

// CircuitBreakerSpecs, Should_call_onbreak_when_breaking_circuit_
// automatically, Should_call_onhalfopen_..., Should_call_onreset_when_
// automatically_closing_circuit_but_not_when_halfopen and
// Should_not_call_onreset_on_successive_successful_calls: each callback once,
// in order, and none for calls that change nothing.
func TestPollyCallbacksOncePerChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, pollyPolicy())
		for range 3 {
			r.ok()
		}
		r.wantChanges()
		r.trip(2)
		r.mustReject(StateOpen)
		r.wantChanges("closed->open")
		time.Sleep(time.Minute)
		r.wantChanges("closed->open", "open->half_open")
		r.ok()
		r.ok()
		r.ok()
		r.wantChanges("closed->open", "open->half_open", "half_open->closed")
	})
}

// CircuitBreakerSpecs, Should_isolate_circuit_when_isolate_is_called and
// Should_close_circuit_again_on_reset_after_manual_override: isolated, it
// rejects past the break duration; Reset closes it.
func TestPollyIsolateThenReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, pollyPolicy())
		if err := r.b.ForceOpen(r.key, 0); err != nil {
			t.Fatal(err)
		}
		r.mustReject(StateForcedOpen)
		time.Sleep(2 * time.Minute)
		r.mustReject(StateForcedOpen)
		if err := r.b.Reset(r.key); err != nil {
			t.Fatal(err)
		}
		r.wantState(StateClosed)
		r.ok()
	})
}

// CircuitBreakerSpecs, Should_be_able_to_reset_automatically_opened_
// circuit_without_specified_duration_passing.
func TestPollyResetAutomaticallyOpenedCircuit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, pollyPolicy())
		r.trip(2)
		if err := r.b.Reset(r.key); err != nil {
			t.Fatal(err)
		}
		r.wantState(StateClosed)
		r.ok()
	})
}

// pollyAdvanced is AdvancedCircuitBreaker(0.5, samplingDuration 10s,
// minimumThroughput 4, durationOfBreak 30s).
func pollyAdvanced() Policy {
	return Policy{FailureRate: 0.5, MinRequests: 4, Window: 10 * time.Second, ConsecutiveFailures: Off,
		OpenFor: 30 * time.Second, MaxOpenFor: Off, HalfOpenRequests: 1}
}

// AdvancedCircuitBreakerSpecs, Should_open_circuit_with_the_last_raised_
// exception_if_failure_threshold_exceeded_and_throughput_threshold_
// equalled_within_timeslice_in_same_window: S S F F opens on the fourth.
func TestPollyAdvancedOpensAtThresholdAndThroughput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, pollyAdvanced())
		r.ok()
		r.ok()
		r.fail()
		r.wantState(StateClosed)
		r.fail()
		r.wantState(StateOpen)
	})
}

// AdvancedCircuitBreakerSpecs, Should_not_open_circuit_if_failure_threshold_
// and_minimum_threshold_is_equalled_but_last_call_is_success: Polly judges
// only on a failure, so F F S S (50% of 4) stays closed there. Undocumented
// difference, now in docs/migrating.md: ours judges the window after every
// outcome, as resilience4j does (its shouldOpenAfterFailureRateThreshold
// Exceeded opens on a success), so the fourth call opens it.
func TestPollyAdvancedThresholdEqualledByASuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, pollyAdvanced())
		r.fail()
		r.fail()
		r.ok()
		r.wantState(StateClosed)
		r.ok()
		r.wantState(StateOpen)
	})
}

// AdvancedCircuitBreakerSpecs, Should_not_open_circuit_if_failure_threshold_
// exceeded_but_throughput_threshold_not_met_before_timeslice_expires: the
// failures age out of the sampling duration before the throughput is met.
func TestPollyAdvancedFailuresAgeOutBeforeThroughput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, pollyAdvanced())
		r.fail()
		r.fail()
		r.fail()
		time.Sleep(10 * time.Second)
		r.fail()
		r.wantState(StateClosed)
		r.wantWindow(0, 1)
	})
}

// ---- opossum (test/test.js, test/half-open-test.js, test/volume-threshold-test.js,
// test/enable-disable-test.js, test/error-filter-test.js) ----

// opossumPolicy is docs/migrating.md's opossum snippet with
// volumeThreshold v.
func opossumPolicy(v int) Policy {
	return Policy{FailureRate: math.Nextafter(0.5, 1), MinRequests: v, Window: 10 * time.Second, OpenFor: 30 * time.Second,
		MaxOpenFor: Off, HalfOpenRequests: 1, ConsecutiveFailures: Off}
}

// test/test.js, 'Breaker opens when error percentage exceeds the threshold'
// (errorThresholdPercentage: 50): 1 of 2 does not open, 2 of 3 does, with
// the documented Nextafter mapping; FailureRate 0.5 opens on 1 of 2
// (documented difference: "reaches" here, "exceeds" there).
func TestOpossumOpensAboveErrorThresholdPercentage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, opossumPolicy(2))
		r.ok()
		r.fail()
		r.wantState(StateClosed)
		r.fail()
		r.wantState(StateOpen)

		at := newPeerRig(t, Policy{FailureRate: 0.5, MinRequests: 2, ConsecutiveFailures: Off})
		at.ok()
		at.fail()
		at.wantState(StateOpen)
	})
}

// test/volume-threshold-test.js, 'volumeThreshold: Circuit does not open
// until volume threshold is met' and '... opens after volume threshold and
// error threshold percentage is met'.
func TestOpossumVolumeThreshold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, opossumPolicy(3))
		r.fail()
		r.fail()
		r.wantState(StateClosed)
		r.fail()
		r.wantState(StateOpen)
	})
}

// test/half-open-test.js, 'When half-open, the circuit only allows one
// request through': one trial, the rest rejected; its success closes.
func TestOpossumHalfOpenAllowsOneRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, opossumPolicy(1))
		r.trip(1)
		time.Sleep(30 * time.Second)
		trial, ok := r.start()
		if !ok {
			t.Fatal("the trial was rejected")
		}
		r.mustReject(StateHalfOpen)
		if err := trial.finish(nil); err != nil {
			t.Fatal(err)
		}
		r.wantState(StateClosed)
		r.wantChanges("closed->open", "open->half_open", "half_open->closed")
	})
}

// test/enable-disable-test.js, 'When disabled the circuit should always be
// closed': enabled: false never opens, whatever fails.
func TestOpossumDisabledIsAlwaysClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := opossumPolicy(1)
		p.Mode = ModeDisabled
		r := newPeerRig(t, p)
		for range 20 {
			r.fail()
		}
		r.wantState(StateClosed)
		r.wantChanges()
	})
}

// test/error-filter-test.js, 'Circuit breaker errorFilter option - error
// is filtered': a filtered error is not a failure (it counts as a success)
// and opens nothing.
func TestOpossumErrorFilter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, opossumPolicy(1))
		for range 5 {
			r.mustRun(errFilter)
		}
		r.wantState(StateClosed)
		if tot := r.status().Totals; tot.Successes != 5 || tot.Failures != 0 {
			t.Fatalf("totals %+v, want the filtered errors as successes", tot)
		}
	})
}

// ---- mercari/go-circuitbreaker (circuitbreaker_test.go) ----

// TestNewTripFuncFailureRate (NewTripFuncFailureRate(10, 0.4)): at least
// 10 calls, and failures/total >= 0.4.
func TestMercariTripFuncFailureRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, Policy{MinRequests: 10, FailureRate: 0.4, ConsecutiveFailures: Off})
		for range 6 {
			r.ok()
		}
		for range 3 {
			r.fail()
		}
		r.wantState(StateClosed) // 9 calls
		r.fail()                 // 4 of 10
		r.wantState(StateOpen)
	})
}

// The FailOnContextCancel option (false by default; its test
// TestCircuitBreakerDo's context cases): a call its caller canceled is
// ignored.
func TestMercariContextCanceledIsIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, Policy{ConsecutiveFailures: 1})
		ctx, cancel := context.WithCancel(context.Background())
		err := r.b.Do(ctx, r.key, func(ctx context.Context) error {
			cancel()
			return ctx.Err()
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Do: %v", err)
		}
		r.wantState(StateClosed)
		if tot := r.status().Totals; tot.Excluded != 1 {
			t.Fatalf("totals %+v, want the canceled call excluded", tot)
		}
	})
}

// The FailOnContextDeadline option (false by default there): a call whose
// deadline passed while it ran is ignored. Undocumented difference, now in
// docs/migrating.md: here a deadline exceeded during the call is a
// failure (a slow dependency), as DESIGN and Do's doc say.
func TestMercariContextDeadlineIsAFailureHere(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, Policy{ConsecutiveFailures: 1})
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := r.b.Do(ctx, r.key, func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Do: %v", err)
		}
		r.wantState(StateOpen)
	})
}

// ---- cep21/circuit (closers/hystrix/opener_test.go, circuit_test.go) ----

// closers/hystrix/opener_test.go (RequestVolumeThreshold and
// ErrorThresholdPercentage): no opening under the volume, opening at the
// percentage once it is met.
func TestCep21OpenerVolumeAndErrorPercentage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, Policy{MinRequests: 10, FailureRate: 0.5, ConsecutiveFailures: Off})
		for range 9 {
			r.fail()
		}
		r.wantState(StateClosed)
		r.fail()
		r.wantState(StateOpen)
	})
}

// circuit_test.go (bad requests and interrupts are not failures): a call
// whose caller gave up before it was admitted is excluded, not a failure.
func TestCep21InterruptedCallsAreNotFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, Policy{ConsecutiveFailures: 1})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = r.b.Do(ctx, r.key, func(ctx context.Context) error { return ctx.Err() })
		r.wantState(StateClosed)
		if tot := r.status().Totals; tot.Excluded != 1 || tot.Failures != 0 {
			t.Fatalf("totals %+v, want the call excluded", tot)
		}
	})
}

// circuit_test.go (TestCircuitAttemptsMetrics, the opened/closed callbacks
// told once): many goroutines failing at once open it once, and the one
// probe closes it once.
func TestCep21OneEventPerChangeUnderConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPeerRig(t, Policy{ConsecutiveFailures: 3, FailureRate: Off, OpenFor: time.Second, MaxOpenFor: Off, HalfOpenRequests: 1})
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() { _ = r.call(errPeer, 0) })
		}
		wg.Wait()
		r.wantState(StateOpen)
		time.Sleep(time.Second)
		for range 64 {
			wg.Go(func() { _ = r.call(nil, 0) })
		}
		wg.Wait()
		r.wantState(StateClosed)
		r.wantChanges("closed->open", "open->half_open", "half_open->closed")
	})
}
