package httpbreaker

import (
	"log/slog"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// result is the label of the requests_total metric: what happened to one request.
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

// breaker is one key's circuit breaker: a gobreaker instance, the policy it
// was made from, and the states this package layers on top of gobreaker.
//
// gobreaker decides closed, open and half-open. Around it:
//   - the hold: gobreaker's Timeout is OpenFor, so the longer cooldown after
//     a failed probe (or an upstream's Retry-After) is kept here, and while
//     it lasts the middleware rejects without calling gobreaker at all;
//     gobreaker moves from open to half-open lazily, on its next call, so it
//     moves only once the hold has ended, and its state changes stay the
//     ones reported;
//   - the recovery ramp, after gobreaker closes;
//   - the override set by ForceOpen and ForceClose.
//
// Reset replaces the gobreaker instance; callbacks from a replaced one are
// ignored.
type breaker struct {
	set      *Breakers
	key      string
	policy   Policy // resolved
	mode     Mode
	slowCall time.Duration // 0: off
	idleTTL  time.Duration // 0: never dropped
	inst     atomic.Pointer[instance]

	// Times are nanoseconds since set.epoch; 0 means unset.
	holdUntil     atomic.Int64 // open until then
	rampStart     atomic.Int64
	rampUntil     atomic.Int64 // recovering until then
	rampSeq       atomic.Uint64
	upstreamUntil atomic.Int64 // the latest Retry-After of an upstream's failure
	override      atomic.Pointer[override]
	since         atomic.Int64 // last state change
	dropped       atomic.Bool  // dropped as idle: a new breaker serves the key

	results [numResults]atomic.Uint64
	changes [numStates][numStates]atomic.Uint64

	// Guarded by set.mu: what the idle sweep saw last.
	sweepTotal uint64
	activeAt   int64

	problem *problemBodies // the reject responses, built once
}

// instance is one gobreaker instance and what goes with it.
type instance struct {
	cb *gobreaker.CircuitBreaker[struct{}]
	// Guarded by cb's mutex: written only in readyToTrip and onStateChange,
	// which gobreaker calls with it held.
	nominal  time.Duration // the cooldown before jitter: OpenFor, doubling per failed probe
	cooldown time.Duration // the cooldown in force
	tripped  tripInfo
}

// override is a state forced by ForceOpen or ForceClose.
type override struct {
	state State
	until int64 // 0: until Release
}

// tripInfo records what made a breaker trip, for the log record.
type tripInfo struct {
	reason string
	counts gobreaker.Counts
}

// defaultKeyedIdleTTL is the IdleTTL of keys that a KeyFunc chose, unless
// the policy sets one.
const defaultKeyedIdleTTL = time.Hour

func newBreaker(set *Breakers, key string, p Policy, keyed bool, now int64) *breaker {
	br := &breaker{set: set, key: key, policy: p, mode: p.Mode, activeAt: now}
	if p.SlowCall != Off {
		br.slowCall = p.SlowCall
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
	br.problem = newProblemBodies(key)
	return br
}

// newInstance makes a gobreaker instance from the policy, field by field.
func (br *breaker) newInstance() *instance {
	p := br.policy
	inst := &instance{nominal: p.OpenFor, cooldown: p.OpenFor}
	bucket := p.Window / time.Duration(p.Buckets)
	inst.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        br.key,
		MaxRequests: uint32(p.HalfOpenRequests),
		// Interval is an exact multiple of the bucket, so that gobreaker,
		// which rounds Interval up to one, keeps Buckets buckets.
		Interval:      bucket * time.Duration(p.Buckets),
		BucketPeriod:  bucket,
		Timeout:       p.OpenFor,
		ReadyToTrip:   func(c gobreaker.Counts) bool { return br.readyToTrip(inst, c) },
		OnStateChange: func(_ string, from, to gobreaker.State) { br.onStateChange(inst, from, to) },
		IsSuccessful:  func(err error) bool { return err == nil },
		IsExcluded:    func(err error) bool { return err == errExcluded },
	})
	return inst
}

