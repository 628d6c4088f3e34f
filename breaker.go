package httpbreaker

import (
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// breaker is one key's circuit breaker, and call is its admission path:
// every side that puts calls behind a breaker (the server middleware, the
// client transport) asks call, and nothing else, to admit a call and record
// how it ended. The breaker knows nothing of HTTP.
//
// A breaker is closed, or on its way back after a trip:
//
//   - closed, a gobreaker instance admits every call and counts outcomes in
//     its rolling window; its ReadyToTrip decides the trip. That is all
//     gobreaker does here: its Execute is the one way into its window that
//     does not allocate.
//   - a trip starts a phase, which the breaker keeps itself (recovery.go):
//     open until the cooldown ends, then half-open with a round of
//     HalfOpenRequests probes, then closed with a new gobreaker instance, or,
//     with a RecoveryRamp, recovering first. gobreaker's own half-open has no
//     deadline and cannot be shared by several replicas; this one is built to
//     have both.
//   - ForceOpen and ForceClose set an override that decides first.
//   - with shared state, the fleet may hold the key open or half-open
//     (fleet_hold.go), whatever the breaker's own phase.
//
// Phases change under mu, which is never held while calling gobreaker or
// code of the user's; requests read them with one atomic load each, and the
// closed path reads the clock only inside gobreaker.
type breaker struct {
	clock    *clock
	notes    *notifier
	classify Classifier // nil: DefaultClassifier
	key      string
	policy   Policy // resolved
	mode     Mode
	slowCall time.Duration // 0: off
	idleTTL  time.Duration // 0: never dropped
	// probeTimeout is how long a probe may run before it counts as failed;
	// 0: for ever.
	probeTimeout time.Duration

	inst     atomic.Pointer[instance] // the closed state's gobreaker
	phase    atomic.Pointer[phase]    // nil while closed
	override atomic.Pointer[override]
	// fleet is what the fleet adds to the key, with shared state; nil
	// without.
	fleet holder
	// upstreamUntil is when the latest Retry-After of an upstream's failure
	// ends (ns since set.epoch); 0 when there is none.
	upstreamUntil atomic.Int64
	lastTrip      atomic.Pointer[Trip] // what last opened it from closed, for Status
	since         atomic.Int64         // last state change, ns since set.epoch
	dropped       atomic.Bool          // dropped as idle: a new breaker serves the key
	sides         atomic.Uint32        // sideServer | sideClient: who has put calls through it

	mu sync.Mutex // serialises changes of phase and of the fleet's hold

	results [numResults]atomic.Uint64
	changes [numStates][numStates]atomic.Uint64

	// Guarded by set.mu: what the idle sweep saw last.
	sweepTotal uint64
	activeAt   int64
}

// defaultKeyedIdleTTL is the IdleTTL of keys that a KeyFunc chose, unless
// the policy sets one.
const defaultKeyedIdleTTL = time.Hour

// newBreaker returns key's breaker with the resolved policy p, made at now
// on clock c; keyed says a KeyFunc chose the key. It reports state changes
// to notes, and judges calls with classify.
func newBreaker(key string, p Policy, keyed bool, c *clock, now int64, notes *notifier, classify Classifier) *breaker {
	br := &breaker{clock: c, notes: notes, classify: classify, key: key, policy: p, mode: p.Mode, activeAt: now}
	if p.SlowCall != Off {
		br.slowCall = p.SlowCall
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
	br.inst.Store(br.newInstance())
	return br
}

// call asks the breaker to admit one call. If it does, call runs run and
// records the verdict run returns. If run panics or ends its goroutine with
// runtime.Goexit, the call is recorded as a failure, or as the verdict a
// judgedPanic carries, and the panic or Goexit goes on. If the breaker does
// not admit the call, call does not run it, and says why and whether the
// caller should run it anyway, untracked.
//
// run gets the probe when the call is a half-open probe, nil otherwise. A
// probe that answers before it ends (a stream that has sent its status)
// tells the breaker with probe.answered, which the breaker goes by should
// the probe outlive the policy's ProbeTimeout.
//
// Admitting and recording are one function because gobreaker's Execute is
// the one way into its window that does not allocate: its two-step Allow
// allocates a callback per call.
func (br *breaker) call(run func(*probe) verdict) admission {
	if br.override.Load() != nil || br.phase.Load() != nil || br.fleet != nil && br.fleet.holds() || br.mode != ModeEnforce {
		return br.callSlow(run)
	}
	return br.execute(br.inst.Load(), run, false) // closed and enforcing: the common case
}

// callSlow is call when the breaker is not simply closed.
func (br *breaker) callSlow(run func(*probe) verdict) admission {
	observe := br.mode == ModeObserve
	if br.override.Load() != nil {
		if st, left, ok := br.forced(); ok {
			if st == StateForcedOpen { // a manual kill switch, in every mode
				if left == 0 {
					left = br.policy.OpenFor
				}
				return br.refuse(st, left, false)
			}
			observe = true // forced closed: never reject
		}
	}
	if br.mode == ModeDisabled {
		return admission{verdict: passed}
	}
	if br.fleet != nil && br.fleet.holds() {
		if a, lease, held := br.fleet.admit(br, observe); held {
			if lease == nil {
				return a
			}
			guard(run, &probe{}, func(v verdict) { br.fleet.probed(br, lease, v) })
			return admission{verdict: ran}
		}
	}
	for {
		ph := br.phase.Load()
		if ph == nil {
			return br.execute(br.inst.Load(), run, observe)
		}
		now := br.clock.now()
		switch ph.state {
		case StateOpen:
			if now <= ph.until {
				return br.refuse(StateOpen, time.Duration(ph.until-now), observe)
			}
			br.halfOpen(ph, now)
		case StateHalfOpen:
			if !ph.round.take() {
				if br.expireProbes(ph, now) {
					continue
				}
				return br.refuse(StateHalfOpen, 0, observe)
			}
			if br.phase.Load() != ph { // the round ended while we took a slot
				ph.round.taken.Add(-1)
				continue
			}
			br.probe(ph, now, run)
			return admission{verdict: ran}
		case StateRecovering:
			if now >= ph.until {
				br.endRamp(ph, now)
				continue
			}
			if !ph.rampAdmits(now) {
				return br.refuse(StateRecovering, 0, observe)
			}
			return br.execute(br.inst.Load(), run, observe)
		}
	}
}

// admission is call's answer, two words wide: whether it ran the call, and
// if not, the state that turned it away and the time until calls are
// admitted again.
type admission struct {
	verdict admitted
	state   State
	retry   time.Duration
}

// admitted says what call did with a call.
type admitted uint8

const (
	// ran: the breaker admitted the call, and call ran it and recorded it.
	ran admitted = iota
	// rejected: the call must not run; the caller answers with the rejection.
	rejected
	// passed: the breaker does not track the call, which goes ahead
	// untracked: the mode is disabled, or the breaker only observes (observe
	// mode, ForceClose) and would have rejected it.
	passed
)

// judgedPanic is what a call that panicked panics on with when its side
// judged it not a failure (http.ErrAbortHandler once the client has gone):
// the verdict for the breaker, and the value the call panicked with, which
// the breaker raises again once it has recorded the verdict. A panic judged
// a failure goes on as it was. A judgedPanic never leaves the breaker.
type judgedPanic struct {
	verdict verdict
	value   any
}

// guard runs run with p, and hands its verdict to done: what run returned;
// if it panicked, the verdict a judgedPanic carries, or a failure; if it
// ended its goroutine with runtime.Goexit, a failure. The panic, with the
// value the call panicked with, or the Goexit then goes on, from inside the
// call's own unwinding, so that whoever recovers it further up sees the
// stack where it happened.
func guard(run func(*probe) verdict, p *probe, done func(verdict)) {
	finished := false
	defer func() {
		if finished {
			return
		}
		v, value := verdict{outcome: Failure}, recover()
		if j, ok := value.(*judgedPanic); ok {
			v, value = j.verdict, j.value
		}
		done(v)
		if value != nil {
			panic(value)
		} // else a Goexit, which goes on by itself
	}()
	v := run(p)
	finished = true
	done(v)
}

// execute runs a call through the closed state's gobreaker instance, which
// records it: a failure and an excluded call as an error, so that
// gobreaker's window sees it, and a panic or a Goexit as a panic, which
// gobreaker records as a failure. A judgedPanic is recovered inside, so that
// gobreaker records its verdict, and its value raised again once it has.
func (br *breaker) execute(inst *instance, run func(*probe) verdict, observe bool) admission {
	admitted := false
	var again *judgedPanic
	defer func() {
		if admitted {
			// A panic goes on; errGoexit stands for a Goexit, which goes on
			// once it is recovered.
			if p := recover(); p != nil && p != errGoexit {
				panic(p)
			}
		}
	}()
	_, _ = inst.cb.Execute(func() (_ struct{}, err error) {
		admitted = true
		finished := false
		defer func() {
			if finished {
				return
			}
			p := recover()
			if j, ok := p.(*judgedPanic); ok {
				again = j
				br.tally(j.verdict)
				err = outcomeErr[j.verdict.outcome]
				return
			}
			br.tally(verdict{outcome: Failure})
			if p == nil {
				p = errGoexit
			}
			panic(p)
		}()
		v := run(nil)
		finished = true
		br.tally(v)
		return struct{}{}, outcomeErr[v.outcome]
	})
	if again != nil {
		panic(again.value)
	}
	if admitted {
		return admission{verdict: ran}
	}
	// gobreaker rejected it (ErrOpenState): it tripped between our look at
	// the phase and the call. Its phase is open now.
	retry := time.Duration(0)
	if ph := br.phase.Load(); ph != nil && ph.state == StateOpen {
		retry = time.Duration(max(ph.until-br.clock.now(), 0))
	}
	return br.refuse(StateOpen, retry, observe)
}

// outcomeErr carries an outcome into gobreaker: success is a nil error.
var outcomeErr = [...]error{Success: nil, Failure: errFailure, Excluded: errExcluded}

var (
	errFailure  = errors.New("httpbreaker: failure")
	errExcluded = errors.New("httpbreaker: excluded")
)

// errGoexit is the panic that stands for a runtime.Goexit inside gobreaker's
// Execute, which records a call only when it returns or panics.
var errGoexit = errors.New("httpbreaker: runtime.Goexit in an admitted call")

// tally counts a finished call's outcome, and notes the delay an upstream
// asked for with a failure. With shared state, a failure may wake the
// fleet's loop.
func (br *breaker) tally(v verdict) {
	n := br.results[resultOf[v.outcome]].Add(1)
	if v.outcome == Failure && br.fleet != nil {
		br.fleet.failed(n)
	}
	if v.retryAfter > 0 {
		br.noteUpstreamRetry(v)
	}
}

// refuse counts a call the breaker did not admit: as rejected, or as
// would_reject when it only observes and lets the call pass.
func (br *breaker) refuse(st State, retry time.Duration, observe bool) admission {
	if observe {
		br.results[resultWouldReject].Add(1)
		return admission{verdict: passed, state: st, retry: retry}
	}
	br.results[resultRejected].Add(1)
	return admission{verdict: rejected, state: st, retry: retry}
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
	// reset drops the hold, for Reset.
	reset()
}

// timed reports whether br's calls need their duration: for SlowCall, or
// for a classifier, which may read it.
func (br *breaker) timed() bool { return br.slowCall > 0 || br.classify != nil }

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

// instance is one gobreaker instance: the closed state's window.
type instance struct {
	cb *gobreaker.CircuitBreaker[struct{}]
	// tripped records what made the instance trip, for the log record.
	// gobreaker writes it in ReadyToTrip and reads it in OnStateChange, both
	// under its mutex.
	tripped tripInfo
}

// tripInfo records what made a breaker trip.
type tripInfo struct {
	reason Reason
	counts gobreaker.Counts
}

// neverHalfOpen is the gobreaker Timeout: an instance that has tripped is
// replaced before it could move to half-open by itself, since the cooldown
// and the probes are the breaker's.
const neverHalfOpen = 100 * 365 * 24 * time.Hour

// newInstance makes a gobreaker instance from the policy, field by field.
func (br *breaker) newInstance() *instance {
	p := br.policy
	inst := &instance{}
	bucket := p.Window / time.Duration(p.Buckets)
	inst.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name: br.key,
		// Interval is an exact multiple of the bucket, so that gobreaker,
		// which rounds Interval up to one, keeps Buckets buckets.
		Interval:      bucket * time.Duration(p.Buckets),
		BucketPeriod:  bucket,
		Timeout:       neverHalfOpen,
		ReadyToTrip:   func(c gobreaker.Counts) bool { return br.readyToTrip(inst, c) },
		OnStateChange: func(_ string, from, to gobreaker.State) { br.onStateChange(inst, from, to) },
		IsSuccessful:  func(err error) bool { return err == nil },
		IsExcluded:    func(err error) bool { return err == errExcluded },
	})
	return inst
}

