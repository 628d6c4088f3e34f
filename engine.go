package httpbreaker

import (
	"errors"
	"sync/atomic"

	"github.com/sony/gobreaker/v2"
)

// tripEngine is a window's gobreaker instance, the engine of record of the
// closed state: the window hands it each outcome that could trip the
// breaker, as a failure, and gobreaker asks its ReadyToTrip, which is the
// policy's rule over the window. What happens next (the open phase, its
// record, the hooks, the metrics, the fleet) is the breaker's, after
// gobreaker's call has returned: nothing of ours runs under its lock but the
// rule. A success that cannot trip the breaker never reaches it, nor its
// lock.
//
// An engine that has tripped stays open: its window is started anew, with
// no engine, when the breaker closes or is reset, and makes a new one at
// its first check. A key that never fails never makes one.
type tripEngine struct {
	cb      *gobreaker.CircuitBreaker[struct{}]
	why     tripInfo // what tripped it, written under gobreaker's lock before tripped
	tripped atomic.Bool
}

// windowCounts is what the trip rule judges.
type windowCounts struct {
	outcomeCounts
	consecutive          uint32
	consecutiveSuccesses uint32
}

// tripInfo records what made a window trip.
type tripInfo struct {
	reason Reason
	counts windowCounts
}

// errCheck is how the window hands gobreaker an outcome to judge.
var errCheck = errors.New("httpbreaker: an outcome that could trip the breaker")

// neverHalfOpen is the engine's Timeout: an engine that has tripped is
// replaced before it could move to half-open by itself, since the cooldown
// and the probes are the breaker's.
const neverHalfOpen = 100 * 365 * 24 * 3600 * 1e9

// newEngine returns an engine whose rule is holds: what tripped the window,
// and whether its rule holds now.
func newEngine(holds func() (tripInfo, bool)) *tripEngine {
	e := &tripEngine{}
	e.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Timeout: neverHalfOpen,
		ReadyToTrip: func(gobreaker.Counts) bool {
			why, trips := holds()
			if trips {
				e.why = why
				e.tripped.Store(true)
			}
			return trips
		},
		IsSuccessful: func(error) bool { return false }, // every outcome handed to it is judged
	})
	return e
}

// decide hands the engine an outcome that could trip its window, and
// returns what tripped it if the rule holds now, or held before.
func (e *tripEngine) decide() (tripInfo, bool) {
	_, _ = e.cb.Execute(func() (struct{}, error) { return struct{}{}, errCheck })
	if e.tripped.Load() {
		return e.why, true
	}
	return tripInfo{}, false
}
