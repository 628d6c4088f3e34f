package httpbreaker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// State is the state of one key's breaker.
type State uint8

// The states of a breaker.
const (
	// StateClosed admits every request and counts outcomes.
	StateClosed State = iota
	// StateHalfOpen admits up to HalfOpenRequests probes at a time.
	StateHalfOpen
	// StateOpen rejects every request until its cooldown ends.
	StateOpen
)

var stateNames = [...]string{"closed", "half_open", "open"}

// String returns "closed", "half_open" or "open", the names used in metrics,
// logs and reject responses.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state(" + fmt.Sprint(uint8(s)) + ")"
}

// MarshalText writes the state's name.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func fromGobreaker(s gobreaker.State) State {
	switch s {
	case gobreaker.StateOpen:
		return StateOpen
	case gobreaker.StateHalfOpen:
		return StateHalfOpen
	}
	return StateClosed
}

// Breakers is a set of circuit breakers, one per key. A key names a route
// group: a plugin id, an upstream provider, a route pattern. Each key's
// breaker is created on first use with the key's policy and lives as long as
// the set. Most users make one Breakers with New and wrap each route group
// with Middleware(key). A Breakers is safe for concurrent use.
type Breakers struct {
	cfg        Config
	logger     *slog.Logger
	classify   Classifier
	reject     http.Handler
	hooks      []func(key string, from, to State)
	maxKeys    int
	namespace  string
	registerer prometheus.Registerer

	// epoch is the origin of the monotonic nanosecond times kept in atomics.
	epoch time.Time
	keys  sync.Map // string -> *breaker; read without a lock on the request path
	mu    sync.Mutex
	count int // len(keys), guarded by mu

	untracked     atomic.Uint64 // requests that passed with no breaker
	overflowOnce  sync.Once
	emptyKeyOnce  sync.Once
	notifications notifier
}

// New returns a set of breakers configured by opts. Every policy is checked
// here: an invalid option or policy is an error naming what is wrong, never
// a panic later.
func New(opts ...Option) (*Breakers, error) {
	b := &Breakers{
		logger:    slog.Default(),
		maxKeys:   DefaultMaxKeys,
		namespace: "httpbreaker",
		epoch:     time.Now(),
	}
	var errs []error
	for _, opt := range opts {
		if opt == nil {
			errs = append(errs, errors.New("nil Option"))
			continue
		}
		if err := opt(b); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, b.cfg.validate(nil)...)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("httpbreaker: %w", err)
	}
	b.notifications = notifier{hooks: b.hooks, logger: b.logger}
	if b.registerer != nil {
		if err := b.registerer.Register(newCollector(b)); err != nil {
			return nil, fmt.Errorf("httpbreaker: registering metrics with namespace %q: %w "+
				"(each Breakers on one registerer needs its own WithNamespace)", b.namespace, err)
		}
	}
	return b, nil
}

