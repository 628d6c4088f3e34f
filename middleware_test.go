package httpbreaker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestStatusClassification(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   Outcome
	}{
		{200, Success},
		{204, Success},
		{301, Success},
		{400, Success},
		{401, Success},
		{404, Success},
		{409, Success},
		{429, Failure},
		{499, Success},
		{500, Failure},
		{502, Failure},
		{503, Failure},
		{504, Failure},
		{529, Failure},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			b, _ := newSet(t)
			srv := serve(t, b, map[string]http.Handler{"p": newStatusHandler(tc.status)})
			if code, _, _ := get(t, srv.URL+"/p/"); code != tc.status {
				t.Fatalf("client got %d, want the handler's %d", code, tc.status)
			}
			got := status(t, b, "p").Totals
			want := Totals{}
			switch tc.want {
			case Success:
				want.Success = 1
			case Failure:
				want.Failure = 1
			}
			if got != want {
				t.Fatalf("totals %+v, want %+v", got, want)
			}
		})
	}
}

func TestClientErrorsNeverTrip(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 2, MinRequests: 2}))
	srv := serve(t, b, map[string]http.Handler{"p": newStatusHandler(404)})
	hit(t, srv.URL+"/p/", 50)
	if st := b.State("p"); st != StateClosed {
		t.Fatalf("50 x 404: state %v, want closed", st)
	}
}

func TestTooManyRequestsTrips(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 3}))
	srv := serve(t, b, map[string]http.Handler{"p": newStatusHandler(429)})
	hit(t, srv.URL+"/p/", 3)
	if st := b.State("p"); st != StateOpen {
		t.Fatalf("3 x 429: state %v, want open", st)
	}
}

// recoverer stands for whatever recovers panics above the breaker (net/http
// itself, or a recovery middleware): it keeps the value and the stack.
type recoverer struct {
	next  http.Handler
	value atomic.Value
	stack atomic.Value
}

func (rc *recoverer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			rc.value.Store(p)
			rc.stack.Store(string(debug.Stack()))
			w.WriteHeader(http.StatusInternalServerError)
		}
	}()
	rc.next.ServeHTTP(w, r)
}

func panickingHandler(w http.ResponseWriter, r *http.Request) {
	panic("plugin bug")
}

func TestPanicIsAFailureAndIsRaisedAgainWithItsStack(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 2}))
	rc := &recoverer{next: b.Middleware("p")(http.HandlerFunc(panickingHandler))}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)

	if code, _, _ := get(t, srv.URL); code != 500 {
		t.Fatalf("status %d, want the recoverer's 500", code)
	}
	if v := rc.value.Load(); v != "plugin bug" {
		t.Fatalf("recovered %v, want the handler's own panic value", v)
	}
	if stack := rc.stack.Load().(string); !strings.Contains(stack, "panickingHandler") {
		t.Fatalf("the stack seen above the breaker does not show where the panic happened:\n%s", stack)
	}
	if s := status(t, b, "p"); s.Totals.Failure != 1 || s.Window.Failures != 1 {
		t.Fatalf("totals %+v window %+v, want one failure", s.Totals, s.Window)
	}
	get(t, srv.URL)
	if st := b.State("p"); st != StateOpen {
		t.Fatalf("after 2 panics: state %v, want open", st)
	}
}

func TestAbortHandlerPanicAfterClientLeftIsExcluded(t *testing.T) {
	b, _ := newSet(t)
	ctx, cancel := context.WithCancel(context.Background())
	rc := &recoverer{next: b.Middleware("p")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200) // a proxied stream has begun
		cancel()           // the client stops reading
		panic(http.ErrAbortHandler)
	}))}
	rc.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil).WithContext(ctx))
	if v := rc.value.Load(); v != http.ErrAbortHandler {
		t.Fatalf("recovered %v, want http.ErrAbortHandler raised again", v)
	}
	if s := status(t, b, "p"); s.Totals.Excluded != 1 || s.Window.Excluded != 1 {
		t.Fatalf("totals %+v window %+v, want one exclusion", s.Totals, s.Window)
	}

	// The same abort with the client still there is a failure: the upstream broke.
	rc.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	if s := status(t, b, "p"); s.Totals.Failure != 1 {
		t.Fatalf("totals %+v, want one failure", s.Totals)
	}
}

func TestClientHangUpIsExcluded(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler func(w http.ResponseWriter)
	}{
		{"writes 500 after", func(w http.ResponseWriter) { w.WriteHeader(500) }},
		{"writes 502 after", func(w http.ResponseWriter) { w.WriteHeader(502) }},
		{"writes nothing", func(http.ResponseWriter) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1}))
			done := make(chan struct{})
			srv := serve(t, b, map[string]http.Handler{"p": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				defer close(done)
				<-r.Context().Done() // the client hung up
				tc.handler(w)
			})})
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/p/", nil)
			go func() {
				time.Sleep(20 * time.Millisecond)
				cancel()
			}()
			if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.Canceled) {
				t.Fatalf("client: %v, want context.Canceled", err)
			}
			<-done
			waitFor(t, "the outcome", func() bool {
				s := status(t, b, "p").Totals
				return s.Excluded+s.Failure+s.Success > 0
			})
			if s := status(t, b, "p"); s.Totals.Excluded != 1 || s.State != StateClosed {
				t.Fatalf("totals %+v, state %v: want one exclusion and closed", s.Totals, s.State)
			}
		})
	}
}

