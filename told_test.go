package httpbreaker

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/httpbreaker/httpbreaker/sharedstate"
	"github.com/prometheus/client_golang/prometheus"
)

// These tests hold the promise of breaker.go: every change of a key's
// state is made and told under its mu, so that each real change is told
// once, with its true From and To, on every channel (the hook, the log, the
// transitions metric, the history), however many goroutines make changes
// at once.

// hookLog collects the events a hook gets.
type hookLog struct {
	mu     sync.Mutex
	events []Event
}

func (h *hookLog) hook(e Event) {
	h.mu.Lock()
	h.events = append(h.events, e)
	h.mu.Unlock()
}

func (h *hookLog) all() []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Event(nil), h.events...)
}

// told makes a set whose hook and log the test reads, with a registry for
// its metrics.
func told(t *testing.T, opts ...Option) (*Breakers, *hookLog, *logSink, *prometheus.Registry) {
	t.Helper()
	hooks := &hookLog{}
	reg := prometheus.NewPedanticRegistry()
	b, sink := newSet(t, append([]Option{WithStateChangeHook(hooks.hook), WithRegisterer(reg)}, opts...)...)
	t.Cleanup(func() { _ = b.Close() })
	return b, hooks, sink, reg
}

// checkChain fails unless the events of key form one chain, each starting
// in the state the one before it left the key in (from the state before
// the first), and agree with the log records, the transitions metric and
// the history: the same changes, told once each.
func checkChain(t *testing.T, b *Breakers, hooks *hookLog, sink *logSink, reg *prometheus.Registry, key string, first State) []Event {
	t.Helper()
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var events []Event
	for _, e := range hooks.all() {
		if e.Key == key {
			events = append(events, e)
		}
	}
	at := first
	made := map[[2]State]int{}
	for i, e := range events {
		if e.before() != at {
			t.Fatalf("event %d (%v -> %v, %s, forced %v) starts in %v, but the key was %v: a change told from a state it was not in",
				i, e.From, e.To, e.Reason, e.Forced, e.before(), at)
		}
		if e.From == e.To {
			t.Fatalf("event %d tells %v -> %v: no change", i, e.From, e.To)
		}
		if i > 0 && e.Time.Before(events[i-1].Time) {
			t.Fatalf("event %d is dated %v, before the one before it (%v): changes are dated in the order they were made",
				i, e.Time, events[i-1].Time)
		}
		at = e.shown()
		made[[2]State{e.From, e.To}]++
	}
	if st := b.State(key); st != at {
		t.Fatalf("the events leave %s %v, but it is %v", key, at, st)
	}
	if logged := sink.changes(); len(logged) != len(events) {
		t.Fatalf("%d log records of changes, %d hook events: each change is told once on each channel", len(logged), len(events))
	}
	for fromTo, n := range made {
		if got := transitionsMetric(t, reg, key, fromTo[0], fromTo[1]); int(got) != n {
			t.Fatalf("transitions_total{%v->%v} = %v, %d events", fromTo[0], fromTo[1], got, n)
		}
	}
	s := status(t, b, key)
	kept := events[max(len(events)-historyLen, 0):]
	if len(s.History) != len(kept) {
		t.Fatalf("history keeps %d transitions, want the last %d of %d events", len(s.History), len(kept), len(events))
	}
	for i, tr := range s.History {
		if tr != kept[i].Transition {
			t.Fatalf("history %d is %+v, event %+v", i, tr, kept[i].Transition)
		}
	}
	return events
}

// transitionsMetric returns transitions_total{key, from, to}.
func transitionsMetric(t *testing.T, reg *prometheus.Registry, key string, from, to State) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "httpbreaker_transitions_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["key"] == key && labels["from"] == from.String() && labels["to"] == to.String() {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// together runs f on n goroutines that start at once.
func together(n int, f func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			f(i)
		}()
	}
	close(start)
	wg.Wait()
}

func TestConcurrentForceOpenIsToldOnce(t *testing.T) {
	b, hooks, sink, reg := told(t)
	b.Middleware("k")
	const rounds = 50
	for range rounds {
		together(100, func(int) { _ = b.ForceOpen("k", 0) })
		together(100, func(int) { _ = b.Release("k") })
	}
	events := checkChain(t, b, hooks, sink, reg, "k", StateClosed)
	if len(events) != 2*rounds {
		t.Fatalf("%d changes told, want %d: one closed -> forced_open and one back per round", len(events), 2*rounds)
	}
}

func TestConcurrentResetOfAnOpenKeyIsToldOnce(t *testing.T) {
	b, hooks, sink, reg := told(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Hour}))
	h := b.Middleware("k")(newStatusHandler(500))
	const rounds = 50
	for range rounds {
		record(h, "/") // trips it
		together(100, func(int) { _ = b.Reset("k") })
	}
	events := checkChain(t, b, hooks, sink, reg, "k", StateClosed)
	resets := 0
	for _, e := range events {
		if e.Reason == ReasonReset {
			resets++
		}
	}
	if resets != rounds || len(events) != 2*rounds {
		t.Fatalf("%d resets in %d changes told, want %d in %d: one trip and one reset per round", resets, len(events), rounds, 2*rounds)
	}
}

