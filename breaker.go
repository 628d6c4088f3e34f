package httpbreaker

import (
	"sync"
	"sync/atomic"
	"time"
)

// keyBreaker is one key's circuit breaker. The breaker knows nothing of HTTP:
// every side that puts calls behind it (the server middleware, the client
// transport, Do) asks admit to let a call through, runs it, and tells done
// how it ended (admission.go).
//
// A key's state is made of three parts, the first that holds deciding:
//
//   - a forced state, set by ForceOpen or ForceClose (admission.go);
//   - with shared state, the fleet's hold on the key (fleet_hold.go);
//   - the keyBreaker's own: closed, counting outcomes in its window
//     (window.go), whose engine decides the trip (engine.go), or one of the
//     phases after a trip (phases.go): open, half-open, recovering.
//
// Every change of any part is made under mu, and told there, once: its
// record is kept in the key's history and handed to the set's notifier with
// the true states before and after (beginChange and tellChange below). Calls read the
// parts with one atomic load each and take no lock, unless a part's time is
// up (a cooldown ended, say), when the first call or reader makes the
// change, dated when it was due. The set's alarm makes it then if nothing
// comes first: it holds, for each breaker, the time of its next change.
type keyBreaker struct {
	// Read by every call, and laid out together so that a call touches few
	// cache lines: the parts of the state, how calls are judged, the
	// window's bucket, and the counters.
	override atomic.Pointer[override]
	phase    atomic.Pointer[tripPhase] // nil while closed
	fleet    *keyFleet                 // nil without shared state
	judging  judging
	dropped  atomic.Bool   // dropped as idle: a new breaker serves the key
	sides    atomic.Uint32 // sideServer | sideClient: who has put calls through it
	mode     Mode
	window   tripWindow
	counters counters

	clock        *clock
	alarm        *alarm
	notifier     *notifier
	key          string
	policy       *Policy // resolved, shared by every key that resolves to the same one
	idleTTL      time.Duration
	probeTimeout time.Duration // 0: probes run for ever
	// upstreamUntil is when the latest Retry-After of an upstream's failure
	// ends (ns since the epoch); 0 when there is none.
	upstreamUntil atomic.Int64
	blame         blameState // what it knows of blame, as a route group and as an upstream (blame.go)

	mu      sync.Mutex // every change of state is made and told under it
	history history    // guarded by mu
	wake    alarmEntry // guarded by the alarm's mu

	// Guarded by the set's mu: what the idle sweep saw last.
	sweepTotal uint64
	activeAt   int64
}

// defaultKeyedIdleTTL is the IdleTTL of keys that a KeyFunc chose, unless
// the policy sets one.
const defaultKeyedIdleTTL = time.Hour

// newBreaker returns key's breaker with the resolved policy p (keyPolicy's),
// made at now on clock c, whose changes a makes on time and n tells. It
// judges calls with classify.
func newBreaker(key string, p *Policy, c *clock, a *alarm, now int64, n *notifier, classify Classifier) *keyBreaker {
	br := &keyBreaker{clock: c, alarm: a, notifier: n, key: key, policy: p, mode: p.Mode, activeAt: now}
	br.judging = judging{classify: classify, slowApart: p.SlowCallRate > 0}
	if p.SlowCall != Off {
		br.judging.slowCall = p.SlowCall
	}
	if p.ProbeTimeout != Off {
		br.probeTimeout = p.ProbeTimeout
	}
	if p.IdleTTL != Off {
		br.idleTTL = p.IdleTTL
	}
	br.history.created, br.history.since = now, now
	br.wake = newAlarmEntry(br.catchUp)
	br.window.setUp(p, &br.counters, c, now)
	return br
}

// keyPolicy is the resolved policy p as a key's breaker keeps it: with
// its IdleTTL, whose default depends on whether a KeyFunc chose the key.
func keyPolicy(p Policy, keyed bool) Policy {
	switch {
	case p.IdleTTL == 0 && keyed:
		p.IdleTTL = defaultKeyedIdleTTL
	case p.IdleTTL == 0:
		p.IdleTTL = Off
	}
	return p
}

// view is a key's state as its parts make it: shown is what the key does
// (the forced state, else under), under what it does underneath a forced
// state (the fleet's hold, else the breaker's own phase).
type view struct {
	shown, under State
}

// viewLocked returns the key's state as its parts are now, without moving
// any on; br.mu must be held, or the view may mix two moments.
func (br *keyBreaker) viewLocked() view {
	under := StateClosed
	if ph := br.phase.Load(); ph != nil {
		under = ph.state
	}
	if kf := br.fleet; kf != nil {
		if h := kf.hold.Load(); h != nil {
			under = h.heldState()
		}
	}
	v := view{shown: under, under: under}
	if o := br.override.Load(); o != nil {
		v.shown = o.state
	}
	return v
}

// stateNow returns the key's state now, making first the changes whose time
// has come, as a call would.
func (br *keyBreaker) stateNow() State {
	return br.stateAt(br.clock.now())
}

// stateAt is state at now.
func (br *keyBreaker) stateAt(now int64) State {
	if br.nextDue() <= now {
		br.catchUp(now)
	}
	return br.viewLocked().shown
}

// catchUp makes the changes whose time has come by now.
func (br *keyBreaker) catchUp(now int64) {
	br.mu.Lock()
	br.moveOnLocked(now)
	br.unlockAndSetAlarm()
}

