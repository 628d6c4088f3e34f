package httpbreaker

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/httpbreaker/httpbreaker/sharedstate"
)

// eventLog is a hook that keeps the events.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) hook(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) list() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.events...)
}

// TestFleetHoldEndsWhenCutOffWithoutARequest: docs say a half-open
// hold of the fleet's ends "at once when the link to the fleet is lost";
// the alarm is what makes changes on a key that gets no request. Nothing
// here reads the key's state: only the alarm could end the hold.
func TestFleetHoldEndsWhenCutOffWithoutARequest(t *testing.T) {
	store := newFakeStore()
	var log eventLog
	b, _ := newSet(t, WithSharedState(store), WithStateChangeHook(log.hook),
		WithPolicy(Policy{OpenFor: time.Minute, MaxOpenFor: time.Hour}))
	defer b.Close()
	b.Middleware("search")(newStatusHandler(200))
	waitFor(t, "connected", func() bool { return b.FleetStatus().Connected })
	// The fleet holds the key half-open (its cooldown is over: Open 0).
	store.set("search", sharedstate.Reply{Hold: &sharedstate.Hold{Generation: 1, Open: 0, Nominal: time.Minute,
		Reason: "failure_rate", Replica: "r2", Failures: 30, FailingReplicas: 2}})
	waitFor(t, "held half-open", func() bool {
		_ = b.Flush(context.Background())
		for _, e := range log.list() {
			if e.To == StateHalfOpen {
				return true
			}
		}
		return false
	})
	store.setDown(true)
	waitFor(t, "disconnected", func() bool { return !b.FleetStatus().Connected })
	cutAt := time.Now()
	time.Sleep(2 * time.Second)
	_ = b.Flush(context.Background())
	var ended *Event
	for _, e := range log.list() {
		if e.From == StateHalfOpen {
			ended = &e
		}
	}
	if ended == nil {
		t.Fatalf("2s after the link was lost, the hook saw no end of the half-open hold: events %v; "+
			"Status now says %v (reading it makes the change)", log.list(), b.State("search"))
	}
	t.Logf("ended %v after the cut: %+v", ended.Time.Sub(cutAt), ended.Transition)
}

// TestFleetHoldsRacingTrafficAndControlAreToldOnce: the fleet's holds (open, half-open, closed, new
// generations), its commands, a store that goes down and comes back, local
// traffic that fails and succeeds, probes, control and readers, all at
// once. Each change must be told once from the state the key was in.
func TestFleetHoldsRacingTrafficAndControlAreToldOnce(t *testing.T) {
	store := newFakeStore()
	b, hooks, sink, reg := told(t, WithSharedState(store), WithReplica("r1"),
		WithPolicy(Policy{ConsecutiveFailures: 2, OpenFor: time.Millisecond, MaxOpenFor: 4 * time.Millisecond,
			ProbeTimeout: 2 * time.Millisecond, HalfOpenRequests: 2, RecoveryRamp: 2 * time.Millisecond}))
	ctx := context.Background()
	deadline := time.Now().Add(2 * time.Second)
	together(12, func(i int) {
		r := rand.New(rand.NewPCG(uint64(i), 3))
		for n := 0; time.Now().Before(deadline); n++ {
			switch {
			case i == 0: // the fleet
				gen := int64(n/3 + 1)
				var rp sharedstate.Reply
				switch r.IntN(5) {
				case 0:
					rp.Hold = &sharedstate.Hold{Generation: gen, Open: time.Duration(r.IntN(3)) * time.Millisecond,
						Nominal: time.Millisecond, Reason: "failure_rate", Replica: "r2", Failures: 9, FailingReplicas: 2}
				case 1:
					rp.Hold = &sharedstate.Hold{Generation: gen, Closed: true, Reason: "failure_rate", Replica: "r2"}
				case 2:
					kinds := []sharedstate.Kind{sharedstate.ForceOpen, sharedstate.Release, sharedstate.ForceClose, sharedstate.Reset, sharedstate.Probe}
					rp.Command = sharedstate.Command{Version: int64(n + 1), Kind: kinds[r.IntN(len(kinds))], By: "ops", Replica: "r2",
						For: time.Duration(r.IntN(2)) * time.Millisecond}
				case 3:
					store.setDown(r.IntN(2) == 0)
				}
				store.set("k", rp)
				time.Sleep(time.Duration(r.IntN(3000)) * time.Microsecond)
			case i == 1:
				switch r.IntN(5) {
				case 0:
					_ = b.ForceOpen("k", time.Duration(r.IntN(2000))*time.Microsecond)
				case 1:
					_ = b.Release("k")
				case 2:
					_ = b.Probe("k")
				case 3:
					_ = b.Snapshot()
				}
				time.Sleep(time.Duration(r.IntN(2000)) * time.Microsecond)
			default:
				_ = b.Do(ctx, "k", func(context.Context) error {
					if r.IntN(10) == 0 {
						time.Sleep(3 * time.Millisecond)
					}
					if r.IntN(3) == 0 {
						return errFailing
					}
					return nil
				})
			}
		}
	})
	store.setDown(false)
	_ = b.Close()
	_ = b.Reset("k")
	events := checkChain(t, b, hooks, sink, reg, "k", StateClosed)
	t.Logf("%d events", len(events))
}
