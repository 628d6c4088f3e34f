package httpbreaker

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
)

// Breakers is a set of circuit breakers, one per key (a route group, an
// upstream), each made on first use with its key's policy, and dropped once
// unused for its IdleTTL. It is safe for concurrent use.
type Breakers struct {
	settings            // what the options set
	clock               // the monotonic clock of every time kept in an atomic
	alarm    alarm      // moves breakers on when their time comes
	fleet    *fleetLink // the link to the fleet, with shared state

	keys *keyMap // read without a lock on the request path

	mu    sync.Mutex // guards the fields below, and creating and dropping keys
	count int        // len(keys)
	// policies holds one copy of each resolved policy the breakers use.
	policies map[Policy]*Policy
	// idled holds the keys that a per-key policy names whose breaker the
	// idle sweep dropped, and the families (policy keys ending in *) of
	// other dropped keys: they were used, and are not shown or logged as
	// unused. It holds at most one entry per policy key.
	idled      map[string]bool
	sweepEvery int64 // ns between idle sweeps: a quarter of the shortest IdleTTL; 0 when none
	lastSweep  int64

	unusedLook   alarmEntry    // the look for keys that a policy names and nothing uses (unused.go)
	untracked    atomic.Uint64 // requests that passed with no breaker
	overflowed   atomic.Bool   // a new key found WithMaxKeys reached
	clients      atomic.Bool   // a client side exists: Transport, KeyedTransport or Do (blame.go)
	scoped       atomic.Bool   // a request has carried a scope, for client calls to look for (blame.go)
	overflowOnce sync.Once
	emptyKeyOnce sync.Once
	badKeyOnce   sync.Once
	notifier     *notifier
}

// Close stops the set's background work: its timers and, with shared
// state, its sync with the fleet (waiting for a sync in flight), after which
// the other replicas stop counting this one as live. The breakers go on
// working alone. Close is idempotent and returns nil.
func (b *Breakers) Close() error {
	b.alarm.stop()
	b.clock.stop()
	if f := b.fleet; f != nil {
		f.cancel()
		<-f.stopped
		if f.connected.Swap(false) { // alone from now on: no fleet probes
			f.lostAt.Store(f.clock.now())
		}
	}
	return nil
}

// Flush returns once the log records and hook calls of every change made
// before it have been delivered, or with ctx's error. Changes are reported
// on a goroutine of the set's own; Flush is for a test that asserts what a
// hook saw, or a metric fed by one, as gobreaker's OnStateChange allowed.
// A change whose time has come (the end of a cooldown) is made first, as
// State makes it, so that Flush does not depend on the set's timer having
// run yet; each breaker's lock is taken, so that a change the timer is
// making is told before Flush waits.
func (b *Breakers) Flush(ctx context.Context) error {
	b.keys.each(func(br *keyBreaker) { br.catchUp(br.clock.now()) })
	return b.notifier.flush(ctx)
}

// breakerFor returns key's breaker, creating it on first use. keyed says
// whether a KeyFunc chose the key: such keys are bounded by WithMaxKeys,
// and one past the bound, or not a valid key, gets no breaker (nil). Keys
// wired by Middleware are bounded by the code and always get one. keyed
// also decides the default IdleTTL.
func (b *Breakers) breakerFor(key string, keyed bool) *keyBreaker {
	if br := b.keys.load(key); br != nil {
		return br
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if br := b.keys.load(key); br != nil {
		return br
	}
	if err := checkKey(key); err != nil { // checked once, when a key would get its breaker
		b.badKeyOnce.Do(func() {
			b.notifier.log(slog.LevelWarn, "circuit breaker key is not valid: such requests pass through without a breaker",
				"key", quoteKey(key), "problem", err.Error())
		})
		return nil
	}
	now := b.now()
	b.sweepLocked(now)
	if keyed && b.count >= b.maxKeys {
		b.overflowOnce.Do(func() {
			b.overflowed.Store(true) // once: every request past the bound comes here
			b.notifier.log(slog.LevelWarn, "circuit breaker key limit reached: requests for new keys pass through without a breaker",
				"max_keys", b.maxKeys, "first_untracked_key", key)
		})
		return nil
	}
	br := newBreaker(key, b.intern(keyPolicy(b.cfg.policyFor(key), keyed)), &b.clock, &b.alarm, now, b.notifier, b.classifier)
	if b.fleet != nil {
		br.fleet = newKeyFleet(b.fleet, br.policy)
	}
	b.keys.store(key, br)
	b.count++
	if b.fleet != nil {
		b.fleet.touch(key) // learn the fleet's hold and manual state for it now
	}
	if ttl := int64(br.idleTTL) / 4; ttl > 0 && (b.sweepEvery == 0 || ttl < b.sweepEvery) {
		b.sweepEvery = ttl
	}
	return br
}

// intern returns the set's one copy of the resolved policy p, which the
// breakers of every key that resolves to it share; b.mu must be held. A set
// holds as many copies as it has distinct policies.
func (b *Breakers) intern(p Policy) *Policy {
	if shared, ok := b.policies[p]; ok {
		return shared
	}
	if b.policies == nil {
		b.policies = map[Policy]*Policy{}
	}
	b.policies[p] = &p
	return &p
}

// lookup returns key's breaker if it exists.
func (b *Breakers) lookup(key string) *keyBreaker { return b.keys.load(key) }

// allBreakers returns every key's breaker.
func (b *Breakers) allBreakers() []*keyBreaker {
	var out []*keyBreaker
	b.keys.each(func(br *keyBreaker) { out = append(out, br) })
	return out
}

// sweep drops idle keys if a sweep is due.
func (b *Breakers) sweep() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sweepLocked(b.now())
}

