package httpbreaker

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Off turns off a Policy field that can be turned off: FailureRate,
// ConsecutiveFailures, MaxOpenFor, SlowCall, RecoveryRamp and IdleTTL. Write it as Off in Go
// (Policy{SlowCall: httpbreaker.Off}) and as off in a config file.
//
// Off is needed because the zero value of every Policy field means "inherit":
// a per-key policy that leaves a field zero takes the default's value, so zero
// cannot also mean "turn this off".
const Off = -1

// Mode says what a breaker does with what it learns.
type Mode uint8

// The modes. The zero Mode means "inherit", which resolves to ModeEnforce.
const (
	// ModeEnforce rejects requests while the breaker is open (the default).
	ModeEnforce Mode = iota + 1
	// ModeObserve runs the breaker as if enforcing (it trips, recovers, logs
	// and reports metrics) but never rejects: requests that enforce mode would
	// have rejected reach the handler and are counted as "would_reject". Use it
	// to roll a policy out and see what it would do before it can do harm.
	ModeObserve
	// ModeDisabled passes every request straight to the handler and records
	// nothing.
	ModeDisabled
)

var modeNames = [...]string{"", "enforce", "observe", "disabled"}

// String returns the mode's config name: "enforce", "observe" or "disabled"
// ("" for the zero Mode).
func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// MarshalText writes the mode's config name.
func (m Mode) MarshalText() ([]byte, error) {
	if m == 0 || int(m) >= len(modeNames) {
		return nil, fmt.Errorf("httpbreaker: invalid mode %d", m)
	}
	return []byte(m.String()), nil
}

// UnmarshalText reads "enforce", "observe" or "disabled".
func (m *Mode) UnmarshalText(b []byte) error {
	for i, name := range modeNames[1:] {
		if string(b) == name {
			*m = Mode(i + 1)
			return nil
		}
	}
	return fmt.Errorf("want enforce, observe or disabled, got %q", b)
}

// Policy says when a breaker opens, how long it stays open and how it comes
// back. The zero value of every field means "inherit": from the defaults for
// a per-key policy, and from the built-in defaults (DefaultPolicy) for the
// defaults themselves. So Policy{} is the built-in defaults, and a per-key
// policy names only what differs. Fields that can be turned off take Off.
//
// A breaker opens when either trip condition holds in the closed state:
// FailureRate (with at least MinRequests outcomes in the Window) or
// ConsecutiveFailures. Open, it rejects requests for OpenFor; then it admits
// HalfOpenRequests probes. If all of them succeed it closes; if one fails it
// opens again for twice as long as last time (with jitter, at most
// MaxOpenFor). Closing resets the cooldown to OpenFor.
type Policy struct {
	// FailureRate trips the breaker when failures / (failures + successes)
	// in the window reaches it, once MinRequests outcomes are in the window.
	// In (0, 1], or Off. Default 0.5. Excluded outcomes and requests still
	// in flight are not part of the rate.
	FailureRate float64 `json:"failure_rate,omitempty"`
	// MinRequests is how many outcomes (successes plus failures) the window
	// must hold before FailureRate can trip the breaker. Default 10.
	MinRequests int `json:"min_requests,omitempty"`
	// ConsecutiveFailures trips the breaker after this many failures in a
	// row, whatever the rate. At least 1, or Off. Default 5.
	ConsecutiveFailures int `json:"consecutive_failures,omitempty"`
	// Window is the span of the rolling window that FailureRate and
	// MinRequests look at. Default 10s.
	Window time.Duration `json:"window,omitempty"`
	// Buckets is how many parts the window rolls in: outcomes leave the
	// window one bucket (Window / Buckets) at a time. Between 1 and 1000,
	// and each bucket at least 1ms. Default 10.
	Buckets int `json:"buckets,omitempty"`
	// OpenFor is how long the breaker stays open after it trips from closed,
	// before it admits the first probe. Default 30s.
	OpenFor time.Duration `json:"open_for,omitempty"`
	// MaxOpenFor caps the cooldown, which doubles (with jitter) each time a
	// probe fails. At least OpenFor, or Off to keep every cooldown at
	// OpenFor. Default 5m, or OpenFor when that is longer.
	MaxOpenFor time.Duration `json:"max_open_for,omitempty"`
	// HalfOpenRequests is how many probes the half-open breaker admits at
	// once, however many requests arrive; all of them must succeed for the
	// breaker to close. Default 3.
	HalfOpenRequests int `json:"half_open_requests,omitempty"`
	// SlowCall, when set, makes an admitted request that takes longer than
	// this a failure, whatever its status. Default off. Leave it off for
	// route groups that stream (SSE, websockets, long polls).
	SlowCall time.Duration `json:"slow_call,omitempty"`
	// RecoveryRamp, when set, eases a recovered breaker back in: after the
	// probes succeed it admits a share of requests that rises linearly from
	// none to all over this time, answers the rest with the reject response,
	// and trips again as usual if they fail. Default off.
	RecoveryRamp time.Duration `json:"recovery_ramp,omitempty"`
	// IdleTTL drops a key's breaker, and its metric series, once the key
	// has served no request for this long, so that a service with many
	// short-lived keys keeps flat memory. Only a closed breaker is dropped;
	// the key's next request gets a new one. Default: one hour for keys a
	// KeyedMiddleware chose, off for Middleware's keys.
	IdleTTL time.Duration `json:"idle_ttl,omitempty"`
	// Mode is enforce (the default), observe or disabled.
	Mode Mode `json:"mode,omitempty"`
}

