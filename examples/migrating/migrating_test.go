package migrating

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/httpbreaker/httpbreaker"
	"github.com/sony/gobreaker/v2"
)

var quiet = slog.New(slog.DiscardHandler)

// newSet returns a set of breakers with policy for every key, closed when
// the test ends.
func newSet(t *testing.T, policy httpbreaker.Policy, opts ...httpbreaker.Option) *httpbreaker.Breakers {
	t.Helper()
	b, err := httpbreaker.New(append([]httpbreaker.Option{httpbreaker.WithPolicy(policy), httpbreaker.WithLogger(quiet)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// state names a state as both libraries can: closed, open or half-open.
func state(s string) string { return strings.ReplaceAll(s, "_", "-") }

var errDown = errors.New("connection refused")

// TestGobreakersDefaultsAndTheirPolicyTripAndProbeAlike runs the same
// outcomes, five seconds apart, through gobreaker with its defaults and
// through httpbreaker with gobreakerPolicy: both trip on the sixth failure
// in a row, however slowly the failures come, reject until 60s have passed,
// admit one probe, and close when it succeeds.
func TestGobreakersDefaultsAndTheirPolicyTripAndProbeAlike(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cb := gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{Name: "k"})
		b := newSet(t, gobreakerPolicy())
		slow := newSet(t, httpbreaker.Policy{ConsecutiveFailures: 6, FailureRate: httpbreaker.Off})
		call := func(fail bool) (gobreakerRan, httpbreakerRan bool) {
			result := func() error {
				if fail {
					return errDown
				}
				return nil
			}
			_, _ = cb.Execute(func() (struct{}, error) { gobreakerRan = true; return struct{}{}, result() })
			_ = b.Do(context.Background(), "k", func(context.Context) error { httpbreakerRan = true; return result() })
			_ = slow.Do(context.Background(), "k", func(context.Context) error { return result() })
			return gobreakerRan, httpbreakerRan
		}
		outcomes := "FFFFFSFFFFFF" // the last F is the sixth in a row
		for i, o := range outcomes {
			time.Sleep(5 * time.Second)
			call(o == 'F')
			want := "closed"
			if i == len(outcomes)-1 {
				want = "open"
			}
			if g, h := cb.State().String(), state(b.State("k").String()); g != want || h != want {
				t.Fatalf("after outcome %d (%c): gobreaker %s, httpbreaker %s; want both %s", i+1, o, g, h, want)
			}
		}
		if st := slow.State("k"); st != httpbreaker.StateClosed {
			t.Errorf("without LastCalls the failures, 5s apart, leave the 10s window: %v, want closed", st)
		}
		time.Sleep(59 * time.Second)
		if g, h := call(false); g || h {
			t.Fatalf("59s after the trip: gobreaker ran %v, httpbreaker ran %v; want both to reject", g, h)
		}
		time.Sleep(2 * time.Second)
		if g, h := cb.State().String(), state(b.State("k").String()); g != "half-open" || h != "half-open" {
			t.Fatalf("61s after the trip: gobreaker %s, httpbreaker %s; want both half-open", g, h)
		}
		if g, h := call(false); !g || !h {
			t.Fatalf("the probe: gobreaker ran %v, httpbreaker ran %v; want both to run it", g, h)
		}
		if g, h := cb.State().String(), state(b.State("k").String()); g != "closed" || h != "closed" {
			t.Fatalf("after the probe succeeded: gobreaker %s, httpbreaker %s; want both closed", g, h)
		}
	})
}

// TestGobreakerAroundAClientAndTransportTripAndFallBackAlike: the guide's
// two clients against an upstream answering 502: six calls reach it, then
// each answers from the cache without touching the network.
func TestGobreakerAroundAClientAndTransportTripAndFallBackAlike(t *testing.T) {
	var calls atomic.Int64
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	}))
	t.Cleanup(upstream.Close)
	for name, get := range map[string]func(*http.Request) (*http.Response, error){
		"gobreaker":   gobreakerClient(http.DefaultClient),
		"httpbreaker": httpbreakerClient(newSet(t, gobreakerPolicy())),
	} {
		calls.Store(0)
		for i := range 8 {
			req, _ := http.NewRequest(http.MethodGet, upstream.URL+"/repos", nil)
			resp, err := get(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			cached := err == nil && resp.Header.Get("X-Cache") == "stale"
			if cached != (i >= 6) {
				t.Fatalf("%s, call %d: %v, %v; want the cache from the 7th call on", name, i+1, resp, err)
			}
		}
		if n := calls.Load(); n != 6 {
			t.Errorf("%s: the upstream got %d calls, want 6", name, n)
		}
	}
}

