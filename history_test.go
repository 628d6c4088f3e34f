package httpbreaker

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"unsafe"
)

// TestHistoryKeepsEachTransition holds that a key's status carries its
// transitions, oldest first, dated when they happened, with why and the
// counts: a trip, the end of the cooldown, the probes' verdict.
func TestHistoryKeepsEachTransition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 2, OpenFor: 30 * time.Second, HalfOpenRequests: 1}))
		made := time.Now()
		up := newStatusHandler(500)
		h := b.Middleware("p")(up)
		if s := status(t, b, "p"); len(s.History) != 0 || !s.HistorySince.Equal(made) {
			t.Fatalf("a new key: history %+v since %v, want none since %v", s.History, s.HistorySince, made)
		}
		time.Sleep(time.Minute)
		record(h, "/")
		record(h, "/")
		tripped := time.Now()
		time.Sleep(time.Minute) // the cooldown ends at 30s
		up.set(200)
		record(h, "/")
		closed := time.Now()
		_ = b.ForceOpen("p", 0)

		s := status(t, b, "p")
		want := []Transition{
			{Time: tripped, From: StateClosed, To: StateOpen, Reason: ReasonConsecutiveFailures, Failures: 2, ConsecutiveFailures: 2,
				OpenFor: 30 * time.Second},
			{Time: tripped.Add(30 * time.Second), From: StateOpen, To: StateHalfOpen, Reason: ReasonCooldown},
			{Time: closed, From: StateHalfOpen, To: StateClosed, Reason: ReasonProbesSucceeded, Successes: 1},
			{Time: closed, From: StateClosed, To: StateForcedOpen, Reason: ReasonForceOpen, By: s.ForcedBy},
		}
		if !reflect.DeepEqual(s.History, want) {
			t.Fatalf("history\n%+v\nwant\n%+v", s.History, want)
		}
		if !strings.Contains(s.ForcedBy, "history_test.go:") || !s.HistorySince.Equal(made) {
			t.Fatalf("forced by %q, history since %v (made %v)", s.ForcedBy, s.HistorySince, made)
		}
	})
}

// TestHistoryKeepsTheLast32 holds the bound: past historyLen transitions
// the oldest are forgotten, and HistorySince says from when the history is
// whole.
func TestHistoryKeepsTheLast32(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t)
		b.Middleware("p")
		var times []time.Time
		for range 20 { // 40 transitions
			time.Sleep(time.Second)
			_ = b.ForceOpen("p", 0)
			times = append(times, time.Now())
			time.Sleep(time.Second)
			_ = b.Release("p")
			times = append(times, time.Now())
		}
		s := status(t, b, "p")
		if len(s.History) != historyLen {
			t.Fatalf("%d transitions kept, want %d", len(s.History), historyLen)
		}
		oldest := times[len(times)-historyLen]
		if !s.History[0].Time.Equal(oldest) || !s.HistorySince.Equal(oldest) || !s.History[historyLen-1].Time.Equal(times[len(times)-1]) {
			t.Fatalf("kept %v to %v since %v, want the last %d, from %v", s.History[0].Time, s.History[historyLen-1].Time,
				s.HistorySince, historyLen, oldest)
		}
		for i, tr := range s.History {
			if want := []State{StateForcedOpen, StateClosed}[i%2]; tr.To != want {
				t.Fatalf("transition %d goes to %v, want %v: the ring is out of order", i, tr.To, want)
			}
		}
	})
}

// TestHistoryCostsWhatTheDocsSay keeps the memory per key that history.go
// and docs/operating.md state: 32 transitions and the transition counts in
// at most 5 KiB, allocated at the key's first change.
func TestHistoryCostsWhatTheDocsSay(t *testing.T) {
	if size := unsafe.Sizeof(historyRing{}); historyLen != 32 || size > 5*1024 {
		t.Fatalf("a key's history is %d transitions in %d bytes; the docs say 32 in at most 5 KiB", historyLen, size)
	}
	b, _ := newSet(t)
	b.Middleware("p")
	if br := b.lookup("p"); br.history.ring != nil {
		t.Fatal("a key that never changed state has a ring: it should cost a pointer")
	}
}

