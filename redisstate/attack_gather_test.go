package redisstate_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/httpbreaker/httpbreaker"
	"github.com/httpbreaker/httpbreaker/redisstate"
	"github.com/httpbreaker/httpbreaker/sharedstate"
	"github.com/redis/go-redis/v9"
)

// Attacks on the fleet's reports and gatherings: what a partition, a
// restart, a lost record or a careless operator does to a key in trouble
// while the fleet decides whether to trip it.

// reportOf returns the replica's report of key as the store keeps it in the
// key's window ("<session> <seq> <at> <successes> <failures> <over>"), or
// "" if there is none.
func reportOf(t *testing.T, srv *redisServer, key, replica string) string {
	t.Helper()
	raw := srv.client(t)
	s := newStore(t, raw)
	return raw.HGet(context.Background(), redisstate.KeysOf(s, key)[win], "r:"+replica).Val()
}

// reportedFailures returns the failures of the replica's report of key, as
// the store keeps it, or "" if there is none.
func reportedFailures(t *testing.T, srv *redisServer, key, replica string) string {
	f := strings.Fields(reportOf(t, srv, key, replica))
	if len(f) != 6 {
		return ""
	}
	return f[4]
}

// TestAttackFailuresMadeWhileCutOffReachTheFleet: docs/fleet.md, "When Redis
// is gone": "Outcomes counted while cut off reach the fleet when it is
// back, as far as they are still in the replica's own window". Replica a,
// whose window of the key held no failures, is cut off and fails 15 times
// (over the rate, short of MinRequests alone); the partition heals; b fails
// 8 times: 23 failures from 2 replicas, over 20 at 50%, trip the fleet, and
// c, which saw no failure, is held.
func TestAttackFailuresMadeWhileCutOffReachTheFleet(t *testing.T) {
	t.Parallel() // its own redis-server; it waits on the fleet's clock, beside the others that do
	srv := startRedis(t)
	proxy := proxied(t, srv)
	p := fleetPolicy()
	sick := newUpstream(500)
	ups := map[string]*upstream{"pay": sick}
	a := newReplica(t, proxy.Addr(), "a", p, ups)
	others := fleet(t, srv.Addr(), 2, p, ups)
	b, c := others[0], others[1]
	waitFor(t, "three live", func() bool {
		return a.set.FleetStatus().Replicas == 3 && c.set.FleetStatus().Replicas == 3
	})

	proxy.Cut()
	for range 15 {
		a.call("pay")
	}
	waitFor(t, "a cut off", func() bool { return !a.set.FleetStatus().Connected })
	// A sync that began after the failures has failed too: the first fails
	// after five intervals or two seconds, the next after as long again.
	time.Sleep(3 * time.Second)
	proxy.Heal()
	waitFor(t, "a back", func() bool { return a.set.FleetStatus().Connected })
	waitFor(t, "a's 15 failures in the fleet's window (a's report: "+reportOf(t, srv, "pay", "a")+")", func() bool {
		return reportedFailures(t, srv, "pay", "a") == "15"
	})

	for range 8 {
		b.call("pay")
	}
	waitFor(t, "c held by the fleet: "+states([]*replica{a, b, c}, "pay"), func() bool {
		return c.set.State("pay") == httpbreaker.StateOpen
	})
}

