package httpbreaker

import (
	"encoding/json"
	"slices"
	"strings"
	"time"
)

// Snapshot returns the status of every key, sorted by key: every key with
// a breaker, and every key that a per-key policy names, which shows as
// closed, with no Side and no requests, until something uses it.
func (b *Breakers) Snapshot() []Status {
	b.sweep()
	out := []Status{}
	for _, br := range b.all() {
		out = append(out, keyStatus(br))
	}
	if len(b.cfg.Keys) > 0 {
		have := make(map[string]bool, len(out))
		for _, s := range out {
			have[s.Key] = true
		}
		b.mu.Lock()
		for key := range b.idled {
			have[key] = true
		}
		b.mu.Unlock()
		for key := range b.cfg.Keys {
			if !have[key] {
				out = append(out, b.unusedStatus(key))
			}
		}
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// unusedStatus describes key, which a per-key policy names and which has no
// breaker: closed since the set was made, and used by nothing.
func (b *Breakers) unusedStatus(key string) Status {
	p := b.cfg.policyFor(key)
	if p.IdleTTL == 0 { // as a breaker that Middleware or control makes would have it
		p.IdleTTL = Off
	}
	made := b.at(0)
	return Status{Key: key, State: StateClosed, Mode: p.Mode, Since: made, Policy: p,
		History: []Transition{}, HistorySince: made}
}

// StatusPage is what the status page (StatusHandler) shows at one moment,
// as its JSON carries it: the set's link to its fleet, and every key's
// status. The JSON decodes back into a StatusPage.
type StatusPage struct {
	// Time is when the page was made.
	Time time.Time `json:"time"`
	// Fleet is the set's link to its fleet; its Shared is false without
	// shared state.
	Fleet FleetStatus `json:"fleet"`
	// Keys holds every key's status, sorted by key, as Snapshot returns it.
	Keys []Status `json:"keys"`
}

// FleetStatus describes a set's link to its fleet, for a status page.
type FleetStatus struct {
	// Shared says whether the set shares state with a fleet (WithSharedState).
	Shared bool `json:"shared"`
	// Replica names this replica.
	Replica string `json:"replica,omitempty"`
	// Connected says whether the last sync reached the shared state.
	Connected bool `json:"connected"`
	// Replicas is how many replicas were live at the last sync, this one
	// included.
	Replicas int `json:"replicas,omitempty"`
}

// FleetStatus returns the set's link to its fleet: zero without shared
// state.
func (b *Breakers) FleetStatus() FleetStatus {
	f := b.fleet
	if f == nil {
		return FleetStatus{}
	}
	return FleetStatus{Shared: true, Replica: f.replica, Connected: f.connected.Load(), Replicas: int(f.replicas.Load())}
}

// Status describes one key's breaker at one moment.
type Status struct {
	Key   string `json:"key"`
	State State  `json:"state"`
	Mode  Mode   `json:"mode"`
	// Side says who puts calls through the breaker: "server" (Middleware,
	// KeyedMiddleware), "client" (Transport, KeyedTransport), "both" (one
	// key used on both sides: one breaker), or "" for a key that a per-key
	// policy named and nothing has used yet.
	Side string `json:"side"`
	// Since is when the breaker entered State (when it was created, if it has
	// never changed state).
	Since time.Time `json:"since"`
	// Rejecting says whether the breaker turns requests away now: open,
	// forced open, half-open with every probe slot taken, or recovering
	// (a share of them), in enforce mode or forced.
	Rejecting bool `json:"rejecting"`
	// RetryAfter is how long until the breaker admits requests again:
	// positive while open, and while forced open for a limited time. JSON
	// writes it as retry_after_seconds, rounded up to a whole second as
	// Retry-After is, and as retry_after_ms.
	RetryAfter time.Duration `json:"-"`
	// ForcedBy says who forced the state, while ForceOpen or ForceClose
	// holds it: as Event.By does.
	ForcedBy string `json:"forced_by,omitempty"`
	// FleetHold is set while the fleet holds the key open or half-open
	// (with shared state): why, and which replica made the hold.
	FleetHold *FleetHold `json:"fleet_hold,omitempty"`
	// Fleet is the fleet's view of the key, with shared state, as of this
	// replica's last sync of it: nil without shared state, or before that
	// sync.
	Fleet *FleetView `json:"fleet,omitempty"`
	// LastTrip is what last opened the breaker from closed, nil if nothing
	// has since it was made or Reset.
	LastTrip *Trip `json:"last_trip,omitempty"`
	// Window holds the outcomes the trip conditions look at: those in the
	// rolling window while closed or recovering, those of the probes while
	// half-open, none while open. JSON adds its failure_rate.
	Window Counts `json:"window"`
	// Totals counts requests by result since the breaker was created, as the
	// requests_total metric does.
	Totals Totals `json:"totals"`
	// BlamedOn counts, for a route group (a server key), how many of its
	// failures were blamed on each upstream key (Totals.UpstreamFailure
	// counts them all): failures it answered while a call of its request to
	// that upstream had failed or been rejected. It holds at most 16
	// upstream keys; nil when none was blamed.
	BlamedOn map[string]uint64 `json:"blamed_on,omitempty"`
	// Dependents are, for an upstream (a client key), the route groups whose
	// requests have called through it with their context, sorted: who its
	// state affects. At most 16; nil when none has.
	Dependents []string `json:"dependents,omitempty"`
	// Policy is the key's resolved policy, every field set.
	Policy Policy `json:"policy"`
	// History holds the key's last transitions, oldest first: up to 32,
	// the older ones forgotten. HistorySince is when it starts: when the
	// breaker was made, or, once older transitions were forgotten, the
	// time of the oldest one kept. Between HistorySince and the first
	// transition the key was in that transition's From state (its Forced
	// state, if it has one; State, if there is no transition).
	History      []Transition `json:"history"`
	HistorySince time.Time    `json:"history_since"`
}

// MarshalJSON writes the key's status as its fields say, with RetryAfter as
// retry_after_seconds (whole seconds, rounded up) and retry_after_ms, and
// the window's failure rate to three digits.
func (s Status) MarshalJSON() ([]byte, error) {
	type fields Status // the fields, without this method
	type window struct {
		Counts
		FailureRate float64 `json:"failure_rate"`
	}
	return json.Marshal(struct {
		fields
		RetryAfterSeconds int64  `json:"retry_after_seconds"`
		RetryAfterMS      int64  `json:"retry_after_ms"`
		Window            window `json:"window"`
	}{fields(s), ceilSeconds(s.RetryAfter), s.RetryAfter.Milliseconds(), window{s.Window, roundRate(s.Window.FailureRate())}})
}

var sideNames = [...]string{0: "", sideServer: "server", sideClient: "client", sideServer | sideClient: "both"}

// ceilSeconds returns d in whole seconds, rounded up.
func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// FleetHold is the fleet's hold on a key, as Status shows it.
type FleetHold struct {
	Reason  Reason `json:"reason"`
	Replica string `json:"replica"`
}

// FleetView is the fleet's window of a key as one sync read it: the sum of
// the windows the live replicas reported. A replica reports its window when
// its failures change, so a key that only succeeds has nothing in the
// fleet's window; once a fleet-wide trip is possible (enough failures, from
// enough replicas), the fleet gathers the key: every replica reports its
// whole window at every sync, and Successes counts them all.
type FleetView struct {
	Successes uint64 `json:"successes"`
	Failures  uint64 `json:"failures"`
	// FailingReplicas is how many live replicas have failures in their
	// window; LiveReplicas how many are live, this one included.
	FailingReplicas int `json:"failing_replicas"`
	LiveReplicas    int `json:"live_replicas"`
	// Gathering says that a fleet-wide trip is possible, and every replica
	// reports its window at every sync.
	Gathering bool `json:"gathering"`
	// At is when this replica last synced the key.
	At time.Time `json:"at"`
}

// Counts are the outcomes in a breaker's current window.
type Counts struct {
	Successes uint32 `json:"successes"`
	Failures  uint32 `json:"failures"`
	Excluded  uint32 `json:"excluded"`
	// Slow counts the successes and failures that were slow, with
	// SlowCallRate: they count in Successes or Failures too.
	Slow                 uint32 `json:"slow"`
	ConsecutiveSuccesses uint32 `json:"consecutive_successes"`
	ConsecutiveFailures  uint32 `json:"consecutive_failures"`
	// InFlight is how many admitted requests have not finished yet.
	InFlight uint32 `json:"in_flight"`
}

// FailureRate returns Failures / (Failures + Successes), or 0 when both are 0.
func (c Counts) FailureRate() float64 { return failureRate(c.Failures, c.Successes) }

// SlowCallRate returns Slow / (Failures + Successes), or 0 when both are 0.
func (c Counts) SlowCallRate() float64 {
	if n := c.Successes + c.Failures; n > 0 {
		return float64(c.Slow) / float64(n)
	}
	return 0
}

// Totals counts requests by result. Every request that reached a tracked
// breaker is counted once, under the one result that describes it: with
// SlowCallRate, a slow call is counted as Slow, whether it succeeded or
// failed.
type Totals struct {
	Success     uint64 `json:"success"`
	Failure     uint64 `json:"failure"`
	Excluded    uint64 `json:"excluded"`
	Slow        uint64 `json:"slow"`
	Rejected    uint64 `json:"rejected"`
	WouldReject uint64 `json:"would_reject"`
	// UpstreamFailure counts failures blamed on an upstream
	// (UpstreamFailure), which count in no window.
	UpstreamFailure uint64 `json:"upstream_failure"`
}

// State returns key's current state. A key that has no breaker (yet) is
// closed: nothing stands in the way of its requests. Reading the state moves
// a breaker whose cooldown has ended from open to half-open.
func (b *Breakers) State(key string) State {
	if br := b.lookup(key); br != nil {
		return br.state()
	}
	return StateClosed
}

// keyStatus describes br now.
func keyStatus(br *breaker) Status {
	st := br.state()
	s := Status{
		Key:      br.key,
		State:    st,
		Mode:     br.mode,
		Since:    br.clock.epoch.Add(time.Duration(br.since.Load())),
		Side:     sideNames[br.sides.Load()&(sideServer|sideClient)],
		Totals:   totalsOf(br),
		Policy:   br.policy,
		LastTrip: br.lastTrip.Load(),
		BlamedOn: br.blame.blamed(),
	}
	if deps := br.blame.dependentKeys(); deps != nil {
		s.Dependents = slices.Clone(deps)
	}
	var forgot bool
	s.History, forgot = br.history.list()
	s.HistorySince = br.clock.at(br.history.created)
	if forgot {
		s.HistorySince = s.History[0].Time
	}
	probesFull := false // half-open with every probe slot taken
	ph := br.phase.Load()
	switch {
	case ph == nil || ph.state == StateRecovering:
		c := br.win.Load().counts(br.clock.now())
		s.Window = Counts{
			Successes:            sat32(c.success),
			Failures:             sat32(c.failure),
			Excluded:             sat32(c.excluded),
			Slow:                 sat32(c.slow),
			ConsecutiveSuccesses: c.consecutiveSuccesses,
			ConsecutiveFailures:  c.consecutive,
			InFlight:             sat32(br.inFlight()),
		}
	case ph.state == StateHalfOpen:
		r := ph.round
		probesFull = r.taken.Load() >= r.slots
		ok, failed := r.succeeded.Load(), r.failed.Load()
		s.Window = Counts{
			Successes: uint32(ok),
			Failures:  uint32(failed),
			Excluded:  r.excluded.Load(),
			InFlight:  uint32(max(r.taken.Load()-ok-failed, 0)),
		}
		if failed == 0 {
			s.Window.ConsecutiveSuccesses = uint32(ok)
		}
	case ph.state == StateOpen && st == StateOpen:
		s.RetryAfter = time.Duration(max(ph.until-br.clock.now(), 0))
	}
	if kf, ok := br.fleet.(*keyFleet); ok {
		if v := kf.view.Load(); v != nil {
			view := *v
			s.Fleet = &view
		}
		if h, fst, held := kf.held(br, br.clock.now()); held && st == fst {
			s.FleetHold = &FleetHold{Reason: h.why, Replica: h.replica}
			s.Window = Counts{}
			if fst == StateOpen {
				s.RetryAfter = time.Duration(max(h.until-br.clock.now(), 0))
			}
			probesFull = fst == StateHalfOpen
		}
	}
	if st == StateForcedOpen {
		_, s.RetryAfter, _ = br.forced()
	}
	if o := br.override.Load(); o != nil {
		s.ForcedBy = o.by
	}
	s.Rejecting = st == StateForcedOpen || br.mode == ModeEnforce &&
		(st == StateOpen || st == StateRecovering || st == StateHalfOpen && probesFull)
	return s
}

// totalsOf returns br's requests by result.
func totalsOf(br *breaker) Totals {
	t := br.tallies
	return Totals{
		Success:     t.sum(tallySuccess),
		Failure:     t.sum(tallyFailure),
		Excluded:    t.sum(tallyExcluded),
		Slow:        t.sum(tallySlow),
		Rejected:    t.sum(tallyRejected),
		WouldReject: t.sum(tallyWouldReject),

		UpstreamFailure: t.sum(tallyUpstream),
	}
}