// downDB is a database that refuses every connection.
type downDB struct{}

func (downDB) Connect(context.Context) (driver.Conn, error) { return nil, errDown }
func (downDB) Driver() driver.Driver                        { return nil }

// TestExecuteAndDoTripAlikeOnAQuery: the query snippets against a database
// that is down, with gobreaker's defaults and their policy.
func TestExecuteAndDoTripAlikeOnAQuery(t *testing.T) {
	db := sql.OpenDB(downDB{})
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	cb := gobreaker.NewCircuitBreaker[string](gobreaker.Settings{Name: "orders-db"})
	b := newSet(t, gobreakerPolicy())
	for i := range 7 {
		_, gerr := gobreakerQuery(ctx, cb, db, 1)
		_, herr := httpbreakerQuery(ctx, b, db, 1)
		open := i == 6
		if errors.Is(gerr, gobreaker.ErrOpenState) != open || errors.Is(herr, httpbreaker.ErrOpen) != open {
			t.Fatalf("query %d: gobreaker %v, httpbreaker %v; want both open only on the 7th", i+1, gerr, herr)
		}
	}
}

// TestNoRowsIsAnAnswerOnBothSides: sql.ErrNoRows counts as a success with
// either classifier, and a caller's own cancellation counts for nothing.
func TestNoRowsIsAnAnswerOnBothSides(t *testing.T) {
	settings, classify := noRowsIsAnAnswer()
	cb := gobreaker.NewCircuitBreaker[struct{}](settings)
	b := newSet(t, gobreakerPolicy(), classify)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for range 10 {
		_, _ = cb.Execute(func() (struct{}, error) { return struct{}{}, sql.ErrNoRows })
		_, _ = cb.Execute(func() (struct{}, error) { return struct{}{}, context.Canceled })
		_ = b.Do(context.Background(), "orders-db", func(context.Context) error { return sql.ErrNoRows })
		_ = b.Do(canceled, "orders-db", func(ctx context.Context) error { return ctx.Err() })
	}
	if g, h := cb.State(), b.State("orders-db"); g != gobreaker.StateClosed || h != httpbreaker.StateClosed {
		t.Fatalf("after 10 missing rows and 10 cancellations: gobreaker %v, httpbreaker %v; want both closed", g, h)
	}
	if c := cb.Counts(); c.TotalSuccesses != 10 || c.TotalFailures != 0 {
		t.Errorf("gobreaker counted %+v", c)
	}
	if s := totals(b.Snapshot()[0]); s["success"] != 10 || s["failure"] != 0 || s["excluded"] != 10 {
		t.Errorf("httpbreaker counted %v", s)
	}
}

