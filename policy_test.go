package httpbreaker

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestOverridesInheritAndOffIsExplicit(t *testing.T) {
	c, err := LoadConfig(strings.NewReader(`
defaults:
  slow_call: 1s
  consecutive_failures: 3
  open_for: 1m
keys:
  a:
    slow_call: off
  b:
    failure_rate: 0.9
`))
	if err != nil {
		t.Fatal(err)
	}
	a, b := c.policyFor("a"), c.policyFor("b")
	if a.SlowCall != Off || a.ConsecutiveFailures != 3 || a.OpenFor != time.Minute {
		t.Errorf("a: %+v, want slow_call off and the rest inherited", a)
	}
	if b.SlowCall != time.Second || b.FailureRate != 0.9 || b.MinRequests != 10 {
		t.Errorf("b: %+v, want slow_call 1s inherited, its own rate, built-in min_requests", b)
	}
}

func TestUnsetMaxOpenForIsNeverShorterThanOpenFor(t *testing.T) {
	p := Policy{OpenFor: 10 * time.Minute}.resolve()
	if p.MaxOpenFor != 10*time.Minute {
		t.Fatalf("max_open_for %v, want it raised to open_for", p.MaxOpenFor)
	}
	if _, err := New(WithPolicy(Policy{OpenFor: 10 * time.Minute})); err != nil {
		t.Fatalf("a long open_for alone: %v", err)
	}
}

func TestModeText(t *testing.T) {
	for _, m := range []Mode{ModeEnforce, ModeObserve, ModeDisabled} {
		text, err := m.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back Mode
		if err := back.UnmarshalText(text); err != nil || back != m {
			t.Fatalf("%v round-trips to %v, %v", m, back, err)
		}
	}
	if _, err := Mode(0).MarshalText(); err == nil {
		t.Fatal("the zero Mode marshalled")
	}
}

// TestEveryPolicyFieldIsInTheTable holds policyFields to the Policy type: a
// field added to Policy without its entry fails here, and each entry reaches
// its own field, so that inheritance, validation and both codecs, which walk
// the table, cover every field.
func TestEveryPolicyFieldIsInTheTable(t *testing.T) {
	typ := reflect.TypeFor[Policy]()
	if typ.NumField() != len(policyFields) {
		t.Fatalf("Policy has %d fields, policyFields %d entries", typ.NumField(), len(policyFields))
	}
	var p Policy
	base := reflect.ValueOf(&p).Elem()
	for i := range policyFields {
		f := &policyFields[i]
		ptr := reflect.ValueOf(f.at(&p)).Pointer()
		found := -1
		for j := range typ.NumField() {
			if base.Field(j).Addr().Pointer() == ptr {
				found = j
			}
		}
		if found < 0 {
			t.Fatalf("%s: at does not point into the Policy", f.name)
		}
		goName := typ.Field(found).Name
		var snake []rune
		for k, r := range goName {
			if k > 0 && r >= 'A' && r <= 'Z' && !(goName[k-1] >= 'A' && goName[k-1] <= 'Z') {
				snake = append(snake, '_')
			}
			snake = append(snake, []rune(strings.ToLower(string(r)))...)
		}
		if string(snake) != f.name && !(goName == "IdleTTL" && f.name == "idle_ttl") {
			t.Errorf("entry %s points at Policy.%s", f.name, goName)
		}
	}
}

// TestEveryFieldInheritsAndRoundTrips sets each field alone and checks that
// it survives inheritance and JSON both ways, Off included where allowed.
func TestEveryFieldInheritsAndRoundTrips(t *testing.T) {
	values := map[string][]string{ // config values to try, by field
		"failure_rate": {"0.25"}, "min_requests": {"7"}, "consecutive_failures": {"9", "off"},
		"window": {"20s"}, "buckets": {"4"}, "last_calls": {"20", "off"}, "open_for": {"1m0s"}, "max_open_for": {"10m0s", "off"},
		"half_open_requests": {"2"}, "half_open_successes": {"2"}, "quorum": {"3"}, "probe_timeout": {"5s", "off"},
		"slow_call": {"2s", "off"}, "slow_call_rate": {"off"}, "recovery_ramp": {"30s", "off"},
		"idle_ttl": {"5m0s", "off"}, "upstream_retry_after": {"on_429_and_503", "off"}, "mode": {"observe"},
	}
	for i := range policyFields {
		f := &policyFields[i]
		tries := values[f.name]
		if len(tries) == 0 {
			t.Fatalf("no test value for field %s: add one", f.name)
		}
		for _, v := range tries {
			doc := `{"` + f.name + `": "` + v + `"}`
			if f.kind == kindRate || f.kind == kindCount {
				if v != "off" {
					doc = `{"` + f.name + `": ` + v + `}`
				}
			}
			var p Policy
			if err := json.Unmarshal([]byte(doc), &p); err != nil {
				t.Fatalf("%s: %v", doc, err)
			}
			if !f.isSet(&p) {
				t.Fatalf("%s: field not set", doc)
			}
			out, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != strings.ReplaceAll(doc, " ", "") {
				t.Errorf("%s marshals back as %s", doc, out)
			}
			inherited := Policy{}.inherit(p)
			if !reflect.DeepEqual(inherited, p) {
				t.Errorf("%s: inheriting it into an empty policy gives %+v", doc, inherited)
			}
			resolved := p.inherit(DefaultPolicy())
			if got, want := encodeField(f, &resolved), encodeField(f, &p); got != want {
				t.Errorf("%s: inheriting the defaults turned it into %v", doc, got)
			}
		}
	}
}

