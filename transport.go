package httpbreaker

import (
	"fmt"
	"net/http"
	"reflect"
	"time"
)

// Transport returns an http.RoundTripper that sends every request through
// key's breaker, then base (http.DefaultTransport if nil). A call is judged
// when RoundTrip returns, the body untouched: an error, a 5xx and a 429
// fail; one canceled, or whose deadline was spent before it was admitted,
// is excluded. While the breaker rejects, RoundTrip touches no network and
// returns a *RejectedError. An invalid key or a nil value inside base
// panics: a wiring mistake.
func (b *Breakers) Transport(key string, base http.RoundTripper) http.RoundTripper {
	base = baseOf("Transport("+quoteKey(key)+")", base)
	t := &keyTransport{ref: b.ref("Transport", key, sideClient), base: base}
	b.clients.Store(true)
	return t
}

// KeyedTransport is Transport with the breaker of each request picked by
// keyOf (such as Host), made on first use, up to WithMaxKeys.
func (b *Breakers) KeyedTransport(keyOf KeyFunc, base http.RoundTripper) http.RoundTripper {
	if keyOf == nil {
		panic("httpbreaker: KeyedTransport: nil KeyFunc")
	}
	t := &keyedTransport{set: b, keyOf: keyOf, base: baseOf("KeyedTransport", base)}
	b.clients.Store(true)
	return t
}

type keyTransport struct {
	ref  *keyRef
	base http.RoundTripper
}

func (t *keyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return roundTripThrough(t.ref.set, t.ref.get(), t.base, req)
}

type keyedTransport struct {
	set   *Breakers
	keyOf KeyFunc
	base  http.RoundTripper
}

func (t *keyedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	key := t.keyOf(req)
	br := t.set.keyed(key, sideClient, func() []any {
		return []any{"side", "client", "method", req.Method, "host", req.URL.Host}
	})
	if br == nil {
		return sendThrough(key, t.base, req)
	}
	return roundTripThrough(t.set, br, t.base, req)
}

// roundTripThrough sends one request through br, of set: the client side
// of through. An admitted call goes to base and is judged when base returns;
// one that is not is answered with a *RejectedError, which closes the
// request body as a RoundTripper must, or, when the breaker only observes,
// goes out untracked.
func roundTripThrough(set *Breakers, br *keyBreaker, base http.RoundTripper, req *http.Request) (resp *http.Response, err error) {
	cc := startCall(set, br, req.Context())
	br.through(&passage{
		pass: func() {
			cc.letThrough()
			resp, err = sendThrough(br.key, base, req)
			cc.passed(func() Call { return callOf(br.key, req, resp, err) })
		},
		reject: func(rj Rejection) {
			if req.Body != nil {
				_ = req.Body.Close()
			}
			err = &RejectedError{rj}
			cc.rejected()
		},
		run: func(*probeRun) {
			cc.letThrough()
			resp, err = sendThrough(br.key, base, req)
		},
		judge: func(e ending) verdict {
			if cc.plain(e) && err == nil && !failureStatus(resp.StatusCode) {
				return cc.judge(e, nil)
			}
			c := callOf(br.key, req, resp, err)
			return cc.judge(e, &c)
		},
	})
	return resp, err
}

// callOf describes base's answer to req as a Call. The caller's own
// cancellation is read from the request's context, whatever the error: over
// HTTP/1.1 net/http returns context.Cause, which is context.Canceled only
// when the caller gave no cause.
func callOf(key string, req *http.Request, resp *http.Response, err error) Call {
	c := Call{Key: key, Request: req, Err: err}
	if err != nil && callerGone(req) {
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

// sendThrough sends req through base, with key's error when base returns neither a
// response nor an error.
func sendThrough(key string, base http.RoundTripper, req *http.Request) (*http.Response, error) {
	resp, err := base.RoundTrip(req)
	if resp == nil && err == nil {
		err = noResponse(key, base)
	}
	return resp, err
}

// noResponse is the error of a call whose base returned neither a response
// nor an error, which net/http would report without naming the key.
func noResponse(key string, base http.RoundTripper) error {
	return fmt.Errorf("httpbreaker: key %s: the base RoundTripper (%T) returned no response and no error", quoteKey(key), base)
}

// baseOf returns base, or http.DefaultTransport if base is nil. It panics,
// naming what wires it, if base holds a nil value of a type that is not
// nil itself (var t *http.Transport), which would panic at the first request
// instead, deep inside net/http.
func baseOf(what string, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		return http.DefaultTransport
	}
	if holdsNil(base) {
		panic(fmt.Sprintf("httpbreaker: %s: base is a nil %T; pass nil for http.DefaultTransport", what, base))
	}
	return base
}

// holdsNil reports whether v, a non-nil interface, holds a nil pointer, map,
// func, channel, slice or interface.
func holdsNil(v any) bool {
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Func, reflect.Chan, reflect.Slice, reflect.Interface, reflect.UnsafePointer:
		return rv.IsNil()
	}
	return false
}
