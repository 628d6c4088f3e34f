package httpbreaker

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

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
		if reopen := logs[2]; reopen.attrs["open_for"] == "" || reopen.attrs["reason"] != "probe_failed" || reopen.attrs["failures"] != "" {
			t.Errorf("reopen record %v, want its cooldown, reason probe_failed and no trip counts", reopen.attrs)
		}
	})
}

func TestHookGetsEveryChangeInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var got []string
		hook := func(e Event) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, e.Key+": "+e.From.String()+" -> "+e.To.String())
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

func TestHookEventCarriesWhyWithTheLogRecordsFacts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var events []Event
		hook := func(e Event) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, e)
		}
		b, sink := newSet(t, WithStateChangeHook(hook), WithPolicy(Policy{
			ConsecutiveFailures: 2, FailureRate: Off, OpenFor: time.Second, HalfOpenRequests: 1,
			ProbeTimeout: 5 * time.Second, RecoveryRamp: 10 * time.Second, IdleTTL: time.Minute}))
		var code atomic.Int32
		code.Store(500)
		hang := make(chan struct{})
		h := b.KeyedMiddleware(func(*http.Request) string { return "git" })(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if code.Load() == 0 {
				<-hang
			}
			w.WriteHeader(max(int(code.Load()), 200))
		}))
		record(h, "/")
		record(h, "/") // trips on two failures in a row
		time.Sleep(2 * time.Second)
		record(h, "/") // half-open; the probe fails
		time.Sleep(3 * time.Second)
		code.Store(0)
		go record(h, "/") // a probe that hangs
		time.Sleep(6 * time.Second)
		b.State("git") // past its ProbeTimeout: judged failed
		code.Store(200)
		close(hang)
		time.Sleep(5 * time.Second)
		record(h, "/") // the probe succeeds: recovering
		time.Sleep(11 * time.Second)
		b.State("git") // the ramp is over
		forceAt := time.Now()
		_ = b.ForceOpen("git", time.Minute) // by this file
		time.Sleep(2 * time.Minute)
		b.State("git") // the ForceOpen expired
		_ = b.ForceClose("git")
		_ = b.Release("git")
		_ = b.ForceOpen("git", 0)
		_ = b.Reset("git")
		for range 12 { // quarter-IdleTTL sweeps, at each snapshot
			time.Sleep(15 * time.Second)
			b.Snapshot()
		}
		synctest.Wait()

		want := []struct {
			from, to State
			reason   Reason
		}{
			{StateClosed, StateOpen, ReasonConsecutiveFailures},
			{StateOpen, StateHalfOpen, ReasonCooldown},
			{StateHalfOpen, StateOpen, ReasonProbeFailed},
			{StateOpen, StateHalfOpen, ReasonCooldown},
			{StateHalfOpen, StateOpen, ReasonProbeTimeout},
			{StateOpen, StateHalfOpen, ReasonCooldown},
			{StateHalfOpen, StateRecovering, ReasonProbesSucceeded},
			{StateRecovering, StateClosed, ReasonRampDone},
			{StateClosed, StateForcedOpen, ReasonForceOpen},
			{StateForcedOpen, StateClosed, ReasonExpiry},
			{StateClosed, StateForcedClosed, ReasonForceClose},
			{StateForcedClosed, StateClosed, ReasonRelease},
			{StateClosed, StateForcedOpen, ReasonForceOpen},
			{StateForcedOpen, StateClosed, ReasonReset},
			{StateClosed, StateClosed, ReasonIdle},
		}
		mu.Lock()
		defer mu.Unlock()
		if len(events) != len(want) {
			t.Fatalf("hook got %d events, want %d: %+v", len(events), len(want), events)
		}
		for i, w := range want {
			if e := events[i]; e.Key != "git" || e.From != w.from || e.To != w.to || e.Reason != w.reason || e.Mode != ModeEnforce {
				t.Errorf("event %d: %s %v -> %v (%s), want %v -> %v (%s)", i, e.Key, e.From, e.To, e.Reason, w.from, w.to, w.reason)
			}
		}
		if trip := events[0]; trip.Failures != 2 || trip.Successes != 0 || trip.ConsecutiveFailures != 2 || trip.FailureRate() != 1 || trip.OpenFor != time.Second {
			t.Errorf("trip event %+v, want the counts that tripped it and its cooldown", trip)
		}
		if reopen := events[2]; reopen.OpenFor < time.Second || reopen.OpenFor > 2*time.Second || reopen.Failures != 1 || reopen.Successes != 0 {
			t.Errorf("reopen event %+v, want the doubled, jittered cooldown and the probes' counts", reopen)
		}
		// The alarm judges the probe when its ProbeTimeout has passed, with
		// no request, dated then.
		if timeout := events[4]; timeout.ProbeRanFor != 5*time.Second {
			t.Errorf("probe timeout event %+v, want how long the probe ran: its ProbeTimeout", timeout)
		}
		if ramp := events[6]; ramp.RecoveryRamp != 10*time.Second {
			t.Errorf("recovery event %+v, want its ramp", ramp)
		}
		force := events[8]
		if !strings.HasPrefix(force.By, "github.com/httpbreaker/httpbreaker/events_test.go:") || force.OpenFor != time.Minute || !force.Time.Equal(forceAt) {
			t.Errorf("ForceOpen event %+v, want by this file's line, for a minute, at %v", force, forceAt)
		}

		// The log record of each event says the same, rounded for people.
		sink.flush()
		sink.mu.Lock()
		defer sink.mu.Unlock()
		var recs []slog.Record
		for _, r := range sink.records {
			if r.Message == "circuit breaker state changed" {
				recs = append(recs, r)
			}
		}
		if len(recs) != len(events)-1 {
			t.Fatalf("%d log records for %d events, want one for each but the idle drop", len(recs), len(events))
		}
		if len(sink.records) == 0 || !strings.Contains(sink.records[len(sink.records)-1].Message, "dropped after their idle time") {
			t.Errorf("the idle drop is not logged as one record that counts the keys dropped")
		}
		for i, e := range events[:len(recs)] {
			attrs := map[string]string{}
			recs[i].Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
			if !recs[i].Time.Equal(e.Time) || attrs["reason"] != string(e.Reason) || attrs["from"] != e.From.String() ||
				attrs["to"] != e.To.String() || attrs["by"] != e.By {
				t.Errorf("record %d %v at %v, event %+v", i, attrs, recs[i].Time, e)
			}
			if e.OpenFor > 0 && attrs["open_for"] != e.OpenFor.Round(time.Millisecond).String() {
				t.Errorf("record %d open_for=%s, event %v", i, attrs["open_for"], e.OpenFor)
			}
		}
	})
}