// TestOnStateChangeIsAHookAndFlush is the test an adopter of gobreaker's
// OnStateChange writes: the change is recorded once the call that made it
// has returned. gobreaker calls it before Execute returns; httpbreaker's
// hook runs on a goroutine of the set's own, and Flush waits for it.
func TestOnStateChangeIsAHookAndFlush(t *testing.T) {
	var before []stateChange
	cb := gobreakerOnStateChange(&before)
	for range 6 {
		_, _ = cb.Execute(func() (struct{}, error) { return struct{}{}, errDown })
	}
	if want := (stateChange{"anthropic:/v1/messages", "closed", "open"}); len(before) != 1 || before[0] != want {
		t.Fatalf("gobreaker's changes %v, want %v", before, want)
	}

	var changes []stateChange
	breakers, err := httpbreakerHook(&changes, gobreakerPolicy(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = breakers.Close() })
	handler := breakers.Middleware("anthropic:/v1/messages")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(529) // overloaded
	}))
	// guide: gobreaker-flush
	for range 6 {
		handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/v1/messages", nil))
	}
	if err := breakers.Flush(context.Background()); err != nil { // the hook has seen every change so far
		t.Fatal(err)
	}
	if want := (stateChange{"anthropic:/v1/messages", "closed", "open"}); len(changes) != 1 || changes[0] != want {
		t.Fatalf("changes %v, want %v", changes, want)
	}
	// guide: end
}

// TestAnOutcomeCountsWhenTheCallEnds shows the generation edge: gobreaker
// clears its counts every Interval and at each change of state, and drops
// the outcome of a call admitted before; httpbreaker's window rolls, and a
// call counts when it ends, in the bucket of that moment and in the totals.
func TestAnOutcomeCountsWhenTheCallEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cb := gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{Name: "k", Interval: 10 * time.Second})
		b := newSet(t, httpbreaker.Policy{Window: 10 * time.Second})
		time.Sleep(9900 * time.Millisecond)
		slowFailure := func() error { time.Sleep(200 * time.Millisecond); return errDown } // ends past the Interval
		_, _ = cb.Execute(func() (struct{}, error) { return struct{}{}, slowFailure() })
		_ = b.Do(context.Background(), "k", func(context.Context) error { return slowFailure() })
		if c := cb.Counts(); c.TotalFailures != 0 {
			t.Errorf("gobreaker counted %+v; its new generation drops the call admitted before", c)
		}
		if s := b.Snapshot()[0]; s.Window.Failures != 1 || totals(s)["failure"] != 1 {
			t.Errorf("httpbreaker: window %+v, totals %v; want the failure counted in both", s.Window, totals(s))
		}

		// A call admitted before a trip and ending after it.
		cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{Name: "k"})
		b = newSet(t, httpbreaker.Policy{ConsecutiveFailures: 6})
		release := make(chan struct{})
		done := make(chan struct{}, 2)
		go func() {
			_, _ = cb.Execute(func() (struct{}, error) { <-release; return struct{}{}, errDown })
			done <- struct{}{}
		}()
		go func() {
			_ = b.Do(context.Background(), "k", func(context.Context) error { <-release; return errDown })
			done <- struct{}{}
		}()
		synctest.Wait() // both admitted, while closed
		for range 6 {
			_, _ = cb.Execute(func() (struct{}, error) { return struct{}{}, errDown })
			_ = b.Do(context.Background(), "k", func(context.Context) error { return errDown })
		}
		close(release)
		<-done
		<-done
		if c := cb.Counts(); c.TotalFailures != 0 {
			t.Errorf("gobreaker, open, counted %+v; it drops the late call", c)
		}
		if s := b.Snapshot()[0]; s.State != httpbreaker.StateOpen || totals(s)["failure"] != 7 {
			t.Errorf("httpbreaker: %v with totals %v; want open, and the late failure counted (7)", s.State, totals(s))
		}
	})
}

// totals returns a key's totals by result, as requests_total and the
// status JSON name them.
func totals(s httpbreaker.Status) map[string]uint64 {
	raw, _ := json.Marshal(s.Totals)
	var m map[string]uint64
	_ = json.Unmarshal(raw, &m)
	return m
}

