// Package sharedstate is the protocol between httpbreaker and a store that
// lets the replicas of a fleet share what their breakers learn. Only a store
// author needs it: a service plugs a ready store in with
// httpbreaker.WithSharedState (the redisstate module is one, on Redis).
//
// A store keeps the fleet's facts and applies a replica's requests to them
// atomically per key: outcome counts added to a fleet-wide window, a hold
// that a fleet-wide trip makes, the leases of the fleet's probes, and manual
// commands. httpbreaker decides what the facts mean (when the fleet's window
// trips a key, what a probe's result does, how long a hold lasts on a
// replica) and checks everything a store returns, so that every store
// behaves the same and a corrupt or hostile store cannot make a breaker
// misbehave.
//
// Times in a Sync are durations, never wall-clock times: a store measures
// them on one clock of its own (Redis's), so replicas' clocks may disagree.
//
// This package imports nothing of httpbreaker, so that a store depends on
// the protocol alone.
package sharedstate

import (
	"context"
	"time"
)

// Store is where the replicas of a fleet share what their breakers learn.
//
// A Store is never called on a request's path. A set of breakers that has
// one runs one background goroutine, which calls Sync every Interval (and
// at once when something changed) and Watch to hear of other replicas'
// changes; the set's Close stops it. When the store fails, the set's
// breakers work alone, and the next Sync that succeeds brings the replica
// back.
type Store interface {
	// Interval is how often a replica syncs when nothing changed.
	Interval() time.Duration
	// Sync sends this replica's news for each key of s and fills in the
	// store's reply for it, in as few round trips as the store can
	// (redisstate: one). It returns an error only when the store could not
	// be reached; a problem with one key is that key's KeySync.Err.
	Sync(ctx context.Context, s *Sync) error
	// Watch calls changed, with a key, whenever another replica changed what
	// the fleet holds for that key, until ctx ends or the store's connection
	// fails; then it returns (ctx's error, or the failure). The caller calls
	// it again after a failure. changed must return at once.
	Watch(ctx context.Context, changed func(key string)) error
}

// Sync is one round of a replica's exchange with the fleet.
type Sync struct {
	// Replica names this replica in the fleet: unique, and the same for the
	// life of its set of breakers.
	Replica string
	// Seq numbers this replica's syncs: each has a larger one. A store
	// applies a sync's requests (a trip, a probe's result, a command, a
	// lease) at most once, however often a client sends it again, and
	// answers a sync it has applied with what it answered then (the same
	// lease).
	Seq uint64
	// Live is how long after its last Sync a replica counts as live.
	Live time.Duration
	// Keys holds a request and a reply per key.
	Keys []KeySync

	// Replicas is set by Sync: how many replicas are live, this one included.
	Replicas int
	// Warnings is set by Sync: problems that do not stop it, such as a
	// server that may evict the fleet's state, for the set to log once.
	Warnings []string
}

// KeySync is one key's part of a Sync: what this replica sends (the fields
// before Reply), and what the store replies (Reply, Err).
type KeySync struct {
	Key string
	// Window and Buckets are the key's policy window, which the fleet's
	// window keeps too.
	Window  time.Duration
	Buckets int
	// Incarnation tells this replica's breakers of the key apart: a breaker
	// made anew (after an idle drop, or by a restart) counts from zero.
	Incarnation uint64
	// Successes and Failures are this replica's totals for the key since
	// its Incarnation began. The store adds to the fleet's window what they
	// gained since the totals it has: a sync that is sent twice, or lost,
	// counts each outcome once. When it has none, it adds them all if First
	// says this replica has not synced the key before (its totals are all
	// news), and nothing otherwise (the store lost its data: they were
	// counted once already).
	Successes, Failures uint64
	First               bool
	// Recent are the successes and failures in this replica's own window:
	// the store adds no more than these at once, so that outcomes that left
	// the window while the store was out of reach are not added as new.
	RecentSuccesses, RecentFailures uint64
	// MaxHold bounds what the store keeps for the key: a hold's cooldown
	// and a lease's length. Data beyond it is taken for corrupt and dropped.
	MaxHold time.Duration
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
	// Need is how many of the Slots probes must succeed to close the key;
	// more than Slots - Need failures open it again.
	Need int
	// Probe, when set, reports how the probe of a lease ended: a success
	// counts towards closing the key everywhere once Need succeeded; a
	// failure opens it again (Probe.Reopen) once more than Slots - Need
	// failed; an excluded probe frees its slot.
	Probe *ProbeResult
	// Command, when set, is a manual change to apply fleet-wide.
	Command *Command

	// Reply is what the fleet holds for the key, after the requests above.
	Reply Reply
	// Err is set if the store could not sync this key; Reply is then empty.
	Err error
}

// Reply is what the fleet holds for one key.
type Reply struct {
	// The fleet's window: the outcomes every replica added within the
	// key's Window, and how many replicas added failures to it, counting
	// only replicas that are live now (a replica that restarts under a new
	// name does not count twice).
	Successes, Failures uint64
	FailingReplicas     int
	// Hold is the fleet-wide hold on the key, if any.
	Hold *Hold
	// Lease names the probe lease granted to this Sync's Lease request;
	// empty if none was.
	Lease string
	// Command is the latest manual change made to the key fleet-wide; its
	// Version is 0 if there is none.
	Command Command
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
	// Reason says what made the hold: "failure_rate" for a trip of the
	// fleet's window, "probe_failed" or "probe_timeout" for a reopening.
	// Replica names the replica that made it.
	Reason  string
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

// Outcome is how a probe ended.
type Outcome uint8

// The outcomes of a probe.
const (
	Succeeded Outcome = iota // counts towards closing the key
	Failed                   // opens the key again
	Excluded                 // tells nothing: frees the probe's slot
)

// Command is a manual change to a key fleet-wide, as Kind names it.
type Command struct {
	// Version is when the change was made, on the store's clock, in
	// microseconds: a later one is newer. The store sets it, from Age; zero
	// means there is no command. A store keeps the newest command, and drops
	// one older than it, or one whose time ran out before it arrived.
	Version int64
	Kind    Kind
	// For is how long a ForceOpen holds: when sent, from when it was made;
	// when read, the time it has left, negative once it has run out. Zero:
	// until Release.
	For time.Duration
	// Age, when sent, is how long ago this replica made the change: a
	// change that a partition held back is dated when it was made, not
	// when it arrived.
	Age time.Duration
	// By says who made the change, and Replica on which replica.
	By      string
	Replica string
}

// Kind is the kind of a manual Command: the control method that made it.
type Kind string

// The kinds of manual commands.
const (
	ForceOpen  Kind = "force_open"
	ForceClose Kind = "force_close"
	Release    Kind = "release"
	Reset      Kind = "reset"
	// Probe ends the cooldown of the fleet's hold on the key: its probe
	// leases are granted from now.
	Probe Kind = "probe"
)
