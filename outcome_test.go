package httpbreaker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"slices"
	"sync"
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
				want.Successes = 1
			case Failure:
				want.Failures = 1
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
	if s := status(t, b, "p"); s.Totals.Failures != 1 {
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
				return s.Excluded+s.Failures+s.Successes > 0
			})
			if s := status(t, b, "p"); s.Totals.Excluded != 1 || s.State != StateClosed {
				t.Fatalf("totals %+v, state %v: want one exclusion and closed", s.Totals, s.State)
			}
		})
	}
}

// TestClientHangUpOverHTTP2IsExcluded: an HTTP/2 client that resets its
// stream cancels the request's context as a closed HTTP/1.1 connection does;
// a failure written after is nobody's fault, whatever cause ended it.
func TestClientHangUpOverHTTP2IsExcluded(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1}))
	var handled sync.WaitGroup
	srv := httptest.NewUnstartedServer(b.Middleware("p")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer handled.Done()
		if r.ProtoMajor != 2 {
			t.Errorf("the request came over %s, want HTTP/2", r.Proto)
		}
		<-r.Context().Done() // the client reset the stream
		w.WriteHeader(http.StatusBadGateway)
	})))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	for range 3 {
		handled.Add(1)
		ctx, cancel := context.WithCancelCause(context.Background())
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) {
			cancel(errors.New("the user went elsewhere"))
		}})
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		if resp, err := srv.Client().Do(req); err == nil {
			resp.Body.Close()
			t.Fatal("a request canceled in flight got an answer")
		}
		handled.Wait()
	}
	waitFor(t, "the outcomes", func() bool {
		s := status(t, b, "p").Totals
		return s.Excluded+s.Failures+s.Successes == 3
	})
	if s := status(t, b, "p"); s.State != StateClosed || s.Totals.Excluded != 3 || s.Totals.Failures != 0 {
		t.Fatalf("after 3 HTTP/2 clients hung up: %v %+v, want closed with 3 excluded", s.State, s.Totals)
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
	if s := status(t, b, "p"); s.Totals.Failures != 1 {
		t.Fatalf("totals %+v, want one failure", s.Totals)
	}
}

func TestSlowCallIsAFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{SlowCall: 50 * time.Millisecond, ConsecutiveFailures: 2}))
		h := b.Middleware("p")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(200 * time.Millisecond)
		}))
		if rec := record(h, "/"); rec.Code != 200 {
			t.Fatalf("status %d, want 200: a slow call still answers", rec.Code)
		}
		if s := status(t, b, "p"); s.Totals.Failures != 1 {
			t.Fatalf("totals %+v, want the slow call counted as a failure", s.Totals)
		}
		record(h, "/")
		if st := b.State("p"); st != StateOpen {
			t.Fatalf("after 2 slow calls: state %v, want open", st)
		}
	})
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
		if s := status(t, b, "p"); s.Totals.Successes != 1 {
			t.Fatalf("exactly SlowCall: totals %+v, want a success", s.Totals)
		}
		d.Store(int64(time.Second + time.Nanosecond))
		record(h, "/")
		if s := status(t, b, "p"); s.Totals.Failures != 1 {
			t.Fatalf("1ns over SlowCall: totals %+v, want a failure", s.Totals)
		}
	})
}

func TestClassifierSeesTheCallAndCanFallBack(t *testing.T) {
	var calls []Call
	classify := func(c Call) Outcome {
		calls = append(calls, c)
		if c.Key == "strict" && c.StatusCode == http.StatusNotFound {
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
	if c.Key != "strict" || c.StatusCode != 404 || c.Request == nil || c.Duration <= 0 || c.Panic != nil || c.Hijacked || c.ClientGone {
		t.Fatalf("classifier saw %+v", c)
	}
}

func TestHandlerThatWritesNothingIsASuccess(t *testing.T) {
	b, _ := newSet(t)
	var seen Call
	b.classifier = func(c Call) Outcome { seen = c; return DefaultClassifier(c) }
	rec := record(b.Middleware("p")(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})), "/")
	if rec.Code != 200 || seen.StatusCode != 0 {
		t.Fatalf("client got %d, classifier saw status %d; want 200 and 0", rec.Code, seen.StatusCode)
	}
	if s := status(t, b, "p"); s.Totals.Successes != 1 {
		t.Fatalf("totals %+v, want one success", s.Totals)
	}
}

func TestEachOutcomeIsCountedAsItsOwnResult(t *testing.T) {
	for _, o := range []Outcome{Success, Failure, Excluded, UpstreamFailure} {
		v := verdict{outcome: o}
		if o == UpstreamFailure {
			v = verdict{outcome: Excluded, blamed: true}
		}
		kind, got := countOf(v), ""
		for _, r := range results {
			if slices.Contains(r.kinds, kind) {
				got = r.name
			}
		}
		if got != o.String() {
			t.Errorf("%v is counted as %q", o, got)
		}
	}
}

func TestClassifierOutcomeOutOfRangeIsAFailure(t *testing.T) {
	b, _ := newSet(t, WithClassifier(func(Call) Outcome { return Outcome(9) }))
	record(b.Middleware("p")(newStatusHandler(200)), "/")
	if s := status(t, b, "p"); s.Totals.Failures != 1 || s.Window.Failures != 1 {
		t.Fatalf("totals %+v window %+v, want the unknown outcome counted as one failure", s.Totals, s.Window)
	}
}
