package httpbreaker

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/httpbreaker/httpbreaker/sharedstate"
)

// keyFleet is what the fleet adds to one key's breaker, with shared state:
// the fleet's hold on the key and the probe lease it granted, which the
// request path reads; a request's wish for a lease, a fleet probe's result
// and the outcomes not yet sent, which the fleet's loop (fleet.go) reads.
// It is the breaker's holder (breaker.go); a breaker without shared state
// has none.
type keyFleet struct {
	link  *fleet
	hold  atomic.Pointer[fleetHold]
	lease atomic.Pointer[fleetLease]
	want  atomic.Bool // a request waits for a lease
	// probeOut is the result of a fleet probe, for the loop to report.
	probeOut atomic.Pointer[sharedstate.ProbeResult]
	// The outcome totals the store has acknowledged, written by the loop; a
	// failure wakes the loop once nudgeAt more are not sent.
	sentS, sentF atomic.Uint64
	nudgeAt      uint64
	synced       atomic.Bool // the store has acknowledged a sync of the key
	// incarnation tells this breaker's totals from those of the key's
	// breakers before it (an idle drop makes a new one).
	incarnation uint64

	// endedGen is the latest hold generation that ended here: a hold up to
	// it is never taken again.
	endedGen atomic.Int64
	// own is the last command this replica made, while it stands; under
	// the link's mu.
	own *command

	// Loop-only.
	lastAt       int64 // the Version of the fleet's command last applied
	missingSince int64 // since when the store has had no command while one was applied; 0: it has one
}

func newKeyFleet(link *fleet, p Policy) *keyFleet {
	var b [8]byte
	_, _ = rand.Read(b[:])
	// A fleet trip needs MinRequests outcomes from Quorum replicas: a
	// replica that has a share of them unsent tells the fleet at once.
	return &keyFleet{link: link, nudgeAt: uint64(max(1, p.MinRequests/(2*max(p.Quorum, 1)))),
		incarnation: binary.LittleEndian.Uint64(b[:])}
}

// keySync returns what every sync of br's key carries: the key, its
// policy's window and probes, and the bounds of what the store keeps.
func (kf *keyFleet) keySync(br *breaker) sharedstate.KeySync {
	p := br.policy
	return sharedstate.KeySync{Key: br.key, Window: p.Window, Buckets: p.Buckets, Incarnation: kf.incarnation,
		First: !kf.synced.Load(), Slots: p.HalfOpenRequests, Need: p.HalfOpenSuccesses, MaxHold: br.maxCooldown() + kf.leaseFor(br)}
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
	halfOpen atomic.Bool // the change to half-open has been recorded
}

// fleetLease is a probe slot the fleet granted this replica.
type fleetLease struct {
	gen   int64
	token string
	used  atomic.Bool
	hold  *fleetHold // the hold its probe ran under; written by the call that used it
}

// holds reports whether the fleet holds the key (it may have lapsed).
func (kf *keyFleet) holds() bool { return kf.hold.Load() != nil }

// probeNow ends the cooldown of the fleet's hold now, if it holds the key
// open: this replica asks for a lease at its next call, as every replica
// does once the store's hold says the same. e says why.
func (kf *keyFleet) probeNow(br *breaker, e Event) bool {
	now := br.clock.now()
	h, st, held := kf.held(br, now)
	if !held || st != StateOpen {
		return false
	}
	br.mu.Lock()
	nh := &fleetHold{gen: h.gen, until: now, lapse: addSat(now, br.maxCooldown()+kf.leaseFor(br)), nominal: h.nominal,
		why: h.why, replica: h.replica}
	nh.halfOpen.Store(true)
	swapped := kf.hold.CompareAndSwap(h, nh)
	br.mu.Unlock()
	if swapped {
		br.wakeAt(nh.lapse + 1)
		e.From, e.To, e.Fleet, e.Replica = StateOpen, StateHalfOpen, true, h.replica
		br.record(now, e)
	}
	return swapped
}

// reset forgets the fleet's hold and lease, for Reset.
func (kf *keyFleet) reset() {
	if h := kf.hold.Swap(nil); h != nil {
		kf.ended(h.gen)
	}
	kf.lease.Store(nil)
}

// failed is called by a failure with the key's failure total: it wakes the
// loop once the failures not yet sent could matter to a fleet trip, a share
// of MinRequests, so that the fleet hears of a dead upstream at once, and a
// trickle of failures costs no extra syncs.
func (kf *keyFleet) failed(failures uint64) {
	if failures-kf.sentF.Load() >= kf.nudgeAt {
		kf.link.poke()
	}
}

