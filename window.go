package httpbreaker

import (
	"sync"
	"sync/atomic"
	"time"
)

// tripWindow holds the outcomes a closed breaker's trip rule judges: those of
// the time window (Window, in Buckets), or of the last LastCalls calls. It
// is part of its breaker and starts anew when the breaker closes or is
// reset (start); a call admitted before counts in no window of it (apart).
//
// The time window reads the current bucket from the breaker's counters:
// what they gained since the bucket began. The buckets before it are in a
// ring. The first call (or reader) that finds the clock past the bucket's
// end rolls the window, under mu. Reading the window rolls it too, so that
// an idle key's window empties with time.
//
// The trip rule is checked after every outcome that could make it hold: a
// failure, a slow call, and a success while the window holds failures or
// slow calls and fewer than MinRequests outcomes (armed), which could be
// the outcome that brings it to MinRequests. Every other success can only
// lower the rates, and costs no check. The check is gobreaker's to make
// (engine.go).
type tripWindow struct {
	// Read by every call.
	width  int64         // ns per bucket; 0 for a window of the last calls
	rollAt atomic.Int64  // when the current bucket ends
	gen    atomic.Uint32 // which start of the window; a closed call's ticket carries it
	streak atomic.Uint32 // failures since the last success
	armed  atomic.Bool   // a success may complete MinRequests: check it
	// counters are the breaker's, whose gains since the current bucket
	// began are its outcomes; clock is the set's.
	counters *counters
	clock    *clock

	policy *Policy // the breaker's, resolved
	// streakFrom is the bucket of the streak's first failure, and
	// successesAt the window's successes when the last failure came.
	streakFrom  atomic.Int64
	successesAt atomic.Uint64
	engine      atomic.Pointer[tripEngine] // made at the first check after a start

	mu   sync.Mutex
	cur  int64          // the current bucket's number, counted from the epoch
	last outcomeCounts  // what the counters held when the current bucket began, and what counts apart
	ring []windowBucket // ended buckets, by number modulo len(ring); one that left the window is zero
	// ended is the sum of the ended buckets still in the window.
	ended outcomeCounts
	// The last calls, with LastCalls: a ring of codes (0 success, 1
	// failure, plus 4 when slow) and their sums.
	calls   []uint8
	next    int
	callSum outcomeCounts
}

// windowBucket is one ended bucket's outcomes.
type windowBucket struct {
	success, failure, excluded, slow uint32
}

func (b windowBucket) asCounts() outcomeCounts {
	return outcomeCounts{uint64(b.success), uint64(b.failure), uint64(b.excluded), uint64(b.slow)}
}

func bucketOf(c outcomeCounts) windowBucket {
	return windowBucket{sat32(c.success), sat32(c.failure), sat32(c.excluded), sat32(c.slow)}
}

// setUp sets a breaker's window up for policy p, at now.
func (w *tripWindow) setUp(p *Policy, c *counters, cl *clock, now int64) {
	w.policy, w.counters, w.clock = p, c, cl
	if p.LastCalls > 0 {
		w.calls = make([]uint8, 0, p.LastCalls)
	} else {
		w.width = int64(p.Window) / int64(p.Buckets)
		w.ring = make([]windowBucket, p.Buckets)
	}
	w.restart(now)
}

// restart begins the window anew at now: empty, and no call admitted before
// counts in it.
func (w *tripWindow) restart(now int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gen.Add(1)
	w.last = w.counters.outcomes()
	w.streak.Store(0)
	w.armed.Store(false)
	w.successesAt.Store(w.last.success)
	w.engine.Store(nil)
	if w.width == 0 {
		w.calls, w.next, w.callSum = w.calls[:0], 0, outcomeCounts{}
		w.rollAt.Store(now + int64(time.Second))
		return
	}
	clear(w.ring)
	w.ended = outcomeCounts{}
	w.cur = now / w.width
	w.rollAt.Store((w.cur + 1) * w.width)
}

