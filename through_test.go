package httpbreaker

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestAPanickingClassifierLeavesNoProbeSlotTaken: a classifier written for
// HTTP calls that reads c.Request panics on Do's calls (Request is nil).
// The panic goes up to the caller, which recovers it; the breaker never
// hears how the probe ended, so its slot stays taken: with ProbeTimeout
// off, the key stays half-open, rejecting every call, for ever, even once
// the classifier no longer panics.
func TestAPanickingClassifierLeavesNoProbeSlotTaken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buggy atomic.Bool
		classify := func(c Call) Outcome {
			if buggy.Load() {
				_ = c.Request.URL.Path // nil Request for Do: a nil dereference
			}
			return DefaultClassifier(c)
		}
		b, _ := newSet(t, WithClassifier(classify),
			WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Second, HalfOpenRequests: 1, ProbeTimeout: Off}))
		defer b.Close()
		ctx := context.Background()
		fail := func(context.Context) error { return errors.New("down") }
		ok := func(context.Context) error { return nil }
		_ = b.Do(ctx, "db", fail)
		if st := b.State("db"); st != StateOpen {
			t.Fatalf("state %v after a failure, want open", st)
		}
		time.Sleep(time.Second)
		buggy.Store(true)
		func() {
			defer func() { t.Logf("the probe's caller recovered: %v", recover()) }()
			_ = b.Do(ctx, "db", ok)
		}()
		buggy.Store(false)
		time.Sleep(time.Hour)
		err := b.Do(ctx, "db", ok)
		s := status(t, b, "db")
		t.Logf("an hour later: Do = %v; state %v, in flight %d", err, s.State, s.Window.InFlight)
		if err != nil || s.State != StateClosed {
			t.Fatalf("an hour after a probe whose classifier panicked, with a classifier that no longer does: "+
				"Do = %v, state %v, in flight %d; want the next probe admitted and the key closed", err, s.State, s.Window.InFlight)
		}
	})
}
