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
	"strconv"
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

// TestARouteGroupsTripSaysWhatWasBlamedOnItsUpstreams: the trip's event
// and log record of a route group tripped by failures of its own say how
// many others were blamed on its upstreams, as its status does.
func TestARouteGroupsTripSaysWhatWasBlamedOnItsUpstreams(t *testing.T) {
	var mu sync.Mutex
	var trips []Event
	b, sink := newSet(t, WithPolicy(Policy{OpenFor: time.Minute, MaxOpenFor: time.Minute}), WithStateChangeHook(func(e Event) {
		if e.Key == "billing" && e.To == StateOpen {
			mu.Lock()
			trips = append(trips, e)
			mu.Unlock()
		}
	}))
	h := newBillingHost(t, b, nil)
	h.payments.code.Store(http.StatusInternalServerError)
	hit(t, h.URL+"/billing/charge", 3) // 3 failures blamed on payments, which stays closed
	hit(t, h.URL+"/billing/charge?own=1", 5)
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(trips) != 1 || !maps.Equal(trips[0].BlamedOn, map[string]uint64{"payments": 3}) {
		t.Fatalf("billing's trips %+v, want one that says 3 failures were blamed on payments", trips)
	}
	for _, rec := range sink.matching("state changed") {
		if rec.attrs["key"] == "billing" && rec.attrs["to"] == "open" {
			if got := rec.attrs["blamed_on"]; got != "map[payments:3]" {
				t.Fatalf("the trip's log record says blamed_on=%q, want map[payments:3]", got)
			}
			return
		}
	}
	t.Fatal("no log record of billing's trip")
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
// along, through KeyedTransport and Do as through Transport. A set whose
// only client side is Do gets it at the first Do call: the request that
// makes it carried no scope, and its failure is excluded.
func TestBlameFollowsDerivedContextsAndEveryClientSide(t *testing.T) {
	down := errors.New("connection refused")
	failing := roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, down })
	for name, tc := range map[string]struct {
		call     func(b *Breakers) func(r *http.Request) error
		excluded uint64 // the first request's, when it made the set's first Do call
	}{
		"Transport in a Client with a Timeout": {call: func(b *Breakers) func(*http.Request) error {
			c := &http.Client{Transport: b.Transport("payments", failing), Timeout: time.Minute}
			return func(r *http.Request) error {
				req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://payments.internal/charge", nil)
				_, err := c.Do(req)
				return err
			}
		}},
		"KeyedTransport with WithTimeout": {call: func(b *Breakers) func(*http.Request) error {
			c := &http.Client{Transport: b.KeyedTransport(func(*http.Request) string { return "payments" }, failing)}
			return func(r *http.Request) error {
				ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://payments.internal/charge", nil)
				_, err := c.Do(req)
				return err
			}
		}},
		"Do with WithCancel": {excluded: 1, call: func(b *Breakers) func(*http.Request) error {
			return func(r *http.Request) error {
				ctx, cancel := context.WithCancel(r.Context())
				defer cancel()
				return b.Do(ctx, "payments", func(context.Context) error { return down })
			}
		}},
	} {
		t.Run(name, func(t *testing.T) {
			b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 3, OpenFor: time.Minute}))
			do := tc.call(b)
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
			s := status(t, b, "billing")
			if blamed := 3 - tc.excluded; s.State != StateClosed || s.Totals.Failures != 0 || s.Totals.Excluded != tc.excluded || s.BlamedOn["payments"] != blamed {
				t.Fatalf("billing: %v %+v blamed on %v, want closed, %d failures excluded and %d blamed on payments",
					s.State, s.Totals, s.BlamedOn, tc.excluded, blamed)
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

// TestRequestsInFlightWhenTheSetGetsItsFirstClientSideAreNotTripped: a set
// whose only client side is Do has none until the first Do call, so the
// requests admitted before it carry no scope. Those that answered a gateway
// failure after the set got one (a service that starts while its database
// is down: every first request makes a Do call that fails) may have passed
// an upstream's failure on: they are excluded, not counted as the route
// group's own, and the requests after them are blamed as usual.
func TestRequestsInFlightWhenTheSetGetsItsFirstClientSideAreNotTripped(t *testing.T) {
	b, _ := newSet(t, blamePolicies("orders-db")...)
	const n = 20
	var admitted sync.WaitGroup
	admitted.Add(n)
	first := true
	h := b.Middleware("orders")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if first {
			admitted.Done()
			admitted.Wait() // no Do call before all n are admitted
		}
		if err := b.Do(r.Context(), "orders-db", func(context.Context) error { return errDatabaseDown }); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	atOnce(n, func() { record(h, "/orders/") })
	if s := status(t, b, "orders"); s.State != StateClosed || s.Totals.Failures != 0 || s.Totals.Excluded != n {
		t.Fatalf("orders: %v %+v, want closed with the %d requests in flight excluded", s.State, s.Totals, n)
	}
	first = false
	for range 5 {
		record(h, "/orders/")
	}
	if s := status(t, b, "orders"); s.State != StateClosed || s.Totals.Failures != 0 || s.Totals.UpstreamFailures != 5 || s.BlamedOn["orders-db"] != 5 {
		t.Fatalf("orders: %v %+v blamed on %v, want closed with the 5 failures after blamed on orders-db", s.State, s.Totals, s.BlamedOn)
	}
}

// TestBlameUnderConcurrency runs many route group requests at once, each
// fanning out calls through a Transport and Do, which fail for some
// requests, and starting a goroutine that outlives the handler and whose
// call fails after the answer, while the status, the status page and the
// metrics are read. The calls of one request fail together: a request
// whose call failed and whose later call to the same upstream succeeded saw
// a retry succeed (TestARetryThatSucceededLeavesTheFailureToTheRouteGroup).
func TestBlameUnderConcurrency(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	b, _ := newSet(t, WithRegisterer(reg),
		WithPolicy(Policy{ConsecutiveFailures: 3, MinRequests: 10, FailureRate: 0.2, OpenFor: time.Minute}),
		WithKeyPolicy("payments", Policy{Mode: ModeObserve}), WithKeyPolicy("ledger", Policy{Mode: ModeObserve}))
	flaky := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Query().Has("fail") {
			return nil, errors.New("connection reset")
		}
		return respond(http.StatusOK), nil
	})
	rt := b.Transport("payments", flaky)
	var requests atomic.Int64
	var stragglers sync.WaitGroup
	var answered502 atomic.Int64
	h := b.Middleware("billing")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := requests.Add(1)
		url := "http://payments.internal/"
		if n%7 == 0 {
			url += "?fail"
		}
		var failed atomic.Bool
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, url, nil)
				if _, err := rt.RoundTrip(req); err != nil {
					failed.Store(true)
				}
			})
		}
		wg.Go(func() {
			if err := b.Do(r.Context(), "ledger", func(context.Context) error {
				if n%11 == 0 {
					return errors.New("deadlock detected")
				}
				return nil
			}); err != nil {
				failed.Store(true)
			}
		})
		wg.Wait()
		if failed.Load() {
			answered502.Add(1)
			w.WriteHeader(http.StatusBadGateway)
		}
		stragglers.Go(func() { // outlives the handler, with its context, and fails after the answer
			req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://payments.internal/late?fail", nil)
			_, _ = rt.RoundTrip(req)
		})
	}))
	record(h, "/")
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

