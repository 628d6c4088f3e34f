package httpbreaker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/httpbreaker/httpbreaker/sharedstate"
	"github.com/prometheus/client_golang/prometheus"
)

// fleet is a set's link to the other replicas of its fleet, through a
// sharedstate.Store. One goroutine (run) does all of its work: it sends each
// key's outcome counts to the fleet's window, trips keys fleet-wide, reads
// the fleet's holds and manual changes into the breakers, and asks for and
// reports the fleet's probes. The request path never waits on it: it reads
// what the loop stored in each breaker's keyFleet (its hold, its lease) and
// at most wakes the loop.
type fleet struct {
	all      func() []*breaker // the set's breakers
	notifier *notifier
	store    sharedstate.Store
	replica  string
	every    time.Duration // the store's Interval

	life    context.Context // ends when the set is closed
	cancel  context.CancelFunc
	stopped chan struct{} // closed when the loop and its watcher have returned
	// wake asks for a sync soon: for requests (a failure, a half-open key's
	// wish for a lease, a probe's result), for what another replica
	// announced, for a new key; the loop bounds how often it heeds it.
	// urgent asks for a sync now, for an operator's change. Both have
	// capacity 1.
	wake, urgent chan struct{}

	clock      *clock
	seq        atomic.Uint64 // numbers the syncs
	connected  atomic.Bool
	lostAt     atomic.Int64 // when the link last dropped, ns since the epoch
	replicas   atomic.Int64
	syncs      atomic.Uint64
	syncErrors atomic.Uint64
	rtt        prometheus.Histogram

	mu      sync.Mutex          // guards the fields below
	pending map[string]*command // manual changes to send, the latest per key
	dirty   map[string]bool     // keys another replica changed
	full    bool                // sync every key next time
	// The most replicas heard of lately, and when.
	mostReplicas int
	mostAt       time.Time

	// Loop-only.
	warned map[string]bool // the kinds of bad data logged so far
}

// newFleet returns the link to the fleet through s of the set whose
// breakers all returns, as replica.
func newFleet(all func() []*breaker, c *clock, n *notifier, s sharedstate.Store, replica, namespace string) *fleet {
	life, cancel := context.WithCancel(context.Background())
	return &fleet{all: all, clock: c, notifier: n, store: s, replica: replica, every: s.Interval(), life: life, cancel: cancel,
		stopped: make(chan struct{}), wake: make(chan struct{}, 1), urgent: make(chan struct{}, 1), full: true,
		pending: map[string]*command{}, dirty: map[string]bool{}, warned: map[string]bool{},
		rtt: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: "shared_sync_seconds",
			Help:    "Round-trip time of this replica's syncs with the shared state.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}})}
}

// defaultReplica names a replica: its host name and process id, and a few
// random bytes so that two sets in one process differ.
func defaultReplica() string {
	host, _ := os.Hostname()
	var r [3]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(r[:]))
}

// poke asks the loop to sync soon. It never blocks.
func (f *fleet) poke() { signal(f.wake) }

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// touch asks for key to be synced soon: another replica changed it, or it
// has a new breaker, which learns the fleet's hold and manual state. The
// loop bounds how often it heeds this, as it does requests' wishes: a flood
// of announcements costs no more syncs than a flood of failures.
func (f *fleet) touch(key string) {
	f.mu.Lock()
	f.dirty[key] = true
	f.mu.Unlock()
	f.poke()
}

// command is a manual change this replica made, and when (ns since the
// set's epoch), so that the store dates it by when it was made.
type command struct {
	sharedstate.Command
	made int64
}

// send queues a manual change of key for the fleet, to sync now.
func (f *fleet) send(key string, c *command) {
	f.mu.Lock()
	f.pending[key] = c
	f.mu.Unlock()
	signal(f.urgent)
}

// maxBackoff is the longest the loop waits between syncs while the store
// is unreachable.
const maxBackoff = 5 * time.Second

// fullEvery is how many syncs pass between syncs of every key, which keep
// the store's keys alive and catch changes a lost signal did not announce.
const fullEvery = 25