// breakerFor returns key's breaker, creating it on first use, or nil when
// the set already holds WithMaxKeys keys.
func (b *Breakers) breakerFor(key string) *breaker {
	if v, ok := b.keys.Load(key); ok {
		return v.(*breaker)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if v, ok := b.keys.Load(key); ok {
		return v.(*breaker)
	}
	if b.count >= b.maxKeys {
		b.overflowOnce.Do(func() {
			b.logger.Warn("circuit breaker key limit reached: requests for new keys pass through without a breaker",
				"max_keys", b.maxKeys, "first_untracked_key", key)
		})
		return nil
	}
	br := newBreaker(b, key, b.cfg.policyFor(key))
	b.keys.Store(key, br)
	b.count++
	return br
}

// lookup returns key's breaker if it exists.
func (b *Breakers) lookup(key string) *breaker {
	if v, ok := b.keys.Load(key); ok {
		return v.(*breaker)
	}
	return nil
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

// Snapshot returns the status of every key, sorted by key.
func (b *Breakers) Snapshot() []Status {
	var out []Status
	b.keys.Range(func(_, v any) bool {
		out = append(out, v.(*breaker).status())
		return true
	})
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// Status describes one key's breaker at one moment.
type Status struct {
	Key   string `json:"key"`
	State State  `json:"state"`
	Mode  Mode   `json:"mode"`
	// Since is when the breaker entered State (when it was created, if it has
	// never changed state).
	Since time.Time `json:"since"`
	// RetryAfter is how long until the breaker admits probes: positive only
	// while open.
	RetryAfter time.Duration `json:"-"`
	// Window holds the outcomes the trip conditions look at: those in the
	// rolling window while closed, those since the state began otherwise.
	Window Counts `json:"window"`
	// Totals counts requests by result since the breaker was created, as the
	// requests_total metric does.
	Totals Totals `json:"totals"`
	// Policy is the key's resolved policy, every field set.
	Policy Policy `json:"policy"`
}

// MarshalJSON writes the status with RetryAfter in seconds
// ("retry_after_seconds") and the window's failure rate.
func (s Status) MarshalJSON() ([]byte, error) {
	type window struct {
		Counts
		FailureRate float64 `json:"failure_rate"`
	}
	return json.Marshal(struct {
		Key               string    `json:"key"`
		State             State     `json:"state"`
		Mode              Mode      `json:"mode"`
		Since             time.Time `json:"since"`
		RetryAfterSeconds float64   `json:"retry_after_seconds"`
		Window            window    `json:"window"`
		Totals            Totals    `json:"totals"`
		Policy            Policy    `json:"policy"`
	}{s.Key, s.State, s.Mode, s.Since, s.RetryAfter.Seconds(), window{s.Window, s.Window.FailureRate()}, s.Totals, s.Policy})
}

// Counts are the outcomes in a breaker's current window.
type Counts struct {
	Successes            uint32 `json:"successes"`
	Failures             uint32 `json:"failures"`
	Excluded             uint32 `json:"excluded"`
	ConsecutiveSuccesses uint32 `json:"consecutive_successes"`
	ConsecutiveFailures  uint32 `json:"consecutive_failures"`
	// InFlight is how many admitted requests have not finished yet.
	InFlight uint32 `json:"in_flight"`
}

// FailureRate returns Failures / (Failures + Successes), or 0 when both are 0.
func (c Counts) FailureRate() float64 {
	if n := c.Successes + c.Failures; n > 0 {
		return float64(c.Failures) / float64(n)
	}
	return 0
}

// Totals counts requests by result. Every request that reached a tracked
// breaker is counted once, under the one result that describes it.
type Totals struct {
	Success     uint64 `json:"success"`
	Failure     uint64 `json:"failure"`
	Excluded    uint64 `json:"excluded"`
	Rejected    uint64 `json:"rejected"`
	WouldReject uint64 `json:"would_reject"`
}

// result is the label of the requests_total metric: what happened to one request.
type result uint8

const (
	resultSuccess result = iota
	resultFailure
	resultExcluded
	resultRejected
	resultWouldReject
	numResults
)

var resultNames = [numResults]string{"success", "failure", "excluded", "rejected", "would_reject"}

// transition is an edge of the state machine that gobreaker can take.
type transition uint8

const (
	closedToOpen transition = iota
	openToHalfOpen
	halfOpenToClosed
	halfOpenToOpen
	numTransitions
)

var transitionStates = [numTransitions][2]State{
	{StateClosed, StateOpen},
	{StateOpen, StateHalfOpen},
	{StateHalfOpen, StateClosed},
	{StateHalfOpen, StateOpen},
}

func transitionOf(from, to State) (transition, bool) {
	for t, edge := range transitionStates {
		if edge == [2]State{from, to} {
			return transition(t), true
		}
	}
	return 0, false
}

// breaker is one key's circuit breaker: a gobreaker instance, the policy it
// was made from, and what gobreaker does not keep.
//
// gobreaker's own Timeout is OpenFor. A longer cooldown after a failed probe
// is a hold on top of it: while now < holdUntil the breaker rejects without
// calling gobreaker at all, so gobreaker moves from open to half-open (which
// it does lazily, on the next call) only once the hold has ended, and its
// state changes stay the ones this package reports.
type breaker struct {
	set      *Breakers
	key      string
	policy   Policy // resolved
	mode     Mode
	slowCall time.Duration // 0: off
	cb       *gobreaker.CircuitBreaker[struct{}]
	// holdUntil is when an open breaker may admit probes, in nanoseconds
	// since set.epoch; 0 when not open.
	holdUntil atomic.Int64
	since     atomic.Int64 // last state change, ns since set.epoch
	results   [numResults]atomic.Uint64
	changes   [numTransitions]atomic.Uint64

	// Guarded by gobreaker's mutex: written only in readyToTrip and
	// onStateChange, which gobreaker calls with it held.
	nominal  time.Duration // the cooldown before jitter: OpenFor, doubling per failed probe
	cooldown time.Duration // the cooldown in force
	tripped  tripInfo

	problem *problemBodies // the reject response, built once
}

// tripInfo records what made a breaker trip, for the log record.
type tripInfo struct {
	reason string
	counts gobreaker.Counts
}

func newBreaker(set *Breakers, key string, p Policy) *breaker {
	br := &breaker{set: set, key: key, policy: p, mode: p.Mode, cooldown: p.OpenFor}
	if p.SlowCall != Off {
		br.slowCall = p.SlowCall
	}
	br.since.Store(set.clock())
	br.cb = gobreaker.NewCircuitBreaker[struct{}](br.settings())
	br.problem = newProblemBodies(key)
	return br
}

// settings maps the policy onto gobreaker, field by field.
func (br *breaker) settings() gobreaker.Settings {
	p := br.policy
	bucket := p.Window / time.Duration(p.Buckets)
	return gobreaker.Settings{
		Name:        br.key,
		MaxRequests: uint32(p.HalfOpenRequests),
		// Interval is an exact multiple of the bucket, so that gobreaker,
		// which rounds Interval up to one, keeps Buckets buckets.
		Interval:      bucket * time.Duration(p.Buckets),
		BucketPeriod:  bucket,
		Timeout:       p.OpenFor,
		ReadyToTrip:   br.readyToTrip,
		OnStateChange: br.onStateChange,
		IsSuccessful:  func(err error) bool { return err == nil },
		IsExcluded:    func(err error) bool { return err == errExcluded },
	}
}

// readyToTrip is gobreaker's ReadyToTrip: called with the window's counts
// after each failure while closed. The rate counts only finished requests:
// gobreaker's Requests includes those still in flight.
func (br *breaker) readyToTrip(c gobreaker.Counts) bool {
	p := br.policy
	reason := ""
	if p.ConsecutiveFailures != Off && c.ConsecutiveFailures >= uint32(p.ConsecutiveFailures) {
		reason = "consecutive_failures"
	} else if n := c.TotalSuccesses + c.TotalFailures; p.FailureRate != Off && n >= uint32(p.MinRequests) &&
		float64(c.TotalFailures)/float64(n) >= p.FailureRate {
		reason = "failure_rate"
	}
	if reason == "" {
		return false
	}
	br.tripped = tripInfo{reason: reason, counts: c}
	return true
}

// onStateChange is gobreaker's OnStateChange. gobreaker calls it with its
// mutex held, so it must not call back into br.cb.
func (br *breaker) onStateChange(_ string, gfrom, gto gobreaker.State) {
	from, to := fromGobreaker(gfrom), fromGobreaker(gto)
	now := br.set.clock()
	if to == StateOpen {
		if from == StateHalfOpen {
			br.nominal = br.backoff(br.nominal)
			br.cooldown = br.jitter(br.nominal)
		} else {
			br.nominal, br.cooldown = br.policy.OpenFor, br.policy.OpenFor
		}
		br.holdUntil.Store(now + int64(br.cooldown))
	} else {
		br.holdUntil.Store(0)
	}
	br.since.Store(now)
	if t, ok := transitionOf(from, to); ok {
		br.changes[t].Add(1)
	}
	br.set.stateChanged(br, from, to)
}

// backoff returns the nominal cooldown after a failed probe: twice the
// last one, at most MaxOpenFor.
func (br *breaker) backoff(last time.Duration) time.Duration {
	p := br.policy
	if p.MaxOpenFor == Off {
		return p.OpenFor
	}
	if last >= p.MaxOpenFor/2 {
		return p.MaxOpenFor
	}
	return 2 * last
}

// jitter returns the cooldown to wait for a nominal one: up to a fifth
// less, at random, so that replicas that tripped together probe apart, and
// never below OpenFor. The jitter does not compound: each cooldown is drawn
// from its own nominal value.
func (br *breaker) jitter(nominal time.Duration) time.Duration {
	return max(nominal-rand.N(nominal/5+1), br.policy.OpenFor)
}

// holdLeft returns how long the breaker stays open before it admits
// probes, and false when it is not open (or its cooldown has ended). The
// cooldown's last instant is still open, as it is for gobreaker. It reads the
// clock only while a hold is set, never on the closed path.
func (br *breaker) holdLeft() (time.Duration, bool) {
	h := br.holdUntil.Load()
	if h == 0 {
		return 0, false
	}
	left := h - br.set.clock()
	return time.Duration(max(left, 0)), left >= 0
}

// state returns the breaker's state, moving it to half-open first if its
// cooldown has ended, as gobreaker does lazily on its next call.
func (br *breaker) state() State {
	if _, held := br.holdLeft(); held {
		return StateOpen
	}
	return fromGobreaker(br.cb.State())
}

func (br *breaker) status() Status {
	st := br.state()
	c := br.cb.Counts()
	var inflight uint32
	if v := c.TotalSuccesses + c.TotalFailures + c.TotalExclusions; c.Requests > v {
		inflight = c.Requests - v
	}
	retry := time.Duration(0)
	if st == StateOpen {
		retry, _ = br.holdLeft()
	}
	return Status{
		Key:        br.key,
		State:      st,
		Mode:       br.mode,
		Since:      br.set.epoch.Add(time.Duration(br.since.Load())),
		RetryAfter: retry,
		Window: Counts{
			Successes:            c.TotalSuccesses,
			Failures:             c.TotalFailures,
			Excluded:             c.TotalExclusions,
			ConsecutiveSuccesses: c.ConsecutiveSuccesses,
			ConsecutiveFailures:  c.ConsecutiveFailures,
			InFlight:             inflight,
		},
		Totals: Totals{
			Success:     br.results[resultSuccess].Load(),
			Failure:     br.results[resultFailure].Load(),
			Excluded:    br.results[resultExcluded].Load(),
			Rejected:    br.results[resultRejected].Load(),
			WouldReject: br.results[resultWouldReject].Load(),
		},
		Policy: br.policy,
	}
}

// clock returns monotonic nanoseconds since the set was made.
func (b *Breakers) clock() int64 { return int64(time.Since(b.epoch)) }

// stateChanged logs a state change and queues it for the hooks. It runs
// inside gobreaker's OnStateChange.
func (b *Breakers) stateChanged(br *breaker, from, to State) {
	attrs := []slog.Attr{
		slog.String("key", br.key),
		slog.String("from", from.String()),
		slog.String("to", to.String()),
		slog.String("mode", br.mode.String()),
	}
	level := slog.LevelInfo
	if to == StateOpen {
		level = slog.LevelWarn
		attrs = append(attrs, slog.Duration("open_for", br.cooldown))
		if from == StateClosed {
			c := br.tripped.counts
			attrs = append(attrs,
				slog.String("reason", br.tripped.reason),
				slog.Uint64("failures", uint64(c.TotalFailures)),
				slog.Uint64("successes", uint64(c.TotalSuccesses)),
				slog.Uint64("consecutive_failures", uint64(c.ConsecutiveFailures)),
				slog.Float64("failure_rate", Counts{Successes: c.TotalSuccesses, Failures: c.TotalFailures}.FailureRate()),
			)
		}
	}
	b.logger.LogAttrs(context.Background(), level, "circuit breaker state changed", attrs...)
	b.notifications.enqueue(stateChange{key: br.key, from: from, to: to})
}

type stateChange struct {
	key      string
	from, to State
}

// maxPendingNotifications bounds the hook queue, so that a hook that blocks
// for good costs bounded memory.
const maxPendingNotifications = 10000

// notifier delivers state changes to the hooks in order, on a goroutine of
// its own that runs only while there is something to deliver. A hook that
// blocks delays only later hook calls; one that panics is logged.
type notifier struct {
	hooks   []func(key string, from, to State)
	logger  *slog.Logger
	mu      sync.Mutex
	queue   []stateChange
	running bool
	dropped uint64
}

func (n *notifier) enqueue(c stateChange) {
	if len(n.hooks) == 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.queue) >= maxPendingNotifications {
		n.dropped++
		if n.dropped == 1 {
			n.logger.Error("circuit breaker state-change hook is blocked; dropping state changes until it returns",
				"pending", len(n.queue))
		}
		return
	}
	n.queue = append(n.queue, c)
	if !n.running {
		n.running = true
		go n.run()
	}
}

func (n *notifier) run() {
	for {
		n.mu.Lock()
		if len(n.queue) == 0 {
			n.running = false
			if n.dropped > 0 {
				n.logger.Warn("circuit breaker state-change hook caught up", "dropped", n.dropped)
				n.dropped = 0
			}
			n.mu.Unlock()
			return
		}
		c := n.queue[0]
		n.queue = n.queue[1:]
		n.mu.Unlock()
		for _, hook := range n.hooks {
			n.call(hook, c)
		}
	}
}

func (n *notifier) call(hook func(key string, from, to State), c stateChange) {
	defer func() {
		if p := recover(); p != nil {
			n.logger.Error("circuit breaker state-change hook panicked",
				"key", c.key, "from", c.from.String(), "to", c.to.String(), "panic", fmt.Sprint(p))
		}
	}()
	hook(c.key, c.from, c.to)
}
