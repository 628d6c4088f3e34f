package httpbreaker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// reject answers a request that the breaker rejected: with the 503 problem
// response, or with the user's reject handler.
//
// It tells breakers further out that this answer is a rejection, not a
// failure, two ways: through the writers, each of which it reaches by
// Unwrap (markRejected), and, for a writer in between that has no Unwrap,
// through the request, whose header map the copies that middlewares make
// (WithContext) share.
func reject(set *Breakers, bodies problemSource, w http.ResponseWriter, r *http.Request, rj Rejection) {
	markRejected(w)
	if r.Header != nil {
		r.Header[rejectedMark] = nil
	}
	if h := set.rejectHandler; h != nil {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), rejectionKey{}, rj)))
		return
	}
	bodies.bodiesFor(rj.Key).write(w, rj)
}

// ErrOpen matches every rejection of a Transport, KeyedTransport or Do:
// errors.Is(err, httpbreaker.ErrOpen). The error itself is a *RejectedError,
// which says which key rejected the call and when to retry.
var ErrOpen = errors.New("httpbreaker: circuit breaker open")

// RejectedError is the error a rejected RoundTrip or Do returns (errors.As
// finds it through http.Client's *url.Error): the call never left the
// process. A retry before RetryAfter is rejected again.
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

// Rejection describes a call that a breaker did not admit: its key, the
// state that turned it away (StateHalfOpen when every probe is taken,
// StateRecovering when the ramp did), and how long until it admits calls
// again (0 when half-open or recovering: soon).
type Rejection struct {
	Key        string
	State      State
	RetryAfter time.Duration
}

// RetryAfterSeconds returns the Retry-After value for rj: whole seconds
// until probes are admitted, rounded up, at least 1 and at most
// MaxRetryAfter's 3600.
func (rj Rejection) RetryAfterSeconds() int {
	// Clamped as a float: a week in seconds overflows a 32-bit int.
	return int(min(max(1, math.Ceil(rj.RetryAfter.Seconds())), MaxRetryAfter.Seconds()))
}

// MaxRetryAfter is the longest Retry-After a reject response tells a
// client, however long the breaker stays open: a client told to come back in
// a day would miss an early Probe or Release.
const MaxRetryAfter = time.Hour

// rejection describes the rejection a rejected admission stands for.
func (a admitDecision) rejection(key string) Rejection {
	return Rejection{Key: key, State: a.state, RetryAfter: a.retry}
}

type rejectionKey struct{}

// RejectionFrom returns the rejection that a WithRejectHandler handler is
// answering, and false for any other request.
func RejectionFrom(r *http.Request) (Rejection, bool) {
	rj, ok := r.Context().Value(rejectionKey{}).(Rejection)
	return rj, ok
}

// problemBodies holds a key's reject response bodies, built once with the
// key JSON-escaped, and the Retry-After text last sent, reused while the
// value stays the same.
type problemBodies struct {
	body  [numStates][]byte // by the rejecting state
	retry atomic.Pointer[retryText]
}

// retryText is a Retry-After value and its text.
type retryText struct {
	secs int
	text string
}

// rejecting says what the detail of a reject response says, by state.
var rejecting = map[State]string{
	StateOpen:       "is open",
	StateHalfOpen:   "is half-open and all its probes are taken",
	StateRecovering: "is recovering and admits a rising share of requests",
	StateForcedOpen: "was forced open",
}

// newProblemBodies builds key's reject response bodies.
func newProblemBodies(key string) *problemBodies {
	quoted, _ := json.Marshal(key) // a string always marshals
	pb := &problemBodies{}
	for st, what := range rejecting {
		detail, _ := json.Marshal(`circuit breaker "` + key + `" ` + what + `; retry after the delay in Retry-After`)
		pb.body[st] = []byte(`{"title":"Service Unavailable","status":503,"detail":` + string(detail) +
			`,"key":` + string(quoted) + `,"state":"` + st.String() + `"}`)
	}
	return pb
}

// problemSource gives the reject bodies of a key: a *problemBodies, for the
// one key of a Middleware, or a *problemCache, for the keys of a
// KeyedMiddleware.
type problemSource interface {
	bodiesFor(key string) *problemBodies
}

// bodiesFor returns pb: a Middleware's bodies are its key's.
func (pb *problemBodies) bodiesFor(string) *problemBodies { return pb }

// problemCache keeps the reject bodies of the keys a KeyedMiddleware has
// rejected requests for, built on a key's first rejection. It holds at most
// max keys, as the set does: past them (keys that churn) it starts again.
type problemCache struct {
	max int
	n   atomic.Int64
	m   sync.Map // key -> *problemBodies
}

func (c *problemCache) bodiesFor(key string) *problemBodies {
	if v, ok := c.m.Load(key); ok {
		return v.(*problemBodies)
	}
	if c.n.Add(1) > int64(c.max) {
		c.m.Clear()
		c.n.Store(1)
	}
	v, _ := c.m.LoadOrStore(key, newProblemBodies(key))
	return v.(*problemBodies)
}

// retryAfter returns the Retry-After text for secs.
func (pb *problemBodies) retryAfter(secs int) string {
	if t := pb.retry.Load(); t != nil && t.secs == secs {
		return t.text
	}
	t := &retryText{secs: secs, text: strconv.Itoa(secs)}
	pb.retry.Store(t)
	return t.text
}

// write sends the reject response: 503, Retry-After, and an RFC 9457
// problem document with the key and state as extension members.
//
// The header values are this response's own, from one allocation: a
// middleware further out may edit a value in place, and that must change
// no other response. (Strings are immutable, so the texts are shared.)
func (pb *problemBodies) write(w http.ResponseWriter, rj Rejection) {
	v := &[3]string{"application/problem+json", "no-store", pb.retryAfter(rj.RetryAfterSeconds())}
	h := w.Header()
	h["Content-Type"] = v[0:1:1]
	h["Cache-Control"] = v[1:2:2]
	h["Retry-After"] = v[2:3:3]
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write(pb.body[rj.State])
}