// sweepLocked drops the breakers of keys that have served no request for
// their IdleTTL, at most once every quarter of the shortest IdleTTL; b.mu
// must be held. It runs when a key is created, at each scrape and in
// Snapshot, so the set shrinks back while the service runs and cannot grow
// without a sweep: a service with many short-lived keys keeps flat memory
// and a flat number of metric series. A key is idle when its request count
// has not moved since a sweep at least IdleTTL ago; the request path pays
// nothing for it. Only a closed breaker with nothing in flight is dropped:
// an open, recovering or forced one keeps its state.
func (b *Breakers) sweepLocked(now int64) {
	if b.sweepEvery == 0 || now-b.lastSweep < b.sweepEvery {
		return
	}
	b.lastSweep = now
	dropped := 0
	b.keys.drop(func(br *keyBreaker) bool {
		if br.idle(now) {
			br.dropped.Store(true)
			b.count--
			dropped++
			for _, name := range b.cfg.policyKeys(br.key) { // the key and its families: used
				if b.idled == nil {
					b.idled = map[string]bool{}
				}
				b.idled[name] = true
			}
			b.alarm.set(&br.wake, notDue)
			b.notifier.publish(Event{Transition: Transition{Time: b.at(now), From: StateClosed, To: StateClosed, Reason: ReasonIdle},
				Key: br.key, Mode: br.mode})
			return true
		}
		return false
	})
	if dropped > 0 {
		b.notifier.log(slog.LevelInfo, "circuit breakers dropped after their idle time", "dropped", dropped, "keys", b.count)
	}
}

// keyRef is the breaker of a key that the code names (Middleware,
// Transport): the key's breaker now, looked up again when the idle sweep
// has dropped the one it had.
type keyRef struct {
	set  *Breakers
	key  string
	side uint32
	br   atomic.Pointer[keyBreaker] // never nil
	_    [64 - 40]byte              // read on every request: a cache line of its own (see counters.go)
}

// ref returns a keyRef for key, used on side; what names the wiring
// function for a panic: a key that is not valid is a wiring mistake, found
// when the server is assembled, never at request time. Such keys are bounded
// by the code, not by traffic: they always get a breaker, past WithMaxKeys
// too, created now, so that they show in metrics and the status before the
// first call.
func (b *Breakers) ref(what, key string, side uint32) *keyRef {
	if err := checkKey(key); err != nil {
		panic("httpbreaker: " + what + "(" + quoteKey(key) + "): " + err.Error())
	}
	r := &keyRef{set: b, key: key, side: side}
	br := b.breakerFor(key, false)
	br.noteSide(side)
	r.br.Store(br)
	return r
}

// get returns the key's breaker.
func (r *keyRef) get() *keyBreaker {
	br := r.br.Load()
	if br.dropped.Load() { // idle for its IdleTTL: the key's breaker now is another
		br = r.set.breakerFor(r.key, false)
		br.noteSide(r.side)
		r.br.Store(br)
	}
	return br
}

// keyed returns the breaker of key, which a KeyFunc chose for a call on
// side, or nil when the call goes untracked (counted): the key is empty
// (logged once), not valid, or one past WithMaxKeys. where describes the
// call for the log record.
func (b *Breakers) keyed(key string, side uint32, where func() []any) *keyBreaker {
	if key == "" {
		b.emptyKeyOnce.Do(func() {
			b.notifier.log(slog.LevelWarn, "circuit breaker KeyFunc returned no key: such calls pass without a breaker "+
				"(a middleware outside the router that sets the route pattern sees none)", where()...)
		})
	} else if br := b.breakerFor(key, true); br != nil {
		br.noteSide(side)
		return br
	}
	b.untracked.Add(1)
	return nil
}
