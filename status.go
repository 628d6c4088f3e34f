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
	brs := b.all()
	slices.SortFunc(brs, func(a, b *breaker) int { return strings.Compare(a.key, b.key) })
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
	// LastTrip is what last opened the breaker from closed (or
	// recovering), by its own window or the fleet's, nil if nothing has
	// since it was made or Reset.
	LastTrip *Transition `json:"last_trip,omitempty"`
	// Window holds the outcomes the trip conditions look at: those in the
	// rolling window while closed or recovering, those of the probes while
	// half-open, none while open. JSON adds its failure_rate.
	Window Counts `json:"window"`
	// Totals counts requests by result since the breaker was created, as the
	// requests_total metric does.
	Totals Totals `json:"totals"`
	// BlamedOn counts, for a route group (a server key), how many of its
	// failures were blamed on each upstream key (Totals.UpstreamFailure
	// counts them all). It holds at most 16 upstream keys; nil when none
	// was blamed.
	BlamedOn map[string]uint64 `json:"blamed_on,omitempty"`
	// LastBlamedOn and LastBlamedAt are the upstream key of the route
	// group's latest blamed failure, and when; "" and zero if none.
	LastBlamedOn string    `json:"last_blamed_on,omitempty"`
	LastBlamedAt time.Time `json:"last_blamed_at,omitzero"`
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
//
// Its fields are named as Counts' are; its JSON names are requests_total's
// results.
type Totals struct {
	Successes   uint64 `json:"success"`
	Failures    uint64 `json:"failure"`
	Excluded    uint64 `json:"excluded"`
	Slow        uint64 `json:"slow"`
	Rejected    uint64 `json:"rejected"`
	WouldReject uint64 `json:"would_reject"`
	// UpstreamFailures counts failures blamed on an upstream
	// (UpstreamFailure), which count in no window.
	UpstreamFailures uint64 `json:"upstream_failure"`
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

// keyStatus describes br now: one moment, under its mu, so that the state,
// its RetryAfter and the window agree.
func keyStatus(br *breaker) Status {
	now := br.clock.now()
	br.mu.Lock()
	br.moveOnLocked(now)
	defer br.unlock()
	st := br.viewLocked().shown
	all := br.counters.all()
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
	s.BlamedOn, last = br.blame.blamed()
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
		c := br.window.counts(now)
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
