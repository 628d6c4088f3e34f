package httpbreaker

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// This file is blame: one failure, one breaker. A route group's handler
// that calls an upstream through a client-side breaker of the same set
// (Transport, KeyedTransport, Do), with the request's context, and answers
// a failure because that call failed or was rejected, has not failed by
// itself: the failure is the upstream's, whose breaker has counted it
// already. The route group's outcome names the upstream (Call.Upstream),
// and DefaultClassifier makes it an UpstreamFailure: counted apart, not in
// the route group's window. So the route group trips only on failures of
// its own, and a fallback it serves once the upstream's breaker opens is
// answered at once, instead of its own breaker's 503 for a cooldown.
//
// The link from the client call back to the route group's request is the
// context, the only thing the handler hands on to its outgoing calls: an
// admitted request runs with a callScope, a context that the client side
// finds with Value and that the request's copy given to the handler
// carries. Making it costs one allocation (the scope holds the request's
// copy), so a route group's requests carry one while it is known to make
// client calls through the set, and while that is not known yet: from its
// first request until one of them ends without a call. From then on none
// carries one, until a failure of the route group's own or a second later,
// when requests carry one again until one ends without a call. A request
// that carries no scope allocates nothing more than before.

// scopeKey is the context key of a callScope.
type scopeKey struct{}

// callScope is the context of a request admitted by a route group's
// breaker: the request's own context, with what blame needs of the
// request. Client calls made with it (or a context derived from it) find it
// with Value. It may outlive the request, held by a goroutine that the
// handler started; its fields are atomics or never change.
type callScope struct {
	context.Context // the request's own

	set   *Breakers
	route *breaker   // the route group's breaker
	outer *callScope // the scope of a route group further out, nil if none
	// upstream is the client breaker whose call, made within the scope,
	// failed or was rejected first; nil while none has.
	upstream atomic.Pointer[breaker]
	// req is the request that the handler gets: the route group's request
	// with this scope as its context. It lives in the scope so that one
	// allocation makes both.
	req http.Request
}

// Value returns the scope itself for scopeKey, and asks the request's own
// context for every other key.
func (s *callScope) Value(key any) any {
	if key == (scopeKey{}) {
		return s
	}
	return s.Context.Value(key)
}

// String describes the context as context's own types do.
func (s *callScope) String() string {
	return fmt.Sprintf("%v.WithValue(httpbreaker scope of %s)", s.Context, quoteKey(s.route.key))
}