// sent notes the outcome totals the store has acknowledged.
func (kf *keyFleet) sent(succ, fail uint64) {
	kf.sentS.Store(succ)
	kf.sentF.Store(fail)
}

// leaseFor is how long a probe lease lasts: the probe's timeout and some,
// or a minute when probes have none. A replica that dies holding one frees
// its slot when it ends.
func (kf *keyFleet) leaseFor(br *breaker) time.Duration {
	if br.probeTimeout > 0 {
		return br.probeTimeout + 2*kf.link.every
	}
	return time.Minute
}

// state returns the state the fleet's hold puts br in at now, if one does.
func (kf *keyFleet) state(br *breaker, now int64) (State, bool) {
	_, st, held := kf.held(br, now)
	return st, held
}

// held returns the fleet's hold on br at now, and the state it puts br in,
// if it does: open through its cooldown, then half-open while this replica
// is connected to the fleet. A hold ends here, dated when it ended, when
// its lapse passes, and when its cooldown ends while this replica is cut
// off from the fleet, which could not share its probes: then br goes by its
// own breaker.
func (kf *keyFleet) held(br *breaker, now int64) (*fleetHold, State, bool) {
	h := kf.hold.Load()
	if h == nil {
		return nil, 0, false
	}
	switch {
	case now <= h.until:
		return h, StateOpen, true
	case now > h.lapse:
		kf.endHold(br, h, h.lapse, ReasonExpiry)
		return nil, 0, false
	case !kf.link.connected.Load():
		kf.endHold(br, h, max(h.until, kf.link.lostAt.Load()), ReasonExpiry)
		return nil, 0, false
	}
	if h.halfOpen.CompareAndSwap(false, true) {
		br.record(h.until, Event{From: StateOpen, To: StateHalfOpen, Reason: ReasonCooldown, Fleet: true, Replica: h.replica})
	}
	return h, StateHalfOpen, true
}

// admit is admitSlow while the fleet holds the key: refused while open;
// while half-open, a probe if this replica holds an unused lease, else
// refused while the loop asks the fleet for one.
func (kf *keyFleet) admit(br *breaker, observe bool) (admission, any, bool) {
	now := br.clock.now()
	h, st, ok := kf.held(br, now)
	if !ok {
		return admission{}, nil, false
	}
	if st == StateOpen {
		return br.refuse(StateOpen, time.Duration(h.until-now), observe), nil, true
	}
	if l := kf.lease.Load(); l != nil && l.gen == h.gen && l.used.CompareAndSwap(false, true) {
		l.hold = h
		return admission{}, l, true
	}
	kf.want.Store(true)
	kf.link.poke()
	return br.refuse(StateHalfOpen, 0, observe), nil, true
}

// probed hands the outcome of a probe that the fleet's lease admitted to
// the loop to report. A failure reopens the hold for the next nominal
// cooldown, with jitter, as a local probe's does.
func (kf *keyFleet) probed(br *breaker, lease any, v verdict) {
	l := lease.(*fleetLease)
	nominal := br.backoff(l.hold.nominal)
	kf.probeOut.Store(&sharedstate.ProbeResult{Generation: l.gen, Lease: l.token, Outcome: probeOutcome[v.outcome],
		Reopen: br.jitter(nominal), Nominal: nominal})
	kf.link.poke()
}

// probeOutcome is the fleet's name for each outcome of a probe.
var probeOutcome = [...]sharedstate.Outcome{Success: sharedstate.Succeeded, Failure: sharedstate.Failed, Excluded: sharedstate.Excluded}

// trip returns the hold to make when the fleet's window in rp meets the
// key's policy's failure rate (tripRule), with failures from at least
// Quorum replicas (fewer if fewer are live). It returns nil if the fleet
// holds the key already, or it stays closed.
func (kf *keyFleet) trip(br *breaker, rp sharedstate.Reply, replicas int) *sharedstate.Hold {
	p := br.policy
	if br.mode == ModeDisabled || (rp.Hold != nil && !rp.Hold.Closed) || kf.hold.Load() != nil {
		return nil
	}
	if reason := tripRule(p, windowCounts{counts: counts{success: rp.Successes, failure: rp.Failures}}); reason != ReasonFailureRate ||
		rp.FailingReplicas < min(p.Quorum, max(replicas, 1)) {
		return nil
	}
	_, openFor, _ := br.cooldown(br.clock.now(), p.OpenFor)
	return &sharedstate.Hold{Open: openFor, Nominal: p.OpenFor, Reason: string(ReasonFailureRate), Replica: kf.link.replica,
		Failures: rp.Failures, Successes: rp.Successes, FailingReplicas: rp.FailingReplicas}
}

