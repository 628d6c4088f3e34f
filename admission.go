package httpbreaker

import (
	"time"
)

// This file is a breaker's admission path, which every side shares: admit
// decides whether a call may run, done records how an admitted one ended.
// A state forced by ForceOpen or ForceClose decides first; it is here too.

// ticket is an admitted call: what done needs to record it. It is a value,
// so that admitting a call allocates nothing.
type ticket struct {
	gen   uint32      // a closed or recovering call: the start of the window it counts in; 0 otherwise
	line  uint32      // the stripe its counters add to
	phase *tripPhase  // a probe of the breaker's own: the half-open phase it probes
	probe *probeRun   // a probe, of the breaker or the fleet
	lease *fleetLease // a probe of the fleet's: the lease that admitted it
}

// admitDecision says what admit decided.
type admitDecision struct {
	decision decision
	state    State         // the state that turned the call away
	retry    time.Duration // how long until calls are admitted again
}

// decision is what admit decided to do with a call.
type decision uint8

const (
	// admitCall: the breaker admits the call; the caller runs it and calls
	// done.
	admitCall decision = iota
	// rejectCall: the call must not run; the caller answers with the
	// rejection.
	rejectCall
	// passCall: the breaker does not track the call, which goes ahead
	// untracked: the mode is disabled, or the breaker only observes (observe
	// mode, ForceClose) and would have rejected it.
	passCall
)

// tryAdmit asks the breaker to admit one call, and returns the ticket to
// record it with if it does.
func (br *keyBreaker) tryAdmit() (ticket, admitDecision) {
	if br.override.Load() != nil || br.phase.Load() != nil || br.fleet != nil && br.fleet.isHolding() || br.mode != ModeEnforce {
		return br.admitSlow()
	}
	// Closed and enforcing: the common case.
	i := br.counters.line()
	br.counters.inc(countAdmitted, i)
	return ticket{gen: br.window.gen.Load(), line: i}, admitDecision{}
}

// admitSlow is admit when the breaker is not simply closed.
func (br *keyBreaker) admitSlow() (ticket, admitDecision) {
	for {
		now := br.clock.now()
		if br.nextDue() <= now {
			br.catchUp(now)
		}
		observe := br.mode == ModeObserve
		if o := br.override.Load(); o != nil {
			if o.until != 0 && o.until <= now {
				continue // ran out meanwhile
			}
			if o.state == StateForcedOpen { // a manual kill switch, in every mode
				left := br.policy.OpenFor
				if o.until != 0 {
					left = time.Duration(o.until - now)
				}
				return ticket{}, br.refuse(StateForcedOpen, left, false)
			}
			observe = true // forced closed: never reject
		}
		if br.mode == ModeDisabled {
			return ticket{}, admitDecision{decision: passCall}
		}
		if kf := br.fleet; kf != nil {
			if h := kf.hold.Load(); h != nil {
				t, a, ok := kf.admitHeld(br, h, observe, now)
				if !ok {
					continue
				}
				return t, a
			}
		}
		ph := br.phase.Load()
		if ph == nil {
			return br.countAdmit(ticket{gen: br.window.gen.Load()})
		}
		if ph.phaseDue() <= now {
			continue // its time came meanwhile
		}
		switch ph.state {
		case StateOpen:
			return ticket{}, br.refuse(StateOpen, time.Duration(ph.until-now), observe)
		case StateHalfOpen:
			if !ph.round.takeSlot() {
				// A probe judged meanwhile may have moved the phase on or
				// freed a slot.
				if br.phase.Load() != ph || ph.round.taken.Load() < ph.round.slots {
					continue
				}
				return ticket{}, br.refuse(StateHalfOpen, 0, observe)
			}
			if br.phase.Load() != ph { // the round ended while we took a slot
				ph.round.taken.Add(-1)
				continue
			}
			return br.countAdmit(ticket{phase: ph, probe: br.startProbe(ph, now)})
		default: // StateRecovering
			if !ph.rampAdmits(now) {
				return ticket{}, br.refuse(StateRecovering, 0, observe)
			}
			return br.countAdmit(ticket{gen: br.window.gen.Load()})
		}
	}
}

// countAdmit counts t's call as countAdmit.
func (br *keyBreaker) countAdmit(t ticket) (ticket, admitDecision) {
	t.line = br.counters.line()
	br.counters.inc(countAdmitted, t.line)
	return t, admitDecision{}
}

// refuse counts a call the breaker did not admit: as rejected, or as
// would_reject when it only observes and lets the call pass.
func (br *keyBreaker) refuse(st State, retry time.Duration, observe bool) admitDecision {
	if observe {
		br.counters.inc(countWouldReject, br.counters.line())
		return admitDecision{decision: passCall, state: st, retry: retry}
	}
	br.counters.inc(countRejected, br.counters.line())
	return admitDecision{decision: rejectCall, state: st, retry: retry}
}

// done records how the call that t admitted ended, at now (ns since the
// epoch): in the window it counts in, or as the probe it was. now may be the
// clock's recent reading, a tick old: a closed call's success takes it, and
// the window reads the clock near a bucket's end; everything else here
// reads the clock.
func (br *keyBreaker) done(t ticket, v verdict, now int64) {
	if v.outcome != Success || t.gen == 0 {
		now = br.clock.now()
	}
	// An upstream's Retry-After first: the outcome may trip the breaker.
	if v.retryAfter > 0 {
		br.noteUpstreamRetry(v, now)
	}
	kind := countOf(v)
	switch {
	case t.phase != nil:
		br.settle(t.phase, t.probe, v, kind, t.line, now) // counts it, unless its deadline did
	case t.lease != nil:
		br.window.addApart(kind, t.line)
		br.fleet.probeAnswered(br, t.lease, v)
	case t.gen != 0 && t.gen == br.window.gen.Load():
		if why, tripped := br.window.addOutcome(v, kind, t.line, now); tripped {
			br.openOnTrip(t.gen, why)
		}
	default: // admitted before the window started anew
		br.window.addApart(kind, t.line)
	}
	if v.outcome == Failure && br.fleet != nil {
		br.fleet.sawFailure(br.failureTotal())
	}
}

// failureTotal returns about how many calls failed, slow ones included: for
// the fleet's nudges, not a total.
func (br *keyBreaker) failureTotal() uint64 {
	return br.counters.approx(countFailure) + br.counters.approx(countSlowFailure)
}

// override is a state forced by ForceOpen or ForceClose.
type override struct {
	state State
	until int64  // 0: until Release
	by    string // who forced it
	fleet bool   // read from the fleet's shared state
}

// expireLocked ends the timed forced state o, whose time ran out: the key
// goes back to the state underneath, dated when it ran out. br.mu must be
// held.
func (br *keyBreaker) expireLocked(o *override) {
	before := br.viewLocked()
	br.override.Store(nil)
	br.tellChange(o.until, before, Transition{Reason: ReasonExpiry})
}