// TestACarriedRequestAllocatesItsScopeOnly: while the set has a client
// side, a route group's request allocates one object more than its handler
// does, whether it calls out or not: the scope, which holds the request's
// copy. A call within it allocates nothing more, and neither does Do. A set
// with no client side allocates nothing (TestClosedPathAllocatesNothing).
func TestACarriedRequestAllocatesItsScopeOnly(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's sync.Pool drops writers at random: allocation counts are its own")
	}
	b := benchSet(t)
	base := cannedTransport{resp: respond(http.StatusOK)}
	rt := b.Transport("payments", base)
	out := httptest.NewRequest(http.MethodGet, "http://payments.internal/charge", nil)
	for name, handler := range map[string]http.Handler{
		"a handler that calls out": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = rt.RoundTrip(out.WithContext(r.Context())) // one allocation: the request's copy
		}),
		"a handler that does not": okHandler,
	} {
		w, in := benchRequest()
		alone := testing.AllocsPerRun(200, func() { handler.ServeHTTP(w, in) })
		h := b.Middleware("billing")(handler)
		if through := testing.AllocsPerRun(200, func() { h.ServeHTTP(w, in) }); through != alone+1 {
			t.Errorf("%s: %v allocations per request through the middleware, %v without: want exactly one more, the scope", name, through, alone)
		}
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
	atOnce(n, func() { record(h, "/") })
	if s := status(t, b, "billing"); s.State != StateClosed || s.Totals.Failures != 0 || s.Totals.UpstreamFailures != n {
		t.Fatalf("billing: %v %+v, want closed with all %d failures blamed on payments", s.State, s.Totals, n)
	}
}

