package httpbreaker

import (
	"sync/atomic"
	"time"

	"github.com/httpbreaker/httpbreaker/sharedstate"
)

// keyFleet is what the fleet adds to one key's breaker, with shared state:
// the fleet's hold on the key and the probe lease it granted, which the
// request path reads; a request's wish for a lease, a fleet probe's result
// and the outcomes not yet sent, which the fleet's loop (fleet.go) reads.
// A breaker without shared state has none. The hold is one of the parts of
// a key's state (breaker.go): it changes under the breaker's mu, and the
// request path reads it with one atomic load.
type keyFleet struct {
	link  *fleetLink
	hold  atomic.Pointer[fleetHold]
	lease atomic.Pointer[fleetLease]
	want  atomic.Bool // a request waits for a lease
	// probeOut is the result of a fleet probe, for the loop to report.
	probeOut atomic.Pointer[sharedstate.ProbeResult]
	// The failure total the loop last looked at; a failure wakes the loop
	// once nudgeAt more are not seen. failedSince says a failure came
	// since: until one does, the loop need not look at a key whose window
	// held no failures.
	sentF       atomic.Uint64
	nudgeAt     uint64
	failedSince atomic.Bool
	// view is the fleet's window of the key at its last sync, for Status.
	view atomic.Pointer[FleetView]

	// endedGen is the latest hold generation that ended here: a hold up to
	// it is never taken again.
	endedGen atomic.Int64
	// own is the last command this replica made, while it stands; under
	// the link's mu.
	own *command

	// Loop-only.
	lastAt       int64       // the Version of the fleet's command last applied
	missingSince int64       // since when the store has had no command while one was applied; 0: it has one
	reported     reportState // what the fleet has of this replica's window (fleet_apply.go)
}

func newKeyFleet(link *fleetLink, p *Policy) *keyFleet {
	// A fleet trip needs MinRequests outcomes from Quorum replicas: a
	// replica that has a share of them unsent tells the fleet at once.
	return &keyFleet{link: link, nudgeAt: uint64(max(1, p.MinRequests/(2*max(p.Quorum, 1))))}
}

// keySync returns what every sync of br's key carries: the key, its
// policy's window and probes, and the bounds of what the store keeps.
func (kf *keyFleet) keySync(br *keyBreaker) sharedstate.KeySync {
	p := br.policy
	window := p.Window
	if p.LastCalls > 0 {
		window = 0 // the last calls: a report holds until replaced
	}
	return sharedstate.KeySync{Key: br.key, Window: window, Slots: p.HalfOpenRequests, Need: p.HalfOpenSuccesses,
		MaxHold: br.maxCooldown() + kf.leaseFor(br)}
}

// fleetHold is the fleet's hold on a key, as this replica keeps it: open
// until until, by this replica's monotonic clock, then half-open while the
// fleet probes, until the fleet closes it or it lapses.
type fleetHold struct {
	gen      int64
	until    int64 // ns since the set's epoch
	lapse    int64 // past this, the hold ends: nothing from the store holds longer
	nominal  time.Duration
	why      Reason
	replica  string
	halfOpen atomic.Bool // the change to half-open has been made
}

// heldState is the state the hold puts its key in.
func (h *fleetHold) heldState() State {
	if h.halfOpen.Load() {
		return StateHalfOpen
	}
	return StateOpen
}

// fleetLease is a probe slot the fleet granted this replica.
type fleetLease struct {
	gen   int64
	token string
	used  atomic.Bool
	hold  *fleetHold // the hold its probe ran under; written by the call that used it
}

// isHolding reports whether the fleet holds the key (its time may be up).
func (kf *keyFleet) isHolding() bool { return kf.hold.Load() != nil }

// holdDue returns when the hold changes by itself, never if there is none:
// at the end of its cooldown, when it turns half-open (or ends, if this
// replica is cut off from the fleet, which could not share its probes: the
// breaker then goes by itself); once half-open, when it lapses, or at once
// when the link to the fleet is lost.
func (kf *keyFleet) holdDue() int64 {
	h := kf.hold.Load()
	switch {
	case h == nil:
		return notDue
	case !h.halfOpen.Load():
		return h.until
	case !kf.link.connected.Load():
		return max(h.until, kf.link.lostAt.Load())
	}
	return h.lapse
}

// moveHoldOnLocked makes the hold's change that was due at at: half-open at
// the end of its cooldown while connected, otherwise its end. br.mu must be
// held.
func (kf *keyFleet) moveHoldOnLocked(br *keyBreaker, at int64) {
	h := kf.hold.Load()
	if !h.halfOpen.Load() && kf.link.connected.Load() {
		before := br.viewLocked()
		h.halfOpen.Store(true)
		br.tellChange(at, before, Transition{Reason: ReasonCooldown, Fleet: true, Replica: h.replica})
		return
	}
	kf.endLocked(br, h, at, ReasonExpiry)
}

// admitHeld decides a call at now while the fleet holds the key with h:
// refused while open; while half-open, a probe if this replica holds an
// unused lease, else refused while the loop asks the fleet for one. It
// reports false, deciding nothing, if the hold's time is up: the caller
// makes its change and asks again.
func (kf *keyFleet) admitHeld(br *keyBreaker, h *fleetHold, observe bool, now int64) (ticket, admitDecision, bool) {
	if !h.halfOpen.Load() {
		if now >= h.until {
			return ticket{}, admitDecision{}, false
		}
		return ticket{}, br.refuse(StateOpen, time.Duration(h.until-now), observe), true
	}
	if l := kf.lease.Load(); l != nil && l.gen == h.gen && l.used.CompareAndSwap(false, true) {
		l.hold = h
		t, a := br.countAdmit(ticket{lease: l, probe: &probeRun{start: now}})
		return t, a, true
	}
	kf.want.Store(true)
	kf.link.poke()
	return ticket{}, br.refuse(StateHalfOpen, 0, observe), true
}