// DefaultPolicy returns the built-in defaults, every field set but IdleTTL,
// whose default depends on how the key was made (see Policy.IdleTTL).
func DefaultPolicy() Policy {
	return Policy{
		FailureRate:         0.5,
		MinRequests:         10,
		ConsecutiveFailures: 5,
		Window:              10 * time.Second,
		Buckets:             10,
		OpenFor:             30 * time.Second,
		MaxOpenFor:          5 * time.Minute,
		HalfOpenRequests:    3,
		SlowCall:            Off,
		RecoveryRamp:        Off,
		Mode:                ModeEnforce,
	}
}

// inherit returns p with its zero fields taken from base.
func (p Policy) inherit(base Policy) Policy {
	pick(&p.FailureRate, base.FailureRate)
	pick(&p.MinRequests, base.MinRequests)
	pick(&p.ConsecutiveFailures, base.ConsecutiveFailures)
	pick(&p.Window, base.Window)
	pick(&p.Buckets, base.Buckets)
	pick(&p.OpenFor, base.OpenFor)
	pick(&p.MaxOpenFor, base.MaxOpenFor)
	pick(&p.HalfOpenRequests, base.HalfOpenRequests)
	pick(&p.SlowCall, base.SlowCall)
	pick(&p.RecoveryRamp, base.RecoveryRamp)
	pick(&p.IdleTTL, base.IdleTTL)
	pick(&p.Mode, base.Mode)
	return p
}

func pick[T comparable](field *T, base T) {
	var zero T
	if *field == zero {
		*field = base
	}
}

// resolve fills the fields that are still unset with the built-in defaults.
// An unset MaxOpenFor is never shorter than OpenFor, so that a long OpenFor
// alone is a valid policy.
func (p Policy) resolve() Policy {
	maxUnset := p.MaxOpenFor == 0
	p = p.inherit(DefaultPolicy())
	if maxUnset && p.OpenFor > p.MaxOpenFor {
		p.MaxOpenFor = p.OpenFor
	}
	return p
}

// set reports the fields of p that are not zero, by config name.
func (p Policy) set() map[string]bool {
	return map[string]bool{
		"failure_rate":         p.FailureRate != 0,
		"min_requests":         p.MinRequests != 0,
		"consecutive_failures": p.ConsecutiveFailures != 0,
		"window":               p.Window != 0,
		"buckets":              p.Buckets != 0,
		"open_for":             p.OpenFor != 0,
		"max_open_for":         p.MaxOpenFor != 0,
		"half_open_requests":   p.HalfOpenRequests != 0,
		"slow_call":            p.SlowCall != 0,
		"recovery_ramp":        p.RecoveryRamp != 0,
		"idle_ttl":             p.IdleTTL != 0,
		"mode":                 p.Mode != 0,
	}
}

