package httpbreaker

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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

// The states of a breaker. The first three are gobreaker's; the others are
// layered on top of it.
const (
	// StateClosed admits every request and counts outcomes.
	StateClosed State = iota
	// StateHalfOpen admits up to HalfOpenRequests probes at a time.
	StateHalfOpen
	// StateOpen rejects every request until its cooldown ends.
	StateOpen
	// StateRecovering is closed after a recovery, while the policy's
	// RecoveryRamp admits a share of requests that rises from 0 to all.
	StateRecovering
	// StateForcedOpen rejects every request, by ForceOpen.
	StateForcedOpen
	// StateForcedClosed rejects no request, by ForceClose; the breaker
	// underneath goes on counting and changing state, as in observe mode.
	StateForcedClosed
	numStates
)

var stateNames = [numStates]string{"closed", "half_open", "open", "recovering", "forced_open", "forced_closed"}

// String returns the state's name as metrics, logs and reject responses
// use it: "closed", "half_open", "open", "recovering", "forced_open",
// "forced_closed".
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

	mu         sync.Mutex // guards the fields below, and creating and dropping keys
	count      int        // len(keys)
	sweepEvery int64      // ns between idle sweeps: a quarter of the shortest IdleTTL; 0 when none
	lastSweep  int64

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
	for _, err := range b.cfg.validate(nil) {
		errs = append(errs, err)
	}
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
// the set already holds WithMaxKeys keys. keyed says whether a KeyFunc
// chose the key, which decides the default IdleTTL.
func (b *Breakers) breakerFor(key string, keyed bool) *breaker {
	if v, ok := b.keys.Load(key); ok {
		return v.(*breaker)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if v, ok := b.keys.Load(key); ok {
		return v.(*breaker)
	}
	now := b.clock()
	b.sweepLocked(now)
	if b.count >= b.maxKeys {
		b.overflowOnce.Do(func() {
			b.logger.Warn("circuit breaker key limit reached: requests for new keys pass through without a breaker",
				"max_keys", b.maxKeys, "first_untracked_key", key)
		})
		return nil
	}
	br := newBreaker(b, key, b.cfg.policyFor(key), keyed, now)
	b.keys.Store(key, br)
	b.count++
	if ttl := int64(br.idleTTL) / 4; ttl > 0 && (b.sweepEvery == 0 || ttl < b.sweepEvery) {
		b.sweepEvery = ttl
	}
	return br
}

// lookup returns key's breaker if it exists.
func (b *Breakers) lookup(key string) *breaker {
	if v, ok := b.keys.Load(key); ok {
		return v.(*breaker)
	}
	return nil
}

// all returns every key's breaker.
func (b *Breakers) all() []*breaker {
	var out []*breaker
	b.keys.Range(func(_, v any) bool {
		out = append(out, v.(*breaker))
		return true
	})
	return out
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
	b.sweep()
	var out []Status
	for _, br := range b.all() {
		out = append(out, br.status())
	}
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
	// RetryAfter is how long until the breaker admits requests again:
	// positive while open, and while forced open for a limited time.
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
