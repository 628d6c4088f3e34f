package redisstate_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/httpbreaker/httpbreaker"
	"github.com/httpbreaker/httpbreaker/internal/faultproxy"
	"github.com/httpbreaker/httpbreaker/internal/redisserver"
	"github.com/httpbreaker/httpbreaker/redisstate"
	"github.com/httpbreaker/httpbreaker/sharedstate"
	"github.com/redis/go-redis/v9"
)

// The fleet as an attacker, a partition, a restart and a careless operator
// would try it: each test here breaks what a real redis-server holds, or the
// network to it, and checks that every replica stays right.

// proxied starts a fault proxy in front of srv, closed when the test ends.
func proxied(t *testing.T, srv *redisServer) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.Start(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// stays reports whether cond holds all through d, checked often.
func stays(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if !cond() {
			return false
		}
	}
	return true
}

func TestAReleaseAfterRedisRestartsEmptyReachesEveryReplica(t *testing.T) {
	srv := startRedis(t)
	rs := fleet(t, srv.Addr(), 3, fleetPolicy(), map[string]*upstream{"pay": newUpstream(200)})
	waitFor(t, "connected", func() bool { return rs[2].set.FleetStatus().Connected })
	if err := rs[0].set.ForceClose("pay"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "forced closed everywhere", func() bool { return all(rs, "pay", httpbreaker.StateForcedClosed) })
	srv.Kill()
	srv.start() // empty: the command's record is gone
	waitFor(t, "reconnected", func() bool {
		return rs[1].set.FleetStatus().Connected && rs[2].set.FleetStatus().Connected
	})
	if err := rs[0].set.Release("pay"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "released everywhere", func() bool { return all(rs, "pay", httpbreaker.StateClosed) })
}

func TestAForcedStateTheStoreLostIsSentAgainOrDropped(t *testing.T) {
	t.Parallel() // its own redis-server; it waits on the fleet's clock, beside the others that do
	srv := startRedis(t)
	rs := fleet(t, srv.Addr(), 3, fleetPolicy(), map[string]*upstream{"pay": newUpstream(200)})
	waitFor(t, "connected", func() bool { return rs[2].set.FleetStatus().Connected })
	if err := rs[0].set.ForceOpen("pay", 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "forced open everywhere", func() bool { return all(rs, "pay", httpbreaker.StateForcedOpen) })

	// The record is lost while the replica that made it runs: it sends it
	// again, and the fleet stays forced.
	srv.Kill()
	srv.start()
	if !stays(3*time.Second, func() bool { return all(rs, "pay", httpbreaker.StateForcedOpen) }) {
		t.Fatalf("the operator's ForceOpen was lost with Redis's data: %s", states(rs, "pay"))
	}

	// Lost again, with that replica gone: nothing forces the others.
	rs[0].stop()
	srv.Kill()
	srv.start()
	waitFor(t, "the others no longer forced", func() bool { return all(rs[1:], "pay", httpbreaker.StateClosed) })
}