// problem is one thing wrong with a resolved policy. fields names the config
// fields it is about, the first being the one the message is reported under.
type problem struct {
	fields []string
	msg    string
}

// problems lists what is wrong with a resolved policy.
func (p Policy) problems() []problem {
	var out []problem
	add := func(msg string, fields ...string) { out = append(out, problem{fields, msg}) }
	if r := p.FailureRate; r != Off && !(r > 0 && r <= 1) {
		add(fmt.Sprintf("must be in (0, 1], or off; got %v", r), "failure_rate")
	}
	if p.MinRequests < 1 || p.MinRequests > math.MaxUint32 {
		add(fmt.Sprintf("must be at least 1; got %d", p.MinRequests), "min_requests")
	}
	if c := p.ConsecutiveFailures; c != Off && (c < 1 || c > math.MaxUint32) {
		add(fmt.Sprintf("must be at least 1, or off; got %d", c), "consecutive_failures")
	}
	if p.FailureRate == Off && p.ConsecutiveFailures == Off {
		add("failure_rate and consecutive_failures are both off, so the breaker could never open (use mode: disabled to turn it off)",
			"consecutive_failures", "failure_rate")
	}
	if p.Window <= 0 {
		add(fmt.Sprintf("must be positive; got %v", p.Window), "window")
	}
	if p.Buckets < 1 || p.Buckets > 1000 {
		add(fmt.Sprintf("must be between 1 and 1000; got %d", p.Buckets), "buckets")
	} else if p.Window > 0 && p.Window/time.Duration(p.Buckets) < time.Millisecond {
		add(fmt.Sprintf("window %v in %d buckets makes buckets shorter than 1ms", p.Window, p.Buckets), "buckets", "window")
	}
	if p.OpenFor <= 0 {
		add(fmt.Sprintf("must be positive; got %v", p.OpenFor), "open_for")
	}
	if m := p.MaxOpenFor; m != Off && m < p.OpenFor {
		add(fmt.Sprintf("%v must not be shorter than open_for (%v), or off", m, p.OpenFor), "max_open_for", "open_for")
	}
	if p.HalfOpenRequests < 1 || p.HalfOpenRequests > math.MaxUint32 {
		add(fmt.Sprintf("must be at least 1; got %d", p.HalfOpenRequests), "half_open_requests")
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"slow_call", p.SlowCall}, {"recovery_ramp", p.RecoveryRamp}, {"idle_ttl", p.IdleTTL}} {
		if f.d < 0 && f.d != Off {
			add(fmt.Sprintf("must be positive, or off; got %v", f.d), f.name)
		}
	}
	if p.Mode < ModeEnforce || p.Mode > ModeDisabled {
		add(fmt.Sprintf("must be enforce, observe or disabled; got %v", p.Mode), "mode")
	}
	return out
}

// FieldError is one invalid field of a policy or config file. Errors from
// New and LoadConfig wrap one or more of them (see errors.Join); errors.As
// finds the first.
type FieldError struct {
	// Path is the field's config path: "defaults.open_for",
	// "keys.catalog.failure_rate".
	Path string
	// Line is the line in the config file, or 0 when the policy came from code.
	Line int
	// Msg says what is wrong.
	Msg string
}

func (e *FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Path, e.Msg)
	}
	return e.Path + ": " + e.Msg
}

// Config is a set of policies: defaults for every key, and overrides for
// some keys. An override names only the fields that differ from the
// defaults; the rest are inherited. LoadConfig reads one from a file.
type Config struct {
	// Defaults apply to every key; unset fields take the built-in defaults.
	Defaults Policy `json:"defaults"`
	// Keys holds per-key overrides, by breaker key.
	Keys map[string]Policy `json:"keys,omitempty"`
}

// lines records where each field of a config file was written, by path.
type lines map[string]int

