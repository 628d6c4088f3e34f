package httpbreaker

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// ErrNoBreaker is returned by Release and Reset for a key that has no
// breaker.
var ErrNoBreaker = errors.New("httpbreaker: no breaker for this key")

// ForceOpen makes key's breaker reject every request, whatever its mode, for
// d, or until Release when d is 0 or less: a kill switch for a part that
// misbehaves in ways its status codes do not show. The breaker is created if
// the key has none yet. Rejections answer Retry-After with the time left (or
// OpenFor, when forced until Release).
func (b *Breakers) ForceOpen(key string, d time.Duration) error {
	var until int64
	if d > 0 {
		until = addSat(b.clock(), d)
	}
	attrs := []slog.Attr{slog.String("by", "ForceOpen")}
	if d > 0 {
		attrs = append(attrs, slog.Duration("for", d))
	}
	return b.force(key, &override{state: StateForcedOpen, until: until}, attrs...)
}

// ForceClose makes key's breaker reject no request until Release, whatever
// its state. The breaker underneath goes on counting outcomes and changing
// state, as in observe mode: what it would have rejected is counted as
// would_reject. The breaker is created if the key has none yet.
func (b *Breakers) ForceClose(key string) error {
	return b.force(key, &override{state: StateForcedClosed}, slog.String("by", "ForceClose"))
}

func (b *Breakers) force(key string, o *override, attrs ...slog.Attr) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("httpbreaker: %s: %w", quoteKey(key), err)
	}
	br := b.breakerFor(key, true)
	if br == nil {
		return fmt.Errorf("httpbreaker: %q: the key limit (WithMaxKeys %d) is reached", key, b.maxKeys)
	}
	from := br.state()
	br.override.Store(o)
	br.record(from, o.state, b.clock(), attrs...)
	return nil
}

// Release ends a ForceOpen or ForceClose on key: the breaker goes back to
// the state it has reached underneath.
func (b *Breakers) Release(key string) error {
	br := b.lookup(key)
	if br == nil {
		return fmt.Errorf("%w: %q", ErrNoBreaker, key)
	}
	from := br.state()
	if br.override.Swap(nil) != nil {
		br.record(from, br.state(), b.clock(), slog.String("by", "Release"))
	}
	return nil
}

// Reset puts key's breaker back as it was new: closed, with an empty window
// and the first cooldown, no forced state and no recovery ramp. Requests in
// flight finish against the breaker they started with and are not counted
// in the new one.
func (b *Breakers) Reset(key string) error {
	br := b.lookup(key)
	if br == nil {
		return fmt.Errorf("%w: %q", ErrNoBreaker, key)
	}
	from := br.state()
	br.mu.Lock()
	defer br.mu.Unlock()
	br.inst.Store(br.newInstance())
	br.override.Store(nil)
	br.phase.Store(nil)
	br.upstreamUntil.Store(0)
	br.record(from, StateClosed, b.clock(), slog.String("by", "Reset"))
	return nil
}
