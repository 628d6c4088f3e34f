package httpbreaker

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// This file is what a breaker counts of its calls, for its life: one
// counter per result. The window (window.go) reads the outcomes it judges
// from them, the metrics and Status their totals, the fleet what to send.
// See docs/design/closed-path.md for the measurements behind it.
//
// A key starts compact: one block of counters that a call adds to with a
// compare-and-swap, which tells when another core added at the same moment.
// A key that contends so (a hot key on several cores) is promoted to
// stripes, a pair of cache lines per P, each written by one core; a key that
// goes cold again is demoted at a roll of its window and its stripes are
// freed. So a key costs one block, whatever GOMAXPROCS is, until it is hot.

// Small structs that every request reads (a wired handler, its key's
// reference) are padded to one cache line on 64-bit ports: made once, they
// land in the 64-byte size class, whose objects each have a line of their
// own. Otherwise an object that another core writes on every request could
// share the line (a per-request value of another package, a benchmark's
// loop counter), and make each read a cache miss. TestHotStructsFillALine
// holds them to it.

// The results a breaker counts, indexed into a block of counters.
const (
	countAdmitted    = iota // calls admitted, on every path
	countSuccess            // successes
	countFailure            // failures
	countExcluded           // outcomes that count nowhere
	countSlowSuccess        // with SlowCallRate, slow calls that succeeded
	countSlowFailure        // with SlowCallRate, slow calls that failed
	countUpstream           // failures blamed on an upstream (blame.go)
	countRejected           // calls the breaker turned away
	countWouldReject        // calls it let through in observe mode, or forced closed
	numCounts
)

// results are the results of requests_total and Totals, and the counters
// each adds up: the one table from a breaker's counters to what users see.
var results = [...]result{
	{name: "success", kinds: []int{countSuccess}},
	{name: "failure", kinds: []int{countFailure}},
	{name: "excluded", kinds: []int{countExcluded}},
	{name: "slow", kinds: []int{countSlowSuccess, countSlowFailure}, slow: true},
	{name: "rejected", kinds: []int{countRejected}},
	{name: "would_reject", kinds: []int{countWouldReject}},
	{name: "upstream_failure", kinds: []int{countUpstream}, upstream: true},
}

// result is one result and its counters.
type result struct {
	name           string
	kinds          []int
	slow, upstream bool // shown only for keys that count slow calls apart / call upstreams
}

// of adds up the result's counters in all.
func (r result) of(all *[numCounts]uint64) uint64 {
	var n uint64
	for _, k := range r.kinds {
		n += all[k]
	}
	return n
}

// countOf is the counter a verdict adds to.
func countOf(v verdict) int {
	switch {
	case v.blamed:
		return countUpstream
	case v.slow && v.outcome == Success:
		return countSlowSuccess
	case v.slow && v.outcome == Failure:
		return countSlowFailure
	case v.outcome == Success:
		return countSuccess
	case v.outcome == Failure:
		return countFailure
	}
	return countExcluded
}

// block is one set of counters.
type block [numCounts]atomic.Uint64

// sum returns the counter of kind added up over blocks.
func sumOf(blocks []stripe, kind int) uint64 {
	var n uint64
	for i := range blocks {
		n += blocks[i].block[kind].Load()
	}
	return n
}

// stripe is one P's block, alone on a pair of cache lines: CPUs fetch lines
// in aligned pairs (the adjacent-line prefetcher), so that two cores
// writing the two lines of one pair contend as if they shared one.
type stripe struct {
	block
	_ [128 - numCounts*8]byte
}

// stripes are a hot key's counters: one stripe per P, at most maxStripes.
type stripes struct {
	mask  uint32
	lines []stripe
}

const (
	// promoteAfter is how many contended adds since the last roll promote
	// a key to stripes: a key on which two cores meet a few times a second
	// stays compact, one they meet on all the time does not.
	promoteAfter = 16
	// demoteBelow is the rate of calls per second under which a striped
	// key goes back to one block at a roll: too few for two cores to meet.
	demoteBelow = 10_000
	// maxStripes bounds a hot key's stripes (128 bytes each).
	maxStripes = 256
)

