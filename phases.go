package httpbreaker

import (
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// tripPhase is where a tripped breaker is on its way back to closed:
//
//	closed --trip--> open --cooldown--> half-open --HalfOpenSuccesses succeed--> closed
//	                 ^                      |                        (or recovering, then closed)
//	                 +---- too many fail ---+  (the nominal cooldown doubles, up to MaxOpenFor)
//
// The trip is the window's engine's to decide (engine.go); everything after
// it is here. Each change of phase is made under the breaker's mu and
// stores a new phase, whose fields are fixed but for its round's counters
// and its ramp's sequence. A call reads the phase with one atomic load.
type tripPhase struct {
	state State // StateOpen, StateHalfOpen or StateRecovering
	// until is when an open phase's cooldown ends, and when a recovering
	// one's ramp ends (ns since the set's epoch).
	until int64
	// nominal is the cooldown before jitter that this open phase, or the
	// open phase this half-open one follows, was drawn from.
	nominal time.Duration
	round   *probeRound // half-open: the probes

	rampStart int64 // recovering: when the ramp began
	rampSeq   atomic.Uint64
}

// phaseDue returns when the phase moves on by itself: at the end of a
// cooldown or a ramp, and when a probe's deadline passes.
func (ph *tripPhase) phaseDue() int64 {
	if ph.state != StateHalfOpen {
		return ph.until
	}
	if d := ph.round.deadline.Load(); d != 0 {
		return d
	}
	return notDue
}

// probeRound counts the probes of one half-open phase. A probe takes a slot when
// it is admitted; an excluded probe gives it back, and a successful or
// failed one keeps it. need successes close the breaker; a failure that
// leaves fewer slots than successes still needed opens it again.
type probeRound struct {
	slots, need int32
	taken       atomic.Int32
	// What the probes came to, under the breaker's mu.
	succeeded, failed int32
	excluded          uint32

	// deadline is when the oldest running probe times out (ns since the
	// set's epoch); 0 when no probe runs or probes have no deadline.
	deadline atomic.Int64
	// timeout is the policy's ProbeTimeout (0: none), fixed for the round.
	timeout time.Duration
	mu      sync.Mutex
	running []*probeRun // started, not settled, oldest first
}

// probeRun is one running probe.
type probeRun struct {
	start int64 // ns since the set's epoch
	// settled is set once its outcome is recorded: when it ends, or when
	// its deadline passes first.
	settled atomic.Bool
	// answer is the outcome the probe has answered so far, plus 1; 0 while
	// it has answered nothing.
	answer atomic.Uint32
}

// noteAnswer records how a running probe has answered so far: Success once a
// stream has sent a success status, say. If the probe outlives the
// ProbeTimeout, that is its outcome; a probe that has answered nothing, or a
// failure, counts as failed. It does nothing on a nil probe, which is
// what a call that is not a probe gets.
func (p *probeRun) noteAnswer(o Outcome) {
	if p != nil {
		p.answer.Store(uint32(validOutcome(o)) + 1)
	}
}

// takeSlot takes a probe slot if one is free.
func (r *probeRound) takeSlot() bool {
	for {
		n := r.taken.Load()
		if n >= r.slots {
			return false
		}
		if r.taken.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// registerProbe registers a probe that began at now.
func (r *probeRound) registerProbe(now int64) *probeRun {
	p := &probeRun{start: now}
	if r.timeout <= 0 {
		return p
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running = append(r.running, p)
	if len(r.running) == 1 {
		r.deadline.Store(addSat(now, r.timeout))
	}
	return p
}

// finish forgets a settled probe, and moves the deadline to the next one.
func (r *probeRound) finish(p *probeRun) {
	if r.timeout <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running = removeProbe(r.running, p)
	r.setDeadlineLocked()
}

func (r *probeRound) setDeadlineLocked() {
	var next int64
	if len(r.running) > 0 {
		next = addSat(r.running[0].start, r.timeout)
	}
	r.deadline.Store(next)
}

func removeProbe(running []*probeRun, p *probeRun) []*probeRun {
	for i, q := range running {
		if q == p {
			return append(running[:i], running[i+1:]...)
		}
	}
	return running
}

// startProbe starts a probe that took a slot of ph's round at now. Its
// outcome is recorded once: when it ends (settle), or when its deadline
// passes first (expireProbesLocked), in which case its own outcome is not
// counted again.
func (br *keyBreaker) startProbe(ph *tripPhase, now int64) *probeRun {
	p := ph.round.registerProbe(now)
	if br.probeTimeout > 0 {
		br.mu.Lock()
		br.unlockAndSetAlarm() // sets the alarm for its deadline
	}
	return p
}

// settle records how a probe of ph ended at now, unless its deadline has
// already recorded it.
func (br *keyBreaker) settle(ph *tripPhase, p *probeRun, v verdict, kind int, line uint32, now int64) {
	if !p.settled.CompareAndSwap(false, true) {
		return // timed out earlier: counted then
	}
	ph.round.finish(p)
	br.window.addApart(kind, line)
	br.beginChange(now)
	br.probeDoneLocked(ph, v, ReasonProbeFailed, 0, now)
	br.unlockAndSetAlarm()
}

// moveOnPhaseLocked makes ph's change that was due at at: the end of a
// cooldown (half-open), of a ramp (closed), or a probe's deadline, judged
// at now. br.mu must be held.
func (br *keyBreaker) moveOnPhaseLocked(ph *tripPhase, at, now int64) {
	switch ph.state {
	case StateOpen:
		br.halfOpenLocked(ph, at, Transition{Reason: ReasonCooldown})
	case StateRecovering:
		before := br.viewLocked()
		br.phase.Store(nil)
		br.tellChange(at, before, Transition{Reason: ReasonRampDone})
	default:
		br.expireProbesLocked(ph, now)
	}
}

// expireProbesLocked settles the probes of ph's round that have run for the
// ProbeTimeout by now: each counts as what it has answered so far (a
// stream that sent a success status succeeded; a connection taken over is
// excluded, and frees its slot), as failed if that is nothing or a failure.
// A failed one opens the breaker again, as a failed probe does; the probe's
// own outcome, when it comes, is not counted again. br.mu must be held.
func (br *keyBreaker) expireProbesLocked(ph *tripPhase, now int64) {
	r := ph.round
	r.mu.Lock()
	var expired []*probeRun
	for _, p := range r.running {
		if now >= addSat(p.start, r.timeout) && p.settled.CompareAndSwap(false, true) {
			expired = append(expired, p)
		}
	}
	r.mu.Unlock()
	for _, p := range expired {
		v := verdict{outcome: Failure}
		if a := p.answer.Load(); a != 0 {
			v.outcome = Outcome(a - 1)
		}
		br.window.addApart(countOf(v), 0)
		at := addSat(p.start, r.timeout)
		br.probeDoneLocked(ph, v, ReasonProbeTimeout, time.Duration(at-p.start), at)
	}
	// The deadline moves last: a call that reads it in the meantime finds
	// the round due, and waits on br.mu for the state the probes led to.
	r.mu.Lock()
	kept := r.running[:0]
	for _, p := range r.running {
		if now < addSat(p.start, r.timeout) { // a probe that settled meanwhile goes too
			kept = append(kept, p)
		}
	}
	clear(r.running[len(kept):])
	r.running = kept
	r.setDeadlineLocked()
	r.mu.Unlock()
}

// goldenFraction spreads the recovery ramp's admissions evenly: the
// fractional parts of n times it are equidistributed in [0, 1).
const goldenFraction = 0.6180339887498949

// rampAdmits reports whether a call is admitted at now while recovering: the
// share admitted rises linearly from 0 to 1 over the ramp.
func (ph *tripPhase) rampAdmits(now int64) bool {
	share := float64(now-ph.rampStart) / float64(ph.until-ph.rampStart)
	_, frac := math.Modf(float64(ph.rampSeq.Add(1)) * goldenFraction)
	return frac < share
}

// openOnTrip opens the breaker from closed (or recovering) for OpenFor, or for
// longer if an upstream asked for it, when the window that started as gen
// tripped for why; a window started anew since, or a breaker no longer
// closed, is left alone.
func (br *keyBreaker) openOnTrip(gen uint32, why tripInfo) {
	now := br.clock.now()
	before := br.beginChange(now)
	defer br.unlockAndSetAlarm()
	ph := br.phase.Load()
	if br.window.gen.Load() != gen || ph != nil && ph.state != StateRecovering {
		return
	}
	c := why.counts
	e := Transition{Reason: why.reason, Failures: sat32(c.failure), Successes: sat32(c.success), Slow: sat32(c.slow),
		ConsecutiveFailures: c.consecutive}
	var until int64
	until, e.OpenFor, e.UpstreamRetryAfter = br.cooldownEnd(now, br.policy.OpenFor)
	br.phase.Store(&tripPhase{state: StateOpen, until: until, nominal: br.policy.OpenFor})
	br.tellChange(now, before, e)
	e.Time, e.From, e.To = br.clock.at(now), StateClosed, StateOpen
	if ph != nil {
		e.From = StateRecovering
	}
	br.history.lastTrip = &e
}

// cooldownEnd returns when an open phase that starts at now with the given
// cooldownEnd ends: later if an upstream's Retry-After asks for longer, up to
// the longest cooldown. It returns how long that is from now, and the delay
// the upstream asked for when it made the cooldown longer.
func (br *keyBreaker) cooldownEnd(now int64, d time.Duration) (until int64, openFor, upstream time.Duration) {
	until = addSat(now, d)
	if u := br.upstreamUntil.Load(); u > until {
		until = min(u, addSat(now, br.maxCooldown()))
		upstream = time.Duration(u - now)
	}
	return until, time.Duration(until - now), upstream
}

// halfOpenLocked ends ph's cooldown at t: a new round of probes begins. e
// says why: the cooldown ended, or an operator asked for probes (Probe).
// br.mu must be held.
func (br *keyBreaker) halfOpenLocked(ph *tripPhase, t int64, e Transition) {
	p := br.policy
	before := br.viewLocked()
	br.phase.Store(&tripPhase{state: StateHalfOpen, nominal: ph.nominal,
		round: &probeRound{slots: int32(p.HalfOpenRequests), need: int32(p.HalfOpenSuccesses), timeout: br.probeTimeout}})
	br.tellChange(t, before, e)
}

// probeDoneLocked records how a probe of ph's round ended at at:
// HalfOpenSuccesses successes close the breaker, and a failure that leaves
// too few probes for them opens it again. A probe whose round has ended
// changes nothing. why says why a failure reopens (ReasonProbeFailed or
// ReasonProbeTimeout), and ranFor how long the probe had run, for a
// timeout. br.mu must be held.
func (br *keyBreaker) probeDoneLocked(ph *tripPhase, v verdict, why Reason, ranFor time.Duration, at int64) {
	r := ph.round
	if br.phase.Load() != ph {
		return
	}
	outcome := v.outcome
	if outcome == Success && v.slow {
		// With SlowCallRate a slow call is judged apart from its outcome;
		// a slow probe shows the slowness that may have tripped the
		// breaker is still there, so it does not count towards closing.
		outcome = Failure
	}
	switch outcome {
	case Excluded:
		r.excluded++
		r.taken.Add(-1)
	case Success:
		if r.succeeded++; r.succeeded == r.need {
			br.closeAfterProbesLocked(ph, at)
		}
	default:
		if r.failed++; r.failed == r.slots-r.need+1 {
			br.reopenLocked(ph, at, Transition{Reason: why, ProbeRanFor: ranFor,
				Successes: uint32(r.succeeded), Failures: uint32(r.failed)})
		}
	}
}

// reopenLocked opens the breaker again at now after a failed probe of ph,
// for twice the last nominal cooldown, with jitter. e says why. br.mu must
// be held.
func (br *keyBreaker) reopenLocked(ph *tripPhase, now int64, e Transition) {
	nominal := br.backedOff(ph.nominal)
	var until int64
	until, e.OpenFor, e.UpstreamRetryAfter = br.cooldownEnd(now, br.withJitter(nominal))
	before := br.viewLocked()
	br.phase.Store(&tripPhase{state: StateOpen, until: until, nominal: nominal})
	br.tellChange(now, before, e)
}

// closeAfterProbesLocked closes the breaker at now after enough probes of
// ph succeeded. The event carries the round's counts. br.mu must be held.
func (br *keyBreaker) closeAfterProbesLocked(ph *tripPhase, now int64) {
	r := ph.round
	before := br.viewLocked()
	ramp := br.closeLocked(now)
	br.tellChange(now, before, Transition{Reason: ReasonProbesSucceeded, RecoveryRamp: ramp,
		Successes: uint32(r.succeeded), Failures: uint32(r.failed)})
}

// closeLocked closes the breaker at now once probes succeeded, its own or
// the fleet's: with a new window and the first cooldown, through the
// recovery ramp if the policy has one, whose length it returns. br.mu must
// be held.
func (br *keyBreaker) closeLocked(now int64) (ramp time.Duration) {
	br.upstreamUntil.Store(0)
	br.window.restart(now)
	if ramp = br.policy.RecoveryRamp; ramp > 0 {
		br.phase.Store(&tripPhase{state: StateRecovering, rampStart: now, until: addSat(now, ramp)})
		return ramp
	}
	br.phase.Store(nil)
	return 0
}

// backedOff returns the nominal cooldown after a failed probe: twice the
// last one, at most MaxOpenFor.
func (br *keyBreaker) backedOff(last time.Duration) time.Duration {
	p := br.policy
	if p.MaxOpenFor == Off {
		return p.OpenFor
	}
	if last >= p.MaxOpenFor/2 {
		return p.MaxOpenFor
	}
	return 2 * last
}

// withJitter returns the cooldown to wait for a nominal one: up to a fifth
// less, at random, so that replicas that tripped together probe apart, and
// never below OpenFor. The jitter does not compound: each cooldown is drawn
// from its own nominal value.
func (br *keyBreaker) withJitter(nominal time.Duration) time.Duration {
	return max(nominal-rand.N(nominal/5+1), br.policy.OpenFor)
}

// maxCooldown is the longest the breaker stays open at a time.
func (br *keyBreaker) maxCooldown() time.Duration {
	if br.policy.MaxOpenFor == Off {
		return br.policy.OpenFor
	}
	return br.policy.MaxOpenFor
}
