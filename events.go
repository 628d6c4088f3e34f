package httpbreaker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
)

// stateChange is one change of a breaker's state, with the facts that go
// with it (the counts of a trip, the cooldown, who forced it).
type stateChange struct {
	key      string
	from, to State
	mode     Mode
	attrs    []slog.Attr
}

// publish reports a state change: one log record, at WARN when the breaker
// opens, then the hooks, queued.
func (n *notifier) publish(c stateChange) {
	level := slog.LevelInfo
	if c.to == StateOpen || c.to == StateForcedOpen {
		level = slog.LevelWarn
	}
	all := append([]slog.Attr{
		slog.String("key", c.key),
		slog.String("from", c.from.String()),
		slog.String("to", c.to.String()),
		slog.String("mode", c.mode.String()),
	}, c.attrs...)
	n.logger.LogAttrs(context.Background(), level, "circuit breaker state changed", all...)
	n.enqueue(c)
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
