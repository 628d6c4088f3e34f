package httpbreaker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
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
// the first request. Keys wired by Middleware are bounded by the code, not
// by traffic: they always get a breaker, past WithMaxKeys too. Middleware
// panics if key is empty, longer than 512 bytes or not valid UTF-8: that is a
// wiring mistake, found when the server is assembled, never at request time.
func (b *Breakers) Middleware(key string) func(http.Handler) http.Handler {
	if err := checkKey(key); err != nil {
		panic("httpbreaker: Middleware(" + quoteKey(key) + "): " + err.Error())
	}
	br := b.breakerFor(key, false)
	br.side(sideServer)
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
	br   atomic.Pointer[breaker] // the key's breaker, never nil
	next http.Handler
}

func (h *keyHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	br := h.br.Load()
	if br.dropped.Load() { // idle for its IdleTTL: the key's breaker now is another
		br = h.set.breakerFor(h.key, false)
		br.side(sideServer)
		h.br.Store(br)
	}
	serveThrough(br, w, r, h.next)
}

// A KeyFunc picks the breaker key of a request. It must return a value from
// a small set (a route pattern, a plugin id, an upstream name), never raw
// input such as the path: every key gets a breaker and metric series, up to
// WithMaxKeys. A KeyFunc returns "" to leave a request untracked. A key that
// is not valid UTF-8 or is longer than 512 bytes (input from the request,
// such as a path value of "/api/%ff/x") gets no breaker either: the request
// passes untracked, and the first such key is logged.
type KeyFunc func(*http.Request) string

// RoutePattern is a KeyFunc that keys each request by its method and the
// route pattern that matched it, the same on every router:
// "GET /api/items/{id}". It reads r.Pattern, which http.ServeMux (Go 1.23+)
// and chi (v5.3+) set: a ServeMux pattern that names a method is the key as
// it is; a pattern without one (chi's "/api/items/{id}", or a ServeMux
// pattern such as "/static/") gets the request's method in front, so that
// GET and POST of a route have breakers of their own on every router. For
// one breaker per route whatever the method, key by r.Pattern yourself.
//
// Routers set the pattern when they pick the route, so the middleware must
// run inside the route: wrap the handler given to ServeMux.Handle, or use
// chi's With or Route. Wrapped around a whole router, it sees no pattern,
// and every request passes untracked (logged once).
func RoutePattern(r *http.Request) string {
	p := r.Pattern
	if p == "" || hasMethod(p) {
		return p
	}
	return withMethod(r.Method, p)
}

// hasMethod reports whether a ServeMux-style pattern starts with a method:
// "GET /x" does, "/x" and "example.com/x" do not.
func hasMethod(pattern string) bool {
	for i := 0; i < len(pattern); i++ {
		switch pattern[i] {
		case ' ', '\t':
			return true
		case '/':
			return false
		}
	}
	return false
}

// routeKeys holds, for each pattern RoutePattern has seen without a method,
// its keys for the standard methods, so that keying a request allocates
// nothing. Patterns are the router's own, a set as small as its routes.
var routeKeys sync.Map // pattern -> *[len(standardMethods)]string

var standardMethods = [...]string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace,
}

// withMethod returns method + " " + pattern.
func withMethod(method, pattern string) string {
	i := slices.Index(standardMethods[:], method)
	if i < 0 {
		return method + " " + pattern
	}
	v, ok := routeKeys.Load(pattern)
	if !ok {
		var keys [len(standardMethods)]string
		for j, m := range standardMethods {
			keys[j] = m + " " + pattern
		}
		v, _ = routeKeys.LoadOrStore(pattern, &keys)
	}
	return v.(*[len(standardMethods)]string)[i]
}

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
			h.set.notifications.log(slog.LevelWarn, "circuit breaker KeyFunc returned no key: such requests pass through without a breaker "+
				"(is the middleware outside the router that sets the route pattern?)",
				"method", r.Method, "path", r.URL.Path)
		})
	} else if br := h.set.breakerFor(key, true); br != nil {
		br.side(sideServer)
		serveThrough(br, w, r, h.next)
		return
	}
	h.set.untracked.Add(1)
	h.next.ServeHTTP(w, r)
}