// TestAbsurdPoliciesAreErrorsNamingTheField holds the ceilings: a value no
// one means is refused by New and by LoadConfig alike, under the field's
// path, with what was likely meant; the ceiling itself is accepted.
func TestAbsurdPoliciesAreErrorsNamingTheField(t *testing.T) {
	const century = 100 * 365 * 24 * time.Hour
	for _, tc := range []struct {
		p    Policy
		file string // the same in a config file, when a file can say it
		want string
	}{
		{Policy{OpenFor: century}, "open_for: 876000h", "defaults.open_for: 876000h is too long (at most 1h); failed probes lengthen the cooldown"},
		{Policy{Quorum: 1000}, "quorum: 1000", "defaults.quorum: 1000 is too many (at most 100): a fleet is made for tens of replicas"},
		{Policy{Window: 1000 * 24 * time.Hour}, "window: 24000h", "defaults.window: 24000h is too long (at most 1h); for a key with little traffic, judge its last calls instead (last_calls)"},
		{Policy{MaxOpenFor: 25 * time.Hour}, "max_open_for: 25h", "defaults.max_open_for: 25h is too long (at most 24h)"},
		{Policy{ProbeTimeout: 2 * time.Hour}, "probe_timeout: 2h", "defaults.probe_timeout: 2h is too long (at most 1h); off waits for every probe"},
		{Policy{SlowCall: 2 * time.Hour}, "slow_call: 2h", "defaults.slow_call: 2h is too long (at most 1h)"},
		{Policy{RecoveryRamp: 2 * time.Hour}, "recovery_ramp: 2h", "defaults.recovery_ramp: 2h is too long (at most 1h)"},
		{Policy{IdleTTL: 8 * 24 * time.Hour}, "idle_ttl: 192h", "defaults.idle_ttl: 192h is too long (at most 168h); off keeps the breaker for good"},
		{Policy{LastCalls: 20000, Window: 0}, "last_calls: 20000", "defaults.last_calls: 20000 is too many (at most 10000)"},
		{Policy{HalfOpenRequests: 5000}, "half_open_requests: 5000", "defaults.half_open_requests: 5000 is too many (at most 1000): probes are a few requests"},
		// A duration multiplied by its unit twice, as cfg.OpenFor * time.Second does.
		{Policy{OpenFor: 5 * time.Second * time.Second}, "", "defaults.open_for: 1388888h53m20s is too long (at most 1h); did you mean 5s (a time.Duration multiplied by time.Second again)?"},
		{Policy{Window: 30 * time.Second * time.Millisecond}, "", "defaults.window: 8333h20m is too long (at most 1h); did you mean 30ms (a time.Duration multiplied by time.Second again) or 30s (a time.Duration multiplied by time.Millisecond again)?"},
	} {
		_, err := New(WithPolicy(tc.p))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v): %v\nwant %q", tc.p, err, tc.want)
		}
		if tc.file == "" {
			continue
		}
		_, err = LoadConfig(strings.NewReader("defaults:\n  " + tc.file + "\n"))
		if want := "line 2: " + tc.want; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadConfig(%q): %v\nwant %q", tc.file, err, want)
		}
	}
	atTheCeiling := Policy{OpenFor: time.Hour, MaxOpenFor: 24 * time.Hour, Window: time.Hour, Quorum: 100, ProbeTimeout: time.Hour,
		SlowCall: time.Hour, RecoveryRamp: time.Hour, IdleTTL: 7 * 24 * time.Hour, HalfOpenRequests: 1000}
	if _, err := New(WithPolicy(atTheCeiling)); err != nil {
		t.Errorf("a policy at every ceiling: %v", err)
	}
	if _, err := New(WithPolicy(Policy{LastCalls: 10000, MinRequests: 100})); err != nil {
		t.Errorf("last_calls at its ceiling: %v", err)
	}
}

// TestRetryAfterToldToClientsIsAtMostAnHour holds the cap on what a
// rejected client is told, whatever the breaker has left.
func TestRetryAfterToldToClientsIsAtMostAnHour(t *testing.T) {
	for _, tc := range []struct {
		left time.Duration
		want int
	}{{0, 1}, {1500 * time.Millisecond, 2}, {time.Hour, 3600}, {time.Hour + time.Second, 3600}, {24 * time.Hour, 3600}, {1<<63 - 1, 3600}} {
		if got := (Rejection{RetryAfter: tc.left}).RetryAfterSeconds(); got != tc.want {
			t.Errorf("RetryAfterSeconds with %v left = %d, want %d", tc.left, got, tc.want)
		}
	}
}

