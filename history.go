package httpbreaker

import (
	"sync"
	"time"
)

// Transition is one change of a key's state, as the key's history keeps it
// (Status.History): when, from what to what, why, who made it if a person
// did, and the counts that decided it. It is the part of an Event that the
// status page shows.
type Transition struct {
	Time   time.Time `json:"time"`
	From   State     `json:"from"`
	To     State     `json:"to"`
	Reason Reason    `json:"reason"`
	// By says who made a manual change, as Event.By does.
	By string `json:"by,omitempty"`
	// Forced is the state ForceOpen or ForceClose held the key in when the
	// breaker underneath changed; StateClosed (left out of JSON) otherwise.
	// While it is set, the key was in Forced, whatever To says.
	Forced State `json:"forced,omitempty"`
	// The window's counts at a trip, and the probes' counts when they
	// closed or reopened the breaker, as Event has them.
	Failures            uint32 `json:"failures,omitempty"`
	Successes           uint32 `json:"successes,omitempty"`
	ConsecutiveFailures uint32 `json:"consecutive_failures,omitempty"`
	Slow                uint32 `json:"slow,omitempty"`
	// Fleet says that the change came from the fleet, and Replica names the
	// replica that made it, as Event has them.
	Fleet   bool   `json:"fleet,omitempty"`
	Replica string `json:"replica,omitempty"`
}

// shown is the state the key was in after the transition: the forced state
// while one held it, the breaker's own otherwise.
func (t Transition) shown() State {
	if t.Forced != StateClosed {
		return t.Forced
	}
	return t.To
}

// historyLen is how many transitions a key's history keeps: ten trips and
// recoveries (open, half-open, closed: three transitions each), an hour of
// a key that flaps every six minutes, at 3.25 KiB a key (a Transition is
// 104 bytes; its strings are the event's, not copies).
const historyLen = 32

// history is a ring of a breaker's last historyLen transitions, and when
// the breaker was made. Transitions are added where they are recorded
// (breaker.record), never on the request path; the ring is allocated at a
// key's first transition, so that a key that never changes state costs a
// pointer. It has a lock of its own, taken by the transition that adds to
// it (under the breaker's mu) and by the status that reads it; nothing else
// is locked while it is held, so a reader never waits on a transition's
// work, only on its copy into the ring.
type history struct {
	created int64 // ns since the set's epoch

	mu   sync.Mutex
	ring *[historyLen]Transition // nil until the first transition
	n    uint64                  // transitions added, ever
}

// add keeps t, forgetting the oldest transition if the ring is full.
func (h *history) add(t Transition) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ring == nil {
		h.ring = new([historyLen]Transition)
	}
	h.ring[h.n%historyLen] = t
	h.n++
}

// list returns the transitions kept, oldest first, and whether older ones
// were forgotten.
func (h *history) list() (out []Transition, forgot bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return []Transition{}, false
	}
	kept := min(h.n, historyLen)
	out = make([]Transition, 0, kept)
	for i := h.n - kept; i < h.n; i++ {
		out = append(out, h.ring[i%historyLen])
	}
	return out, h.n > historyLen
}

// before is the state the key was in before the transition, as shown says.
func (t Transition) before() State {
	if t.Forced != StateClosed {
		return t.Forced
	}
	return t.From
}

// transitionOf is what the history keeps of e.
func transitionOf(e *Event) Transition {
	return Transition{Time: e.Time, From: e.From, To: e.To, Reason: e.Reason, By: e.By, Forced: e.Forced,
		Failures: e.Failures, Successes: e.Successes, ConsecutiveFailures: e.ConsecutiveFailures, Slow: e.Slow,
		Fleet: e.Fleet, Replica: e.Replica}
}