// atOnce runs f on n goroutines at once, and waits for them all.
func atOnce(n int, f func()) {
	var wg sync.WaitGroup
	for range n {
		wg.Go(f)
	}
	wg.Wait()
}

// respond returns a response with code, as a base transport gives it.
func respond(code int) *http.Response {
	return &http.Response{StatusCode: code, Header: http.Header{}, Body: http.NoBody}
}

// blamePolicies trip a route group on 5 failures in a row; the upstreams
// named never trip, unless a test says otherwise, so that what the route
// group's handler sees of them stays as the test scripts it.
func blamePolicies(upstreams ...string) []Option {
	opts := []Option{WithPolicy(Policy{ConsecutiveFailures: 5, OpenFor: time.Minute})}
	for _, up := range upstreams {
		opts = append(opts, WithKeyPolicy(up, Policy{ConsecutiveFailures: Off, MinRequests: 1000}))
	}
	return opts
}

// TestARetryThatSucceededLeavesTheFailureToTheRouteGroup: the first try
// fails, the retry succeeds, and the handler's own bug answers the failure:
// the upstream's latest call succeeded, so the failure is the route
// group's, whether it is a 500 or a gateway answer.
func TestARetryThatSucceededLeavesTheFailureToTheRouteGroup(t *testing.T) {
	for _, answer := range []int{http.StatusInternalServerError, http.StatusBadGateway} {
		t.Run(strconv.Itoa(answer), func(t *testing.T) {
			b, _ := newSet(t, blamePolicies("payments")...)
			var calls atomic.Int64
			flaky := roundTripFunc(func(*http.Request) (*http.Response, error) {
				if calls.Add(1)%2 == 1 {
					return respond(http.StatusServiceUnavailable), nil // every first try fails
				}
				return respond(http.StatusOK), nil
			})
			c := &http.Client{Transport: b.Transport("payments", flaky)}
			h := b.Middleware("billing")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for range 2 { // a try, and a retry if it failed
					req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, "http://payments.internal/charge", nil)
					if resp, err := c.Do(req); err == nil && resp.StatusCode == http.StatusOK {
						break
					}
				}
				w.WriteHeader(answer) // the handler's own bug
			}))
			for range 5 {
				record(h, "/billing/charge")
			}
			if s := status(t, b, "billing"); s.State != StateOpen || s.Totals.Failures != 5 || s.Totals.UpstreamFailures != 0 || s.BlamedOn != nil {
				t.Fatalf("billing: %v %+v blamed on %v, want open on 5 failures of its own", s.State, s.Totals, s.BlamedOn)
			}
			if n := calls.Load(); n != 10 {
				t.Fatalf("%d calls to payments, want a try and a retry for each of 5 requests", n)
			}
		})
	}
}

