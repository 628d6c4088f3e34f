package httpbreaker

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Policy says when a breaker opens, how long it stays open and how it comes
// back; each field's comment ends with its default. A zero field means
// "inherit" (from the defaults, and for them from DefaultPolicy), so a
// per-key policy names only what differs; Off turns a field off. New refuses
// a duration under a millisecond or a value past its ceiling, naming what
// was likely meant (docs/configuration.md has every ceiling).
type Policy struct {
	FailureRate         float64        // trip at this share of failures in the window, in (0, 1] or Off; 0.5
	MinRequests         int            // once the window holds this many outcomes; 10
	ConsecutiveFailures int            // trip after this many failures in a row, or Off; 5
	Window              time.Duration  // the rolling window's span; 10s
	Buckets             int            // the parts it rolls in; 10
	LastCalls           int            // judge the last this many outcomes instead of the time window; off
	OpenFor             time.Duration  // the cooldown after a trip from closed; 30s
	MaxOpenFor          time.Duration  // the longest cooldown, doubling with jitter after each failed round, or Off; 5m
	HalfOpenRequests    int            // the probes a half-open breaker admits; 3
	HalfOpenSuccesses   int            // the probes that must succeed to close; HalfOpenRequests
	Quorum              int            // with shared state, the replicas a fleet-wide trip needs; 2
	ProbeTimeout        time.Duration  // a probe running past it is judged by what it answered so far, or Off; 30s
	SlowCall            time.Duration  // a call slower than it fails (is slow, with SlowCallRate); off
	SlowCallRate        float64        // trip at this share of slow calls, judging slowness apart; off
	RecoveryRamp        time.Duration  // admit a share rising from none to all over it after recovering; off
	IdleTTL             time.Duration  // drop a key's breaker unused this long; 1h for a KeyFunc's keys, else off
	UpstreamRetryAfter  RetryAfterRule // which failures' Retry-After may lengthen a cooldown; RetryAfterOn503
	Mode                Mode           // ModeEnforce, ModeObserve or ModeDisabled; ModeEnforce
}

// Off turns a Policy field off (off in a config file): zero means
// "inherit", so it cannot also mean off.
const Off = -1

// DefaultPolicy returns the built-in defaults, every field set but IdleTTL
// and HalfOpenSuccesses, whose defaults depend on the key and the policy.
func DefaultPolicy() Policy {
	return Policy{
		FailureRate:         0.5,
		MinRequests:         10,
		ConsecutiveFailures: 5,
		Window:              10 * time.Second,
		Buckets:             10,
		LastCalls:           Off,
		OpenFor:             30 * time.Second,
		MaxOpenFor:          5 * time.Minute,
		HalfOpenRequests:    3,
		Quorum:              2,
		ProbeTimeout:        30 * time.Second,
		SlowCall:            Off,
		SlowCallRate:        Off,
		RecoveryRamp:        Off,
		UpstreamRetryAfter:  RetryAfterOn503,
		Mode:                ModeEnforce,
	}
}

// Mode says what a breaker does with what it learns.
type Mode uint8

// The modes. The zero Mode means "inherit", which resolves to ModeEnforce.
const (
	ModeEnforce  Mode = iota + 1 // rejects while open (the default)
	ModeObserve                  // trips and reports as enforce does, never rejects: what it would have is would_reject
	ModeDisabled                 // passes every request through and records nothing
)

var modeNames = []string{"", "enforce", "observe", "disabled"}

// String returns the mode's config name: "enforce", "observe" or "disabled"
// ("" for the zero Mode).
func (m Mode) String() string { return choiceName(modeNames, "mode", uint8(m)) }

// MarshalText writes the mode's config name.
func (m Mode) MarshalText() ([]byte, error) { return choiceText(modeNames, "mode", uint8(m)) }

// UnmarshalText reads "enforce", "observe" or "disabled".
func (m *Mode) UnmarshalText(b []byte) error { return parseChoice(m, b) }

func (m *Mode) get() uint8      { return uint8(*m) }
func (m *Mode) set(v uint8)     { *m = Mode(v) }
func (*Mode) choices() []string { return modeNames }

// RetryAfterRule says which upstream answers' Retry-After may keep a
// breaker open longer than its cooldown. The zero value means "inherit",
// which resolves to RetryAfterOn503.
type RetryAfterRule uint8

