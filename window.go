package httpbreaker

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	_ "unsafe" // for go:linkname

	"github.com/sony/gobreaker/v2"
)

// This file is what a breaker counts while it is closed: the tallies of
// every call it saw (the metrics), and the window of outcomes its trip rule
// looks at. A closed call adds to counters that no other core writes at the
// same moment and reads the clock once; it takes no lock, unless the policy
// counts the last calls. See docs/design/closed-path.md.

// stripes is how many cache lines a breaker spreads each counter over: two
// per P (GOMAXPROCS, rounded up to a power of two), at most 128. A P adds
// to the first of its two: CPUs fetch lines in aligned pairs (the adjacent
// line prefetcher), so that two cores writing the two lines of one pair
// contend as if they shared one.
var stripes = func() uint32 {
	n := uint32(1)
	for n < uint32(2*runtime.GOMAXPROCS(0)) && n < 128 {
		n *= 2
	}
	return n
}()

// stripe picks the stripe a call adds to: its P's. A core adds to lines
// that it wrote last, and that stay in its cache; a stripe picked at random
// was last written by another core about half the time on two cores, a
// cache miss per counter (docs/design/closed-path.md measures both). The P
// is read as sync.Pool reads it, pinned for the moment it takes: the
// goroutine may move on at once, which costs only a miss.
func stripe() uint32 {
	p := procPin()
	procUnpin()
	return uint32(2*p) & (stripes - 1) // the first line of the P's pair
}

// procPin and procUnpin are the runtime's, as sync.Pool uses them; the
// runtime keeps them reachable for packages outside the standard library.
//
//go:linkname procPin runtime.procPin
func procPin() int

//go:linkname procUnpin runtime.procUnpin
func procUnpin()

// Small structs that every request reads (a wired handler, its key's
// reference, the set's clock) are padded to one cache line: made once,
// they land in the 64-byte size class, whose objects each have a line of
// their own. Otherwise an object that another core writes on every request
// could share the line (a per-request value of another package, a
// benchmark's loop counter), and make each read a cache miss.
// TestHotStructsFillALine holds them to it.

// The tallies a breaker keeps of its calls, for its life.
const (
	tallyAdmitted = iota // calls admitted, on every path
	tallySuccess
	tallyFailure
	tallyExcluded
	tallySlow // with SlowCallRate: counted as slow, instead of success or failure
	tallyRejected
	tallyWouldReject
	tallyUpstream // failures blamed on an upstream: counted apart, in no window (blame.go)
	numTallies
)

// tallyCell is one stripe of the tallies: one cache line.
type tallyCell [numTallies]atomic.Uint64

// tallies counts a breaker's calls by what became of them.
type tallies []tallyCell

func newTallies() tallies { return make(tallies, stripes) }

func (t tallies) add(i uint32, kind int) { t[i&(stripes-1)][kind].Add(1) }

func (t tallies) sum(kind int) uint64 {
	var n uint64
	for i := range t {
		n += t[i][kind].Load()
	}
	return n
}

// counts are outcomes: in a window, or added up from its stripes.
type counts struct {
	success, failure, excluded, slow uint64
}

func (c counts) minus(d counts) counts {
	sub := func(a, b uint64) uint64 {
		if a > b {
			return a - b
		}
		return 0
	}
	return counts{sub(c.success, d.success), sub(c.failure, d.failure), sub(c.excluded, d.excluded), sub(c.slow, d.slow)}
}

func (c counts) plus(d counts) counts {
	return counts{c.success + d.success, c.failure + d.failure, c.excluded + d.excluded, c.slow + d.slow}
}

// The counters of a window's stripe.
const (
	cellSuccess = iota
	cellFailure
	cellExcluded
	cellSlow
)

// windowCell is one stripe of a window's counters, indexed by the cell
// constants: one cache line.
type windowCell [8]atomic.Uint64