// validate checks every policy of c: the defaults, then each key's
// override on top of the defaults.
func (c Config) validate(at lines) []error {
	errs := policyErrors("defaults", c.Defaults, Policy{}, at)
	for _, key := range slices.Sorted(maps.Keys(c.Keys)) {
		if key == "" {
			errs = append(errs, &FieldError{Path: "keys", Line: at["keys"], Msg: "a key must not be empty"})
			continue
		}
		errs = append(errs, policyErrors("keys."+key, c.Keys[key], c.Defaults, at)...)
	}
	return errs
}

// policyErrors checks own on top of base, reporting each problem once, under
// the policy that set one of the fields it is about: a bad default is
// reported under defaults, not again for every key that inherits it.
func policyErrors(prefix string, own, base Policy, at lines) []error {
	var errs []error
	set := own.set()
	for _, pr := range own.inherit(base).resolve().problems() {
		if !slices.ContainsFunc(pr.fields, func(f string) bool { return set[f] }) {
			continue
		}
		field := pr.fields[0]
		if !set[field] {
			field = pr.fields[1]
		}
		path := prefix + "." + field
		errs = append(errs, &FieldError{Path: path, Line: at[path], Msg: pr.msg})
	}
	return errs
}

// policyFor returns the resolved policy for key.
func (c Config) policyFor(key string) Policy {
	return c.Keys[key].inherit(c.Defaults).resolve()
}

// LoadConfig reads a Config from YAML or JSON (JSON is YAML too):
//
//	defaults:
//	  failure_rate: 0.5
//	  open_for: 30s
//	keys:
//	  scaffolder:
//	    consecutive_failures: off
//	    slow_call: 2s
//	  search:
//	    mode: observe
//
// Field names are the snake_case json tags of Policy; durations are strings
// such as "30s" or "1m30s"; off turns a field off where Policy allows Off.
// Reading is strict: an unknown or repeated field, a value of the wrong type,
// an explicit zero (which in Go would mean "inherit") and every invalid value
// are errors, each naming the field's path and line, all of them at once.
// An empty document is the built-in defaults.
func LoadConfig(r io.Reader) (Config, error) {
	dec := yaml.NewDecoder(r)
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, nil
		}
		return Config{}, fmt.Errorf("httpbreaker: config: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return Config{}, fmt.Errorf("httpbreaker: config: %w", err)
		}
		return Config{}, fmt.Errorf("httpbreaker: config: line %d: want one document, found another", extra.Line)
	}
	var c Config
	if err := c.UnmarshalYAML(&doc); err != nil {
		return Config{}, fmt.Errorf("httpbreaker: config: %w", err)
	}
	return c, nil
}

// UnmarshalYAML decodes and validates a Config with the rules of LoadConfig,
// so that a Config can sit inside a larger YAML file read with
// go.yaml.in/yaml/v3; its error paths are relative to the Config.
func (c *Config) UnmarshalYAML(n *yaml.Node) error {
	d := decoder{at: lines{}}
	out := d.config(n)
	// A field that failed to decode stays zero and so inherits: validating
	// what did decode reports the rest of the file's mistakes in one go, in
	// the order of the file.
	errs := append(d.errs, out.validate(d.at)...)
	slices.SortStableFunc(errs, func(a, b error) int {
		var fa, fb *FieldError
		errors.As(a, &fa)
		errors.As(b, &fb)
		return fa.Line - fb.Line
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	*c = out
	return nil
}

// decoder turns a YAML node tree into a Config, collecting every error.
type decoder struct {
	errs []error
	at   lines
}

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{Path: path, Line: n.Line, Msg: fmt.Sprintf(format, args...)})
}

// fields walks a mapping node, calling f for each key and value, and reports
// anything that is not a mapping with unique scalar keys.
func (d *decoder) fields(n *yaml.Node, path string, f func(key string, k, v *yaml.Node)) {
	n = deref(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping, got %s", describe(n))
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "want a field name, got %s", describe(k))
			continue
		}
		if seen[k.Value] {
			d.fail(k, join(path, k.Value), "repeated")
			continue
		}
		seen[k.Value] = true
		f(k.Value, k, deref(v))
	}
}