// TestAttackEveryKeyWithFailuresIsReportedPastASyncsLimit: docs/design/fleet.md,
// "Full syncs, and new keys": "a sync carries at most 1024 keys for reports
// and reads (the rest wait for the next)". A replica whose 1100 keys each
// fail once while a sync hangs (Redis cut off) has 1100 reports to make
// when the partition heals: the 76 past the limit wait for the next sync,
// and are not forgotten.
func TestAttackEveryKeyWithFailuresIsReportedPastASyncsLimit(t *testing.T) {
	t.Parallel() // its own redis-server; it waits on the fleet's clock, beside the others that do
	srv := startRedis(t)
	proxy := proxied(t, srv)
	p := fleetPolicy()
	up := newUpstream(200)
	const n = 1100
	ups := map[string]*upstream{}
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
		ups[keys[i]] = up
	}
	r := newReplica(t, proxy.Addr(), "r1", p, ups)
	waitFor(t, "connected", func() bool { return r.set.FleetStatus().Connected })
	for _, k := range keys {
		r.call(k) // a success: every key known, none with news
	}
	time.Sleep(time.Second) // the new keys read

	proxy.Cut()
	time.Sleep(200 * time.Millisecond) // a sync hangs, for up to two seconds
	up.code.Store(500)
	start := time.Now()
	for _, k := range keys {
		r.call(k)
	}
	if d := time.Since(start); d > time.Second {
		t.Logf("the failures took %v: a sync may have carried some of them before the partition healed", d)
	}
	proxy.Heal()
	waitFor(t, "reconnected", func() bool { return r.set.FleetStatus().Connected })

	raw := srv.client(t)
	s := newStore(t, raw)
	missing := func() []string {
		pipe := raw.Pipeline()
		cmds := make([]*redis.StringCmd, n)
		for i, k := range keys {
			cmds[i] = pipe.HGet(context.Background(), redisstate.KeysOf(s, k)[win], "r:r1")
		}
		_, _ = pipe.Exec(context.Background())
		var out []string
		for i, c := range cmds {
			if f := strings.Fields(c.Val()); len(f) != 6 || f[4] != "1" {
				out = append(out, keys[i])
			}
		}
		return out
	}
	var left []string
	deadline := time.Now().Add(5 * time.Second) // within the window: the failures still count
	for left = missing(); len(left) > 0 && time.Now().Before(deadline); left = missing() {
		time.Sleep(50 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Fatalf("%d of %d keys' failures never reached the fleet, e.g. %v", len(left), n, left[:min(len(left), 5)])
	}
}