// trips returns why a window with these counts trips a breaker of policy
// p: ReasonFailureRate or ReasonConsecutiveFailures, or "" if it does not:
// the one rule that decides a trip, of a key's own window and of the
// fleet's (which passes no consecutive failures: those stay local).
func trips(p Policy, failures, successes uint64, consecutive uint32) Reason {
	if p.ConsecutiveFailures != Off && consecutive >= uint32(p.ConsecutiveFailures) {
		return ReasonConsecutiveFailures
	}
	if n := failures + successes; p.FailureRate != Off && n >= uint64(p.MinRequests) && n > 0 &&
		float64(failures)/float64(n) >= p.FailureRate {
		return ReasonFailureRate
	}
	return ""
}

// readyToTrip is gobreaker's ReadyToTrip: called with the window's counts
// after each failure while closed. The rate counts only finished calls:
// gobreaker's Requests includes those still in flight.
func (br *breaker) readyToTrip(inst *instance, c gobreaker.Counts) bool {
	reason := trips(br.policy, uint64(c.TotalFailures), uint64(c.TotalSuccesses), c.ConsecutiveFailures)
	if reason == "" {
		return false
	}
	inst.tripped = tripInfo{reason: reason, counts: c}
	return true
}

// onStateChange is gobreaker's OnStateChange, called with its mutex held:
// it must not call back into the instance. The one change an instance
// makes is its trip from closed to open.
func (br *breaker) onStateChange(inst *instance, from, to gobreaker.State) {
	if from != gobreaker.StateClosed || to != gobreaker.StateOpen || br.inst.Load() != inst {
		return // an instance replaced by Reset or a recovery
	}
	br.trip(inst.tripped)
}