func TestFailureWrittenBeforeClientLeftStillCounts(t *testing.T) {
	b, _ := newSet(t)
	ctx, cancel := context.WithCancel(context.Background())
	h := b.Middleware("p")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(503)
		cancel()
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil).WithContext(ctx))
	if s := status(t, b, "p"); s.Totals.Failure != 1 {
		t.Fatalf("totals %+v, want one failure", s.Totals)
	}
}

func TestSlowCallIsAFailure(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{SlowCall: 50 * time.Millisecond, ConsecutiveFailures: 2}))
	srv := serve(t, b, map[string]http.Handler{"p": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond)
	})})
	if code, _, _ := get(t, srv.URL+"/p/"); code != 200 {
		t.Fatalf("status %d, want 200: a slow call still answers", code)
	}
	if s := status(t, b, "p"); s.Totals.Failure != 1 {
		t.Fatalf("totals %+v, want the slow call counted as a failure", s.Totals)
	}
	get(t, srv.URL+"/p/")
	if st := b.State("p"); st != StateOpen {
		t.Fatalf("after 2 slow calls: state %v, want open", st)
	}
}

func TestSlowCallThresholdIsExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{SlowCall: time.Second}))
		var d atomic.Int64
		h := b.Middleware("p")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(time.Duration(d.Load()))
		}))
		d.Store(int64(time.Second))
		record(h, "/")
		if s := status(t, b, "p"); s.Totals.Success != 1 {
			t.Fatalf("exactly SlowCall: totals %+v, want a success", s.Totals)
		}
		d.Store(int64(time.Second + time.Nanosecond))
		record(h, "/")
		if s := status(t, b, "p"); s.Totals.Failure != 1 {
			t.Fatalf("1ns over SlowCall: totals %+v, want a failure", s.Totals)
		}
	})
}

func TestObserveModeNeverRejects(t *testing.T) {
	b, sink := newSet(t, WithPolicy(Policy{Mode: ModeObserve, ConsecutiveFailures: 2, OpenFor: time.Minute}))
	h := newStatusHandler(500)
	srv := serve(t, b, map[string]http.Handler{"p": h})
	got := hit(t, srv.URL+"/p/", 12)
	if got[500] != 12 {
		t.Fatalf("observe mode answered %v, want every request to reach the handler", got)
	}
	if n := h.calls.Load(); n != 12 {
		t.Fatalf("handler ran %d times, want 12", n)
	}
	s := status(t, b, "p")
	if s.State != StateOpen {
		t.Fatalf("state %v, want open: observe mode trips as enforce would", s.State)
	}
	if s.Totals.Failure != 2 || s.Totals.WouldReject != 10 || s.Totals.Rejected != 0 {
		t.Fatalf("totals %+v, want 2 failures and 10 would-be rejections", s.Totals)
	}
	changes := sink.matching("state changed")
	if len(changes) != 1 || changes[0].attrs["mode"] != "observe" || changes[0].attrs["to"] != "open" {
		t.Fatalf("logs %+v, want the trip logged with mode observe", changes)
	}
}

func TestDisabledModePassesThroughAndRecordsNothing(t *testing.T) {
	b, sink := newSet(t,
		WithPolicy(Policy{ConsecutiveFailures: 1}),
		WithKeyPolicy("p", Policy{Mode: ModeDisabled}))
	h := newStatusHandler(500)
	srv := serve(t, b, map[string]http.Handler{"p": h})
	if got := hit(t, srv.URL+"/p/", 10); got[500] != 10 {
		t.Fatalf("disabled answered %v, want the handler's 500 every time", got)
	}
	s := status(t, b, "p")
	if s.State != StateClosed || s.Totals != (Totals{}) || s.Window != (Counts{}) {
		t.Fatalf("status %+v, want closed with nothing recorded", s)
	}
	if logs := sink.all(); len(logs) != 0 {
		t.Fatalf("disabled breaker logged %+v", logs)
	}
}

