package httpbreaker

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// SharedState is where the replicas of a fleet share what their breakers
// learn: the outcome counts of a fleet-wide window, the holds that fleet-wide
// trips make, the leases of the fleet's probes, and manual control. The
// redisstate module implements it on Redis; WithSharedState plugs one in.
//
// A SharedState is never called on a request's path. A set that has one
// runs one background goroutine, which calls Sync every Interval (and at
// once when something changed) and Watch to hear of other replicas'
// changes; Close stops it. When the store fails, the set's breakers work
// alone, and the next Sync that succeeds brings the replica back.
//
// The store keeps the fleet's facts and applies the requests in a Sync
// atomically per key; the set decides what they mean (when the fleet's
// window trips a key, what a probe's result does), so that every store
// behaves the same. Times in a Sync are durations, never wall-clock times:
// a store measures them on one clock of its own (Redis's), so replicas'
// clocks may disagree.
type SharedState interface {
	// Interval is how often the set syncs with the fleet when nothing
	// changed.
	Interval() time.Duration
	// Sync sends this replica's news for each key of s and fills in what the
	// fleet holds for it, in as few round trips as the store can (redisstate:
	// one). It returns an error only when the store could not be reached; a
	// problem with one key is that key's KeySync.Err.
	Sync(ctx context.Context, s *Sync) error
	// Watch calls changed, with a key, whenever another replica changed what
	// the fleet holds for that key, until ctx ends or the store's connection
	// fails; then it returns (ctx's error, or the failure). The set calls it
	// again after a failure. changed must return at once.
	Watch(ctx context.Context, changed func(key string)) error
}

// Sync is one round of a replica's exchange with the fleet.
type Sync struct {
	// Replica names this replica in the fleet: unique, and the same for the
	// life of its Breakers.
	Replica string
	// Live is how long after its last Sync a replica counts as live.
	Live time.Duration
	// Keys holds a request and a reply per key.
	Keys []KeySync

	// Replicas is set by Sync: how many replicas are live, this one included.
	Replicas int
}

// KeySync is one key's part of a Sync: what this replica sends (the fields
// before Fleet), and what the fleet holds for the key (Fleet, Err).
type KeySync struct {
	Key string
	// Window and Buckets are the key's policy window, which the fleet's
	// window keeps too.
	Window  time.Duration
	Buckets int
	// Successes and Failures are the outcomes this replica counted for the
	// key since its last Sync, to add to the fleet's window.
	Successes, Failures uint64
	// Trip, when set, opens the key fleet-wide with this hold, unless the
	// fleet holds it already: of two replicas that trip it at once, one
	// wins, and both read the hold that won.
	Trip *Hold
	// Lease, when positive, asks for one of the fleet's probe slots (Slots
	// of them in all) of the current hold, if it is past its cooldown and a
	// slot is free, for this long: a replica that dies holding it frees it
	// when it ends.
	Lease time.Duration
	Slots int
	// Probe, when set, reports how the probe of a lease ended: a success
	// counts towards closing the key everywhere once Slots succeeded; a
	// failure opens it again (Probe.Reopen); an excluded probe frees its
	// slot.
	Probe *ProbeResult
	// Control, when set, is a manual change to apply fleet-wide.
	Control *Control

	// Fleet is what the fleet holds for the key, after the requests above.
	Fleet Fleet
	// Err is set if the store could not sync this key; Fleet is then empty.
	Err error
}

// Fleet is what the fleet holds for one key.
type Fleet struct {
	// The fleet's window: the outcomes every replica added within the
	// key's Window, and how many replicas added failures to it.
	Successes, Failures uint64
	FailingReplicas     int
	// Hold is the fleet-wide hold on the key, if any.
	Hold *Hold
	// Lease names the probe lease granted to this Sync's Lease request;
	// empty if none was.
	Lease string
	// Control is the latest manual change made to the key fleet-wide; its
	// Version is 0 if there is none.
	Control Control
}

// Hold is a fleet-wide hold on a key: open for a cooldown, then half-open,
// where the fleet's probe leases admit probes, until the probes close it.
type Hold struct {
	// Generation tells holds apart: each trip and each reopening after a
	// failed probe makes a new one.
	Generation int64
	// Open is the cooldown left; zero or less means half-open.
	Open time.Duration
	// Nominal is the cooldown before jitter, which a failed probe doubles.
	Nominal time.Duration
	// Closed says that the hold's probes all succeeded: the key is closed
	// fleet-wide.
	Closed bool
	// Probed is how many of its probes have succeeded so far.
	Probed int
	// Reason and Replica say what made the hold and which replica made it.
	Reason  Reason
	Replica string
	// The fleet's window when a trip made the hold.
	Failures, Successes uint64
	FailingReplicas     int
}

// ProbeResult is how a probe admitted by a lease ended.
type ProbeResult struct {
	Generation int64
	Lease      string
	Outcome    Outcome
	// Reopen and Nominal are the hold's next cooldown and its nominal
	// value, should a failure reopen it.
	Reopen, Nominal time.Duration
}

// Control is a manual change to a key fleet-wide: ForceOpen, ForceClose,
// Release or Reset, as Reason names it.
type Control struct {
	// Version orders changes: the store gives each change the next one.
	Version int64
	Reason  Reason // ReasonForceOpen, ReasonForceClose, ReasonRelease or ReasonReset
	// For is how long a ForceOpen holds: when sent, from then; when read,
	// the time it has left, negative once it has run out. Zero: until Release.
	For     time.Duration
	By      string
	Replica string
}

// WithSharedState shares what the set's breakers learn with the other
// replicas of a fleet, through s (redisstate.New makes one on Redis): a
// fleet-wide window trips a key on every replica, the fleet probes it
// together, and ForceOpen, ForceClose, Release and Reset apply everywhere.
// Nothing of it is on a request's path: a goroutine of the set's own syncs
// in the background, and Close stops it. Without it a set learns alone.
func WithSharedState(s SharedState) Option {
	return func(b *Breakers) error {
		if s == nil {
			return errors.New("WithSharedState: nil SharedState")
		}
		if v, ok := s.(interface{ Err() error }); ok {
			if err := v.Err(); err != nil {
				return fmt.Errorf("WithSharedState: %w", err)
			}
		}
		if d := s.Interval(); d < time.Millisecond {
			return fmt.Errorf("WithSharedState: the store's interval is %v; want at least 1ms", d)
		}
		b.shared = s
		return nil
	}
}

// WithReplica names this replica in its fleet, for the records and status
// pages of the others: a pod's name, say. Without it a replica is named by
// its host name, process id and a random suffix. It matters only with
// WithSharedState; each replica's name must be unique in the fleet.
func WithReplica(name string) Option {
	return func(b *Breakers) error {
		if name == "" || len(name) > 128 || !utf8.ValidString(name) {
			return fmt.Errorf("WithReplica: %s is not a replica name: want 1 to 128 bytes of UTF-8", quoteKey(name))
		}
		b.replica = name
		return nil
	}
}

// Close stops the set's background work: with shared state, its sync with
// the fleet. It cancels a sync in flight and waits for it to return, which a
// store bounds (redisstate: by the client's timeouts). The breakers go on
// working alone. Close is safe to call more than once, and on a set without
// shared state, where it does nothing; it always returns nil.
func (b *Breakers) Close() error {
	if f := b.fleet; f != nil {
		f.cancel()
		<-f.done
		f.connected.Store(false) // alone from now on: no fleet probes
	}
	return nil
}
