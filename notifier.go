package httpbreaker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// notifier reports what happens in a set: each state change as one log
// record followed by a call of every hook, and the set's own notices (a key
// limit reached, keys dropped). It delivers them in order on a goroutine of
// its own, which runs only while there is something to deliver, so that no
// logger or hook of the user's ever runs on a request's goroutine or under a
// lock: a slow log sink or a blocked hook delays only later reports. A
// record keeps the time of what it reports, not of its delivery.
//
// Reports that pile up past maxPending (a logger or hook blocked for good)
// are dropped and counted, and the drop is logged once delivery resumes; a
// hook that panics is recovered and logged.
type notifier struct {
	hooks  []func(Event)
	logger *slog.Logger
	// replica is this replica's name, with shared state: a record of a
	// change it made itself does not name it.
	replica string

	mu      sync.Mutex
	queue   []report
	running bool
	dropped uint64
	// queued numbers the reports ever queued (dropped ones too), and done
	// those delivered or dropped; a Flush waits for done to reach what
	// queued was when it began.
	queued, done uint64
	waiters      []flushWaiter
}

// flushWaiter is a Flush waiting for the reports up to upTo.
type flushWaiter struct {
	upTo uint64
	c    chan struct{}
}

// report is one log record (or none) and, for a state change, the event
// for the hooks.
type report struct {
	rec   *slog.Record
	event *Event
}

// maxPending bounds the queue of reports, so that a logger or hook that
// blocks for good costs bounded memory.
const maxPending = 10000

func newNotifier(logger *slog.Logger, hooks []func(Event)) *notifier {
	return &notifier{hooks: hooks, logger: logger}
}

// publish reports a state change: one record, at WARN when the breaker
// opens, then the hooks. An idle key dropped (ReasonIdle) goes to the hooks
// alone: a sweep may drop thousands of keys, and its log record is one line
// that counts them.
func (n *notifier) publish(e Event) {
	if e.Reason == ReasonIdle {
		if len(n.hooks) > 0 {
			n.enqueue(report{event: &e})
		}
		return
	}
	level := slog.LevelInfo
	if e.To == StateOpen || e.To == StateForcedOpen {
		level = slog.LevelWarn
	}
	rec := slog.NewRecord(e.Time, level, "circuit breaker state changed", 0)
	rec.AddAttrs(e.attrs(n.replica)...)
	n.enqueue(report{rec: &rec, event: &e})
}

// log reports a notice of the set's own, as logger.Log would.
func (n *notifier) log(level slog.Level, msg string, args ...any) {
	rec := slog.NewRecord(time.Now(), level, msg, 0)
	rec.Add(args...)
	n.enqueue(report{rec: &rec})
}

func (n *notifier) enqueue(r report) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.queued++
	if len(n.queue) >= maxPending {
		n.dropped++
		n.doneLocked(1)
		return
	}
	n.queue = append(n.queue, r)
	if !n.running {
		n.running = true
		go n.run()
	}
}

func (n *notifier) run() {
	for {
		n.mu.Lock()
		if len(n.queue) == 0 {
			dropped := n.dropped
			n.dropped = 0
			if dropped == 0 {
				n.running = false
				n.mu.Unlock()
				return
			}
			n.mu.Unlock()
			n.emitDropped(dropped)
			continue
		}
		r := n.queue[0]
		n.queue[0] = report{}
		n.queue = n.queue[1:]
		n.mu.Unlock()
		n.deliver(r)
		n.mu.Lock()
		if len(n.queue) == 0 && n.dropped > 0 {
			// Told before the last report counts as delivered, so that a
			// Flush that waited for it finds the drop logged too.
			dropped := n.dropped
			n.dropped = 0
			n.mu.Unlock()
			n.emitDropped(dropped)
			n.mu.Lock()
		}
		n.doneLocked(1)
		n.mu.Unlock()
	}
}

// emitDropped logs that dropped reports were dropped.
func (n *notifier) emitDropped(dropped uint64) {
	n.emit(slog.LevelWarn, "circuit breaker reports were dropped while the logger or a state-change hook was blocked",
		slog.Uint64("dropped", dropped))
}

// doneLocked counts k more reports delivered (or dropped), and frees the
// Flushes waiting for them; n.mu must be held.
func (n *notifier) doneLocked(k uint64) {
	n.done += k
	kept := n.waiters[:0]
	for _, w := range n.waiters {
		if w.upTo <= n.done {
			close(w.c)
		} else {
			kept = append(kept, w)
		}
	}
	clear(n.waiters[len(kept):])
	n.waiters = kept
}

// deliver writes a report's record and calls the hooks.
func (n *notifier) deliver(r report) {
	ctx := context.Background()
	if h := n.logger.Handler(); r.rec != nil && h.Enabled(ctx, r.rec.Level) {
		_ = h.Handle(ctx, *r.rec)
	}
	if r.event != nil {
		for _, hook := range n.hooks {
			n.callHook(hook, r.event)
		}
	}
}

// emit writes a record at once, from the delivering goroutine.
func (n *notifier) emit(level slog.Level, msg string, attrs ...slog.Attr) {
	n.logger.LogAttrs(context.Background(), level, msg, attrs...)
}

func (n *notifier) callHook(hook func(Event), e *Event) {
	defer func() {
		if p := recover(); p != nil {
			n.emit(slog.LevelError, "circuit breaker state-change hook panicked",
				slog.String("key", e.Key), slog.String("from", e.From.String()), slog.String("to", e.To.String()),
				slog.String("panic", fmt.Sprint(p)))
		}
	}()
	hook(*e)
}

// flush waits until every report queued before it has been delivered (or
// dropped), or ctx is done. Reports queued meanwhile are not waited for, so
// that a flush ends however busy the set is.
func (n *notifier) flush(ctx context.Context) error {
	n.mu.Lock()
	if n.done >= n.queued {
		n.mu.Unlock()
		return nil
	}
	w := flushWaiter{upTo: n.queued, c: make(chan struct{})}
	n.waiters = append(n.waiters, w)
	n.mu.Unlock()
	select {
	case <-w.c:
		return nil
	case <-ctx.Done():
		n.mu.Lock()
		defer n.mu.Unlock()
		for i, o := range n.waiters {
			if o.c == w.c {
				n.waiters = append(n.waiters[:i], n.waiters[i+1:]...)
				break
			}
		}
		return ctx.Err()
	}
}