// scope returns a scope for a request of br's, made from r: the scope, whose
// req is the request the handler gets.
func (b *Breakers) scope(br *breaker, r *http.Request) *callScope {
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
// they depend on it.
func (s *callScope) calling(set *Breakers, up *breaker) {
	for ; s != nil; s = s.outer {
		if s.set != set || s.route == up {
			continue
		}
		s.route.blame.calling()
		up.blame.depend(s.route.key)
	}
}

// failed notes that a call through up, a client breaker of set, made within
// s failed or was rejected: the failure that the route groups of s and the
// scopes further out (of the same set) answer next is up's.
func (s *callScope) failed(set *Breakers, up *breaker) {
	for ; s != nil; s = s.outer {
		if s.set == set && s.route != up {
			s.upstream.CompareAndSwap(nil, up)
		}
	}
}

// upstreamKey returns the key of the upstream that s's failure is blamed
// on, "" if none: s is nil, or no call made within it has failed.
func (s *callScope) upstreamKey() string {
	if s == nil {
		return ""
	}
	if up := s.upstream.Load(); up != nil {
		return up.key
	}
	return ""
}

// Bounds of what a breaker keeps of blame: the upstream keys its failures
// are blamed on, and the route groups that depend on it as an upstream.
// Both sets are as small as the code's wiring; the bounds keep a KeyFunc's
// keys from growing them.
const (
	maxBlamedOn   = 16
	maxDependents = 16
)

// sampleEvery is how often a route group that has been seen to make no
// client call lends its requests a scope again, to find out whether it
// makes any now.
const sampleEvery = time.Second

// What a route group is known to do, for blameState.calls.
const (
	// callsUnknown: every request carries a scope, until one of them ends
	// without a client call.
	callsUnknown int32 = iota
	// callsNone: a request carried a scope and made no client call; none
	// carries one, until a failure of the route group's own, or
	// sampleEvery later.
	callsNone
	// callsOut: a request made a client call with its scope; every request
	// carries one from then on.
	callsOut
)

// blameState is what a breaker keeps of blame: as a route group's, whether
// its requests make client calls and how many of its failures were blamed
// on which upstream; as an upstream's, the route groups that call it.
type blameState struct {
	// calls is what the route group is known to do: callsUnknown,
	// callsNone or callsOut. lastSample is when callsNone last went back
	// to callsUnknown for sampleEvery (ns since the set's epoch).
	calls      atomic.Int32
	lastSample atomic.Int64

	// dependents are the keys of the route groups that call through the
	// breaker as an upstream, sorted; nil while none has. The slice is
	// replaced, never changed.
	dependents atomic.Pointer[[]string]

	mu       sync.Mutex        // guards blamedOn, and the writers of dependents
	blamedOn map[string]uint64 // upstream key -> failures blamed on it
}

// carries reports whether an admitted request of the route group is to
// carry a scope.
func (bs *blameState) carries() bool { return bs.calls.Load() != callsNone }

// callsOut reports whether the route group's requests are known to make
// client calls.
func (bs *blameState) callsOut() bool { return bs.calls.Load() == callsOut }

// calling notes that a request of the route group made a client call with
// its scope.
func (bs *blameState) calling() {
	if bs.calls.Load() != callsOut {
		bs.calls.Store(callsOut)
	}
}

// served notes how a request of the route group, of set, judged v at now,
// ended. One that carried a scope counts the upstream its failure was
// blamed on (up, "" if none), and, if the route group's calls are unknown
// and it made none (a request that did would have made them known), says
// that the route group makes none. One that carried none makes the next
// requests carry one, if the set has a client side, after a failure, or
// sampleEvery after the last time.
func (bs *blameState) served(set *Breakers, carried bool, v verdict, up string, now int64) {
	if carried {
		if v.blamed && up != "" {
			bs.blame(up)
		}
		if bs.calls.Load() == callsUnknown {
			bs.calls.CompareAndSwap(callsUnknown, callsNone)
		}
		return
	}
	if !set.clients.Load() {
		return
	}
	if v.outcome == Failure {
		bs.calls.CompareAndSwap(callsNone, callsUnknown)
		return
	}
	if last := bs.lastSample.Load(); now-last >= int64(sampleEvery) && bs.lastSample.CompareAndSwap(last, now) {
		bs.calls.CompareAndSwap(callsNone, callsUnknown)
	}
}

// blame counts a failure of the route group blamed on the upstream key up:
// past maxBlamedOn upstream keys, a new one is counted in the totals alone.
func (bs *blameState) blame(up string) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if _, ok := bs.blamedOn[up]; !ok && len(bs.blamedOn) >= maxBlamedOn {
		return
	}
	if bs.blamedOn == nil {
		bs.blamedOn = map[string]uint64{}
	}
	bs.blamedOn[up]++
}

// blamed returns how many of the route group's failures were blamed on
// each upstream key, nil if none were.
func (bs *blameState) blamed() map[string]uint64 {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if len(bs.blamedOn) == 0 {
		return nil
	}
	return maps.Clone(bs.blamedOn)
}

// depend notes that the route group route calls through the breaker as an
// upstream. A known route group costs a scan of a short slice; past
// maxDependents, new ones are not kept.
func (bs *blameState) depend(route string) {
	deps := bs.dependents.Load()
	if deps != nil && (len(*deps) >= maxDependents || slices.Contains(*deps, route)) {
		return
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	var next []string
	if deps = bs.dependents.Load(); deps != nil {
		if len(*deps) >= maxDependents || slices.Contains(*deps, route) {
			return
		}
		next = slices.Clone(*deps)
	}
	next = append(next, route)
	slices.Sort(next)
	bs.dependents.Store(&next)
}

// dependentKeys returns the route groups that call through the breaker as
// an upstream, sorted; nil if none has. The slice is shared: not to be
// changed.
func (bs *blameState) dependentKeys() []string {
	if deps := bs.dependents.Load(); deps != nil {
		return *deps
	}
	return nil
}