// TestOpossumOpensAboveItsThresholdAndFailureRateAtIt: one failure of two
// is 50%: FailureRate 0.5 opens at it, as resilience4j and failsafe-go do;
// opossum's errorThresholdPercentage 50 opens only above it, which is
// math.Nextafter(0.5, 1) here.
func TestOpossumOpensAboveItsThresholdAndFailureRateAtIt(t *testing.T) {
	for _, tc := range []struct {
		name     string
		rate     float64
		outcomes string
		want     httpbreaker.State
	}{
		{"0.5, one of two", 0.5, "SF", httpbreaker.StateOpen},
		{"above 0.5, one of two", math.Nextafter(0.5, 1), "SF", httpbreaker.StateClosed},
		{"above 0.5, two of three", math.Nextafter(0.5, 1), "SFF", httpbreaker.StateOpen},
		{"above 0.5, five of ten", math.Nextafter(0.5, 1), "SFSFSFSFSF", httpbreaker.StateClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newSet(t, httpbreaker.Policy{FailureRate: tc.rate, MinRequests: 2, ConsecutiveFailures: httpbreaker.Off})
			for _, o := range tc.outcomes {
				_ = b.Do(context.Background(), "catalog", func(context.Context) error {
					if o == 'F' {
						return errDown
					}
					return nil
				})
			}
			if st := b.State("catalog"); st != tc.want {
				t.Fatalf("%s with failure_rate %v: %v, want %v", tc.outcomes, tc.rate, st, tc.want)
			}
		})
	}
}

// TestTheOpossumSnippetFallsBackAndTellsTheOpening runs the guide's
// opossum translation against a catalog that fails every call.
func TestTheOpossumSnippetFallsBackAndTellsTheOpening(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(upstream.Close)
	var logs strings.Builder
	fetch, breakers, err := opossumLike(slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = breakers.Close() })
	for i := range 11 {
		req, _ := http.NewRequest(http.MethodGet, upstream.URL, nil)
		resp, err := fetch(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if cached := resp.Header.Get("X-Cache") == "stale"; cached != (i == 10) {
			t.Fatalf("call %d: %d, cached %v; want the fallback once 10 calls failed", i+1, resp.StatusCode, cached)
		}
	}
	if err := breakers.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `msg="catalog breaker opened" reason=failure_rate`) {
		t.Errorf("the open event was not logged:\n%s", logs.String())
	}
}

// TestFailsafesRatioAndItsPolicyTripAlike runs the same outcomes through
// failsafe-go's WithFailureThresholdRatio(5, 10) and failsafePolicy, once
// each window holds 10 calls: both open on the call that makes 5 failures
// of the last 10, and reject alike after.
func TestFailsafesRatioAndItsPolicyTripAlike(t *testing.T) {
	cb := failsafeBreaker()
	b := newSet(t, failsafePolicy())
	run := func(fail bool) (failsafeErr, httpbreakerErr error) {
		_, failsafeErr = failsafe.With[*http.Response](cb).Get(func() (*http.Response, error) {
			if fail {
				return nil, errDown
			}
			return &http.Response{StatusCode: http.StatusOK}, nil
		})
		httpbreakerErr = b.Do(context.Background(), "k", func(context.Context) error {
			if fail {
				return errDown
			}
			return nil
		})
		return failsafeErr, httpbreakerErr
	}
	outcomes := "SSSSSSSSSS" + "SFSFSFSSFF" // 10 to fill both windows; the last F is the 5th of the last 10
	for i, o := range outcomes {
		f, h := run(o == 'F')
		if errors.Is(f, circuitbreaker.ErrOpen) || errors.Is(h, httpbreaker.ErrOpen) {
			t.Fatalf("call %d rejected: failsafe-go %v, httpbreaker %v", i+1, f, h)
		}
		open := i == len(outcomes)-1
		if cb.IsOpen() != open || (b.State("k") == httpbreaker.StateOpen) != open {
			t.Fatalf("after call %d (%c): failsafe-go open %v, httpbreaker %v; want open only after the last", i+1, o, cb.IsOpen(), b.State("k"))
		}
	}
	if f, h := run(false); !errors.Is(f, circuitbreaker.ErrOpen) || !errors.Is(h, httpbreaker.ErrOpen) {
		t.Fatalf("once open: failsafe-go %v, httpbreaker %v; want both rejections", f, h)
	}
}

