package httpbreaker

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Middleware returns middleware that puts the handler it wraps behind key's
// breaker. Wrap each route group once, with its own key:
//
//	r.Route("/api/catalog", func(r chi.Router) {
//		r.Use(breakers.Middleware("catalog"))
//		...
//	})
//
// The breaker is created here, so it shows in metrics and Snapshot before
// the first request. Middleware panics if key is empty: that is a wiring
// mistake, found when the server is assembled, never at request time.
func (b *Breakers) Middleware(key string) func(http.Handler) http.Handler {
	if key == "" {
		panic("httpbreaker: Middleware: the key must not be empty")
	}
	br := b.breakerFor(key, false)
	return func(next http.Handler) http.Handler {
		if next == nil {
			panic("httpbreaker: Middleware(" + strconv.Quote(key) + "): nil handler")
		}
		h := &keyHandler{set: b, key: key, next: next}
		h.br.Store(br)
		return h
	}
}

type keyHandler struct {
	set  *Breakers
	key  string
	br   atomic.Pointer[breaker] // nil past WithMaxKeys
	next http.Handler
}

func (h *keyHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	br := h.br.Load()
	if br != nil && br.dropped.Load() { // idle for its IdleTTL: the key gets a new breaker
		br = h.set.breakerFor(h.key, false)
		h.br.Store(br)
	}
	if br == nil {
		h.set.passUntracked(w, r, h.next)
		return
	}
	br.serve(w, r, h.next)
}

// A KeyFunc picks the breaker key of a request. It must return a value from
// a small set (a route pattern, a plugin id, an upstream name), never raw
// input such as the path: every key gets a breaker and metric series, up to
// WithMaxKeys. A KeyFunc returns "" to leave a request untracked.
type KeyFunc func(*http.Request) string

// RoutePattern is a KeyFunc that keys each request by the route pattern that
// matched it, r.Pattern, as http.ServeMux (Go 1.23+) and chi (v5.3+) set it:
// "GET /api/items/{id}", "/api/items/{id}". Routers set it when they pick the
// route, so the middleware must run inside the route: wrap the handler given
// to ServeMux.Handle, or use chi's With or Route. Wrapped around a whole
// router, it sees no pattern, and every request passes untracked (logged
// once).
func RoutePattern(r *http.Request) string { return r.Pattern }

// KeyedMiddleware returns middleware that picks the breaker for each request
// with key. Breakers are created on first use, up to WithMaxKeys. Finding a
// key's breaker takes no lock shared by all requests.
func (b *Breakers) KeyedMiddleware(key KeyFunc) func(http.Handler) http.Handler {
	if key == nil {
		panic("httpbreaker: KeyedMiddleware: nil KeyFunc")
	}
	return func(next http.Handler) http.Handler {
		if next == nil {
			panic("httpbreaker: KeyedMiddleware: nil handler")
		}
		return &keyedHandler{set: b, key: key, next: next}
	}
}

type keyedHandler struct {
	set  *Breakers
	key  KeyFunc
	next http.Handler
}

func (h *keyedHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := h.key(r)
	if key == "" {
		h.set.emptyKeyOnce.Do(func() {
			h.set.logger.Warn("circuit breaker KeyFunc returned no key: such requests pass through without a breaker "+
				"(is the middleware outside the router that sets the route pattern?)",
				"method", r.Method, "path", r.URL.Path)
		})
		h.set.passUntracked(w, r, h.next)
		return
	}
	if br := h.set.breakerFor(key, true); br != nil {
		br.serve(w, r, h.next)
		return
	}
	h.set.passUntracked(w, r, h.next)
}

func (b *Breakers) passUntracked(w http.ResponseWriter, r *http.Request, next http.Handler) {
	b.untracked.Add(1)
	next.ServeHTTP(w, r)
}

// Outcome is what a finished request means to its breaker.
type Outcome uint8

// The outcomes a Classifier returns.
const (
	// Success counts towards closing, and against the failure rate.
	Success Outcome = iota
	// Failure counts towards opening.
	Failure
	// Excluded counts nowhere: the request tells nothing about the handler.
	Excluded
)