// override is a state forced by ForceOpen or ForceClose.
type override struct {
	state State
	until int64  // 0: until Release
	by    string // who forced it
	fleet bool   // read from the fleet's shared state
}

// forced returns the state that ForceOpen or ForceClose set and the time it
// has left (0: until Release), ending it if its time is up.
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
	if br.override.CompareAndSwap(o, nil) {
		br.record(now, Event{From: o.state, To: br.state(), Reason: ReasonExpiry})
	}
	return 0, 0, false
}

// forceLocal forces br's state with o; e says why.
func (br *breaker) forceLocal(o *override, e Event) {
	e.From, e.To = br.state(), o.state
	br.override.Store(o)
	br.record(br.clock.now(), e)
}

// releaseLocal ends br's forced state, if any; e says why.
func (br *breaker) releaseLocal(e Event) {
	from := br.state()
	if br.override.Swap(nil) != nil {
		e.From, e.To = from, br.state()
		br.record(br.clock.now(), e)
	}
}

// resetLocal puts br back as it was new, the fleet's hold on it gone; e
// says why.
func (br *breaker) resetLocal(e Event) {
	from := br.state()
	br.mu.Lock()
	defer br.mu.Unlock()
	br.inst.Store(br.newInstance())
	br.override.Store(nil)
	br.phase.Store(nil)
	if br.fleet != nil {
		br.fleet.reset()
	}
	br.upstreamUntil.Store(0)
	br.lastTrip.Store(nil)
	e.From, e.To = from, StateClosed
	br.record(br.clock.now(), e)
}