// window holds the outcomes a closed breaker's trip rule looks at: those
// of the time window (Window, in Buckets), or of the last LastCalls calls.
// A new window is made when the breaker closes or is reset; calls admitted
// before count in the window they were admitted to, which then no longer
// matters.
//
// The time window keeps the current bucket in striped counters, which calls
// add to without a lock, and the buckets before it in a ring. The first
// call (or reader) that finds the clock in a new bucket rolls the window,
// under mu: what the stripes gained since the last roll becomes the bucket
// that ended. Reading the window rolls it too, so that an idle key's window
// empties with time.
//
// The trip rule is checked after every outcome that could make it hold: a
// failure, a slow call, and a success while the window holds failures or
// slow calls and fewer than MinRequests outcomes (armed), which could be
// the outcome that brings it to MinRequests. Every other success can only
// lower the rates, and costs no check.
//
// gobreaker remains the engine of record of the closed state: the window
// hands it each outcome that could trip the breaker, gobreaker asks its
// ReadyToTrip, which is the policy's rule over this window, and its
// OnStateChange opens the breaker. A success that cannot trip the breaker
// never reaches it, nor its lock.
type window struct {
	policy Policy
	width  int64 // ns per bucket; 0 for a window of the last calls
	cells  []windowCell

	cur  atomic.Int64 // the bucket calls add to now, counted from the epoch
	mu   sync.Mutex   // guards rolling and what follows
	last counts       // the stripes' sums at the last roll
	ring []counts     // ended buckets, by bucket number modulo len(ring)
	tags []int64      // the bucket number each ring entry holds

	// The last calls, with LastCalls, under mu: 0 success, 1 failure, 2
	// excluded, plus 4 when slow.
	calls   []uint8
	next    int
	lastSum counts

	armed  atomic.Bool   // a success may complete MinRequests: check it
	streak atomic.Uint32 // failures since the last success
	// streakFrom is the bucket of the streak's first failure, and
	// successesAt the successes counted when the last failure came.
	streakFrom  atomic.Int64
	successesAt atomic.Uint64

	engine  *gobreaker.CircuitBreaker[struct{}]
	tripped tripInfo // what made the engine trip; under the engine's lock
}

// cellOf is the counter each Outcome adds to.
var cellOf = [...]int{Success: cellSuccess, Failure: cellFailure, Excluded: cellExcluded}

// sat32 returns n as a uint32, at most the largest one.
func sat32(n uint64) uint32 { return uint32(min(n, 1<<32-1)) }

// tripInfo records what made a breaker trip.
type tripInfo struct {
	reason Reason
	counts windowCounts
}

// windowCounts is what the trip rule judges.
type windowCounts struct {
	counts
	consecutive          uint32
	consecutiveSuccesses uint32
}

// errCheck is how the window hands gobreaker an outcome to judge.
var errCheck = errors.New("httpbreaker: an outcome that could trip the breaker")

// neverHalfOpen is the engine's Timeout: a window whose engine has tripped
// is replaced before it could move to half-open by itself, since the
// cooldown and the probes are the breaker's.
const neverHalfOpen = 100 * 365 * 24 * 3600 * 1e9

// newWindow makes a window for the resolved policy p of the breaker named
// name, at now on clock c; its engine calls onTrip with the window and
// what tripped it.
func newWindow(name string, p Policy, c *clock, now int64, onTrip func(*window, tripInfo)) *window {
	w := &window{policy: p, cells: make([]windowCell, stripes)}
	if p.LastCalls > 0 {
		w.calls = make([]uint8, 0, p.LastCalls)
	} else {
		w.width = int64(p.Window) / int64(p.Buckets)
		w.ring = make([]counts, p.Buckets)
		w.tags = make([]int64, p.Buckets)
		for i := range w.tags {
			w.tags[i] = -1
		}
		w.cur.Store(now / w.width)
	}
	w.engine = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        name,
		Timeout:     neverHalfOpen,
		ReadyToTrip: func(gobreaker.Counts) bool { return w.trips(c.now()) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if from == gobreaker.StateClosed && to == gobreaker.StateOpen {
				onTrip(w, w.tripped)
			}
		},
		IsSuccessful: func(error) bool { return false }, // every outcome handed to it is judged
	})
	return w
}

// record adds a finished call's outcome at now (ns since the epoch) to the
// window, through stripe i, and checks the trip rule if the outcome could
// make it hold.
func (w *window) record(o Outcome, slow bool, now int64, i uint32) {
	if w.calls != nil {
		w.recordCall(o, slow)
	} else {
		if b := now / w.width; b != w.cur.Load() {
			w.roll(b)
		}
		c := &w.cells[i&(stripes-1)]
		c[cellOf[o]].Add(1)
		if slow && o != Excluded {
			c[cellSlow].Add(1)
		}
	}
	check := slow && o != Excluded
	switch o {
	case Failure:
		if w.streak.Add(1) == 1 {
			w.streakFrom.Store(w.cur.Load())
		}
		w.successesAt.Store(w.successes())
		check = true
	case Success:
		if w.streak.Load() != 0 {
			w.streak.Store(0)
		}
		check = check || w.armed.Load()
	}
	if check {
		_, _ = w.engine.Execute(func() (struct{}, error) { return struct{}{}, errCheck })
	}
}