// String returns "success", "failure" or "excluded".
func (o Outcome) String() string {
	if o <= Excluded {
		return resultNames[o]
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Call is what a Classifier knows about an admitted request once its
// handler has returned or panicked.
type Call struct {
	// Key is the breaker's key.
	Key string
	// Request is the request. Its context tells whether the client is still
	// there.
	Request *http.Request
	// Status is the final status the handler wrote: the first non-1xx code,
	// 200 if it wrote a body, flushed or called ReadFrom first, and 0 if it
	// wrote nothing (net/http then sends 200) or hijacked the connection
	// before writing one.
	Status int
	// ClientGone reports whether the client had gone away (the request's
	// context was canceled) when the handler wrote Status, or, if it wrote
	// none, when it returned.
	ClientGone bool
	// Hijacked reports whether the handler took the connection over.
	Hijacked bool
	// Panic is the value the handler panicked with, nil if it did not. The
	// panic goes on up the stack after the breaker has recorded it.
	Panic any
	// RetryAfter is the delay in the Retry-After header that came with a 429
	// or 503 status, as seconds or an HTTP date; 0 when there was none. A
	// failure that carries one keeps the breaker open at least that long
	// once it trips (up to MaxOpenFor), and the reject response passes the
	// longer delay on.
	RetryAfter time.Duration
	// Duration is how long the handler ran. It is measured only when the
	// policy sets SlowCall or WithClassifier is used; otherwise it is 0.
	Duration time.Duration
	// Slow reports whether Duration exceeded the policy's SlowCall.
	Slow bool
}

// A Classifier decides what a finished request means to its breaker.
type Classifier func(Call) Outcome

// DefaultClassifier is the rule a Breakers uses unless WithClassifier
// replaces it:
//
//   - a panic is a Failure, except http.ErrAbortHandler once the client has
//     gone, which is how httputil.ReverseProxy ends a response that the
//     client stopped reading: Excluded;
//   - a slow call (over SlowCall) is a Failure;
//   - a hijacked connection that never wrote a status is Excluded;
//   - a client that went away before a failure status was written (or
//     before the handler returned without writing one) makes it Excluded;
//   - status 500 and above, and 429, is a Failure;
//   - anything else, 4xx included, is a Success.
func DefaultClassifier(c Call) Outcome {
	switch {
	case c.Panic != nil:
		if c.Panic == http.ErrAbortHandler && c.Request.Context().Err() == context.Canceled {
			return Excluded
		}
		return Failure
	case c.Slow:
		return Failure
	case c.Hijacked && c.Status == 0:
		return Excluded
	case c.ClientGone && (c.Status == 0 || failureStatus(c.Status)):
		return Excluded
	case failureStatus(c.Status):
		return Failure
	}
	return Success
}

func failureStatus(code int) bool {
	return code >= 500 || code == http.StatusTooManyRequests
}

// errFailure and errExcluded carry a request's outcome into gobreaker;
// success is a nil error.
var (
	errFailure  = errors.New("httpbreaker: failure")
	errExcluded = errors.New("httpbreaker: excluded")
)

// serve runs one request through the breaker. Each layer costs one atomic
// load on the closed path, and the clock is read only when one is active.
func (br *breaker) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	observe := br.mode == ModeObserve
	if br.override.Load() != nil {
		if st, left, ok := br.forced(); ok {
			if st == StateForcedOpen { // a manual kill switch, in every mode
				if left == 0 {
					left = br.policy.OpenFor
				}
				br.reject(w, r, st, left)
				return
			}
			observe = true // forced closed: never reject
		}
	}
	if br.mode == ModeDisabled {
		next.ServeHTTP(w, r)
		return
	}
	if left, held := br.holdLeft(); held {
		br.rejectOrObserve(w, r, next, StateOpen, left, observe)
		return
	}
	if br.rampUntil.Load() != 0 && !br.rampAdmits() {
		br.rejectOrObserve(w, r, next, StateRecovering, 0, observe)
		return
	}
	var reraise any
	_, err := br.inst.Load().cb.Execute(func() (struct{}, error) {
		return struct{}{}, br.run(w, r, next, &reraise)
	})
	switch err {
	case nil, errFailure, errExcluded:
		if reraise != nil {
			panic(reraise)
		}
	case gobreaker.ErrTooManyRequests:
		br.rejectOrObserve(w, r, next, StateHalfOpen, 0, observe)
	default: // gobreaker.ErrOpenState, the instant the hold ends
		left, _ := br.holdLeft()
		br.rejectOrObserve(w, r, next, StateOpen, left, observe)
	}
}

// run calls the handler for an admitted request and returns its outcome as
// gobreaker's error. If the handler panics with what is a failure, run
// panics again at once, still inside the handler's panic, so that gobreaker
// records a failure and whoever recovers further up sees the original stack.
// A panic the classifier does not call a failure returns its value in
// *reraise for serve to raise after gobreaker has recorded the outcome.
func (br *breaker) run(w http.ResponseWriter, r *http.Request, next http.Handler, reraise *any) (err error) {
	sw := newStatusWriter(w, r.Context())
	classify := br.set.classify
	var start time.Time
	if br.slowCall > 0 || classify != nil {
		start = time.Now()
	}
	returned := false
	defer func() {
		var p any
		if !returned {
			p = recover()
		}
		c := Call{Key: br.key, Request: r, Status: sw.status, ClientGone: sw.gone, Hijacked: sw.hijacked,
			Panic: p, RetryAfter: sw.retryAfter}
		if c.Status == 0 && !c.Hijacked {
			c.ClientGone = r.Context().Err() == context.Canceled
		}
		if !start.IsZero() {
			c.Duration = time.Since(start)
			c.Slow = br.slowCall > 0 && c.Duration > br.slowCall
		}
		var o Outcome
		if sw.rejected {
			o = Excluded
		} else if classify != nil {
			o = classify(c)
		} else {
			o = DefaultClassifier(c)
		}
		switch o {
		case Success:
			err = nil
		case Excluded:
			err = errExcluded
		default:
			o, err = Failure, errFailure
		}
		br.results[result(o)].Add(1) // Success, Failure and Excluded are the first results
		if o == Failure && c.RetryAfter > 0 {
			br.noteUpstreamRetry(c.RetryAfter)
		}
		if p == nil {
			sw.release()
			return
		}
		if o == Failure {
			panic(p)
		}
		*reraise = p
	}()
	next.ServeHTTP(sw.wrapped(), r)
	returned = true
	return nil
}

// rejectOrObserve answers a request that the breaker does not admit: with
// the reject response, or, when observing, by running the handler untracked.
// retry is the time until requests are admitted again.
func (br *breaker) rejectOrObserve(w http.ResponseWriter, r *http.Request, next http.Handler, st State, retry time.Duration, observe bool) {
	if observe {
		br.results[resultWouldReject].Add(1)
		next.ServeHTTP(w, r)
		return
	}
	br.reject(w, r, st, retry)
}

// reject answers with the reject response, or the user's reject handler.
func (br *breaker) reject(w http.ResponseWriter, r *http.Request, st State, retry time.Duration) {
	br.results[resultRejected].Add(1)
	markRejected(w)
	rej := Rejection{Key: br.key, State: st, RetryAfter: retry}
	if h := br.set.reject; h != nil {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), rejectionKey{}, rej)))
		return
	}
	br.problem.write(w, rej)
}

