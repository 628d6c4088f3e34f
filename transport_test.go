package httpbreaker

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// upstream is a test server that answers with the status in code, counting
// the requests that reached it.
type upstream struct {
	*httptest.Server
	code atomic.Int32
	hits atomic.Int64
}

func newUpstream(t *testing.T, code int) *upstream {
	t.Helper()
	u := &upstream{}
	u.code.Store(int32(code))
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(int(u.code.Load()))
	}))
	t.Cleanup(u.Close)
	return u
}

// send makes one call with c and returns the status (0 on error) and error.
func send(c *http.Client, method, url string, body io.Reader) (int, error) {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func TestTransportTripsAndRejectsWithoutTouchingTheNetwork(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 3, OpenFor: time.Minute}))
	up := newUpstream(t, 502)
	c := &http.Client{Transport: b.Transport("git", nil)}
	for range 3 {
		if code, err := send(c, "GET", up.URL, nil); code != 502 || err != nil {
			t.Fatalf("closed: %d %v, want the upstream's 502", code, err)
		}
	}
	for range 5 {
		code, err := send(c, "GET", up.URL, nil)
		var rj *RejectedError
		if code != 0 || !errors.Is(err, ErrOpen) || !errors.As(err, &rj) {
			t.Fatalf("open: %d %v, want a *RejectedError matching ErrOpen through *url.Error", code, err)
		}
		var ue *url.Error
		if !errors.As(err, &ue) {
			t.Fatalf("http.Client did not wrap the rejection in *url.Error: %T", err)
		}
		if rj.Key != "git" || rj.State != StateOpen || rj.RetryAfter <= 50*time.Second {
			t.Fatalf("rejection %+v, want git open for about a minute", rj.Rejection)
		}
		if msg := err.Error(); !strings.Contains(msg, `circuit breaker "git" is open; retry in`) {
			t.Fatalf("message %q does not name the key and when to retry", msg)
		}
	}
	if n := up.hits.Load(); n != 3 {
		t.Fatalf("the upstream got %d requests, want the 3 before the trip", n)
	}
	if s := status(t, b, "git"); s.Side != "client" || s.Totals.Rejected != 5 || s.Totals.Failures != 3 {
		t.Fatalf("status %+v, want a client key with 3 failures and 5 rejections", s)
	}
}

// closeCounter is a request body that counts its Close calls.
type closeCounter struct {
	io.Reader
	closed atomic.Int32
}

func (c *closeCounter) Close() error { c.closed.Add(1); return nil }

func TestRejectedRoundTripClosesTheRequestBody(t *testing.T) {
	b, _ := newSet(t)
	rt := b.Transport("git", newUpstream(t, 200).Client().Transport)
	_ = b.ForceOpen("git", 0)
	body := &closeCounter{Reader: strings.NewReader("payload")}
	req, _ := http.NewRequest("POST", "http://git.invalid/push", body)
	if _, err := rt.RoundTrip(req); !errors.Is(err, ErrOpen) {
		t.Fatalf("forced open: %v, want ErrOpen", err)
	}
	if n := body.closed.Load(); n != 1 {
		t.Fatalf("body closed %d times, want once (the RoundTripper contract)", n)
	}
}

func TestUpstream4xxNeverTrips(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 2}))
	up := newUpstream(t, 404)
	c := &http.Client{Transport: b.Transport("git", nil)}
	for _, code := range []int{404, 400, 401, 403, 409, 422} {
		up.code.Store(int32(code))
		for range 3 {
			if got, err := send(c, "GET", up.URL, nil); got != code || err != nil {
				t.Fatalf("%d: got %d %v", code, got, err)
			}
		}
	}
	if s := status(t, b, "git"); s.State != StateClosed || s.Totals.Successes != 18 {
		t.Fatalf("after 18 4xx answers: %v with totals %+v, want closed with 18 successes", s.State, s.Totals)
	}
}