// TestAFamilyPolicyCoversEveryKeyWithItsPrefixTheLongestWinning holds key
// families: a policy key ending in * gives its policy to every key that
// begins with the rest; families nest, so that a key's own policy, and
// each family's, inherits what it leaves unset from the longest family
// that covers it, and the last from the defaults.
func TestAFamilyPolicyCoversEveryKeyWithItsPrefixTheLongestWinning(t *testing.T) {
	cfg, err := LoadConfig(strings.NewReader(`
defaults:
  open_for: 10s
keys:
  "openai:*":
    open_for: 1m
    half_open_requests: 1
  "openai:gpt-*":
    open_for: 2m
  "openai:gpt-4o":
    open_for: 3m
  "*":
    open_for: 4m
`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newSet(t, WithConfig(cfg), WithKeyPolicy("anthropic:*", Policy{OpenFor: 5 * time.Minute}))
	for key, want := range map[string]struct {
		openFor  time.Duration
		halfOpen int
	}{
		"openai:o3":          {time.Minute, 1},
		"openai:gpt-4o-mini": {2 * time.Minute, 1}, // its family's, and what openai:* adds
		"openai:gpt-4o":      {3 * time.Minute, 1}, // its own, over its families
		"openai:":            {time.Minute, 1},     // the prefix alone is in the family
		"openai":             {4 * time.Minute, 3}, // not "openai:": only "*" covers it
		"anthropic:claude":   {5 * time.Minute, 3},
		"ollama:llama3":      {4 * time.Minute, 3},
	} {
		if err := b.Do(context.Background(), key, func(context.Context) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if p := status(t, b, key).Policy; p.OpenFor != want.openFor || p.HalfOpenRequests != want.halfOpen || p.FailureRate != 0.5 {
			t.Errorf("%s: open_for %v, half_open_requests %d; want %v and %d, the rest defaults", key, p.OpenFor, p.HalfOpenRequests, want.openFor, want.halfOpen)
		}
	}
	noFamily, _ := newSet(t, WithConfig(Config{Defaults: Policy{OpenFor: 10 * time.Second}}))
	noFamily.Middleware("openai:o3")
	if p := status(t, noFamily, "openai:o3").Policy; p.OpenFor != 10*time.Second {
		t.Errorf("without families: open_for %v, want the default's", p.OpenFor)
	}
}

// TestAFamilyIsNotAKey holds that a family is no breaker key: the status
// lists only the keys that have breakers or policies of their own, and
// manual control makes no breaker for the family or for a key of it that
// nothing has used.
func TestAFamilyIsNotAKey(t *testing.T) {
	b, _ := newSet(t, WithKeyPolicy("openai:*", Policy{OpenFor: time.Minute}), WithKeyPolicy("billing", Policy{}))
	b.Middleware("openai:gpt-4o")
	var keys []string
	for _, s := range b.Snapshot() {
		keys = append(keys, s.Key)
	}
	if want := []string{"billing", "openai:gpt-4o"}; !slices.Equal(keys, want) {
		t.Fatalf("Snapshot lists %q, want %q: a family is not a key", keys, want)
	}
	for _, key := range []string{"openai:*", "openai:o3"} {
		if err := b.ForceOpen(key, 0); !errors.Is(err, ErrNoBreaker) {
			t.Errorf("ForceOpen(%q): %v, want ErrNoBreaker", key, err)
		}
	}
	if err := b.ForceOpen("openai:gpt-4o", 0); err != nil {
		t.Errorf("ForceOpen of a family's key in use: %v", err)
	}
	if err := b.ForceOpen("billing", 0); err != nil {
		t.Errorf("ForceOpen of a named key nothing used yet: %v", err)
	}
}

// TestAStarInsideAPolicyKeyIsAnErrorNamingIt: only a * at the end makes a
// family; anywhere else it is a mistake, named with where it is.
func TestAStarInsideAPolicyKeyIsAnErrorNamingIt(t *testing.T) {
	for _, key := range []string{"open*ai", "openai:**", "*:gpt-4o"} {
		_, err := New(WithKeyPolicy(key, Policy{}))
		if err == nil || !strings.Contains(err.Error(), quoteKey(key)) || !strings.Contains(err.Error(), "a * may only end a key") {
			t.Errorf("WithKeyPolicy(%q): %v; want an error naming the key and the misplaced *", key, err)
		}
		_, err = New(WithConfig(Config{Keys: map[string]Policy{key: {}}}))
		if err == nil || !strings.Contains(err.Error(), quoteKey(key)) {
			t.Errorf("Config.Keys[%q]: %v; want an error naming the key", key, err)
		}
	}
	for _, key := range []string{"openai:*", "*", "GET /api/items/*"} {
		if _, err := New(WithKeyPolicy(key, Policy{})); err != nil {
			t.Errorf("WithKeyPolicy(%q): %v", key, err)
		}
	}
}
