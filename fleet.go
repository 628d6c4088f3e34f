package httpbreaker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// fleet is a set's link to the other replicas of its fleet, through a
// SharedState. One goroutine (run) does all of its work: it sends each
// key's outcome counts to the fleet's window, trips keys fleet-wide, reads
// the fleet's holds and manual changes into the breakers, and asks for and
// reports the fleet's probes. The request path never waits on it: it reads
// what the loop stored in the breaker's atomics (fleetHold, lease) and at
// most wakes the loop.
type fleet struct {
	set     *Breakers
	store   SharedState
	replica string
	every   time.Duration // the store's Interval

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when run and its watcher have returned
	// wake asks for a sync soon, for requests: a failure, a half-open key's
	// wish for a lease, a probe's result; the loop bounds how often it
	// heeds it. urgent asks for a sync now, for what another replica or an
	// operator changed. Both have capacity 1.
	wake, urgent chan struct{}

	connected  atomic.Bool
	replicas   atomic.Int64
	syncs      atomic.Uint64
	syncErrors atomic.Uint64
	rtt        prometheus.Histogram

	mu      sync.Mutex          // guards the fields below
	pending map[string]*Control // manual changes to send, the latest per key
	dirty   map[string]bool     // keys another replica changed
	full    bool                // sync every key next time

	// Loop-only.
	warned map[string]bool // the kinds of bad data logged so far
}

func newFleet(b *Breakers, s SharedState, replica string) *fleet {
	ctx, cancel := context.WithCancel(context.Background())
	return &fleet{set: b, store: s, replica: replica, every: s.Interval(), ctx: ctx, cancel: cancel,
		done: make(chan struct{}), wake: make(chan struct{}, 1), urgent: make(chan struct{}, 1), full: true,
		pending: map[string]*Control{}, dirty: map[string]bool{}, warned: map[string]bool{},
		rtt: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: b.namespace, Name: "shared_sync_seconds",
			Help:    "Round-trip time of this replica's syncs with the shared state.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}})}
}

// defaultReplica names a replica: its host name and process id, and a few
// random bytes so that two sets in one process differ.
func defaultReplica() string {
	host, _ := os.Hostname()
	var r [3]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(r[:]))
}

// poke asks the loop to sync soon. It never blocks.
func (f *fleet) poke() { signal(f.wake) }

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// touch asks for key to be synced now: another replica changed it, or it
// has a new breaker, which learns the fleet's hold and manual state at
// once.
func (f *fleet) touch(key string) {
	f.mu.Lock()
	f.dirty[key] = true
	f.mu.Unlock()
	signal(f.urgent)
}

// send queues a manual change of key for the fleet, to sync now.
func (f *fleet) send(key string, c Control) {
	f.mu.Lock()
	f.pending[key] = &c
	f.mu.Unlock()
	signal(f.urgent)
}

// maxBackoff is the longest the loop waits between syncs while the store
// is unreachable.
const maxBackoff = 5 * time.Second

// fullEvery is how many syncs pass between syncs of every key, which keep
// the store's keys alive and catch changes a lost signal did not announce.
const fullEvery = 25

// run is the fleet's goroutine: it syncs every interval, and at once when
// woken, until the set is closed.
func (f *fleet) run() {
	watched := make(chan struct{})
	go f.watch(watched)
	defer func() {
		<-watched
		close(f.done)
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var failures int
	var last time.Time
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-timer.C:
		case <-f.urgent:
			// An announcement (the store is up) or an operator's change:
			// both rare, both worth a sync now, even during a backoff.
		case <-f.wake:
			// Bound the rate of syncs that requests ask for: at most ten
			// per interval, whatever the request rate, and none while the
			// store is unreachable, where the backoff decides.
			if failures > 0 {
				continue
			}
			if wait := f.every/10 - time.Since(last); wait > 0 {
				timer.Reset(wait)
				continue
			}
		}
		last = time.Now()
		if f.sync() {
			failures = 0
			timer.Reset(f.every)
			continue
		}
		failures++
		timer.Reset(min(f.every<<min(failures, 10), max(maxBackoff, f.every)))
	}
}