func TestFailuresOfTheUpstreamTrip(t *testing.T) {
	refused := func() string { // an address nobody listens on
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return "http://" + addr
	}()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	t.Cleanup(slow.Close)
	for _, tc := range []struct {
		name string
		url  string
		code int
		ctx  func() (context.Context, context.CancelFunc)
	}{
		{"connection refused", refused, 0, nil},
		{"5xx", "", 503, nil},
		{"429", "", 429, nil},
		{"deadline exceeded", slow.URL, 0, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 20*time.Millisecond)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 2, OpenFor: time.Minute}))
			target := tc.url
			if target == "" {
				target = newUpstream(t, tc.code).URL
			}
			c := &http.Client{Transport: b.Transport("up", nil)}
			for range 2 {
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				if tc.ctx != nil {
					ctx, cancel = tc.ctx()
				}
				req, _ := http.NewRequestWithContext(ctx, "GET", target, nil)
				if resp, err := c.Do(req); err == nil {
					resp.Body.Close()
				}
				cancel()
			}
			if st := b.State("up"); st != StateOpen {
				t.Fatalf("after two calls: %v, want open", st)
			}
		})
	}
}

func TestCallerCancelIsExcluded(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1}))
	entered := make(chan struct{}, 10)
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-r.Context().Done()
	}))
	t.Cleanup(hang.Close)
	c := &http.Client{Transport: b.Transport("up", nil)}
	for range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-entered; cancel() }()
		req, _ := http.NewRequestWithContext(ctx, "GET", hang.URL, nil)
		if _, err := c.Do(req); !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want context.Canceled", err)
		}
	}
	if s := status(t, b, "up"); s.State != StateClosed || s.Totals.Excluded != 3 || s.Totals.Failures != 0 {
		t.Fatalf("after 3 calls the caller canceled: %v %+v, want closed with 3 excluded", s.State, s.Totals)
	}
}

func TestHostIsolatesUpstreams(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 2}))
	broken, working := newUpstream(t, 500), newUpstream(t, 200)
	c := &http.Client{Transport: b.KeyedTransport(Host, nil)}
	for range 5 {
		send(c, "GET", broken.URL+"/x", nil)
		if code, err := send(c, "GET", working.URL+"/y", nil); code != 200 || err != nil {
			t.Fatalf("the working upstream: %d %v", code, err)
		}
	}
	brokenHost := strings.TrimPrefix(broken.URL, "http://")
	if st := b.State(brokenHost); st != StateOpen {
		t.Fatalf("%s: %v, want open", brokenHost, st)
	}
	if st := b.State(strings.TrimPrefix(working.URL, "http://")); st != StateClosed {
		t.Fatalf("the working upstream's key: %v, want closed", st)
	}
	if broken.hits.Load() != 2 {
		t.Fatalf("the broken upstream got %d requests, want 2", broken.hits.Load())
	}
}

func TestKeyedTransportWithoutAKeyOrPastTheLimitGoesUntracked(t *testing.T) {
	b, sink := newSet(t, WithMaxKeys(1), WithPolicy(Policy{ConsecutiveFailures: 1}))
	up := newUpstream(t, 500)
	key := ""
	c := &http.Client{Transport: b.KeyedTransport(func(*http.Request) string { return key }, nil)}
	for _, k := range []string{"", "", "first", "second", "second"} {
		key = k
		send(c, "GET", up.URL, nil)
	}
	if n := b.untracked.Load(); n != 4 { // two without a key, two past the limit
		t.Fatalf("untracked %d, want 4", n)
	}
	if logs := sink.matching("KeyFunc returned no key"); len(logs) != 1 {
		t.Fatalf("%d warnings about a missing key, want 1", len(logs))
	}
	if up.hits.Load() != 5 {
		t.Fatalf("the upstream got %d calls, want all 5", up.hits.Load())
	}
}

func TestStreamingResponseArrivesAsItIsWritten(t *testing.T) {
	b, _ := newSet(t)
	next := make(chan struct{})
	stream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			_, _ = io.WriteString(w, "data: "+string(rune('a'+i))+"\n\n")
			w.(http.Flusher).Flush()
			<-next
		}
	}))
	t.Cleanup(stream.Close)
	defer close(next)
	c := &http.Client{Transport: b.Transport("events", nil)}
	resp, err := c.Get(stream.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// RoundTrip returned at the headers: the outcome is recorded already,
	// while the body is still streaming.
	if s := status(t, b, "events"); s.Totals.Successes != 1 {
		t.Fatalf("totals %+v when the headers arrived, want the call recorded", s.Totals)
	}
	r := bufio.NewReader(resp.Body)
	for i := range 3 {
		line, err := r.ReadString('\n')
		if err != nil || line != "data: "+string(rune('a'+i))+"\n" {
			t.Fatalf("event %d: %q %v", i, line, err)
		}
		_, _ = r.ReadString('\n')
		next <- struct{}{} // the next event is written only now
	}
}