func (d *decoder) config(n *yaml.Node) Config {
	var c Config
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return c
		}
		n = n.Content[0]
	}
	d.fields(n, "", func(name string, k, v *yaml.Node) {
		switch name {
		case "defaults":
			d.at["defaults"] = k.Line
			c.Defaults = d.policy(v, "defaults")
		case "keys":
			d.at["keys"] = k.Line
			c.Keys = map[string]Policy{}
			d.fields(v, "keys", func(key string, k, v *yaml.Node) {
				if key == "" {
					d.fail(k, "keys", "a key must not be empty")
					return
				}
				d.at["keys."+key] = k.Line
				c.Keys[key] = d.policy(v, "keys."+key)
			})
		default:
			d.fail(k, name, "unknown field (want defaults or keys)")
		}
	})
	return c
}

var policyFields = []string{
	"failure_rate", "min_requests", "consecutive_failures", "window", "buckets",
	"open_for", "max_open_for", "half_open_requests", "slow_call", "recovery_ramp", "idle_ttl", "mode",
}

func (d *decoder) policy(n *yaml.Node, path string) Policy {
	var p Policy
	d.fields(n, path, func(name string, k, v *yaml.Node) {
		fpath := path + "." + name
		d.at[fpath] = v.Line
		switch name {
		case "failure_rate":
			d.rate(v, fpath, &p.FailureRate)
		case "min_requests":
			d.count(v, fpath, &p.MinRequests, false)
		case "consecutive_failures":
			d.count(v, fpath, &p.ConsecutiveFailures, true)
		case "window":
			d.duration(v, fpath, &p.Window, false)
		case "buckets":
			d.count(v, fpath, &p.Buckets, false)
		case "open_for":
			d.duration(v, fpath, &p.OpenFor, false)
		case "max_open_for":
			d.duration(v, fpath, &p.MaxOpenFor, true)
		case "half_open_requests":
			d.count(v, fpath, &p.HalfOpenRequests, false)
		case "slow_call":
			d.duration(v, fpath, &p.SlowCall, true)
		case "recovery_ramp":
			d.duration(v, fpath, &p.RecoveryRamp, true)
		case "idle_ttl":
			d.duration(v, fpath, &p.IdleTTL, true)
		case "mode":
			if v.Kind != yaml.ScalarNode || v.Tag != "!!str" {
				d.fail(v, fpath, "want enforce, observe or disabled, got %s", describe(v))
			} else if err := p.Mode.UnmarshalText([]byte(v.Value)); err != nil {
				d.fail(v, fpath, "%v", err)
			}
		default:
			d.fail(k, fpath, "unknown field (want one of %s)", strings.Join(policyFields, ", "))
		}
	})
	return p
}

// isOff reports whether v is the scalar off, and whether off is allowed.
func (d *decoder) isOff(v *yaml.Node, path string, allowed bool) bool {
	if v.Kind != yaml.ScalarNode || v.Value != "off" || v.Tag != "!!str" {
		return false
	}
	if !allowed {
		d.fail(v, path, "cannot be off")
	}
	return true
}

// The decoders below check only what the Go types cannot carry: a zero would
// read as "inherit" and a negative number as Off, so both are refused here.
// Ranges are checked by Policy.problems, for files and code alike.

func (d *decoder) rate(v *yaml.Node, path string, out *float64) {
	if d.isOff(v, path, true) {
		*out = Off
		return
	}
	f, err := strconv.ParseFloat(v.Value, 64)
	if v.Kind != yaml.ScalarNode || (v.Tag != "!!float" && v.Tag != "!!int") || err != nil {
		d.fail(v, path, "want a number in (0, 1], or off; got %s", describe(v))
	} else if !(f > 0) {
		d.fail(v, path, "must be in (0, 1], or off; got %s", v.Value)
	} else {
		*out = f
	}
}

func (d *decoder) count(v *yaml.Node, path string, out *int, offOK bool) {
	if d.isOff(v, path, offOK) {
		*out = Off
		return
	}
	n, err := strconv.ParseInt(v.Value, 10, strconv.IntSize)
	if v.Kind != yaml.ScalarNode || v.Tag != "!!int" || err != nil {
		d.fail(v, path, "want a whole number%s; got %s", orOff(offOK), describe(v))
	} else if n < 1 {
		d.fail(v, path, "must be at least 1%s; got %d", orOff(offOK), n)
	} else {
		*out = int(n)
	}
}