// state returns the breaker's state: a forced state first, then the
// fleet's hold, then the phase, which it first moves on if its time is up,
// as a call would.
func (br *breaker) state() State {
	if st, _, ok := br.forced(); ok {
		return st
	}
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
			br.halfOpen(ph, now)
		case ph.state == StateRecovering && now >= ph.until:
			br.endRamp(ph, now)
		case ph.state == StateHalfOpen && br.expireProbes(ph, now):
		default:
			return ph.state
		}
	}
}

// record notes a state change of br at now (ns since the set's epoch): it
// counts the transition and hands the event, completed with the key, mode
// and time, to the set's notifier. It runs inside gobreaker's OnStateChange
// too, so it never calls into gobreaker.
func (br *breaker) record(now int64, e Event) {
	if e.From == e.To {
		return
	}
	br.since.Store(now)
	br.changes[e.From][e.To].Add(1)
	if o := br.override.Load(); o != nil && e.From != o.state && e.To != o.state {
		e.Forced = o.state // a change underneath
	}
	e.Time, e.Key, e.Mode = br.clock.at(now), br.key, br.mode
	br.notes.publish(e)
}

// clock reads a set's monotonic clock: nanoseconds since the set was made,
// which fit in an atomic.
type clock struct {
	epoch time.Time
}