func TestUpgradeThroughTheTransportKeepsAReadWriteCloser(t *testing.T) {
	b, _ := newSet(t)
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		_ = rw.Flush()
		line, _ := rw.ReadString('\n')
		_, _ = rw.WriteString(line)
		_ = rw.Flush()
	}))
	t.Cleanup(echo.Close)
	req, _ := http.NewRequest("GET", echo.URL, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := (&http.Client{Transport: b.Transport("echo", nil)}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if resp.StatusCode != http.StatusSwitchingProtocols || !ok {
		t.Fatalf("%d, body %T: want 101 with an io.ReadWriteCloser", resp.StatusCode, resp.Body)
	}
	defer rwc.Close()
	if _, err := io.WriteString(rwc, "ping\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(rwc).ReadString('\n'); line != "ping\n" || err != nil {
		t.Fatalf("echo %q %v", line, err)
	}
	if s := status(t, b, "echo"); s.Totals.Successes != 1 {
		t.Fatalf("totals %+v, want the upgrade counted as a success", s.Totals)
	}
}

func TestHTTP2ThroughTheTransport(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 2}))
	var code atomic.Int32
	code.Store(200)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			w.WriteHeader(http.StatusHTTPVersionNotSupported)
			return
		}
		w.WriteHeader(int(code.Load()))
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	c := &http.Client{Transport: b.Transport("h2", srv.Client().Transport)}
	if got, err := send(c, "GET", srv.URL, nil); got != 200 || err != nil {
		t.Fatalf("HTTP/2 call: %d %v", got, err)
	}
	code.Store(500)
	send(c, "GET", srv.URL, nil)
	send(c, "GET", srv.URL, nil)
	if _, err := send(c, "GET", srv.URL, nil); !errors.Is(err, ErrOpen) {
		t.Fatalf("after two HTTP/2 failures: %v, want ErrOpen", err)
	}
}

func TestUpstreamRetryAfterKeepsAClientKeyOpen(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: 10 * time.Second, MaxOpenFor: time.Hour}))
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "120")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(up.Close)
	c := &http.Client{Transport: b.Transport("ai", nil)}
	send(c, "POST", up.URL, strings.NewReader("{}"))
	_, err := send(c, "POST", up.URL, strings.NewReader("{}"))
	var rj *RejectedError
	if !errors.As(err, &rj) || rj.RetryAfter < 110*time.Second {
		t.Fatalf("%v, want a rejection for the upstream's 120s, not the 10s cooldown", err)
	}
}

