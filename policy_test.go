package httpbreaker

import (
	"encoding/json"
	"reflect"
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
