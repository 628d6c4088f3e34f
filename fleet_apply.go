package httpbreaker

import (
	"cmp"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/httpbreaker/httpbreaker/sharedstate"
)

// This file is what a key's sync tells the fleet and what its reply does to
// the key's breaker: this replica's window reported when the fleet needs
// it, the fleet's trip decided from the fleet's window, the reply checked
// (a store's data may be corrupt or hostile), and the fleet's manual
// commands and holds applied. Only the fleet's loop (fleet.go) runs it.

// windowReport is what a sync tells the fleet of this replica's window of
// a key (sharedstate.KeySync's fields of the same names).
type windowReport struct {
	Report              bool
	Successes, Failures uint64
	Over                bool
}

// fill copies r into ks, with when br's key could trip fleet-wide: at least
// TripFailures failures in the fleet's window (FailureRate x MinRequests:
// fewer never meet the rate over MinRequests), from Quorum replicas (capped
// by the live ones, quorum); none, for a policy that never trips it.
func (r windowReport) fill(ks *sharedstate.KeySync, br *keyBreaker, quorum int) {
	ks.Report, ks.Successes, ks.Failures, ks.Over = r.Report, r.Successes, r.Failures, r.Over
	if p := br.policy; br.mode != ModeDisabled && p.FailureRate != Off {
		ks.TripFailures = max(1, int(math.Ceil(p.FailureRate*float64(p.MinRequests))))
		ks.Quorum = max(1, min(p.Quorum, quorum))
	}
}

// prepare returns the report of br's window to send, if the fleet should
// hear of it: whenever its failures or its being over the trip's rate
// changed, when the fleet gathers the key or announced it (it may have
// begun to gather it) and, at a full sync, while it holds failures (the
// store may have lost its data). A key whose window has held no failures
// since it was last reported is not even counted: a key that only succeeds
// costs the fleet nothing. (A report an earlier breaker of the key left in
// the store, with failures, ages out with the window, or is replaced at the
// first change.)
func (kf *keyFleet) prepare(br *keyBreaker, full, announced bool) windowReport {
	r := &kf.reported
	var rep windowReport
	// The common case first, reading only this keyFleet: no failure since
	// the loop last looked, and none in the window it last reported.
	if !r.gathering && !announced && r.failures == 0 && !kf.failedSince.Load() {
		return rep
	}
	kf.failedSince.Store(false) // before the total: a failure from now on is seen next time
	p := br.policy
	if fail := br.failureTotal(); kf.sentF.Load() != fail {
		kf.sentF.Store(fail)
	}
	if br.mode == ModeDisabled || p.FailureRate == Off {
		return rep // it never trips fleet-wide
	}
	c := br.window.countsAt(br.clock.now())
	over := c.failure > 0 && float64(c.failure)/float64(c.failure+c.success) >= p.FailureRate
	if r.gathering || announced || c.failure != r.failures || over != r.over || full && c.failure > 0 {
		rep.Report, rep.Successes, rep.Failures, rep.Over = true, c.success, c.failure, over
	}
	return rep
}

// unsent notes that the report prepare made did not reach the store (the
// sync failed, or left it for the next): the next prepare makes it again,
// as it would after a new failure, even if the store never had a report
// with failures from this replica.
func (kf *keyFleet) unsent() { kf.failedSince.Store(true) }

// acked notes what the store has of this replica's window after a sync of
// ks, and whether the fleet gathers the key.
func (kf *keyFleet) acked(ks *sharedstate.KeySync) {
	r := &kf.reported
	if ks.Report {
		r.failures, r.over = ks.Failures, ks.Over
	}
	r.gathering = ks.Reply.Gathering
}