// maxText bounds a string read from the store.
const maxText = 256

// maxForceOpen is the longest a ForceOpen may last: an operator who wants
// longer forces it until Release. It bounds what the fleet's store may say
// too.
const maxForceOpen = 7 * 24 * time.Hour

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
	bad := func(field, format string, args ...any) error {
		return &badData{field: field, problem: fmt.Sprintf(format, args...)}
	}
	text := func(field, s string) error {
		if len(s) > maxText || !utf8.ValidString(s) {
			return bad(field, "not a short UTF-8 string")
		}
		return nil
	}
	if rp.FailingReplicas < 0 || rp.FailingReplicas > 1<<20 {
		return bad("failing replicas", "%d", rp.FailingReplicas)
	}
	if h := rp.Hold; h != nil {
		switch r := Reason(h.Reason); {
		case h.Generation <= 0:
			return bad("hold generation", "%d", h.Generation)
		case h.Nominal < 0 || h.Probed < 0 || h.FailingReplicas < 0:
			return bad("hold", "negative fields")
		case r != ReasonFailureRate && r != ReasonProbeFailed && r != ReasonProbeTimeout:
			return bad("hold reason", "%q", h.Reason)
		}
		if err := text("hold replica", h.Replica); err != nil {
			return err
		}
	}
	if err := text("lease", rp.Lease); err != nil {
		return err
	}
	c := &rp.Command
	if c.Version < 0 {
		return bad("command version", "%d", c.Version)
	}
	if _, known := commandReason[c.Kind]; c.Version > 0 && !known {
		return bad("command kind", "%q", c.Kind)
	}
	if c.For > maxForceOpen {
		return bad("command length", "%v, longer than %v", c.For, maxForceOpen)
	}
	if err := text("command author", c.By); err != nil {
		return err
	}
	return text("command replica", c.Replica)
}

// commandReason is the Reason of each kind of manual change.
var commandReason = map[sharedstate.Kind]Reason{
	sharedstate.ForceOpen: ReasonForceOpen, sharedstate.ForceClose: ReasonForceClose,
	sharedstate.Release: ReasonRelease, sharedstate.Reset: ReasonReset, sharedstate.Probe: ReasonProbe,
}

// made shares a manual change that this replica made (and applied) at
// now with the fleet, and keeps it, so that it is sent again should the
// store lose it while it stands.
func (kf *keyFleet) made(br *breaker, c sharedstate.Command, now int64) {
	cmd := &command{Command: c, made: now}
	kf.link.mu.Lock()
	kf.own = cmd
	kf.link.mu.Unlock()
	kf.link.send(br.key, cmd)
}

