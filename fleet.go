package httpbreaker

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/httpbreaker/httpbreaker/sharedstate"
	"github.com/prometheus/client_golang/prometheus"
)

// fleetLink is a set's link to the other replicas of its fleet, through a
// sharedstate.Store. One goroutine (run) does all of its work: it sends each
// key's outcome counts to the fleet's window, trips keys fleet-wide, reads
// the fleet's holds and manual changes into the breakers, and asks for and
// reports the fleet's probes. The request path never waits on it: it reads
// what the loop stored in each breaker's keyFleet (its hold, its lease) and
// at most wakes the loop.
type fleetLink struct {
	all      func() []*keyBreaker // the set's breakers
	notifier *notifier
	store    sharedstate.Store
	replica  string
	every    time.Duration // the store's Interval

	life    context.Context // ends when the set is closed
	cancel  context.CancelFunc
	stopped chan struct{} // closed when the loop and its watcher have returned
	// wake asks for a sync soon: for requests (a failure, a half-open key's
	// wish for a lease, a probe's result), for a new key; told, for keys
	// the fleet announced, which a sync of those keys alone serves; the
	// loop bounds how often it heeds either. urgent asks for a sync now,
	// for an operator's change. All have capacity 1.
	wake, told, urgent chan struct{}

	clock      *clock
	session    uint64        // tells this set from an earlier one of the same replica name
	seq        atomic.Uint64 // numbers the syncs
	connected  atomic.Bool
	lostAt     atomic.Int64 // when the link last dropped, ns since the epoch
	replicas   atomic.Int64
	syncs      atomic.Uint64
	syncErrors atomic.Uint64
	rtt        prometheus.Histogram

	mu      sync.Mutex          // guards the fields below
	pending map[string]*command // manual changes to send, the latest per key
	dirty   map[string]bool     // keys the fleet announced
	fresh   map[string]bool     // keys with a new breaker here
	full    bool                // sync every key next time
	// The most replicas heard of lately, and when.
	mostReplicas int
	mostAt       time.Time

	// The kinds of problem logged and not cleared since (problems), and
	// those met in the current sync (met).
	problems, met map[string]bool
	added         bool // a breaker was made since breakers was read

	// Loop-only: the set's breakers as last read, and by key, which the
	// loop reads again when one was made (the dropped ones it skips) or
	// every full sync: reading them from the set at every sync costs as
	// much as the rest of the sync at ten thousand keys.
	breakers []*keyBreaker
	byKey    map[string]*keyBreaker
}