// fleetTrip returns the hold to make when the fleet's window in rp meets the
// key's policy's failure rate (tripRule), with failures from at least
// Quorum replicas (fewer if fewer are live), once the window is whole (every
// live replica has reported to the gathering). It returns nil if the fleet
// holds the key already, or it stays closed.
func (kf *keyFleet) fleetTrip(br *keyBreaker, rp sharedstate.Reply, replicas int) *sharedstate.Hold {
	p := br.policy
	if br.mode == ModeDisabled || !rp.Complete || (rp.Hold != nil && !rp.Hold.Closed) || kf.hold.Load() != nil {
		return nil
	}
	if reason := tripRule(p, windowCounts{outcomeCounts: outcomeCounts{success: rp.Successes, failure: rp.Failures}}); reason != ReasonFailureRate ||
		rp.FailingReplicas < min(p.Quorum, max(replicas, 1)) {
		return nil
	}
	_, openFor, _ := br.cooldownEnd(br.clock.now(), p.OpenFor)
	return &sharedstate.Hold{Open: openFor, Nominal: p.OpenFor, Reason: string(ReasonFailureRate), Replica: kf.link.replica,
		Failures: rp.Failures, Successes: rp.Successes, FailingReplicas: rp.FailingReplicas}
}

// maxText bounds a string read from the store.
const maxText = 256

// badData is something wrong in what a store said of a key: field names
// the kind of problem, which is logged once.
type badData struct {
	field, problem string
}

func (e *badData) Error() string { return e.field + ": " + e.problem }

// checkReply says what is wrong with what the store said of a key, if
// anything: a store's data may be corrupt or hostile, and none of it may
// make a breaker misbehave.
func checkReply(rp *sharedstate.Reply) error {
	return cmp.Or(checkWindow(rp), checkHold(rp), checkCommand(&rp.Command))
}

func bad(field, format string, args ...any) error {
	return &badData{field: field, problem: fmt.Sprintf(format, args...)}
}

func checkText(field, s string) error {
	if len(s) > maxText || !utf8.ValidString(s) {
		return bad(field, "not a short UTF-8 string")
	}
	return nil
}

// checkWindow checks the fleet's window in rp.
func checkWindow(rp *sharedstate.Reply) error {
	if rp.FailingReplicas < 0 || rp.FailingReplicas > 1<<20 {
		return bad("failing replicas", "%d", rp.FailingReplicas)
	}
	return nil
}

// checkHold checks the hold in rp and the lease granted under it.
func checkHold(rp *sharedstate.Reply) error {
	if h := rp.Hold; h != nil {
		switch r := Reason(h.Reason); {
		case h.Generation <= 0:
			return bad("hold generation", "%d", h.Generation)
		case h.Nominal < 0 || h.Probed < 0 || h.FailingReplicas < 0:
			return bad("hold", "negative fields")
		case r != ReasonFailureRate && r != ReasonProbeFailed && r != ReasonProbeTimeout:
			return bad("hold reason", "%q", h.Reason)
		}
		if err := checkText("hold replica", h.Replica); err != nil {
			return err
		}
	}
	return checkText("lease", rp.Lease)
}

// checkCommand checks the fleet's latest manual command.
func checkCommand(c *sharedstate.Command) error {
	if c.Version < 0 {
		return bad("command version", "%d", c.Version)
	}
	if _, known := commandReason[c.Kind]; c.Version > 0 && !known {
		return bad("command kind", "%q", c.Kind)
	}
	if c.For > maxForceOpen {
		return bad("command length", "%v, longer than %v", c.For, maxForceOpen)
	}
	if err := checkText("command author", c.By); err != nil {
		return err
	}
	return checkText("command replica", c.Replica)
}

// commandReason is the Reason of each kind of manual change.
var commandReason = map[sharedstate.Kind]Reason{
	sharedstate.ForceOpen: ReasonForceOpen, sharedstate.ForceClose: ReasonForceClose,
	sharedstate.Release: ReasonRelease, sharedstate.Reset: ReasonReset, sharedstate.Probe: ReasonProbe,
}