// now returns the time now, in ns since the epoch.
func (c *clock) now() int64 { return int64(time.Since(c.epoch)) }

// at returns the wall time of t, in ns since the epoch.
func (c *clock) at(t int64) time.Time { return c.epoch.Add(time.Duration(t)) }

// addSat returns the time t (ns since the epoch) plus d, or the latest time
// there is if that overflows: a long duration added to a time saturates,
// never wraps into the past.
func addSat(t int64, d time.Duration) int64 {
	if d > 0 && t > math.MaxInt64-int64(d) {
		return math.MaxInt64
	}
	return t + int64(d)
}

// totals returns br's requests by result.
func (br *breaker) totals() Totals {
	return Totals{
		Success:     br.results[resultSuccess].Load(),
		Failure:     br.results[resultFailure].Load(),
		Excluded:    br.results[resultExcluded].Load(),
		Rejected:    br.results[resultRejected].Load(),
		WouldReject: br.results[resultWouldReject].Load(),
	}
}

// idle reports whether br can be dropped; the set's mu must be held. Only a
// closed breaker with nothing in flight is dropped: an open, recovering,
// forced or fleet-held one keeps its state.
func (br *breaker) idle(now int64) bool {
	if br.idleTTL == 0 {
		return false
	}
	t := br.totals()
	total := t.Success + t.Failure + t.Excluded + t.Rejected + t.WouldReject
	if total != br.sweepTotal {
		br.sweepTotal, br.activeAt = total, now
		return false
	}
	if now-br.activeAt < int64(br.idleTTL) || br.override.Load() != nil || br.phase.Load() != nil || br.fleet != nil && br.fleet.holds() {
		return false
	}
	return inFlight(br.inst.Load().cb.Counts()) == 0
}

// inFlight returns how many admitted requests have not finished: gobreaker
// counts a request when it is admitted and its outcome when it finishes.
func inFlight(c gobreaker.Counts) uint32 {
	if done := c.TotalSuccesses + c.TotalFailures + c.TotalExclusions; c.Requests > done {
		return c.Requests - done
	}
	return 0
}

// result is what happened to one call, as the requests_total metric names
// it.
type result uint8

const (
	resultSuccess result = iota
	resultFailure
	resultExcluded
	resultRejected
	resultWouldReject
	numResults
)

var resultNames = [numResults]string{"success", "failure", "excluded", "rejected", "would_reject"}

// resultOf maps each Outcome to the result it is counted as.
var resultOf = [...]result{Success: resultSuccess, Failure: resultFailure, Excluded: resultExcluded}
