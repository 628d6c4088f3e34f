package redisstate_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/httpbreaker/httpbreaker"
	"github.com/httpbreaker/httpbreaker/sharedstate"
)

// fleetPolicy trips on the fleet's window only: 50% of at least 20
// outcomes, a count no single replica reaches in these tests.
func fleetPolicy() httpbreaker.Policy {
	p := httpbreaker.DefaultPolicy()
	p.ConsecutiveFailures = httpbreaker.Off
	p.FailureRate = 0.5
	p.MinRequests = 20
	p.Window = 10 * time.Second
	p.OpenFor = 400 * time.Millisecond
	p.MaxOpenFor = 10 * time.Second
	p.HalfOpenRequests = 1
	p.RecoveryRamp = httpbreaker.Off
	p.Quorum = 2
	return p
}

func TestFleetWindowTripsEveryReplica(t *testing.T) {
	srv := startRedis(t)
	p := fleetPolicy()
	p.OpenFor, p.MaxOpenFor = time.Minute, time.Hour
	up := newUpstream(500)
	rs := fleet(t, srv.Addr(), 3, p, map[string]*upstream{"search": up})
	// 8 failures each: 24 in the fleet, fewer than MinRequests on any one.
	for _, r := range rs {
		for range 8 {
			if code := r.call("search"); code != 500 {
				t.Fatalf("%s: %d before any trip", r.name, code)
			}
		}
	}
	waitFor(t, "every replica open: "+states(rs, "search"), func() bool { return all(rs, "search", httpbreaker.StateOpen) })
	if n := up.calls.Load(); n != 24 {
		t.Errorf("the upstream got %d calls, want 24", n)
	}
	for _, r := range rs {
		if code := r.call("search"); code != 503 {
			t.Errorf("%s answered %d while the fleet holds the key, want 503", r.name, code)
		}
		r.eventWith(t, "search", httpbreaker.ReasonFailureRate)
		evs := r.eventsWith("search", httpbreaker.ReasonFailureRate)
		if len(evs) != 1 || !evs[0].Fleet || evs[0].Replica == "" || evs[0].To != httpbreaker.StateOpen ||
			evs[0].FailingReplicas < 2 || evs[0].Failures < 20 {
			t.Errorf("%s: trip events %+v, want one from the fleet naming its replica and counts", r.name, evs)
		}
		s := r.set.Snapshot()[0]
		if s.FleetHold == nil || s.FleetHold.Reason != httpbreaker.ReasonFailureRate || !s.Rejecting || s.RetryAfter <= 0 {
			t.Errorf("%s: status %+v, want a fleet hold that rejects", r.name, s)
		}
		if f := r.set.FleetStatus(); !f.Shared || !f.Connected || f.Replicas != 3 || f.Replica != r.name {
			t.Errorf("%s: Fleet() = %+v", r.name, f)
		}
	}
	// A replica that starts now holds the key from its first sync.
	late := newReplica(t, srv.Addr(), "late", p, map[string]*upstream{"search": up})
	waitFor(t, "the new replica holds the key", func() bool { return late.set.State("search") == httpbreaker.StateOpen })
	if code := late.call("search"); code != 503 || up.calls.Load() != 24 {
		t.Errorf("the new replica answered %d (upstream calls %d)", code, up.calls.Load())
	}
}

