package httpbreaker

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"
)

// This file is what a breaker keeps of blame (blame.go): as a route group,
// how many of its failures were blamed on which upstream, and the latest;
// as an upstream, the route groups that call it.

// Bounds of what a breaker keeps of blame: the upstream keys its failures
// are blamed on, and the route groups that depend on it as an upstream.
// Both sets are as small as the code's wiring; the bounds keep a KeyFunc's
// keys from growing them.
const (
	maxBlamedOn   = 16
	maxDependents = 16
)

// blameState is what a breaker keeps of blame: as a route group's, whether
// its requests make client calls and how many of its failures were blamed
// on which upstream, the latest when; as an upstream's, the route groups
// that call it.
type blameState struct {
	// calls says a request of the route group has made a client call with
	// its scope.
	calls atomic.Bool

	// dependents are the keys of the route groups that call through the
	// breaker as an upstream, sorted; nil while none has. The slice is
	// replaced, never changed.
	dependents atomic.Pointer[[]string]

	mu       sync.Mutex        // guards blamedOn and last, and the writers of dependents
	blamedOn map[string]uint64 // upstream key -> failures blamed on it
	last     lastBlame
}

// lastBlame is the route group's latest failure blamed on an upstream: on
// which, and when (ns since the set's epoch); up is "" if none was.
type lastBlame struct {
	up string
	at int64
}

// calling notes that a request of the route group made a client call with
// its scope.
func (bs *blameState) calling() {
	if !bs.calls.Load() {
		bs.calls.Store(true)
	}
}

// callsOut reports whether a request of the route group has made a client
// call with its scope.
func (bs *blameState) callsOut() bool { return bs.calls.Load() }

// countBlame counts a failure of the route group, at at, blamed on the upstream
// key up: past maxBlamedOn upstream keys, a new one is counted in the
// totals alone, and is the latest all the same.
func (bs *blameState) countBlame(up string, at int64) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	bs.last = lastBlame{up: up, at: at}
	if _, ok := bs.blamedOn[up]; !ok && len(bs.blamedOn) >= maxBlamedOn {
		return
	}
	if bs.blamedOn == nil {
		bs.blamedOn = map[string]uint64{}
	}
	bs.blamedOn[up]++
}

// blamedCounts returns how many of the route group's failures were blamedCounts on
// each upstream key, nil if none were, and the latest of them.
func (bs *blameState) blamedCounts() (map[string]uint64, lastBlame) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if len(bs.blamedOn) == 0 {
		return nil, bs.last
	}
	return maps.Clone(bs.blamedOn), bs.last
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
