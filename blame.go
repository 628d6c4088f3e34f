package httpbreaker

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
)

// This file is blame: one failure, one breaker. A route group's handler
// that calls an upstream through a client-side breaker of the same set
// (Transport, KeyedTransport, Do), with the request's context, and passes
// that call's failure on has not failed by itself: the failure is the
// upstream's, whose breaker has counted it already. The route group's
// outcome names the upstream (Call.Upstream), and DefaultClassifier makes
// it an UpstreamFailure: counted apart, not in the route group's window. So
// the route group trips only on failures of its own, and a fallback it
// serves once the upstream's breaker opens is answered at once, instead of
// its own breaker's 503 for a cooldown.
//
// The rule (DefaultClassifier's, docs/operating.md states it for users): a
// failure is blamed on an upstream only when it is a gateway answer (502,
// 503, 504, or a 429 passed on) and, when the handler wrote it, a call of
// the request to that upstream had failed or been rejected, and no call to
// it begun after that failure had succeeded (a retry); of several such
// upstreams, the one whose call failed last is named. Anything else is the
// route group's own: a 500, a panic, a failure after a retry of the
// upstream succeeded, after a side call whose failure the handler ignored,
// or before a call failed. The status code is the handler's word on whose
// failure it is; the order of calls is what the scope keeps.
//
// The link from the client call back to the route group's request is the
// context, the only thing the handler hands on to its outgoing calls: an
// admitted request runs with a callScope, a context that the client side
// finds with Value and that the request's copy given to the handler
// carries. Making it costs one allocation (the scope holds the request's
// copy). Every admitted request carries one while the set has a client
// side, from the first request on: any of them may call out, and one that
// did not carry a scope could not be told apart from one that did. A set
// with no client side (no Transport or KeyedTransport made, no Do called)
// pays nothing.

// scopeKey is the context key of a callScope.
type scopeKey struct{}

// callScope is the context of a request admitted by a route group's
// breaker: the request's own context, with what blame needs of the
// request. Client calls made with it (or a context derived from it) find it
// with Value. It may outlive the request, held by a goroutine that the
// handler started: what such a goroutine's calls change after the handler
// wrote its answer no longer matters to the request.
type callScope struct {
	context.Context // the request's own

	set   *Breakers
	route *keyBreaker // the route group's breaker
	outer *callScope  // the scope of a route group further out, nil if none

	mu sync.Mutex
	// failing holds the upstreams whose latest call within the scope failed
	// or was rejected, each with the number of that failure (failures'),
	// to tell which failed last and which calls were retries; a slot whose
	// up is nil is free. Past maxFailing such upstreams, the one that
	// failed first is forgotten.
	failing  [maxFailing]failedCall
	nfailing atomic.Int32 // slots in use: a call that succeeds reads it without mu

	// req is the request that the handler gets: the route group's request
	// with this scope as its context. It lives in the scope so that one
	// allocation makes both.
	req http.Request
}

// maxFailing is how many upstreams whose latest call failed a request's
// scope remembers: more than a handler passes failures on from.
const maxFailing = 3

// failedCall is an upstream whose latest call within a scope failed, and
// the number of that failure.
type failedCall struct {
	up *keyBreaker
	n  uint64
}

// Value returns the scope itself for scopeKey, and asks the request's own
// context for every other key.
func (s *callScope) Value(key any) any {
	if key == (scopeKey{}) {
		return s
	}
	return s.Context.Value(key)
}

// carries reports whether a request admitted now is to carry a scope:
// whether the set has a client side.
func (b *Breakers) carries() bool { return b.clients.Load() }

// scope returns a scope for a request of br's, made from r: the scope, whose
// req is the request the handler gets.
func (b *Breakers) scope(br *keyBreaker, r *http.Request) *callScope {
	ctx := r.Context()
	s := &callScope{Context: ctx, set: b, route: br}
	s.outer, _ = ctx.Value(scopeKey{}).(*callScope)
	s.req = *r.WithContext(s) // inlined: the copy is made in place, not allocated apart
	if !b.scoped.Load() {
		b.scoped.Store(true)
	}
	return s
}

// scopeOf returns the scope of a request of a route group's that ctx was
// made from, nil if none: a client call made outside any, or with a context
// not derived from the request's.
func (b *Breakers) scopeOf(ctx context.Context) *callScope {
	if !b.scoped.Load() { // no request of the set has carried one
		return nil
	}
	s, _ := ctx.Value(scopeKey{}).(*callScope)
	return s
}

// calling notes that a call through up, a client breaker of set, is made
// within s: the route groups of s and the scopes further out (of the same
// set) learn that their requests make client calls, and up learns that
// they depend on it. It is told before the call, so that an event of up's
// that the call causes names them. It returns the mark of the call's
// start, for called: failures noted before it, the call may undo.
func (s *callScope) calling(set *Breakers, up *keyBreaker) (since uint64) {
	for ; s != nil; s = s.outer {
		if s.set != set || s.route == up {
			continue
		}
		s.route.blame.calling()
		up.blame.depend(s.route.key)
	}
	return failureSeq.Load()
}

// failureSeq numbers the failures that scopes note, in the order they are
// noted, across every set: a call that began after a failure was noted
// has a mark (calling's) at least its number.
var failureSeq atomic.Uint64

// called notes how a call through up, a client breaker of set, made within
// s and begun at the mark since, went, as v (up's verdict) says, in s and
// the scopes further out (of the same set). A failure (a rejection is one)
// makes up one of the upstreams whose latest call failed, the latest to
// fail. A success undoes up's failure if it was a retry: a call begun after
// that failure. A call made at the same time as the one that failed (a
// fan-out) undoes nothing: that up failed a call is what the request saw.
// An excluded call (the caller's budget was spent, or it gave up) says
// nothing of up.
func (s *callScope) called(set *Breakers, up *keyBreaker, v verdict, since uint64) {
	if v.outcome == Excluded {
		return
	}
	var n uint64 // the failure's number
	if v.outcome == Failure {
		n = failureSeq.Add(1)
	}
	for ; s != nil; s = s.outer {
		if s.set == set && s.route != up {
			s.note(up, n, since)
		}
	}
}

// note records in s that a call through up failed, as failure n, or, if n
// is 0, that a call begun at the mark since succeeded.
func (s *callScope) note(up *keyBreaker, n, since uint64) {
	if n == 0 && s.nfailing.Load() == 0 {
		return // nothing failed that this success could undo: the common case, without the lock
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i := -1 // up's slot, if it has one
	for j := range s.failing {
		if s.failing[j].up == up {
			i = j
			break
		}
	}
	if n == 0 {
		if i >= 0 && s.failing[i].n <= since { // a retry, begun after the failure
			s.failing[i] = failedCall{}
			s.nfailing.Add(-1)
		}
		return
	}
	if i < 0 { // a free slot, or the one that failed first
		i = 0
		for j := range s.failing {
			if s.failing[j].up == nil {
				i = j
				s.nfailing.Add(1)
				break
			}
			if s.failing[j].n < s.failing[i].n {
				i = j
			}
		}
	}
	if n > s.failing[i].n { // a later failure than the one it holds
		s.failing[i] = failedCall{up: up, n: n}
	}
}

// blameable returns the upstream that a failure answered now could be
// blamed on: of those whose latest call within s failed, the one that
// failed last; nil if none.
func (s *callScope) blameable() *keyBreaker {
	if s.nfailing.Load() == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var last failedCall
	for _, f := range s.failing {
		if f.up != nil && f.n > last.n {
			last = f
		}
	}
	return last.up
}