// recordCall adds an outcome to a window of the last calls.
func (w *window) recordCall(o Outcome, slow bool) {
	if o == Excluded {
		return // tells nothing: not one of the last calls
	}
	code := uint8(0)
	if o == Failure {
		code = 1
	}
	if slow {
		code |= 4
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.calls) < cap(w.calls) {
		w.calls = append(w.calls, code)
	} else {
		w.lastSum = w.lastSum.minus(callCounts(w.calls[w.next]))
		w.calls[w.next] = code
		w.next = (w.next + 1) % len(w.calls)
	}
	w.lastSum = w.lastSum.plus(callCounts(code))
}

func callCounts(code uint8) counts {
	var c counts
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

// roll moves the time window on to bucket b.
func (w *window) roll(b int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rollLocked(b)
}

func (w *window) rollLocked(b int64) {
	cur := w.cur.Load()
	if b <= cur {
		return
	}
	sums := w.stripes()
	slot := int(cur % int64(len(w.ring)))
	w.ring[slot], w.tags[slot] = sums.minus(w.last), cur
	w.last = sums
	w.cur.Store(b)
	w.armed.Store(true) // outcomes left the window: the next one is checked
}

// stripes adds up the stripes of the time window.
func (w *window) stripes() counts {
	var c counts
	for i := range w.cells {
		cell := &w.cells[i]
		c.success += cell[cellSuccess].Load()
		c.failure += cell[cellFailure].Load()
		c.excluded += cell[cellExcluded].Load()
		c.slow += cell[cellSlow].Load()
	}
	return c
}

// successes returns how many successes the window has counted since it was
// made.
func (w *window) successes() uint64 {
	if w.calls != nil {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.lastSum.success
	}
	var n uint64
	for i := range w.cells {
		n += w.cells[i][cellSuccess].Load()
	}
	return n
}

// counts returns the outcomes in the window at now, rolling it first.
func (w *window) counts(now int64) windowCounts {
	w.mu.Lock()
	defer w.mu.Unlock()
	var wc windowCounts
	streak := w.streak.Load()
	if w.calls != nil {
		wc.counts = w.lastSum
		wc.consecutive = streak
		wc.consecutiveSuccesses = uint32(min(w.lastSum.success-w.successesAt.Load(), 1<<32-1))
		return wc
	}
	b := now / w.width
	w.rollLocked(b)
	all := w.stripes()
	oldest := b - int64(len(w.ring)) + 1 // the oldest bucket still in the window
	var live counts
	for i, tag := range w.tags {
		if tag >= oldest && tag < b {
			live = live.plus(w.ring[i])
		}
	}
	wc.counts = live.plus(all.minus(w.last))
	// A streak that began before the window did counts only what is left
	// of it in the window: every failure since its first is part of it.
	wc.consecutive = streak
	if streak > 0 && w.streakFrom.Load() < oldest {
		wc.consecutive = uint32(min(uint64(streak), wc.failure))
	}
	afterFailure := all.success - w.successesAt.Load()
	wc.consecutiveSuccesses = uint32(min(afterFailure, wc.success, 1<<32-1))
	return wc
}

// trips is the engine's ReadyToTrip: whether the policy's rule holds over
// the window at now. It notes what tripped it, and whether the next
// success needs a check.
func (w *window) trips(now int64) bool {
	wc := w.counts(now)
	reason := tripRule(w.policy, wc)
	if reason == "" {
		n := wc.success + wc.failure
		w.armed.Store(n < uint64(w.policy.MinRequests) && (wc.failure > 0 || wc.slow > 0))
		return false
	}
	w.tripped = tripInfo{reason: reason, counts: wc}
	return true
}

// tripRule returns why a window with counts c trips a breaker of policy p
// (the resolved policy), or "" if it does not: the one rule that decides a
// trip, of a key's own window and of the fleet's (which passes no
// consecutive failures: those stay local).
func tripRule(p Policy, c windowCounts) Reason {
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