func TestForceOpenRacingForceCloseTellsTheStateTheKeyWasIn(t *testing.T) {
	b, hooks, sink, reg := told(t)
	b.Middleware("k")
	together(8, func(i int) {
		for range 200 {
			if i%2 == 0 {
				_ = b.ForceOpen("k", 0)
			} else {
				_ = b.ForceClose("k")
			}
		}
	})
	for _, e := range checkChain(t, b, hooks, sink, reg, "k", StateClosed) {
		if e.From == StateClosed && e.To == StateForcedClosed && e.Reason != ReasonForceClose ||
			e.From == StateForcedOpen && e.To == StateForcedOpen {
			t.Fatalf("told %v -> %v (%s)", e.From, e.To, e.Reason)
		}
	}
}

// TestControlRacingTrafficIsToldOnce puts every control operation and
// traffic that trips and recovers the key (short cooldowns, probes that
// fail and succeed, a probe timeout, a recovery ramp) on one key at once.
func TestControlRacingTrafficIsToldOnce(t *testing.T) {
	b, hooks, sink, reg := told(t, WithPolicy(Policy{ConsecutiveFailures: 2, OpenFor: time.Millisecond, MaxOpenFor: 4 * time.Millisecond,
		HalfOpenRequests: 2, ProbeTimeout: 5 * time.Millisecond, RecoveryRamp: 2 * time.Millisecond}))
	up := newStatusHandler(500)
	h := b.Middleware("k")(up)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if n%7 == i%7 {
					up.set([]int{200, 500}[n%2])
				}
				record(h, "/")
			}
		}()
	}
	together(6, func(i int) {
		for n := range 300 {
			switch (i + n) % 6 {
			case 0:
				_ = b.ForceOpen("k", time.Duration(n%3)*time.Millisecond)
			case 1:
				_ = b.ForceClose("k")
			case 2:
				_ = b.Release("k")
			case 3:
				_ = b.Reset("k")
			case 4:
				_ = b.Probe("k")
			default:
				_ = b.Snapshot()
			}
		}
	})
	close(stop)
	wg.Wait()
	_ = b.Reset("k") // closed, with no change due: nothing moves while the test reads
	if events := checkChain(t, b, hooks, sink, reg, "k", StateClosed); len(events) < 100 {
		t.Fatalf("only %d changes: the test did not race much", len(events))
	}
}

// TestFleetCommandsRacingLocalControlAreToldOnce applies the fleet's
// commands on the sync goroutine while local control and traffic change
// the key.
func TestFleetCommandsRacingLocalControlAreToldOnce(t *testing.T) {
	store := newFakeStore()
	b, hooks, sink, reg := told(t, WithSharedState(store), WithReplica("r1"),
		WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Millisecond}))
	h := b.Middleware("k")(newStatusHandler(500))
	kinds := []sharedstate.Kind{sharedstate.ForceOpen, sharedstate.Release, sharedstate.ForceClose, sharedstate.Release, sharedstate.Reset}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // another replica's operator
		defer wg.Done()
		for v := int64(1); ; v++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			store.set("k", sharedstate.Reply{Command: sharedstate.Command{Version: v, Kind: kinds[v%int64(len(kinds))], By: "ops", Replica: "r2"}})
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			record(h, "/")
		}
	}()
	deadline := time.Now().Add(300 * time.Millisecond) // some thirty syncs
	together(4, func(i int) {
		for n := 0; time.Now().Before(deadline); n++ {
			if (i+n)%2 == 0 {
				_ = b.ForceOpen("k", 0)
			} else {
				_ = b.Release("k")
			}
			time.Sleep(100 * time.Microsecond)
		}
	})
	close(stop)
	wg.Wait()
	_ = b.Close()
	_ = b.Reset("k")
	events := checkChain(t, b, hooks, sink, reg, "k", StateClosed)
	fleet := 0
	for _, e := range events {
		if e.Fleet {
			fleet++
		}
	}
	if fleet == 0 {
		t.Fatalf("no change came from the fleet in %d: the test did not race the sync goroutine", len(events))
	}
}

// TestEveryWindowKindCountsUnderRaces runs each shape of policy under many
// goroutines, with readers, for the race detector, and checks that every
// call is counted once.
func TestEveryWindowKindCountsUnderRaces(t *testing.T) {
	for name, p := range map[string]Policy{
		"time window":         {},
		"last calls":          {LastCalls: 50, Window: 0},
		"slow call rate":      {SlowCall: time.Millisecond, SlowCallRate: 0.5, FailureRate: Off},
		"half-open successes": {ConsecutiveFailures: 3, OpenFor: time.Millisecond, HalfOpenRequests: 4, HalfOpenSuccesses: 2},
		"recovery ramp":       {ConsecutiveFailures: 3, OpenFor: time.Millisecond, RecoveryRamp: time.Millisecond},
	} {
		t.Run(name, func(t *testing.T) {
			b, _ := newSet(t, WithPolicy(p))
			defer b.Close()
			up := newStatusHandler(200)
			var n atomic.Int64
			h := b.Middleware("k")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if p.SlowCall > 0 && n.Add(1)%10 == 0 {
					time.Sleep(2 * time.Millisecond) // a slow call
				}
				up.ServeHTTP(w, r)
			}))
			const callers, calls = 16, 300
			together(callers+2, func(i int) {
				for n := range calls {
					switch i {
					case callers:
						_ = b.Snapshot()
					case callers + 1:
						if n%50 == 0 {
							up.set([]int{200, 500}[n/50%2])
						}
					default:
						record(h, "/")
					}
				}
			})
			s := status(t, b, "k")
			tot := s.Totals
			if got := tot.Successes + tot.Failures + tot.Slow + tot.Excluded + tot.Rejected; got != callers*calls {
				t.Fatalf("counted %d calls (%+v), want %d", got, tot, callers*calls)
			}
		})
	}
}