// TestAnIgnoredBestEffortCallTakesNoBlame: a side call (analytics) fails
// and is ignored, then the handler fails by its own code with a 500: the
// failure is the route group's, before the side upstream's breaker opens
// and after.
func TestAnIgnoredBestEffortCallTakesNoBlame(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 5, OpenFor: time.Minute}),
		WithKeyPolicy("analytics", Policy{ConsecutiveFailures: 2, OpenFor: time.Minute}))
	down := roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, errors.New("connection refused") })
	analytics := &http.Client{Transport: b.Transport("analytics", down)}
	h := b.Middleware("billing")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, "http://analytics.internal/event", nil)
		if resp, err := analytics.Do(req); err == nil { // best effort: a failure is ignored
			resp.Body.Close()
		}
		w.WriteHeader(http.StatusInternalServerError) // the handler's own bug
	}))
	for range 5 {
		record(h, "/billing/charge")
	}
	if st := b.State("analytics"); st != StateOpen {
		t.Fatalf("analytics: %v, want open after 2 failures (the 3 calls after were rejected)", st)
	}
	if s := status(t, b, "billing"); s.State != StateOpen || s.Totals.Failures != 5 || s.Totals.UpstreamFailures != 0 || s.BlamedOn != nil {
		t.Fatalf("billing: %v %+v blamed on %v, want open on 5 failures of its own", s.State, s.Totals, s.BlamedOn)
	}
}

// TestAFirstRequestWithoutACallDecidesNothing: a route group whose first
// request makes no upstream call (a cache hit, a ping), and then a burst
// of requests that all answer 502 because the upstream fails slowly: every
// one of them is blamed, right after start and after a quiet spell, and
// the route group stays closed.
func TestAFirstRequestWithoutACallDecidesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, blamePolicies("payments")...)
		slow := roundTripFunc(func(*http.Request) (*http.Response, error) {
			time.Sleep(2 * time.Second)
			return respond(http.StatusServiceUnavailable), nil
		})
		c := &http.Client{Transport: b.Transport("payments", slow)}
		h := b.Middleware("billing")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/billing/ping" {
				return // no upstream call
			}
			req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, "http://payments.internal/charge", nil)
			if resp, err := c.Do(req); err != nil || resp.StatusCode >= 500 {
				w.WriteHeader(http.StatusBadGateway)
			}
		}))
		burst := func() { atOnce(20, func() { record(h, "/billing/charge") }) }
		record(h, "/billing/ping")
		burst()
		if s := status(t, b, "billing"); s.State != StateClosed || s.Totals.Failures != 0 || s.Totals.UpstreamFailures != 20 {
			t.Fatalf("right after start: billing %v %+v, want closed with its 20 failures blamed on payments", s.State, s.Totals)
		}
		time.Sleep(time.Hour) // a quiet spell
		record(h, "/billing/ping")
		burst()
		if s := status(t, b, "billing"); s.State != StateClosed || s.Totals.Failures != 0 || s.Totals.UpstreamFailures != 40 {
			t.Fatalf("after a quiet spell: billing %v %+v, want closed with its 40 failures blamed on payments", s.State, s.Totals)
		}
	})
}