// unlockAndSetAlarm sets the alarm for br's next change, then unlocks mu: every
// section that changes br ends with it, so that the alarm always holds the
// time of the next change, and nothing else of br's.
func (br *keyBreaker) unlockAndSetAlarm() {
	br.alarm.set(&br.wake, br.nextDue())
	br.mu.Unlock()
}

// nextDue returns when br's next change is due (never if none): the end of a
// timed ForceOpen, of the fleet's hold's cooldown or lapse, of the
// breaker's own cooldown or recovery ramp, or a probe's deadline. It reads
// atomics only, so that a call may ask it without the lock; under mu it is
// exact.
func (br *keyBreaker) nextDue() int64 {
	at := int64(notDue)
	if o := br.override.Load(); o != nil && o.until != 0 {
		at = o.until
	}
	if kf := br.fleet; kf != nil {
		at = min(at, kf.holdDue())
	}
	if ph := br.phase.Load(); ph != nil {
		at = min(at, ph.phaseDue())
	}
	return at
}

// moveOnLocked makes, in the order they were due, every change whose time
// has come by now, each dated when it was due and told; br.mu must be held.
func (br *keyBreaker) moveOnLocked(now int64) {
	for {
		o := br.override.Load()
		forcedAt := int64(notDue)
		if o != nil && o.until != 0 {
			forcedAt = o.until
		}
		fleetAt := int64(notDue)
		if br.fleet != nil {
			fleetAt = br.fleet.holdDue()
		}
		ph := br.phase.Load()
		phaseAt := int64(notDue)
		if ph != nil {
			phaseAt = ph.phaseDue()
		}
		switch at := min(forcedAt, fleetAt, phaseAt); {
		case at > now:
			return
		case at == forcedAt:
			br.expireLocked(o)
		case at == fleetAt:
			br.fleet.moveHoldOnLocked(br, at)
		default:
			br.moveOnPhaseLocked(ph, at, now)
		}
	}
}

// beginChange begins a change of br's state at now: it takes mu, makes first the
// changes that were due, and returns the view before the change, for
// tellChange. The caller makes the change, calls tellChange, and ends with
// unlockAndSetAlarm.
func (br *keyBreaker) beginChange(now int64) view {
	br.mu.Lock()
	br.moveOnLocked(now)
	return br.viewLocked()
}

// tellChange tells the change that the parts of br made since before, at t, with
// why it happened in e, if the key's state changed: from before's shown
// state to the one it shows now, or, while forced, underneath the forced
// state (Forced says which). A change that changed nothing is not told; it
// reports whether one was. br.mu must be held.
func (br *keyBreaker) tellChange(t int64, before view, e Transition) bool {
	after := br.viewLocked()
	switch {
	case before.shown != after.shown:
		e.From, e.To, e.Forced = before.shown, after.shown, StateClosed
	case before.under != after.under:
		e.From, e.To, e.Forced = before.under, after.under, after.shown
	default:
		return false
	}
	// Told in the order they were made, and dated in that order: a change
	// whose time was read before the lock is dated no earlier than the
	// last one.
	t = max(t, br.history.lastAt)
	e.Time = br.clock.at(t)
	br.history.add(e)
	br.history.lastAt = t
	if before.shown != after.shown {
		br.history.since = t
	}
	ev := Event{Transition: e, Key: br.key, Mode: br.mode, Dependents: br.blame.dependentKeys()}
	if e.To == StateOpen && e.Reason.isTrip() {
		ev.BlamedOn, _ = br.blame.blamedCounts()
	}
	br.notifier.publish(ev)
	return true
}

// The sides that put calls through a breaker, for Status.Side.
const (
	sideServer uint32 = 1 << iota
	sideClient
)

// noteSide notes that side s puts calls through br. It writes only the first
// time, so that a side may call it per request.
func (br *keyBreaker) noteSide(s uint32) {
	if br.sides.Load()&s == 0 {
		br.sides.Or(s)
	}
}

// noteUpstreamRetry records that a failure at now asked, with Retry-After,
// not to be retried for a while.
func (br *keyBreaker) noteUpstreamRetry(v verdict, now int64) {
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

// inFlight returns how many admitted calls have not finished.
func (br *keyBreaker) inFlight(all *[numCounts]uint64) uint64 {
	var finished uint64
	for kind := countSuccess; kind <= countUpstream; kind++ {
		finished += all[kind]
	}
	if admitted := all[countAdmitted]; admitted > finished {
		return admitted - finished
	}
	return 0
}

// idle reports whether br can be dropped; the set's mu must be held. Only a
// closed breaker with nothing in flight is dropped: an open, recovering,
// forced or fleet-held one keeps its state.
func (br *keyBreaker) idle(now int64) bool {
	if br.idleTTL == 0 {
		return false
	}
	all := br.counters.sumAll()
	var total uint64
	for kind := countSuccess; kind < numCounts; kind++ {
		total += all[kind]
	}
	if total != br.sweepTotal {
		br.sweepTotal, br.activeAt = total, now
		return false
	}
	if now-br.activeAt < int64(br.idleTTL) || br.override.Load() != nil || br.phase.Load() != nil || br.fleet != nil && br.fleet.isHolding() {
		return false
	}
	return br.inFlight(&all) == 0
}
