package httpbreaker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// billingHost is the host of the cascade: billing's handler calls the
// payments API through client, a Transport("payments") of the same set,
// answers 502 when the call fails, and from its cache (200) at once when
// payments' breaker rejects the call. Its behaviour per request is set by
// query parameters: own=1 answers 500 without calling payments; after=1
// calls payments, then answers 500 whatever came back; bg=1 calls payments
// with a context that is not the request's.
type billingHost struct {
	*httptest.Server
	payments *upstream
	cached   atomic.Int64 // answers from the cache
}

func newBillingHost(t *testing.T, b *Breakers, client *http.Client) *billingHost {
	t.Helper()
	h := &billingHost{payments: newUpstream(t, http.StatusOK)}
	if client == nil {
		client = &http.Client{Transport: b.Transport("payments", nil)}
	}
	billing := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("own") != "" {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		ctx := r.Context()
		if q.Get("bg") != "" {
			ctx = context.Background()
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.payments.URL+"/charge", nil)
		resp, err := client.Do(req)
		switch {
		case errors.Is(err, ErrOpen):
			h.cached.Add(1)
			_, _ = io.WriteString(w, "cached")
			return
		case err != nil:
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		resp.Body.Close()
		switch {
		case q.Get("after") != "":
			w.WriteHeader(http.StatusInternalServerError)
		case resp.StatusCode >= 500:
			w.WriteHeader(http.StatusBadGateway)
		default:
			_, _ = io.WriteString(w, "charged")
		}
	})
	mux := http.NewServeMux()
	mux.Handle("/billing/", b.Middleware("billing")(billing))
	h.Server = httptest.NewServer(mux)
	t.Cleanup(h.Close)
	return h
}

func TestARouteGroupStaysClosedWhileItsUpstreamOpensAndServesTheFallback(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{OpenFor: time.Minute})) // 5 failures in a row trip either key
	h := newBillingHost(t, b, nil)
	if got := hit(t, h.URL+"/billing/charge", 5); got[200] != 5 {
		t.Fatalf("payments healthy: %v, want 5 x 200", got)
	}
	h.payments.code.Store(http.StatusInternalServerError)
	got := hit(t, h.URL+"/billing/charge", 40)
	if got[http.StatusBadGateway] != 5 || got[http.StatusOK] != 35 || h.cached.Load() != 35 {
		t.Fatalf("payments failing: %v with %d from the cache, want 5 x 502 until its breaker opened, then 35 cached 200s",
			got, h.cached.Load())
	}
	if st := b.State("payments"); st != StateOpen {
		t.Fatalf("payments: %v, want open", st)
	}
	s := status(t, b, "billing")
	if s.State != StateClosed || s.Totals.Failures != 0 || s.Totals.UpstreamFailures != 5 || s.Totals.Successes != 40 {
		t.Fatalf("billing: %v %+v, want closed, its 5 failures blamed on payments", s.State, s.Totals)
	}
	if s.Window.Failures != 0 || !maps.Equal(s.BlamedOn, map[string]uint64{"payments": 5}) {
		t.Fatalf("billing: window %+v, blamed on %v; want no failure in the window, 5 blamed on payments", s.Window, s.BlamedOn)
	}
	if deps := status(t, b, "payments").Dependents; !slices.Equal(deps, []string{"billing"}) {
		t.Fatalf("payments' dependents %v, want [billing]", deps)
	}
}

