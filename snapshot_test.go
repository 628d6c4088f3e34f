package httpbreaker

import (
	"encoding/json"
	"slices"
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
		if want := []string{"key", "mode", "policy", "retry_after_seconds", "since", "state", "totals", "window"}; !slices.Equal(keys, want) {
			t.Fatalf("status JSON has %q, want %q: %s", keys, want, out)
		}
		window := got["window"].(map[string]any)
		if len(window) != 7 {
			t.Fatalf("window JSON %v, want the six counts and failure_rate", window)
		}
		if got["key"] != "catalog" || got["state"] != "closed" || got["mode"] != "enforce" ||
			got["retry_after_seconds"] != 0.0 || window["failure_rate"] != 0.5 || window["failures"] != 1.0 ||
			got["totals"].(map[string]any)["success"] != 1.0 || got["policy"].(map[string]any)["open_for"] != "30s" {
			t.Fatalf("status JSON %s", out)
		}
		for range 3 {
			record(h, "/")
		}
		time.Sleep(10 * time.Second)
		out, _ = json.Marshal(b.Snapshot()[0])
		if err := json.Unmarshal(out, &got); err != nil || got["state"] != "open" || got["retry_after_seconds"] != 20.0 {
			t.Fatalf("open status JSON %s", out)
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
		if s.Totals.Failure != 2 || s.Window != (Counts{}) {
			t.Fatalf("open: totals %+v window %+v, want 2 failures in totals and a fresh window", s.Totals, s.Window)
		}
	})
}