// readyToTrip is gobreaker's ReadyToTrip: called with the window's counts
// after each failure while closed. The rate counts only finished requests:
// gobreaker's Requests includes those still in flight.
func (br *breaker) readyToTrip(inst *instance, c gobreaker.Counts) bool {
	p := br.policy
	reason := ""
	if p.ConsecutiveFailures != Off && c.ConsecutiveFailures >= uint32(p.ConsecutiveFailures) {
		reason = "consecutive_failures"
	} else if n := c.TotalSuccesses + c.TotalFailures; p.FailureRate != Off && n >= uint32(p.MinRequests) &&
		float64(c.TotalFailures)/float64(n) >= p.FailureRate {
		reason = "failure_rate"
	}
	if reason == "" {
		return false
	}
	inst.tripped = tripInfo{reason: reason, counts: c}
	return true
}

// onStateChange is gobreaker's OnStateChange. gobreaker calls it with its
// mutex held, so it must not call back into the instance.
func (br *breaker) onStateChange(inst *instance, gfrom, gto gobreaker.State) {
	if br.inst.Load() != inst {
		return // replaced by Reset: its changes are not this key's any more
	}
	now := br.set.clock()
	from, to := fromGobreaker(gfrom), fromGobreaker(gto)
	var attrs []slog.Attr
	switch to {
	case StateOpen:
		if from == StateClosed && br.rampUntil.Swap(0) != 0 {
			from = StateRecovering
		}
		if from == StateHalfOpen {
			inst.nominal = br.backoff(inst.nominal)
			inst.cooldown = br.jitter(inst.nominal)
		} else {
			inst.nominal, inst.cooldown = br.policy.OpenFor, br.policy.OpenFor
		}
		until := now + int64(inst.cooldown)
		if u := br.upstreamUntil.Load(); u > until {
			until = min(u, now+int64(br.maxCooldown()))
			attrs = append(attrs, slog.Duration("upstream_retry_after", time.Duration(u-now)))
		}
		br.holdUntil.Store(until)
		attrs = append(attrs, slog.Duration("open_for", time.Duration(until-now)))
		if from != StateHalfOpen {
			c := inst.tripped.counts
			attrs = append(attrs,
				slog.String("reason", inst.tripped.reason),
				slog.Uint64("failures", uint64(c.TotalFailures)),
				slog.Uint64("successes", uint64(c.TotalSuccesses)),
				slog.Uint64("consecutive_failures", uint64(c.ConsecutiveFailures)),
				slog.Float64("failure_rate", Counts{Successes: c.TotalSuccesses, Failures: c.TotalFailures}.FailureRate()),
			)
		}
	case StateHalfOpen:
		br.holdUntil.Store(0)
	case StateClosed:
		br.holdUntil.Store(0)
		br.upstreamUntil.Store(0)
		if ramp := br.policy.RecoveryRamp; ramp > 0 {
			br.rampStart.Store(now)
			br.rampUntil.Store(now + int64(ramp))
			to = StateRecovering
			attrs = append(attrs, slog.Duration("recovery_ramp", ramp))
		}
	}
	if o := br.override.Load(); o != nil {
		attrs = append(attrs, slog.String("forced", o.state.String()))
	}
	br.record(from, to, now, attrs...)
}

// backoff returns the nominal cooldown after a failed probe: twice the
// last one, at most MaxOpenFor.
func (br *breaker) backoff(last time.Duration) time.Duration {
	p := br.policy
	if p.MaxOpenFor == Off {
		return p.OpenFor
	}
	if last >= p.MaxOpenFor/2 {
		return p.MaxOpenFor
	}
	return 2 * last
}

// jitter returns the cooldown to wait for a nominal one: up to a fifth
// less, at random, so that replicas that tripped together probe apart, and
// never below OpenFor. The jitter does not compound: each cooldown is drawn
// from its own nominal value.
func (br *breaker) jitter(nominal time.Duration) time.Duration {
	return max(nominal-rand.N(nominal/5+1), br.policy.OpenFor)
}

// maxCooldown is the longest the breaker stays open at a time.
func (br *breaker) maxCooldown() time.Duration {
	if br.policy.MaxOpenFor == Off {
		return br.policy.OpenFor
	}
	return br.policy.MaxOpenFor
}

// noteUpstreamRetry records that a failure asked, with Retry-After, not to
// be retried for d.
func (br *breaker) noteUpstreamRetry(d time.Duration) {
	until := br.set.clock() + int64(d)
	for {
		old := br.upstreamUntil.Load()
		if old >= until || br.upstreamUntil.CompareAndSwap(old, until) {
			return
		}
	}
}