// serveThrough puts one request through br: the server side over the breaker's
// admission path. An admitted request runs with a status-capturing writer
// and is classified when its handler returns; one that is not gets the
// reject response, or, when the breaker only observes, runs untracked.
func serveThrough(br *breaker, w http.ResponseWriter, r *http.Request, next http.Handler) {
	var reraise any
	switch a := br.call(func(p *probe) verdict { return handle(br, w, r, next, p, &reraise) }); a.verdict {
	case ran:
		if reraise != nil {
			panic(reraise)
		}
	case passed:
		next.ServeHTTP(w, r)
	default:
		reject(br, w, r, a.rejection(br.key))
	}
}

// handle runs the handler of an admitted request and returns what its
// answer means. If the handler panics with what is a failure, handle panics
// again at once, still inside the handler's panic, so that the breaker
// records a failure and whoever recovers further up sees the original stack.
// A panic that is not a failure returns its value in *reraise, for serveThrough to
// raise once the outcome is recorded.
func handle(br *breaker, w http.ResponseWriter, r *http.Request, next http.Handler, p *probe, reraise *any) (v verdict) {
	sw := newStatusWriter(w, r.Context())
	sw.probe = p
	var start time.Time
	if br.slowCall > 0 || br.set.classifier != nil {
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
		switch {
		case sw.rejected: // by a breaker nested inside
			o = Excluded
		case br.set.classifier != nil:
			o = validOutcome(br.set.classifier(c))
		default:
			o = DefaultClassifier(c)
		}
		if o == Failure && rejectedInside(r) { // by a breaker nested inside, behind a writer without Unwrap
			o = Excluded
		}
		v = verdict{outcome: o, retryAfter: c.RetryAfter, rateLimited: sw.rateLimited}
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
	return v
}

// reject answers a request that the breaker rejected: with the 503 problem
// response, or with the user's reject handler.
//
// It tells breakers further out that this answer is a rejection, not a
// failure, two ways: through the writers, each of which it reaches by
// Unwrap (markRejected), and, for a writer in between that has no Unwrap,
// through the request, whose header map the copies that middlewares make
// (WithContext) share.
func reject(br *breaker, w http.ResponseWriter, r *http.Request, rj Rejection) {
	markRejected(w)
	if r.Header != nil {
		r.Header[rejectedMark] = nil
	}
	if h := br.set.rejectHandler; h != nil {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), rejectionKey{}, rj)))
		return
	}
	problemsFor(br).write(w, rj)
}

type rejectionKey struct{}

// rejectedMark is the request header that reject sets: a name of this
// process's own, which no client can send.
var rejectedMark = func() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "Httpbreaker-Rejected-" + hex.EncodeToString(b[:])
}()

// rejectedInside reports whether a breaker nested inside rejected r.
func rejectedInside(r *http.Request) bool {
	_, ok := r.Header[rejectedMark]
	return ok
}

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

// problemsFor returns br's reject bodies, building them on first use. They
// are kept in the breaker's memo, which is the server side's to fill.
func problemsFor(br *breaker) *problemBodies {
	if pb, ok := br.memo.Load().(*problemBodies); ok {
		return pb
	}
	quoted, _ := json.Marshal(br.key) // a string always marshals
	pb := &problemBodies{}
	for st, what := range rejecting {
		detail, _ := json.Marshal(`circuit breaker "` + br.key + `" ` + what + `; retry after the delay in Retry-After`)
		pb.body[st] = []byte(`{"title":"Service Unavailable","status":503,"detail":` + string(detail) +
			`,"key":` + string(quoted) + `,"state":"` + st.String() + `"}`)
	}
	br.memo.Store(pb)
	return pb
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
