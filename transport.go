package httpbreaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
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
	if err := checkKey(key); err != nil {
		panic("httpbreaker: Transport(" + quoteKey(key) + "): " + err.Error())
	}
	br := b.breakerFor(key, false)
	br.side(sideClient)
	t := &keyTransport{set: b, key: key, base: orDefault(base)}
	t.br.Store(br)
	return t
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

// Host is a KeyFunc for KeyedTransport: the request URL's host as written,
// with its port if it has one ("api.example.com", "127.0.0.1:8443").
func Host(r *http.Request) string { return r.URL.Host }

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
	set  *Breakers
	key  string
	br   atomic.Pointer[breaker] // the key's breaker, never nil
	base http.RoundTripper
}

func (t *keyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	br := t.br.Load()
	if br.dropped.Load() { // idle for its IdleTTL: the key's breaker now is another
		br = t.set.breakerFor(t.key, false)
		br.side(sideClient)
		t.br.Store(br)
	}
	return roundTripThrough(br, t.base, req)
}

type keyedTransport struct {
	set  *Breakers
	key  KeyFunc
	base http.RoundTripper
}

func (t *keyedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	key := t.key(req)
	if key == "" {
		t.set.emptyClientKeyOnce.Do(func() {
			t.set.notifications.log(slog.LevelWarn, "circuit breaker KeyFunc of a transport returned no key: such calls go out without a breaker",
				"method", req.Method, "host", req.URL.Host)
		})
	} else if br := t.set.breakerFor(key, true); br != nil {
		br.side(sideClient)
		return roundTripThrough(br, t.base, req)
	}
	t.set.untracked.Add(1)
	return t.base.RoundTrip(req)
}

// roundTripThrough sends one request through br: the client side over the
// breaker's admission path. An admitted call goes to base and is
// classified when base returns; one that is not is answered with a
// *RejectedError, or, when the breaker only observes, goes out untracked.
func roundTripThrough(br *breaker, base http.RoundTripper, req *http.Request) (*http.Response, error) {
	var resp *http.Response
	var err error
	switch a := br.call(func(*probe) verdict {
		var start time.Time
		if br.slowCall > 0 || br.set.classifier != nil {
			start = time.Now()
		}
		resp, err = base.RoundTrip(req)
		return classifyResponse(br, req, resp, err, start)
	}); a.verdict {
	case ran:
		return resp, err
	case passed:
		return base.RoundTrip(req)
	default:
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, &RejectedError{a.rejection(br.key)}
	}
}

// classifyResponse returns what base's answer to req means to the breaker;
// start is when the call went out, zero when its duration is not needed.
func classifyResponse(br *breaker, req *http.Request, resp *http.Response, err error, start time.Time) verdict {
	c := Call{Key: br.key, Request: req, Err: err}
	if !start.IsZero() {
		c.Duration = time.Since(start)
		c.Slow = br.slowCall > 0 && c.Duration > br.slowCall
	}
	if err != nil && errors.Is(err, context.Canceled) && req.Context().Err() == context.Canceled {
		c.ClientGone = true
	}
	var rateLimited bool
	if resp != nil {
		c.Status = resp.StatusCode
		if c.Status == http.StatusServiceUnavailable || c.Status == http.StatusTooManyRequests {
			c.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
			rateLimited = c.Status == http.StatusTooManyRequests
		}
	}
	var o Outcome
	if br.set.classifier != nil {
		o = validOutcome(br.set.classifier(c))
	} else {
		o = DefaultClassifier(c)
	}
	return verdict{outcome: o, retryAfter: c.RetryAfter, rateLimited: rateLimited}
}

func orDefault(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		return http.DefaultTransport
	}
	return base
}