// TestCallsThatEndAfterTheAnswerTakeNoBlame: a handler's answer cannot
// have been caused by a call that failed after the handler wrote it: an
// audit call made after answering, or a goroutine that outlives the
// request and fails while a later request of the route group runs.
func TestCallsThatEndAfterTheAnswerTakeNoBlame(t *testing.T) {
	b, _ := newSet(t, blamePolicies("audit")...)
	down := roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, errors.New("connection refused") })
	audit := &http.Client{Transport: b.Transport("audit", down)}
	call := func(ctx context.Context) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://audit.internal/log", nil)
		if resp, err := audit.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	var stragglers sync.WaitGroup
	release := make(chan struct{})
	h := b.Middleware("billing")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/billing/spawn" {
			ctx := context.WithoutCancel(r.Context()) // outlives the request, with its values
			stragglers.Go(func() {
				<-release
				call(ctx)
			})
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable) // its own: overloaded
		call(r.Context())                            // fails after the answer
		stragglers.Go(func() { call(context.WithoutCancel(r.Context())) })
		stragglers.Wait()
	}))
	record(h, "/billing/spawn")
	go func() { // the first request's goroutine fails while the next ones run
		close(release)
	}()
	for range 5 {
		record(h, "/billing/charge")
	}
	stragglers.Wait()
	if s := status(t, b, "billing"); s.State != StateOpen || s.Totals.Failures != 5 || s.Totals.UpstreamFailures != 0 || s.BlamedOn != nil {
		t.Fatalf("billing: %v %+v blamed on %v, want open on its 5 own 503s", s.State, s.Totals, s.BlamedOn)
	}
	if s := status(t, b, "audit"); s.Totals.Failures != 11 || !slices.Equal(s.Dependents, []string{"billing"}) {
		t.Fatalf("audit: %+v, dependents %v; want its 11 failures counted, billing its dependent", s.Totals, s.Dependents)
	}
}

// TestOfManyUpstreamsTheLatestToFailIsBlamed: a request calls several
// upstreams, one of them retried with success, two at once; the gateway
// answer is blamed on the upstream whose latest call failed, the latest
// of them if several did.
func TestOfManyUpstreamsTheLatestToFailIsBlamed(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 5, OpenFor: time.Minute}),
		WithKeyPolicy("*", Policy{ConsecutiveFailures: Off, MinRequests: 1000}))
	var inventoryCalls atomic.Int64
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		switch r.URL.Host {
		case "inventory":
			if inventoryCalls.Add(1)%2 == 1 {
				return nil, errors.New("connection reset") // the first try
			}
			return respond(http.StatusOK), nil
		case "prices":
			return respond(http.StatusOK), nil
		}
		return respond(http.StatusGatewayTimeout), nil // shipping-0 to shipping-9
	})
	c := &http.Client{Transport: b.KeyedTransport(func(r *http.Request) string { return "up:" + r.URL.Host }, base)}
	get := func(ctx context.Context, host string) bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/", nil)
		resp, err := c.Do(req)
		return err == nil && resp.StatusCode == http.StatusOK
	}
	h := b.Middleware("orders")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok := false
		for try := 0; try < 2 && !ok; try++ { // a try, and a retry if it failed
			ok = get(r.Context(), "inventory")
		}
		var shipping, prices atomic.Bool
		var wg sync.WaitGroup
		wg.Go(func() { prices.Store(get(r.Context(), "prices")) })
		wg.Go(func() { shipping.Store(get(r.Context(), "shipping-0")) })
		wg.Wait()
		if r.URL.Query().Has("all") { // then ten more, shipping-9 the last to fail
			for i := range 10 {
				get(r.Context(), "shipping-"+strconv.Itoa(i))
			}
		}
		if !ok || !prices.Load() || !shipping.Load() {
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	for range 3 {
		record(h, "/orders/")
	}
	record(h, "/orders/?all=1")
	s := status(t, b, "orders")
	if want := map[string]uint64{"up:shipping-0": 3, "up:shipping-9": 1}; s.State != StateClosed || s.Totals.Failures != 0 || !maps.Equal(s.BlamedOn, want) {
		t.Fatalf("orders: %v %+v blamed on %v, want closed with its failures blamed on %v", s.State, s.Totals, s.BlamedOn, want)
	}
	if deps := status(t, b, "up:inventory").Dependents; !slices.Equal(deps, []string{"orders"}) {
		t.Fatalf("inventory's dependents %v, want [orders]", deps)
	}
}