func TestLogRecordsRoundWhatPeopleRead(t *testing.T) {
	e := Event{Key: "k", Transition: Transition{From: StateClosed, To: StateOpen, Reason: ReasonFailureRate,
		Failures: 5, Successes: 118, OpenFor: 5086943473, ProbeRanFor: 500 * time.Microsecond}}
	attrs := map[string]string{}
	for _, a := range e.attrs("") {
		attrs[a.Key] = a.Value.String()
	}
	if attrs["failure_rate"] != "0.041" || attrs["open_for"] != "5.087s" || attrs["probe_ran_for"] != "500µs" {
		t.Fatalf("attrs %v, want failure_rate=0.041 open_for=5.087s probe_ran_for=500µs", attrs)
	}
}

func TestBlockingHookDoesNotHoldUpRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		unblock := make(chan struct{})
		var calls int
		var mu sync.Mutex
		hook := func(Event) {
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
		hook := func(Event) { panic("hook bug") }
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

// gateHandler is a slog.Handler that blocks every record until opened, as a
// log sink behind a full pipe does.
type gateHandler struct {
	open chan struct{}
	logSink
}

func (g *gateHandler) Handle(ctx context.Context, r slog.Record) error {
	<-g.open
	return g.logSink.Handle(ctx, r)
}

func TestBlockedLoggerHoldsUpNoRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := &gateHandler{open: make(chan struct{})}
		b, err := New(WithLogger(slog.New(gate)), WithMaxKeys(1),
			WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Second, HalfOpenRequests: 1}))
		if err != nil {
			t.Fatal(err)
		}
		h := b.Middleware("p")(newStatusHandler(500))
		tripAt := time.Now()
		record(h, "/") // trips: its record waits for the logger
		for range 3 {  // the key keeps answering, open and probing, while the logger is stuck
			time.Sleep(time.Hour)
			record(h, "/")
		}
		keyed := b.KeyedMiddleware(func(r *http.Request) string { return r.URL.Path })(newStatusHandler(200))
		record(keyed, "/past-the-key-limit") // a notice of the set's own, under its lock before
		if st := b.State("p"); st != StateOpen {
			t.Fatalf("state %v, want open", st)
		}
		close(gate.open)
		_ = b.Flush(context.Background())
		records := gate.all()
		if len(records) != 8 {
			t.Fatalf("got %d records once the logger was free, want 7 changes and the key-limit notice", len(records))
		}
		gate.mu.Lock()
		first := gate.records[0]
		gate.mu.Unlock()
		if !first.Time.Equal(tripAt) {
			t.Fatalf("the trip's record is stamped %v, want the time of the trip %v", first.Time, tripAt)
		}
	})
}

