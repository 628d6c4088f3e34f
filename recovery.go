package httpbreaker

import (
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// phase is where a tripped breaker is on its way back to closed:
//
//	closed -> open --cooldown--> half-open --HalfOpenSuccesses succeed--> closed
//	          ^                      |                        (or recovering, then closed)
//	          +--- too many fail ----+  (the nominal cooldown doubles, up to MaxOpenFor)
//
// The trip comes from the window's engine; everything after it is the
// breaker's own. Each change of phase is made under the breaker's mu and
// stores a new phase, whose fields are fixed but for the counters of its
// round and ramp. A call reads the phase with one atomic load. A phase with
// a time limit sets the set's alarm for it, which moves it on then; a call
// or a reader that comes first moves it on itself, dated at the same time.
type phase struct {
	state State // StateOpen, StateHalfOpen or StateRecovering
	// until is when an open phase's cooldown ends, and when a recovering
	// one's ramp ends (ns since set.epoch).
	until int64
	// nominal is the cooldown before jitter that this open phase, or the
	// open phase this half-open one follows, was drawn from.
	nominal time.Duration
	round   *round // half-open: the probes

	rampStart int64 // recovering: when the ramp began
	rampSeq   atomic.Uint64
}

// round counts the probes of one half-open phase. A probe takes a slot when
// it is admitted; an excluded probe gives it back, and a successful or
// failed one keeps it. need successes close the breaker; a failure that
// leaves fewer slots than successes still needed opens it again.
type round struct {
	slots     int32
	need      int32
	taken     atomic.Int32
	succeeded atomic.Int32
	failed    atomic.Int32
	excluded  atomic.Uint32

	// deadline is when the oldest running probe times out (ns since the
	// set's epoch); 0 when no probe runs or probes have no deadline. Calls
	// that find every slot taken read it, and expire the probes only once it
	// has passed.
	deadline atomic.Int64
	// timeout is the policy's ProbeTimeout (0: none), fixed for the round.
	timeout time.Duration
	mu      sync.Mutex
	running []*probe // started, not settled, oldest first
}

// probe is one running probe.
type probe struct {
	start int64 // ns since the set's epoch
	// settled is set once its outcome is recorded: when it ends, or when
	// its deadline passes first.
	settled atomic.Bool
	// answer is the outcome the probe has answered so far, plus 1; 0 while
	// it has answered nothing.
	answer atomic.Uint32
}

// answered records how a running probe has answered so far: Success once a
// stream has sent a success status, say. If the probe outlives the
// ProbeTimeout, that is its outcome; a probe that has answered nothing, or a
// failure, counts as failed. answered does nothing on a nil probe, which is
// what a call that is not a probe gets.
func (p *probe) answered(o Outcome) {
	if p != nil {
		p.answer.Store(uint32(validOutcome(o)) + 1)
	}
}

// take takes a probe slot if one is free.
func (r *round) take() bool {
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

// start registers a probe that began at now.
func (r *round) start(now int64) *probe {
	p := &probe{start: now}
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
func (r *round) finish(p *probe) {
	if r.timeout <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finishLocked(p)
}

// finishLocked is finish with r.mu held.
func (r *round) finishLocked(p *probe) {
	for i, q := range r.running {
		if q == p {
			r.running = append(r.running[:i], r.running[i+1:]...)
			break
		}
	}
	var next int64
	if len(r.running) > 0 {
		next = addSat(r.running[0].start, r.timeout)
	}
	r.deadline.Store(next)
}

// startProbe starts a probe that took a slot of ph's round at now, and sets
// the alarm for its deadline. Its outcome is recorded once: when it ends
// (settle), or when its deadline passes first (expireProbes), in which case
// its own outcome is not counted again.
func (br *breaker) startProbe(ph *phase, now int64) *probe {
	p := ph.round.start(now)
	if br.probeTimeout > 0 {
		br.wakeAt(addSat(now, br.probeTimeout) + 1)
	}
	return p
}

// settle records how a probe ended, unless its deadline has already
// recorded it.
func (br *breaker) settle(ph *phase, p *probe, v verdict, i uint32, now int64) {
	if !p.settled.CompareAndSwap(false, true) {
		return // timed out earlier: counted then
	}
	ph.round.finish(p)
	br.tally(v, i, now)
	br.probeDone(ph, v, ReasonProbeFailed, 0)
}

// expireProbes settles the probes of ph's round that have run past the
// ProbeTimeout at now, and reports whether it settled any: each counts as
// what it has answered so far (a stream that sent a success status
// succeeded; a connection taken over is excluded, and frees its slot), as
// failed if that is nothing or a failure.
// A failed one opens the breaker again, as a failed probe does, and frees
// the slots of the round; the probe's own outcome, when it comes, is not
// counted again.
func (br *breaker) expireProbes(ph *phase, now int64) bool {
	r := ph.round
	if d := r.deadline.Load(); d == 0 || now <= d {
		return false
	}
	// The round's lock is held until the expired probes are judged, so that
	// a reader that comes meanwhile waits for the state they lead to.
	r.mu.Lock()
	defer r.mu.Unlock()
	var expired []*probe
	for _, p := range r.running {
		if now > addSat(p.start, r.timeout) && p.settled.CompareAndSwap(false, true) {
			expired = append(expired, p)
		}
	}
	for _, p := range expired {
		v := verdict{outcome: Failure}
		if a := p.answer.Load(); a != 0 {
			v.outcome = Outcome(a - 1)
		}
		br.tally(v, stripe(), now)
		br.probeDone(ph, v, ReasonProbeTimeout, time.Duration(now-p.start))
		// Last, so that a reader who finds the deadline moved finds the
		// state the probe led to.
		r.finishLocked(p)
	}
	return len(expired) > 0
}

// goldenFraction spreads the recovery ramp's admissions evenly: the
// fractional parts of n times it are equidistributed in [0, 1).
const goldenFraction = 0.6180339887498949

// rampAdmits reports whether a call is admitted at now while recovering: the
// share admitted rises linearly from 0 to 1 over the ramp.
func (ph *phase) rampAdmits(now int64) bool {
	share := float64(now-ph.rampStart) / float64(ph.until-ph.rampStart)
	_, frac := math.Modf(float64(ph.rampSeq.Add(1)) * goldenFraction)
	return frac < share
}

// trip opens the breaker from closed (or recovering) for OpenFor, or for
// longer if an upstream asked for it.
func (br *breaker) trip(why tripInfo) {
	br.mu.Lock()
	defer br.mu.Unlock()
	now := br.clock.now()
	from := StateClosed
	if ph := br.phase.Load(); ph != nil && ph.state == StateRecovering {
		from = StateRecovering
	}
	c := why.counts
	e := Event{From: from, To: StateOpen, Reason: why.reason,
		Failures: sat32(c.failure), Successes: sat32(c.success), Slow: sat32(c.slow),
		ConsecutiveFailures: c.consecutive, FailureRate: failureRate(sat32(c.failure), sat32(c.success))}
	var until int64
	until, e.OpenFor, e.UpstreamRetryAfter = br.cooldown(now, br.policy.OpenFor)
	br.lastTrip.Store(&Trip{At: br.clock.at(now), Reason: e.Reason, Failures: e.Failures,
		Successes: e.Successes, Slow: e.Slow, ConsecutiveFailures: e.ConsecutiveFailures})
	br.record(now, e)
	br.openLocked(&phase{state: StateOpen, until: until, nominal: br.policy.OpenFor})
}

// openLocked puts br in the open phase ph, and sets the alarm for the end
// of its cooldown. br.mu must be held. Like every change of phase, it comes
// after the change's record: whoever sees the new phase finds its record
// handed to the notifier.
func (br *breaker) openLocked(ph *phase) {
	br.phase.Store(ph)
	br.wakeAt(ph.until + 1)
}

// cooldown returns when an open phase that starts at now with the given
// cooldown ends: later if an upstream's Retry-After asks for longer, up to
// the longest cooldown. It returns how long that is from now, and the delay
// the upstream asked for when it made the cooldown longer.
func (br *breaker) cooldown(now int64, d time.Duration) (until int64, openFor, upstream time.Duration) {
	until = addSat(now, d)
	if u := br.upstreamUntil.Load(); u > until {
		until = min(u, addSat(now, br.maxCooldown()))
		upstream = time.Duration(u - now)
	}
	return until, time.Duration(until - now), upstream
}

// halfOpen ends ph's cooldown at t: a new round of probes begins. e says
// why: at the end of the cooldown, or when an operator asked for probes
// (Probe).
func (br *breaker) halfOpen(ph *phase, t int64) {
	br.halfOpenWhy(ph, t, Event{Reason: ReasonCooldown})
}

func (br *breaker) halfOpenWhy(ph *phase, t int64, e Event) bool {
	br.mu.Lock()
	defer br.mu.Unlock()
	if br.phase.Load() != ph {
		return false
	}
	p := br.policy
	e.From, e.To = StateOpen, StateHalfOpen
	br.record(t, e)
	br.phase.Store(&phase{state: StateHalfOpen, nominal: ph.nominal,
		round: &round{slots: int32(p.HalfOpenRequests), need: int32(p.HalfOpenSuccesses), timeout: br.probeTimeout}})
	return true
}

// probeNow ends an open breaker's cooldown now, for Probe: the next calls
// are its probes. It reports whether the breaker was open.
func (br *breaker) probeNow(e Event) bool {
	for {
		ph := br.phase.Load()
		if ph == nil || ph.state != StateOpen {
			return false
		}
		if br.halfOpenWhy(ph, br.clock.now(), e) {
			return true
		}
	}
}

// probeDone records how a probe of ph's round ended: HalfOpenSuccesses
// successes close the breaker, and a failure that leaves too few probes for
// them opens it again. A probe whose round has ended changes nothing. why
// says why a failure reopens (ReasonProbeFailed or ReasonProbeTimeout), and
// ranFor how long the probe had run, for a timeout.
func (br *breaker) probeDone(ph *phase, v verdict, why Reason, ranFor time.Duration) {
	r := ph.round
	switch v.outcome {
	case Excluded:
		r.excluded.Add(1)
		r.taken.Add(-1)
	case Success:
		if r.succeeded.Add(1) == r.need {
			br.probesSucceeded(ph)
		}
	default:
		if r.failed.Add(1) == r.slots-r.need+1 {
			br.reopen(ph, Event{Reason: why, ProbeRanFor: ranFor,
				Successes: uint32(max(r.succeeded.Load(), 0)), Failures: uint32(r.failed.Load())})
		}
	}
}

// reopen opens the breaker again after a failed probe of ph, for twice the
// last nominal cooldown, with jitter. e says why.
func (br *breaker) reopen(ph *phase, e Event) {
	br.mu.Lock()
	defer br.mu.Unlock()
	if br.phase.Load() != ph {
		return
	}
	now := br.clock.now()
	nominal := br.backoff(ph.nominal)
	var until int64
	until, e.OpenFor, e.UpstreamRetryAfter = br.cooldown(now, br.jitter(nominal))
	e.From, e.To = StateHalfOpen, StateOpen
	br.record(now, e)
	br.openLocked(&phase{state: StateOpen, until: until, nominal: nominal})
}

// probesSucceeded closes the breaker after enough probes of ph succeeded. The
// event carries the round's counts.
func (br *breaker) probesSucceeded(ph *phase) {
	br.mu.Lock()
	defer br.mu.Unlock()
	if br.phase.Load() != ph {
		return
	}
	now := br.clock.now()
	to, ramp := br.closedState()
	r := ph.round
	br.record(now, Event{From: StateHalfOpen, To: to, Reason: ReasonProbesSucceeded, RecoveryRamp: ramp,
		Successes: uint32(r.succeeded.Load()), Failures: uint32(r.failed.Load())})
	br.closeLocked(now)
}

// closedState returns the state a breaker closes to once probes
// succeeded, closed or recovering, and its ramp.
func (br *breaker) closedState() (State, time.Duration) {
	if ramp := br.policy.RecoveryRamp; ramp > 0 {
		return StateRecovering, ramp
	}
	return StateClosed, 0
}

// closeLocked closes the breaker once probes succeeded, its own or the
// fleet's: with a new window and the first cooldown, through the recovery
// ramp if the policy has one (closedState). br.mu must be held.
func (br *breaker) closeLocked(now int64) {
	br.upstreamUntil.Store(0)
	br.win.Store(newWindow(br.key, br.policy, br.clock, now, br.opened))
	if st, ramp := br.closedState(); st == StateRecovering {
		ph := &phase{state: StateRecovering, rampStart: now, until: addSat(now, ramp)}
		br.phase.Store(ph)
		br.wakeAt(ph.until)
		return
	}
	br.phase.Store(nil)
}

// endRamp ends ph's recovery ramp, at its end: the breaker is closed.
func (br *breaker) endRamp(ph *phase) {
	br.mu.Lock()
	defer br.mu.Unlock()
	if br.phase.Load() != ph {
		return
	}
	br.record(ph.until, Event{From: StateRecovering, To: StateClosed, Reason: ReasonRampDone})
	br.phase.Store(nil)
}

// backoff returns the nominal cooldown after a failed probe: twice the
// last one, at most MaxOpenFor.
func (br *breaker) backoff(last time.Duration) time.Duration {
	p := br.policy
	if p.MaxOpenFor == Off {
		return p.OpenFor
	}
	if last >= p.MaxOpenFor/2 {
		return p.MaxOpenFor
	}
	return 2 * last
}

// jitter returns the cooldown to wait for a nominal one: up to a fifth
// less, at random, so that replicas that tripped together probe apart, and
// never below OpenFor. The jitter does not compound: each cooldown is drawn
// from its own nominal value.
func (br *breaker) jitter(nominal time.Duration) time.Duration {
	return max(nominal-rand.N(nominal/5+1), br.policy.OpenFor)
}

// maxCooldown is the longest the breaker stays open at a time.
func (br *breaker) maxCooldown() time.Duration {
	if br.policy.MaxOpenFor == Off {
		return br.policy.OpenFor
	}
	return br.policy.MaxOpenFor
}

// tally counts a finished call's verdict at now through stripe i, notes
// the delay an upstream asked for with a failure, and tells the fleet of a
// failure.
func (br *breaker) tally(v verdict, i uint32, now int64) {
	if v.retryAfter > 0 {
		br.noteUpstreamRetry(v, now)
	}
	br.count(v, i)
}

// count adds an outcome to the breaker's totals (and tells the fleet of a
// failure).
func (br *breaker) count(v verdict, i uint32) {
	kind := tallyOf[v.outcome]
	switch {
	case v.blamed:
		kind = tallyUpstream
	case v.slow:
		kind = tallySlow
	}
	br.tallies.add(i, kind)
	if v.outcome == Failure && br.fleet != nil {
		br.fleet.failed(br.tallies.sum(tallyFailure))
	}
}

// noteUpstreamRetry records that a failure at now asked, with Retry-After,
// not to be retried for a while.
func (br *breaker) noteUpstreamRetry(v verdict, now int64) {
	if v.outcome != Failure || !br.policy.UpstreamRetryAfter.honours(v.rateLimited) {
		return
	}
	until := addSat(now, v.retryAfter)
	for {
		old := br.upstreamUntil.Load()
		if old >= until || br.upstreamUntil.CompareAndSwap(old, until) {
			return
		}
	}
}