// TestStatusSaysWhenAndOnWhichUpstreamTheLatestFailureWasBlamed: the route
// group's Status, and its JSON, name the upstream its latest blamed failure
// was blamed on, and when, for the status page's "why".
func TestStatusSaysWhenAndOnWhichUpstreamTheLatestFailureWasBlamed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: Off, MinRequests: 1000}))
		down := roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, errors.New("connection refused") })
		c := &http.Client{Transport: b.KeyedTransport(func(r *http.Request) string { return r.URL.Host }, down)}
		h := b.Middleware("billing")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://"+r.URL.Query().Get("up")+"/", nil)
			if _, err := c.Do(req); err != nil {
				w.WriteHeader(http.StatusBadGateway)
			}
		}))
		if s := status(t, b, "billing"); s.LastBlamedOn != "" || !s.LastBlamedAt.IsZero() {
			t.Fatalf("before any failure: last blamed on %q at %v, want none", s.LastBlamedOn, s.LastBlamedAt)
		}
		record(h, "/?up=payments")
		time.Sleep(5 * time.Second)
		record(h, "/?up=ledger")
		want := time.Now()
		time.Sleep(time.Minute)
		s := status(t, b, "billing")
		if s.LastBlamedOn != "ledger" || !s.LastBlamedAt.Equal(want) || !maps.Equal(s.BlamedOn, map[string]uint64{"payments": 1, "ledger": 1}) {
			t.Fatalf("last blamed on %q at %v (blamed on %v), want ledger at %v", s.LastBlamedOn, s.LastBlamedAt, s.BlamedOn, want)
		}
		raw, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var decoded Status
		if err := json.Unmarshal(raw, &decoded); err != nil {
			t.Fatal(err)
		}
		if decoded.LastBlamedOn != "ledger" || !decoded.LastBlamedAt.Equal(want) ||
			!strings.Contains(string(raw), `"last_blamed_on":"ledger","last_blamed_at":"`) {
			t.Fatalf("the JSON says %s; decoded: last blamed on %q at %v", raw, decoded.LastBlamedOn, decoded.LastBlamedAt)
		}
		if raw, _ := json.Marshal(status(t, b, "ledger")); strings.Contains(string(raw), "last_blamed") {
			t.Fatalf("an upstream never blamed has last_blamed fields in its JSON: %s", raw)
		}
	})
}

// TestOneRequestsScopeUnderManyGoroutines: one request's calls, from many
// goroutines at once, to more upstreams than a scope keeps, failing and
// succeeding, some of them after the answer while the request is judged;
// then the handler's last call fails, and the answer is blamed on it.
func TestOneRequestsScopeUnderManyGoroutines(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 5, OpenFor: time.Minute}),
		WithKeyPolicy("up-*", Policy{ConsecutiveFailures: Off, MinRequests: 1 << 20}))
	var calls atomic.Int64
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Query().Has("fail") || calls.Add(1)%3 == 0 {
			return respond(http.StatusServiceUnavailable), nil
		}
		return respond(http.StatusOK), nil
	})
	c := &http.Client{Transport: b.KeyedTransport(func(r *http.Request) string { return "up-" + r.URL.Host }, base)}
	call := func(ctx context.Context, url string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	var stragglers sync.WaitGroup
	const requests, goroutines = 8, 32
	h := b.Middleware("orders")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				for i := range 10 {
					call(r.Context(), fmt.Sprintf("http://%d/", (g+i)%2*maxFailing*2+i%(maxFailing*2)))
				}
			})
		}
		wg.Wait()
		call(r.Context(), "http://last/?fail")
		w.WriteHeader(http.StatusBadGateway)
		for g := range goroutines { // fail after the answer, while the request is judged
			stragglers.Go(func() { call(r.Context(), fmt.Sprintf("http://%d/?fail", g)) })
		}
	}))
	atOnce(requests, func() { record(h, "/orders/") })
	stragglers.Wait()
	if s := status(t, b, "orders"); s.State != StateClosed || s.Totals.Failures != 0 || !maps.Equal(s.BlamedOn, map[string]uint64{"up-last": requests}) {
		t.Fatalf("orders: %v %+v blamed on %v, want each of its %d failures blamed on up-last", s.State, s.Totals, s.BlamedOn, requests)
	}
}

