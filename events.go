package httpbreaker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
)

// record notes a state change of br at now (ns since the set's epoch): it
// counts the transition, logs one record, and queues the change for the
// hooks. It runs inside gobreaker's OnStateChange too, so it never calls
// into gobreaker.
func (br *breaker) record(from, to State, now int64, attrs ...slog.Attr) {
	if from == to {
		return
	}
	br.since.Store(now)
	br.changes[from][to].Add(1)
	level := slog.LevelInfo
	if to == StateOpen || to == StateForcedOpen {
		level = slog.LevelWarn
	}
	if o := br.override.Load(); o != nil && from != o.state && to != o.state {
		attrs = append(attrs, slog.String("forced", o.state.String())) // a change underneath
	}
	all := append([]slog.Attr{
		slog.String("key", br.key),
		slog.String("from", from.String()),
		slog.String("to", to.String()),
		slog.String("mode", br.mode.String()),
	}, attrs...)
	br.set.logger.LogAttrs(context.Background(), level, "circuit breaker state changed", all...)
	br.set.notifications.enqueue(stateChange{key: br.key, from: from, to: to})
}

type stateChange struct {
	key      string
	from, to State
}

// maxPendingNotifications bounds the hook queue, so that a hook that blocks
// for good costs bounded memory.
const maxPendingNotifications = 10000

// notifier delivers state changes to the hooks in order, on a goroutine of
// its own that runs only while there is something to deliver. A hook that
// blocks delays only later hook calls; one that panics is logged.
type notifier struct {
	hooks   []func(key string, from, to State)
	logger  *slog.Logger
	mu      sync.Mutex
	queue   []stateChange
	running bool
	dropped uint64
}

func (n *notifier) enqueue(c stateChange) {
	if len(n.hooks) == 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.queue) >= maxPendingNotifications {
		n.dropped++
		if n.dropped == 1 {
			n.logger.Error("circuit breaker state-change hook is blocked; dropping state changes until it returns",
				"pending", len(n.queue))
		}
		return
	}
	n.queue = append(n.queue, c)
	if !n.running {
		n.running = true
		go n.run()
	}
}

func (n *notifier) run() {
	for {
		n.mu.Lock()
		if len(n.queue) == 0 {
			n.running = false
			if n.dropped > 0 {
				n.logger.Warn("circuit breaker state-change hook caught up", "dropped", n.dropped)
				n.dropped = 0
			}
			n.mu.Unlock()
			return
		}
		c := n.queue[0]
		n.queue = n.queue[1:]
		n.mu.Unlock()
		for _, hook := range n.hooks {
			n.call(hook, c)
		}
	}
}

func (n *notifier) call(hook func(key string, from, to State), c stateChange) {
	defer func() {
		if p := recover(); p != nil {
			n.logger.Error("circuit breaker state-change hook panicked",
				"key", c.key, "from", c.from.String(), "to", c.to.String(), "panic", fmt.Sprint(p))
		}
	}()
	hook(c.key, c.from, c.to)
}
