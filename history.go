package httpbreaker

import (
	"time"
)

// Transition is one change of a key's state, and why it happened: what a
// key's history keeps (Status.History), what last tripped it
// (Status.LastTrip), and the heart of a hook's Event. Fields that do not
// apply to a change are zero, and left out of JSON.
type Transition struct {
	Time time.Time `json:"time"` // when it happened
	// From and To are the states before and after; while a forced state
	// holds the key, Forced is it and From and To are the states of the
	// breaker underneath.
	From   State  `json:"from"`
	To     State  `json:"to"`
	Forced State  `json:"forced,omitempty"`
	Reason Reason `json:"reason"`
	// By says who made a manual change: "status page from <address>", or
	// the Go file and line that called the method.
	By string `json:"by,omitempty"`
	// The window's counts at a trip, or the probes' when they closed or
	// reopened the breaker; Slow with SlowCallRate.
	Failures            uint32 `json:"failures,omitempty"`
	Successes           uint32 `json:"successes,omitempty"`
	ConsecutiveFailures uint32 `json:"consecutive_failures,omitempty"`
	Slow                uint32 `json:"slow,omitempty"`
	// OpenFor is how long a change to open (or to a timed forced open)
	// lasts; UpstreamRetryAfter the upstream's delay when it made OpenFor
	// longer; ProbeRanFor how long a probe ran when ProbeTimeout judged it;
	// RecoveryRamp the ramp a change to recovering starts.
	OpenFor            time.Duration `json:"open_for,omitempty"`
	UpstreamRetryAfter time.Duration `json:"upstream_retry_after,omitempty"`
	ProbeRanFor        time.Duration `json:"probe_ran_for,omitempty"`
	RecoveryRamp       time.Duration `json:"recovery_ramp,omitempty"`
	// Fleet says the change came from the fleet (WithSharedState): a
	// fleet-wide trip, its probes, or another replica's manual change, which
	// Replica names; FailingReplicas counts the replicas whose failures
	// tripped it.
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
