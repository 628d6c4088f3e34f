package httpbreaker

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// errFailing is the error of a call that fails.
var errFailing = errors.New("failing")

// agree checks, at one instant (a synctest bubble's time stands still
// while the test runs), that the key's Status and what a call gets agree:
// open means a positive RetryAfter; a rejected call names the state Status
// shows, and the same RetryAfter.
func agree(t *testing.T, b *Breakers, key string, call func() error) Status {
	t.Helper()
	s := status(t, b, key)
	if (s.State == StateOpen) && s.RetryAfter <= 0 {
		t.Fatalf("at %v: %v with RetryAfter %v", time.Now(), s.State, s.RetryAfter)
	}
	err := call()
	var rj *RejectedError
	switch {
	case errors.As(err, &rj):
		if !s.Rejecting || rj.State != s.State || (s.State == StateOpen || s.State == StateForcedOpen && s.RetryAfter > 0) && rj.RetryAfter != s.RetryAfter {
			t.Fatalf("at %v: Status %v rejecting %v retry %v; the call was rejected as %v, retry %v",
				time.Now(), s.State, s.Rejecting, s.RetryAfter, rj.State, rj.RetryAfter)
		}
	case s.Rejecting && s.State != StateRecovering:
		t.Fatalf("at %v: Status %v says rejecting (retry %v), the call was admitted: %v", time.Now(), s.State, s.RetryAfter, err)
	}
	return s
}

func TestStatusAndCallsAgreeAtEveryInstant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Second, MaxOpenFor: 8 * time.Second,
			HalfOpenRequests: 1, ProbeTimeout: 500 * time.Millisecond, RecoveryRamp: time.Second}))
		defer b.Close()
		ctx := context.Background()
		var fail bool
		call := func() error {
			return b.Do(ctx, "k", func(context.Context) error {
				if fail {
					return errFailing
				}
				return nil
			})
		}
		fail = true
		_ = call()
		states := map[State]int{}
		for step := 0; step < 40000; step++ {
			fail = (step/3000)%2 == 0
			if step%5000 == 100 {
				_ = b.ForceOpen("k", 700*time.Millisecond)
			}
			s := agree(t, b, "k", call)
			states[s.State]++
			time.Sleep(time.Millisecond)
		}
		t.Logf("states seen: %v", states)
	})
}

// TestSinceIsWhenTheKeyEnteredItsState: Status.Since is "when the key
// entered State". A key forced closed stays forced closed while its breaker
// trips underneath; its Since must stay the moment it was forced.
func TestSinceIsWhenTheKeyEnteredItsState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Minute}))
		defer b.Close()
		ctx := context.Background()
		_ = b.Do(ctx, "k", func(context.Context) error { return nil })
		forcedAt := time.Now()
		if err := b.ForceClose("k"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Second)
		_ = b.Do(ctx, "k", func(context.Context) error { return errFailing }) // trips underneath
		s := status(t, b, "k")
		if s.State != StateForcedClosed {
			t.Fatalf("state %v", s.State)
		}
		if !s.Since.Equal(forcedAt) {
			t.Fatalf("forced closed at %v; Status says %v since %v (when the breaker underneath tripped)",
				forcedAt, s.State, s.Since)
		}
	})
}
