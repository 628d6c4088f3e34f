package httpbreaker

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetricsReportStateRequestsAndTransitions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewPedanticRegistry()
		b, _ := newSet(t, WithRegisterer(reg),
			WithPolicy(Policy{ConsecutiveFailures: 2, OpenFor: 10 * time.Second, HalfOpenRequests: 1}),
			WithKeyPolicy("search", Policy{Mode: ModeObserve}))
		scaffolder := newStatusHandler(500)
		s := b.Middleware("scaffolder")(scaffolder)
		c := b.Middleware("catalog")(newStatusHandler(200))
		q := b.Middleware("search")(newStatusHandler(503))
		for range 3 {
			record(c, "/")
		}
		record(s, "/")
		record(s, "/") // trips
		record(s, "/") // rejected
		for range 4 {
			record(q, "/") // two failures trip it, then two would-be rejections
		}
		time.Sleep(11 * time.Second)
		record(s, "/") // the probe fails: open again
		time.Sleep(time.Minute)
		scaffolder.set(200)
		// No request since the cooldown ended: the scrape itself must find
		// scaffolder half-open.
		expected := `
# HELP httpbreaker_state Circuit breaker state by key: 1 for the current state (closed, half_open, open, recovering, forced_open, forced_closed), 0 for the others.
# TYPE httpbreaker_state gauge
httpbreaker_state{key="catalog",state="closed"} 1
httpbreaker_state{key="catalog",state="forced_closed"} 0
httpbreaker_state{key="catalog",state="forced_open"} 0
httpbreaker_state{key="catalog",state="half_open"} 0
httpbreaker_state{key="catalog",state="open"} 0
httpbreaker_state{key="catalog",state="recovering"} 0
httpbreaker_state{key="scaffolder",state="closed"} 0
httpbreaker_state{key="scaffolder",state="forced_closed"} 0
httpbreaker_state{key="scaffolder",state="forced_open"} 0
httpbreaker_state{key="scaffolder",state="half_open"} 1
httpbreaker_state{key="scaffolder",state="open"} 0
httpbreaker_state{key="scaffolder",state="recovering"} 0
httpbreaker_state{key="search",state="closed"} 0
httpbreaker_state{key="search",state="forced_closed"} 0
httpbreaker_state{key="search",state="forced_open"} 0
httpbreaker_state{key="search",state="half_open"} 1
httpbreaker_state{key="search",state="open"} 0
httpbreaker_state{key="search",state="recovering"} 0
`
		if err := testutil.GatherAndCompare(reg, strings.NewReader(expected), "httpbreaker_state"); err != nil {
			t.Fatal(err)
		}
		record(s, "/") // the probe succeeds: closed
		expected = `
# HELP httpbreaker_requests_total Requests through circuit breakers by key and result: success, failure, excluded (not counted by the breaker), slow (with slow_call_rate), rejected, would_reject (observe mode let it through), upstream_failure (a failure blamed on an upstream the request called, not counted by the breaker), untracked (no breaker, empty key).
# TYPE httpbreaker_requests_total counter
httpbreaker_requests_total{key="",result="untracked"} 0
httpbreaker_requests_total{key="catalog",result="excluded"} 0
httpbreaker_requests_total{key="catalog",result="failure"} 0
httpbreaker_requests_total{key="catalog",result="rejected"} 0
httpbreaker_requests_total{key="catalog",result="success"} 3
httpbreaker_requests_total{key="catalog",result="would_reject"} 0
httpbreaker_requests_total{key="scaffolder",result="excluded"} 0
httpbreaker_requests_total{key="scaffolder",result="failure"} 3
httpbreaker_requests_total{key="scaffolder",result="rejected"} 1
httpbreaker_requests_total{key="scaffolder",result="success"} 1
httpbreaker_requests_total{key="scaffolder",result="would_reject"} 0
httpbreaker_requests_total{key="search",result="excluded"} 0
httpbreaker_requests_total{key="search",result="failure"} 2
httpbreaker_requests_total{key="search",result="rejected"} 0
httpbreaker_requests_total{key="search",result="success"} 0
httpbreaker_requests_total{key="search",result="would_reject"} 2
# HELP httpbreaker_transitions_total Circuit breaker state changes by key.
# TYPE httpbreaker_transitions_total counter
httpbreaker_transitions_total{from="closed",key="catalog",to="open"} 0
httpbreaker_transitions_total{from="half_open",key="catalog",to="closed"} 0
httpbreaker_transitions_total{from="half_open",key="catalog",to="open"} 0
httpbreaker_transitions_total{from="open",key="catalog",to="half_open"} 0
httpbreaker_transitions_total{from="closed",key="scaffolder",to="open"} 1
httpbreaker_transitions_total{from="half_open",key="scaffolder",to="closed"} 1
httpbreaker_transitions_total{from="half_open",key="scaffolder",to="open"} 1
httpbreaker_transitions_total{from="open",key="scaffolder",to="half_open"} 2
httpbreaker_transitions_total{from="closed",key="search",to="open"} 1
httpbreaker_transitions_total{from="half_open",key="search",to="closed"} 0
httpbreaker_transitions_total{from="half_open",key="search",to="open"} 0
httpbreaker_transitions_total{from="open",key="search",to="half_open"} 1
`
		if err := testutil.GatherAndCompare(reg, strings.NewReader(expected), "httpbreaker_requests_total", "httpbreaker_transitions_total"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestUntrackedRequestsAreCounted(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	b, _ := newSet(t, WithRegisterer(reg))
	h := b.KeyedMiddleware(func(*http.Request) string { return "" })(newStatusHandler(200))
	for range 4 {
		record(h, "/")
	}
	expected := `
# HELP httpbreaker_requests_total Requests through circuit breakers by key and result: success, failure, excluded (not counted by the breaker), slow (with slow_call_rate), rejected, would_reject (observe mode let it through), upstream_failure (a failure blamed on an upstream the request called, not counted by the breaker), untracked (no breaker, empty key).
# TYPE httpbreaker_requests_total counter
httpbreaker_requests_total{key="",result="untracked"} 4
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expected), "httpbreaker_requests_total"); err != nil {
		t.Fatal(err)
	}
}

func TestMetricsPassPromlint(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	b, _ := newSet(t, WithRegisterer(reg))
	record(b.Middleware("catalog")(newStatusHandler(200)), "/")
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 16 {
		t.Fatalf("%d series (%v), want 6 state + 5 results + 4 transitions for one key, and untracked", n, err)
	}
}

func TestSecondNewOnTheSameRegistererIsAnError(t *testing.T) {
	reg := prometheus.NewRegistry()
	newSet(t, WithRegisterer(reg))
	_, err := New(WithRegisterer(reg))
	var already prometheus.AlreadyRegisteredError
	if err == nil || !errors.As(err, &already) || !strings.Contains(err.Error(), "WithNamespace") {
		t.Fatalf("second New on one registerer: %v, want an AlreadyRegisteredError that suggests WithNamespace", err)
	}
	if _, err := New(WithRegisterer(reg), WithNamespace("other")); err != nil {
		t.Fatalf("second New with its own namespace: %v", err)
	}
}

func TestNamespacePrefixesEveryMetric(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	b, _ := newSet(t, WithRegisterer(reg), WithNamespace("plugins"))
	b.Middleware("catalog")
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	if strings.Join(names, ",") != "plugins_requests_total,plugins_state,plugins_transitions_total" {
		t.Fatalf("families %q", names)
	}
}