func TestARouteGroupsOwnFailuresStillTripIt(t *testing.T) {
	for name, query := range map[string]string{
		"no upstream call":                   "own=1",
		"after an upstream call that worked": "after=1",
	} {
		t.Run(name, func(t *testing.T) {
			b, _ := newSet(t, WithPolicy(Policy{OpenFor: time.Minute}))
			h := newBillingHost(t, b, nil)
			hit(t, h.URL+"/billing/charge", 3) // billing is known to call payments
			got := hit(t, h.URL+"/billing/charge?"+query, 8)
			if got[500] != 5 || got[503] != 3 {
				t.Fatalf("%v, want 5 x 500 of billing's own, then its breaker's 503s", got)
			}
			if s := status(t, b, "billing"); s.State != StateOpen || s.Totals.Failures != 5 || s.Totals.UpstreamFailures != 0 {
				t.Fatalf("billing: %v %+v, want open on 5 failures of its own", s.State, s.Totals)
			}
		})
	}
}

// TestAHandlerThatDropsTheRequestsContextGetsNoBlame: a call made with
// another context cannot be traced to the request, so the route group
// counts the failure as its own, as it did before blame.
func TestAHandlerThatDropsTheRequestsContextGetsNoBlame(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{OpenFor: time.Minute, ConsecutiveFailures: 3}))
	h := newBillingHost(t, b, nil)
	h.payments.code.Store(http.StatusInternalServerError)
	hit(t, h.URL+"/billing/charge?bg=1", 3)
	if s := status(t, b, "billing"); s.State != StateOpen || s.Totals.Failures != 3 || s.Totals.UpstreamFailures != 0 {
		t.Fatalf("billing: %v %+v, want open on 3 failures it could not blame", s.State, s.Totals)
	}
}

// TestBlameFollowsDerivedContextsAndEveryClientSide: a context derived from
// the request's (WithTimeout, http.Client's Timeout) carries the request
// along, through KeyedTransport and Do as through Transport.
func TestBlameFollowsDerivedContextsAndEveryClientSide(t *testing.T) {
	down := errors.New("connection refused")
	failing := roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, down })
	for name, call := range map[string]func(b *Breakers) func(r *http.Request) error{
		"Transport in a Client with a Timeout": func(b *Breakers) func(*http.Request) error {
			c := &http.Client{Transport: b.Transport("payments", failing), Timeout: time.Minute}
			return func(r *http.Request) error {
				req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://payments.internal/charge", nil)
				_, err := c.Do(req)
				return err
			}
		},
		"KeyedTransport with WithTimeout": func(b *Breakers) func(*http.Request) error {
			c := &http.Client{Transport: b.KeyedTransport(func(*http.Request) string { return "payments" }, failing)}
			return func(r *http.Request) error {
				ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://payments.internal/charge", nil)
				_, err := c.Do(req)
				return err
			}
		},
		"Do with WithCancel": func(b *Breakers) func(*http.Request) error {
			return func(r *http.Request) error {
				ctx, cancel := context.WithCancel(r.Context())
				defer cancel()
				return b.Do(ctx, "payments", func(context.Context) error { return down })
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 3, OpenFor: time.Minute}))
			do := call(b)
			h := b.Middleware("billing")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if err := do(r); err != nil && !errors.Is(err, ErrOpen) {
					w.WriteHeader(http.StatusBadGateway)
				}
			}))
			for range 6 {
				record(h, "/billing/charge")
			}
			if st := b.State("payments"); st != StateOpen {
				t.Fatalf("payments: %v, want open", st)
			}
			if s := status(t, b, "billing"); s.State != StateClosed || s.Totals.Failures != 0 || s.BlamedOn["payments"] != 3 {
				t.Fatalf("billing: %v %+v blamed on %v, want closed, its 3 failures blamed on payments", s.State, s.Totals, s.BlamedOn)
			}
		})
	}
}

