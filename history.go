package httpbreaker

import (
	"encoding/json"
	"fmt"
	"time"
)

// Transition is one change of a key's state, and why: what a key's
// history keeps, what last tripped it, and what a hook is told.
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

// Reason says why a key's state changed. Its string is the log record's
// reason attribute.
type Reason string

// The reasons for a state change.
const (
	ReasonFailureRate         Reason = "failure_rate"         // closed or recovering to open: the window's failure rate (or the fleet's)
	ReasonSlowCallRate        Reason = "slow_call_rate"       // closed or recovering to open: the window's share of slow calls
	ReasonConsecutiveFailures Reason = "consecutive_failures" // closed or recovering to open: failures in a row
	ReasonCooldown            Reason = "cooldown_elapsed"     // open to half-open: the cooldown ended
	ReasonProbe               Reason = "probe"                // open to half-open: Probe ended the cooldown early
	ReasonProbeFailed         Reason = "probe_failed"         // half-open to open: too many probes failed
	ReasonProbeTimeout        Reason = "probe_timeout"        // half-open to open: a probe ran past ProbeTimeout
	ReasonProbesSucceeded     Reason = "probes_succeeded"     // half-open to closed or recovering: HalfOpenSuccesses probes succeeded
	ReasonRampDone            Reason = "ramp_done"            // recovering to closed
	ReasonForceOpen           Reason = "force_open"           // ForceOpen
	ReasonForceClose          Reason = "force_close"          // ForceClose
	ReasonRelease             Reason = "release"              // Release
	ReasonReset               Reason = "reset"                // Reset
	ReasonExpiry              Reason = "expiry"               // a timed ForceOpen ran out, or a fleet hold ended without the fleet's probes (it lapsed, or the store lost it)
	ReasonIdle                Reason = "idle"                 // a closed key's breaker dropped after its IdleTTL
)

// isTrip reports whether r is the reason of a trip from closed (or
// recovering): a window's trip rule.
func (r Reason) isTrip() bool {
	return r == ReasonFailureRate || r == ReasonSlowCallRate || r == ReasonConsecutiveFailures
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
	// created is when the breaker was made, and since when the key entered
	// the state it shows (ns since the set's epoch): a change underneath a
	// forced state does not move it.
	created, since int64
	lastAt         int64 // when the last change was told
	lastTrip       *Transition
	ring           *historyRing // nil until the first change
}

type historyRing struct {
	ring [historyLen]Transition
	n    uint64                       // transitions added, ever
	made [numStates][numStates]uint32 // transitions by from and to
}

// add keeps t, forgetting the oldest transition if the ring is full.
func (h *history) add(t Transition) {
	if h.ring == nil {
		h.ring = new(historyRing)
	}
	r := h.ring
	r.ring[r.n%historyLen] = t
	r.n++
	r.made[t.From][t.To]++
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

// transitionJSON is a Transition as JSON has it: its durations as Go
// writes them ("30s", "1m30s"), as a policy's are.
type transitionJSON struct {
	transitionFields
	OpenFor            string `json:"open_for,omitempty"`
	UpstreamRetryAfter string `json:"upstream_retry_after,omitempty"`
	ProbeRanFor        string `json:"probe_ran_for,omitempty"`
	RecoveryRamp       string `json:"recovery_ramp,omitempty"`
}

type transitionFields Transition // its fields, without its methods

// MarshalJSON writes the transition, its durations as "30s".
func (t Transition) MarshalJSON() ([]byte, error) {
	return json.Marshal(transitionJSON{transitionFields(t),
		durationText(t.OpenFor), durationText(t.UpstreamRetryAfter), durationText(t.ProbeRanFor), durationText(t.RecoveryRamp)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (t *Transition) UnmarshalJSON(b []byte) error {
	var j transitionJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*t = Transition(j.transitionFields)
	for _, d := range []struct {
		text string
		to   *time.Duration
	}{{j.OpenFor, &t.OpenFor}, {j.UpstreamRetryAfter, &t.UpstreamRetryAfter}, {j.ProbeRanFor, &t.ProbeRanFor}, {j.RecoveryRamp, &t.RecoveryRamp}} {
		if d.text == "" {
			continue
		}
		v, err := time.ParseDuration(d.text)
		if err != nil {
			return fmt.Errorf("httpbreaker: a transition's duration: %w", err)
		}
		*d.to = v
	}
	return nil
}

// durationText is d as Go writes it, "" for 0.
func durationText(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}