// TestCallsMadeAtTheSameTimeDoNotUndoEachOther: of two calls to an upstream
// made at once, one fails and the other, begun before that failure, succeeds
// after it: that is no retry, the request saw the upstream fail, and the
// gateway answer is blamed on it. A call begun after the failure that
// succeeds is a retry, and the answer is the route group's own.
func TestCallsMadeAtTheSameTimeDoNotUndoEachOther(t *testing.T) {
	b, _ := newSet(t, blamePolicies("inventory")...)
	entered, failed := make(chan struct{}), make(chan struct{})
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Path == "/fail" {
			return respond(http.StatusServiceUnavailable), nil
		}
		if r.URL.Query().Has("slow") { // begun before the failure, ends after it
			entered <- struct{}{}
			<-failed
		}
		return respond(http.StatusOK), nil
	})
	c := &http.Client{Transport: b.Transport("inventory", base)}
	get := func(ctx context.Context, url string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://inventory.internal"+url, nil)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	h := b.Middleware("orders")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var wg sync.WaitGroup
		wg.Go(func() { get(r.Context(), "/item/2?slow") })
		<-entered
		get(r.Context(), "/fail")
		failed <- struct{}{}
		wg.Wait()
		if r.URL.Query().Has("retry") {
			get(r.Context(), "/item/1") // begun after the failure
		}
		w.WriteHeader(http.StatusBadGateway)
	}))
	record(h, "/orders/")
	if s := status(t, b, "orders"); s.Totals.UpstreamFailures != 1 || s.Totals.Failures != 0 {
		t.Fatalf("a call that failed while another ran: %+v, want its 502 blamed on inventory", s.Totals)
	}
	record(h, "/orders/?retry")
	if s := status(t, b, "orders"); s.Totals.UpstreamFailures != 1 || s.Totals.Failures != 1 {
		t.Fatalf("a call that failed, then one begun after it that succeeded: %+v, want the 502 counted as orders' own", s.Totals)
	}
}

// TestAScopeForgetsTheUpstreamThatFailedFirst: a scope remembers maxFailing
// upstreams whose latest call failed; past them the one that failed first
// is forgotten, so that the latest failures, which a retry may undo one by
// one, are the ones kept.
func TestAScopeForgetsTheUpstreamThatFailedFirst(t *testing.T) {
	b, _ := newSet(t)
	b.clients.Store(true)
	sc := b.scope(b.breakerFor("orders", false), httptest.NewRequest(http.MethodGet, "/", nil))
	ups := make([]*keyBreaker, maxFailing+2)
	for i := range ups {
		ups[i] = b.breakerFor(fmt.Sprintf("up-%d", i), false)
	}
	call := func(up *keyBreaker, o Outcome) {
		since := sc.calling(b, up)
		sc.called(b, up, verdict{outcome: o}, since)
	}
	for _, up := range ups {
		call(up, Failure)
	}
	want := func(i int) {
		t.Helper()
		name := ""
		if i >= 0 {
			name = ups[i].key
		}
		if got := sc.upstreamKey(&statusWriter{}); got != name {
			t.Fatalf("blameable: %q, want %q", got, name)
		}
	}
	want(len(ups) - 1)
	for i := len(ups) - 1; i > 2; i-- { // retries that succeed, the latest first
		call(ups[i], Success)
		want(i - 1)
	}
	call(ups[2], Success)
	want(-1) // up-0 and up-1 failed first, and were forgotten
	call(ups[0], Excluded)
	want(-1)
	call(ups[0], Failure)
	want(0)
}
