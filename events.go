package httpbreaker

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"
)

// Event is one change of a key's state, with why it happened: the same
// facts as the change's log record, for a hook that pages, annotates a
// trace or posts to chat. Fields that do not apply to a change are zero.
type Event struct {
	// Time is when the change happened (not when the hook runs).
	Time time.Time
	Key  string
	// From and To are the states before and after. They are equal only for
	// ReasonIdle, where the key's closed breaker is dropped.
	From, To State
	Mode     Mode
	// Reason says why the state changed.
	Reason Reason
	// By says who made a manual change (ReasonForceOpen, ReasonForceClose,
	// ReasonRelease, ReasonReset): "status page from <remote address>", or
	// the Go source file and line that called the method.
	By string

	// The window's counts when a trip opened the breaker
	// (ReasonFailureRate, ReasonSlowCallRate, ReasonConsecutiveFailures),
	// and the probes' counts when they closed it or opened it again
	// (ReasonProbesSucceeded, ReasonProbeFailed, ReasonProbeTimeout).
	Failures, Successes, ConsecutiveFailures uint32
	// Slow is the window's slow calls at a trip, with SlowCallRate.
	Slow uint32
	// FailureRate is Failures / (Failures + Successes), unrounded.
	FailureRate float64

	// OpenFor is how long the breaker stays open, for a change to open, and
	// to forced open with a time limit.
	OpenFor time.Duration
	// UpstreamRetryAfter is the delay an upstream asked for with
	// Retry-After, when it made OpenFor longer than the cooldown.
	UpstreamRetryAfter time.Duration
	// ProbeRanFor is how long a probe had run when its ProbeTimeout
	// judged it (ReasonProbeTimeout).
	ProbeRanFor time.Duration
	// RecoveryRamp is the ramp a recovered breaker starts, for a change to
	// recovering.
	RecoveryRamp time.Duration
	// Forced is the state ForceOpen or ForceClose holds the key in, for a
	// change of the breaker underneath it; StateClosed otherwise (a forced
	// state is never closed).
	Forced State

	// Fleet says that the change came from the fleet, with shared state
	// (WithSharedState): a fleet-wide trip, the fleet's probes, or a manual
	// change made on another replica. Replica names the replica that made
	// it, and FailingReplicas counts the replicas whose failures tripped it.
	Fleet           bool
	Replica         string
	FailingReplicas int

	// Dependents are the route groups (server keys) whose requests have
	// called through the key as an upstream, sorted: who its change
	// affects. At most 16 are kept; nil for a key that no route group's
	// request has been seen calling.
	Dependents []string
}

// Trip is what opened a breaker from closed: when, why, and the window's
// counts at that moment.
type Trip struct {
	At                  time.Time `json:"at"`
	Reason              Reason    `json:"reason"`
	Failures            uint32    `json:"failures"`
	Successes           uint32    `json:"successes"`
	Slow                uint32    `json:"slow,omitempty"`
	ConsecutiveFailures uint32    `json:"consecutive_failures"`
	// Fleet says that the fleet's window tripped the key (with shared
	// state), and Replica names the replica that saw it; the counts are
	// then the fleet's.
	Fleet   bool   `json:"fleet,omitempty"`
	Replica string `json:"replica,omitempty"`
}

// FailureRate returns Failures / (Failures + Successes) at the trip.
func (t Trip) FailureRate() float64 { return failureRate(t.Failures, t.Successes) }

// Reason says why a key's state changed. Its string is the log record's
// reason attribute.
type Reason string

// The reasons for a state change.
const (
	ReasonFailureRate         Reason = "failure_rate"         // closed or recovering to open: the window's failure rate (or the fleet's)
	ReasonSlowCallRate        Reason = "slow_call_rate"       // closed or recovering to open: the window's share of slow calls
	ReasonConsecutiveFailures Reason = "consecutive_failures" // closed or recovering to open: failures in a row
	ReasonCooldown            Reason = "cooldown_elapsed"     // open to half-open: the cooldown ended
	ReasonProbe               Reason = "probe"                // open to half-open: Probe ended the cooldown early
	ReasonProbeFailed         Reason = "probe_failed"         // half-open to open: too many probes failed
	ReasonProbeTimeout        Reason = "probe_timeout"        // half-open to open: a probe ran past ProbeTimeout
	ReasonProbesSucceeded     Reason = "probes_succeeded"     // half-open to closed or recovering: HalfOpenSuccesses probes succeeded
	ReasonRampDone            Reason = "ramp_done"            // recovering to closed
	ReasonForceOpen           Reason = "force_open"           // ForceOpen
	ReasonForceClose          Reason = "force_close"          // ForceClose
	ReasonRelease             Reason = "release"              // Release
	ReasonReset               Reason = "reset"                // Reset
	ReasonExpiry              Reason = "expiry"               // a timed ForceOpen ran out, or a fleet hold ended without the fleet's probes (it lapsed, or the store lost it)
	ReasonIdle                Reason = "idle"                 // a closed key's breaker dropped after its IdleTTL
)