// TestAttackABadHoldDoesNotStopAKillSwitch: docs/fleet.md, "What a replica
// trusts": bad data "is logged once per kind and ignored"; "Manual control
// in a fleet": a ForceOpen reaches every other replica within a sync. A
// hold with a reason of no known kind, planted by hand, is ignored; an
// operator's ForceOpen made while it is there still reaches every replica.
func TestAttackABadHoldDoesNotStopAKillSwitch(t *testing.T) {
	t.Parallel() // its own redis-server; it waits on the fleet's clock, beside the others that do
	srv := startRedis(t)
	raw := srv.client(t)
	ctx := context.Background()
	s := newStore(t, raw)
	rs := fleet(t, srv.Addr(), 3, fleetPolicy(), map[string]*upstream{"pay": newUpstream(200)})
	waitFor(t, "three live", func() bool { return rs[2].set.FleetStatus().Replicas == 3 })
	now, _ := raw.Time(ctx).Result()
	raw.HSet(ctx, redisstate.KeysOf(s, "pay")[hold], "phase", "open", "gen", now.UnixMicro(), "until", now.Add(time.Second).UnixMilli(),
		"nominal", 1000, "reason", "<script>", "replica", "mallory", "probed", 0, "failed", 0)
	raw.Publish(ctx, redisstate.ChannelOf(s), "pay")
	waitFor(t, "the bad hold seen", func() bool { return strings.Contains(rs[2].logs.String(), "<script>") })
	if err := rs[0].set.ForceOpen("pay", 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the kill switch on every replica", func() bool { return all(rs, "pay", httpbreaker.StateForcedOpen) })
}

// TestAttackABadCommandDoesNotStopTheFleetsTrips: as above, for a command
// record whose author is not a short string: the fleet's trip still holds
// every replica, the one that saw no failure included.
func TestAttackABadCommandDoesNotStopTheFleetsTrips(t *testing.T) {
	t.Parallel() // its own redis-server; it waits on the fleet's clock, beside the others that do
	srv := startRedis(t)
	raw := srv.client(t)
	ctx := context.Background()
	s := newStore(t, raw)
	sick := newUpstream(500)
	rs := fleet(t, srv.Addr(), 3, fleetPolicy(), map[string]*upstream{"pay": sick})
	waitFor(t, "three live", func() bool { return rs[2].set.FleetStatus().Replicas == 3 })
	raw.HSet(ctx, redisstate.KeysOf(s, "pay")[cmd], "at", 1, "kind", "release", "for", 0,
		"by", strings.Repeat("x", 300), "replica", "mallory")
	for range 2 {
		for _, r := range rs[:2] {
			for range 8 {
				r.call("pay")
			}
		}
	}
	waitFor(t, "the fleet's hold on every replica", func() bool { return all(rs, "pay", httpbreaker.StateOpen) })
}

// winField returns a field of key's window record in Redis: "F", the
// fleet's running sum of failures, "N", the reports with failures.
func winField(t *testing.T, srv *redisServer, key, field string) string {
	t.Helper()
	raw := srv.client(t)
	return raw.HGet(context.Background(), redisstate.KeysOf(newStore(t, raw), key)[win], field).Val()
}

// TestAttackAGatheringDoesNotWaitForACutOffReplica: docs/design/fleet.md,
// "Gathering": the fleet trips once every live replica has reported "(or
// three intervals have passed)". Replica a is cut off, still live for two
// seconds; b and c fail 12 times each (24 of at least 20, from 2
// replicas): the fleet trips b and c without a's report, and a takes the
// hold once the partition heals.
func TestAttackAGatheringDoesNotWaitForACutOffReplica(t *testing.T) {
	t.Parallel() // its own redis-server; it waits on the fleet's clock, beside the others that do
	srv := startRedis(t)
	proxy := proxied(t, srv)
	p := fleetPolicy()
	p.OpenFor, p.MaxOpenFor = 5*time.Second, 10*time.Second
	sick := newUpstream(500)
	ups := map[string]*upstream{"pay": sick}
	a := newReplica(t, proxy.Addr(), "a", p, ups)
	others := fleet(t, srv.Addr(), 2, p, ups)
	waitFor(t, "three live", func() bool {
		return a.set.FleetStatus().Replicas == 3 && others[1].set.FleetStatus().Replicas == 3
	})
	proxy.Cut()
	for _, r := range others {
		for range 12 {
			r.call("pay")
		}
	}
	waitFor(t, "b and c held by the fleet", func() bool { return all(others, "pay", httpbreaker.StateOpen) })
	if a.set.State("pay") != httpbreaker.StateClosed {
		t.Fatalf("a, cut off and without failures, is %v", a.set.State("pay"))
	}
	proxy.Heal()
	waitFor(t, "a takes the fleet's hold", func() bool { return a.set.State("pay") == httpbreaker.StateOpen })
}

// TestAttackAReplicaBackFromAPartitionCountsOnce: docs/fleet.md: a Redis
// or a replica that comes back "counts nothing twice". a reports 5
// failures, is cut off, fails 5 more times, and comes back: the fleet's
// window holds a's 10 failures once.
func TestAttackAReplicaBackFromAPartitionCountsOnce(t *testing.T) {
	t.Parallel() // its own redis-server; it waits on the fleet's clock, beside the others that do
	srv := startRedis(t)
	proxy := proxied(t, srv)
	p := fleetPolicy()
	sick := newUpstream(500)
	a := newReplica(t, proxy.Addr(), "a", p, map[string]*upstream{"pay": sick})
	waitFor(t, "connected", func() bool { return a.set.FleetStatus().Connected })
	for range 5 {
		a.call("pay")
	}
	waitFor(t, "a's 5 failures reported", func() bool { return reportedFailures(t, srv, "pay", "a") == "5" })
	proxy.Cut()
	for range 5 {
		a.call("pay")
	}
	waitFor(t, "a cut off", func() bool { return !a.set.FleetStatus().Connected })
	proxy.Heal()
	waitFor(t, "a's 10 failures reported", func() bool { return reportedFailures(t, srv, "pay", "a") == "10" })
	time.Sleep(500 * time.Millisecond) // more syncs, a full one among them
	if f, n := winField(t, srv, "pay", "F"), winField(t, srv, "pay", "N"); f != "10" || n != "1" {
		t.Fatalf("the fleet's window after a partition: %s failures from %s replicas, want 10 from 1", f, n)
	}
}

// TestAttackAReplicaRestartedUnderItsNameCountsOnce: docs/design/fleet.md:
// a report an earlier breaker of the key left "is replaced at the next
// change". a reports 8 failures, restarts under its name (a new session)
// and fails 3 times: the fleet's window holds 3 failures from 1 replica;
// then b and c fail, and the restarted a is held with them.
func TestAttackAReplicaRestartedUnderItsNameCountsOnce(t *testing.T) {
	t.Parallel() // its own redis-server; it waits on the fleet's clock, beside the others that do
	srv := startRedis(t)
	p := fleetPolicy()
	sick := newUpstream(500)
	ups := map[string]*upstream{"pay": sick}
	a := newReplica(t, srv.Addr(), "a", p, ups)
	others := fleet(t, srv.Addr(), 2, p, ups)
	waitFor(t, "three live", func() bool { return a.set.FleetStatus().Replicas == 3 })
	for range 8 {
		a.call("pay")
	}
	waitFor(t, "a's 8 failures reported", func() bool { return reportedFailures(t, srv, "pay", "a") == "8" })
	a.stop()
	a = newReplica(t, srv.Addr(), "a", p, ups)
	waitFor(t, "a back", func() bool { return a.set.FleetStatus().Connected })
	for range 3 {
		a.call("pay")
	}
	waitFor(t, "the new a's 3 failures reported", func() bool { return reportedFailures(t, srv, "pay", "a") == "3" })
	if f, n := winField(t, srv, "pay", "F"), winField(t, srv, "pay", "N"); f != "3" || n != "1" {
		t.Fatalf("the fleet's window after a restart: %s failures from %s replicas, want 3 from 1", f, n)
	}
	for _, r := range others {
		for range 9 {
			r.call("pay")
		}
	}
	rs := append([]*replica{a}, others...)
	waitFor(t, "every replica held by the fleet", func() bool { return all(rs, "pay", httpbreaker.StateOpen) })
}

// TestAttackAQuorumFollowsTheLiveReplicas: docs/fleet.md, "What is
// shared": failures must come from Quorum replicas, "capped by the live
// replicas". With Quorum 5 and three replicas, failures from all three
// trip the fleet; with Quorum 3, once one of three replicas has stopped,
// failures from the two left trip it.
func TestAttackAQuorumFollowsTheLiveReplicas(t *testing.T) {
	t.Parallel() // its own redis-server; it waits on the fleet's clock, beside the others that do
	srv := startRedis(t)
	p := fleetPolicy()
	p.Quorum = 5
	ups := map[string]*upstream{"pay": newUpstream(500), "search": newUpstream(500)}
	rs := fleet(t, srv.Addr(), 3, p, ups)
	waitFor(t, "three live", func() bool { return rs[2].set.FleetStatus().Replicas == 3 })
	for _, r := range rs {
		for range 8 {
			r.call("pay")
		}
	}
	waitFor(t, "Quorum 5 of 3 live: every replica held", func() bool { return all(rs, "pay", httpbreaker.StateOpen) })

	rs[0].stop()
	for _, r := range rs[1:] {
		for range 12 {
			r.call("search")
		}
	}
	waitFor(t, "Quorum 5 of 2 live: both held", func() bool { return all(rs[1:], "search", httpbreaker.StateOpen) })
}

// TestAttackAGatheringDoesNotWaitForAReplicaThatNeverReports: as above, for
// a replica that stays live (its heartbeats go on) but never hears the
// gathering's announcement and never reports: a lost subscription, a hung
// loop. The fleet trips after three intervals without it.
func TestAttackAGatheringDoesNotWaitForAReplicaThatNeverReports(t *testing.T) {
	t.Parallel() // its own redis-server; it waits on the fleet's clock, beside the others that do
	srv := startRedis(t)
	s := newStore(t, srv.client(t))
	ctx, cancel := context.WithCancel(context.Background())
	beating := make(chan struct{})
	go func() {
		defer close(beating)
		for seq := uint64(1); ctx.Err() == nil; seq++ {
			_ = s.Sync(ctx, &sharedstate.Sync{Replica: "ghost", Session: 7, Seq: seq, Live: 2 * time.Second})
			time.Sleep(100 * time.Millisecond)
		}
	}()
	defer func() { cancel(); <-beating }()
	p := fleetPolicy()
	rs := fleet(t, srv.Addr(), 2, p, map[string]*upstream{"pay": newUpstream(500)})
	waitFor(t, "three live, the ghost among them", func() bool {
		return rs[0].set.FleetStatus().Replicas == 3 && rs[1].set.FleetStatus().Replicas == 3
	})
	for _, r := range rs {
		for range 12 {
			r.call("pay")
		}
	}
	waitFor(t, "both held by the fleet", func() bool { return all(rs, "pay", httpbreaker.StateOpen) })
}

// commandCalls returns how many times Redis ran cmd, from INFO
// commandstats, which counts the commands scripts call too.
func commandCalls(t *testing.T, raw *redis.Client, cmd string) int {
	t.Helper()
	for _, line := range strings.Split(raw.Info(context.Background(), "commandstats").Val(), "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":")
		if !ok {
			continue
		}
		for _, field := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(field, "calls="); ok {
				n, _ := strconv.Atoi(v)
				return n
			}
		}
	}
	return 0
}