func TestRejectHandlerIsAFallbackThatKnowsTheRejection(t *testing.T) {
	var seen atomic.Value
	fallback := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rj, ok := RejectionFrom(r)
		if !ok {
			t.Error("RejectionFrom found no rejection in the fallback's request")
		}
		seen.Store(rj)
		w.Header().Set("Retry-After", fmt.Sprint(rj.RetryAfterSeconds()))
		_, _ = io.WriteString(w, "cached answer")
	})
	b, _ := newSet(t, WithRejectHandler(fallback), WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: 90 * time.Second}))
	srv := serve(t, b, map[string]http.Handler{"search": newStatusHandler(500)})
	get(t, srv.URL+"/search/")
	code, header, body := get(t, srv.URL+"/search/")
	if code != 200 || body != "cached answer" || header.Get("Retry-After") != "90" {
		t.Fatalf("got %d %q Retry-After %q, want the fallback's 200 with Retry-After 90", code, body, header.Get("Retry-After"))
	}
	rj := seen.Load().(Rejection)
	if rj.Key != "search" || rj.State != StateOpen || rj.RetryAfter <= 89*time.Second {
		t.Fatalf("rejection %+v, want search, open, about 90s", rj)
	}
	if s := status(t, b, "search"); s.Totals.Rejected != 1 {
		t.Fatalf("totals %+v, want the fallback's answer counted as rejected", s.Totals)
	}
	if _, ok := RejectionFrom(httptest.NewRequest("GET", "/", nil)); ok {
		t.Fatal("RejectionFrom found a rejection in an ordinary request")
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{
		{0, 1}, {time.Millisecond, 1}, {time.Second, 1}, {time.Second + 1, 2},
		{29*time.Second + 999*time.Millisecond, 30}, {5 * time.Minute, 300},
	} {
		if got := (Rejection{RetryAfter: tc.d}).RetryAfterSeconds(); got != tc.want {
			t.Errorf("RetryAfterSeconds(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

func TestKeyedMiddlewareKeysByRoutePattern(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 3}))
	items, users := newStatusHandler(500), newStatusHandler(200)
	mw := b.KeyedMiddleware(RoutePattern)
	mux := http.NewServeMux()
	mux.Handle("GET /items/{id}", mw(items))
	mux.Handle("GET /users/{id}", mw(users))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	for i := range 5 {
		get(t, fmt.Sprintf("%s/items/%d", srv.URL, i))
		if code, _, _ := get(t, fmt.Sprintf("%s/users/%d", srv.URL, i)); code != 200 {
			t.Fatalf("users answered %d while items failed", code)
		}
	}
	if st := b.State("GET /items/{id}"); st != StateOpen {
		t.Fatalf("items: state %v, want open after failures on five different ids", st)
	}
	var keys []string
	for _, s := range b.Snapshot() {
		keys = append(keys, s.Key)
	}
	if strings.Join(keys, ",") != "GET /items/{id},GET /users/{id}" {
		t.Fatalf("keys %q, want the two route patterns and no raw paths", keys)
	}
}

func TestKeyedMiddlewareOutsideTheRouterPassesUntracked(t *testing.T) {
	b, sink := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1}))
	mux := http.NewServeMux()
	mux.Handle("GET /items/{id}", newStatusHandler(500))
	srv := httptest.NewServer(b.KeyedMiddleware(RoutePattern)(mux)) // too early: no pattern yet
	t.Cleanup(srv.Close)
	if got := hit(t, srv.URL+"/items/1", 5); got[500] != 5 {
		t.Fatalf("got %v, want 5 x 500 passed through", got)
	}
	if n := b.untracked.Load(); n != 5 {
		t.Fatalf("untracked %d, want 5", n)
	}
	if logs := sink.matching("KeyFunc returned no key"); len(logs) != 1 {
		t.Fatalf("got %d warnings, want one", len(logs))
	}
}

func TestClassifierSeesTheCallAndCanFallBack(t *testing.T) {
	var calls []Call
	classify := func(c Call) Outcome {
		calls = append(calls, c)
		if c.Key == "strict" && c.Status == http.StatusNotFound {
			return Failure
		}
		return DefaultClassifier(c)
	}
	b, _ := newSet(t, WithClassifier(classify), WithPolicy(Policy{ConsecutiveFailures: 2}))
	strict := b.Middleware("strict")(newStatusHandler(404))
	lenient := b.Middleware("lenient")(newStatusHandler(404))
	for range 2 {
		record(strict, "/")
		record(lenient, "/")
	}
	if st := b.State("strict"); st != StateOpen {
		t.Fatalf("strict: state %v, want open (404 is a failure there)", st)
	}
	if st := b.State("lenient"); st != StateClosed {
		t.Fatalf("lenient: state %v, want closed", st)
	}
	c := calls[0]
	if c.Key != "strict" || c.Status != 404 || c.Request == nil || c.Duration <= 0 || c.Panic != nil || c.Hijacked || c.ClientGone {
		t.Fatalf("classifier saw %+v", c)
	}
}

func TestHandlerThatWritesNothingIsASuccess(t *testing.T) {
	b, _ := newSet(t)
	var seen Call
	b.classifier = func(c Call) Outcome { seen = c; return DefaultClassifier(c) }
	rec := record(b.Middleware("p")(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})), "/")
	if rec.Code != 200 || seen.Status != 0 {
		t.Fatalf("client got %d, classifier saw status %d; want 200 and 0", rec.Code, seen.Status)
	}
	if s := status(t, b, "p"); s.Totals.Success != 1 {
		t.Fatalf("totals %+v, want one success", s.Totals)
	}
}
