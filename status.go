package httpbreaker

import (
	"encoding/json"
	"slices"
	"strings"
	"time"
)

// Snapshot returns the status of every key, sorted by key: every key with
// a breaker, and every key that a per-key policy names, which shows as
// closed, with no Side and no requests, until something uses it. A family
// of keys (a policy key ending in *) is not a key: its keys show once they
// have breakers.
func (b *Breakers) Snapshot() []Status {
	b.sweep()
	// Sorted as breakers, not as statuses: a Status is some 400 bytes to
	// move, a pointer 8, and a status page of a thousand keys reads this.
	brs := b.allBreakers()
	slices.SortFunc(brs, func(a, b *keyBreaker) int { return strings.Compare(a.key, b.key) })
	out := make([]Status, 0, len(brs))
	for _, br := range brs {
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
		n := len(out)
		for key := range b.cfg.Keys {
			if !have[key] && !isFamily(key) {
				out = append(out, b.unusedStatus(key))
			}
		}
		if len(out) > n {
			slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Key, b.Key) })
		}
	}
	return out
}

// statusOf returns key's status as Snapshot has it, and false if Snapshot
// has none: it describes one key without describing every other.
func (b *Breakers) statusOf(key string) (Status, bool) {
	b.sweep()
	if br := b.lookup(key); br != nil {
		return keyStatus(br), true
	}
	if _, named := b.cfg.Keys[key]; !named {
		return Status{}, false
	}
	b.mu.Lock()
	idled := b.idled[key]
	b.mu.Unlock()
	if idled {
		return Status{}, false
	}
	return b.unusedStatus(key), true
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

// StatusPage is the status page's JSON (StatusHandler): when it was made,
// the set's link to its fleet, and every key's status, sorted by key. It
// decodes back into a StatusPage.
type StatusPage struct {
	Time  time.Time   `json:"time"`
	Fleet FleetStatus `json:"fleet"`
	Keys  []Status    `json:"keys"`
}

// FleetStatus describes a set's link to its fleet: whether it shares
// state (WithSharedState), as which replica, whether its last sync reached
// the store, and how many replicas were live then, this one included.
type FleetStatus struct {
	Shared    bool   `json:"shared"`
	Replica   string `json:"replica,omitempty"`
	Connected bool   `json:"connected"`
	Replicas  int    `json:"replicas,omitempty"`
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

// Status describes one key's breaker at one moment (docs/operating.md
// describes its JSON).
type Status struct {
	Key   string    `json:"key"`
	State State     `json:"state"`
	Mode  Mode      `json:"mode"`
	Side  string    `json:"side"`  // "server", "client", "both", or "" if nothing has used the key
	Since time.Time `json:"since"` // when the key entered State
	// Rejecting says the breaker turns requests away now; RetryAfter is how
	// long until it admits again, positive while open (retry_after_seconds
	// and retry_after_ms in JSON).
	Rejecting  bool          `json:"rejecting"`
	RetryAfter time.Duration `json:"-"`
	ForcedBy   string        `json:"forced_by,omitempty"` // who forced the state, as Transition.By
	// FleetHold is the fleet's hold on the key, and Fleet the fleet's window
	// as of the last sync, with shared state.
	FleetHold *FleetHold  `json:"fleet_hold,omitempty"`
	Fleet     *FleetView  `json:"fleet,omitempty"`
	LastTrip  *Transition `json:"last_trip,omitempty"` // what last opened it from closed
	// Window holds what the trip rule looks at: the window's outcomes
	// while closed, the probes' while half-open. Totals counts requests
	// by result since the breaker was made, as requests_total does.
	Window Counts `json:"window"`
	Totals Totals `json:"totals"`
	// BlamedOn counts a route group's failures blamed on each upstream (at
	// most 16), LastBlamedOn and LastBlamedAt name the latest; Dependents
	// are an upstream's route groups (at most 16).
	BlamedOn     map[string]uint64 `json:"blamed_on,omitempty"`
	LastBlamedOn string            `json:"last_blamed_on,omitempty"`
	LastBlamedAt time.Time         `json:"last_blamed_at,omitzero"`
	Dependents   []string          `json:"dependents,omitempty"`
	Policy       Policy            `json:"policy"` // resolved, every field set
	// History holds the key's last 32 transitions, oldest first, since
	// HistorySince (when the breaker was made, or the oldest one kept).
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

// FleetView is the fleet's window of a key as this replica's last sync of
// it read it: the sum of the windows live replicas reported, which they do
// when their failures change, and all of them while the fleet gathers the
// key for a possible trip (docs/fleet.md).
type FleetView struct {
	Successes       uint64    `json:"successes"`
	Failures        uint64    `json:"failures"`
	FailingReplicas int       `json:"failing_replicas"` // live replicas with failures in their window
	LiveReplicas    int       `json:"live_replicas"`    // this one included
	Gathering       bool      `json:"gathering"`
	At              time.Time `json:"at"`
}

// Counts are the outcomes in a breaker's current window.
type Counts struct {
	Successes            uint32 `json:"successes"`
	Failures             uint32 `json:"failures"`
	Excluded             uint32 `json:"excluded"`
	Slow                 uint32 `json:"slow"` // with SlowCallRate: slow ones among Successes and Failures
	ConsecutiveSuccesses uint32 `json:"consecutive_successes"`
	ConsecutiveFailures  uint32 `json:"consecutive_failures"`
	InFlight             uint32 `json:"in_flight"` // admitted, not finished
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

// Totals counts requests by result, each under one (a slow call, with
// SlowCallRate, as Slow), named as Counts' fields are; its JSON names are
// requests_total's results.
type Totals struct {
	Successes        uint64 `json:"success"`
	Failures         uint64 `json:"failure"`
	Excluded         uint64 `json:"excluded"`
	Slow             uint64 `json:"slow"`
	Rejected         uint64 `json:"rejected"`
	WouldReject      uint64 `json:"would_reject"`
	UpstreamFailures uint64 `json:"upstream_failure"` // blamed on an upstream, in no window
}

// State returns key's current state. A key that has no breaker (yet) is
// closed: nothing stands in the way of its requests. Reading the state moves
// a breaker whose cooldown has ended from open to half-open.
func (b *Breakers) State(key string) State {
	if br := b.lookup(key); br != nil {
		return br.stateNow()
	}
	return StateClosed
}

// keyStatus describes br now: one moment, under its mu, so that the state,
// its RetryAfter and the window agree.
func keyStatus(br *keyBreaker) Status {
	now := br.clock.now()
	br.mu.Lock()
	br.moveOnLocked(now)
	defer br.unlockAndSetAlarm()
	st := br.viewLocked().shown
	all := br.counters.sumAll()
	s := Status{
		Key:    br.key,
		State:  st,
		Mode:   br.mode,
		Since:  br.clock.at(br.history.since),
		Side:   sideNames[br.sides.Load()&(sideServer|sideClient)],
		Totals: totalsOf(&all),
		Policy: *br.policy,
	}
	var last lastBlame
	s.BlamedOn, last = br.blame.blamedCounts()
	if last.up != "" {
		s.LastBlamedOn, s.LastBlamedAt = last.up, br.clock.at(last.at)
	}
	if t := br.history.lastTrip; t != nil {
		trip := *t
		s.LastTrip = &trip
	}
	if deps := br.blame.dependentKeys(); deps != nil {
		s.Dependents = slices.Clone(deps)
	}
	var forgot bool
	s.History, forgot = br.history.list() // in time order: told dates each change no earlier than the last
	s.HistorySince = br.clock.at(br.history.created)
	if forgot {
		s.HistorySince = s.History[0].Time
	}
	probesFull := false // half-open with every probe slot taken
	ph := br.phase.Load()
	switch {
	case ph == nil || ph.state == StateRecovering:
		c := br.window.countsAt(now)
		s.Window = Counts{
			Successes:            sat32(c.success),
			Failures:             sat32(c.failure),
			Excluded:             sat32(c.excluded),
			Slow:                 sat32(c.slow),
			ConsecutiveSuccesses: c.consecutiveSuccesses,
			ConsecutiveFailures:  c.consecutive,
			InFlight:             sat32(br.inFlight(&all)),
		}
	case ph.state == StateHalfOpen:
		r := ph.round
		probesFull = r.taken.Load() >= r.slots
		s.Window = Counts{
			Successes: uint32(r.succeeded),
			Failures:  uint32(r.failed),
			Excluded:  r.excluded,
			InFlight:  uint32(max(r.taken.Load()-r.succeeded-r.failed, 0)),
		}
		if r.failed == 0 {
			s.Window.ConsecutiveSuccesses = uint32(r.succeeded)
		}
	case st == StateOpen:
		s.RetryAfter = time.Duration(ph.until - now)
	}
	if kf := br.fleet; kf != nil {
		if v := kf.view.Load(); v != nil {
			view := *v
			s.Fleet = &view
		}
		if h := kf.hold.Load(); h != nil {
			s.FleetHold = &FleetHold{Reason: h.why, Replica: h.replica}
			s.Window = Counts{}
			probesFull = h.halfOpen.Load()
			if st == StateOpen {
				s.RetryAfter = time.Duration(h.until - now)
			}
		}
	}
	if o := br.override.Load(); o != nil {
		s.ForcedBy = o.by
		if o.state == StateForcedOpen && o.until != 0 {
			s.RetryAfter = time.Duration(o.until - now)
		}
	}
	s.Rejecting = st == StateForcedOpen || br.mode == ModeEnforce &&
		(st == StateOpen || st == StateRecovering || st == StateHalfOpen && probesFull)
	return s
}

// totalsOf returns the totals of a breaker's counters.
func totalsOf(all *[numCounts]uint64) Totals {
	var r [len(results)]uint64
	for i, res := range results {
		r[i] = res.of(all)
	}
	return Totals{Successes: r[0], Failures: r[1], Excluded: r[2], Slow: r[3], Rejected: r[4], WouldReject: r[5], UpstreamFailures: r[6]}
}