func TestClientHalfOpenAdmitsExactlyItsProbesUnder100ConcurrentCalls(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: 50 * time.Millisecond, HalfOpenRequests: 3}))
	release := make(chan struct{})
	var hits atomic.Int64
	var failing atomic.Bool
	failing.Store(true)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if failing.Load() {
			w.WriteHeader(500)
			return
		}
		<-release
	}))
	t.Cleanup(up.Close)
	c := &http.Client{Transport: b.Transport("up", &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: 100})}
	send(c, "GET", up.URL, nil)
	failing.Store(false)
	hits.Store(0)
	for deadline := time.Now().Add(30 * time.Second); b.State("up") != StateHalfOpen; {
		if time.Now().After(deadline) {
			t.Fatal("the key never became half-open")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var wg sync.WaitGroup
	var rejected atomic.Int64
	for range 100 {
		wg.Go(func() {
			if _, err := send(c, "GET", up.URL, nil); errors.Is(err, ErrOpen) {
				rejected.Add(1)
			}
		})
	}
	deadline := time.Now().Add(30 * time.Second)
	for rejected.Load()+hits.Load() < 100 && time.Now().Before(deadline) { // the probes hang; the rest are rejected
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	if hits.Load() != 3 || rejected.Load() != 97 {
		t.Fatalf("%d calls reached the upstream and %d were rejected, want exactly the 3 probes and 97", hits.Load(), rejected.Load())
	}
	if st := b.State("up"); st != StateClosed {
		t.Fatalf("after 3 successful probes: %v, want closed", st)
	}
}

func TestClientKeyHasTheSameMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	b, _ := newSet(t, WithRegisterer(reg), WithPolicy(Policy{ConsecutiveFailures: 1}))
	up := newUpstream(t, 500)
	c := &http.Client{Transport: b.Transport("git", nil)}
	send(c, "GET", up.URL, nil)
	send(c, "GET", up.URL, nil)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP httpbreaker_requests_total Requests through circuit breakers by key and result: success, failure, excluded (not counted by the breaker), slow (with slow_call_rate), rejected, would_reject (observe mode let it through), upstream_failure (a failure blamed on an upstream the request called, not counted by the breaker), untracked (no breaker, empty key).
# TYPE httpbreaker_requests_total counter
httpbreaker_requests_total{key="",result="untracked"} 0
httpbreaker_requests_total{key="git",result="excluded"} 0
httpbreaker_requests_total{key="git",result="failure"} 1
httpbreaker_requests_total{key="git",result="rejected"} 1
httpbreaker_requests_total{key="git",result="success"} 0
httpbreaker_requests_total{key="git",result="would_reject"} 0
`), "httpbreaker_requests_total"); err != nil {
		t.Fatal(err)
	}
}

func TestOneKeyOnBothSidesIsOneBreaker(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 2}))
	up := newUpstream(t, 500)
	c := &http.Client{Transport: b.Transport("billing", nil)}
	send(c, "GET", up.URL, nil)
	send(c, "GET", up.URL, nil)
	h := b.Middleware("billing")(newStatusHandler(200))
	if rec := record(h, "/"); rec.Code != 503 {
		t.Fatalf("the server side of a key the client side tripped answered %d, want 503", rec.Code)
	}
	if s := status(t, b, "billing"); s.Side != "both" {
		t.Fatalf("side %q, want both", s.Side)
	}
}

func TestTransportPanicsOnAWiringMistake(t *testing.T) {
	b, _ := newSet(t)
	for name, wire := range map[string]func(){
		"empty key":        func() { b.Transport("", nil) },
		"nil KeyFunc":      func() { b.KeyedTransport(nil, nil) },
		"key not UTF-8":    func() { b.Transport("\xff", nil) },
		"key far too long": func() { b.Transport(strings.Repeat("k", maxKeyBytes+1), nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			wire()
		}()
	}
}

// hangingUpstream returns a test server, over HTTP/1.1 or HTTP/2, whose
// handler signals entered and then waits for its request to be canceled,
// and a client transport for it.
func hangingUpstream(t *testing.T, h2 bool, entered chan<- struct{}) (string, http.RoundTripper) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h2 != (r.ProtoMajor == 2) {
			w.WriteHeader(http.StatusHTTPVersionNotSupported)
			return
		}
		entered <- struct{}{}
		<-r.Context().Done()
	}))
	if h2 {
		srv.EnableHTTP2 = true
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	base := srv.Client().Transport.(*http.Transport).Clone()
	base.MaxIdleConnsPerHost = 100
	return srv.URL, base
}

// group is errgroup.WithContext written out: the first error of a member
// cancels the group's context with that error as its cause.
type group struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
	once   sync.Once
}

func newGroup(parent context.Context) *group {
	g := &group{}
	g.ctx, g.cancel = context.WithCancelCause(parent)
	return g
}

func (g *group) Go(f func() error) {
	g.wg.Go(func() {
		if err := f(); err != nil {
			g.once.Do(func() { g.cancel(err) })
		}
	})
}

func (g *group) Wait() { g.wg.Wait(); g.cancel(nil) }

func TestAFanOutThatCancelsItsSiblingsLeavesTheUpstreamClosed(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "HTTP/1.1", true: "HTTP/2"}[h2], func(t *testing.T) {
			entered := make(chan struct{}, 10)
			url, base := hangingUpstream(t, h2, entered)
			b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1}))
			c := &http.Client{Transport: b.Transport("inventory", base)}
			g := newGroup(context.Background())
			errs := make(chan error, 10)
			for range 10 {
				g.Go(func() error {
					req, _ := http.NewRequestWithContext(g.ctx, http.MethodGet, url, nil)
					resp, err := c.Do(req)
					if err == nil {
						resp.Body.Close()
					}
					errs <- err
					return err
				})
			}
			g.Go(func() error { // a sibling fails once the ten calls are in flight
				for range 10 {
					<-entered
				}
				return errors.New("pricing: no price for sku 42")
			})
			g.Wait()
			close(errs)
			for err := range errs {
				if err == nil || errors.Is(err, ErrOpen) {
					t.Fatalf("a sibling's call ended with %v, want the group's cancellation", err)
				}
			}
			if s := status(t, b, "inventory"); s.State != StateClosed || s.Totals.Failures != 0 || s.Totals.Excluded != 10 {
				t.Fatalf("after the group canceled 10 calls: %v %+v, want closed with 10 excluded", s.State, s.Totals)
			}
		})
	}
}

func TestCallersThatCancelWithACauseAreExcluded(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "HTTP/1.1", true: "HTTP/2"}[h2], func(t *testing.T) {
			url, base := hangingUpstream(t, h2, make(chan struct{}, 50))
			b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1}))
			c := &http.Client{Transport: b.Transport("inventory", base)}
			var wg sync.WaitGroup
			for range 50 {
				wg.Go(func() {
					ctx, cancel := context.WithCancelCause(context.Background())
					// Canceled once the request is on its way: the call is in
					// flight, waiting for an answer that never comes.
					ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) {
						cancel(errors.New("the user closed the tab"))
					}})
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
					if resp, err := c.Do(req); err == nil {
						resp.Body.Close()
						t.Error("a canceled call got an answer")
					}
				})
			}
			wg.Wait()
			if s := status(t, b, "inventory"); s.State != StateClosed || s.Totals.Failures != 0 || s.Totals.Excluded != 50 {
				t.Fatalf("after 50 callers canceled with a cause: %v %+v, want closed with 50 excluded", s.State, s.Totals)
			}
		})
	}
}

// roundTripFunc is a RoundTripper made of a func.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestABaseThatAnswersNothingFailsWithAnErrorNamingTheKey(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 4, OpenFor: time.Minute}))
	nothing := roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, nil })
	for name, rt := range map[string]http.RoundTripper{
		"Transport":      b.Transport("payments", nothing),
		"KeyedTransport": b.KeyedTransport(func(*http.Request) string { return "payments" }, nothing),
	} {
		for range 2 {
			req, _ := http.NewRequest(http.MethodGet, "http://payments.invalid/charge", nil)
			resp, err := rt.RoundTrip(req)
			if resp != nil || err == nil || !strings.Contains(err.Error(), `key "payments"`) ||
				!strings.Contains(err.Error(), "returned no response and no error") {
				t.Fatalf("%s: %v %v, want an error naming the key", name, resp, err)
			}
		}
	}
	if s := status(t, b, "payments"); s.State != StateOpen || s.Totals.Failures != 4 || s.Totals.Successes != 0 {
		t.Fatalf("after 4 calls answered with nothing: %v %+v, want open after 4 failures", s.State, s.Totals)
	}
}

func TestTransportPanicsAtWiringOnANilValueInsideBase(t *testing.T) {
	b, _ := newSet(t)
	var nilTransport *http.Transport
	var nilFunc roundTripFunc
	for name, wire := range map[string]func(){
		"Transport, a nil *http.Transport":      func() { b.Transport("payments", nilTransport) },
		"Transport, a nil func":                 func() { b.Transport("payments", nilFunc) },
		"KeyedTransport, a nil *http.Transport": func() { b.KeyedTransport(Host, nilTransport) },
	} {
		func() {
			defer func() {
				msg, _ := recover().(string)
				want := `Transport("payments")`
				if strings.HasPrefix(name, "KeyedTransport") {
					want = "KeyedTransport"
				}
				if !strings.Contains(msg, want) || !strings.Contains(msg, "base is a nil") {
					t.Errorf("%s: panic %q, want one naming %s and the nil base", name, msg, want)
				}
			}()
			wire()
		}()
	}
	if _, err := b.Transport("payments", nil).RoundTrip(httptest.NewRequest(http.MethodGet, "http://127.0.0.1:1/", nil)); err == nil {
		t.Fatal("a nil base is http.DefaultTransport, which cannot reach port 1")
	}
}

// TestTransportWithASpentDeadlineIsNotTheUpstreamsFailure: a call whose
// context was done before it was sent is excluded, whatever the base
// transport answers (net/http's own returns the context's error without
// touching the network; another may answer anything), and the upstream
// stays closed for callers with a full budget.
func TestTransportWithASpentDeadlineIsNotTheUpstreamsFailure(t *testing.T) {
	up := newUpstream(t, http.StatusOK)
	for name, base := range map[string]http.RoundTripper{
		"net/http's transport": nil,
		"a base that answers 503 whatever the context": roundTripFunc(func(*http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: http.StatusServiceUnavailable, Header: http.Header{}, Body: http.NoBody}, nil
		}),
		"a base that answers ctx.Err()": roundTripFunc(func(r *http.Request) (*http.Response, error) { return nil, r.Context().Err() }),
	} {
		t.Run(name, func(t *testing.T) {
			b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 5, OpenFor: time.Minute}))
			c := &http.Client{Transport: b.Transport("up", base)}
			spent, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
			defer cancel()
			for range 10 {
				req, _ := http.NewRequestWithContext(spent, http.MethodGet, up.URL, nil)
				if resp, err := c.Do(req); err == nil {
					resp.Body.Close()
				}
			}
			if s := status(t, b, "up"); s.State != StateClosed || s.Totals.Excluded != 10 || s.Totals.Failures != 0 {
				t.Fatalf("after 10 calls with a spent deadline: %v %+v, want closed with all 10 excluded", s.State, s.Totals)
			}
			if base == nil {
				if code, err := send(c, http.MethodGet, up.URL, nil); code != http.StatusOK || err != nil {
					t.Fatalf("a caller with a full budget: %d %v, want 200", code, err)
				}
			}
		})
	}
}

// TestAPlainClientSuccessIsWhatDefaultClassifierSays holds the shortcut that
// judges a call that answered with no error and no failure status without
// building its Call to what DefaultClassifier says of every status, and of
// Do's nil error.
func TestAPlainClientSuccessIsWhatDefaultClassifierSays(t *testing.T) {
	cc := clientCall{br: benchSet(t).breakerFor("k", false)}
	returned := ending{returned: true}
	if !cc.plain(returned) {
		t.Fatal("a call that returned is not taken for a plain success by a breaker with the default classifier")
	}
	req := httptest.NewRequest(http.MethodGet, "http://k/", nil)
	for code := 100; code < 600; code++ {
		c := callOf("k", req, &http.Response{StatusCode: code, Header: http.Header{}}, nil)
		if got := cc.br.judging.judge(&c, 0); !failureStatus(code) && got != (verdict{outcome: Success}) {
			t.Errorf("status %d: a plain success, DefaultClassifier says %+v", code, got)
		}
	}
	c := doCall(context.Background(), "k", nil)
	if got := cc.br.judging.judge(&c, 0); got != (verdict{outcome: Success}) {
		t.Errorf("Do's nil error: a plain success, DefaultClassifier says %+v", got)
	}
	for name, cc := range map[string]clientCall{
		"a classifier":   {br: benchSet(t, WithClassifier(DefaultClassifier)).breakerFor("k", false)},
		"SlowCall":       {br: benchSet(t, WithPolicy(Policy{SlowCall: time.Second})).breakerFor("k", false)},
		"a spent budget": {br: cc.br, spent: true},
	} {
		if cc.plain(returned) {
			t.Errorf("with %s, a call is taken for a plain success without its Call", name)
		}
	}
	if cc.plain(ending{panicked: "bug"}) || cc.plain(ending{}) {
		t.Error("a panic or a Goexit is taken for a plain success")
	}
}
