package httpbreaker

import (
	"net/http"
	"strconv"
)

// Middleware returns middleware that puts the handler it wraps behind key's
// breaker, made now so that it shows before the first request; wrap each
// route group once, with its own key. A gateway answer passed on after the
// request's call (with its context) through a client side of the same set
// failed is that upstream's (DefaultClassifier). An invalid key panics: a
// wiring mistake, found when the server is assembled.
func (b *Breakers) Middleware(key string) func(http.Handler) http.Handler {
	ref := b.ref("Middleware", key, sideServer)
	bodies := newProblemBodies(key)
	return func(next http.Handler) http.Handler {
		if next == nil {
			panic("httpbreaker: Middleware(" + strconv.Quote(key) + "): nil handler")
		}
		return &keyHandler{ref: ref, bodies: bodies, next: next}
	}
}

type keyHandler struct {
	ref    *keyRef
	bodies *problemBodies
	next   http.Handler
	_      [64 - 32]byte // read on every request: a cache line of its own (see counters.go)
}

func (h *keyHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	serveThrough(h.ref.set, h.ref.get(), h.bodies, w, r, h.next)
}

// KeyedMiddleware returns middleware that picks the breaker of each request
// with keyOf, made on first use, up to WithMaxKeys.
func (b *Breakers) KeyedMiddleware(keyOf KeyFunc) func(http.Handler) http.Handler {
	if keyOf == nil {
		panic("httpbreaker: KeyedMiddleware: nil KeyFunc")
	}
	return func(next http.Handler) http.Handler {
		if next == nil {
			panic("httpbreaker: KeyedMiddleware: nil handler")
		}
		return &keyedHandler{set: b, keyOf: keyOf, next: next, bodies: &problemCache{max: b.maxKeys}}
	}
}

type keyedHandler struct {
	set    *Breakers
	keyOf  KeyFunc
	next   http.Handler
	bodies *problemCache
	_      [64 - 40]byte // read on every request: a cache line of its own (see counters.go)
}

func (h *keyedHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	br := h.set.keyed(h.keyOf(r), sideServer, func() []any {
		return []any{"side", "server", "method", r.Method, "path", r.URL.Path}
	})
	if br == nil {
		h.next.ServeHTTP(w, r)
		return
	}
	serveThrough(h.set, br, h.bodies, w, r, h.next)
}

// serveThrough puts one request through br, of set: the server side of
// through. An admitted request runs with a status-capturing writer and is
// judged when its handler ends; one that is not gets the reject response,
// or, when the breaker only observes, runs untracked. While the set has a
// client side, the handler gets the request with a scope for blame
// (blame.go).
func serveThrough(set *Breakers, br *keyBreaker, bodies problemSource, w http.ResponseWriter, r *http.Request, next http.Handler) {
	var sw *statusWriter
	var sc *callScope
	br.through(&passage{
		pass:   func() { next.ServeHTTP(w, r) },
		reject: func(rj Rejection) { reject(set, bodies, w, r, rj) },
		run: func(pr *probeRun) {
			sw = newStatusWriter(w, r.Context())
			sw.probe = pr
			in := r
			if set.carries() {
				sc = set.scope(br, r)
				sw.scope = sc
				in = &sc.req
			}
			next.ServeHTTP(sw.wrapped(), in)
		},
		judge: func(e ending) verdict {
			v := verdict{outcome: Success}
			if !plainSuccess(br, sw, e) {
				v = judgeServed(set, br, sw, r, sc, e)
			}
			if e.returned {
				sw.release()
			}
			return v
		},
	})
}

// plainSuccess reports whether a request that ended as e says, whose
// handler wrote through sw, is a success that needs no judging: it returned
// after writing a status that is no failure, and br judges its calls by
// DefaultClassifier, untimed, which would call it a success. Most requests
// are, and skip building their Call.
func plainSuccess(br *keyBreaker, sw *statusWriter, e ending) bool {
	return e.returned && sw.status != 0 && !failureStatus(sw.status) && !sw.rejected &&
		br.judging.classify == nil && br.judging.slowCall == 0
}

// judgeServed returns what a request of br's, of set, that ended as e says
// means to br, from what its handler wrote through sw and, for blame, what
// the request's scope sc (nil if it carried none) tells, and counts a
// failure blamed on an upstream against that upstream's key. A handler that
// ended its goroutine with runtime.Goexit failed.
//
// A request that carried no scope because the set had no client side when
// it was admitted, during which the set got one (its handler made the
// set's first Do call, say), may have called out: a failure it answered
// that the rule could have blamed is excluded, as nobody's, rather than
// counted as the route group's own.
func judgeServed(set *Breakers, br *keyBreaker, sw *statusWriter, r *http.Request, sc *callScope, e ending) verdict {
	if e.goexit() {
		return verdict{outcome: Failure}
	}
	v, up := judgeAnswer(br, sw, r, e, sc)
	switch {
	case v.blamed && up != "":
		br.blame.countBlame(up, e.at)
	case sc == nil && v.outcome == Failure && e.panicked == nil && gatewayStatus(sw.status) && set.carries():
		v.outcome = Excluded
	}
	return v
}

// judgeAnswer returns what the answer that a handler wrote through sw
// means to br, and the upstream it could be blamed on, if any. A request
// that a breaker nested inside rejected is excluded: its answer is a
// rejection, not a failure of the handlers here.
func judgeAnswer(br *keyBreaker, sw *statusWriter, r *http.Request, e ending, sc *callScope) (verdict, string) {
	if sw.rejected {
		return verdict{outcome: Excluded}, ""
	}
	c := Call{Key: br.key, Request: r, StatusCode: sw.status, ClientGone: sw.gone, Hijacked: sw.hijacked,
		Panic: e.panicked, RetryAfter: sw.retryAfter, Upstream: sc.upstreamKey(sw)}
	if c.StatusCode == 0 && !c.Hijacked {
		c.ClientGone = callerGone(r)
	}
	v := br.judging.judge(&c, e.took)
	if v.outcome == Failure && rejectedInside(r) { // by a breaker nested inside, behind a writer without Unwrap
		v.outcome = Excluded
	}
	return v, c.Upstream
}
