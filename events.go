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
	hooks  []func(key string, from, to State)
	logger *slog.Logger

	mu      sync.Mutex
	queue   []report
	running bool
	dropped uint64
	idle    *sync.Cond // broadcast when the queue has drained; on mu
}

// report is one log record and, for a state change, the change for the
// hooks.
type report struct {
	rec    slog.Record
	change *stateChange
}

// stateChange is one change of a breaker's state, with the facts that go
// with it (the counts of a trip, the cooldown, who forced it).
type stateChange struct {
	key      string
	from, to State
	mode     Mode
	attrs    []slog.Attr
}

// maxPending bounds the queue of reports, so that a logger or hook that
// blocks for good costs bounded memory.
const maxPending = 10000

func newNotifier(logger *slog.Logger, hooks []func(key string, from, to State)) *notifier {
	n := &notifier{hooks: hooks, logger: logger}
	n.idle = sync.NewCond(&n.mu)
	return n
}

// publish reports a state change: one record, at WARN when the breaker
// opens, then the hooks.
func (n *notifier) publish(c stateChange) {
	level := slog.LevelInfo
	if c.to == StateOpen || c.to == StateForcedOpen {
		level = slog.LevelWarn
	}
	rec := slog.NewRecord(time.Now(), level, "circuit breaker state changed", 0)
	rec.AddAttrs(
		slog.String("key", c.key),
		slog.String("from", c.from.String()),
		slog.String("to", c.to.String()),
		slog.String("mode", c.mode.String()),
	)
	rec.AddAttrs(c.attrs...)
	n.enqueue(report{rec: rec, change: &c})
}

// log reports a notice of the set's own, as logger.Log would.
func (n *notifier) log(level slog.Level, msg string, args ...any) {
	rec := slog.NewRecord(time.Now(), level, msg, 0)
	rec.Add(args...)
	n.enqueue(report{rec: rec})
}

func (n *notifier) enqueue(r report) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.queue) >= maxPending {
		n.dropped++
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
				n.idle.Broadcast()
				n.mu.Unlock()
				return
			}
			n.mu.Unlock()
			n.emit(slog.LevelWarn, "circuit breaker reports were dropped while the logger or a state-change hook was blocked",
				slog.Uint64("dropped", dropped))
			continue
		}
		r := n.queue[0]
		n.queue[0] = report{}
		n.queue = n.queue[1:]
		n.mu.Unlock()
		n.deliver(r)
	}
}

// deliver writes a report's record and calls the hooks.
func (n *notifier) deliver(r report) {
	ctx := context.Background()
	if h := n.logger.Handler(); h.Enabled(ctx, r.rec.Level) {
		_ = h.Handle(ctx, r.rec)
	}
	if r.change != nil {
		for _, hook := range n.hooks {
			n.call(hook, r.change)
		}
	}
}

// emit writes a record at once, from the delivering goroutine.
func (n *notifier) emit(level slog.Level, msg string, attrs ...slog.Attr) {
	n.logger.LogAttrs(context.Background(), level, msg, attrs...)
}

func (n *notifier) call(hook func(key string, from, to State), c *stateChange) {
	defer func() {
		if p := recover(); p != nil {
			n.emit(slog.LevelError, "circuit breaker state-change hook panicked",
				slog.String("key", c.key), slog.String("from", c.from.String()), slog.String("to", c.to.String()),
				slog.String("panic", fmt.Sprint(p)))
		}
	}()
	hook(c.key, c.from, c.to)
}

// flush waits until every report queued so far has been delivered.
func (n *notifier) flush() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for n.running {
		n.idle.Wait()
	}
}
