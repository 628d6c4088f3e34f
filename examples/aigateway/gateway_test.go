package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/httpbreaker/httpbreaker"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const (
	sonnet = "claude-sonnet-4-20250514"
	haiku  = "claude-3-5-haiku-20241022"
	gpt4o  = "gpt-4o"
)

// fakeProvider answers each endpoint and model with the status set for
// it, 200 by default, and counts the calls that reached it.
type fakeProvider struct {
	mu         sync.Mutex
	status     map[string]int    // endpoint + " " + model -> status
	retryAfter map[string]string // endpoint + " " + model -> Retry-After
	calls      map[string]int
	hold       chan struct{} // while set, each call waits for it to close
}

func newFake() *fakeProvider {
	return &fakeProvider{status: map[string]int{}, retryAfter: map[string]string{}, calls: map[string]int{}}
}

// set makes the provider answer endpoint and model with status.
func (f *fakeProvider) set(endpoint, model string, status int, retryAfter string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status[endpoint+" "+model], f.retryAfter[endpoint+" "+model] = status, retryAfter
}

func (f *fakeProvider) called(endpoint, model string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[endpoint+" "+model]
}

func (f *fakeProvider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct{ Model string }
	_ = json.NewDecoder(r.Body).Decode(&req)
	at := r.URL.Path + " " + req.Model
	f.mu.Lock()
	f.calls[at]++
	status, retry, hold := f.status[at], f.retryAfter[at], f.hold
	f.mu.Unlock()
	if hold != nil {
		<-hold
	}
	if status == 0 {
		status = http.StatusOK
	}
	if retry != "" {
		w.Header().Set("Retry-After", retry)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"model": %q}`, req.Model)
}

// providers routes the gateway's calls to the fakes in memory, so that the
// tests run in a synctest bubble, where cooldowns pass in no time.
type providers map[string]*fakeProvider // host -> fake

func (p providers) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	p[r.URL.Host].ServeHTTP(rec, r)
	if r.Body != nil {
		r.Body.Close()
	}
	return rec.Result(), nil
}

// gateway is the example's gateway over two fake providers.
type gateway struct {
	t         *testing.T
	handler   http.Handler
	breakers  *httpbreaker.Breakers
	reg       *prometheus.Registry
	anthropic *fakeProvider
	openai    *fakeProvider
}

func newTestGateway(t *testing.T) *gateway {
	t.Helper()
	g := &gateway{t: t, reg: prometheus.NewRegistry(), anthropic: newFake(), openai: newFake()}
	ps := []*provider{
		anthropic(&url.URL{Scheme: "http", Host: "anthropic.test"}, "test-key"),
		openAI(&url.URL{Scheme: "http", Host: "openai.test"}, "test-key"),
	}
	b, err := newBreakers(ps, g.reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	g.breakers = b
	g.handler = newGateway(b, ps, providers{"anthropic.test": g.anthropic, "openai.test": g.openai})
	return g
}

type answer struct {
	status     int
	retryAfter string
	body       map[string]any
}

// send posts a request for model to path on the gateway.
func (g *gateway) send(path, model string) answer {
	g.t.Helper()
	rec := httptest.NewRecorder()
	g.handler.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader(`{"model": "`+model+`", "max_tokens": 16}`)))
	a := answer{status: rec.Code, retryAfter: rec.Header().Get("Retry-After")}
	if err := json.Unmarshal(rec.Body.Bytes(), &a.body); err != nil {
		g.t.Fatalf("POST %s %s: %d with a body that is not JSON: %q", path, model, rec.Code, rec.Body)
	}
	return a
}

// state returns the state of the breaker of key.
func (g *gateway) state(key string) httpbreaker.State { return g.breakers.State(key) }

// wantRejected fails the test unless a is the gateway's own 503 in
// Anthropic's error format.
func wantAnthropicRejection(t *testing.T, a answer) {
	t.Helper()
	e, _ := a.body["error"].(map[string]any)
	if a.status != http.StatusServiceUnavailable || a.body["type"] != "error" || e["type"] != "overloaded_error" ||
		!strings.Contains(fmt.Sprint(e["message"]), "circuit breaker") {
		t.Fatalf("got %d %v, want the gateway's 503 in Anthropic's error format", a.status, a.body)
	}
}

func TestOneModelsOverloadCutsOffThatModelAlone(t *testing.T) {
	g := newTestGateway(t)
	g.anthropic.set("/v1/messages", sonnet, 529, "")
	for i := range 3 { // the anthropic:* family: 3 failures in a row
		if a := g.send("/anthropic/v1/messages", sonnet); a.status != 529 {
			t.Fatalf("sonnet request %d: %d, want the provider's 529", i+1, a.status)
		}
	}
	wantAnthropicRejection(t, g.send("/anthropic/v1/messages", sonnet))
	if n := g.anthropic.called("/v1/messages", sonnet); n != 3 {
		t.Fatalf("sonnet reached the provider %d times, want 3: an open breaker sends nothing on", n)
	}
	for range 4 {
		if a := g.send("/anthropic/v1/messages", haiku); a.status != http.StatusOK || a.body["model"] != haiku {
			t.Fatalf("haiku, same endpoint, while sonnet is open: %d %v", a.status, a.body)
		}
	}
	if a := g.send("/openai/v1/chat/completions", gpt4o); a.status != http.StatusOK {
		t.Fatalf("openai while anthropic's sonnet is open: %d", a.status)
	}
	if s, h := g.state("anthropic:/v1/messages:"+sonnet), g.state("anthropic:/v1/messages:"+haiku); s != httpbreaker.StateOpen || h != httpbreaker.StateClosed {
		t.Fatalf("sonnet %v, haiku %v; want open and closed", s, h)
	}
}

func TestEachEndpointAndProviderHasBreakersOfItsOwn(t *testing.T) {
	g := newTestGateway(t)
	g.openai.set("/v1/chat/completions", gpt4o, http.StatusServiceUnavailable, "")
	for i := range 5 { // the openai:* family: 5 in a row
		if a := g.send("/openai/v1/chat/completions", gpt4o); a.status != http.StatusServiceUnavailable || a.body["model"] != gpt4o {
			t.Fatalf("request %d: %d %v, want the provider's own 503", i+1, a.status, a.body)
		}
	}
	if st := g.state("openai:/v1/chat/completions:" + gpt4o); st != httpbreaker.StateOpen {
		t.Fatalf("chat completions for gpt-4o after 5 failures: %v, want open", st)
	}
	if a := g.send("/openai/v1/responses", gpt4o); a.status != http.StatusOK {
		t.Fatalf("the responses endpoint, same model: %d, want 200", a.status)
	}
	// A model of the same name at another provider is another key.
	if a := g.send("/anthropic/v1/messages", gpt4o); a.status != http.StatusOK {
		t.Fatalf("anthropic with a model named gpt-4o: %d, want 200", a.status)
	}
}

func TestAnswersAboutTheRequestDoNotTrip(t *testing.T) {
	g := newTestGateway(t)
	for _, status := range []int{400, 401, 403, 404, 413, 422, 501} {
		g.anthropic.set("/v1/messages", sonnet, status, "")
		for range 5 {
			if a := g.send("/anthropic/v1/messages", sonnet); a.status != status {
				t.Fatalf("%d: the gateway answered %d", status, a.status)
			}
		}
	}
	if st := g.state("anthropic:/v1/messages:" + sonnet); st != httpbreaker.StateClosed {
		t.Fatalf("after 35 answers about the request: %v, want closed", st)
	}
}

// TestTheGatewaysOwn503SpeaksEachProvidersErrorFormat: an SDK parses the
// error of the API it calls, and retries on a 503 with Retry-After.
func TestTheGatewaysOwn503SpeaksEachProvidersErrorFormat(t *testing.T) {
	g := newTestGateway(t)
	g.anthropic.set("/v1/messages", sonnet, 529, "")
	g.openai.set("/v1/responses", gpt4o, http.StatusInternalServerError, "")
	for range 5 {
		g.send("/anthropic/v1/messages", sonnet)
		g.send("/openai/v1/responses", gpt4o)
	}
	a := g.send("/anthropic/v1/messages", sonnet)
	wantAnthropicRejection(t, a)
	if secs, err := strconv.Atoi(a.retryAfter); err != nil || secs < 1 || secs > 30 {
		t.Errorf("anthropic's rejection: Retry-After %q, want the seconds left of the 30s cooldown", a.retryAfter)
	}
	o := g.send("/openai/v1/responses", gpt4o)
	e, _ := o.body["error"].(map[string]any)
	if o.status != http.StatusServiceUnavailable || e["type"] != "server_error" || e["code"] != "circuit_breaker_open" || o.retryAfter == "" {
		t.Fatalf("openai's rejection: %d %v Retry-After %q, want a 503 in OpenAI's error format", o.status, o.body, o.retryAfter)
	}
}

// TestAFullRecoveryCycle: closed, open after the failures, half-open when
// the cooldown ends, closed once both probes succeed, and every request
// through again, with no rejection counted after.
func TestAFullRecoveryCycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newTestGateway(t)
		key := "anthropic:/v1/messages:" + sonnet
		g.anthropic.set("/v1/messages", sonnet, http.StatusTooManyRequests, "")
		for range 3 {
			g.send("/anthropic/v1/messages", sonnet)
		}
		wantAnthropicRejection(t, g.send("/anthropic/v1/messages", sonnet))
		if g.state(key) != httpbreaker.StateOpen || g.anthropic.called("/v1/messages", sonnet) != 3 {
			t.Fatalf("after 3 rate limits: %v, %d calls; want open after 3", g.state(key), g.anthropic.called("/v1/messages", sonnet))
		}
		time.Sleep(31 * time.Second) // OpenFor, and a second
		if st := g.state(key); st != httpbreaker.StateHalfOpen {
			t.Fatalf("at the end of the cooldown: %v, want half-open", st)
		}
		g.anthropic.set("/v1/messages", sonnet, http.StatusOK, "")
		for i := range 2 {
			if a := g.send("/anthropic/v1/messages", sonnet); a.status != http.StatusOK {
				t.Fatalf("probe %d: %d, want the provider's 200", i+1, a.status)
			}
		}
		if st := g.state(key); st != httpbreaker.StateClosed {
			t.Fatalf("after 2 successful probes: %v, want closed", st)
		}
		rejected := testutil.ToFloat64(g.metric("httpbreaker_requests_total", key, "result", "rejected"))
		for range 5 {
			if a := g.send("/anthropic/v1/messages", sonnet); a.status != http.StatusOK {
				t.Fatalf("after recovery: %d", a.status)
			}
		}
		if n := g.anthropic.called("/v1/messages", sonnet); n != 3+2+5 {
			t.Fatalf("the provider got %d calls, want every one after the recovery", n)
		}
		if now := testutil.ToFloat64(g.metric("httpbreaker_requests_total", key, "result", "rejected")); now != rejected || rejected != 1 {
			t.Fatalf("rejections: %v before the recovery, %v after; want 1 and no more", rejected, now)
		}
	})
}

// TestAFailedProbeOpensAgainForLonger: the probe fails, the breaker opens
// again, for twice the cooldown (with up to a fifth of jitter).
func TestAFailedProbeOpensAgainForLonger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newTestGateway(t)
		key := "anthropic:/v1/messages:" + sonnet
		g.anthropic.set("/v1/messages", sonnet, 529, "")
		for range 3 {
			g.send("/anthropic/v1/messages", sonnet)
		}
		time.Sleep(31 * time.Second)
		if a := g.send("/anthropic/v1/messages", sonnet); a.status != 529 {
			t.Fatalf("the probe: %d, want the provider's 529", a.status)
		}
		if st := g.state(key); st != httpbreaker.StateOpen {
			t.Fatalf("after the failed probe: %v, want open", st)
		}
		time.Sleep(47 * time.Second) // 60s less a fifth, less a second
		wantAnthropicRejection(t, g.send("/anthropic/v1/messages", sonnet))
		time.Sleep(26 * time.Second) // past 60s and a fifth
		if st := g.state(key); st != httpbreaker.StateHalfOpen {
			t.Fatalf("after the doubled cooldown: %v, want half-open", st)
		}
	})
}

// TestHalfOpenAdmitsTwoProbesHoweverManyRequestsCome: five requests at
// once after the cooldown: two reach the provider, three get the gateway's
// 503 at once.
func TestHalfOpenAdmitsTwoProbesHoweverManyRequestsCome(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newTestGateway(t)
		g.anthropic.set("/v1/messages", sonnet, 529, "")
		for range 3 {
			g.send("/anthropic/v1/messages", sonnet)
		}
		time.Sleep(31 * time.Second)
		g.anthropic.set("/v1/messages", sonnet, http.StatusOK, "")
		release := make(chan struct{})
		g.anthropic.mu.Lock()
		g.anthropic.hold = release
		g.anthropic.mu.Unlock()
		answers := make(chan answer, 5)
		for range 5 {
			go func() { answers <- g.send("/anthropic/v1/messages", sonnet) }()
		}
		synctest.Wait() // the probes wait at the provider, the others are answered
		if n := g.anthropic.called("/v1/messages", sonnet); n != 3+2 {
			t.Fatalf("%d calls reached the provider during half-open, want 2", n-3)
		}
		for range 3 {
			a := <-answers
			wantAnthropicRejection(t, a)
			if !strings.Contains(fmt.Sprint(a.body), "half_open") {
				t.Errorf("a rejection while half-open says %v", a.body)
			}
		}
		close(release)
		for range 2 {
			if a := <-answers; a.status != http.StatusOK {
				t.Fatalf("a probe: %d, want 200", a.status)
			}
		}
		if st := g.state("anthropic:/v1/messages:" + sonnet); st != httpbreaker.StateClosed {
			t.Fatalf("after both probes succeeded: %v, want closed", st)
		}
	})
}

// TestTheProvidersRetryAfterKeepsTheBreakerOpen: a rate limit with
// Retry-After: 120 keeps the model's breaker open for 120s, not the 30s
// cooldown, and the gateway's 503 passes the delay on.
func TestTheProvidersRetryAfterKeepsTheBreakerOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newTestGateway(t)
		key := "anthropic:/v1/messages:" + sonnet
		g.anthropic.set("/v1/messages", sonnet, http.StatusTooManyRequests, "120")
		for range 3 {
			if a := g.send("/anthropic/v1/messages", sonnet); a.status != http.StatusTooManyRequests || a.retryAfter != "120" {
				t.Fatalf("the provider's rate limit: %d, Retry-After %q", a.status, a.retryAfter)
			}
		}
		a := g.send("/anthropic/v1/messages", sonnet)
		wantAnthropicRejection(t, a)
		if a.retryAfter != "120" {
			t.Fatalf("the gateway's 503: Retry-After %q, want the provider's 120", a.retryAfter)
		}
		time.Sleep(60 * time.Second)
		if st := g.state(key); st != httpbreaker.StateOpen {
			t.Fatalf("60s after a Retry-After of 120: %v, want still open", st)
		}
		time.Sleep(61 * time.Second)
		if st := g.state(key); st != httpbreaker.StateHalfOpen {
			t.Fatalf("121s after: %v, want half-open", st)
		}
	})
}

// metric returns the series of name for key, with the label given.
func (g *gateway) metric(name, key, label, value string) prometheus.Collector {
	return collectorOf(g.t, g.reg, name, map[string]string{"key": key, label: value})
}

// TestStateChangeMetricsAfterFlush is the test that failed 20 runs in 20
// against an asynchronous hook: trip a model, then read the gateway's trip
// counter and the library's state and transition series. Flush is the one
// line that makes it hold: the hook has run once it returns.
func TestStateChangeMetricsAfterFlush(t *testing.T) {
	g := newTestGateway(t)
	key := "anthropic:/v1/messages:" + sonnet
	g.anthropic.set("/v1/messages", sonnet, 529, "")
	for range 3 {
		g.send("/anthropic/v1/messages", sonnet)
	}
	if err := g.breakers.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	trips := collectorOf(t, g.reg, "aigateway_circuit_breaker_trips_total",
		map[string]string{"provider": "anthropic", "endpoint": "/v1/messages", "model": sonnet})
	for name, c := range map[string]prometheus.Collector{
		"the gateway's trips":           trips,
		"httpbreaker_state open":        g.metric("httpbreaker_state", key, "state", "open"),
		"httpbreaker_transitions_total": collectorOf(t, g.reg, "httpbreaker_transitions_total", map[string]string{"key": key, "from": "closed", "to": "open"}),
	} {
		if v := testutil.ToFloat64(c); v != 1 {
			t.Errorf("%s: %v, want 1", name, v)
		}
	}
	if v := testutil.ToFloat64(g.metric("httpbreaker_state", "anthropic:/v1/messages:"+haiku, "state", "open")); v != 0 {
		t.Errorf("haiku has no breaker yet, and no open series: %v", v)
	}
}

// TestKeysFromTheRequestAreBounded: a model is the client's to name. Names
// that are not a model's share one breaker, and past maxKeys models new
// ones pass without one; every request is still proxied.
func TestKeysFromTheRequestAreBounded(t *testing.T) {
	g := newTestGateway(t)
	for _, model := range []string{"", "two words", strings.Repeat("x", 101), "../../admin", "<script>"} {
		if a := g.send("/anthropic/v1/messages", model); a.status != http.StatusOK {
			t.Fatalf("model %q: %d, want it proxied", model, a.status)
		}
	}
	if keys := g.breakers.Snapshot(); len(keys) != 1 || keys[0].Key != "anthropic:/v1/messages:"+noModel {
		t.Fatalf("breakers for names that are not models: %v, want the one they share", keyNames(keys))
	}
	for i := range maxKeys - 1 + 50 {
		if a := g.send("/openai/v1/chat/completions", "model-"+strconv.Itoa(i)); a.status != http.StatusOK {
			t.Fatalf("model %d: %d, want it proxied", i, a.status)
		}
	}
	if n := len(g.breakers.Snapshot()); n != maxKeys {
		t.Fatalf("%d breakers after %d models, want the bound, %d", n, maxKeys-1+50, maxKeys)
	}
}

func keyNames(keys []httpbreaker.Status) []string {
	var names []string
	for _, k := range keys {
		names = append(names, k.Key)
	}
	return names
}