func (d *decoder) duration(v *yaml.Node, path string, out *time.Duration, offOK bool) {
	if d.isOff(v, path, offOK) {
		*out = Off
		return
	}
	if v.Kind != yaml.ScalarNode || v.Tag != "!!str" {
		d.fail(v, path, "want a duration such as \"30s\" or \"1m30s\"%s; got %s", orOff(offOK), describe(v))
		return
	}
	t, err := time.ParseDuration(v.Value)
	if err != nil {
		d.fail(v, path, "want a duration such as \"30s\" or \"1m30s\"%s; got %q", orOff(offOK), v.Value)
	} else if t <= 0 {
		d.fail(v, path, "must be positive%s; got %q", orOff(offOK), v.Value)
	} else {
		*out = t
	}
}

func orOff(offOK bool) string {
	if offOK {
		return ", or off"
	}
	return ""
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "no value"
		case "!!str":
			return strconv.Quote(n.Value)
		}
		return n.Value
	}
	return "an unexpected node"
}

// MarshalJSON writes p in the config file format: snake_case names,
// durations as strings such as "30s", off for Off, unset fields left out.
func (p Policy) MarshalJSON() ([]byte, error) {
	out := struct {
		FailureRate         any `json:"failure_rate,omitempty"`
		MinRequests         any `json:"min_requests,omitempty"`
		ConsecutiveFailures any `json:"consecutive_failures,omitempty"`
		Window              any `json:"window,omitempty"`
		Buckets             any `json:"buckets,omitempty"`
		OpenFor             any `json:"open_for,omitempty"`
		MaxOpenFor          any `json:"max_open_for,omitempty"`
		HalfOpenRequests    any `json:"half_open_requests,omitempty"`
		SlowCall            any `json:"slow_call,omitempty"`
		RecoveryRamp        any `json:"recovery_ramp,omitempty"`
		IdleTTL             any `json:"idle_ttl,omitempty"`
		Mode                any `json:"mode,omitempty"`
	}{
		FailureRate:         jsonField(p.FailureRate, func(r float64) any { return r }),
		MinRequests:         jsonField(p.MinRequests, func(n int) any { return n }),
		ConsecutiveFailures: jsonField(p.ConsecutiveFailures, func(n int) any { return n }),
		Window:              jsonField(p.Window, time.Duration.String),
		Buckets:             jsonField(p.Buckets, func(n int) any { return n }),
		OpenFor:             jsonField(p.OpenFor, time.Duration.String),
		MaxOpenFor:          jsonField(p.MaxOpenFor, time.Duration.String),
		HalfOpenRequests:    jsonField(p.HalfOpenRequests, func(n int) any { return n }),
		SlowCall:            jsonField(p.SlowCall, time.Duration.String),
		RecoveryRamp:        jsonField(p.RecoveryRamp, time.Duration.String),
		IdleTTL:             jsonField(p.IdleTTL, time.Duration.String),
	}
	if p.Mode != 0 {
		out.Mode = p.Mode.String()
	}
	return json.Marshal(out)
}

func jsonField[T int | float64 | time.Duration, V any](v T, show func(T) V) any {
	switch v {
	case 0:
		return nil
	case Off:
		return "off"
	}
	return show(v)
}

// UnmarshalJSON reads a policy written as in a config file, with the rules
// of LoadConfig.
func (p *Policy) UnmarshalJSON(b []byte) error {
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("httpbreaker: policy: %w", err)
	}
	d := decoder{at: lines{}}
	var out Policy
	if len(n.Content) > 0 {
		out = d.policy(n.Content[0], "policy")
	}
	if err := errors.Join(append(d.errs, policyErrors("policy", out, Policy{}, d.at)...)...); err != nil {
		return err
	}
	*p = out
	return nil
}

// UnmarshalJSON reads a config with the rules of LoadConfig, so that a
// Config can sit inside a larger JSON document read with encoding/json.
func (c *Config) UnmarshalJSON(b []byte) error {
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("httpbreaker: config: %w", err)
	}
	return c.UnmarshalYAML(&n)
}