// apply brings br in line with what the fleet holds for its key: the
// latest manual command, then the hold. sent is the command this sync
// carried, if any. Only the loop calls it.
//
// Each part is checked on its own, and a bad one is ignored alone: a hold
// written by hand does not stop an operator's command, nor a bad command
// record the fleet's holds.
func (kf *keyFleet) apply(br *keyBreaker, ks *sharedstate.KeySync, sent *command) {
	rp := &ks.Reply
	ok := func(err error) bool {
		if err == nil {
			return true
		}
		kf.link.problem("bad "+err.(*badData).field, "circuit breaker fleet: ignoring bad data from the shared state (logged once per kind until it is gone)",
			"key", quoteKey(br.key), "problem", err.Error())
		return false
	}
	now := br.clock.now()
	if ok(checkWindow(rp)) {
		kf.view.Store(&FleetView{Successes: rp.Successes, Failures: rp.Failures, FailingReplicas: rp.FailingReplicas,
			LiveReplicas: int(kf.link.replicas.Load()), Gathering: rp.Gathering, At: br.clock.at(now)})
	}
	if ok(checkCommand(&rp.Command)) {
		kf.applyCommand(br, rp.Command, sent, now)
	}
	if ok(checkHold(rp)) {
		kf.applyHold(br, rp.Hold, now)
		if rp.Lease != "" && rp.Hold != nil {
			kf.lease.Store(&fleetLease{gen: rp.Hold.Generation, token: rp.Lease})
		}
	}
}

// applyCommand applies the fleet's latest manual command c to br, once,
// when it is newer than what br knows: commands are ordered by when they
// were made, on the store's clock. A command this replica sent was applied
// when it was made. A replica that reads a key for the first time applies
// a ForceOpen or ForceClose that stands, and nothing older. Every replica
// holds a fleet ForceOpen until the same moment, when it was made plus its
// length, whatever its MaxOpenFor.
//
// When the store has no command (it lost its data: a restart, an
// eviction), a forced state that came from the fleet is kept for as long
// as a replica stays live, long enough for the replica that made it to send
// it again (as it does with its own), and then dropped: losing the store's
// data never leaves a replica forced.
func (kf *keyFleet) applyCommand(br *keyBreaker, c sharedstate.Command, sent *command, now int64) {
	self := kf.link.replica
	if c.Version == 0 {
		kf.commandMissing(br, now)
		return
	}
	kf.missingSince = 0
	if c.Version <= kf.lastAt {
		kf.renewForceOpen(br, c, now) // known: a ForceOpen's end may be read anew
		return
	}
	first := kf.lastAt == 0
	kf.lastAt = c.Version
	if sent != nil && c.Replica == self && c.Kind == sent.Kind && c.By == sent.By {
		return // the command this sync carried: applied when it was made
	}
	if first && c.Kind != sharedstate.ForceOpen && c.Kind != sharedstate.ForceClose {
		return // a release, reset or probe from before this replica knew the key
	}
	kf.forget(c)
	by := c.By + " (replica " + c.Replica + ")"
	e := Transition{Reason: commandReason[c.Kind], By: by, Fleet: true, Replica: c.Replica}
	switch c.Kind {
	case sharedstate.ForceOpen:
		var until int64
		if c.For < 0 {
			return // its time ran out
		}
		if c.For > 0 {
			until = addSat(now, c.For)
		}
		e.OpenFor = c.For
		br.force(&override{state: StateForcedOpen, until: until, by: by, fleet: true}, e)
	case sharedstate.ForceClose:
		br.force(&override{state: StateForcedClosed, by: by, fleet: true}, e)
	case sharedstate.Release:
		br.release(e)
	case sharedstate.Reset:
		br.reset(e)
	case sharedstate.Probe:
		br.endCooldown(e)
	}
}

// forget drops this replica's own command once the fleet has a newer one.
func (kf *keyFleet) forget(c sharedstate.Command) {
	kf.link.mu.Lock()
	defer kf.link.mu.Unlock()
	if kf.own != nil && c.Replica != kf.link.replica {
		kf.own = nil
	}
}