// TestAFleetForceOpenEndsAtOneMomentEverywhere holds that every replica
// holds an operator's ForceOpen for the same time, longer than MaxOpenFor
// if asked, tells clients the same Retry-After, and keeps it while Redis is
// unreachable.
func TestAFleetForceOpenEndsAtOneMomentEverywhere(t *testing.T) {
	srv := startRedis(t)
	p := fleetPolicy()
	p.OpenFor, p.MaxOpenFor = 300*time.Millisecond, 600*time.Millisecond
	rs := fleet(t, srv.Addr(), 3, p, map[string]*upstream{"pay": newUpstream(200)})
	waitFor(t, "connected", func() bool { return rs[2].set.FleetStatus().Connected })
	forced := time.Now()
	if err := rs[0].set.ForceOpen("pay", 3*time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "forced open everywhere", func() bool { return all(rs, "pay", httpbreaker.StateForcedOpen) })
	time.Sleep(time.Second) // past MaxOpenFor: every replica still holds it, and counts down alike
	var left []time.Duration
	for _, r := range rs {
		left = append(left, r.set.Snapshot()[0].RetryAfter)
	}
	if slices.Max(left)-slices.Min(left) > 300*time.Millisecond || slices.Min(left) < time.Second {
		t.Fatalf("a second in, the replicas say %v left; want about 2s, alike", left)
	}
	srv.Pause() // cut off: r3 keeps the operator's intent
	time.Sleep(500 * time.Millisecond)
	if st := rs[2].set.State("pay"); st != httpbreaker.StateForcedOpen {
		t.Fatalf("cut off from Redis, r3 is %v, want forced_open until the ForceOpen ends", st)
	}
	srv.Resume()
	waitFor(t, "released everywhere", func() bool { return all(rs, "pay", httpbreaker.StateClosed) })
	if d := time.Since(forced); d < 3*time.Second-100*time.Millisecond {
		t.Errorf("released %v after a 3s ForceOpen", d)
	}
	for _, r := range rs {
		// The hook runs on the set's notifier, a moment after the state.
		var end httpbreaker.Event
		waitFor(t, r.name+" hooked the end of the ForceOpen", func() bool {
			for _, e := range r.hooked() {
				if e.From == httpbreaker.StateForcedOpen {
					end = e
					return true
				}
			}
			return false
		})
		if d := end.Time.Sub(forced); end.Reason != httpbreaker.ReasonExpiry || d < 2900*time.Millisecond || d > 3300*time.Millisecond {
			t.Errorf("%s: the ForceOpen ended %v after it began, reason %v; want its expiry at 3s", r.name, d, end.Reason)
		}
	}
}

func TestFleetQuorumKeepsOneReplicaFromTrippingTheFleet(t *testing.T) {
	srv := startRedis(t)
	bad, good := newUpstream(500), newUpstream(200)
	rs := fleet(t, srv.Addr(), 3, fleetPolicy(), map[string]*upstream{"bad": bad, "good": good})
	// One replica's failures (say, its own network is broken) are 19 of
	// 29 in the fleet's window: over the rate and over MinRequests, but
	// from one replica, short of the quorum of 2.
	for range 19 {
		rs[0].call("bad")
	}
	bad.code.Store(200)
	for range 5 {
		rs[1].call("bad")
		rs[2].call("bad")
	}
	// Time for many syncs, with the last outcomes in the window too.
	waitFor(t, "the window synced", func() bool { return rs[0].set.FleetStatus().Connected })
	time.Sleep(500 * time.Millisecond)
	if !all(rs, "bad", httpbreaker.StateClosed) {
		t.Fatalf("a fleet trip from one replica's failures: %s", states(rs, "bad"))
	}
	// A second failing replica makes the quorum.
	bad.code.Store(500)
	for range 10 {
		rs[1].call("bad")
	}
	waitFor(t, "every replica open: "+states(rs, "bad"), func() bool { return all(rs, "bad", httpbreaker.StateOpen) })
}

func TestConsecutiveFailuresTripOnlyTheirReplica(t *testing.T) {
	srv := startRedis(t)
	p := fleetPolicy()
	p.FailureRate, p.ConsecutiveFailures = httpbreaker.Off, 3
	p.OpenFor, p.MaxOpenFor = time.Minute, time.Hour
	rs := fleet(t, srv.Addr(), 3, p, map[string]*upstream{"search": newUpstream(500)})
	waitFor(t, "connected", func() bool { return all(rs, "search", httpbreaker.StateClosed) && rs[2].set.FleetStatus().Connected })
	// Two replicas see 3 failures in a row each: 6 in the fleet, from a
	// quorum, and still a local condition of each.
	for _, r := range rs[:2] {
		for range 3 {
			r.call("search")
		}
		if st := r.set.State("search"); st != httpbreaker.StateOpen {
			t.Fatalf("%s is %v after 3 failures in a row", r.name, st)
		}
	}
	time.Sleep(500 * time.Millisecond) // many syncs
	if st := rs[2].set.State("search"); st != httpbreaker.StateClosed {
		t.Errorf("a local trip reached the third replica: %v", st)
	}
}