// addOutcome counts a closed call's outcome, of kind, at now through stripe i of
// the counters, and checks the trip rule if the outcome could make it hold.
// It reports what tripped the window, if it did. now may be a tick old (the
// clock's recent reading): within a tick of the bucket's end, the clock is
// read, so that an outcome is counted in the bucket it ended in.
func (w *tripWindow) addOutcome(v verdict, kind int, i uint32, now int64) (tripInfo, bool) {
	if w.width == 0 {
		w.addCall(v, kind, i)
		if at := w.rollAt.Load(); now >= at && w.rollAt.CompareAndSwap(at, now+int64(time.Second)) {
			w.counters.rolled(now) // a window of the last calls never rolls: its counters hear of time so
		}
	} else {
		if end := w.rollAt.Load(); now >= end-int64(coarseTick) { // near the bucket's end: the clock decides
			if now = w.clock.now(); now >= end {
				w.rollTo(now)
			}
		}
		w.counters.inc(kind, i)
	}
	check := v.slow
	switch v.outcome {
	case Failure:
		if w.streak.Add(1) == 1 {
			w.streakFrom.Store(w.bucketAt(now))
		}
		w.successesAt.Store(w.successTotal())
		check = true
	case Success:
		if w.streak.Load() != 0 {
			w.streak.Store(0)
		}
		check = check || w.armed.Load()
	}
	if !check {
		return tripInfo{}, false
	}
	return w.checkTrip()
}

// addApart counts an outcome, of kind, that belongs to no window of this
// one's: a probe's, or a call's admitted before the window started. It is
// in the counters, for the totals, and out of the window.
func (w *tripWindow) addApart(kind int, i uint32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.counters.inc(kind, i)
	if w.width != 0 {
		var one [numCounts]uint64
		one[kind] = 1
		w.last = w.last.plus(outcomesOf(&one))
	}
}

// addCall adds an outcome to a window of the last calls.
func (w *tripWindow) addCall(v verdict, kind int, i uint32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.counters.inc(kind, i)
	if v.outcome != Success && v.outcome != Failure {
		return // tells nothing: not one of the last calls
	}
	code := uint8(0)
	if v.outcome == Failure {
		code = 1
	}
	if v.slow {
		code |= 4
	}
	if len(w.calls) < cap(w.calls) {
		w.calls = append(w.calls, code)
	} else {
		w.callSum = w.callSum.minus(callCounts(w.calls[w.next]))
		w.calls[w.next] = code
		w.next = (w.next + 1) % len(w.calls)
	}
	w.callSum = w.callSum.plus(callCounts(code))
}

func callCounts(code uint8) outcomeCounts {
	var c outcomeCounts
	if code&1 != 0 {
		c.failure = 1
	} else {
		c.success = 1
	}
	if code&4 != 0 {
		c.slow = 1
	}
	return c
}

// bucketAt is the number of the bucket that now falls in; 0 for a window of
// the last calls.
func (w *tripWindow) bucketAt(now int64) int64 {
	if w.width == 0 {
		return 0
	}
	return now / w.width
}

// rollTo moves the time window on to the bucket of now.
func (w *tripWindow) rollTo(now int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rollLocked(now)
}

func (w *tripWindow) rollLocked(now int64) {
	b := now / w.width
	if b <= w.cur {
		return
	}
	o := w.counters.outcomes()
	gained := bucketOf(o.minus(w.last))
	n := int64(len(w.ring))
	for k := w.cur - n + 1; k <= min(b-n, w.cur-1); k++ { // the ended buckets that leave the window
		w.ended = w.ended.minus(w.ring[((k%n)+n)%n].asCounts())
	}
	w.ring[w.cur%n] = gained
	if w.cur > b-n {
		w.ended = w.ended.plus(gained.asCounts())
	}
	for k := w.cur + 1; k < b && k < w.cur+1+n; k++ { // buckets no call came in
		w.ring[k%n] = windowBucket{}
	}
	w.last, w.cur = o, b
	w.rollAt.Store((b + 1) * w.width)
	// Outcomes left the window: with failures or slow calls in it, the
	// rule may hold now, and the next outcome checks it. A window with
	// neither cannot trip on a success.
	w.armed.Store(w.ended.failure > 0 || w.ended.slow > 0)
	w.counters.rolled(now)
}