// watch runs the store's Watch until the set is closed: each key another
// replica changed is synced at once. After a failure it waits, and asks for
// a sync of every key once it watches again, for what it may have missed.
func (f *fleet) watch(done chan struct{}) {
	defer close(done)
	changed := func(key string) { f.touch(key) }
	for wait := f.every; ; wait = min(2*wait, maxBackoff) {
		start := time.Now()
		err := f.store.Watch(f.ctx, changed)
		if f.ctx.Err() != nil {
			return
		}
		if time.Since(start) > maxBackoff {
			wait = f.every // it had worked a while: retry soon
		}
		if err != nil {
			f.warn("watch", "circuit breaker fleet: watching the shared state failed; retrying", "problem", err.Error())
		}
		select {
		case <-f.ctx.Done():
			return
		case <-time.After(wait):
		}
		f.mu.Lock()
		f.full = true
		f.mu.Unlock()
	}
}

// warn logs a problem of the fleet's once per kind, for the life of the
// set: a store that keeps failing, or keeps sending bad data, fills no
// logs. Only the loop and the watcher call it, which kind keeps apart.
func (f *fleet) warn(kind, msg string, args ...any) {
	f.mu.Lock()
	seen := f.warned[kind]
	f.warned[kind] = true
	f.mu.Unlock()
	if !seen {
		f.set.notifications.log(slog.LevelWarn, msg, args...)
	}
}

// keyWork is one key's part of a sync, as the loop prepared it.
type keyWork struct {
	br             *breaker
	succ, fail     uint64 // the totals sent
	controlPending *Control
}

// sync runs one round with the store, and reports whether it reached it.
func (f *fleet) sync() bool {
	f.mu.Lock()
	full := f.full || f.syncs.Load()%fullEvery == 0
	f.full = false
	dirty, pending := f.dirty, f.pending
	f.dirty, f.pending = map[string]bool{}, map[string]*Control{}
	f.mu.Unlock()

	s := &Sync{Replica: f.replica, Live: f.live()}
	var work []keyWork
	for _, br := range f.set.all() {
		w := keyWork{br: br, succ: br.results[resultSuccess].Load(), fail: br.results[resultFailure].Load()}
		ks := KeySync{Key: br.key, Window: br.policy.Window, Buckets: br.policy.Buckets,
			Successes: w.succ - br.sentS.Load(), Failures: w.fail - br.sentF.Load(), Slots: br.policy.HalfOpenRequests}
		if c := pending[br.key]; c != nil {
			ks.Control, w.controlPending = c, c
		}
		ks.Probe = br.probeOut.Swap(nil)
		held := br.fleetHold.Load()
		if held != nil && br.fleetWant.Swap(false) {
			if l := br.lease.Load(); l == nil || l.gen != held.gen || l.used.Load() {
				ks.Lease = br.leaseFor()
			}
		}
		// A key without news is left out: what the fleet changes for it is
		// announced (dirty), and a full sync catches what a lost
		// announcement missed.
		// A ForceOpen read from the fleet is renewed at each sync.
		if o := br.override.Load(); !full && ks.Successes+ks.Failures == 0 && !dirty[br.key] && ks.Control == nil &&
			ks.Probe == nil && ks.Lease == 0 && (o == nil || !o.fleet) {
			continue
		}
		s.Keys = append(s.Keys, ks)
		work = append(work, w)
	}
	if !f.exchange(s) {
		// Outcomes are sent at most once: counts a failed sync carried are
		// dropped, since adding them later would put old outcomes in the
		// fleet's window as new. Manual changes are sent again.
		f.mu.Lock()
		for _, w := range work {
			w.br.sent(w.succ, w.fail)
			if c := w.controlPending; c != nil && f.pending[w.br.key] == nil {
				f.pending[w.br.key] = c
			}
		}
		f.mu.Unlock()
		return false
	}
	// The fleet's window may trip keys: they are sent again, at once, with
	// the hold to make.
	trips := &Sync{Replica: f.replica, Live: s.Live}
	var tripped []*breaker
	for i, w := range work {
		w.br.sent(w.succ, w.fail)
		ks := &s.Keys[i]
		if ks.Err != nil {
			f.warn("key", "circuit breaker fleet: a key could not be synced (logged once)",
				"key", quoteKey(ks.Key), "problem", ks.Err.Error())
			continue
		}
		w.br.applyFleet(f, ks)
		if h := w.br.fleetTrip(f, ks.Fleet, s.Replicas); h != nil {
			trips.Keys = append(trips.Keys, KeySync{Key: ks.Key, Window: ks.Window, Buckets: ks.Buckets,
				Slots: ks.Slots, Trip: h})
			tripped = append(tripped, w.br)
		}
	}
	if len(trips.Keys) > 0 && f.exchange(trips) {
		for i, br := range tripped {
			if ks := &trips.Keys[i]; ks.Err == nil {
				br.applyFleet(f, ks)
			}
		}
	}
	return true
}

