package httpbreaker

import (
	"time"
)

// Transition is one change of a key's state: when, from what to what, why,
// who made it if a person did, and the facts that decided it. It is what a
// key's history keeps (Status.History), what last tripped it
// (Status.LastTrip), and the heart of the Event a hook gets. Fields that do
// not apply to a change are zero, and left out of JSON.
type Transition struct {
	// Time is when the change happened (for a hook, not when the hook runs).
	Time time.Time `json:"time"`
	// From and To are the states before and after. They are equal only for
	// an Event of ReasonIdle, where the key's closed breaker is dropped.
	From State `json:"from"`
	To   State `json:"to"`
	// Reason says why the state changed.
	Reason Reason `json:"reason"`
	// By says who made a manual change (ReasonForceOpen, ReasonForceClose,
	// ReasonRelease, ReasonReset, ReasonProbe): "status page from <remote
	// address>", or the Go source file and line that called the method.
	By string `json:"by,omitempty"`
	// Forced is the state ForceOpen or ForceClose held the key in when the
	// breaker underneath changed (From and To are then the breaker's own
	// states); StateClosed otherwise (a forced state is never closed).
	Forced State `json:"forced,omitempty"`

	// The window's counts when a trip opened the breaker
	// (ReasonFailureRate, ReasonSlowCallRate, ReasonConsecutiveFailures),
	// and the probes' counts when they closed it or opened it again
	// (ReasonProbesSucceeded, ReasonProbeFailed, ReasonProbeTimeout). Slow
	// is the window's slow calls at a trip, with SlowCallRate.
	Failures            uint32 `json:"failures,omitempty"`
	Successes           uint32 `json:"successes,omitempty"`
	ConsecutiveFailures uint32 `json:"consecutive_failures,omitempty"`
	Slow                uint32 `json:"slow,omitempty"`

	// OpenFor is how long the breaker stays open, for a change to open, and
	// to forced open with a time limit.
	OpenFor time.Duration `json:"open_for,omitempty"`
	// UpstreamRetryAfter is the delay an upstream asked for with
	// Retry-After, when it made OpenFor longer than the cooldown.
	UpstreamRetryAfter time.Duration `json:"upstream_retry_after,omitempty"`
	// ProbeRanFor is how long a probe had run when its ProbeTimeout
	// judged it (ReasonProbeTimeout).
	ProbeRanFor time.Duration `json:"probe_ran_for,omitempty"`
	// RecoveryRamp is the ramp a recovered breaker starts, for a change to
	// recovering.
	RecoveryRamp time.Duration `json:"recovery_ramp,omitempty"`

	// Fleet says that the change came from the fleet, with shared state
	// (WithSharedState): a fleet-wide trip, the fleet's probes, or a manual
	// change made on another replica. Replica names the replica that made
	// it, and FailingReplicas counts the replicas whose failures tripped it.
	Fleet           bool   `json:"fleet,omitempty"`
	Replica         string `json:"replica,omitempty"`
	FailingReplicas int    `json:"failing_replicas,omitempty"`
}

// FailureRate returns Failures / (Failures + Successes), or 0 when both are 0.
func (t Transition) FailureRate() float64 { return failureRate(t.Failures, t.Successes) }

// shown is the state the key was in after the transition: the forced state
// while one held it, the breaker's own otherwise.
func (t Transition) shown() State {
	if t.Forced != StateClosed {
		return t.Forced
	}
	return t.To
}

// before is the state the key was in before the transition, as shown says.
func (t Transition) before() State {
	if t.Forced != StateClosed {
		return t.Forced
	}
	return t.From
}

// historyLen is how many transitions a key's history keeps: ten trips and
// recoveries (open, half-open, closed: three transitions each), an hour of
// a key that flaps every six minutes.
const historyLen = 32

// history is what a breaker keeps of its changes, under its mu: when it was
// made and last changed, what last tripped it, and its last historyLen
// transitions and how many of each kind it made, for Status and the
// metrics. The ring and the counts are allocated at a key's first change,
// so that a key that never changes costs a few words.
type history struct {
	created, since int64 // ns since the set's epoch
	lastTrip       *Transition
	ring           *historyRing // nil until the first change
}

type historyRing struct {
	ring [historyLen]Transition
	n    uint64                       // transitions added, ever
	made [numStates][numStates]uint32 // transitions by from and to
}

// add keeps t, made at at, forgetting the oldest transition if the ring is
// full.
func (h *history) add(at int64, t Transition) {
	if h.ring == nil {
		h.ring = new(historyRing)
	}
	r := h.ring
	r.ring[r.n%historyLen] = t
	r.n++
	r.made[t.From][t.To]++
	h.since = at
}

// list returns the transitions kept, oldest first, and whether older ones
// were forgotten.
func (h *history) list() (out []Transition, forgot bool) {
	r := h.ring
	if r == nil {
		return []Transition{}, false
	}
	kept := min(r.n, historyLen)
	out = make([]Transition, 0, kept)
	for i := r.n - kept; i < r.n; i++ {
		out = append(out, r.ring[i%historyLen])
	}
	return out, r.n > historyLen
}

// transitionsMade returns how many transitions of each kind br made.
func (br *breaker) transitionsMade() (made [numStates][numStates]uint64) {
	br.mu.Lock()
	defer br.mu.Unlock()
	if r := br.history.ring; r != nil {
		for from := range numStates {
			for to := range numStates {
				made[from][to] = uint64(r.made[from][to])
			}
		}
	}
	return made
}