// The rules for an upstream's Retry-After.
const (
	RetryAfterOn503       RetryAfterRule = iota + 1 // a 503's: the upstream as a whole asks for a pause (the default)
	RetryAfterOn429And503                           // a 429's too: for a rate limit every caller shares (one API key)
	RetryAfterOff                                   // none
)

var retryAfterNames = []string{"", "on_503", "on_429_and_503", "off"}

// String returns the rule's config name: "on_503", "on_429_and_503" or
// "off" ("" for the zero value).
func (r RetryAfterRule) String() string {
	return choiceName(retryAfterNames, "retry_after_rule", uint8(r))
}

// MarshalText writes the rule's config name.
func (r RetryAfterRule) MarshalText() ([]byte, error) {
	return choiceText(retryAfterNames, "retry_after_rule", uint8(r))
}

// UnmarshalText reads "on_503", "on_429_and_503" or "off".
func (r *RetryAfterRule) UnmarshalText(b []byte) error { return parseChoice(r, b) }

func (r *RetryAfterRule) get() uint8      { return uint8(*r) }
func (r *RetryAfterRule) set(v uint8)     { *r = RetryAfterRule(v) }
func (*RetryAfterRule) choices() []string { return retryAfterNames }

// honours reports whether the rule lets a delay that came with a failure
// keep the breaker open: rateLimited says the upstream answered that this
// caller is over its rate limit (a 429), not that it is unavailable.
func (r RetryAfterRule) honours(rateLimited bool) bool {
	return r == RetryAfterOn429And503 || (r == RetryAfterOn503 && !rateLimited)
}

// choice is a Policy field that takes one of a few names (Mode,
// RetryAfterRule), whose first name, for the zero value, is "".
type choice interface {
	get() uint8
	set(uint8)
	choices() []string
}

func choiceName(names []string, what string, v uint8) string {
	if int(v) < len(names) {
		return names[v]
	}
	return what + "(" + strconv.Itoa(int(v)) + ")"
}

func choiceText(names []string, what string, v uint8) ([]byte, error) {
	if v == 0 || int(v) >= len(names) {
		return nil, fmt.Errorf("httpbreaker: invalid %s %d", what, v)
	}
	return []byte(names[v]), nil
}

func parseChoice(c choice, b []byte) error {
	for i, name := range c.choices()[1:] {
		if string(b) == name {
			c.set(uint8(i + 1))
			return nil
		}
	}
	return fmt.Errorf("want %s, got %q", oneOf(c), b)
}

