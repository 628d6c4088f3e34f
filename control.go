package httpbreaker

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/httpbreaker/httpbreaker/sharedstate"
)

// ErrNoBreaker is returned by ForceOpen, ForceClose, Release, Reset and
// Probe for a key that does not exist: one that no Middleware wired, no KeyFunc has
// chosen (or whose breaker was dropped when idle), and that no per-key
// policy names (WithKeyPolicy, a config file). A typo gets this error, not
// a breaker and metric series of its own.
var ErrNoBreaker = errors.New("httpbreaker: no breaker for this key")

// maxForceOpen is the longest a ForceOpen may last: an operator who wants
// longer forces it until Release. It bounds what the fleet's store may say
// too.
const maxForceOpen = 7 * 24 * time.Hour

// ErrNotOpen is returned by Probe for a key whose breaker is not open: there
// is no cooldown to end, and nothing is changed.
var ErrNotOpen = errors.New("httpbreaker: the breaker is not open")

// ForceOpen makes key's breaker reject every request, in every mode, for d
// (at most a week), or until Release when d is 0 or less: a kill switch.
// With shared state every replica holds it until the same moment.
func (b *Breakers) ForceOpen(key string, d time.Duration) error {
	return b.forceOpen(key, d, caller())
}

// ForceClose makes key's breaker reject no request until Release, whatever
// its state. The breaker underneath goes on counting outcomes and changing
// state, as in observe mode: what it would have rejected is counted as
// would_reject.
func (b *Breakers) ForceClose(key string) error {
	return b.forceClose(key, caller())
}

// Release ends a ForceOpen or ForceClose on key: the breaker goes back to
// the state it has reached underneath.
func (b *Breakers) Release(key string) error {
	return b.release(key, caller())
}

// Reset puts key's breaker back as it was new: closed, with an empty window
// and the first cooldown, no forced state and no recovery ramp. Requests in
// flight are counted in its totals but not in the new window (one that ends
// at the very instant of the Reset may be).
func (b *Breakers) Reset(key string) error {
	return b.reset(key, caller())
}

// Probe ends key's cooldown now, on every replica with shared state: the
// next calls are its probes. It returns ErrNotOpen, changing nothing, for a
// key that is not open (a forced one included).
func (b *Breakers) Probe(key string) error {
	return b.endCooldownOf(key, caller())
}

// The control functions below take by, who asked: the status page names
// the remote address, the methods above their caller's file and line.

func (b *Breakers) forceOpen(key string, d time.Duration, by string) error {
	if d > maxForceOpen {
		return fmt.Errorf("httpbreaker: ForceOpen(%s, %v): longer than %v; force it until Release (0) instead", quoteKey(key), d, maxForceOpen)
	}
	br, err := b.controlled(key)
	if err != nil {
		return err
	}
	var until int64
	if d > 0 {
		until = addSat(b.now(), d)
	}
	e := Transition{Reason: ReasonForceOpen, By: by, OpenFor: max(d, 0)}
	br.force(&override{state: StateForcedOpen, until: until, by: by}, e)
	shareCommand(br, sharedstate.Command{Kind: sharedstate.ForceOpen, For: e.OpenFor, By: by})
	return nil
}

func (b *Breakers) forceClose(key, by string) error {
	br, err := b.controlled(key)
	if err != nil {
		return err
	}
	br.force(&override{state: StateForcedClosed, by: by}, Transition{Reason: ReasonForceClose, By: by})
	shareCommand(br, sharedstate.Command{Kind: sharedstate.ForceClose, By: by})
	return nil
}

func (b *Breakers) endCooldownOf(key, by string) error {
	br, err := b.controlled(key)
	if err != nil {
		return err
	}
	if st, ok := br.endCooldown(Transition{Reason: ReasonProbe, By: by}); !ok {
		return fmt.Errorf("%w: %s is %s", ErrNotOpen, quoteKey(key), st)
	}
	shareCommand(br, sharedstate.Command{Kind: sharedstate.Probe, By: by})
	return nil
}

func (b *Breakers) release(key, by string) error {
	br, err := b.controlled(key)
	if err != nil {
		return err
	}
	br.release(Transition{Reason: ReasonRelease, By: by})
	shareCommand(br, sharedstate.Command{Kind: sharedstate.Release, By: by})
	return nil
}

