package httpbreaker

import (
	"container/heap"
	"math"
	"sync"
	"time"
)

// alarm makes a set's changes on time: the end of a cooldown, of a recovery
// ramp, of a timed ForceOpen, of the fleet's hold, a probe's deadline. It
// holds, for each breaker that has one, the time of its next change, and
// one timer for the whole set, set for the earliest; when it fires, each
// breaker due makes its changes, which are logged, hooked and
// counted then, on a key that gets no request as on a busy one. A breaker
// sets its time at the end of every change it makes, so
// the alarm holds only live times, one per breaker at most, and none for a
// closed breaker: nothing of it is on a request's path, no timer runs while
// nothing is due, and a timer that waits holds no goroutine.
type alarm struct {
	clock *clock

	mu      sync.Mutex
	entries alarmHeap
	timer   *time.Timer // nil until the first time is set
	at      int64       // when the timer fires; 0 when it is stopped
	stopped bool        // by Close: no time is set any more
}

// notDue is the time of a change that is not due: an entry set to it
// leaves the alarm.
const notDue = math.MaxInt64

// alarmEntry is a place in a set's alarm: a breaker's, or the set's own
// look for unused keys. Its fields are under the alarm's mu.
type alarmEntry struct {
	at    int64       // when it is due
	index int         // its index in the heap; -1 when it is not in it
	wake  func(int64) // what to do then, told the time
}

func newAlarmEntry(wake func(int64)) alarmEntry { return alarmEntry{index: -1, wake: wake} }

// alarmHeap is a min-heap of entries by time.
type alarmHeap []*alarmEntry

func (h alarmHeap) Len() int           { return len(h) }
func (h alarmHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h alarmHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *alarmHeap) Push(x any) {
	e := x.(*alarmEntry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *alarmHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}

// set sets e due at at (ns since the epoch), in place of the time it had;
// never takes it out.
func (a *alarm) set(e *alarmEntry, at int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case at == notDue || a.stopped:
		if e.index >= 0 {
			heap.Remove(&a.entries, e.index)
		}
		return
	case e.index >= 0:
		if e.at == at {
			return
		}
		e.at = at
		heap.Fix(&a.entries, e.index)
	default:
		e.at = at
		heap.Push(&a.entries, e)
	}
	a.armLocked()
}

// armLocked sets the timer for the earliest pending time.
func (a *alarm) armLocked() {
	if len(a.entries) == 0 {
		return
	}
	next := a.entries[0].at
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

// fire wakes every entry whose time has come, then sets the timer for the
// next one.
func (a *alarm) fire() {
	now := a.clock.now()
	a.mu.Lock()
	var due []func(int64)
	for len(a.entries) > 0 && a.entries[0].at <= now {
		due = append(due, heap.Pop(&a.entries).(*alarmEntry).wake)
	}
	a.at = 0
	if !a.stopped {
		a.armLocked()
	}
	a.mu.Unlock()
	for _, wake := range due {
		wake(now)
	}
}

// pending returns how many times the alarm holds.
func (a *alarm) pending() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.entries)
}

// stop stops the timer for good and forgets every time: the set is
// closed.
func (a *alarm) stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopped = true
	for _, e := range a.entries {
		e.index = -1
	}
	a.entries = nil
	if a.timer != nil {
		a.timer.Stop()
	}
}
