package httpbreaker

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestStatusJSON(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 4, OpenFor: 30 * time.Second}))
		handler := newStatusHandler(200)
		h := b.Middleware("catalog")(handler)
		record(h, "/")
		handler.set(500)
		record(h, "/")
		out, err := json.Marshal(b.Snapshot()[0])
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		var keys []string
		for k := range got {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if want := []string{"history", "history_since", "key", "mode", "policy", "rejecting", "retry_after_ms", "retry_after_seconds", "side", "since", "state", "totals", "window"}; !slices.Equal(keys, want) {
			t.Fatalf("status JSON has %q, want %q: %s", keys, want, out)
		}
		window := got["window"].(map[string]any)
		if len(window) != 8 {
			t.Fatalf("window JSON %v, want the seven counts and failure_rate", window)
		}
		if got["key"] != "catalog" || got["state"] != "closed" || got["mode"] != "enforce" ||
			got["retry_after_seconds"] != 0.0 || window["failure_rate"] != 0.5 || window["failures"] != 1.0 ||
			got["totals"].(map[string]any)["success"] != 1.0 || got["policy"].(map[string]any)["open_for"] != "30s" {
			t.Fatalf("status JSON %s", out)
		}
		for range 3 {
			record(h, "/")
		}
		time.Sleep(10*time.Second + 300*time.Millisecond)
		out, _ = json.Marshal(b.Snapshot()[0])
		if err := json.Unmarshal(out, &got); err != nil || got["state"] != "open" || got["rejecting"] != true {
			t.Fatalf("open status JSON %s", out)
		}
		// Whole seconds where the name says seconds, rounded up as
		// Retry-After is; milliseconds beside them.
		if string(must(json.Marshal(got["retry_after_seconds"]))) != "20" || got["retry_after_ms"] != 19700.0 {
			t.Fatalf("open status JSON retry_after_seconds %v, retry_after_ms %v; want 20 and 19700", got["retry_after_seconds"], got["retry_after_ms"])
		}
		trip, _ := got["last_trip"].(map[string]any)
		if trip["reason"] != "consecutive_failures" || trip["failures"] != 4.0 || trip["consecutive_failures"] != 4.0 {
			t.Fatalf("open status JSON last_trip %v, want the 4 consecutive failures that tripped it", trip)
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestStatusSaysWhetherTheKeyRejects(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Second, HalfOpenRequests: 2}))
		hung := &blocking{code: 200, release: make(chan struct{})}
		defer hung.free()
		var code atomic.Int32
		code.Store(500)
		h := b.Middleware("p")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if code.Load() == 0 {
				hung.ServeHTTP(w, r)
				return
			}
			w.WriteHeader(int(code.Load()))
		}))
		if s := status(t, b, "p"); s.Rejecting {
			t.Fatal("closed: rejecting")
		}
		record(h, "/")
		if s := status(t, b, "p"); !s.Rejecting || s.State != StateOpen {
			t.Fatalf("open: %v rejecting %v", s.State, s.Rejecting)
		}
		time.Sleep(2 * time.Second)
		if s := status(t, b, "p"); s.Rejecting || s.State != StateHalfOpen {
			t.Fatalf("half-open with both probe slots free: %v rejecting %v, want not rejecting", s.State, s.Rejecting)
		}
		code.Store(0)
		go record(h, "/")
		go record(h, "/")
		synctest.Wait()
		if s := status(t, b, "p"); !s.Rejecting || s.State != StateHalfOpen {
			t.Fatalf("half-open with every probe slot taken: %v rejecting %v, want rejecting", s.State, s.Rejecting)
		}
		hung.free()
		synctest.Wait()
		_ = b.ForceOpen("p", 0)
		if s := status(t, b, "p"); !s.Rejecting || !strings.Contains(s.ForcedBy, "status_test.go:") {
			t.Fatalf("forced open: rejecting %v, forced by %q", s.Rejecting, s.ForcedBy)
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
		if s.Totals.Failures != 2 || s.Window != (Counts{}) {
			t.Fatalf("open: totals %+v window %+v, want 2 failures in totals and a fresh window", s.Totals, s.Window)
		}
	})
}

func TestStatusJSONDecodesBack(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1}))
	record(b.Middleware("search")(newStatusHandler(500)), "/")
	out, err := json.Marshal(b.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var back []Status
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatalf("the status JSON does not decode into Status: %v", err)
	}
	if len(back) != 1 || back[0].State != StateOpen || back[0].Mode != ModeEnforce || back[0].LastTrip == nil {
		t.Errorf("decoded %+v", back)
	}
	var st State
	if err := st.UnmarshalText([]byte("ajar")); err == nil || !strings.Contains(err.Error(), "forced_closed") {
		t.Errorf("UnmarshalText(ajar) = %v, want an error listing the states", err)
	}
}