// counters is a breaker's counters. add is the request path: no lock. The
// sums, promotion and demotion take mu, so that a sum never sees counts in
// flight between two blocks.
type counters struct {
	compact block
	striped atomic.Pointer[stripes] // nil while compact
	hits    atomic.Uint32           // contended adds since the last roll

	mu sync.Mutex
	// retired are stripes that demotion or a larger GOMAXPROCS replaced,
	// still summed: a call that loaded them just before they were replaced
	// adds to them. A roll folds into compact and drops those retired at
	// least foldAfter ago.
	retired    []retiredStripes
	promotedAt int64  // when the key last got stripes
	rolledAt   int64  // the last roll's time
	callsAt    uint64 // the calls counted at the last roll
}

// retiredStripes are stripes retired at a time.
type retiredStripes struct {
	s  *stripes
	at int64
}

const (
	// foldAfter is how long retired stripes stay summed before they are
	// folded and freed: a call between its load of them and its add would
	// have to be held up that long, which no scheduler does.
	foldAfter = int64(time.Minute)
	// stripedAtLeast is how long a promoted key keeps its stripes before it
	// may be demoted: a key on the edge of hot does not churn.
	stripedAtLeast = int64(time.Minute)
)

// line returns the stripe index a call adds to, for a striped key: its P's
// (see token), or 0 for a compact one, which has no stripes.
func (c *counters) line() uint32 {
	if c.striped.Load() == nil {
		return 0
	}
	return token()
}

// inc counts one call of kind, through stripe i of a striped key.
func (c *counters) inc(kind int, i uint32) {
	if s := c.striped.Load(); s != nil {
		s.lines[i&s.mask].block[kind].Add(1)
		return
	}
	v := &c.compact[kind]
	if old := v.Load(); v.CompareAndSwap(old, old+1) {
		return
	}
	v.Add(1)
	c.contended()
}

// contended counts an add that met another core's, and promotes the key
// once promoteAfter have since the last roll.
func (c *counters) contended() {
	if c.hits.Add(1) >= promoteAfter {
		c.promote()
	}
}

// promote gives the key a stripe per P, as many as GOMAXPROCS now: the
// stripes it was demoted from lately, if they are enough.
func (c *counters) promote() {
	if !c.mu.TryLock() { // another call is promoting it, or a sum runs
		return
	}
	defer c.mu.Unlock()
	n := stripeCount()
	old := c.striped.Load()
	if old != nil && len(old.lines) >= n {
		return
	}
	next := &stripes{mask: uint32(n - 1)}
	for i, r := range c.retired {
		if len(r.s.lines) >= n { // still summed: taken back as they are
			next = r.s
			c.retired = append(c.retired[:i], c.retired[i+1:]...)
			break
		}
	}
	if next.lines == nil {
		next.lines = make([]stripe, n)
	}
	c.striped.Store(next)
	c.promotedAt = c.rolledAt
	if old != nil { // GOMAXPROCS grew: the old stripes are retired
		c.retired = append(c.retired, retiredStripes{old, c.rolledAt})
	}
}

// stripeCount is how many stripes a hot key gets: GOMAXPROCS, rounded up to
// a power of two, at most maxStripes.
func stripeCount() int {
	n := 1
	for n < runtime.GOMAXPROCS(0) && n < maxStripes {
		n *= 2
	}
	return n
}

