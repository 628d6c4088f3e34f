package httpbreaker

import (
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// unusedKeyGrace is how long a key that a per-key policy names may go
// unused, from New, before the set logs it: long enough for a server to
// wire its routes and take its first requests.
const unusedKeyGrace = time.Minute

// watchUnusedKeys asks the set's alarm to look, unusedKeyGrace after New,
// for keys that a per-key policy names and nothing uses. Close before then
// cancels the look.
func (b *Breakers) watchUnusedKeys() {
	if len(b.cfg.Keys) > 0 {
		b.unusedLook = newAlarmEntry(func(int64) { b.logUnusedKeys() })
		b.alarm.set(&b.unusedLook, int64(unusedKeyGrace))
	}
}

// logUnusedKeys logs, once, each key that a per-key policy names (WithKeyPolicy,
// a config file) and that nothing has used: no Middleware or Transport wires
// it and no KeyFunc or Do call has chosen it. Such a key is most often a typo, whose
// policy guards nothing; the record names the closest key in use, if one
// is close. A family (a policy key ending in *) is logged in the same way
// when no key in use begins with its prefix, with the closest family that
// keys in use would match.
func (b *Breakers) logUnusedKeys() {
	var used []string
	matched := map[string]bool{} // the policy keys that gave a key in use its policy
	for _, br := range b.allBreakers() {
		if br.sides.Load() != 0 {
			used = append(used, br.key)
			for _, name := range b.cfg.policyKeys(br.key) {
				matched[name] = true
			}
		}
	}
	b.mu.Lock()
	for key := range b.idled {
		matched[key] = true
		if !isFamily(key) {
			used = append(used, key)
		}
	}
	b.mu.Unlock()
	slices.Sort(used)
	for _, key := range slices.Sorted(maps.Keys(b.cfg.Keys)) {
		if matched[key] {
			continue
		}
		args := []any{"key", key, "after", unusedKeyGrace}
		if isFamily(key) {
			if near := closestFamily(key, used); near != "" {
				args = append(args, "did_you_mean", near)
			}
			b.notifier.log(slog.LevelWarn, "circuit breaker policy names a family of keys that no key in use "+
				"belongs to: no key that Middleware or Transport wires, or a request or Do call has chosen, begins with "+
				"its prefix, so its policy guards nothing yet (a typo, or no traffic of the family yet?)", args...)
			continue
		}
		if near := closestKey(key, used); near != "" {
			args = append(args, "did_you_mean", near)
		}
		b.notifier.log(slog.LevelWarn, "circuit breaker policy names a key that nothing uses: no Middleware or "+
			"Transport wires it and no request or Do call has chosen it, so its policy guards nothing (a typo?)", args...)
	}
}

// closestFamily returns the family that family most likely misspells,
// made from the keys in use: the start of a key, about as long as
// family's prefix (two runes more or less, for a letter left out or put
// in), and a *. It is "" if none is close. It never names a family that
// covers every key family does and more ("search*" for "search:*"): that
// is no fix of a typo, and would give its policy to keys it was not meant
// for (the route group "search" beside its tenants "search:acme").
func closestFamily(family string, keys []string) string {
	prefix := strings.TrimSuffix(family, "*")
	n := utf8.RuneCountInString(family) - 1
	var families []string
	for _, k := range keys {
		r := []rune(k)
		for l := max(1, min(n-2, len(r))); l <= min(n+2, len(r)); l++ {
			if start := string(r[:l]); !strings.HasPrefix(prefix, start) {
				families = append(families, start+"*")
			}
		}
	}
	return closestKey(family, families)
}

// closestKey returns the key of keys that key most likely misspells, or ""
// if none is close: at most a third of key's characters apart (one for
// short keys), letter case aside, a swap of two neighbours counting as one.
func closestKey(key string, keys []string) string {
	best, bestDist := "", max(1, utf8.RuneCountInString(key)/3)+1
	for _, k := range keys {
		if d := editDistance(strings.ToLower(key), strings.ToLower(k)); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance returns how many single-rune insertions, deletions,
// substitutions and swaps of neighbours turn a into b (the optimal string
// alignment distance).
func editDistance(a, b string) int {
	x, y := []rune(a), []rune(b)
	// Three rows of the table: two back, one back, this one.
	prev2, prev, cur := make([]int, len(y)+1), make([]int, len(y)+1), make([]int, len(y)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(x); i++ {
		cur[0] = i
		for j := 1; j <= len(y); j++ {
			cost := 1
			if x[i-1] == y[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && x[i-1] == y[j-2] && x[i-2] == y[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(y)]
}
