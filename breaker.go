package httpbreaker

import (
	"sync"
	"sync/atomic"
	"time"
)

// breaker is one key's circuit breaker, and admit and done are its
// admission path: every side that puts calls behind a breaker (the server
// middleware, the client transport, Do) asks admit to let a call through,
// runs it, and tells done how it ended. The breaker knows nothing of HTTP.
//
// A breaker is closed, or on its way back after a trip:
//
//   - closed, it admits every call and counts outcomes in its window
//     (window.go), whose engine decides the trip.
//   - a trip starts a phase (recovery.go): open until the cooldown ends
//     (OpenFor, doubled with jitter after each failed probe, at least an
//     upstream's Retry-After), then half-open with a round of
//     HalfOpenRequests probes, then closed with a new window, or, with a
//     RecoveryRamp, recovering first.
//   - ForceOpen and ForceClose set an override that decides first.
//   - with shared state, the fleet may hold the key open or half-open
//     (fleet_hold.go), whatever the breaker's own phase.
//
// Phases change under mu, which is never held while calling code of the
// user's; calls read them with one atomic load each. A closed call reads
// the clock once, when it ends, and writes only counters of its own stripe.
// When a phase's time is up, the set's alarm moves it on, so that the
// change happens at its time whether or not a call comes.
type breaker struct {
	clock   *clock
	alarm   *alarm
	notes   *notifier
	judging judging
	key     string
	policy  Policy // resolved
	mode    Mode
	idleTTL time.Duration // 0: never dropped
	// probeTimeout is how long a probe may run before it counts as failed;
	// 0: for ever.
	probeTimeout time.Duration

	win      atomic.Pointer[window] // the closed state's window
	phase    atomic.Pointer[phase]  // nil while closed
	override atomic.Pointer[override]
	// fleet is what the fleet adds to the key, with shared state; nil
	// without.
	fleet holder
	// upstreamUntil is when the latest Retry-After of an upstream's failure
	// ends (ns since the epoch); 0 when there is none.
	upstreamUntil atomic.Int64
	lastTrip      atomic.Pointer[Trip] // what last opened it from closed, for Status
	since         atomic.Int64         // last state change, ns since the epoch
	dropped       atomic.Bool          // dropped as idle: a new breaker serves the key
	sides         atomic.Uint32        // sideServer | sideClient: who has put calls through it
	blame         blameState           // what it knows of blame, as a route group and as an upstream (blame.go)

	mu sync.Mutex // serialises changes of phase and of the fleet's hold

	tallies tallies
	changes [numStates][numStates]atomic.Uint64
	history history // the last transitions, for Status

	// Guarded by the set's mu: what the idle sweep saw last.
	sweepTotal uint64
	activeAt   int64
}

// defaultKeyedIdleTTL is the IdleTTL of keys that a KeyFunc chose, unless
// the policy sets one.
const defaultKeyedIdleTTL = time.Hour

// newBreaker returns key's breaker with the resolved policy p, made at now
// on clock c, whose deadlines a sets; keyed says a KeyFunc chose the key.
// It reports state changes to notes, and judges calls with classify.
func newBreaker(key string, p Policy, keyed bool, c *clock, a *alarm, now int64, notes *notifier, classify Classifier) *breaker {
	br := &breaker{clock: c, alarm: a, notes: notes, key: key, policy: p, mode: p.Mode,
		activeAt: now, tallies: newTallies()}
	br.judging = judging{classify: classify, slowApart: p.SlowCallRate > 0}
	if p.SlowCall != Off {
		br.judging.slowCall = p.SlowCall
	}
	if p.ProbeTimeout != Off {
		br.probeTimeout = p.ProbeTimeout
	}
	switch {
	case p.IdleTTL == 0 && keyed:
		br.policy.IdleTTL = defaultKeyedIdleTTL
	case p.IdleTTL == 0:
		br.policy.IdleTTL = Off
	}
	if br.policy.IdleTTL != Off {
		br.idleTTL = br.policy.IdleTTL
	}
	br.since.Store(now)
	br.history.created = now
	br.win.Store(newWindow(br.key, br.policy, br.clock, now, br.opened))
	return br
}