func TestAChangeAPartitionHeldBackIsNotReplayed(t *testing.T) {
	t.Parallel() // its own redis-server; it waits on the fleet's clock, beside the others that do
	srv := startRedis(t)
	proxy := proxied(t, srv)
	p := fleetPolicy()
	ups := map[string]*upstream{"pay": newUpstream(200)}
	cut := newReplica(t, proxy.Addr(), "cut", p, ups)
	others := fleet(t, srv.Addr(), 2, p, ups)
	waitFor(t, "connected", func() bool { return cut.set.FleetStatus().Connected && others[1].set.FleetStatus().Connected })

	proxy.Cut()
	if err := cut.set.ForceOpen("pay", time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // the ForceOpen has run out, where it was made too
	proxy.Heal()
	waitFor(t, "the cut replica reconnects", func() bool { return cut.set.FleetStatus().Connected })
	if !stays(time.Second, func() bool { return all(others, "pay", httpbreaker.StateClosed) }) {
		t.Fatalf("a ForceOpen that ran out during the partition reached the fleet: %s", states(others, "pay"))
	}

	// A Release made while cut off, before another replica's kill switch,
	// does not undo it.
	proxy.Cut()
	if err := cut.set.Release("pay"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := others[0].set.ForceOpen("pay", 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the kill switch on the connected replicas", func() bool { return all(others, "pay", httpbreaker.StateForcedOpen) })
	proxy.Heal()
	waitFor(t, "the cut replica follows the later kill switch", func() bool {
		return cut.set.State("pay") == httpbreaker.StateForcedOpen
	})
	if !stays(time.Second, func() bool { return all(others, "pay", httpbreaker.StateForcedOpen) }) {
		t.Fatalf("an older Release undid a later ForceOpen: %s", states(others, "pay"))
	}
}

// TestAReleaseMadeWhileCutOffDoesNotUndoALaterKillSwitch: A is cut off and
// releases the key; a second later B force-opens it fleet-wide and C
// follows; the partition heals seconds later. The release was made first,
// so the kill switch stands on every replica. A's sync that carries the
// release waits for a connection through the partition and reaches Redis
// only when it heals: dated by its age when it arrived, the release would
// pass for one made after the kill switch.
func TestAReleaseMadeWhileCutOffDoesNotUndoALaterKillSwitch(t *testing.T) {
	t.Parallel() // its own redis-server; it waits on the fleet's clock, beside the others that do
	srv := startRedis(t)
	proxy := proxied(t, srv)
	p := fleetPolicy()
	ups := map[string]*upstream{"pay": newUpstream(200)}
	a := newReplica(t, proxy.Addr(), "a", p, ups, redisstate.WithSyncInterval(200*time.Millisecond))
	others := fleet(t, srv.Addr(), 2, p, ups, redisstate.WithSyncInterval(200*time.Millisecond))
	rs := append([]*replica{a}, others...)
	waitFor(t, "connected", func() bool { return a.set.FleetStatus().Replicas == 3 && others[1].set.FleetStatus().Replicas == 3 })

	proxy.Cut()
	if err := a.set.Release("pay"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := others[0].set.ForceOpen("pay", 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the kill switch on the connected replicas", func() bool { return all(others, "pay", httpbreaker.StateForcedOpen) })
	time.Sleep(3 * time.Second)
	proxy.Heal()
	waitFor(t, "the cut replica reconnects", func() bool { return a.set.FleetStatus().Connected })
	waitFor(t, "the cut replica follows the kill switch: "+states(rs, "pay"), func() bool {
		return a.set.State("pay") == httpbreaker.StateForcedOpen
	})
	if !stays(3*time.Second, func() bool { return all(rs, "pay", httpbreaker.StateForcedOpen) }) {
		t.Fatalf("a Release made before a kill switch undid it: %s; %s's events: %+v", states(rs, "pay"), others[1].name, others[1].hooked())
	}
}

// TestAfterAFlushallTheFleetTripsAgain: Redis loses everything (FLUSHALL)
// after every replica synced the key; two replicas that then fail trip the
// third, as they would have before: a store that lost its data has the
// replicas' windows back at their next reports.
func TestAfterAFlushallTheFleetTripsAgain(t *testing.T) {
	t.Parallel() // its own redis-server; it waits on the fleet's clock, beside the others that do
	srv := startRedis(t)
	raw := srv.client(t)
	p := fleetPolicy()
	sick := newUpstream(500)
	ups := map[string]*upstream{"probe": sick}
	rs := fleet(t, srv.Addr(), 3, p, ups)
	waitFor(t, "three live", func() bool { return rs[2].set.FleetStatus().Replicas == 3 })
	sick.code.Store(200)
	for _, r := range rs {
		for range 3 {
			r.call("probe") // every replica knows the key, and has synced it
		}
	}
	time.Sleep(300 * time.Millisecond)
	if err := raw.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	sick.code.Store(500)
	for _, r := range rs[:2] {
		for range 10 {
			r.call("probe")
		}
	}
	waitFor(t, "the third replica held by the fleet: "+states(rs, "probe"), func() bool {
		return rs[2].set.State("probe") == httpbreaker.StateOpen
	})
}

func TestHostileHoldsAndLeasesAreBoundedAndNotTakenAgain(t *testing.T) {
	t.Parallel() // its own redis-server; it waits on the fleet's clock, beside the others that do
	srv := startRedis(t)
	raw := srv.client(t)
	ctx := context.Background()
	s := newStore(t, raw)
	keys := redisstate.KeysOf(s, "pay")
	p := fleetPolicy()
	p.MaxOpenFor = time.Second
	up := newUpstream(200)
	rs := fleet(t, srv.Addr(), 2, p, map[string]*upstream{"pay": up})
	waitFor(t, "connected", func() bool { return rs[1].set.FleetStatus().Connected })

	for _, until := range []string{"inf", "1e300", "-inf", "nan", ""} {
		now, _ := raw.Time(ctx).Result()
		if until == "" { // ten years ahead
			until = strconv.FormatInt(now.Add(10*365*24*time.Hour).UnixMilli(), 10)
		}
		raw.HSet(ctx, keys[hold], "phase", "open", "gen", now.UnixMicro(), "until", until, "nominal", 1000,
			"reason", "failure_rate", "replica", "mallory", "probed", 0, "failed", 0)
		raw.Publish(ctx, redisstate.ChannelOf(s), "pay")
		waitFor(t, "the hostile hold deleted", func() bool { return raw.Exists(ctx, keys[hold]).Val() == 0 })
		if st := rs[0].set.State("pay"); st != httpbreaker.StateClosed {
			t.Fatalf("a hold until %s put the key in %v", until, st)
		}
	}

	// A hold within bounds is taken, for at most its cooldown and a lease;
	// written again with the same generation after it lapsed, it is not
	// taken again.
	now, _ := raw.Time(ctx).Result()
	gen := now.UnixMicro()
	plant := func() {
		now, _ := raw.Time(ctx).Result()
		raw.HSet(ctx, keys[hold], "phase", "open", "gen", gen, "until", now.Add(time.Second).UnixMilli(), "nominal", 1000,
			"reason", "failure_rate", "replica", "mallory", "probed", 0, "failed", 0)
		raw.Publish(ctx, redisstate.ChannelOf(s), "pay")
	}
	plant()
	waitFor(t, "the planted hold taken", func() bool { return rs[0].set.State("pay") == httpbreaker.StateOpen })
	// A lease planted for ten years takes every probe slot: it is deleted,
	// and the fleet's probes go on.
	raw.HSet(ctx, keys[leases], "mallory/1", now.Add(10*365*24*time.Hour).UnixMilli())
	waitFor(t, "the fleet's probes close the planted hold", func() bool {
		rs[0].call("pay") // traffic: half-open, the replicas ask for leases
		rs[1].call("pay")
		return rs[0].set.State("pay") == httpbreaker.StateClosed && rs[1].set.State("pay") == httpbreaker.StateClosed
	})
	if raw.HExists(ctx, keys[leases], "mallory/1").Val() {
		t.Error("a lease planted for ten years is still there")
	}
	plant()
	if !stays(time.Second, func() bool { return rs[0].set.State("pay") != httpbreaker.StateOpen }) {
		t.Fatal("a hold that lapsed was taken again")
	}
	if code := rs[0].call("pay"); code != 200 {
		t.Fatalf("answered %d with the old hold planted again", code)
	}
}

// TestASyncSentTwiceCountsOnce sends syncs twice, as a client's retry does
// after a reply was lost, and late, as a sync that waited for a connection
// does: a report replaces the replica's last one, never a later one, and a
// lease asked for twice is the same lease.
func TestASyncSentTwiceCountsOnce(t *testing.T) {
	srv := startRedis(t)
	s := newStore(t, srv.client(t))
	ctx := context.Background()
	send := func(replica string, session, seq uint64, ks sharedstate.KeySync) sharedstate.Reply {
		t.Helper()
		ks.Key, ks.Window, ks.MaxHold, ks.Slots, ks.Need = "k", 10*time.Second, 10*time.Second, 1, 1
		ks.TripFailures, ks.Quorum = 1000, 2 // no gathering: only the counts matter here
		sy := &sharedstate.Sync{Replica: replica, Session: session, Seq: seq, Live: time.Minute, Keys: []sharedstate.KeySync{ks}}
		if err := s.Sync(ctx, sy); err != nil || sy.Keys[0].Err != nil {
			t.Fatal(err, sy.Keys[0].Err)
		}
		return sy.Keys[0].Reply
	}
	report := func(s, f uint64) sharedstate.KeySync {
		return sharedstate.KeySync{Report: true, Successes: s, Failures: f, Over: f > s}
	}
	send("a", 1, 1, report(2, 3))
	if rp := send("a", 1, 1, report(2, 3)); rp.Failures != 3 || rp.Successes != 2 || rp.FailingReplicas != 1 {
		t.Fatalf("a report sent twice: %+v, want 3 failures and 2 successes from 1 replica", rp)
	}
	if rp := send("b", 9, 1, report(0, 4)); rp.Failures != 7 || rp.FailingReplicas != 2 {
		t.Fatalf("two replicas' reports: %+v, want 7 failures from 2 replicas", rp)
	}
	if rp := send("a", 1, 3, report(5, 0)); rp.Failures != 4 || rp.Successes != 5 || rp.FailingReplicas != 1 {
		t.Fatalf("a's window without failures: %+v, want b's 4 failures and a's 5 successes", rp)
	}
	if rp := send("a", 1, 2, report(2, 6)); rp.Failures != 4 {
		t.Fatalf("a report that arrived after a later one replaced it: %+v", rp)
	}
	// A replica restarted under its name starts a new session, from 1.
	if rp := send("a", 2, 1, report(0, 1)); rp.Failures != 5 || rp.Successes != 0 || rp.FailingReplicas != 2 {
		t.Fatalf("the report of a new session of a: %+v, want 5 failures from 2 replicas", rp)
	}
	send("a", 2, 2, sharedstate.KeySync{Trip: &sharedstate.Hold{Open: time.Millisecond, Nominal: time.Millisecond,
		Reason: "failure_rate"}})
	time.Sleep(10 * time.Millisecond)
	first := send("a", 2, 3, sharedstate.KeySync{Lease: time.Second})
	again := send("a", 2, 3, sharedstate.KeySync{Lease: time.Second})
	if first.Lease == "" || again.Lease != first.Lease {
		t.Fatalf("a lease request sent twice: %q then %q, want one lease, the same", first.Lease, again.Lease)
	}
}

// TestLostRepliesWithTheClientsRetriesCountOnce runs a replica whose client
// retries as go-redis does by default, through a proxy that loses the
// replies of syncs Redis ran: the fleet's window counts each failure once.
func TestLostRepliesWithTheClientsRetriesCountOnce(t *testing.T) {
	srv := startRedis(t)
	proxy := proxied(t, srv)
	p := fleetPolicy()
	p.MinRequests = 1000 // no trip: only the counts matter here
	up := newUpstream(500)
	c := redis.NewClient(&redis.Options{Addr: proxy.Addr(), ContextTimeoutEnabled: true}) // MaxRetries: 3, the default
	r := replicaOn(t, c, "r1", p, map[string]*upstream{"pay": up})
	waitFor(t, "connected", func() bool { return r.set.FleetStatus().Connected })
	proxy.DropReplies(4)
	for range 5 {
		r.call("pay")
	}
	s := newStore(t, srv.client(t))
	read := syncer(t, s)
	waitFor(t, "the 5 failures in the fleet's window", func() bool {
		return read("observer", sharedstate.KeySync{Key: "pay"}).Failures >= 5
	})
	time.Sleep(500 * time.Millisecond) // more syncs, some of their replies lost
	if f := read("observer", sharedstate.KeySync{Key: "pay"}).Failures; f != 5 {
		t.Fatalf("5 failures counted %d times in the fleet's window", f)
	}
}

func TestARestartedReplicaDoesNotMeetTheQuorumAlone(t *testing.T) {
	t.Parallel() // its own redis-server; it waits on the fleet's clock, beside the others that do
	srv := startRedis(t)
	p := fleetPolicy()
	sick, healthy := newUpstream(500), newUpstream(200)
	first := newReplica(t, srv.Addr(), "sick-1", p, map[string]*upstream{"pay": sick})
	h := newReplica(t, srv.Addr(), "healthy", p, map[string]*upstream{"pay": healthy})
	waitFor(t, "connected", func() bool { return first.set.FleetStatus().Connected && h.set.FleetStatus().Connected })
	for range 15 {
		first.call("pay")
	}
	time.Sleep(300 * time.Millisecond) // its failures are in the fleet's window
	first.stop()
	time.Sleep(2500 * time.Millisecond) // longer than a replica stays live: sick-1 is gone
	second := newReplica(t, srv.Addr(), "sick-2", p, map[string]*upstream{"pay": sick})
	waitFor(t, "connected", func() bool { return second.set.FleetStatus().Connected })
	for range 15 {
		second.call("pay")
	}
	if !stays(time.Second, func() bool { return h.set.State("pay") == httpbreaker.StateClosed }) {
		t.Fatalf("one sick replica, restarted under a new name, opened the key on a healthy one: %v", h.set.State("pay"))
	}
}

func TestLostLiveSetAndHoldFailSafe(t *testing.T) {
	t.Parallel() // its own redis-server; it waits on the fleet's clock, beside the others that do
	srv := startRedis(t)
	raw := srv.client(t)
	ctx := context.Background()
	p := fleetPolicy()
	p.OpenFor, p.MaxOpenFor = 2*time.Second, 4*time.Second
	sick := newUpstream(500)
	rs := fleet(t, srv.Addr(), 3, p, map[string]*upstream{"pay": sick})
	waitFor(t, "three live, seen by all", func() bool {
		return !slices.ContainsFunc(rs, func(r *replica) bool { return r.set.FleetStatus().Replicas != 3 })
	})

	// The live set evicted: a replica does not take itself for the only
	// one, so its failures alone do not meet the quorum.
	raw.Del(ctx, "{httpbreaker}:replicas")
	for range 25 {
		rs[0].call("pay")
	}
	if !stays(500*time.Millisecond, func() bool { return rs[1].set.State("pay") == httpbreaker.StateClosed }) {
		t.Fatalf("with the live set lost, one replica's failures opened the key fleet-wide: %s", states(rs, "pay"))
	}

	// A fleet hold evicted mid-cooldown: every replica keeps it for its
	// own view of the cooldown, no shorter.
	for range 25 {
		rs[1].call("pay")
	}
	waitFor(t, "held fleet-wide", func() bool { return all(rs, "pay", httpbreaker.StateOpen) })
	tripped := time.Now()
	s := newStore(t, raw)
	raw.Del(ctx, redisstate.KeysOf(s, "pay")[hold])
	waitFor(t, "the hold ends", func() bool { return rs[2].set.State("pay") != httpbreaker.StateOpen })
	if d := time.Since(tripped); d < p.OpenFor-300*time.Millisecond {
		t.Fatalf("a hold lost from Redis ended %v into a %v cooldown", d, p.OpenFor)
	}
}

func TestAnEvictingRedisIsNamedOnceAndByCheck(t *testing.T) {
	srv := startRedis(t)
	raw := srv.client(t)
	ctx := context.Background()
	if err := raw.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, raw)
	if err := s.Check(ctx); err == nil || !strings.Contains(err.Error(), "allkeys-lru") || !strings.Contains(err.Error(), "noeviction") {
		t.Fatalf("Check: %v, want the policy named and the fix", err)
	}
	r := newReplica(t, srv.Addr(), "r1", fleetPolicy(), map[string]*upstream{"pay": newUpstream(200)})
	waitFor(t, "the warning", func() bool { return strings.Contains(r.logs.String(), "allkeys-lru") })
	time.Sleep(300 * time.Millisecond)
	if n := strings.Count(r.logs.String(), "allkeys-lru"); n != 1 {
		t.Fatalf("the eviction policy was logged %d times, want once", n)
	}
}

func TestCheckSaysWhatIsWrong(t *testing.T) {
	srv := startRedis(t)
	raw := srv.client(t)
	ctx := context.Background()
	if err := newStore(t, raw).Check(ctx); err != nil {
		t.Fatalf("Check on a good server: %v", err)
	}
	for _, tc := range []struct {
		name string
		opts redis.Options
		want string
	}{
		{"a wrong password", redis.Options{Username: "app", Password: "wrong"}, "password"},
		{"a user that may not publish", redis.Options{Username: "nopub", Password: "secret"}, "PUBLISH"},
		{"no server", redis.Options{Addr: "127.0.0.1:1"}, "did not answer"},
	} {
		raw.Do(ctx, "ACL", "SETUSER", "app", "on", ">right", "~*", "&*", "+@all")
		raw.Do(ctx, "ACL", "SETUSER", "nopub", "on", ">secret", "~*", "&*", "+@all", "-publish")
		opts := tc.opts
		if opts.Addr == "" {
			opts.Addr = srv.Addr()
		}
		opts.MaxRetries = -1
		c := redis.NewClient(&opts)
		err := newStore(t, c).Check(ctx)
		c.Close()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}

func TestAFloodOfAnnouncementsCostsBoundedSyncs(t *testing.T) {
	t.Parallel() // its own redis-server; it waits on the fleet's clock, beside the others that do
	srv := startRedis(t)
	raw := srv.client(t)
	ctx := context.Background()
	r := newReplica(t, srv.Addr(), "r1", fleetPolicy(), map[string]*upstream{"pay": newUpstream(200)})
	waitFor(t, "connected", func() bool { return r.set.FleetStatus().Connected })
	s := newStore(t, raw)
	// The replica's script calls, from Redis's command statistics.
	calls := func() int {
		n := 0
		for _, line := range strings.Split(raw.Info(ctx, "commandstats").Val(), "\n") {
			if !strings.HasPrefix(line, "cmdstat_evalsha:") && !strings.HasPrefix(line, "cmdstat_eval:") {
				continue
			}
			for _, field := range strings.Split(line[strings.Index(line, ":")+1:], ",") {
				if v, ok := strings.CutPrefix(field, "calls="); ok {
					c, _ := strconv.Atoi(v)
					n += c
				}
			}
		}
		return n
	}
	before := calls()
	end := time.Now().Add(time.Second)
	sent := 0
	for time.Now().Before(end) {
		raw.Publish(ctx, redisstate.ChannelOf(s), "pay")
		sent++
	}
	after := calls()
	// At 50ms, an interval's syncs are 20 a second; a wake is heeded at most
	// ten times an interval: 200 a second at the very most, each a
	// heartbeat and a shard's call.
	if n := after - before; n > 2*220 {
		t.Fatalf("%d announcements in a second drove %d script calls", sent, n)
	}
	if sent < 1000 {
		t.Logf("only %d announcements sent in a second", sent)
	}
}

func TestAHoldEndsOnTimeWhileRedisIsDown(t *testing.T) {
	srv := startRedis(t)
	p := fleetPolicy()
	p.OpenFor, p.MaxOpenFor = time.Second, 2*time.Second
	sick := newUpstream(500)
	rs := fleet(t, srv.Addr(), 2, p, map[string]*upstream{"pay": sick})
	waitFor(t, "connected", func() bool { return rs[1].set.FleetStatus().Connected })
	for _, r := range rs {
		for range 15 {
			r.call("pay")
		}
	}
	waitFor(t, "held fleet-wide", func() bool { return all(rs, "pay", httpbreaker.StateOpen) })
	held := time.Now()
	srv.Kill()
	waitFor(t, "the hold's end, with Redis down", func() bool {
		for _, e := range rs[1].hooked() {
			if e.Fleet && e.From == httpbreaker.StateOpen && e.Reason == httpbreaker.ReasonExpiry {
				return true
			}
		}
		return false
	})
	var end httpbreaker.Event
	for _, e := range rs[1].hooked() {
		if e.Fleet && e.Reason == httpbreaker.ReasonExpiry {
			end = e
		}
	}
	if d := end.Time.Sub(held); d < 500*time.Millisecond || d > 2*time.Second {
		t.Errorf("the hold ended %v after it was made, want about its 1s cooldown", d)
	}
	before := len(rs[1].hooked())
	srv.start()
	waitFor(t, "reconnected", func() bool { return rs[1].set.FleetStatus().Connected })
	time.Sleep(500 * time.Millisecond)
	for _, e := range rs[1].hooked()[before:] {
		if e.Fleet {
			t.Errorf("after Redis came back: %s -> %s (%s), a change of a hold that had ended", e.From, e.To, e.Reason)
		}
	}
}

// TestTheFleetOnARedisCluster runs three replicas on a real 3-master Redis
// Cluster, through go-redis's ClusterClient: a fleet-wide trip and a
// ForceOpen reach every replica, whatever the shards' masters.
func TestTheFleetOnARedisCluster(t *testing.T) {
	t.Parallel() // its own redis-server; it waits on the fleet's clock, beside the others that do
	redisserver.RequireInstalled(t)
	cluster, err := redisserver.StartCluster(3, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	p := fleetPolicy()
	ups := map[string]*upstream{}
	keys := []string{"pay", "search", "catalog", "git", "models", "billing"}
	for _, k := range keys {
		ups[k] = newUpstream(200)
	}
	var rs []*replica
	for i := range 3 {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster.Addrs(), ContextTimeoutEnabled: true, MaxRetries: -1})
		rs = append(rs, replicaOn(t, c, "r"+strconv.Itoa(i+1), p, ups))
	}
	waitFor(t, "connected", func() bool { return rs[2].set.FleetStatus().Connected && rs[2].set.FleetStatus().Replicas == 3 })
	for _, k := range keys {
		ups[k].code.Store(500)
	}
	for _, r := range rs[:2] {
		for _, k := range keys {
			for range 15 {
				r.call(k)
			}
		}
	}
	for _, k := range keys {
		waitFor(t, k+" held on every replica", func() bool { return rs[2].set.State(k) == httpbreaker.StateOpen })
	}
	if err := rs[0].set.ForceOpen("models", time.Minute); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the ForceOpen everywhere", func() bool { return all(rs, "models", httpbreaker.StateForcedOpen) })
}

// TestTheFleetThroughASentinelFailover runs replicas through go-redis's
// FailoverClient while the sentinels fail the master over: the replicas
// follow the new master, and a change made after the failover reaches every
// replica within a second, by pub/sub on the new master.
func TestTheFleetThroughASentinelFailover(t *testing.T) {
	redisserver.RequireInstalled(t)
	sentinel, err := redisserver.StartSentinel("fleet")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sentinel.Close)
	p := fleetPolicy()
	ups := map[string]*upstream{"pay": newUpstream(200)}
	var rs []*replica
	for i := range 3 {
		c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: sentinel.MasterName(),
			SentinelAddrs: sentinel.SentinelAddrs(), ContextTimeoutEnabled: true, MaxRetries: -1,
			DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
		// Syncs every 500ms, whole every 25: only pub/sub brings the change
		// within a second.
		rs = append(rs, replicaOn(t, c, "r"+strconv.Itoa(i+1), p, ups, redisstate.WithSyncInterval(500*time.Millisecond)))
	}
	waitFor(t, "connected", func() bool { return rs[2].set.FleetStatus().Replicas == 3 })
	if err := sentinel.Failover(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every replica on the new master", func() bool {
		for _, r := range rs {
			if !r.set.FleetStatus().Connected || r.set.FleetStatus().Replicas != 3 {
				return false
			}
		}
		return true
	})
	time.Sleep(2 * time.Second) // syncs on the new master: the old subscriptions end
	start := time.Now()
	if err := rs[0].set.ForceOpen("pay", time.Minute); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the ForceOpen everywhere", func() bool { return all(rs, "pay", httpbreaker.StateForcedOpen) })
	if d := time.Since(start); d > time.Second {
		t.Errorf("after the failover, a ForceOpen took %v to reach every replica", d)
	}
}

// TestTheACLThatCheckNamesIsEnough runs a fleet as a Redis user granted
// exactly what the NOPERM advice names: Check passes, and a fleet trip
// reaches the other replica.
func TestTheACLThatCheckNamesIsEnough(t *testing.T) {
	srv := startRedis(t)
	raw := srv.client(t)
	ctx := context.Background()
	grant := strings.NewReplacer("<prefix>", "acl").Replace(redisstate.NeededACL)
	args := []any{"ACL", "SETUSER", "fleet", "reset", "on", ">pw"}
	for _, rule := range strings.Fields(grant) {
		args = append(args, rule)
	}
	if err := raw.Do(ctx, args...).Err(); err != nil {
		t.Fatal(err)
	}
	client := func() *redis.Client {
		return redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "fleet", Password: "pw", MaxRetries: -1,
			ContextTimeoutEnabled: true})
	}
	c := client()
	defer c.Close()
	if err := newStore(t, c, redisstate.WithPrefix("acl")).Check(ctx); err != nil {
		t.Fatalf("Check as a user with %s: %v", grant, err)
	}
	sick := newUpstream(500)
	rs := []*replica{
		replicaOn(t, client(), "r1", fleetPolicy(), map[string]*upstream{"pay": sick}, redisstate.WithPrefix("acl")),
		replicaOn(t, client(), "r2", fleetPolicy(), map[string]*upstream{"pay": sick}, redisstate.WithPrefix("acl")),
	}
	waitFor(t, "both live", func() bool { return rs[0].set.FleetStatus().Replicas == 2 && rs[1].set.FleetStatus().Replicas == 2 })
	for range 8 { // 16 failures from two replicas, short of 20 on either: only the fleet trips
		rs[0].call("pay")
		rs[1].call("pay")
	}
	for range 4 {
		rs[0].call("pay")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !all(rs, "pay", httpbreaker.StateOpen) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !all(rs, "pay", httpbreaker.StateOpen) {
		s := newStore(t, raw, redisstate.WithPrefix("acl"))
		k := redisstate.KeysOf(s, "pay")
		t.Logf("no fleet trip: window %v, r1 sent %v, r2 sent %v, states %s", raw.HGetAll(ctx, k[win]).Val(),
			raw.HGetAll(ctx, redisstate.SentKeyOf(s, redisstate.ShardOf("pay"), "r1")).Val(),
			raw.HGetAll(ctx, redisstate.SentKeyOf(s, redisstate.ShardOf("pay"), "r2")).Val(), states(rs, "pay"))
		for _, r := range rs {
			t.Logf("%s: %+v\n%s", r.name, r.set.Snapshot(), r.logs.String())
		}
		t.FailNow()
	}
	for _, r := range rs {
		if strings.Contains(r.logs.String(), "NOPERM") {
			t.Errorf("%s logged a NOPERM:\n%s", r.name, r.logs.String())
		}
	}
}