// Rejection describes a request that a breaker rejected.
type Rejection struct {
	// Key is the key of the breaker that rejected the request.
	Key string
	// State is StateOpen; StateHalfOpen when all probes are taken;
	// StateRecovering when the recovery ramp turned the request away;
	// StateForcedOpen after ForceOpen.
	State State
	// RetryAfter is how long until the breaker admits requests again: 0 when
	// it is half-open or recovering (retry at once, or in a second).
	RetryAfter time.Duration
}

// RetryAfterSeconds returns the Retry-After value for rj: whole seconds
// until probes are admitted, rounded up, and at least 1.
func (rj Rejection) RetryAfterSeconds() int {
	return max(1, int(math.Ceil(rj.RetryAfter.Seconds())))
}

type rejectionKey struct{}

// RejectionFrom returns the rejection that a WithRejectHandler handler is
// answering, and false for any other request.
func RejectionFrom(r *http.Request) (Rejection, bool) {
	rj, ok := r.Context().Value(rejectionKey{}).(Rejection)
	return rj, ok
}

// problemBodies holds a key's reject response bodies, built once with the
// key JSON-escaped, and the Retry-After value last sent, so that a rejection
// allocates nothing while the value stays the same.
type problemBodies struct {
	body  [numStates][]byte // by the rejecting state
	retry atomic.Pointer[retryHeader]
}

// retryHeader is a Retry-After header value, shared read-only by the
// responses that send it.
type retryHeader struct {
	secs  int
	value []string
}

// Header values shared by every rejection. net/http only reads them, and a
// handler's Header().Add appends to a full slice, which copies it.
var (
	problemContentType = []string{"application/problem+json"}
	noStore            = []string{"no-store"}
)

// rejecting says what the detail of a reject response says, by state.
var rejecting = map[State]string{
	StateOpen:       "is open",
	StateHalfOpen:   "is half-open and all its probes are taken",
	StateRecovering: "is recovering and admits a rising share of requests",
	StateForcedOpen: "was forced open",
}

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

// retryAfter returns the Retry-After header value for secs.
func (pb *problemBodies) retryAfter(secs int) []string {
	if h := pb.retry.Load(); h != nil && h.secs == secs {
		return h.value
	}
	h := &retryHeader{secs: secs, value: []string{strconv.Itoa(secs)}}
	pb.retry.Store(h)
	return h.value
}

// write sends the reject response: 503, Retry-After, and an RFC 9457
// problem document with the key and state as extension members.
func (pb *problemBodies) write(w http.ResponseWriter, rj Rejection) {
	h := w.Header()
	h["Content-Type"] = problemContentType
	h["Cache-Control"] = noStore
	h["Retry-After"] = pb.retryAfter(rj.RetryAfterSeconds())
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write(pb.body[rj.State])
}