// attrs returns the event's log attributes, rounded for people to read:
// durations to the millisecond, the failure rate to three digits. The Event
// keeps the exact values.
func (e *Event) attrs(self string) []slog.Attr {
	attrs := make([]slog.Attr, 0, 13)
	attrs = append(attrs,
		slog.String("key", e.Key),
		slog.String("from", e.From.String()),
		slog.String("to", e.To.String()),
		slog.String("mode", e.Mode.String()),
		slog.String("reason", string(e.Reason)),
	)
	if e.By != "" {
		attrs = append(attrs, slog.String("by", e.By))
	}
	switch e.Reason {
	case ReasonFailureRate, ReasonSlowCallRate, ReasonConsecutiveFailures:
		attrs = append(attrs,
			slog.Uint64("failures", uint64(e.Failures)),
			slog.Uint64("successes", uint64(e.Successes)),
			slog.Uint64("consecutive_failures", uint64(e.ConsecutiveFailures)),
			slog.Float64("failure_rate", roundRate(e.FailureRate)),
		)
		if e.Reason == ReasonSlowCallRate || e.Slow > 0 {
			attrs = append(attrs, slog.Uint64("slow", uint64(e.Slow)))
		}
	case ReasonProbesSucceeded, ReasonProbeFailed, ReasonProbeTimeout:
		if e.Successes+e.Failures > 0 {
			attrs = append(attrs, slog.Uint64("probes_succeeded", uint64(e.Successes)), slog.Uint64("probes_failed", uint64(e.Failures)))
		}
	}
	for _, d := range [...]struct {
		name string
		d    time.Duration
	}{
		{"open_for", e.OpenFor},
		{"upstream_retry_after", e.UpstreamRetryAfter},
		{"probe_ran_for", e.ProbeRanFor},
		{"recovery_ramp", e.RecoveryRamp},
	} {
		if d.d > 0 {
			attrs = append(attrs, slog.Duration(d.name, roundDuration(d.d)))
		}
	}
	if e.Forced != StateClosed {
		attrs = append(attrs, slog.String("forced", e.Forced.String()))
	}
	if len(e.Dependents) > 0 {
		attrs = append(attrs, slog.Any("dependents", e.Dependents))
	}
	if e.Fleet {
		attrs = append(attrs, slog.Bool("fleet", true))
		// The replica that made the change, unless it is this one (self),
		// which the user's logger names if it names replicas at all; under
		// a name that a logger's With("replica", ...) does not repeat.
		if e.Replica != "" && e.Replica != self {
			attrs = append(attrs, slog.String("fleet_replica", e.Replica))
		}
		if e.FailingReplicas > 0 {
			attrs = append(attrs, slog.Int("failing_replicas", e.FailingReplicas))
		}
	}
	return attrs
}

// roundDuration rounds a duration that people read to the millisecond,
// keeping shorter ones as they are.
func roundDuration(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d
	}
	return d.Round(time.Millisecond)
}

// roundRate rounds a rate that people read to three digits.
func roundRate(r float64) float64 { return math.Round(r*1000) / 1000 }

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
			n.emit(slog.LevelWarn, "circuit breaker reports were dropped while the logger or a state-change hook was blocked",
				slog.Uint64("dropped", dropped))
			continue
		}
		r := n.queue[0]
		n.queue[0] = report{}
		n.queue = n.queue[1:]
		n.mu.Unlock()
		n.deliver(r)
		n.mu.Lock()
		n.doneLocked(1)
		n.mu.Unlock()
	}
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
