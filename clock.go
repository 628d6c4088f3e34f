package httpbreaker

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// clock reads a set's monotonic clock: nanoseconds since the set was made,
// which fit in an atomic. now reads it; recent returns a reading at most a
// tick old, for the one use that can take it, a closed call's success,
// which a busy key has millions of: reading the clock is a quarter of what
// such a call costs.
//
// recent is kept by a timer that ticks every coarseTick while calls ask
// for it, and stops a second after the last one did: an idle set has no
// timer running. Everything that changes a key's state, dates a change or
// times a call reads now.
type clock struct {
	epoch time.Time

	coarse  atomic.Int64 // the reading at the last tick; 0 while no timer ticks
	wantsTo atomic.Int64 // calls asked for recent until about then
	closed  atomic.Bool  // stopped for good: recent reads the clock, without the lock

	mu      sync.Mutex
	timer   *time.Timer
	ticking bool
}

const (
	// coarseTick is how old recent's reading may be.
	coarseTick = 5 * time.Millisecond
	// keepTicking is how long the timer ticks after calls stop asking.
	keepTicking = time.Second
	// askEvery is how often, at most, calls tell the timer they still ask:
	// a write for the whole set every so often, not one per call.
	askEvery = 100 * time.Millisecond
)

// now returns the time now, in ns since the epoch.
func (c *clock) now() int64 { return int64(time.Since(c.epoch)) }

// at returns the wall time of t, in ns since the epoch.
func (c *clock) at(t int64) time.Time { return c.epoch.Add(time.Duration(t)) }

// recent returns the time now, or at most coarseTick before it while the
// timer keeps time (later on a machine too busy to run it on time).
func (c *clock) recent() int64 {
	t := c.coarse.Load()
	if t == 0 {
		if c.closed.Load() {
			return c.now()
		}
		return c.startTicking()
	}
	if t > c.wantsTo.Load() {
		c.wantsTo.Store(t + int64(askEvery))
	}
	return t
}

// startTicking starts the timer, unless the set is closed, and returns
// the time now.
func (c *clock) startTicking() int64 {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() || c.ticking {
		return now
	}
	c.ticking = true
	c.wantsTo.Store(now + int64(askEvery))
	c.coarse.Store(now)
	if c.timer == nil {
		c.timer = time.AfterFunc(coarseTick, c.tick)
	} else {
		c.timer.Reset(coarseTick)
	}
	return now
}

// tick keeps recent's reading, or stops when calls stopped asking for it.
func (c *clock) tick() {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() || now > c.wantsTo.Load()+int64(keepTicking) {
		c.ticking = false
		c.coarse.Store(0)
		return
	}
	c.coarse.Store(now)
	c.timer.Reset(coarseTick)
}

// stop stops the timer for good: the set is closed, and recent reads the
// clock.
func (c *clock) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ticking = false
	c.closed.Store(true)
	c.coarse.Store(0)
	if c.timer != nil {
		c.timer.Stop()
	}
}

// addSat returns the time t (ns since the epoch) plus d, or the latest time
// there is if that overflows: a long duration added to a time saturates,
// never wraps into the past.
func addSat(t int64, d time.Duration) int64 {
	if d > 0 && t > math.MaxInt64-int64(d) {
		return math.MaxInt64
	}
	return t + int64(d)
}