// loop is the fleet's goroutine: it syncs every interval, and at once when
// woken, until the set is closed.
func (f *fleet) loop() {
	watched := make(chan struct{})
	go f.watch(watched)
	defer func() {
		<-watched
		close(f.stopped)
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var failures int
	var last time.Time
	for {
		select {
		case <-f.life.Done():
			return
		case <-timer.C:
		case <-f.urgent:
			// An operator's change: worth a sync now, unless the store is
			// unreachable, where the backoff decides.
			if failures > 0 {
				continue
			}
		case <-f.wake:
			// Bound the rate of syncs that requests ask for: at most ten
			// per interval, whatever the request rate, and none while the
			// store is unreachable, where the backoff decides.
			if failures > 0 {
				continue
			}
			if wait := f.every/10 - time.Since(last); wait > 0 {
				timer.Reset(wait)
				continue
			}
		}
		last = time.Now()
		if f.syncKeys() {
			failures = 0
			timer.Reset(f.every)
			continue
		}
		failures++
		timer.Reset(min(f.every<<min(failures, 10), max(maxBackoff, f.every)))
	}
}

// watch runs the store's Watch until the set is closed: each key another
// replica changed is synced at once. After a failure it waits, and asks for
// a sync of every key once it watches again, for what it may have missed.
func (f *fleet) watch(done chan struct{}) {
	defer close(done)
	changed := func(key string) {
		if checkKey(key) == nil {
			f.touch(key)
		}
	}
	for wait := f.every; ; wait = min(2*wait, maxBackoff) {
		start := time.Now()
		err := f.store.Watch(f.life, changed)
		if f.life.Err() != nil {
			return
		}
		if time.Since(start) > maxBackoff {
			wait = f.every // it had worked a while: retry soon
		}
		if err != nil {
			f.warn("watch", "circuit breaker fleet: watching the shared state failed; retrying", "problem", err.Error())
		}
		select {
		case <-f.life.Done():
			return
		case <-time.After(wait):
		}
		f.mu.Lock()
		f.full = true
		f.mu.Unlock()
	}
}

// warn logs a problem of the fleet's once per kind, for the life of the
// set: a store that keeps failing, or keeps sending bad data, fills no
// logs. Only the loop and the watcher call it, which kind keeps apart.
func (f *fleet) warn(kind, msg string, args ...any) {
	f.mu.Lock()
	seen := f.warned[kind]
	f.warned[kind] = true
	f.mu.Unlock()
	if !seen {
		f.notifier.log(slog.LevelWarn, msg, args...)
	}
}

// keyWork is one key's part of a sync, as the loop prepared it.
type keyWork struct {
	target     *breaker
	succ, fail uint64 // the totals sent
	command    *command
}

// syncKeys runs one round with the store, and reports whether it reached it.
func (f *fleet) syncKeys() bool {
	f.mu.Lock()
	full := f.full || f.syncs.Load()%fullEvery == 0
	f.full = false
	dirty, pending := f.dirty, f.pending
	f.dirty, f.pending = map[string]bool{}, map[string]*command{}
	f.mu.Unlock()

	s := &sharedstate.Sync{Replica: f.replica, Live: f.live()}
	var work []keyWork
	for _, br := range f.all() {
		kf := br.fleet
		o := br.counters.outcomes()
		w := keyWork{target: br, succ: o.success, fail: o.failure}
		ks := kf.keySync(br)
		ks.Successes, ks.Failures = w.succ, w.fail
		// What the replica's own window holds bounds what a sync may add
		// (read after the totals, which the window is never short of). A
		// window of the last calls bounds nothing in time: no bound.
		if br.window.width != 0 {
			recent := br.window.counts(br.clock.now())
			ks.RecentSuccesses, ks.RecentFailures = recent.success, recent.failure
		} else {
			ks.RecentSuccesses, ks.RecentFailures = w.succ, w.fail
		}
		news := w.succ != kf.sentS.Load() || w.fail != kf.sentF.Load()
		if c := pending[br.key]; c != nil {
			cmd := c.Command
			cmd.Age = time.Duration(br.clock.now() - c.made)
			ks.Command, w.command = &cmd, c
		}
		ks.Probe = kf.probeOut.Swap(nil)
		held := kf.hold.Load()
		if held != nil && kf.want.Swap(false) {
			if l := kf.lease.Load(); l == nil || l.gen != held.gen || l.used.Load() {
				ks.Lease = kf.leaseFor(br)
			}
		}
		// A key without news is left out: what the fleet changes for it is
		// announced (dirty), and a full sync catches what a lost
		// announcement missed. A forced key is read at each sync, so that
		// every replica follows the fleet's command.
		if !full && !news && !dirty[br.key] && ks.Command == nil && ks.Probe == nil && ks.Lease == 0 &&
			br.override.Load() == nil {
			continue
		}
		s.Keys = append(s.Keys, ks)
		work = append(work, w)
	}
	if !f.exchange(s) {
		// The totals are sent again next time, and the store adds what it
		// has not added yet; manual changes are sent again, dated when they
		// were made.
		f.mu.Lock()
		for _, w := range work {
			if c := w.command; c != nil && f.pending[w.target.key] == nil {
				f.pending[w.target.key] = c
			}
		}
		f.mu.Unlock()
		return false
	}
	// The fleet's window may trip keys: they are sent again, at once, with
	// the hold to make.
	trips := &sharedstate.Sync{Replica: f.replica, Live: s.Live}
	var tripped []*breaker
	for i, w := range work {
		kf := w.target.fleet
		kf.sent(w.succ, w.fail)
		ks := &s.Keys[i]
		if ks.Err != nil {
			f.warn("key", "circuit breaker fleet: a key could not be synced (logged once)",
				"key", quoteKey(ks.Key), "problem", ks.Err.Error())
			continue
		}
		kf.apply(w.target, ks, w.command)
		if h := kf.fleetTrip(w.target, ks.Reply, f.liveReplicas()); h != nil {
			t := kf.keySync(w.target)
			t.Successes, t.Failures, t.Trip = w.succ, w.fail, h // counted by the sync before: adds nothing
			trips.Keys = append(trips.Keys, t)
			tripped = append(tripped, w.target)
		}
	}
	if len(trips.Keys) > 0 && f.exchange(trips) {
		for i, br := range tripped {
			if ks := &trips.Keys[i]; ks.Err == nil {
				br.fleet.apply(br, ks, nil)
			}
		}
	}
	return true
}

// exchange sends s to the store, and notes how it went.
func (f *fleet) exchange(s *sharedstate.Sync) bool {
	// A sync may take as long as a replica stays live (a Redis far away, a
	// new connection); only then does this one count as cut off.
	ctx, cancel := context.WithTimeout(f.life, f.live())
	defer cancel()
	start := time.Now()
	s.Seq = f.seq.Add(1)
	err := f.store.Sync(ctx, s)
	f.syncs.Add(1)
	if err != nil {
		if f.life.Err() != nil {
			return false
		}
		f.syncErrors.Add(1)
		const msg = "circuit breaker fleet: shared state unreachable; each breaker goes on alone"
		if f.connected.Swap(false) { // each time the link drops
			f.lostAt.Store(f.clock.now())
			f.notifier.log(slog.LevelWarn, msg, "replica", f.replica, "problem", err.Error())
		} else { // never connected yet: once
			f.warn("unreachable", msg, "replica", f.replica, "problem", err.Error())
		}
		return false
	}
	f.rtt.Observe(time.Since(start).Seconds())
	f.replicas.Store(int64(max(s.Replicas, 1)))
	f.heard(max(s.Replicas, 1))
	for _, w := range s.Warnings {
		f.warn("store: "+w, "circuit breaker fleet: the shared state warns (logged once)", "problem", w)
	}
	if !f.connected.Swap(true) {
		f.notifier.log(slog.LevelInfo, "circuit breaker fleet: shared state connected",
			"replica", f.replica, "replicas", max(s.Replicas, 1))
		f.mu.Lock()
		f.full = true // learn everything the fleet did meanwhile
		f.mu.Unlock()
	}
	return true
}

// live is how long a replica counts as live after its last sync: long
// enough to ride out a few slow syncs.
func (f *fleet) live() time.Duration { return max(5*f.every, 2*time.Second) }

// heard notes how many replicas the store says are live. The quorum goes by
// the most it heard of within the time a replica stays live, so that a
// live set the store lost (evicted, or a Redis restarted empty) and is
// rebuilding does not lower it: one replica alone never meets a quorum
// because the others' heartbeats vanished.
func (f *fleet) heard(n int) {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if n >= f.mostReplicas || now.Sub(f.mostAt) > f.live() {
		f.mostReplicas, f.mostAt = n, now
	}
}

// liveReplicas is how many replicas a quorum is capped by.
func (f *fleet) liveReplicas() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return max(f.mostReplicas, 1)
}