// newFleet returns the link to the fleet through s of the set whose
// breakers all returns, as replica.
func newFleet(all func() []*keyBreaker, c *clock, n *notifier, s sharedstate.Store, replica, namespace string) *fleetLink {
	life, cancel := context.WithCancel(context.Background())
	var session [8]byte
	_, _ = rand.Read(session[:])
	return &fleetLink{all: all, clock: c, notifier: n, store: s, replica: replica, every: s.Interval(), life: life, cancel: cancel,
		session: binary.LittleEndian.Uint64(session[:]),
		stopped: make(chan struct{}), wake: make(chan struct{}, 1), told: make(chan struct{}, 1), urgent: make(chan struct{}, 1), full: true,
		pending: map[string]*command{}, dirty: map[string]bool{}, fresh: map[string]bool{}, problems: map[string]bool{}, met: map[string]bool{},
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
func (f *fleetLink) poke() { signal(f.wake) }

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// touch asks for key to be synced soon, for its new breaker, which learns
// the fleet's hold and manual state: by reading the key, or, when many keys
// are new (a replica starting, traffic moving to new keys), by reading the
// store's index of the keys the fleet holds something for.
func (f *fleetLink) touch(key string) {
	f.mark(key, true)
	f.poke()
}

// announced asks for key to be synced soon: the fleet announced a change of
// it (another replica's, or a gathering). The loop bounds how often it heeds
// this, as it does requests' wishes: a flood of announcements costs no more
// syncs than a flood of failures.
func (f *fleetLink) announced(key string) {
	f.mark(key, false)
	signal(f.told)
}

// mark notes key as new (fresh) or announced, for the next sync.
func (f *fleetLink) mark(key string, fresh bool) {
	f.mu.Lock()
	keys := f.dirty
	if fresh {
		keys, f.added = f.fresh, true
	}
	if len(keys) < maxDirty {
		keys[key] = true
	} else {
		f.full = true // a flood of keys: the next sync reads the store's index
	}
	f.mu.Unlock()
}

// maxDirty bounds the keys waiting for the next sync, announced or new.
const maxDirty = 4096

// maxFresh is how many new breakers a sync reads the keys of: past it, it
// reads the store's index instead, which lists the keys it should read.
const maxFresh = 32

// maxCarried bounds the keys a sync carries for reports and reads; the
// rest wait for the next sync. Keys with a manual change, a probe's result
// or a lease to ask for are always carried. A replica that starts, or hears
// of many keys at once, does not send Redis one huge sync that could time
// out and be sent again whole.
const maxCarried = 1024

// command is a manual change this replica made, and when (ns since the
// set's epoch), so that the store dates it by when it was made.
type command struct {
	sharedstate.Command
	made int64
}

// send queues a manual change of key for the fleet, to sync now.
func (f *fleetLink) send(key string, c *command) {
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
func (f *fleetLink) loop() {
	watched := make(chan struct{})
	go f.watch(watched)
	defer func() {
		<-watched
		close(f.stopped)
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	next := time.Now() // when the timer fires
	reset := func(d time.Duration) {
		next = time.Now().Add(d)
		timer.Reset(d)
	}
	var failures int
	var last time.Time
	for {
		announced := false
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
				reset(wait)
				continue
			}
		case <-f.told:
			// Keys the fleet announced, within the same bound: a sync of
			// those keys alone, which leaves the interval's sync where it
			// is. Past the bound, the timer's sync carries them.
			if failures > 0 {
				continue
			}
			if wait := f.every/10 - time.Since(last); wait > 0 {
				if time.Until(next) > wait {
					reset(wait)
				}
				continue
			}
			announced = true
		}
		last = time.Now()
		if announced {
			if !f.syncKeys(true) {
				failures++
				reset(min(f.every<<min(failures, 10), max(maxBackoff, f.every)))
			} else if time.Until(next) < f.every/10 {
				reset(f.every / 10) // the bound holds for the timer's sync too
			}
			continue
		}
		if f.syncKeys(false) {
			failures = 0
			reset(f.every)
			continue
		}
		failures++
		reset(min(f.every<<min(failures, 10), max(maxBackoff, f.every)))
	}
}

// watch runs the store's Watch until the set is closed: each key another
// replica changed is synced at once. After a failure it waits, and asks for
// a sync of every key once it watches again, for what it may have missed.
func (f *fleetLink) watch(done chan struct{}) {
	defer close(done)
	changed := func(key string) {
		if checkKey(key) == nil {
			f.announced(key)
		}
	}
	for wait := f.every; ; wait = min(2*wait, maxBackoff) {
		start := time.Now()
		err := f.store.Watch(f.life, changed)
		if f.life.Err() != nil {
			return
		}
		if time.Since(start) > maxBackoff {
			wait = f.every // it had worked a while: retry soon, and a failure now is a new one
			f.clear(func(kind string) bool { return kind == "watch" })
		}
		if err != nil {
			f.problem("watch", "circuit breaker fleet: watching the shared state failed; retrying", "problem", err.Error())
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

// problem logs a problem of the fleet's once for as long as it lasts: a
// store that keeps failing, or keeps sending bad data, fills no logs. Once
// it has cleared (clear), it is logged again if it comes back. kind tells
// problems apart: the store unreachable, the watch failing, a key the
// store could not sync, each kind of bad data, each warning of the store.
func (f *fleetLink) problem(kind, msg string, args ...any) {
	f.mu.Lock()
	logged := f.problems[kind]
	f.problems[kind], f.met[kind] = true, true
	f.mu.Unlock()
	if !logged {
		f.notifier.log(slog.LevelWarn, msg, args...)
	}
}

// clear notes that the problems of the kinds gone says are over.
func (f *fleetLink) clear(gone func(kind string) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for kind := range f.problems {
		if gone(kind) {
			delete(f.problems, kind)
		}
	}
}

// dataProblem reports whether a kind of problem is about what the store
// said of a key: a full sync that meets none of it again clears it.
func dataProblem(kind string) bool {
	return kind == "key" || strings.HasPrefix(kind, "bad ")
}

// keyWork is one key's part of a sync, as the loop prepared it.
type keyWork struct {
	target  *keyBreaker // nil: a key this replica has no breaker for
	command *command
}

// maxAbsent bounds how many announced keys without a breaker here one sync
// reports: a flood of announcements costs a bounded sync.
const maxAbsent = 64

// syncKeys runs one round with the store, and reports whether it reached
// it: of every key with something to tell, or, announced, of the keys the
// fleet announced (and those with a manual change or new) alone.
func (f *fleetLink) syncKeys(announced bool) bool {
	f.mu.Lock()
	full := !announced && (f.full || f.syncs.Load()%fullEvery == 0)
	if !announced {
		f.full = false
	}
	dirty, pending, fresh := f.dirty, f.pending, f.fresh
	f.dirty, f.pending, f.fresh = map[string]bool{}, map[string]*command{}, map[string]bool{}
	clear(f.met)
	added := f.added
	f.added = false
	f.mu.Unlock()
	if added || full || f.breakers == nil {
		f.breakers = f.all() // after added was cleared: a breaker made now is read next time
		f.byKey = make(map[string]*keyBreaker, len(f.breakers))
		for _, br := range f.breakers {
			f.byKey[br.key] = br
		}
	}
	candidates := f.breakers
	if announced {
		candidates = nil
		picked := map[string]bool{}
		pick := func(key string) {
			if br := f.byKey[key]; br != nil && !picked[key] {
				picked[key] = true
				candidates = append(candidates, br)
			}
		}
		for key := range dirty {
			pick(key)
		}
		for key := range fresh {
			pick(key)
		}
		for key := range pending {
			pick(key)
		}
	}
	if len(fresh) > maxFresh {
		full, fresh = true, nil // the index lists the new keys to read
	}

	s := &sharedstate.Sync{Replica: f.replica, Session: f.session, Live: f.live(), Index: full}
	quorum := f.liveReplicas()
	var work []keyWork
	var later []string // announced or new keys past maxCarried
	carried := 0
	for _, br := range candidates {
		if br.dropped.Load() {
			continue // idle: a new breaker serves its key, if any
		}
		// Most keys have nothing to tell: this is what every sync does for
		// each, so it reads a few atomics and writes nothing.
		kf := br.fleet
		announced := len(dirty) > 0 && dirty[br.key]
		if announced {
			delete(dirty, br.key)
		}
		isNew := len(fresh) > 0 && fresh[br.key]
		rep := kf.prepare(br, full, announced)
		var c *command
		if len(pending) > 0 {
			c = pending[br.key]
		}
		var probe *sharedstate.ProbeResult
		if kf.probeOut.Load() != nil {
			probe = kf.probeOut.Swap(nil)
		}
		var lease time.Duration
		held := kf.hold.Load()
		if held != nil && kf.want.Load() && kf.want.Swap(false) {
			if l := kf.lease.Load(); l == nil || l.gen != held.gen || l.used.Load() {
				lease = kf.leaseFor(br)
			}
		}
		// A key with nothing to tell is left out: what the fleet changes for
		// it is announced, and a full sync reads what a lost announcement
		// missed (the keys the store's index lists, and those it holds). A
		// forced key is read at each sync, so that every replica follows the
		// fleet's command.
		request := c != nil || probe != nil || lease > 0
		if !request && !rep.Report && !announced && !isNew && br.override.Load() == nil && !(full && held != nil) {
			continue
		}
		if !request {
			if carried == maxCarried {
				if announced || isNew {
					later = append(later, br.key)
				}
				if rep.Report {
					kf.unsent() // the report is made again at the next sync
				}
				continue
			}
			carried++
		}
		ks := kf.keySync(br)
		rep.fill(&ks, br, quorum)
		ks.Probe, ks.Lease = probe, lease
		w := keyWork{target: br}
		if c != nil {
			cmd := c.Command
			cmd.Age = time.Duration(br.clock.now() - c.made)
			ks.Command, w.command = &cmd, c
		}
		s.Keys = append(s.Keys, ks)
		work = append(work, w)
	}
	// Keys announced that this replica has no breaker for: the fleet may be
	// gathering one, and waits for every live replica's report.
	absent := 0
	for key := range dirty {
		if absent == maxAbsent {
			break
		}
		s.Keys = append(s.Keys, sharedstate.KeySync{Key: key, Report: true, Slots: 1, Need: 1})
		work = append(work, keyWork{})
		absent++
	}
	if len(later) > 0 {
		for _, key := range later {
			f.mark(key, false)
		}
	}
	if !f.exchange(s) {
		// Reports are made again next time; manual changes are sent again,
		// dated when they were made.
		f.mu.Lock()
		for _, w := range work {
			if c := w.command; c != nil && f.pending[w.target.key] == nil {
				f.pending[w.target.key] = c
			}
		}
		f.mu.Unlock()
		for i, w := range work {
			if w.target != nil && s.Keys[i].Report {
				w.target.fleet.unsent()
			}
		}
		return false
	}
	f.learn(s, work)
	// The fleet's window may trip keys: they are sent again, at once, with
	// the hold to make.
	trips := &sharedstate.Sync{Replica: f.replica, Session: f.session, Live: s.Live}
	var tripped []*keyBreaker
	for i, w := range work {
		ks := &s.Keys[i]
		if w.target == nil {
			continue
		}
		kf := w.target.fleet
		if ks.Err != nil {
			if ks.Report {
				kf.unsent()
			}
			f.problem("key", "circuit breaker fleet: a key could not be synced (logged once until every key syncs)",
				"key", quoteKey(ks.Key), "problem", ks.Err.Error())
			continue
		}
		kf.acked(ks)
		kf.apply(w.target, ks, w.command)
		if h := kf.fleetTrip(w.target, ks.Reply, f.liveReplicas()); h != nil { // as this sync's heartbeat heard them
			t := kf.keySync(w.target)
			t.Trip = h
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
	if full {
		f.mu.Lock()
		met := maps.Clone(f.met)
		f.mu.Unlock()
		f.clear(func(kind string) bool { return dataProblem(kind) && !met[kind] })
	}
	return true
}

// learn marks for the next sync the keys of the store's index that this
// sync did not carry and this replica has a breaker for: the fleet holds
// something for them that an announcement may not have told.
func (f *fleetLink) learn(s *sharedstate.Sync, work []keyWork) {
	if len(s.Indexed) == 0 {
		return
	}
	indexed := make(map[string]bool, len(s.Indexed))
	for _, key := range s.Indexed {
		indexed[key] = true
	}
	for i := range s.Keys {
		delete(indexed, s.Keys[i].Key)
	}
	marked := false
	f.mu.Lock()
	for _, br := range f.all() {
		if indexed[br.key] && len(f.dirty) < maxDirty {
			f.dirty[br.key], marked = true, true
		}
	}
	f.mu.Unlock()
	if marked {
		f.poke()
	}
}

// exchange sends s to the store, and notes how it went.
func (f *fleetLink) exchange(s *sharedstate.Sync) bool {
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
		if f.connected.Swap(false) {
			f.lostAt.Store(f.clock.now())
			f.cutOff()
		}
		f.problem("unreachable", "circuit breaker fleet: shared state unreachable; each breaker goes on alone (logged once until it is back)",
			"problem", err.Error())
		return false
	}
	f.rtt.Observe(time.Since(start).Seconds())
	f.replicas.Store(int64(max(s.Replicas, 1)))
	f.heard(max(s.Replicas, 1))
	f.clear(func(kind string) bool { return kind == "unreachable" })
	for _, w := range s.Warnings {
		f.problem("store: "+w, "circuit breaker fleet: the shared state warns (logged once while it does)", "problem", w)
	}
	f.clear(func(kind string) bool {
		w, ok := strings.CutPrefix(kind, "store: ")
		return ok && !slices.Contains(s.Warnings, w)
	})
	if !f.connected.Swap(true) {
		f.notifier.log(slog.LevelInfo, "circuit breaker fleet: shared state connected", "replicas", max(s.Replicas, 1))
		f.mu.Lock()
		f.full = true // learn everything the fleet did meanwhile
		f.mu.Unlock()
	}
	return true
}

// cutOff tells every key the fleet holds that the link is lost: a hold
// half-open ends now (its probes need the fleet), and one still open at the
// end of its cooldown, which the alarm already holds. Nothing else would,
// until something read the key.
func (f *fleetLink) cutOff() {
	now := f.clock.now()
	for _, br := range f.all() {
		if br.fleet.isHolding() {
			br.catchUp(now)
		}
	}
}

// live is how long a replica counts as live after its last sync: long
// enough to ride out a few slow syncs.
func (f *fleetLink) live() time.Duration { return max(5*f.every, 2*time.Second) }

// heard notes how many replicas the store says are live. The quorum goes by
// the most it heard of within the time a replica stays live, so that a
// live set the store lost (evicted, or a Redis restarted empty) and is
// rebuilding does not lower it: one replica alone never meets a quorum
// because the others' heartbeats vanished.
func (f *fleetLink) heard(n int) {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if n >= f.mostReplicas || now.Sub(f.mostAt) > f.live() {
		f.mostReplicas, f.mostAt = n, now
	}
}

// liveReplicas is how many replicas a quorum is capped by.
func (f *fleetLink) liveReplicas() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return max(f.mostReplicas, 1)
}