// TestTheFailsafeClientsTripAlike: the guide's two clients and two calls
// that are not HTTP, against an upstream that fails.
func TestTheFailsafeClientsTripAlike(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(upstream.Close)
	cb := failsafeBreaker()
	// WithFailureThreshold(5), as failsafe-go's builder says it: 5 in a row.
	fiveInARow := httpbreaker.Policy{ConsecutiveFailures: 5}
	b := newSet(t, failsafePolicy(), httpbreaker.WithKeyPolicy("github", fiveInARow), httpbreaker.WithKeyPolicy("search-index", fiveInARow))
	for i := range 6 {
		req, _ := http.NewRequest(http.MethodGet, upstream.URL, nil)
		f, ferr := failsafeClient(cb, req)
		req, _ = http.NewRequest(http.MethodGet, upstream.URL, nil)
		h, herr := httpbreakerTransport(b, req)
		if ferr != nil || herr != nil {
			t.Fatal(ferr, herr)
		}
		f.Body.Close()
		h.Body.Close()
		cached := i == 5
		if (f.Header.Get("X-Cache") == "stale") != cached || (h.Header.Get("X-Cache") == "stale") != cached {
			t.Fatalf("call %d: failsafe-go %d, httpbreaker %d; want the cache on the 6th only", i+1, f.StatusCode, h.StatusCode)
		}
	}

	anyCB := circuitbreaker.NewBuilder[any]().WithFailureThreshold(5).Build()
	ctx := context.Background()
	refresh := func(context.Context) error { return errDown }
	for i := range 6 {
		ferr, herr := failsafeRun(ctx, anyCB, refresh), httpbreakerDo(ctx, b, refresh)
		open := i == 5
		if errors.Is(ferr, circuitbreaker.ErrOpen) != open || errors.Is(herr, httpbreaker.ErrOpen) != open {
			t.Fatalf("run %d: failsafe-go %v, httpbreaker %v; want both open on the 6th only", i+1, ferr, herr)
		}
	}
}

// TestTheResilience4jConfigReadsAsItsComments: the config the guide gives
// for a resilience4j instance loads, and resolves to what each line says.
func TestTheResilience4jConfigReadsAsItsComments(t *testing.T) {
	cfg, err := httpbreaker.LoadConfig(strings.NewReader(resilience4jConfig))
	if err != nil {
		t.Fatal(err)
	}
	b := newSet(t, httpbreaker.Policy{}, httpbreaker.WithConfig(cfg))
	b.Middleware("inventory")
	p := b.Snapshot()[0].Policy
	want := httpbreaker.Policy{LastCalls: 100, MinRequests: 20, FailureRate: 0.5, SlowCall: 2 * time.Second, SlowCallRate: 0.8,
		OpenFor: time.Minute, MaxOpenFor: httpbreaker.Off, HalfOpenRequests: 10, HalfOpenSuccesses: 6, ConsecutiveFailures: httpbreaker.Off}
	if p.LastCalls != want.LastCalls || p.MinRequests != want.MinRequests || p.FailureRate != want.FailureRate ||
		p.SlowCall != want.SlowCall || p.SlowCallRate != want.SlowCallRate || p.OpenFor != want.OpenFor ||
		p.MaxOpenFor != want.MaxOpenFor || p.HalfOpenRequests != want.HalfOpenRequests ||
		p.HalfOpenSuccesses != want.HalfOpenSuccesses || p.ConsecutiveFailures != want.ConsecutiveFailures {
		t.Fatalf("resolved %+v, want %+v", p, want)
	}
}
