package httpbreaker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

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

func TestRejectResponse(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: 30 * time.Second}))
	h := newStatusHandler(500)
	srv := serve(t, b, map[string]http.Handler{"scaffolder": h})
	get(t, srv.URL+"/scaffolder/")

	code, header, body := get(t, srv.URL+"/scaffolder/")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", code)
	}
	if n := h.calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1: an open breaker must not run it", n)
	}
	for name, want := range map[string]string{
		"Content-Type":  "application/problem+json",
		"Cache-Control": "no-store",
		// The cooldown began a moment ago: 29.99...s rounds up to 30.
		"Retry-After": "30",
	} {
		if got := header.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	var problem map[string]any
	if err := json.Unmarshal([]byte(body), &problem); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, body)
	}
	want := map[string]any{
		"title":  "Service Unavailable",
		"status": 503.0,
		"detail": `circuit breaker "scaffolder" is open; retry after the delay in Retry-After`,
		"key":    "scaffolder",
		"state":  "open",
	}
	if len(problem) != len(want) {
		t.Errorf("body has members %v, want exactly %v", problem, want)
	}
	for k, v := range want {
		if problem[k] != v {
			t.Errorf("body %s: %v, want %v", k, problem[k], v)
		}
	}
}

func TestRejectBodyEscapesKey(t *testing.T) {
	key := "GET /a/{id} \"quoted\" \\ <tag>"
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1}))
	h := b.Middleware(key)(newStatusHandler(500))
	record(h, "/")
	rec := record(h, "/")
	var problem struct{ Key, Detail string }
	if err := json.Unmarshal(rec.Body.Bytes(), &problem); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, rec.Body)
	}
	if problem.Key != key {
		t.Fatalf("key %q, want %q", problem.Key, key)
	}
}

func TestNestedBreakerRejectionIsNotAFailureOutside(t *testing.T) {
	b, _ := newSet(t,
		WithKeyPolicy("inner", Policy{ConsecutiveFailures: 2, OpenFor: time.Minute}),
		WithKeyPolicy("outer", Policy{ConsecutiveFailures: 5}))
	inner := b.Middleware("inner")(newStatusHandler(500))
	outer := b.Middleware("outer")(inner)
	for range 2 {
		record(outer, "/")
	}
	for range 10 {
		if rec := record(outer, "/"); rec.Code != 503 {
			t.Fatalf("status %d, want the inner breaker's 503", rec.Code)
		}
	}
	if s := status(t, b, "outer"); s.Totals.Excluded != 10 || s.Totals.Failures != 2 {
		t.Fatalf("outer totals %+v, want the 10 inner rejections excluded", s.Totals)
	}
	if st := b.State("outer"); st != StateClosed {
		t.Fatalf("outer state %v, want closed: 2 failures then 10 of the inner breaker's rejections", st)
	}
}

// editsHeadersInPlace is a middleware further out that edits the values of
// its response's header map in place once the handler has answered.
func editsHeadersInPlace(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r)
		h := w.Header()
		for _, k := range []string{"Content-Type", "Cache-Control", "Retry-After"} {
			if v := h[k]; len(v) > 0 {
				v[0] += "; edited"
			}
		}
	})
}

func TestNoResponseCanChangeAnothersRejectHeaders(t *testing.T) {
	open := func(key string) (*Breakers, http.Handler) {
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Minute}))
		h := editsHeadersInPlace(b.Middleware(key)(newStatusHandler(500)))
		record(h, "/")
		return b, h
	}
	_, first := open("first")
	other, second := open("second")
	otherKey := other.Middleware("third")(newStatusHandler(500))
	record(otherKey, "/")
	for range 3 {
		record(first, "/") // rejections whose headers are then edited in place
	}
	for name, h := range map[string]http.Handler{"the same key": first, "another set": second, "another key of that set": otherKey} {
		rec := record(h, "/")
		hdr := rec.Result().Header // as it was sent, before this response's own edit
		if rec.Code != 503 || hdr.Get("Content-Type") != "application/problem+json" || hdr.Get("Cache-Control") != "no-store" ||
			hdr.Get("Retry-After") != "60" {
			t.Errorf("%s: rejection headers %v, want untouched by the edits made to other responses", name, hdr)
		}
	}
}

func TestConcurrentEditsOfRejectHeadersDoNotRace(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Minute}))
	h := editsHeadersInPlace(b.Middleware("p")(newStatusHandler(500)))
	record(h, "/")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				if rec := record(h, "/"); rec.Code != 503 {
					t.Errorf("status %d, want 503", rec.Code)
					return
				}
			}
		})
	}
	wg.Wait()
}

// opaqueWriter wraps a ResponseWriter and hides it: it has no Unwrap, as
// many third-party middlewares' writers have none.
type opaqueWriter struct{ w http.ResponseWriter }

func (o opaqueWriter) Header() http.Header { return o.w.Header() }

func (o opaqueWriter) WriteHeader(code int) { o.w.WriteHeader(code) }

func (o opaqueWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

func TestNestedRejectionThroughAWriterWithoutUnwrapIsNotAFailureOutside(t *testing.T) {
	b, _ := newSet(t,
		WithKeyPolicy("inner", Policy{ConsecutiveFailures: 2, OpenFor: time.Minute}),
		WithKeyPolicy("outer", Policy{ConsecutiveFailures: 5}))
	inner := b.Middleware("inner")(newStatusHandler(500))
	hide := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner.ServeHTTP(opaqueWriter{w}, r.WithContext(context.WithValue(r.Context(), unrelatedKey{}, 1)))
	})
	outer := b.Middleware("outer")(hide)
	for range 2 {
		record(outer, "/")
	}
	for range 10 {
		if rec := record(outer, "/"); rec.Code != 503 {
			t.Fatalf("status %d, want the inner breaker's 503", rec.Code)
		}
	}
	if s := status(t, b, "outer"); s.Totals.Excluded != 10 || s.Totals.Failures != 2 || s.State != StateClosed {
		t.Fatalf("outer: %v with totals %+v, want closed with the 10 inner rejections excluded", s.State, s.Totals)
	}
}

func TestAClientCannotForgeTheRejectionMark(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 2}))
	srv := serve(t, b, map[string]http.Handler{"p": newStatusHandler(500)})
	for range 2 {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/p/", nil)
		req.Header.Set("Httpbreaker-Rejected", "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if st := b.State("p"); st != StateOpen {
		t.Fatalf("state %v: a client's own header excluded its failures", st)
	}
}