// sent notes the outcome totals of br sent to the fleet so far.
func (br *breaker) sent(succ, fail uint64) {
	br.sentS.Store(succ)
	br.sentF.Store(fail)
}

// nudge is called by a failure with the key's failure total: it wakes the
// loop once the failures not yet sent could matter to a fleet trip, a
// share of MinRequests, so that the fleet hears of a dead upstream at
// once, and a trickle of failures costs no extra syncs.
func (br *breaker) nudge(failures uint64) {
	if failures-br.sentF.Load() >= br.nudgeAt {
		br.set.fleet.poke()
	}
}

// exchange sends s to the store, and notes how it went.
func (f *fleet) exchange(s *Sync) bool {
	// A sync may take many intervals (a Redis far away, a new connection):
	// only then does the replica count as cut off from the fleet.
	timeout := max(5*f.every, 2*time.Second)
	ctx, cancel := context.WithTimeout(f.ctx, timeout)
	defer cancel()
	start := time.Now()
	err := f.store.Sync(ctx, s)
	f.syncs.Add(1)
	if err != nil {
		if f.ctx.Err() != nil {
			return false
		}
		f.syncErrors.Add(1)
		if f.connected.Swap(false) {
			f.set.notifications.log(slog.LevelWarn, "circuit breaker fleet: shared state unreachable; each breaker goes on alone",
				"replica", f.replica, "problem", err.Error())
		} else {
			f.warn("unreachable", "circuit breaker fleet: shared state unreachable; each breaker goes on alone",
				"replica", f.replica, "problem", err.Error())
		}
		return false
	}
	f.rtt.Observe(time.Since(start).Seconds())
	f.replicas.Store(int64(max(s.Replicas, 1)))
	if !f.connected.Swap(true) {
		f.set.notifications.log(slog.LevelInfo, "circuit breaker fleet: shared state connected",
			"replica", f.replica, "replicas", max(s.Replicas, 1))
		f.mu.Lock()
		f.full = true // learn everything the fleet did meanwhile
		f.mu.Unlock()
	}
	return true
}

// live is how long a replica counts as live after its last sync: long
// enough to ride out a few slow syncs.
func (f *fleet) live() time.Duration { return max(5*f.every, 2*time.Second) }

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
	br.applyHold(f, fl.Hold, now)
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
func (br *breaker) applyHold(f *fleet, h *Hold, now int64) {
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

// FleetStatus describes a set's link to its fleet, for a status page.
type FleetStatus struct {
	// Shared says whether the set shares state with a fleet (WithSharedState).
	Shared bool `json:"shared"`
	// Replica names this replica.
	Replica string `json:"replica,omitempty"`
	// Connected says whether the last sync reached the shared state.
	Connected bool `json:"connected"`
	// Replicas is how many replicas were live at the last sync, this one
	// included.
	Replicas int `json:"replicas,omitempty"`
}

// Fleet returns the set's link to its fleet: zero without shared state.
func (b *Breakers) Fleet() FleetStatus {
	f := b.fleet
	if f == nil {
		return FleetStatus{}
	}
	return FleetStatus{Shared: true, Replica: f.replica, Connected: f.connected.Load(), Replicas: int(f.replicas.Load())}
}
