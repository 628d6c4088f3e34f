// Package sharedstate is the protocol between httpbreaker and a store that
// lets the replicas of a fleet share what their breakers learn. Only a store
// author needs it: a service plugs a ready store in with
// httpbreaker.WithSharedState (the redisstate module is one, on Redis).
//
// A store keeps the fleet's facts and applies a replica's requests to them
// atomically per key: each replica's report of its own window of the key, a
// hold that a fleet-wide trip makes, the leases of the fleet's probes, and
// manual commands. httpbreaker decides what the facts mean (when the
// fleet's window trips a key, what a probe's result does, how long a hold
// lasts on a replica) and checks everything a store returns, so that every
// store behaves the same and a corrupt or hostile store cannot make a
// breaker misbehave.
//
// A key that only succeeds costs a store nothing: a replica reports its
// window of a key when its failures change, and the store asks every
// replica for theirs (Reply.Gathering) only once a fleet-wide trip has
// become possible: enough failures, from enough replicas, one of which
// fails at the trip's rate on its own.
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
	// the fleet holds for that key, or the fleet gathers its replicas'
	// windows of it, until ctx ends or the store's connection fails; then
	// it returns (ctx's error, or the failure). The caller calls it again
	// after a failure. changed must return at once.
	Watch(ctx context.Context, changed func(key string)) error
}

// Sync is one round of a replica's exchange with the fleet.
type Sync struct {
	// Replica names this replica in the fleet: unique, and the same for the
	// life of its set of breakers.
	Replica string
	// Session tells this set of breakers from an earlier one under the same
	// Replica name (a restarted pod): random, and the same for the set's
	// life. Seq numbers the session's syncs: each has a larger one. A store
	// applies a sync's requests (a trip, a probe's result, a command, a
	// lease) at most once, however often a client sends it again, and
	// answers a sync it has applied with what it answered then (the same
	// lease); a report never replaces a later one of the same session.
	Session uint64
	Seq     uint64
	// Live is how long after its last Sync a replica counts as live.
	Live time.Duration
	// Index asks the store for Indexed: a set asks every few syncs, for
	// what an announcement it missed would have told it.
	Index bool
	// Keys holds a request and a reply per key.
	Keys []KeySync

	// Replicas is set by Sync: how many replicas are live, this one included.
	Replicas int
	// Indexed is set by Sync when Index asked for it: the keys for which
	// the fleet holds something (a hold, a manual command, a gathering).
	Indexed []string
	// Warnings is set by Sync: problems that do not stop it, such as a
	// server that may evict the fleet's state, for the set to log.
	Warnings []string
}

// KeySync is one key's part of a Sync: what this replica sends (the fields
// before Reply), and what the store replies (Reply, Err).
type KeySync struct {
	Key string
	// Window is the key's policy window: a report older than it counts for
	// nothing (0: a window of the last calls, which reports hold until
	// replaced).
	Window time.Duration
	// Report says that this sync reports this replica's own window of the
	// key as it is now: Successes and Failures in it, and Over, whether its
	// failure rate alone meets the policy's. The store keeps each
	// replica's latest report and sums those of the live replicas: that
	// sum is the fleet's window. A report replaces the one before it, so
	// that a sync sent twice, or lost, counts nothing twice, and a store
	// that lost its data has it back at the next report.
	//
	// A report with nothing in it, and no report before it, tells a store
	// nothing, unless the fleet gathers the key: a replica with no breaker
	// for a key sends one when it hears that the fleet gathers it (with
	// TripFailures 0), so that the gathering need not wait for it.
	Report              bool
	Successes, Failures uint64
	Over                bool
	// TripFailures and Quorum say when the key could trip fleet-wide: at
	// least TripFailures failures in the fleet's window, from at least
	// Quorum replicas, one of them Over (the fleet's failure rate is an
	// average of its replicas', and meets the policy's only if one of
	// theirs does). Then the store gathers the key: it answers every sync
	// of it with Gathering, and each replica reports its window at each
	// sync, successes and all, until the trip is no longer possible.
	// TripFailures 0: this replica does not say (its policy never trips
	// fleet-wide, or it has no breaker for the key).
	TripFailures, Quorum int
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
	// The fleet's window: the sum of the live replicas' latest reports of
	// their windows, and how many of those hold failures (a replica that
	// restarts under a new name does not count twice). Outside a gathering
	// it holds the successes of the replicas that reported lately only.
	Successes, Failures uint64
	FailingReplicas     int
	// Gathering says that the fleet gathers the key: a fleet-wide trip is
	// possible, and every replica reports its window at every sync.
	// Complete says that every live replica has reported since it began
	// (or it has waited long enough for them): the window is whole, and a
	// trip may be decided on it.
	Gathering, Complete bool
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