// ticket is an admitted call: what done needs to record it. It is a value,
// so that admitting a call allocates nothing.
type ticket struct {
	win   *window // a closed or recovering call: the window it counts in
	phase *phase  // a probe of the breaker's own: its round
	probe *probe  // a probe, of the breaker or the fleet
	lease any     // a probe of the fleet's: the lease that admitted it
}

// admission says what admit decided.
type admission struct {
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

// admit asks the breaker to admit one call, and returns the ticket to
// record it with if it does.
func (br *breaker) admit() (ticket, admission) {
	if br.override.Load() != nil || br.phase.Load() != nil || br.fleet != nil && br.fleet.holds() || br.mode != ModeEnforce {
		return br.admitSlow()
	}
	// Closed and enforcing: the common case.
	br.tallies.add(stripe(), tallyAdmitted)
	return ticket{win: br.win.Load()}, admission{}
}

// admitSlow is admit when the breaker is not simply closed.
func (br *breaker) admitSlow() (ticket, admission) {
	observe := br.mode == ModeObserve
	if br.override.Load() != nil {
		if st, left, ok := br.forced(); ok {
			if st == StateForcedOpen { // a manual kill switch, in every mode
				if left == 0 {
					left = br.policy.OpenFor
				}
				return ticket{}, br.refuse(st, left, false)
			}
			observe = true // forced closed: never reject
		}
	}
	if br.mode == ModeDisabled {
		return ticket{}, admission{decision: passCall}
	}
	if br.fleet != nil && br.fleet.holds() {
		if a, lease, held := br.fleet.admit(br, observe); held {
			if lease == nil {
				return ticket{}, a
			}
			return br.admitted(ticket{lease: lease, probe: &probe{start: br.clock.now()}})
		}
	}
	for {
		ph := br.phase.Load()
		if ph == nil {
			return br.admitted(ticket{win: br.win.Load()})
		}
		now := br.clock.now()
		switch ph.state {
		case StateOpen:
			if now <= ph.until {
				return ticket{}, br.refuse(StateOpen, time.Duration(ph.until-now), observe)
			}
			br.halfOpen(ph, ph.until)
		case StateHalfOpen:
			if !ph.round.take() {
				// A probe judged meanwhile (here or by the alarm) may have
				// moved the phase on or freed a slot.
				if br.expireProbes(ph, now) || br.phase.Load() != ph || ph.round.taken.Load() < ph.round.slots {
					continue
				}
				return ticket{}, br.refuse(StateHalfOpen, 0, observe)
			}
			if br.phase.Load() != ph { // the round ended while we took a slot
				ph.round.taken.Add(-1)
				continue
			}
			return br.admitted(ticket{phase: ph, probe: br.startProbe(ph, now)})
		case StateRecovering:
			if now >= ph.until {
				br.endRamp(ph)
				continue
			}
			if !ph.rampAdmits(now) {
				return ticket{}, br.refuse(StateRecovering, 0, observe)
			}
			return br.admitted(ticket{win: br.win.Load()})
		}
	}
}

// admitted counts t's call as admitted.
func (br *breaker) admitted(t ticket) (ticket, admission) {
	br.tallies.add(stripe(), tallyAdmitted)
	return t, admission{}
}

// done records how the call that t admitted ended, at now (ns since the
// epoch): in the window it counts in, or as the probe it was.
func (br *breaker) done(t ticket, v verdict, now int64) {
	i := stripe() // the P the call ends on, which may not be the one it began on
	if t.phase != nil {
		br.settle(t.phase, t.probe, v, i, now) // counts it, unless its deadline did
		return
	}
	// An upstream's Retry-After before the window, which may trip the
	// breaker; the window before the totals: what the totals count, the
	// window holds already, so that a sync that reads the totals and then
	// the window never finds the window short of them.
	if v.retryAfter > 0 {
		br.noteUpstreamRetry(v, now)
	}
	if t.win != nil {
		t.win.record(v.outcome, v.slow, now, i)
	}
	br.count(v, i)
	if t.lease != nil {
		br.fleet.probed(br, t.lease, v)
	}
}

// refuse counts a call the breaker did not admit: as rejected, or as
// would_reject when it only observes and lets the call pass.
func (br *breaker) refuse(st State, retry time.Duration, observe bool) admission {
	if observe {
		br.tallies.add(stripe(), tallyWouldReject)
		return admission{decision: passCall, state: st, retry: retry}
	}
	br.tallies.add(stripe(), tallyRejected)
	return admission{decision: rejectCall, state: st, retry: retry}
}

// holder is what may hold a breaker's key open or half-open from outside,
// whatever the breaker's own phase: the fleet, with shared state
// (keyFleet, fleet_hold.go). A breaker without shared state has none.
type holder interface {
	// holds reports whether a hold is on the key (it may have lapsed).
	holds() bool
	// state returns the state the hold puts br in at now, if it does.
	state(br *breaker, now int64) (State, bool)
	// admit decides a call while the hold is on, unless it has lapsed
	// (held false): a refusal, or a probe of the holder's, for which it
	// returns the lease that admits it. The breaker runs the probe and hands
	// its verdict to probed.
	admit(br *breaker, observe bool) (a admission, lease any, held bool)
	probed(br *breaker, lease any, v verdict)
	// failed hears of each failure, with the key's failure total.
	failed(failures uint64)
	// probeNow ends the hold's cooldown now, for Probe, if it is open.
	probeNow(br *breaker, e Event) bool
	// reset drops the hold, for Reset.
	reset()
}

// The sides that put calls through a breaker, for Status.Side.
const (
	sideServer uint32 = 1 << iota
	sideClient
)

// side notes that side s puts calls through br. It writes only the first
// time, so that a side may call it per request.
func (br *breaker) side(s uint32) {
	if br.sides.Load()&s == 0 {
		br.sides.Or(s)
	}
}

// wakeAt sets the set's alarm to look at br's state at t, when something
// of it ends.
func (br *breaker) wakeAt(t int64) { br.alarm.set(t, br.wake) }

// wake looks at br's state, which moves it on if its time is up.
func (br *breaker) wake() { br.state() }

// opened is called by w's engine when w trips the breaker.
func (br *breaker) opened(w *window, why tripInfo) {
	if br.win.Load() != w {
		return // a window replaced by Reset or a recovery
	}
	br.trip(why)
}

// override is a state forced by ForceOpen or ForceClose.
type override struct {
	state State
	until int64  // 0: until Release
	by    string // who forced it
	fleet bool   // read from the fleet's shared state
}

// forced returns the state that ForceOpen or ForceClose set and the time it
// has left (0: until Release), ending it, at the time it ran out, if its
// time is up.
func (br *breaker) forced() (State, time.Duration, bool) {
	o := br.override.Load()
	if o == nil {
		return 0, 0, false
	}
	if o.until == 0 {
		return o.state, 0, true
	}
	now := br.clock.now()
	if now <= o.until {
		return o.state, time.Duration(o.until - now), true
	}
	// The record comes before the change, as every change's does.
	to := br.underneath()
	br.mu.Lock()
	if br.override.Load() == o {
		br.record(o.until, Event{From: o.state, To: to, Reason: ReasonExpiry})
		br.override.Store(nil)
	}
	br.mu.Unlock()
	return 0, 0, false
}

// forceLocal forces br's state with o; e says why.
func (br *breaker) forceLocal(o *override, e Event) {
	e.From, e.To = br.state(), o.state
	br.mu.Lock()
	defer br.mu.Unlock()
	br.record(br.clock.now(), e)
	br.override.Store(o)
	if o.until != 0 {
		br.wakeAt(o.until + 1)
	}
}

// releaseLocal ends br's forced state, if any; e says why.
func (br *breaker) releaseLocal(e Event) {
	from, to := br.state(), br.underneath()
	br.mu.Lock()
	defer br.mu.Unlock()
	if br.override.Load() != nil {
		e.From, e.To = from, to
		br.record(br.clock.now(), e)
		br.override.Store(nil)
	}
}

// probeLocal ends br's cooldown now, the fleet's hold's or its own phase's,
// if it is open: the next calls are probes. e says why. It reports whether
// br was open.
func (br *breaker) probeLocal(e Event) bool {
	if st := br.state(); st != StateOpen {
		return false
	}
	if br.fleet != nil && br.fleet.probeNow(br, e) {
		return true
	}
	return br.probeNow(e)
}

// resetLocal puts br back as it was new, the fleet's hold on it gone; e
// says why.
func (br *breaker) resetLocal(e Event) {
	from := br.state()
	br.mu.Lock()
	defer br.mu.Unlock()
	now := br.clock.now()
	e.From, e.To = from, StateClosed
	br.record(now, e)
	br.win.Store(newWindow(br.key, br.policy, br.clock, now, br.opened))
	br.override.Store(nil)
	br.phase.Store(nil)
	if br.fleet != nil {
		br.fleet.reset()
	}
	br.upstreamUntil.Store(0)
	br.lastTrip.Store(nil)
}

// state returns the breaker's state: a forced state first, then the
// fleet's hold, then the phase, which it first moves on if its time is up,
// as a call would, dating the change when its time was up.
func (br *breaker) state() State {
	if st, _, ok := br.forced(); ok {
		return st
	}
	return br.underneath()
}

// underneath is state without a forced state: the fleet's hold, then the
// phase.
func (br *breaker) underneath() State {
	if br.fleet != nil && br.fleet.holds() {
		if st, held := br.fleet.state(br, br.clock.now()); held {
			return st
		}
	}
	for {
		ph := br.phase.Load()
		if ph == nil {
			return StateClosed
		}
		now := br.clock.now()
		switch {
		case ph.state == StateOpen && now > ph.until:
			br.halfOpen(ph, ph.until)
		case ph.state == StateRecovering && now >= ph.until:
			br.endRamp(ph)
		case ph.state == StateHalfOpen && br.expireProbes(ph, now):
		case br.phase.Load() != ph: // moved on meanwhile, by a call or the alarm
		default:
			return ph.state
		}
	}
}

// record notes a state change of br at t (ns since the epoch): it counts
// the transition, keeps it in the key's history and hands the event,
// completed with the key, mode and time, to the set's notifier. It runs inside the window engine's
// OnStateChange too, so it never calls into the engine.
func (br *breaker) record(t int64, e Event) {
	if e.From == e.To {
		return
	}
	br.since.Store(t)
	br.changes[e.From][e.To].Add(1)
	if o := br.override.Load(); o != nil && e.From != o.state && e.To != o.state {
		e.Forced = o.state // a change underneath
	}
	e.Time, e.Key, e.Mode = br.clock.at(t), br.key, br.mode
	e.Dependents = br.blame.dependentKeys()
	br.history.add(transitionOf(&e))
	br.notes.publish(e)
}

// inFlight returns how many admitted calls have not finished.
func (br *breaker) inFlight() uint64 {
	t := br.tallies
	finished := t.sum(tallySuccess) + t.sum(tallyFailure) + t.sum(tallyExcluded) + t.sum(tallySlow) + t.sum(tallyUpstream)
	if admitted := t.sum(tallyAdmitted); admitted > finished {
		return admitted - finished
	}
	return 0
}

// idle reports whether br can be dropped; the set's mu must be held. Only a
// closed breaker with nothing in flight is dropped: an open, recovering,
// forced or fleet-held one keeps its state.
func (br *breaker) idle(now int64) bool {
	if br.idleTTL == 0 {
		return false
	}
	var total uint64
	for kind := tallySuccess; kind < numTallies; kind++ {
		total += br.tallies.sum(kind)
	}
	if total != br.sweepTotal {
		br.sweepTotal, br.activeAt = total, now
		return false
	}
	if now-br.activeAt < int64(br.idleTTL) || br.override.Load() != nil || br.phase.Load() != nil || br.fleet != nil && br.fleet.holds() {
		return false
	}
	return br.inFlight() == 0
}

// tallyOf is the tally each Outcome is counted in.
var tallyOf = [...]int{Success: tallySuccess, Failure: tallyFailure, Excluded: tallyExcluded, UpstreamFailure: tallyUpstream}