// oneOf lists a choice's names as a message says them: "a, b or c".
func oneOf(c choice) string {
	names := c.choices()[1:]
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// fieldKind is the kind of value a Policy field holds. It decides the
// field's Go type, the checks every field of the kind gets, and how the
// config file writes it.
type fieldKind uint8

const (
	kindRate     fieldKind = iota // a float64 in (0, 1]
	kindCount                     // an int, at least 1
	kindDuration                  // a positive time.Duration
	kindChoice                    // one of a few names: a Mode, a RetryAfterRule
)

// policyField describes one Policy field.
type policyField struct {
	// name is the field's name in config files, JSON and error paths.
	name string
	kind fieldKind
	// off says whether the field can be Off.
	off bool
	// floor is the shortest duration the field takes, for kindDuration:
	// shorter is a unit mistake (Policy{OpenFor: 30} is 30ns), not a choice.
	// Zero means minDuration.
	floor time.Duration
	// ceiling is the longest duration the field takes, for kindDuration:
	// longer is a mistake too (a unit multiplied in twice, a number meant for
	// another field), which would leave a breaker doing something no one
	// wants, such as telling clients to come back in a century.
	ceiling time.Duration
	// most is the largest count the field takes, for kindCount; 0 means
	// only that it fits a uint32.
	most int
	// instead says, after a value past the ceiling or most, what the
	// writer may have wanted.
	instead string
	// at returns the field in p: a *float64, *int, *time.Duration or a
	// choice, as kind says.
	at func(p *Policy) any
	// rule, if set, checks what the kind's checks do not: a range of its own,
	// or the field against others. It returns what is wrong, if anything,
	// and the other field the problem is about, if any.
	rule func(p Policy) (msg, other string)
}

// policyFields is every Policy field, in the order that config files,
// JSON and error messages list them.
var policyFields = [...]policyField{
	{name: "failure_rate", kind: kindRate, off: true, at: func(p *Policy) any { return &p.FailureRate }},
	{name: "min_requests", kind: kindCount, at: func(p *Policy) any { return &p.MinRequests }},
	{name: "consecutive_failures", kind: kindCount, off: true, at: func(p *Policy) any { return &p.ConsecutiveFailures },
		rule: func(p Policy) (string, string) {
			if p.FailureRate == Off && p.ConsecutiveFailures == Off && p.SlowCallRate == Off {
				return "failure_rate and consecutive_failures are both off (and slow_call_rate too), so the breaker " +
					"could never open (use mode: disabled to turn it off)", "failure_rate"
			}
			return "", ""
		}},
	{name: "window", kind: kindDuration, ceiling: time.Hour, at: func(p *Policy) any { return &p.Window },
		instead: "; for a key with little traffic, judge its last calls instead (last_calls)"},
	{name: "buckets", kind: kindCount, at: func(p *Policy) any { return &p.Buckets },
		rule: func(p Policy) (string, string) {
			switch {
			case p.Buckets > 1000:
				return fmt.Sprintf("must be between 1 and 1000; got %d", p.Buckets), ""
			case p.Buckets >= 1 && p.Window > 0 && p.Window/time.Duration(p.Buckets) < time.Millisecond:
				return fmt.Sprintf("window %v in %d buckets makes buckets shorter than 1ms", p.Window, p.Buckets), "window"
			}
			return "", ""
		}},
	{name: "last_calls", kind: kindCount, off: true, most: maxLastCalls, at: func(p *Policy) any { return &p.LastCalls },
		rule: func(p Policy) (string, string) {
			if p.LastCalls > 0 && p.MinRequests > p.LastCalls {
				return fmt.Sprintf("%d calls can never hold min_requests (%d) outcomes", p.LastCalls, p.MinRequests), "min_requests"
			}
			return "", ""
		}},
	{name: "open_for", kind: kindDuration, ceiling: time.Hour, at: func(p *Policy) any { return &p.OpenFor },
		instead: "; failed probes lengthen the cooldown up to max_open_for, and ForceOpen keeps a key shut for longer"},
	{name: "max_open_for", kind: kindDuration, off: true, ceiling: 24 * time.Hour, at: func(p *Policy) any { return &p.MaxOpenFor },
		rule: func(p Policy) (string, string) {
			if m := p.MaxOpenFor; m > 0 && m < p.OpenFor {
				return fmt.Sprintf("%v must not be shorter than open_for (%v), or off", m, p.OpenFor), "open_for"
			}
			return "", ""
		}},
	{name: "half_open_requests", kind: kindCount, most: maxHalfOpenRequests, at: func(p *Policy) any { return &p.HalfOpenRequests },
		instead: ": probes are a few requests, not a stampede"},
	{name: "half_open_successes", kind: kindCount, at: func(p *Policy) any { return &p.HalfOpenSuccesses },
		rule: func(p Policy) (string, string) {
			if p.HalfOpenSuccesses > p.HalfOpenRequests {
				return fmt.Sprintf("%d successes cannot come from half_open_requests (%d) probes", p.HalfOpenSuccesses, p.HalfOpenRequests),
					"half_open_requests"
			}
			return "", ""
		}},
	{name: "quorum", kind: kindCount, most: maxQuorum, at: func(p *Policy) any { return &p.Quorum },
		instead: ": a fleet is made for tens of replicas, and a quorum above the live replicas means all of them"},
	{name: "probe_timeout", kind: kindDuration, off: true, ceiling: time.Hour, at: func(p *Policy) any { return &p.ProbeTimeout },
		instead: "; off waits for every probe however long it runs"},
	{name: "slow_call", kind: kindDuration, off: true, ceiling: time.Hour, at: func(p *Policy) any { return &p.SlowCall }},
	{name: "slow_call_rate", kind: kindRate, off: true, at: func(p *Policy) any { return &p.SlowCallRate },
		rule: func(p Policy) (string, string) {
			if p.SlowCallRate > 0 && p.SlowCall == Off {
				return "needs slow_call, which says what a slow call is", "slow_call"
			}
			return "", ""
		}},
	{name: "recovery_ramp", kind: kindDuration, off: true, ceiling: time.Hour, at: func(p *Policy) any { return &p.RecoveryRamp }},
	{name: "idle_ttl", kind: kindDuration, off: true, floor: time.Second, ceiling: 7 * 24 * time.Hour, at: func(p *Policy) any { return &p.IdleTTL },
		instead: "; off keeps the breaker for good"},
	{name: "upstream_retry_after", kind: kindChoice, at: func(p *Policy) any { return &p.UpstreamRetryAfter }},
	{name: "mode", kind: kindChoice, at: func(p *Policy) any { return &p.Mode }},
}

// minDuration is the shortest duration a Policy field takes unless its
// floor says otherwise.
const minDuration = time.Millisecond

// The largest counts some Policy fields take. A larger one is a mistake
// that would cost at request time: LastCalls keeps a byte per call for every
// key, HalfOpenRequests probes are no longer a careful test of an upstream,
// and a fleet of more than a hundred replicas is past what one store is
// built for (docs/fleet.md, Limits).
const (
	maxLastCalls        = 10000
	maxHalfOpenRequests = 1000
	maxQuorum           = 100
)

// meantLonger guesses what a duration too long to be meant was meant to
// be: a time.Duration multiplied by time.Second or time.Millisecond a
// second time (cfg.OpenFor * time.Second, where OpenFor is already 5s) is
// a round duration that many times too long; see meant for the other way.
// Both guesses may fit (30ms * time.Second is 30s * time.Millisecond).
func meantLonger(d time.Duration, floor, ceiling time.Duration) string {
	var guesses []string
	for _, u := range [...]struct {
		unit, round time.Duration
		name        string
	}{{time.Second, time.Millisecond, "time.Second"}, {time.Millisecond, time.Second, "time.Millisecond"}} {
		if d%u.unit != 0 {
			continue
		}
		if was := d / u.unit; was%u.round == 0 && was >= floor && was <= ceiling {
			guesses = append(guesses, fmt.Sprintf("%s (a time.Duration multiplied by %s again)", shortDuration(was), u.name))
		}
	}
	if len(guesses) == 0 {
		return ""
	}
	return "; did you mean " + strings.Join(guesses, " or ") + "?"
}

// meant guesses what a duration too short to be meant was meant to be: a
// bare number in Go is nanoseconds, so Policy{OpenFor: 30} is 30ns, and
// 30 * time.Second (30s in a config file) is the likely intent; a number in
// the thousands was likely milliseconds.
func meant(d time.Duration) string {
	switch n := int64(d); {
	case n < 1000:
		return fmt.Sprintf("; did you mean %d * time.Second (%ds in a config file)?", n, n)
	case n < int64(time.Millisecond):
		return fmt.Sprintf("; did you mean %d * time.Millisecond (%dms in a config file)?", n, n)
	}
	return ""
}

// shortDuration writes d as a config file would: "1h", "24h", "10m",
// without the zero minutes and seconds of time.Duration's String.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// isSet reports whether the field is not zero in p, which is to say not
// inherited.
func (f *policyField) isSet(p *Policy) bool {
	switch v := f.at(p).(type) {
	case *float64:
		return *v != 0
	case *int:
		return *v != 0
	case *time.Duration:
		return *v != 0
	case choice:
		return v.get() != 0
	}
	panic("httpbreaker: policy field " + f.name + " has no known type")
}

// isOff reports whether the field is Off in p.
func (f *policyField) isOff(p *Policy) bool {
	switch v := f.at(p).(type) {
	case *float64:
		return *v == Off
	case *int:
		return *v == Off
	case *time.Duration:
		return *v == Off
	}
	return false
}

// inherit sets the field in p from base if p leaves it zero.
func (f *policyField) inherit(p, base *Policy) {
	if f.isSet(p) {
		return
	}
	switch v := f.at(p).(type) {
	case *float64:
		*v = *f.at(base).(*float64)
	case *int:
		*v = *f.at(base).(*int)
	case *time.Duration:
		*v = *f.at(base).(*time.Duration)
	case choice:
		v.set(f.at(base).(choice).get())
	}
}

// check returns what is wrong with the field in a resolved policy, and the
// other field the problem is about, if any.
func (f *policyField) check(p Policy) (msg, other string) {
	orOff := ""
	if f.off {
		orOff = ", or off"
	}
	if f.isOff(&p) && !f.off {
		return "cannot be off", ""
	}
	if !f.isOff(&p) {
		switch v := f.at(&p).(type) {
		case *float64:
			if !(*v > 0 && *v <= 1) {
				return fmt.Sprintf("must be in (0, 1]%s; got %v", orOff, *v), ""
			}
		case *int:
			if *v < 1 || int64(*v) > math.MaxUint32 {
				return fmt.Sprintf("must be at least 1%s; got %d", orOff, *v), ""
			}
			if f.most > 0 && *v > f.most {
				return fmt.Sprintf("%d is too many (at most %d)%s", *v, f.most, f.instead), ""
			}
		case *time.Duration:
			if *v <= 0 {
				return fmt.Sprintf("must be positive%s; got %v", orOff, *v), ""
			}
			floor := cmp.Or(f.floor, minDuration)
			if *v < floor {
				return fmt.Sprintf("%v is too short (at least %v)%s", *v, floor, meant(*v)), ""
			}
			if f.ceiling > 0 && *v > f.ceiling {
				hint := meantLonger(*v, floor, f.ceiling)
				if hint == "" {
					hint = f.instead
				}
				return fmt.Sprintf("%s is too long (at most %s)%s", shortDuration(*v), shortDuration(f.ceiling), hint), ""
			}
		case choice:
			if v.get() == 0 || int(v.get()) >= len(v.choices()) {
				return fmt.Sprintf("must be %s; got %s", oneOf(v), choiceName(v.choices(), f.name, v.get())), ""
			}
		}
	}
	if f.rule != nil {
		return f.rule(p)
	}
	return "", ""
}

// inherit returns p with its zero fields taken from base.
func (p Policy) inherit(base Policy) Policy {
	for i := range policyFields {
		policyFields[i].inherit(&p, &base)
	}
	return p
}

// resolve fills the fields that are still unset with the built-in defaults.
// An unset MaxOpenFor is never shorter than OpenFor, so that a long OpenFor
// alone is a valid policy, and an unset HalfOpenSuccesses is
// HalfOpenRequests.
func (p Policy) resolve() Policy {
	maxUnset := p.MaxOpenFor == 0
	p = p.inherit(DefaultPolicy())
	if maxUnset && p.OpenFor > p.MaxOpenFor {
		p.MaxOpenFor = p.OpenFor
	}
	if p.HalfOpenSuccesses == 0 {
		p.HalfOpenSuccesses = p.HalfOpenRequests
	}
	return p
}

// problem is one thing wrong with a resolved policy: the field it is
// reported under, another field it is about (or ""), and what is wrong.
type problem struct {
	field, other string
	msg          string
}

// problems lists what is wrong with a resolved policy.
func (p Policy) problems() []problem {
	var out []problem
	for i := range policyFields {
		f := &policyFields[i]
		if msg, other := f.check(p); msg != "" {
			out = append(out, problem{field: f.name, other: other, msg: msg})
		}
	}
	return out
}

// Config is a set of policies: defaults for every key, and overrides that
// name only what differs. A key in Keys that ends in * names a family,
// every key with that prefix; a key's policy inherits what it leaves unset
// from the longest family that covers it, and so on to the defaults.
// LoadConfig reads one from a file.
type Config struct {
	Defaults Policy            `json:"defaults"`
	Keys     map[string]Policy `json:"keys,omitempty"`
}

// isFamily reports whether a key of Config.Keys names a family of keys.
func isFamily(key string) bool { return strings.HasSuffix(key, "*") }

// policyKeys returns the entries of c.Keys that make key's policy, nearest
// first: key's own, if it has one, then every family whose prefix key has,
// longest first. Families cover keys that come from requests (a provider
// and a model), so that their policies need not list every one; they nest,
// as key's own policy, and each family's, inherits what it leaves unset from
// the next. For a family, its own entry and the shorter families.
func (c Config) policyKeys(key string) []string {
	if _, own := c.Keys[key]; own {
		return append([]string{key}, c.familiesOf(key)...)
	}
	return c.familiesOf(key)
}

// familiesOf returns the families that cover key (a key, or a family's
// prefix), key itself aside, longest first.
func (c Config) familiesOf(key string) []string {
	prefix := strings.TrimSuffix(key, "*")
	var families []string
	for k := range c.Keys {
		if isFamily(k) && k != key && strings.HasPrefix(prefix, k[:len(k)-1]) {
			families = append(families, k)
		}
	}
	slices.SortFunc(families, func(a, b string) int { return len(b) - len(a) })
	return families
}

// named reports whether key has a policy of its own: a key, not a family,
// of c.Keys. Manual control and the status page know such keys before any
// request has used them.
func (c Config) named(key string) bool {
	_, own := c.Keys[key]
	return own && !isFamily(key)
}

// checkPolicyKey says what is wrong with a key of Config.Keys, if anything:
// what checkKey says of a key, or a * that does not end it.
func checkPolicyKey(key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if i := strings.IndexByte(key, '*'); i >= 0 && i < len(key)-1 {
		return fmt.Errorf("a * may only end a key, where it names a family (\"openai:*\" covers every key that begins with \"openai:\"); "+
			"this one has a * at byte %d", i)
	}
	return nil
}

// lines records where each field of a config file was written, by path.
type lines map[string]int

// validate checks every policy of c: the defaults, then each key's
// override on top of the defaults.
func (c Config) validate(at lines) []*FieldError {
	errs := policyErrors("defaults", c.Defaults, Policy{}, at)
	for _, name := range slices.Sorted(maps.Keys(c.Keys)) {
		if err := checkPolicyKey(name); err != nil {
			line := at["keys."+name]
			if line == 0 {
				line = at["keys"]
			}
			errs = append(errs, &FieldError{Path: "keys", Line: line, Msg: quoteKey(name) + ": " + err.Error()})
			continue
		}
		errs = append(errs, policyErrors("keys."+name, c.Keys[name], c.inheritedFrom(c.familiesOf(name)), at)...)
	}
	return errs
}

// policyErrors checks own on top of base, reporting each problem once, under
// the policy that set one of the fields it is about: a bad default is
// reported under defaults, not again for every key that inherits it.
func policyErrors(prefix string, own, base Policy, at lines) []*FieldError {
	var errs []*FieldError
	merged := own.inherit(base)
	problems := merged.resolve().problems()
	if merged.LastCalls > 0 && merged.Window != 0 { // both set by the policies, not by the built-in defaults
		problems = append(problems, problem{field: "last_calls", other: "window",
			msg: "last_calls and window are both set: a breaker judges the last calls or a time window, not both " +
				"(set last_calls: off to use the time window)"})
	}
	for _, pr := range problems {
		field := pr.field
		if !fieldByName(field).isSet(&own) {
			if pr.other == "" || !fieldByName(pr.other).isSet(&own) {
				continue // inherited: reported where it was set
			}
			field = pr.other
		}
		path := prefix + "." + field
		errs = append(errs, &FieldError{Path: path, Line: at[path], Msg: pr.msg})
	}
	return errs
}

// fieldByName returns the policy field with that config name.
func fieldByName(name string) *policyField {
	for i := range policyFields {
		if policyFields[i].name == name {
			return &policyFields[i]
		}
	}
	panic("httpbreaker: no policy field " + name)
}

// policyFor returns the resolved policy of the key name: its own, its
// family's or the defaults.
func (c Config) policyFor(name string) Policy {
	return c.inherited(name).resolve()
}

// inheritedFrom returns the policy that keys make, nearest first, over the
// defaults.
func (c Config) inheritedFrom(keys []string) Policy {
	p := c.Defaults
	for i := len(keys) - 1; i >= 0; i-- {
		p = c.Keys[keys[i]].inherit(p)
	}
	return p
}

// inherited returns name's policy unresolved: its own and its families',
// nearest first, over the defaults.
func (c Config) inherited(name string) Policy {
	return c.inheritedFrom(c.policyKeys(name))
}

// FieldError is one invalid field of a policy or config file: its config
// path ("keys.catalog.failure_rate"), its line (0 from code) and what is
// wrong. Errors from New and LoadConfig join one or more of them.
type FieldError struct {
	Path string
	Line int
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Path, e.Msg)
	}
	return e.Path + ": " + e.Msg
}

// joinFieldErrors returns errs as one error, nil if there are none.
func joinFieldErrors(errs []*FieldError) error {
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return errors.Join(out...)
}