// successTotal returns the successes the window has counted since it was
// made, slow ones included.
func (w *tripWindow) successTotal() uint64 {
	if w.width == 0 {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.callSum.success
	}
	return w.counters.outcomes().success
}

// countsAt returns the outcomes in the window at now, rolling it first.
func (w *tripWindow) countsAt(now int64) windowCounts {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.countsLocked(now)
}

// countsLocked is countsAt with w.mu held.
func (w *tripWindow) countsLocked(now int64) windowCounts {
	var wc windowCounts
	streak := w.streak.Load()
	if w.width == 0 {
		wc.outcomeCounts = w.callSum
		wc.consecutive = streak
		wc.consecutiveSuccesses = uint32(min(w.callSum.success-min(w.successesAt.Load(), w.callSum.success), 1<<32-1))
		return wc
	}
	w.rollLocked(now)
	b := w.cur
	n := int64(len(w.ring))
	all := w.counters.outcomes()
	wc.outcomeCounts = w.ended.plus(all.minus(w.last))
	// A streak that began before the window did counts only what is left
	// of it in the window: every failure since its first is part of it.
	wc.consecutive = streak
	if streak > 0 && w.streakFrom.Load() <= b-n {
		wc.consecutive = uint32(min(uint64(streak), wc.failure))
	}
	afterFailure := all.success - min(w.successesAt.Load(), all.success)
	wc.consecutiveSuccesses = uint32(min(afterFailure, wc.success, 1<<32-1))
	return wc
}

// ruleHolds is the engine's trip rule: the policy's rule (tripRule) over the
// window at now. It notes whether the next success needs a check.
func (w *tripWindow) ruleHolds(now int64) (tripInfo, bool) {
	w.mu.Lock() // the counts and armed together: a roll between would have its armed undone
	defer w.mu.Unlock()
	wc := w.countsLocked(now)
	reason := tripRule(w.policy, wc)
	if reason == "" {
		n := wc.success + wc.failure
		w.armed.Store(n < uint64(w.policy.MinRequests) && (wc.failure > 0 || wc.slow > 0))
		return tripInfo{}, false
	}
	return tripInfo{reason: reason, counts: wc}, true
}

// checkTrip hands the window's engine an outcome that could trip it (making
// the engine at the first check after a start), and returns what tripped
// it if the rule holds now, or held before.
func (w *tripWindow) checkTrip() (tripInfo, bool) {
	e := w.engine.Load()
	if e == nil {
		e = newEngine(func() (tripInfo, bool) { return w.ruleHolds(w.clock.now()) })
		if !w.engine.CompareAndSwap(nil, e) {
			if cur := w.engine.Load(); cur != nil { // another call's; nil if a restart came between
				e = cur
			}
		}
	}
	return e.decide()
}

// tripRule returns why a window with counts c trips a breaker of policy p
// (the resolved policy), or "" if it does not: the one rule that decides a
// trip, of a key's own window and of the fleet's (which passes no
// consecutive failures: those stay local).
func tripRule(p *Policy, c windowCounts) Reason {
	if p.ConsecutiveFailures != Off && c.consecutive >= uint32(p.ConsecutiveFailures) {
		return ReasonConsecutiveFailures
	}
	n := c.success + c.failure
	if n == 0 || n < uint64(p.MinRequests) {
		return ""
	}
	if p.FailureRate != Off && float64(c.failure)/float64(n) >= p.FailureRate {
		return ReasonFailureRate
	}
	if p.SlowCallRate > 0 && float64(c.slow)/float64(n) >= p.SlowCallRate {
		return ReasonSlowCallRate
	}
	return ""
}
