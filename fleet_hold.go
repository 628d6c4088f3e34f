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
// It is the breaker's holder (breaker.go); a breaker without shared state
// has none.
type keyFleet struct {
	link  *fleet
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
	lastAt       int64    // the Version of the fleet's command last applied
	missingSince int64    // since when the store has had no command while one was applied; 0: it has one
	reported     reported // what the fleet has of this replica's window (fleet_apply.go)
}

func newKeyFleet(link *fleet, p Policy) *keyFleet {
	// A fleet trip needs MinRequests outcomes from Quorum replicas: a
	// replica that has a share of them unsent tells the fleet at once.
	return &keyFleet{link: link, nudgeAt: uint64(max(1, p.MinRequests/(2*max(p.Quorum, 1))))}
}

// keySync returns what every sync of br's key carries: the key, its
// policy's window and probes, and the bounds of what the store keeps.
func (kf *keyFleet) keySync(br *breaker) sharedstate.KeySync {
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
	if !kf.failedSince.Load() {
		kf.failedSince.Store(true)
	}
	if failures-kf.sentF.Load() >= kf.nudgeAt {
		kf.link.poke()
	}
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
