package httpbreaker

import (
	"log/slog"
	"math"
	"time"
)

// Event is one change of a key's state, for a hook: the Transition the
// key's history keeps, with the key, its mode, the route groups that call
// it as an upstream (Dependents, at most 16) and, at a route group's trip,
// its failures blamed on each upstream instead (BlamedOn). It carries the
// facts of the change's log record.
type Event struct {
	Transition
	Key        string
	Mode       Mode
	Dependents []string
	BlamedOn   map[string]uint64
}

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
	switch {
	case e.Reason.isTrip():
		attrs = append(attrs,
			slog.Uint64("failures", uint64(e.Failures)),
			slog.Uint64("successes", uint64(e.Successes)),
			slog.Uint64("consecutive_failures", uint64(e.ConsecutiveFailures)),
			slog.Float64("failure_rate", roundRate(e.FailureRate())),
		)
		if e.Reason == ReasonSlowCallRate || e.Slow > 0 {
			attrs = append(attrs, slog.Uint64("slow", uint64(e.Slow)))
		}
	case e.Reason == ReasonProbesSucceeded || e.Reason == ReasonProbeFailed || e.Reason == ReasonProbeTimeout:
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
	if len(e.BlamedOn) > 0 {
		attrs = append(attrs, slog.Any("blamed_on", e.BlamedOn))
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