func TestTheClassifierSeesTheUpstreamAndCanCountTheFailureAsItsOwn(t *testing.T) {
	var seen sync.Map
	b, _ := newSet(t, WithPolicy(Policy{OpenFor: time.Minute}), WithClassifier(func(c Call) Outcome {
		if c.Upstream != "" {
			seen.Store(c.Key+" <- "+c.Upstream, true)
		}
		if o := DefaultClassifier(c); o != UpstreamFailure {
			return o
		}
		return Failure // as before blame
	}))
	h := newBillingHost(t, b, nil)
	h.payments.code.Store(http.StatusInternalServerError)
	got := hit(t, h.URL+"/billing/charge", 8)
	if got[502] != 5 || got[503] != 3 {
		t.Fatalf("%v, want 5 x 502, then billing's own breaker's 503s", got)
	}
	if _, ok := seen.Load("billing <- payments"); !ok {
		t.Fatal("the classifier never saw billing's failure blamed on payments")
	}
	if st := b.State("billing"); st != StateOpen {
		t.Fatalf("billing: %v, want open by the old rule", st)
	}
}

func TestNestedRouteGroupsOfOneSetBothBlameTheUpstream(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 2, OpenFor: time.Minute}))
	failing := roundTripFunc(func(*http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 503, Header: http.Header{}, Body: http.NoBody}, nil
	})
	c := &http.Client{Transport: b.Transport("payments", failing)}
	inner := b.Middleware("billing")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://payments.internal/", nil)
		if resp, err := c.Do(req); err != nil || resp.StatusCode >= 500 {
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	other, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 2}))
	h := b.Middleware("api")(other.Middleware("edge")(inner)) // a set of another's in between
	for range 2 {
		record(h, "/api/billing")
	}
	for _, key := range []string{"api", "billing"} {
		if s := status(t, b, key); s.State != StateClosed || s.BlamedOn["payments"] != 2 {
			t.Fatalf("%s: %v blamed on %v, want closed with 2 failures blamed on payments", key, s.State, s.BlamedOn)
		}
	}
	if s := status(t, other, "edge"); s.State != StateOpen || s.Totals.Failures != 2 {
		t.Fatalf("edge, of another set: %v %+v, want its failures counted as its own", s.State, s.Totals)
	}
}

func TestTheUpstreamsEventNamesTheRouteGroupsThatDependOnIt(t *testing.T) {
	events := make(chan Event, 10)
	b, sink := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 2, OpenFor: time.Minute}),
		WithStateChangeHook(func(e Event) { events <- e }))
	failing := roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, errors.New("refused") })
	c := &http.Client{Transport: b.Transport("payments", failing)}
	call := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://payments.internal/", nil)
		if _, err := c.Do(req); err != nil {
			w.WriteHeader(http.StatusBadGateway)
		}
	})
	record(b.Middleware("checkout")(call), "/")
	record(b.Middleware("billing")(call), "/")
	e := <-events
	if e.Key != "payments" || e.To != StateOpen || !slices.Equal(e.Dependents, []string{"billing", "checkout"}) {
		t.Fatalf("event %s %v->%v with dependents %v, want payments opening with [billing checkout]", e.Key, e.From, e.To, e.Dependents)
	}
	var logged string
	for _, r := range sink.matching("state changed") {
		if r.attrs["key"] == "payments" {
			logged = r.attrs["dependents"]
		}
	}
	if logged != "[billing checkout]" {
		t.Fatalf("payments' log record has dependents %q, want [billing checkout]", logged)
	}
}

func TestBlameIsBounded(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: Off, MinRequests: 1000}))
	failing := roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, errors.New("refused") })
	upstreams := b.KeyedTransport(Host, failing)
	for i := range 2 * maxDependents {
		route := fmt.Sprintf("route-%02d", i)
		var n atomic.Int32
		h := b.Middleware(route)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Each request of the route calls an upstream of its own.
			req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, fmt.Sprintf("http://up-%02d/", n.Add(1)-1), nil)
			_, _ = upstreams.RoundTrip(req)
			w.WriteHeader(http.StatusBadGateway)
		}))
		for range 2 * maxBlamedOn {
			record(h, "/")
		}
	}
	for _, s := range b.Snapshot() {
		if len(s.BlamedOn) > maxBlamedOn || len(s.Dependents) > maxDependents {
			t.Fatalf("%s: blamed on %d upstreams, %d dependents; want at most %d and %d",
				s.Key, len(s.BlamedOn), len(s.Dependents), maxBlamedOn, maxDependents)
		}
		if strings.HasPrefix(s.Key, "route-") && s.Totals.UpstreamFailures != 2*maxBlamedOn {
			t.Fatalf("%s: %d upstream failures, want all %d counted", s.Key, s.Totals.UpstreamFailures, 2*maxBlamedOn)
		}
	}
	if s := status(t, b, "up-00"); len(s.Dependents) != maxDependents {
		t.Fatalf("up-00 has %d dependents, want the first %d", len(s.Dependents), maxDependents)
	}
}