func (b *Breakers) reset(key, by string) error {
	br, err := b.controlled(key)
	if err != nil {
		return err
	}
	br.reset(Transition{Reason: ReasonReset, By: by})
	shareCommand(br, sharedstate.Command{Kind: sharedstate.Reset, By: by})
	return nil
}

// shareCommand sends a manual change of br, made now, to the fleet, if the set has
// one: every replica applies it within a sync or so.
func shareCommand(br *keyBreaker, c sharedstate.Command) {
	if kf := br.fleet; kf != nil {
		kf.madeCommand(br, c, br.clock.now())
	}
}

// The manual changes of one breaker, made and told under its mu as every
// change is: however many goroutines (and the fleet's loop, applying
// another replica's command) make them at once, each real change is told
// once, from the state the key was really in. Each reports whether the
// key's state changed; e says why.

// force forces br's state with o.
func (br *keyBreaker) force(o *override, e Transition) bool {
	now := br.clock.now()
	before := br.beginChange(now)
	defer br.unlockAndSetAlarm()
	br.override.Store(o)
	return br.tellChange(now, before, e)
}

// release ends br's forced state, if it has one.
func (br *keyBreaker) release(e Transition) bool {
	now := br.clock.now()
	before := br.beginChange(now)
	defer br.unlockAndSetAlarm()
	if br.override.Load() == nil {
		return false
	}
	br.override.Store(nil)
	return br.tellChange(now, before, e)
}

// reset puts br back as it was new: closed, with an empty window and the
// first cooldown, no forced state, no recovery ramp and no hold of the
// fleet's.
func (br *keyBreaker) reset(e Transition) bool {
	now := br.clock.now()
	before := br.beginChange(now)
	defer br.unlockAndSetAlarm()
	br.window.restart(now)
	br.override.Store(nil)
	br.phase.Store(nil)
	if br.fleet != nil {
		br.fleet.dropLocked()
	}
	br.upstreamUntil.Store(0)
	br.history.lastTrip = nil
	return br.tellChange(now, before, e)
}

// endCooldown ends br's cooldown now, the fleet's hold's or its own
// phase's, if the key is open: the next calls are probes. It returns the
// key's state, when it was not open.
func (br *keyBreaker) endCooldown(e Transition) (State, bool) {
	now := br.clock.now()
	before := br.beginChange(now)
	defer br.unlockAndSetAlarm()
	if before.shown != StateOpen {
		return before.shown, false
	}
	if br.fleet != nil && br.fleet.endCooldownLocked(br, now, e) {
		return StateHalfOpen, true
	}
	if ph := br.phase.Load(); ph != nil && ph.state == StateOpen {
		br.halfOpenLocked(ph, now, e)
		return StateHalfOpen, true
	}
	return before.shown, false
}

// moveForcedEnd moves the end of the forced state o, if it still holds, to until:
// the fleet's clock said it ends then.
func (br *keyBreaker) moveForcedEnd(o *override, until int64) {
	br.mu.Lock()
	defer br.unlockAndSetAlarm()
	if br.override.Load() == o {
		br.override.Store(&override{state: o.state, until: until, by: o.by, fleet: o.fleet})
	}
}

// controlled returns the breaker that manual control acts on: key's own,
// or, for a key that a per-key policy names but no request has used yet, a
// new one. Any other key is ErrNoBreaker, so that neither a typo nor a
// request to the status page can make keys.
func (b *Breakers) controlled(key string) (*keyBreaker, error) {
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("httpbreaker: %s: %w", quoteKey(key), err)
	}
	if br := b.lookup(key); br != nil {
		return br, nil
	}
	if b.cfg.named(key) {
		if br := b.breakerFor(key, false); br != nil {
			return br, nil
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrNoBreaker, quoteKey(key))
}

// caller names the code that called a control method: its package's
// import path, file and line ("example.com/ops/main.go:42").
func caller() string {
	pc, file, line, ok := runtime.Caller(2)
	if !ok {
		return "Go code"
	}
	pkg := "unknown"
	if fn := runtime.FuncForPC(pc); fn != nil {
		pkg = fn.Name() // import/path.Func or import/path.Type.Method
		slash := strings.LastIndexByte(pkg, '/') + 1
		if dot := strings.IndexByte(pkg[slash:], '.'); dot >= 0 {
			pkg = pkg[:slash+dot]
		}
	}
	return pkg + "/" + filepath.Base(file) + ":" + strconv.Itoa(line)
}
