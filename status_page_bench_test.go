package httpbreaker

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// manyKeys returns a set of n keys, named name(i), each with a full
// history (historyLen transitions and more: trips, probes, recoveries),
// the i-th key left in the state end(i) says: closed, open, half-open or
// forced open.
func manyKeys(tb testing.TB, n int, name func(i int) string, end func(i int) State) *Breakers {
	tb.Helper()
	b := benchSet(tb, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Hour, HalfOpenRequests: 1}), WithMaxKeys(n))
	fail, ok := newStatusHandler(500), newStatusHandler(200)
	for i := range n {
		key := name(i)
		bad, good := b.Middleware(key)(fail), b.Middleware(key)(ok)
		for range historyLen/3 + 1 { // a trip, a probe, a recovery: 3 transitions
			record(bad, "/")
			_ = b.Probe(key)
			record(good, "/")
		}
		switch end(i) {
		case StateOpen:
			record(bad, "/")
		case StateHalfOpen:
			record(bad, "/")
			_ = b.Probe(key)
		case StateForcedOpen:
			_ = b.ForceOpen(key, 0)
		}
	}
	for _, s := range b.Snapshot() {
		if len(s.History) != historyLen {
			tb.Fatalf("%s has %d transitions, want a full history of %d", s.Key, len(s.History), historyLen)
		}
	}
	return b
}

// incident leaves one key in twenty open, one in a hundred half-open and
// one in two hundred forced open: an incident on a big set.
func incident(i int) State {
	switch {
	case i%200 == 7:
		return StateForcedOpen
	case i%100 == 3:
		return StateHalfOpen
	case i%20 == 1:
		return StateOpen
	}
	return StateClosed
}

func allOpen(int) State { return StateOpen }

// hostKey names a key as KeyedTransport(Host, ...) does.
func hostKey(i int) string { return fmt.Sprintf("svc-%04d.internal:8443", i) }

// BenchmarkStatusPage measures what the status page costs to build for
// 1,000 keys with full history, as HTML (a browser) and as JSON, during an
// incident and with every key open: the time per page and its size.
func BenchmarkStatusPage(b *testing.B) {
	for _, tc := range []struct {
		name   string
		end    func(int) State
		accept string
	}{
		{"html/incident", incident, "text/html"},
		{"html/all-open", allOpen, "text/html"},
		{"json/incident", incident, "application/json"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			page := manyKeys(b, 1000, hostKey, tc.end).StatusHandler()
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.Header.Set("Accept", tc.accept)
			var size int
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				page.ServeHTTP(rec, req)
				size = rec.Body.Len()
			}
			b.ReportMetric(float64(size), "bytes/page")
		})
	}
}