// TestStatusPageJSONDecodesBackWithHistory holds that the status page's JSON
// decodes into a StatusPage that has every key's history as Snapshot has it.
func TestStatusPageJSONDecodesBackWithHistory(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1}))
	record(b.Middleware("search")(newStatusHandler(500)), "/")
	_ = b.ForceClose("search")
	b.Middleware("catalog")
	rec := httptest.NewRecorder()
	b.StatusHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	var page StatusPage
	if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil {
		t.Fatalf("the status JSON does not decode into a StatusPage: %v\n%s", err, rec.Body)
	}
	want := b.Snapshot()
	if len(page.Keys) != 2 {
		t.Fatalf("decoded %d keys, want 2: %s", len(page.Keys), rec.Body)
	}
	for i, got := range page.Keys {
		w := want[i]
		if got.Key != w.Key || got.State != w.State || !reflect.DeepEqual(inUTC(got.History), inUTC(w.History)) ||
			!got.HistorySince.Equal(w.HistorySince) || got.Side != w.Side || got.Policy != w.Policy {
			t.Errorf("decoded %s:\n%+v\nwant\n%+v", w.Key, got, w)
		}
	}
	if h := page.Keys[1].History; page.Keys[1].Key != "search" || len(h) != 2 || h[1].To != StateForcedClosed || h[0].Failures != 1 {
		t.Errorf("search's history %+v, want its trip and the ForceClose", h)
	}
}

// TestHistoryUnderConcurrentChangesAndReaders runs transitions on many
// goroutines while others read the history through Snapshot, the JSON and
// the HTML page: under -race, the ring is read while it is written.
func TestHistoryUnderConcurrentChangesAndReaders(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Millisecond, HalfOpenRequests: 1}))
	keys := []string{"a", "b", "c"}
	handlers := map[string]*statusHandler{}
	for _, k := range keys {
		handlers[k] = newStatusHandler(500)
	}
	page := b.StatusHandler()
	var writers, readers sync.WaitGroup
	stop := make(chan struct{})
	for _, k := range keys {
		h := b.Middleware(k)(handlers[k])
		writers.Go(func() { // trips and probes
			for i := range 100 {
				handlers[k].set([]int{500, 200}[i%2])
				record(h, "/")
				time.Sleep(time.Millisecond) // the cooldown: the next call is a probe
			}
		})
		writers.Go(func() { // manual changes
			for range 50 {
				_ = b.ForceOpen(k, 0)
				_ = b.Release(k)
				_ = b.Reset(k)
			}
		})
	}
	for _, accept := range []string{"text/html", "application/json", ""} {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if accept == "" {
					for _, s := range b.Snapshot() {
						if len(s.History) > historyLen {
							t.Errorf("%s: %d transitions kept", s.Key, len(s.History))
						}
					}
					continue
				}
				if code, _, body := serveOnce(page, accept); code != 200 || len(body) == 0 {
					t.Errorf("page (%s): %d", accept, code)
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	readers.Wait()
	for _, s := range b.Snapshot() {
		if len(s.History) != historyLen || !s.HistorySince.Equal(s.History[0].Time) {
			t.Errorf("%s: %d transitions since %v, want %d, the older forgotten", s.Key, len(s.History), s.HistorySince, historyLen)
		}
	}
}

// inUTC returns h with its times in UTC, without the monotonic clock
// reading, as JSON carries them.
func inUTC(h []Transition) []Transition {
	out := slices.Clone(h)
	for i := range out {
		out[i].Time = out[i].Time.UTC().Round(0)
	}
	return out
}

// TestATransitionsDurationsAreWrittenAsAPolicysAre: "open_for": "30s" in the
// status JSON, as the policy beside it has it, and read back.
func TestATransitionsDurationsAreWrittenAsAPolicysAre(t *testing.T) {
	tr := Transition{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), From: StateClosed, To: StateOpen,
		Reason: ReasonFailureRate, Failures: 6, Successes: 4, OpenFor: 30 * time.Second, UpstreamRetryAfter: 90 * time.Second}
	b, err := json.Marshal(tr)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(b); !strings.Contains(s, `"open_for":"30s"`) || !strings.Contains(s, `"upstream_retry_after":"1m30s"`) ||
		strings.Contains(s, "probe_ran_for") {
		t.Fatalf("JSON %s, want the durations as Go writes them, the unset left out", s)
	}
	var back Transition
	if err := json.Unmarshal(b, &back); err != nil || back != tr {
		t.Fatalf("read back %+v (%v), want %+v", back, err, tr)
	}
	if err := json.Unmarshal([]byte(`{"open_for":"soon"}`), &back); err == nil {
		t.Fatal("a duration that is none was read")
	}
}