// holdLeft returns how long the breaker stays open before it admits
// probes, and false when it is not open (or its cooldown has ended). The
// cooldown's last instant is still open, as it is for gobreaker. It reads the
// clock only while a hold is set, never on the closed path.
func (br *breaker) holdLeft() (time.Duration, bool) {
	h := br.holdUntil.Load()
	if h == 0 {
		return 0, false
	}
	left := h - br.set.clock()
	return time.Duration(max(left, 0)), left >= 0
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
	now := br.set.clock()
	if now <= o.until {
		return o.state, time.Duration(o.until - now), true
	}
	if br.override.CompareAndSwap(o, nil) {
		br.record(o.state, br.state(), now, slog.String("by", "expiry"))
	}
	return 0, 0, false
}

// goldenFraction spreads the recovery ramp's admissions evenly: the
// fractional parts of n times it are equidistributed in [0, 1).
const goldenFraction = 0.6180339887498949

// rampAdmits reports whether a request is admitted while recovering: the
// share admitted rises linearly from 0 to 1 over the ramp.
func (br *breaker) rampAdmits() bool {
	until := br.rampUntil.Load()
	if until == 0 {
		return true
	}
	now := br.set.clock()
	if now >= until {
		br.endRamp(until, now)
		return true
	}
	start := br.rampStart.Load()
	share := float64(now-start) / float64(until-start)
	_, frac := math.Modf(float64(br.rampSeq.Add(1)) * goldenFraction)
	return frac < share
}

// recovering reports whether the recovery ramp is on, ending it if its
// time is up.
func (br *breaker) recovering() bool {
	until := br.rampUntil.Load()
	if until == 0 {
		return false
	}
	if now := br.set.clock(); now >= until {
		br.endRamp(until, now)
		return false
	}
	return true
}

func (br *breaker) endRamp(until, now int64) {
	if br.rampUntil.CompareAndSwap(until, 0) {
		br.record(StateRecovering, StateClosed, now)
	}
}

// state returns the breaker's state: a forced state first, then the hold,
// the recovery ramp, and gobreaker's own state, which it first moves to
// half-open if the cooldown has ended, as gobreaker does lazily on its next
// call.
func (br *breaker) state() State {
	if st, _, ok := br.forced(); ok {
		return st
	}
	if _, held := br.holdLeft(); held {
		return StateOpen
	}
	if br.recovering() {
		return StateRecovering
	}
	return fromGobreaker(br.inst.Load().cb.State())
}

func (br *breaker) status() Status {
	st := br.state()
	c := br.inst.Load().cb.Counts()
	var retry time.Duration
	switch st {
	case StateOpen:
		retry, _ = br.holdLeft()
	case StateForcedOpen:
		_, retry, _ = br.forced()
	}
	return Status{
		Key:        br.key,
		State:      st,
		Mode:       br.mode,
		Since:      br.set.epoch.Add(time.Duration(br.since.Load())),
		RetryAfter: retry,
		Window: Counts{
			Successes:            c.TotalSuccesses,
			Failures:             c.TotalFailures,
			Excluded:             c.TotalExclusions,
			ConsecutiveSuccesses: c.ConsecutiveSuccesses,
			ConsecutiveFailures:  c.ConsecutiveFailures,
			InFlight:             inFlight(c),
		},
		Totals: br.totals(),
		Policy: br.policy,
	}
}

// inFlight returns how many admitted requests have not finished: gobreaker
// counts a request when it is admitted and its outcome when it finishes.
func inFlight(c gobreaker.Counts) uint32 {
	if done := c.TotalSuccesses + c.TotalFailures + c.TotalExclusions; c.Requests > done {
		return c.Requests - done
	}
	return 0
}

func (br *breaker) totals() Totals {
	return Totals{
		Success:     br.results[resultSuccess].Load(),
		Failure:     br.results[resultFailure].Load(),
		Excluded:    br.results[resultExcluded].Load(),
		Rejected:    br.results[resultRejected].Load(),
		WouldReject: br.results[resultWouldReject].Load(),
	}
}

// clock returns monotonic nanoseconds since the set was made.
func (b *Breakers) clock() int64 { return int64(time.Since(b.epoch)) }