// TestAttackAKeyThatOnlySucceedsCostsNoKeySyncs: docs/fleet.md, "No request
// waits on Redis": "A key that only succeeds has no news: it costs Redis
// nothing." Three replicas serve 600 successful requests of a key they
// have synced once, over more than a full sync's worth of syncs: the sync
// script runs for the key not once (it calls EXISTS once per key it
// syncs, and nothing else does).
func TestAttackAKeyThatOnlySucceedsCostsNoKeySyncs(t *testing.T) {
	t.Parallel() // its own redis-server; it waits on the fleet's clock, beside the others that do
	srv := startRedis(t)
	raw := srv.client(t)
	rs := fleet(t, srv.Addr(), 3, fleetPolicy(), map[string]*upstream{"ok": newUpstream(200)})
	waitFor(t, "three live", func() bool { return rs[2].set.FleetStatus().Replicas == 3 })
	for _, r := range rs {
		r.call("ok") // the new key is read once
	}
	time.Sleep(500 * time.Millisecond)
	before := commandCalls(t, raw, "exists")
	evals := commandCalls(t, raw, "evalsha")
	for range 200 {
		for _, r := range rs {
			if code := r.call("ok"); code != 200 {
				t.Fatalf("answered %d", code)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second) // 20 syncs each at least, a full one among them
	if n := commandCalls(t, raw, "exists") - before; n != 0 {
		t.Fatalf("a key that only succeeds was synced %d times", n)
	}
	if n := commandCalls(t, raw, "evalsha") - evals; n < 3*25 {
		t.Fatalf("only %d script calls in the measurement: the replicas did not sync", n)
	}
}

// TestAttackAGatheringLostMidWayIsRebuilt: docs/fleet.md: a Redis that lost
// its data "is rebuilt by the replicas' next reports of their windows, and
// counts nothing twice". a fails at the rate alone, b has a trickle among
// many successes: the fleet gathers the key and stays under the rate. Its
// records are lost (the window and the index deleted, as an eviction does;
// then a FLUSHALL); c then fails 9 times (21 failures in 40: over the
// rate), and every replica is held: the failures a and b reported before
// the loss count again, once.
func TestAttackAGatheringLostMidWayIsRebuilt(t *testing.T) {
	t.Parallel() // its own redis-server; it waits on the fleet's clock, beside the others that do
	for _, loss := range []string{"evicted", "flushall"} {
		t.Run(loss, func(t *testing.T) {
			srv := startRedis(t)
			raw := srv.client(t)
			ctx := context.Background()
			s := newStore(t, raw)
			p := fleetPolicy()
			up := newUpstream(200)
			rs := fleet(t, srv.Addr(), 3, p, map[string]*upstream{"pay": up})
			waitFor(t, "three live", func() bool { return rs[2].set.FleetStatus().Replicas == 3 })
			for range 19 {
				rs[1].call("pay")
			}
			up.code.Store(500)
			for range 2 {
				rs[1].call("pay")
			}
			for range 10 {
				rs[0].call("pay")
			}
			waitFor(t, "the fleet gathers the key", func() bool { return winField(t, srv, "pay", "g") != "" })
			time.Sleep(200 * time.Millisecond)
			if st := rs[2].set.State("pay"); st != httpbreaker.StateClosed {
				t.Fatalf("12 failures in 31 tripped the fleet: %v", st)
			}
			if loss == "flushall" {
				raw.FlushAll(ctx)
			} else {
				raw.Del(ctx, redisstate.KeysOf(s, "pay")[win], redisstate.IndexOf(s, redisstate.ShardOf("pay")))
			}
			for range 9 {
				rs[2].call("pay")
			}
			waitFor(t, "every replica held", func() bool { return all(rs, "pay", httpbreaker.StateOpen) })
			// The fleet trips once its window reaches the rate, which may be
			// before c's last failures are reported (a sync in the middle of
			// c's nine): 19 failures in 38 is 50%. Fewer than 19 would mean
			// a's or b's reports were lost with the data; more than 21, or
			// other than b's 19 successes, that something counted twice.
			for _, e := range rs[2].eventsWith("pay", httpbreaker.ReasonFailureRate) {
				if !e.Fleet || e.Failures < 19 || e.Failures > 21 || e.Successes != 19 || e.FailingReplicas != 3 {
					t.Errorf("the trip: fleet %v, %d failures and %d successes from %d replicas, want the fleet's 19 to 21 and 19 from 3",
						e.Fleet, e.Failures, e.Successes, e.FailingReplicas)
				}
			}
		})
	}
}
