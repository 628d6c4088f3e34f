package httpbreaker

import (
	"fmt"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// This file is a key's breaker under its fleet: the fleet's hold on the
// key and the probe leases, as a request meets them (fleetState,
// callFleet, fleetProbe), the fleet-wide trip the loop asks for
// (fleetTrip), and how the loop applies what the store said of the key
// (checkFleet, applyFleet and what it calls). fleet.go is the loop.
// fleetHold is the fleet's hold on a breaker's key, as this replica keeps
// it: open until until, by this replica's monotonic clock, then half-open
// while the fleet probes, until the fleet closes it or it lapses.
type fleetHold struct {
	gen      int64
	until    int64 // ns since the set's epoch
	lapse    int64 // past this, the hold is ignored: nothing from the store holds longer
	nominal  time.Duration
	reason   Reason
	replica  string
	halfOpen atomic.Bool // the change to half-open has been recorded
}

// fleetLease is a probe slot the fleet granted this replica.
type fleetLease struct {
	gen   int64
	token string
	used  atomic.Bool
}

// leaseFor is how long a probe lease lasts: the probe's timeout and some,
// or a minute when probes have none. A replica that dies holding one frees
// its slot when it ends.
func (br *breaker) leaseFor() time.Duration {
	if br.probeTimeout > 0 {
		return br.probeTimeout + 2*br.set.fleet.every
	}
	return time.Minute
}

// fleetState returns the state the fleet's hold puts br in at now, if one
// does: open through its cooldown, then half-open while this replica is
// connected to the fleet (a replica cut off from the fleet cannot share its
// probes, and goes by its own breaker).
func (br *breaker) fleetState(now int64) (*fleetHold, State, bool) {
	h := br.fleetHold.Load()
	if h == nil || now > h.lapse {
		return nil, 0, false
	}
	if now <= h.until {
		return h, StateOpen, true
	}
	if !br.set.fleet.connected.Load() {
		return nil, 0, false
	}
	if h.halfOpen.CompareAndSwap(false, true) {
		br.record(now, Event{From: StateOpen, To: StateHalfOpen, Reason: ReasonCooldown, Fleet: true, Replica: h.replica})
	}
	return h, StateHalfOpen, true
}

// callFleet is callSlow while the fleet holds the key: refused while open;
// while half-open, run as a probe if this replica holds an unused lease,
// else refused while the loop asks the fleet for one.
func (br *breaker) callFleet(run func(*probe) verdict, observe bool) (admission, bool) {
	now := br.set.clock()
	h, st, ok := br.fleetState(now)
	if !ok {
		return admission{}, false
	}
	if st == StateOpen {
		return br.refuse(StateOpen, time.Duration(h.until-now), observe), true
	}
	if l := br.lease.Load(); l != nil && l.gen == h.gen && l.used.CompareAndSwap(false, true) {
		br.fleetProbe(h, l, run)
		return admission{verdict: ran}, true
	}
	br.fleetWant.Store(true)
	br.set.fleet.poke()
	return br.refuse(StateHalfOpen, 0, observe), true
}

// fleetProbe runs a probe the fleet's lease l admitted, and hands its
// outcome to the loop to report. A failure reopens the hold for the next
// nominal cooldown, with jitter, as a local probe's does.
func (br *breaker) fleetProbe(h *fleetHold, l *fleetLease, run func(*probe) verdict) {
	v := verdict{outcome: Failure}
	defer func() {
		br.tally(v)
		nominal := br.backoff(h.nominal)
		br.probeOut.Store(&ProbeResult{Generation: h.gen, Lease: l.token, Outcome: v.outcome,
			Reopen: br.jitter(nominal), Nominal: nominal})
		br.set.fleet.poke()
	}()
	v = run(&probe{})
}

// fleetTrip returns the hold to make when the fleet's window fl meets the
// key's policy: FailureRate over at least MinRequests outcomes, with
// failures from at least Quorum replicas (fewer if fewer are live). It
// returns nil if the fleet holds the key already, or it stays closed.
func (br *breaker) fleetTrip(f *fleet, fl Fleet, replicas int) *Hold {
	p := br.policy
	if p.FailureRate == Off || br.mode == ModeDisabled || (fl.Hold != nil && !fl.Hold.Closed) || br.fleetHold.Load() != nil {
		return nil
	}
	n := fl.Successes + fl.Failures
	if n < uint64(p.MinRequests) || n == 0 || float64(fl.Failures)/float64(n) < p.FailureRate {
		return nil
	}
	if fl.FailingReplicas < min(p.Quorum, max(replicas, 1)) {
		return nil
	}
	_, openFor, _ := br.cooldown(br.set.clock(), p.OpenFor)
	return &Hold{Open: openFor, Nominal: p.OpenFor, Reason: ReasonFailureRate, Replica: f.replica,
		Failures: fl.Failures, Successes: fl.Successes, FailingReplicas: fl.FailingReplicas}
}

// maxText bounds a string read from the store.
const maxText = 256

// badData is something wrong in what a store said of a key: field names
// the kind of problem, which is logged once.
type badData struct {
	field, problem string
}

func (e *badData) Error() string { return e.field + ": " + e.problem }

// checkFleet says what is wrong with what the store said of a key, if
// anything: a store's data may be corrupt or hostile, and none of it may
// make a breaker misbehave.
func checkFleet(fl *Fleet) error {
	bad := func(field, format string, args ...any) error {
		return &badData{field: field, problem: fmt.Sprintf(format, args...)}
	}
	text := func(field, s string) error {
		if len(s) > maxText || !utf8.ValidString(s) {
			return bad(field, "not a short UTF-8 string")
		}
		return nil
	}
	if fl.FailingReplicas < 0 {
		return bad("failing replicas", "%d", fl.FailingReplicas)
	}
	if h := fl.Hold; h != nil {
		switch {
		case h.Generation <= 0:
			return bad("hold generation", "%d", h.Generation)
		case h.Nominal < 0 || h.Probed < 0 || h.FailingReplicas < 0:
			return bad("hold", "negative fields")
		case h.Reason != ReasonFailureRate && h.Reason != ReasonProbeFailed && h.Reason != ReasonProbeTimeout:
			return bad("hold reason", "%q", h.Reason)
		}
		if err := text("hold replica", h.Replica); err != nil {
			return err
		}
	}
	if err := text("lease", fl.Lease); err != nil {
		return err
	}
	c := &fl.Control
	if c.Version < 0 {
		return bad("control version", "%d", c.Version)
	}
	if c.Version > 0 {
		switch c.Reason {
		case ReasonForceOpen, ReasonForceClose, ReasonRelease, ReasonReset:
		default:
			return bad("control kind", "%q", c.Reason)
		}
	}
	if err := text("control author", c.By); err != nil {
		return err
	}
	return text("control replica", c.Replica)
}

// applyFleet brings br in line with what the fleet holds for its key: the
// latest manual change, then the hold. Only the loop calls it.
func (br *breaker) applyFleet(f *fleet, ks *KeySync) {
	fl := &ks.Fleet
	if err := checkFleet(fl); err != nil {
		kind := err.(*badData).field
		f.warn("bad "+kind, "circuit breaker fleet: ignoring bad data from the shared state (logged once per kind)",
			"key", quoteKey(br.key), "problem", err.Error())
		return
	}
	now := br.set.clock()
	br.applyControl(f, fl.Control, ks.Control != nil, now)
	br.applyHold(fl.Hold, now)
	if fl.Lease != "" && fl.Hold != nil {
		br.lease.Store(&fleetLease{gen: fl.Hold.Generation, token: fl.Lease})
	}
}

// applyControl applies the fleet's latest manual change c to br, once:
// each replica applies each change when it first reads it. A change this
// replica sent (mine) was applied when it was made. A ForceOpen read from
// the fleet holds for at most MaxOpenFor past the last read, so that a store
// gone astray cannot keep a key open.
func (br *breaker) applyControl(f *fleet, c Control, mine bool, now int64) {
	last := br.ctlVersion
	br.ctlVersion = c.Version
	if c.Version == 0 || mine && c.Replica == f.replica {
		return
	}
	if c.Version == last {
		// Known: a fleet ForceOpen is renewed while the fleet keeps it, and
		// applied again if it lapsed here while this replica was cut off.
		if c.Reason != ReasonForceOpen || c.For < 0 {
			return
		}
		switch o := br.override.Load(); {
		case o == nil && c.Replica != f.replica:
			last = 0 // apply it below, as new
		case o != nil && o.fleet:
			br.override.Store(&override{state: o.state, until: br.fleetUntil(now, c.For), by: o.by, fleet: true})
			return
		default:
			return
		}
	}
	if last == 0 && c.Reason != ReasonForceOpen && c.Reason != ReasonForceClose {
		return // a release or reset that happened before this replica knew the key
	}
	by := c.By + " (replica " + c.Replica + ")"
	e := Event{Reason: c.Reason, By: by, Fleet: true, Replica: c.Replica}
	switch c.Reason {
	case ReasonForceOpen:
		if c.For < 0 {
			return // its time ran out
		}
		e.OpenFor = c.For
		br.forceLocal(&override{state: StateForcedOpen, until: br.fleetUntil(now, c.For), by: by, fleet: true}, e)
	case ReasonForceClose:
		br.forceLocal(&override{state: StateForcedClosed, by: by, fleet: true}, e)
	case ReasonRelease:
		br.releaseLocal(e)
	case ReasonReset:
		br.resetLocal(e)
	}
}

// fleetUntil is when a ForceOpen read from the fleet with d left (0: until
// Release) ends here: at most MaxOpenFor from now.
func (br *breaker) fleetUntil(now int64, d time.Duration) int64 {
	bound := br.maxCooldown()
	if d <= 0 || d > bound {
		d = bound
	}
	return addSat(now, d)
}

// applyHold applies the fleet's hold h on br's key (nil: none).
func (br *breaker) applyHold(h *Hold, now int64) {
	cur := br.fleetHold.Load()
	if cur != nil && now > cur.lapse {
		// Past its lapse the hold is ignored already; dropping it lets the
		// fleet trip the key again, or the store's hold be taken anew.
		br.endFleetHold(cur, now, Event{Reason: ReasonExpiry})
		cur = nil
	}
	switch {
	case h == nil:
		// The hold is gone (a reset, or a store that lost its data): it
		// ends here once its cooldown has.
		if cur != nil && now > cur.until {
			br.endFleetHold(cur, now, Event{Reason: ReasonExpiry})
		}
	case h.Closed:
		if cur != nil {
			br.fleetRecover(cur, now)
		}
	case cur == nil || cur.gen != h.Generation:
		open := min(max(h.Open, 0), br.maxCooldown())
		nominal := min(max(h.Nominal, br.policy.OpenFor), br.maxCooldown())
		nh := &fleetHold{gen: h.Generation, until: addSat(now, open), nominal: nominal, reason: h.Reason, replica: h.Replica}
		// Half-open lasts as long as the fleet's probes take, but no hold
		// from the store outlives a cooldown past its own.
		nh.lapse = addSat(nh.until, br.maxCooldown()+br.leaseFor())
		from := br.state()
		br.mu.Lock()
		br.fleetHold.Store(nh)
		br.mu.Unlock()
		to := StateOpen
		if open == 0 {
			to = StateHalfOpen
			nh.halfOpen.Store(true)
		}
		e := Event{From: from, To: to, Reason: h.Reason, Fleet: true, Replica: h.Replica, OpenFor: open,
			Failures: sat32(h.Failures), Successes: sat32(h.Successes), FailingReplicas: h.FailingReplicas,
			FailureRate: failureRate(sat32(h.Failures), sat32(h.Successes))}
		br.record(now, e)
		if h.Reason == ReasonFailureRate && (cur == nil || cur.reason != h.Reason) {
			br.lastTrip.Store(&Trip{At: br.set.timeAt(now), Reason: h.Reason, Failures: e.Failures,
				Successes: e.Successes, Fleet: true, Replica: h.Replica})
		}
	}
}

// endFleetHold drops the fleet's hold cur: br goes back to its own state.
func (br *breaker) endFleetHold(cur *fleetHold, now int64, e Event) {
	from := br.state()
	br.mu.Lock()
	swapped := br.fleetHold.CompareAndSwap(cur, nil)
	br.mu.Unlock()
	if swapped {
		e.From, e.To, e.Fleet, e.Replica = from, br.state(), true, cur.replica
		br.record(now, e)
	}
}

// fleetRecover ends the fleet's hold cur after the fleet's probes all
// succeeded: br closes with a new window, through its recovery ramp if the
// policy has one, whatever its own breaker had reached meanwhile.
func (br *breaker) fleetRecover(cur *fleetHold, now int64) {
	from := br.state()
	br.mu.Lock()
	if !br.fleetHold.CompareAndSwap(cur, nil) {
		br.mu.Unlock()
		return
	}
	br.upstreamUntil.Store(0)
	br.inst.Store(br.newInstance())
	e := Event{From: from, To: StateClosed, Reason: ReasonProbesSucceeded, Fleet: true, Replica: cur.replica}
	if ramp := br.policy.RecoveryRamp; ramp > 0 {
		br.phase.Store(&phase{state: StateRecovering, rampStart: now, until: addSat(now, ramp)})
		e.To, e.RecoveryRamp = StateRecovering, ramp
	} else {
		br.phase.Store(nil)
	}
	br.mu.Unlock()
	if o := br.override.Load(); o != nil {
		e.To = o.state
	}
	br.record(now, e)
}

// sat32 returns n as a uint32, at most the largest one.
func sat32(n uint64) uint32 { return uint32(min(n, 1<<32-1)) }