// apply brings br in line with what the fleet holds for its key: the
// latest manual command, then the hold. sent is the command this sync
// carried, if any. Only the loop calls it.
func (kf *keyFleet) apply(br *breaker, ks *sharedstate.KeySync, sent *command) {
	rp := &ks.Reply
	if err := checkReply(rp); err != nil {
		kind := err.(*badData).field
		kf.link.warn("bad "+kind, "circuit breaker fleet: ignoring bad data from the shared state (logged once per kind)",
			"key", quoteKey(br.key), "problem", err.Error())
		return
	}
	kf.sent(ks.Successes, ks.Failures)
	kf.synced.Store(true)
	now := br.clock.now()
	kf.applyCommand(br, rp.Command, sent, now)
	kf.applyHold(br, rp.Hold, now)
	if rp.Lease != "" && rp.Hold != nil {
		kf.lease.Store(&fleetLease{gen: rp.Hold.Generation, token: rp.Lease})
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
func (kf *keyFleet) applyCommand(br *breaker, c sharedstate.Command, sent *command, now int64) {
	self := kf.link.replica
	if c.Version == 0 {
		kf.commandMissing(br, now)
		return
	}
	kf.missingSince = 0
	if c.Version <= kf.lastAt {
		kf.renew(br, c, now) // known: a ForceOpen's end may be read anew
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
	e := Event{Reason: commandReason[c.Kind], By: by, Fleet: true, Replica: c.Replica}
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
		br.forceLocal(&override{state: StateForcedOpen, until: until, by: by, fleet: true}, e)
	case sharedstate.ForceClose:
		br.forceLocal(&override{state: StateForcedClosed, by: by, fleet: true}, e)
	case sharedstate.Release:
		br.releaseLocal(e)
	case sharedstate.Reset:
		br.resetLocal(e)
	case sharedstate.Probe:
		br.probeLocal(e)
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

// renew reads a known ForceOpen's end again: the store's clock says how
// long it has left, which every replica reads alike. A change of more than
// a sync's worth moves the override's end.
func (kf *keyFleet) renew(br *breaker, c sharedstate.Command, now int64) {
	o := br.override.Load()
	if c.Kind != sharedstate.ForceOpen || c.For <= 0 || o == nil || o.state != StateForcedOpen || o.until == 0 {
		return
	}
	until := addSat(now, c.For)
	if d := until - o.until; d > int64(kf.link.every) || -d > int64(kf.link.every) {
		if br.override.CompareAndSwap(o, &override{state: o.state, until: until, by: o.by, fleet: o.fleet}) {
			br.wakeAt(until + 1)
		}
	}
}

// commandMissing handles a store that has no command for br's key: this
// replica sends its own command again, if it stands; a forced state that
// came from the fleet is dropped once the store has had nothing for as
// long as a replica stays live.
func (kf *keyFleet) commandMissing(br *breaker, now int64) {
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
		br.releaseLocal(Event{Reason: ReasonExpiry, By: "the fleet, whose record of " + o.state.String() + " is gone", Fleet: true})
	}
}

// applyHold applies the fleet's hold h on br's key (nil: none). A hold that
// has ended here is never taken again, whatever the store still says of it.
func (kf *keyFleet) applyHold(br *breaker, h *sharedstate.Hold, now int64) {
	cur, _, _ := kf.held(br, now) // ends a hold whose time is up
	switch {
	case h == nil:
		// The hold is gone (a reset, or a store that lost its data): it
		// ends here once its cooldown has, no sooner.
		if cur != nil && now > cur.until {
			kf.endHold(br, cur, now, ReasonExpiry)
		}
	case h.Closed:
		if cur != nil && cur.gen <= h.Generation {
			kf.closeHold(br, cur, now)
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
		from := br.state()
		br.mu.Lock()
		if cur != nil {
			kf.ended(cur.gen)
		}
		kf.hold.Store(nh)
		br.mu.Unlock()
		br.wakeAt(nh.until + 1)
		br.wakeAt(nh.lapse + 1)
		to := StateOpen
		if open == 0 {
			to = StateHalfOpen
			nh.halfOpen.Store(true)
		}
		e := Event{From: from, To: to, Reason: reason, Fleet: true, Replica: h.Replica, OpenFor: open,
			Failures: sat32(h.Failures), Successes: sat32(h.Successes), FailingReplicas: h.FailingReplicas,
			FailureRate: failureRate(sat32(h.Failures), sat32(h.Successes))}
		br.record(now, e)
		if reason == ReasonFailureRate && (cur == nil || cur.why != reason) {
			br.lastTrip.Store(&Trip{At: br.clock.at(now), Reason: reason, Failures: e.Failures,
				Successes: e.Successes, Fleet: true, Replica: h.Replica})
		}
	}
}

// ended notes that the hold of generation gen ended here.
func (kf *keyFleet) ended(gen int64) {
	for {
		old := kf.endedGen.Load()
		if gen <= old || kf.endedGen.CompareAndSwap(old, gen) {
			return
		}
	}
}

// endHold drops the fleet's hold cur, which ended at t (ns since the
// epoch) for why: br goes back to its own state, and the hold is never
// taken again.
func (kf *keyFleet) endHold(br *breaker, cur *fleetHold, t int64, why Reason) {
	from := StateOpen
	if cur.halfOpen.Load() {
		from = StateHalfOpen
	}
	br.mu.Lock()
	swapped := kf.hold.CompareAndSwap(cur, nil)
	if swapped {
		kf.ended(cur.gen)
	}
	br.mu.Unlock()
	if swapped {
		if o := br.override.Load(); o != nil {
			from = o.state
		}
		br.record(t, Event{From: from, To: br.state(), Reason: why, Fleet: true, Replica: cur.replica})
	}
}

// closeHold ends the fleet's hold cur after the fleet's probes all
// succeeded: br closes as after its own probes (closeLocked), whatever its
// own breaker had reached meanwhile.
func (kf *keyFleet) closeHold(br *breaker, cur *fleetHold, now int64) {
	from := br.state()
	br.mu.Lock()
	if !kf.hold.CompareAndSwap(cur, nil) {
		br.mu.Unlock()
		return
	}
	kf.ended(cur.gen)
	to, ramp := br.closedState()
	if o := br.override.Load(); o != nil {
		to = o.state
	}
	br.record(now, Event{From: from, To: to, Reason: ReasonProbesSucceeded, Fleet: true, Replica: cur.replica, RecoveryRamp: ramp})
	br.closeLocked(now)
	br.mu.Unlock()
}
