package httpbreaker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Transport returns an http.RoundTripper that sends every request through
// key's breaker, then base (http.DefaultTransport if nil): the client side,
// for a plugin's calls to an upstream. Put it in an http.Client:
//
//	github := &http.Client{Transport: breakers.Transport("github", nil), Timeout: 10 * time.Second}
//
// The outcome of a call is recorded when RoundTrip returns, that is when
// the response headers have arrived; the response body is the caller's,
// not read, buffered or wrapped. While the breaker rejects, RoundTrip
// touches no network: it closes the request body and returns a
// *RejectedError, which errors.Is(err, ErrOpen) matches, also through the
// *url.Error that http.Client wraps it in.
//
// What counts as a failure is DefaultClassifier's rule (or WithClassifier's):
// a transport error (connection refused, a deadline exceeded) and a 5xx or
// 429 answer fail; the caller's own context canceled is excluded; every
// other answer, 4xx included, is a success of the upstream.
//
// Server and client keys share one Breakers: its policies, WithMaxKeys,
// metrics, status page and control. A key named here is bounded by the code
// and always gets a breaker, as Middleware's keys do; Transport panics if
// key is not a valid key (a wiring mistake).
func (b *Breakers) Transport(key string, base http.RoundTripper) http.RoundTripper {
	return &keyTransport{ref: b.ref("Transport", key, sideClient), base: orDefault(base)}
}

// KeyedTransport returns an http.RoundTripper that picks the breaker for
// each request with key, such as Host, then sends it through base
// (http.DefaultTransport if nil). A KeyFunc that returns "" leaves the
// request untracked, as on the server side; keys are created on first use,
// up to WithMaxKeys, past which requests go untracked (logged once).
func (b *Breakers) KeyedTransport(key KeyFunc, base http.RoundTripper) http.RoundTripper {
	if key == nil {
		panic("httpbreaker: KeyedTransport: nil KeyFunc")
	}
	return &keyedTransport{set: b, key: key, base: orDefault(base)}
}

// ErrOpen matches every rejection of a Transport or KeyedTransport:
// errors.Is(err, httpbreaker.ErrOpen). The error itself is a *RejectedError,
// which says which key rejected the call and when to retry.
var ErrOpen = errors.New("httpbreaker: circuit breaker open")

// RejectedError is the error a rejected RoundTrip returns: the call never
// left the process. errors.As finds it through the *url.Error of
// http.Client. A retrying client should not spin on it: RetryAfter says
// how long the breaker keeps rejecting (0 when it is half-open with every
// probe taken, or recovering: soon), and a retry before then is rejected
// again, at no cost to the upstream but to no use either.
type RejectedError struct{ Rejection }

// Error names the key, its state and when to retry.
func (e *RejectedError) Error() string {
	if e.RetryAfter > 0 {
		return fmt.Sprintf("httpbreaker: circuit breaker %s is %s; retry in %v", quoteKey(e.Key), e.State, roundDuration(e.RetryAfter))
	}
	return fmt.Sprintf("httpbreaker: circuit breaker %s is %s; retry shortly", quoteKey(e.Key), e.State)
}

// Is reports whether target is ErrOpen.
func (e *RejectedError) Is(target error) bool { return target == ErrOpen }

type keyTransport struct {
	ref  *keyRef
	base http.RoundTripper
}

func (t *keyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return roundTripThrough(t.ref.get(), t.base, req)
}

type keyedTransport struct {
	set  *Breakers
	key  KeyFunc
	base http.RoundTripper
}

func (t *keyedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	br := t.set.keyed(t.key(req), sideClient, func() []any {
		return []any{"side", "client", "method", req.Method, "host", req.URL.Host}
	})
	if br == nil {
		return t.base.RoundTrip(req)
	}
	return roundTripThrough(br, t.base, req)
}

// roundTripThrough sends one request through br: the client side over the
// breaker's admission path. An admitted call goes to base and is judged
// when base returns (or panics, a failure); one that is not is answered
// with a *RejectedError, or, when the breaker only observes, goes out
// untracked.
func roundTripThrough(br *breaker, base http.RoundTripper, req *http.Request) (resp *http.Response, err error) {
	t, a := br.admit()
	switch a.decision {
	case passCall:
		return base.RoundTrip(req)
	case rejectCall:
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, &RejectedError{a.rejection(br.key)}
	}
	var start int64
	if br.judging.timed() {
		start = br.clock.now()
	}
	returned := false
	defer func() {
		if !returned { // base panicked, or ended the goroutine: a failure, which goes on
			br.done(t, verdict{outcome: Failure}, br.clock.now())
		}
	}()
	resp, err = base.RoundTrip(req)
	returned = true
	now := br.clock.now()
	br.done(t, br.judging.judge(callOf(br.key, req, resp, err), time.Duration(now-start)), now)
	return resp, err
}

// callOf describes base's answer to req as a Call.
func callOf(key string, req *http.Request, resp *http.Response, err error) Call {
	c := Call{Key: key, Request: req, Err: err}
	if err != nil && errors.Is(err, context.Canceled) && callerGone(req) {
		c.ClientGone = true
	}
	if resp != nil {
		c.StatusCode = resp.StatusCode
		if c.StatusCode == http.StatusServiceUnavailable || c.StatusCode == http.StatusTooManyRequests {
			c.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
	}
	return c
}

func orDefault(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		return http.DefaultTransport
	}
	return base
}
