package httpbreaker

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"
)

func TestRejectionsAreNotFailures(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 2, OpenFor: time.Minute}))
	srv := serve(t, b, map[string]http.Handler{"p": newStatusHandler(500)})
	hit(t, srv.URL+"/p/", 2)
	if got := hit(t, srv.URL+"/p/", 20); got[503] != 20 {
		t.Fatalf("got %v, want 20 rejections", got)
	}
	s := status(t, b, "p")
	if s.Totals.Failures != 2 || s.Totals.Rejected != 20 {
		t.Fatalf("totals %+v, want 2 failures and 20 rejections", s.Totals)
	}
	if s.Window.Failures != 0 {
		t.Fatalf("window %+v: rejections reached the breaker's counts", s.Window)
	}
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
	if s.Totals.Failures != 2 || s.Totals.WouldReject != 10 || s.Totals.Rejected != 0 {
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

func TestGoexitInAClosedCallIsAFailureOfTheWindow(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 2}))
	h := b.Middleware("p")(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { runtime.Goexit() }))
	for want := range 2 {
		done := make(chan struct{})
		go func() {
			defer close(done)
			record(h, "/")
		}()
		<-done
		s := status(t, b, "p")
		if want == 0 && (s.Window.Failures != 1 || s.Window.InFlight != 0 || s.Totals.Failures != 1) {
			t.Fatalf("after one Goexit: window %+v totals %+v, want one failure and nothing in flight", s.Window, s.Totals)
		}
	}
	if st := b.State("p"); st != StateOpen {
		t.Fatalf("state %v after two Goexits with consecutive_failures 2, want open", st)
	}
}

// TestClosedPathAllocatesNothing holds what BenchmarkClosed and
// BenchmarkTransport measure: a call through a closed breaker, on either
// side and keyed either way, allocates nothing. The server side's set has
// no client side: with one, each request carries a scope for blame, its one
// allocation (TestACarriedRequestAllocatesItsScopeOnly).
func TestClosedPathAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's sync.Pool drops writers at random: allocation counts are its own")
	}
	w, in := benchRequest()
	in.Pattern = "GET /api/catalog/entities"
	out := httptest.NewRequest(http.MethodGet, "http://api.example.com/v1/models", nil)
	base := cannedTransport{resp: &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody}}
	serve := func(h http.Handler) func() { return func() { h.ServeHTTP(w, in) } }
	send := func(rt http.RoundTripper) func() { return func() { _, _ = rt.RoundTrip(out) } }
	server, client := benchSet(t), benchSet(t)
	for name, call := range map[string]func(){
		"Middleware":      serve(server.Middleware("catalog")(okHandler)),
		"KeyedMiddleware": serve(server.KeyedMiddleware(RoutePattern)(okHandler)),
		"Transport":       send(client.Transport("models", base)),
		"KeyedTransport":  send(client.KeyedTransport(Host, base)),
	} {
		call() // the key's breaker is made
		if n := testing.AllocsPerRun(200, call); n != 0 {
			t.Errorf("%s: %v allocations per call through a closed breaker, want 0", name, n)
		}
	}
}
