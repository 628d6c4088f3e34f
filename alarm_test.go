package httpbreaker

import (
	"context"
	"log/slog"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"weak"

	"github.com/prometheus/client_golang/prometheus"
)

// hookEvents returns a hook that keeps the events it is given, and a
// function that returns them.
func hookEvents() (Option, func() []Event) {
	var mu sync.Mutex
	var events []Event
	return WithStateChangeHook(func(e Event) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		}), func() []Event {
			mu.Lock()
			defer mu.Unlock()
			return append([]Event(nil), events...)
		}
}

// TestTheCooldownEndsOnTimeWithNoTraffic holds that open -> half-open is
// applied, logged, hooked and counted when the cooldown ends, dated then,
// with no request and no reader: a quiet key's alert clears on its own.
func TestTheCooldownEndsOnTimeWithNoTraffic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		hook, events := hookEvents()
		b, sink := newSet(t, hook, WithRegisterer(reg), WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: 5 * time.Second}))
		defer b.Close()
		record(b.Middleware("p")(newStatusHandler(500)), "/")
		tripped := time.Now()
		time.Sleep(time.Hour) // nothing reads the key meanwhile
		synctest.Wait()
		sink.flush()
		got := events()
		if len(got) != 2 || got[1].From != StateOpen || got[1].To != StateHalfOpen {
			t.Fatalf("events %+v, want the trip and open -> half_open", got)
		}
		if at := got[1].Time.Sub(tripped); at < 5*time.Second || at > 5*time.Second+time.Millisecond {
			t.Errorf("the cooldown's end dated %v after the trip, want 5s", at)
		}
		if n := transitionsMetric(t, reg, "p", StateOpen, StateHalfOpen); n != 1 {
			t.Errorf("transitions_total{open->half_open} = %v, want 1", n)
		}
	})
}

// TestRampsForceOpenAndProbesEndOnTime: the end of a recovery ramp, of a
// timed ForceOpen and a probe's ProbeTimeout all happen at their time,
// with no request.
func TestRampsForceOpenAndProbesEndOnTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hook, events := hookEvents()
		b, sink := newSet(t, hook, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Second, HalfOpenRequests: 1,
			RecoveryRamp: 10 * time.Second, ProbeTimeout: 3 * time.Second}))
		defer b.Close()
		up := newStatusHandler(500)
		h := b.Middleware("p")(up)
		record(h, "/")
		time.Sleep(2 * time.Second)
		up.set(200)
		record(h, "/") // the probe succeeds: recovering for 10s
		start := time.Now()
		time.Sleep(time.Minute)
		synctest.Wait()
		sink.flush()
		got := events()
		last := got[len(got)-1]
		if last.From != StateRecovering || last.To != StateClosed || last.Time.Sub(start) != 10*time.Second {
			t.Fatalf("last event %+v, want recovering -> closed 10s after the ramp began", last)
		}

		_ = b.ForceOpen("p", 4*time.Second)
		forced := time.Now()
		time.Sleep(time.Minute)
		synctest.Wait()
		sink.flush()
		got = events()
		last = got[len(got)-1]
		if last.Reason != ReasonExpiry || last.To != StateClosed || last.Time.Sub(forced) != 4*time.Second {
			t.Fatalf("last event %+v, want the ForceOpen's expiry 4s after it", last)
		}

		hung := &blocking{code: 200, release: make(chan struct{})}
		defer hung.free()
		slow := b.Middleware("p")(hung)
		up.set(500)
		record(h, "/")
		time.Sleep(2 * time.Second)
		go record(slow, "/") // the probe hangs
		synctest.Wait()
		probed := time.Now()
		time.Sleep(time.Minute)
		synctest.Wait()
		sink.flush()
		var timeout *Event
		for _, e := range events() {
			if e.Reason == ReasonProbeTimeout {
				timeout = &e
			}
		}
		if timeout == nil || timeout.To != StateOpen || timeout.Time.Sub(probed) != 3*time.Second {
			t.Fatalf("probe timeout %+v, want the hung probe judged 3s after it began", timeout)
		}
		hung.free()
		synctest.Wait()
	})
}

// TestCloseStopsTheAlarm: a closed set sets no timer, and its breakers
// still move on when read.
func TestCloseStopsTheAlarm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hook, events := hookEvents()
		b, _ := newSet(t, hook, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Second}))
		h := b.Middleware("p")(newStatusHandler(500))
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		record(h, "/")
		time.Sleep(time.Minute)
		synctest.Wait()
		_ = b.notifier.flush(context.Background()) // what is queued; Flush would read the breakers, and move them on
		if n := len(events()); n != 1 {
			t.Fatalf("%d events after Close with no reader, want the trip alone", n)
		}
		if st := b.State("p"); st != StateHalfOpen {
			t.Fatalf("read after the cooldown: %v, want half-open", st)
		}
	})
}

// TestTheAlarmHoldsOnlyLiveTimes: timed ForceOpens released before their
// time leave nothing behind, however many there were (issue 26 item 4).
func TestTheAlarmHoldsOnlyLiveTimes(t *testing.T) {
	b, _ := newSet(t, WithLogger(slog.New(slog.DiscardHandler)))
	defer b.Close()
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	for _, k := range keys {
		b.Middleware(k)
	}
	for i := range 20_000 {
		k := keys[i%len(keys)]
		_ = b.ForceOpen(k, 12*time.Hour)
		if n := b.alarm.pending(); n > len(keys) {
			t.Fatalf("after %d ForceOpens the alarm holds %d times, more than one per key", i+1, n)
		}
		_ = b.Release(k)
	}
	if n := b.alarm.pending(); n != 0 {
		t.Fatalf("every key released: the alarm still holds %d times", n)
	}
}

// TestAnIdleDroppedBreakerIsCollected: nothing of the set keeps a breaker
// the idle sweep dropped alive, its alarm least of all.
func TestAnIdleDroppedBreakerIsCollected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{IdleTTL: time.Minute, ConsecutiveFailures: 1, OpenFor: time.Second, HalfOpenRequests: 1}))
		defer b.Close()
		h := b.KeyedMiddleware(func(*http.Request) string { return "k" })(newStatusHandler(500))
		record(h, "/") // trips it: its cooldown is set in the alarm
		dropped := weak.Make(b.lookup("k"))
		time.Sleep(2 * time.Second) // half-open: a probe closes it
		h = b.KeyedMiddleware(func(*http.Request) string { return "k" })(newStatusHandler(200))
		record(h, "/")
		if st := b.State("k"); st != StateClosed {
			t.Fatalf("state %v, want closed", st)
		}
		_ = b.ForceOpen("k", 12*time.Hour) // a time far off, gone with the Release
		_ = b.Release("k")
		for range 2 { // the first sweep sees its last calls, the second that none came since
			time.Sleep(3 * time.Minute)
			b.sweep()
		}
		if b.lookup("k") != nil {
			t.Fatal("the idle key was not dropped")
		}
		runtime.GC()
		runtime.GC()
		if dropped.Value() != nil {
			t.Fatal("the dropped breaker is still reachable")
		}
	})
}