func TestFleetProbesTogether(t *testing.T) {
	t.Parallel() // its own redis-server; it waits on the fleet's clock, beside the others that do
	srv := startRedis(t)
	up := newUpstream(500)
	rs := fleet(t, srv.Addr(), 3, fleetPolicy(), map[string]*upstream{"search": up})
	for _, r := range rs {
		for range 8 {
			r.call("search")
		}
	}
	waitFor(t, "every replica open", func() bool { return all(rs, "search", httpbreaker.StateOpen) })

	// Every replica keeps asking while the upstream still fails: the fleet
	// admits one probe in all (HalfOpenRequests), whose failure opens the
	// key again everywhere, for at least 640ms (twice OpenFor, less a fifth
	// of jitter).
	before := up.calls.Load()
	// drive sends a request to every replica, until until holds.
	drive := func(until func() bool) {
		for {
			for _, r := range rs {
				r.call("search")
			}
			if until() {
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	waitFor(t, "a probe", func() bool { drive(func() bool { return true }); return up.calls.Load() > before })
	probed := time.Now()
	drive(func() bool { return time.Since(probed) > 400*time.Millisecond })
	if n := up.calls.Load() - before; n != 1 {
		t.Fatalf("the fleet sent %d probes in one half-open round, want 1", n)
	}
	for _, r := range rs {
		if e := r.eventWith(t, "search", httpbreaker.ReasonProbeFailed); !e.Fleet {
			t.Errorf("%s: no fleet reopening after the failed probe", r.name)
		}
		if st := r.set.State("search"); st != httpbreaker.StateOpen {
			t.Errorf("%s is %v after the failed probe, want open", r.name, st)
		}
	}

	// The upstream recovers: one successful probe closes the key on every
	// replica.
	up.code.Store(200)
	before = up.calls.Load()
	waitFor(t, "every replica closed: "+states(rs, "search"), func() bool {
		drive(func() bool { return true })
		return all(rs, "search", httpbreaker.StateClosed)
	})
	for _, r := range rs {
		r.eventWith(t, "search", httpbreaker.ReasonProbesSucceeded)
		evs := r.eventsWith("search", httpbreaker.ReasonProbesSucceeded)
		if len(evs) != 1 || !evs[0].Fleet || evs[0].To != httpbreaker.StateClosed {
			t.Errorf("%s: recovery events %+v, want one from the fleet", r.name, evs)
		}
	}
}

func TestFleetManualControl(t *testing.T) {
	srv := startRedis(t)
	up := newUpstream(200)
	ups := map[string]*upstream{"billing": up}
	rs := fleet(t, srv.Addr(), 3, fleetPolicy(), ups)
	waitFor(t, "connected", func() bool { return rs[2].set.FleetStatus().Connected })

	if err := rs[0].set.ForceOpen("billing", 0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, "forced open everywhere: "+states(rs, "billing"), func() bool { return all(rs, "billing", httpbreaker.StateForcedOpen) })
	t.Logf("ForceOpen reached every replica in %v", time.Since(start))
	if code := rs[2].call("billing"); code != 503 {
		t.Errorf("a replica forced open by the fleet answered %d", code)
	}
	if e := rs[1].eventWith(t, "billing", httpbreaker.ReasonForceOpen); !e.Fleet || e.Replica != "r1" {
		t.Errorf("r2's force_open event: %+v", e)
	}

	// A replica that starts now starts forced open.
	late := newReplica(t, srv.Addr(), "late", fleetPolicy(), ups)
	waitFor(t, "the new replica forced open", func() bool { return late.set.State("billing") == httpbreaker.StateForcedOpen })

	// Release through r2's status page, as an operator would.
	page := httptest.NewServer(rs[1].set.StatusHandler(httpbreaker.AllowControl(func(*http.Request) bool { return true })))
	defer page.Close()
	resp, err := http.PostForm(page.URL, url.Values{"key": {"billing"}, "action": {"release"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		t.Fatalf("the status page's release answered %d", resp.StatusCode)
	}
	rs = append(rs, late)
	waitFor(t, "released everywhere: "+states(rs, "billing"), func() bool { return all(rs, "billing", httpbreaker.StateClosed) })

	if err := rs[2].set.ForceClose("billing"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "forced closed everywhere", func() bool { return all(rs, "billing", httpbreaker.StateForcedClosed) })
	if err := rs[0].set.Reset("billing"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "reset everywhere", func() bool { return all(rs, "billing", httpbreaker.StateClosed) })
	for _, r := range rs[1:] {
		if e := r.eventWith(t, "billing", httpbreaker.ReasonReset); !e.Fleet {
			t.Errorf("%s: reset event %+v", r.name, e)
		}
	}
}

func TestFleetWithoutRedisEveryRequestStaysLocal(t *testing.T) {
	t.Parallel() // its own redis-server; it waits on the fleet's clock, beside the others that do
	srv := startRedis(t)
	p := fleetPolicy()
	p.ConsecutiveFailures = 5
	ok, bad := newUpstream(200), newUpstream(500)
	rs := fleet(t, srv.Addr(), 2, p, map[string]*upstream{"ok": ok, "bad": bad})
	waitFor(t, "connected", func() bool { return rs[0].set.FleetStatus().Connected && rs[1].set.FleetStatus().Connected })

	for _, fault := range []struct {
		name     string
		do, undo func()
	}{
		{"paused", srv.Pause, srv.Resume},
		{"killed", srv.Kill, srv.start},
	} {
		fault.do()
		waitFor(t, "the replicas see the store "+fault.name, func() bool {
			rs[0].call("ok")
			return !rs[0].set.FleetStatus().Connected && !rs[1].set.FleetStatus().Connected
		})
		// No request waits on Redis and none fails: each finishes (a
		// request stuck on Redis would hang here) and succeeds.
		for i := range 200 {
			for _, r := range rs {
				if code := r.call("ok"); code != 200 {
					t.Fatalf("Redis %s: request %d on %s answered %d", fault.name, i, r.name, code)
				}
			}
		}
		// The breakers work alone: a local trip.
		for range 5 {
			rs[0].call("bad")
		}
		if st := rs[0].set.State("bad"); st != httpbreaker.StateOpen {
			t.Fatalf("Redis %s: the local breaker is %v after 5 failures in a row, want open", fault.name, st)
		}
		if st := rs[1].set.State("bad"); st != httpbreaker.StateClosed {
			t.Fatalf("Redis %s: a local trip reached the other replica (%v)", fault.name, st)
		}
		fault.undo()
		waitFor(t, "the replicas rejoin after Redis "+fault.name, func() bool {
			return rs[0].set.FleetStatus().Connected && rs[1].set.FleetStatus().Connected
		})
		for _, r := range rs {
			_ = r.set.Reset("bad")
		}
	}

	// Redis came back empty: the fleet builds its state again.
	for _, r := range rs {
		for range 4 { // short of the local 5 in a row
			r.call("bad")
		}
		for range 2 {
			r.call("ok")
		}
	}
	waitFor(t, "a fleet trip after Redis restarted empty: "+states(rs, "bad"), func() bool {
		for _, r := range rs {
			r.call("bad")
		}
		return all(rs, "bad", httpbreaker.StateOpen)
	})
}

// TestTheFleetGathersAKeyOnlyWhenATripIsPossible drives the store as
// replicas a, b, c and d would, and holds when it gathers a key: only with
// enough failures, from enough live replicas, one of them over the rate on
// its own; complete once every live replica has reported, a replica with
// no breaker for the key included; over once the trip is no longer
// possible; and never on the report of a replica that is no longer live.
func TestTheFleetGathersAKeyOnlyWhenATripIsPossible(t *testing.T) {
	srv := startRedis(t)
	s := newStore(t, srv.client(t))
	sync := syncer(t, s)
	beat := func(replicas ...string) {
		t.Helper()
		for _, r := range replicas {
			if err := s.Sync(context.Background(), &sharedstate.Sync{Replica: r, Live: time.Second}); err != nil {
				t.Fatal(err)
			}
		}
	}
	report := func(replica string, succ, fail uint64) sharedstate.Reply {
		t.Helper()
		return sync(replica, sharedstate.KeySync{Report: true, Successes: succ, Failures: fail,
			Over: fail > 0 && 2*fail >= succ+fail, TripFailures: 10, Quorum: 2})
	}
	beat("a", "b", "c")
	report("a", 10, 6)
	if rp := report("b", 10, 6); rp.Gathering || rp.Failures != 12 || rp.FailingReplicas != 2 {
		t.Fatalf("12 failures from 2 replicas, neither at the rate alone: %+v, want no gathering", rp)
	}
	if rp := report("b", 0, 6); !rp.Gathering || rp.Complete {
		t.Fatalf("b at the rate alone: %+v, want a gathering, c's report still due", rp)
	}
	// c has no breaker for the key: its empty report completes the gathering.
	rp := sync("c", sharedstate.KeySync{Report: true})
	if !rp.Gathering || !rp.Complete || rp.Failures != 12 || rp.Successes != 10 || rp.FailingReplicas != 2 {
		t.Fatalf("every live replica reported: %+v, want a whole window of 12 failures, 10 successes, 2 failing", rp)
	}
	if rp := report("a", 10, 0); rp.Gathering {
		t.Fatalf("a's failures gone, a trip is no longer possible: %+v, want the gathering over", rp)
	}

	// d reports failures, then is no longer live: its report is dropped
	// when the reports are summed again, and trips nothing.
	report("d", 0, 9)
	time.Sleep(1200 * time.Millisecond) // longer than a replica stays live here
	beat("a", "b", "c")
	if rp := report("b", 0, 6); rp.Gathering || rp.Failures != 6 || rp.FailingReplicas != 1 {
		t.Fatalf("with d gone: %+v, want b's 6 failures alone, no gathering", rp)
	}
}