func TestUpstreamFailuresHaveTheirOwnMetricAndShowOnTheStatusPage(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	b, _ := newSet(t, WithRegisterer(reg), WithPolicy(Policy{OpenFor: time.Minute}))
	h := newBillingHost(t, b, nil)
	hit(t, h.URL+"/billing/charge", 1)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP httpbreaker_requests_total Requests through circuit breakers by key and result: success, failure, excluded (not counted by the breaker), slow (with slow_call_rate), rejected, would_reject (observe mode let it through), upstream_failure (a failure blamed on an upstream the request called, not counted by the breaker), untracked (no breaker, empty key).
# TYPE httpbreaker_requests_total counter
httpbreaker_requests_total{key="",result="untracked"} 0
httpbreaker_requests_total{key="billing",result="excluded"} 0
httpbreaker_requests_total{key="billing",result="failure"} 0
httpbreaker_requests_total{key="billing",result="rejected"} 0
httpbreaker_requests_total{key="billing",result="success"} 1
httpbreaker_requests_total{key="billing",result="upstream_failure"} 0
httpbreaker_requests_total{key="billing",result="would_reject"} 0
httpbreaker_requests_total{key="payments",result="excluded"} 0
httpbreaker_requests_total{key="payments",result="failure"} 0
httpbreaker_requests_total{key="payments",result="rejected"} 0
httpbreaker_requests_total{key="payments",result="success"} 1
httpbreaker_requests_total{key="payments",result="would_reject"} 0
`), "httpbreaker_requests_total"); err != nil {
		t.Fatalf("a route group known to call an upstream, before any failure: %v", err)
	}
	h.payments.code.Store(http.StatusBadGateway)
	hit(t, h.URL+"/billing/charge", 3)
	if n := gatheredRequests(t, reg, "billing", "upstream_failure"); n != 3 {
		t.Fatalf("requests_total{billing,upstream_failure} = %v, want 3", n)
	}

	page := httptest.NewServer(b.StatusHandler())
	t.Cleanup(page.Close)
	_, _, body := get(t, page.URL)
	var sp StatusPage
	if err := json.Unmarshal([]byte(body), &sp); err != nil {
		t.Fatal(err)
	}
	for _, s := range sp.Keys {
		switch s.Key {
		case "billing":
			if s.Totals.UpstreamFailures != 3 || s.BlamedOn["payments"] != 3 {
				t.Fatalf("billing in the JSON: %+v blamed on %v, want 3 upstream failures on payments", s.Totals, s.BlamedOn)
			}
		case "payments":
			if !slices.Equal(s.Dependents, []string{"billing"}) {
				t.Fatalf("payments in the JSON: dependents %v, want [billing]", s.Dependents)
			}
		}
	}
	req, _ := http.NewRequest(http.MethodGet, page.URL, nil)
	req.Header.Set("Accept", "text/html")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	html, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"<dt>upstream failures</dt><dd>3</dd>", "its failures are blamed on upstream payments (3 failures)", "called by billing (3 failures blamed on it)"} {
		if !strings.Contains(string(html), want) {
			t.Errorf("the HTML page lacks %q", want)
		}
	}
}

// TestARouteGroupLearnsThatItCallsOut: a route group not yet known to make
// client calls lends a scope to its first request, to the one after each
// failure of its own, and to one a second; once a request has called out
// with it, every request carries one.
func TestARouteGroupLearnsThatItCallsOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 3, OpenFor: time.Minute}))
		var code atomic.Int32
		code.Store(200)
		up := roundTripFunc(func(*http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: int(code.Load()), Header: http.Header{}, Body: http.NoBody}, nil
		})
		c := &http.Client{Transport: b.Transport("payments", up)}
		h := b.Middleware("billing")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/health" {
				return // no upstream call
			}
			req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://payments.internal/", nil)
			if resp, err := c.Do(req); err != nil || resp.StatusCode >= 500 {
				w.WriteHeader(http.StatusBadGateway)
			}
		}))
		learned := func() bool { return b.lookup("billing").blame.callsOut() }
		record(h, "/health") // the first request carries a scope, and makes no call
		for range 5 {
			record(h, "/charge")
		}
		if learned() {
			t.Fatal("billing learned from requests that carried no scope")
		}
		time.Sleep(sampleEvery)
		record(h, "/charge") // asks for a sample
		record(h, "/charge") // the sample
		if !learned() {
			t.Fatal("billing did not learn from the request a second later")
		}

		// A failure of a route group's that has not learned yet makes the
		// next request carry a scope.
		refunds := b.Middleware("refunds")(h)
		code.Store(502)
		record(refunds, "/health") // the first request: a scope, no call
		record(refunds, "/charge") // no scope: its failure is its own
		record(refunds, "/charge") // a scope, and the failure is blamed
		record(refunds, "/charge")
		if s := status(t, b, "refunds"); s.Totals.Failures != 1 || s.Totals.UpstreamFailures != 2 || s.State != StateClosed {
			t.Fatalf("refunds: %v %+v, want 1 failure before it learned, then 2 blamed on payments", s.State, s.Totals)
		}
	})
}

// TestBlameUnderConcurrency runs many route group requests at once, each
// fanning out calls through a Transport and Do that fail now and then,
// some of them from goroutines that outlive the handler, while the status,
// the status page and the metrics are read.
func TestBlameUnderConcurrency(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	b, _ := newSet(t, WithRegisterer(reg),
		WithPolicy(Policy{ConsecutiveFailures: 3, MinRequests: 10, FailureRate: 0.2, OpenFor: time.Minute}),
		WithKeyPolicy("payments", Policy{Mode: ModeObserve}), WithKeyPolicy("ledger", Policy{Mode: ModeObserve}))
	var calls atomic.Int64
	flaky := roundTripFunc(func(*http.Request) (*http.Response, error) {
		if calls.Add(1)%7 == 0 {
			return nil, errors.New("connection reset")
		}
		return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody}, nil
	})
	rt := b.Transport("payments", flaky)
	var stragglers sync.WaitGroup
	var answered502 atomic.Int64
	h := b.Middleware("billing")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var failed atomic.Bool
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://payments.internal/", nil)
				if _, err := rt.RoundTrip(req); err != nil {
					failed.Store(true)
				}
			})
		}
		wg.Go(func() {
			if err := b.Do(r.Context(), "ledger", func(context.Context) error {
				if calls.Add(1)%11 == 0 {
					return errors.New("deadlock detected")
				}
				return nil
			}); err != nil {
				failed.Store(true)
			}
		})
		wg.Wait()
		stragglers.Go(func() { // outlives the handler, with its context
			req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://payments.internal/late", nil)
			_, _ = rt.RoundTrip(req)
		})
		if failed.Load() {
			answered502.Add(1)
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	record(h, "/") // billing learns that it calls out
	page := b.StatusHandler()
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				_ = b.Snapshot()
				record(page, "/")
				_, _ = reg.Gather()
			}
		}
	})
	var wg sync.WaitGroup
	const workers, each = 64, 30
	for range workers {
		wg.Go(func() {
			for range each {
				record(h, "/")
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	stragglers.Wait()
	s := status(t, b, "billing")
	total := uint64(workers*each + 1)
	if s.State != StateClosed || s.Totals.Failures != 0 || s.Totals.Successes+s.Totals.UpstreamFailures != total {
		t.Fatalf("billing: %v %+v, want closed with %d requests, none failed by itself", s.State, s.Totals, total)
	}
	if n := uint64(answered502.Load()); s.Totals.UpstreamFailures != n || s.BlamedOn["payments"]+s.BlamedOn["ledger"] != n || n == 0 {
		t.Fatalf("billing answered %d failures; %d counted as upstream failures, blamed on %v", n, s.Totals.UpstreamFailures, s.BlamedOn)
	}
	for _, up := range []string{"payments", "ledger"} {
		if deps := status(t, b, up).Dependents; !slices.Equal(deps, []string{"billing"}) {
			t.Fatalf("%s: dependents %v, want [billing]", up, deps)
		}
	}
}

// TestACarriedRequestAllocatesItsScopeOnly: a request of a route group that
// makes client calls allocates one object more than its handler does: the
// scope, which holds the request's copy. A route group that makes none
// allocates nothing (TestClosedPathAllocatesNothing).
func TestACarriedRequestAllocatesItsScopeOnly(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's sync.Pool drops writers at random: allocation counts are its own")
	}
	b := benchSet(t)
	base := cannedTransport{resp: &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody}}
	rt := b.Transport("payments", base)
	out := httptest.NewRequest(http.MethodGet, "http://payments.internal/charge", nil)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = rt.RoundTrip(out.WithContext(r.Context())) // one allocation: the request's copy
	})
	w, in := benchRequest()
	alone := testing.AllocsPerRun(200, func() { handler.ServeHTTP(w, in) })
	h := b.Middleware("billing")(handler)
	h.ServeHTTP(w, in) // billing learns that it calls out
	if !b.lookup("billing").blame.callsOut() {
		t.Fatal("billing did not learn that it calls out")
	}
	if through := testing.AllocsPerRun(200, func() { h.ServeHTTP(w, in) }); through != alone+1 {
		t.Fatalf("%v allocations per request through the middleware, %v without: want exactly one more, the scope", through, alone)
	}
	fn := func(context.Context) error { return nil }
	ctx := context.Background()
	_ = b.Do(ctx, "db", fn)
	if n := testing.AllocsPerRun(200, func() { _ = b.Do(ctx, "db", fn) }); n != 0 {
		t.Fatalf("Do through a closed breaker: %v allocations, want 0", n)
	}
}

// TestConcurrentFirstRequestsAreAllBlamed: until a route group is known to
// make client calls or not, every request carries a scope, so that a burst
// of requests that all arrive before the first one has called out (a
// service that starts during an upstream's outage) is blamed on the
// upstream too.
func TestConcurrentFirstRequestsAreAllBlamed(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 3, OpenFor: time.Minute}),
		WithKeyPolicy("payments", Policy{ConsecutiveFailures: Off, MinRequests: 1000}))
	failing := roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, errors.New("refused") })
	c := &http.Client{Transport: b.Transport("payments", failing)}
	const n = 50
	var admitted sync.WaitGroup
	admitted.Add(n)
	h := b.Middleware("billing")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		admitted.Done()
		admitted.Wait() // no call before all n are admitted
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://payments.internal/", nil)
		if _, err := c.Do(req); err != nil {
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { record(h, "/") })
	}
	wg.Wait()
	if s := status(t, b, "billing"); s.State != StateClosed || s.Totals.Failures != 0 || s.Totals.UpstreamFailures != n {
		t.Fatalf("billing: %v %+v, want closed with all %d failures blamed on payments", s.State, s.Totals, n)
	}
}