func TestReportsPastTheQueueBoundAreDroppedAndCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := &gateHandler{open: make(chan struct{})}
		b, err := New(WithLogger(slog.New(gate)))
		if err != nil {
			t.Fatal(err)
		}
		b.Middleware("p")
		for range maxPending/2 + 1 { // two changes each, and one is being delivered
			_ = b.ForceOpen("p", 0)
			_ = b.Release("p")
		}
		synctest.Wait()
		b.notifier.mu.Lock()
		queued := len(b.notifier.queue)
		b.notifier.mu.Unlock()
		if queued != maxPending {
			t.Fatalf("%d reports queued behind the blocked logger, want the bound %d", queued, maxPending)
		}
		close(gate.open)
		_ = b.Flush(context.Background())
		drops := gate.matching("were dropped")
		if len(drops) != 1 || drops[0].attrs["dropped"] != "1" {
			t.Fatalf("drop reports %+v, want one that counts the 1 dropped", drops)
		}
	})
}

// TestFlushWaitsForTheHooksOfEarlierChanges is gobreaker's synchronous
// OnStateChange, as a test written for it needs it: after Flush, the hook
// has seen every change made before.
func TestFlushWaitsForTheHooksOfEarlierChanges(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Hour}),
		WithStateChangeHook(func(e Event) {
			time.Sleep(5 * time.Millisecond) // a slow hook: delivery lags the change
			mu.Lock()
			seen = append(seen, e.From.String()+">"+e.To.String())
			mu.Unlock()
		}))
	defer b.Close()
	h := b.Middleware("k")(newStatusHandler(500))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	if err := b.ForceClose("k"); err != nil {
		t.Fatal(err)
	}
	if err := b.Release("k"); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	mu.Lock()
	got := strings.Join(seen, " ")
	mu.Unlock()
	if want := "closed>open open>forced_closed forced_closed>open"; got != want {
		t.Errorf("after Flush the hook saw %q, want %q", got, want)
	}
}

// TestFlushReturnsTheContextsErrorWhileAHookBlocks: a hook that never
// returns holds up no Flush past its context.
func TestFlushReturnsTheContextsErrorWhileAHookBlocks(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Hour}),
		WithStateChangeHook(func(Event) { <-block }))
	defer b.Close()
	b.Middleware("k")(newStatusHandler(500)).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := b.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush with a blocked hook returned %v, want the context's deadline", err)
	}
}

// TestFlushEndsWhileChangesKeepComing: Flush waits for what came before
// it, not for a queue that never drains.
func TestFlushEndsWhileChangesKeepComing(t *testing.T) {
	b, _ := newSet(t, WithStateChangeHook(func(Event) { time.Sleep(time.Millisecond) }))
	defer b.Close()
	b.Middleware("k")
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = b.ForceOpen("k", 0)
			_ = b.Release("k")
		}
	}()
	for range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := b.Flush(ctx)
		cancel()
		if err != nil {
			t.Fatalf("Flush under a stream of changes: %v", err)
		}
	}
	close(stop)
	<-done
	if err := b.Flush(context.Background()); err != nil { // what is queued, delivered before the test ends
		t.Fatal(err)
	}
}
