package httpbreaker

import (
	"container/heap"
	"math"
	"sync"
	"time"
)

// clock reads a set's monotonic clock: nanoseconds since the set was made,
// which fit in an atomic.
type clock struct {
	epoch time.Time
	_     [64 - 24]byte // read on every request: a cache line of its own (see window.go)
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

// alarm moves a set's breakers on when their time comes: one timer for the
// whole set, set for the earliest deadline that any breaker has (the end of
// a cooldown, of a recovery ramp, of a timed ForceOpen, of a probe's
// ProbeTimeout), so that a transition happens when it is due, and is
// logged, hooked and counted then, on a key that gets no request as on a
// busy one. Nothing of it is on a request's path: a breaker sets a deadline
// when its state changes. While no deadline is pending no timer runs, and
// a timer that waits holds no goroutine.
type alarm struct {
	clock *clock

	mu      sync.Mutex
	pending deadlines
	timer   *time.Timer // nil until the first deadline
	at      int64       // when the timer fires; 0 when it is stopped
	stopped bool        // by Close: no deadline is set any more
}

// deadline is something to do at a time: moving a breaker on.
type deadline struct {
	at   int64 // ns since the clock's epoch
	wake func()
}

// deadlines is a min-heap of deadlines by time.
type deadlines []deadline

func (d deadlines) Len() int           { return len(d) }
func (d deadlines) Less(i, j int) bool { return d[i].at < d[j].at }
func (d deadlines) Swap(i, j int)      { d[i], d[j] = d[j], d[i] }
func (d *deadlines) Push(x any)        { *d = append(*d, x.(deadline)) }
func (d *deadlines) Pop() any {
	old := *d
	x := old[len(old)-1]
	old[len(old)-1] = deadline{}
	*d = old[:len(old)-1]
	return x
}

// set asks for wake to be called at at (ns since the epoch): a breaker's
// look at its state, which moves it on if its time is up. A deadline that
// turns out to have nothing to do (the state changed meanwhile) costs that
// look.
func (a *alarm) set(at int64, wake func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return
	}
	heap.Push(&a.pending, deadline{at: at, wake: wake})
	a.armLocked()
}

// armLocked sets the timer for the earliest pending deadline.
func (a *alarm) armLocked() {
	if len(a.pending) == 0 {
		return
	}
	next := a.pending[0].at
	if a.at != 0 && a.at <= next {
		return // set already for as soon or sooner
	}
	wait := time.Duration(next - a.clock.now())
	if a.timer == nil {
		a.timer = time.AfterFunc(wait, a.fire)
	} else {
		a.timer.Reset(wait)
	}
	a.at = next
}

// fire moves on every breaker whose deadline has come, then sets the timer
// for the next one.
func (a *alarm) fire() {
	now := a.clock.now()
	a.mu.Lock()
	var due []func()
	for len(a.pending) > 0 && a.pending[0].at <= now {
		due = append(due, heap.Pop(&a.pending).(deadline).wake)
	}
	a.at = 0
	if !a.stopped {
		a.armLocked()
	}
	a.mu.Unlock()
	for _, wake := range due {
		wake()
	}
}

// stop stops the timer for good and forgets every deadline: the set is
// closed.
func (a *alarm) stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopped = true
	a.pending = nil
	if a.timer != nil {
		a.timer.Stop()
	}
}
