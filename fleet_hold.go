package httpbreaker

import (
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
	// The outcome totals sent to the fleet so far, written by the loop; a
	// failure wakes the loop once nudgeAt more are not sent.
	sentS, sentF atomic.Uint64
	nudgeAt      uint64
	// Loop-only: the version of the fleet's manual change last applied.
	version int64
}

func newKeyFleet(link *fleet, p Policy) *keyFleet {
	// A fleet trip needs MinRequests outcomes from Quorum replicas: a
	// replica that has a share of them unsent tells the fleet at once.
	return &keyFleet{link: link, nudgeAt: uint64(max(1, p.MinRequests/(2*max(p.Quorum, 1))))}
}

// fleetHold is the fleet's hold on a key, as this replica keeps it: open
// until until, by this replica's monotonic clock, then half-open while the
// fleet probes, until the fleet closes it or it lapses.
type fleetHold struct {
	gen      int64
	until    int64 // ns since the set's epoch
	lapse    int64 // past this, the hold is ignored: nothing from the store holds longer
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
		e.From, e.To, e.Fleet, e.Replica = StateOpen, StateHalfOpen, true, h.replica
		br.record(now, e)
	}
	return swapped
}

// reset forgets the fleet's hold and lease, for Reset.
func (kf *keyFleet) reset() {
	kf.hold.Store(nil)
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

// sent notes the outcome totals sent to the fleet so far.
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
// is connected to the fleet (a replica cut off from the fleet cannot share
// its probes, and goes by its own breaker).
func (kf *keyFleet) held(br *breaker, now int64) (*fleetHold, State, bool) {
	h := kf.hold.Load()
	if h == nil || now > h.lapse {
		return nil, 0, false
	}
	if now <= h.until {
		return h, StateOpen, true
	}
	if !kf.link.connected.Load() {
		return nil, 0, false
	}
	if h.halfOpen.CompareAndSwap(false, true) {
		br.record(now, Event{From: StateOpen, To: StateHalfOpen, Reason: ReasonCooldown, Fleet: true, Replica: h.replica})
	}
	return h, StateHalfOpen, true
}

// admit is callSlow while the fleet holds the key: refused while open;
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
// key's policy's failure rate (tripRule), with failures from at least Quorum replicas
// (fewer if fewer are live). It returns nil if the fleet holds the key
// already, or it stays closed.
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
	if rp.FailingReplicas < 0 {
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

// apply brings br in line with what the fleet holds for its key: the
// latest manual change, then the hold. Only the loop calls it.
func (kf *keyFleet) apply(br *breaker, ks *sharedstate.KeySync) {
	rp := &ks.Reply
	if err := checkReply(rp); err != nil {
		kind := err.(*badData).field
		kf.link.warn("bad "+kind, "circuit breaker fleet: ignoring bad data from the shared state (logged once per kind)",
			"key", quoteKey(br.key), "problem", err.Error())
		return
	}
	now := br.clock.now()
	kf.applyCommand(br, rp.Command, ks.Command != nil, now)
	kf.applyHold(br, rp.Hold, now)
	if rp.Lease != "" && rp.Hold != nil {
		kf.lease.Store(&fleetLease{gen: rp.Hold.Generation, token: rp.Lease})
	}
}

// applyCommand applies the fleet's latest manual change c to br, once:
// each replica applies each change when it first reads it. A change this
// replica sent (mine) was applied when it was made. A ForceOpen read from
// the fleet holds for at most MaxOpenFor past the last read, so that a store
// gone astray cannot keep a key open.
func (kf *keyFleet) applyCommand(br *breaker, c sharedstate.Command, mine bool, now int64) {
	last := kf.version
	kf.version = c.Version
	replica := kf.link.replica
	if c.Version == 0 || mine && c.Replica == replica {
		return
	}
	if c.Version == last {
		// Known: a fleet ForceOpen is renewed while the fleet keeps it, and
		// applied again if it lapsed here while this replica was cut off.
		if c.Kind != sharedstate.ForceOpen || c.For < 0 {
			return
		}
		switch o := br.override.Load(); {
		case o == nil && c.Replica != replica:
			last = 0 // apply it below, as new
		case o != nil && o.fleet:
			br.override.Store(&override{state: o.state, until: fleetUntil(br, now, c.For), by: o.by, fleet: true})
			return
		default:
			return
		}
	}
	if last == 0 && c.Kind != sharedstate.ForceOpen && c.Kind != sharedstate.ForceClose {
		return // a release or reset that happened before this replica knew the key
	}
	by := c.By + " (replica " + c.Replica + ")"
	e := Event{Reason: commandReason[c.Kind], By: by, Fleet: true, Replica: c.Replica}
	switch c.Kind {
	case sharedstate.ForceOpen:
		if c.For < 0 {
			return // its time ran out
		}
		e.OpenFor = c.For
		br.forceLocal(&override{state: StateForcedOpen, until: fleetUntil(br, now, c.For), by: by, fleet: true}, e)
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

// fleetUntil is when a ForceOpen read from the fleet with d left (0: until
// Release) ends here: at most MaxOpenFor from now.
func fleetUntil(br *breaker, now int64, d time.Duration) int64 {
	bound := br.maxCooldown()
	if d <= 0 || d > bound {
		d = bound
	}
	return addSat(now, d)
}

// applyHold applies the fleet's hold h on br's key (nil: none).
func (kf *keyFleet) applyHold(br *breaker, h *sharedstate.Hold, now int64) {
	cur := kf.hold.Load()
	if cur != nil && now > cur.lapse {
		// Past its lapse the hold is ignored already; dropping it lets the
		// fleet trip the key again, or the store's hold be taken anew.
		kf.endHold(br, cur, now)
		cur = nil
	}
	switch {
	case h == nil:
		// The hold is gone (a reset, or a store that lost its data): it
		// ends here once its cooldown has.
		if cur != nil && now > cur.until {
			kf.endHold(br, cur, now)
		}
	case h.Closed:
		if cur != nil {
			kf.closeHold(br, cur, now)
		}
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
		kf.hold.Store(nh)
		br.mu.Unlock()
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

// endHold drops the fleet's hold cur, which expired: br goes back to its
// own state.
func (kf *keyFleet) endHold(br *breaker, cur *fleetHold, now int64) {
	from := br.state()
	br.mu.Lock()
	swapped := kf.hold.CompareAndSwap(cur, nil)
	br.mu.Unlock()
	if swapped {
		br.record(now, Event{From: from, To: br.state(), Reason: ReasonExpiry, Fleet: true, Replica: cur.replica})
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
	to, ramp := br.closeLocked(now)
	br.mu.Unlock()
	if o := br.override.Load(); o != nil {
		to = o.state
	}
	br.record(now, Event{From: from, To: to, Reason: ReasonProbesSucceeded, Fleet: true, Replica: cur.replica, RecoveryRamp: ramp})
}
