package httpbreaker

import (
	"time"
)

// Transition is one change of a key's state, and why: what a key's
// history keeps, what last tripped it, and the heart of a hook's Event.
// Fields that do not apply are zero, and left out of JSON. While a forced
// state holds the key, Forced names it and From and To are the breaker's
// own states underneath.
type Transition struct {
	Time   time.Time `json:"time"`
	From   State     `json:"from"`
	To     State     `json:"to"`
	Forced State     `json:"forced,omitempty"`
	Reason Reason    `json:"reason"`
	By     string    `json:"by,omitempty"` // who made a manual change: "status page from <address>", or the caller's file:line

	// The window's counts at a trip, or the probes' when they closed or
	// reopened the breaker.
	Failures            uint32 `json:"failures,omitempty"`
	Successes           uint32 `json:"successes,omitempty"`
	ConsecutiveFailures uint32 `json:"consecutive_failures,omitempty"`
	Slow                uint32 `json:"slow,omitempty"`

	OpenFor            time.Duration `json:"open_for,omitempty"`             // how long a change to open lasts
	UpstreamRetryAfter time.Duration `json:"upstream_retry_after,omitempty"` // an upstream's delay, when it lengthened OpenFor
	ProbeRanFor        time.Duration `json:"probe_ran_for,omitempty"`        // how long a probe ran, when ProbeTimeout judged it
	RecoveryRamp       time.Duration `json:"recovery_ramp,omitempty"`        // the ramp a change to recovering starts

	// Fleet says the change came from the fleet (WithSharedState), made by
	// Replica; FailingReplicas counts the replicas whose failures tripped it.
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
func (br *keyBreaker) transitionsMade() (made [numStates][numStates]uint64) {
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