// probeAnswered hands the outcome of a probe that the fleet's lease l admitted to
// the loop to report. A failure reopens the hold for the next nominal
// cooldown, with jitter, as a local probe's does.
func (kf *keyFleet) probeAnswered(br *keyBreaker, l *fleetLease, v verdict) {
	nominal := br.backedOff(l.hold.nominal)
	kf.probeOut.Store(&sharedstate.ProbeResult{Generation: l.gen, Lease: l.token, Outcome: sharedOutcome[v.outcome],
		Reopen: br.withJitter(nominal), Nominal: nominal})
	kf.link.poke()
}

// sharedOutcome is the fleet's name for each outcome of a probe.
var sharedOutcome = [...]sharedstate.Outcome{Success: sharedstate.Succeeded, Failure: sharedstate.Failed, Excluded: sharedstate.Excluded}

// sawFailure is called by a failure with the key's failure total: it wakes the
// loop once the failures not yet sent could matter to a fleet trip, a share
// of MinRequests, so that the fleet hears of a dead upstream at once, and a
// trickle of failures costs no extra syncs.
func (kf *keyFleet) sawFailure(failures uint64) {
	if !kf.failedSince.Load() {
		kf.failedSince.Store(true)
	}
	if sent := kf.sentF.Load(); failures > sent && failures-sent >= kf.nudgeAt { // an estimate may dip below what was sent
		kf.link.poke()
	}
}

// leaseFor is how long a probe lease lasts: the probe's timeout and some,
// or a minute when probes have none. A replica that dies holding one frees
// its slot when it ends.
func (kf *keyFleet) leaseFor(br *keyBreaker) time.Duration {
	if br.probeTimeout > 0 {
		return br.probeTimeout + 2*kf.link.every
	}
	return time.Minute
}

// takeLocked puts the fleet's new hold nh on the key at now, in place of
// the one it had; e says why. br.mu must be held.
func (kf *keyFleet) takeLocked(br *keyBreaker, nh *fleetHold, now int64, e Transition) {
	before := br.viewLocked()
	if cur := kf.hold.Load(); cur != nil {
		kf.holdEnded(cur.gen)
	}
	kf.hold.Store(nh)
	br.tellChange(now, before, e)
}

// endCooldownLocked ends the cooldown of the fleet's hold at now, for
// Probe, if it holds the key open: this replica asks for a lease at its
// next call, as every replica does once the store's hold says the same. e
// says why. br.mu must be held.
func (kf *keyFleet) endCooldownLocked(br *keyBreaker, now int64, e Transition) bool {
	h := kf.hold.Load()
	if h == nil || h.halfOpen.Load() {
		return false
	}
	nh := &fleetHold{gen: h.gen, until: now, lapse: addSat(now, br.maxCooldown()+kf.leaseFor(br)), nominal: h.nominal,
		why: h.why, replica: h.replica}
	nh.halfOpen.Store(true)
	before := br.viewLocked()
	kf.hold.Store(nh)
	e.Fleet, e.Replica = true, h.replica
	br.tellChange(now, before, e)
	return true
}

// dropLocked forgets the fleet's hold and lease, for Reset. br.mu must be
// held.
func (kf *keyFleet) dropLocked() {
	if h := kf.hold.Swap(nil); h != nil {
		kf.holdEnded(h.gen)
	}
	kf.lease.Store(nil)
}

// holdEnded notes that the hold of generation gen ended here.
func (kf *keyFleet) holdEnded(gen int64) {
	for {
		old := kf.endedGen.Load()
		if gen <= old || kf.endedGen.CompareAndSwap(old, gen) {
			return
		}
	}
}

// endLocked drops the fleet's hold h, which ended at t (ns since the epoch)
// for why: the key goes back to its breaker's own state, and the hold is
// never taken again. br.mu must be held.
func (kf *keyFleet) endLocked(br *keyBreaker, h *fleetHold, t int64, why Reason) {
	if kf.hold.Load() != h {
		return
	}
	before := br.viewLocked()
	kf.hold.Store(nil)
	kf.holdEnded(h.gen)
	br.tellChange(t, before, Transition{Reason: why, Fleet: true, Replica: h.replica})
}

// closeLocked ends the fleet's hold h at now after the fleet's probes all
// succeeded: the key closes as after its own probes (closeLocked), whatever
// its own breaker had reached meanwhile. br.mu must be held.
func (kf *keyFleet) closeLocked(br *keyBreaker, h *fleetHold, now int64) {
	if kf.hold.Load() != h {
		return
	}
	before := br.viewLocked()
	kf.hold.Store(nil)
	kf.holdEnded(h.gen)
	ramp := br.closeLocked(now)
	br.tellChange(now, before, Transition{Reason: ReasonProbesSucceeded, Fleet: true, Replica: h.replica, RecoveryRamp: ramp})
}

// reportState is what the fleet has of this replica's window of a key, as far
// as this replica knows: what it reportState last, and whether the fleet
// gathers the key. Only the loop uses it.
type reportState struct {
	failures  uint64 // the failures in the window last reported
	over      bool   // whether that window met the policy's rate alone
	gathering bool   // the fleet gathers the key: report at every sync
}

// madeCommand shares a manual change that this replica madeCommand (and applied) at
// now with the fleet, and keeps it, so that it is sent again should the
// store lose it while it stands.
func (kf *keyFleet) madeCommand(br *keyBreaker, c sharedstate.Command, now int64) {
	cmd := &command{Command: c, made: now}
	kf.link.mu.Lock()
	kf.own = cmd
	kf.link.mu.Unlock()
	kf.link.send(br.key, cmd)
}
