package httpbreaker

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/httpbreaker/httpbreaker/sharedstate"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestFleetHoldFromTheStore(t *testing.T) {
	store := newFakeStore()
	reg := prometheus.NewRegistry()
	b, sink := newSet(t, WithSharedState(store), WithReplica("r1"), WithRegisterer(reg),
		WithPolicy(Policy{OpenFor: time.Minute, MaxOpenFor: 2 * time.Minute}))
	defer b.Close()
	up := newStatusHandler(200)
	h := b.Middleware("search")(up)
	waitFor(t, "connected", func() bool { return b.FleetStatus().Connected })

	store.set("search", sharedstate.Reply{Hold: &sharedstate.Hold{Generation: 1, Open: time.Hour, Nominal: time.Hour,
		Reason: "failure_rate", Replica: "r2", Failures: 30, Successes: 10, FailingReplicas: 2}})
	waitFor(t, "the fleet's hold", func() bool { return b.State("search") == StateOpen })
	rec := record(h, "/")
	if rec.Code != http.StatusServiceUnavailable || up.calls.Load() != 0 {
		t.Fatalf("answered %d with the fleet's hold (handler called %d times)", rec.Code, up.calls.Load())
	}
	// An hour from the store is MaxOpenFor here.
	if s := b.Snapshot()[0]; s.RetryAfter > 2*time.Minute || s.FleetHold == nil || s.FleetHold.Replica != "r2" {
		t.Errorf("status %+v: want a fleet hold by r2 of at most MaxOpenFor", s)
	}
	waitFor(t, "the state change record", func() bool { return len(sink.matching("state changed")) > 0 })
	if e := sink.matching("state changed")[0]; e.attrs["fleet"] != "true" || e.attrs["fleet_replica"] != "r2" || e.attrs["replica"] != "" ||
		e.attrs["failing_replicas"] != "2" || e.attrs["reason"] != "failure_rate" || e.attrs["to"] != "open" {
		t.Errorf("the state change record does not say the fleet made it: %v", e.attrs)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP httpbreaker_shared_connected Whether this replica's last sync reached the fleet's shared state (1) or not (0).
# TYPE httpbreaker_shared_connected gauge
httpbreaker_shared_connected 1
# HELP httpbreaker_shared_replicas Live replicas of the fleet at this replica's last sync, this one included.
# TYPE httpbreaker_shared_replicas gauge
httpbreaker_shared_replicas 3
`), "httpbreaker_shared_connected", "httpbreaker_shared_replicas"); err != nil {
		t.Error(err)
	}
	if v := gathered(t, reg, "httpbreaker_state", "open"); v != 1 {
		t.Errorf("httpbreaker_state{state=open} = %v with the fleet's hold", v)
	}

	// The store goes down: syncs fail and are counted; the hold stays, as
	// its cooldown has not ended.
	store.setDown(true)
	waitFor(t, "disconnected", func() bool { return !b.FleetStatus().Connected })
	if n := gathered(t, reg, "httpbreaker_shared_sync_errors_total", ""); n < 1 {
		t.Errorf("sync errors %v", n)
	}
	if b.State("search") != StateOpen {
		t.Errorf("the hold ended when the store went down")
	}
	store.setDown(false)
	// Closed fleet-wide: closed here too.
	store.set("search", sharedstate.Reply{Hold: &sharedstate.Hold{Generation: 1, Closed: true, Reason: "failure_rate", Replica: "r2"}})
	waitFor(t, "closed by the fleet", func() bool { return b.State("search") == StateClosed })
	if rec := record(h, "/"); rec.Code != 200 {
		t.Errorf("answered %d after the fleet closed the key", rec.Code)
	}
}

// gathered returns the value of the metric name from reg, the series whose
// state label is state if it has one.
func gathered(t *testing.T, reg *prometheus.Registry, name, state string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			match := state == ""
			for _, l := range m.GetLabel() {
				match = match || l.GetName() == "state" && l.GetValue() == state
			}
			if match {
				return m.GetGauge().GetValue() + m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s{state=%q}", name, state)
	return 0
}

func TestBadFleetDataIsIgnored(t *testing.T) {
	for _, tc := range []struct {
		fl   sharedstate.Reply
		want string
	}{
		{sharedstate.Reply{Hold: &sharedstate.Hold{Generation: 0, Reason: "failure_rate"}}, "hold generation: 0"},
		{sharedstate.Reply{Hold: &sharedstate.Hold{Generation: 1, Reason: "boom"}}, `hold reason: "boom"`},
		{sharedstate.Reply{Hold: &sharedstate.Hold{Generation: 1, Reason: "failure_rate", Replica: "\xff"}}, "hold replica"},
		{sharedstate.Reply{Hold: &sharedstate.Hold{Generation: 1, Reason: "failure_rate", Probed: -1}}, "negative"},
		{sharedstate.Reply{Command: sharedstate.Command{Version: 1, Kind: "cooldown_elapsed"}}, `command kind: "cooldown_elapsed"`},
		{sharedstate.Reply{Command: sharedstate.Command{Version: 1, Kind: sharedstate.ForceOpen, By: strings.Repeat("x", 300)}}, "command author"},
		{sharedstate.Reply{Lease: strings.Repeat("l", 300)}, "lease"},
	} {
		if err := checkReply(&tc.fl); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("checkReply(%+v) = %v, want %q", tc.fl, err, tc.want)
		}
	}
	ok := sharedstate.Reply{Successes: 3, Hold: &sharedstate.Hold{Generation: 9, Reason: "probe_failed", Replica: "r2"},
		Command: sharedstate.Command{Version: 2, Kind: sharedstate.Release, By: "ops", Replica: "r3"}}
	if err := checkReply(&ok); err != nil {
		t.Errorf("checkFleet of good data: %v", err)
	}
}