// rolled is told of each roll of the key's window at now, or, for a
// window of the last calls, about once a second: a striped key that has
// gone cold (fewer than demoteBelow calls a second, rejections included)
// since it was promoted at least stripedAtLeast ago is demoted; one that has
// fewer stripes than GOMAXPROCS now (raised at run time) gets more; stripes
// retired at least foldAfter ago are folded; the contention count starts
// again.
func (c *counters) rolled(now int64) {
	c.hits.Store(0)
	c.mu.Lock()
	calls := c.sumLocked(countAdmitted) + c.sumLocked(countRejected) + c.sumLocked(countWouldReject)
	rate := float64(calls-min(c.callsAt, calls)) * 1e9 / float64(max(now-c.rolledAt, 1))
	c.callsAt, c.rolledAt = calls, now
	kept := c.retired[:0]
	for _, r := range c.retired {
		if now-r.at < foldAfter {
			kept = append(kept, r)
			continue
		}
		for kind := range numCounts {
			if n := sumOf(r.s.lines, kind); n > 0 {
				c.compact[kind].Add(n)
			}
		}
	}
	clear(c.retired[len(kept):])
	c.retired = kept
	s := c.striped.Load()
	cold := s != nil && rate < demoteBelow && now-c.promotedAt >= stripedAtLeast
	if cold {
		c.striped.Store(nil)
		c.retired = append(c.retired, retiredStripes{s, now})
	}
	c.mu.Unlock()
	if s != nil && !cold && len(s.lines) < stripeCount() {
		c.promote()
	}
}

// kindTotal returns the counter of kind over every block.
func (c *counters) kindTotal(kind int) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sumLocked(kind)
}

func (c *counters) sumLocked(kind int) uint64 {
	n := c.compact[kind].Load()
	if s := c.striped.Load(); s != nil {
		n += sumOf(s.lines, kind)
	}
	for _, r := range c.retired {
		n += sumOf(r.s.lines, kind)
	}
	return n
}

// approx returns the counter of kind without the lock: retired stripes are
// left out, and a promotion under way may be missed. For a nudge, not a
// total.
func (c *counters) approx(kind int) uint64 {
	n := c.compact[kind].Load()
	if s := c.striped.Load(); s != nil {
		n += sumOf(s.lines, kind)
	}
	return n
}

// sumAll returns every counter over every block.
func (c *counters) sumAll() (out [numCounts]uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for kind := range numCounts {
		out[kind] = c.sumLocked(kind)
	}
	return out
}

// outcomes returns what the window judges, from every block: successes and
// failures, slow ones included, and the rest as excluded.
func (c *counters) outcomes() outcomeCounts {
	all := c.sumAll()
	return outcomesOf(&all)
}

func outcomesOf(all *[numCounts]uint64) outcomeCounts {
	return outcomeCounts{
		success:  all[countSuccess] + all[countSlowSuccess],
		failure:  all[countFailure] + all[countSlowFailure],
		excluded: all[countExcluded] + all[countUpstream],
		slow:     all[countSlowSuccess] + all[countSlowFailure],
	}
}

// outcomeCounts are outcomes: in a window, or added up from the counters.
type outcomeCounts struct {
	success, failure, excluded, slow uint64
}

func (c outcomeCounts) minus(d outcomeCounts) outcomeCounts {
	sub := func(a, b uint64) uint64 {
		if a > b {
			return a - b
		}
		return 0
	}
	return outcomeCounts{sub(c.success, d.success), sub(c.failure, d.failure), sub(c.excluded, d.excluded), sub(c.slow, d.slow)}
}

func (c outcomeCounts) plus(d outcomeCounts) outcomeCounts {
	return outcomeCounts{c.success + d.success, c.failure + d.failure, c.excluded + d.excluded, c.slow + d.slow}
}

// tokens hand each P a number of its own, for the stripe its calls add to.
// A sync.Pool keeps one object per P (its private slot), which a Get and
// Put in a row hand back to the same P: the P's number, without reaching
// into the runtime. A goroutine that moves to another P between the two
// costs only a cache miss; a Pool emptied by a GC numbers the Ps anew.
var (
	tokens    sync.Pool // of *uint32
	nextToken atomic.Uint32
)

func newToken() *uint32 {
	n := nextToken.Add(1) - 1
	return &n
}

// token returns the calling P's number.
func token() uint32 {
	t, _ := tokens.Get().(*uint32)
	if t == nil {
		t = newToken()
	}
	n := *t
	tokens.Put(t)
	return n
}

// sat32 returns n as a uint32, at most the largest one.
func sat32(n uint64) uint32 { return uint32(min(n, 1<<32-1)) }