// renewForceOpen reads a known ForceOpen's end again: the store's clock says how
// long it has left, which every replica reads alike. A change of more than
// a sync's worth moves the override's end.
func (kf *keyFleet) renewForceOpen(br *keyBreaker, c sharedstate.Command, now int64) {
	o := br.override.Load()
	if c.Kind != sharedstate.ForceOpen || c.For <= 0 || o == nil || o.state != StateForcedOpen || o.until == 0 {
		return
	}
	until := addSat(now, c.For)
	if d := until - o.until; d > int64(kf.link.every) || -d > int64(kf.link.every) {
		br.moveForcedEnd(o, until)
	}
}

// commandMissing handles a store that has no command for br's key: this
// replica sends its own command again, if it stands; a forced state that
// came from the fleet is dropped once the store has had nothing for as
// long as a replica stays live.
func (kf *keyFleet) commandMissing(br *keyBreaker, now int64) {
	o := br.override.Load()
	kf.link.mu.Lock()
	own := kf.own
	kf.link.mu.Unlock()
	switch {
	case o == nil:
		kf.missingSince = 0
	case !o.fleet:
		if own != nil {
			kf.link.send(br.key, own) // the store lost it: it is dated when it was made
		}
	case kf.missingSince == 0:
		kf.missingSince = now
	case now-kf.missingSince > int64(kf.link.live()):
		kf.missingSince, kf.lastAt = 0, 0
		br.release(Transition{Reason: ReasonExpiry, By: "the fleet, whose record of " + o.state.String() + " is gone", Fleet: true})
	}
}

// applyHold applies the fleet's hold h on br's key (nil: none). A hold that
// has ended here is never taken again, whatever the store still says of it.
func (kf *keyFleet) applyHold(br *keyBreaker, h *sharedstate.Hold, now int64) {
	br.beginChange(now) // ends a hold whose time is up
	defer br.unlockAndSetAlarm()
	cur := kf.hold.Load()
	switch {
	case h == nil:
		// The hold is gone (a reset, or a store that lost its data): it
		// ends here once its cooldown has, no sooner.
		if cur != nil && now >= cur.until {
			kf.endLocked(br, cur, now, ReasonExpiry)
		}
	case h.Closed:
		if cur != nil && cur.gen <= h.Generation {
			kf.closeLocked(br, cur, now)
		}
	case h.Generation <= kf.endedGen.Load():
		// Ended here (it lapsed, or its cooldown ended while this replica
		// was cut off): not taken again.
	case cur == nil || cur.gen != h.Generation:
		open := min(max(h.Open, 0), br.maxCooldown())
		nominal := min(max(h.Nominal, br.policy.OpenFor), br.maxCooldown())
		reason := Reason(h.Reason)
		nh := &fleetHold{gen: h.Generation, until: addSat(now, open), nominal: nominal, why: reason, replica: h.Replica}
		// Half-open lasts as long as the fleet's probes take, but no hold
		// from the store outlives a cooldown past its own.
		nh.lapse = addSat(nh.until, br.maxCooldown()+kf.leaseFor(br))
		nh.halfOpen.Store(open == 0)
		if cur == nil && br.phase.Load() == nil {
			// The trip spent the window's outcomes, as a trip of the
			// breaker's own does: should the hold end without the fleet's
			// probes (cut off from the fleet), they do not trip the key
			// again.
			br.window.restart(now)
		}
		e := Transition{Reason: reason, Fleet: true, Replica: h.Replica, OpenFor: open,
			Failures: sat32(h.Failures), Successes: sat32(h.Successes), FailingReplicas: h.FailingReplicas}
		kf.takeLocked(br, nh, now, e)
		if reason == ReasonFailureRate && (cur == nil || cur.why != reason) {
			e.Time, e.From, e.To = br.clock.at(now), StateClosed, StateOpen
			br.history.lastTrip = &e
		}
	}
}
