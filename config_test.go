package httpbreaker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestLoadConfigReadsTheSampleFile(t *testing.T) {
	f, err := os.Open("testdata/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := LoadConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	if c.Defaults != DefaultPolicy() {
		t.Errorf("defaults %+v, want the built-in defaults written out", c.Defaults)
	}
	for key, want := range map[string]Policy{
		"scaffolder": {ConsecutiveFailures: Off, HalfOpenRequests: 1, OpenFor: 10 * time.Second},
		"search":     {SlowCall: 2 * time.Second, RecoveryRamp: time.Minute},
		"catalog":    {FailureRate: 0.25, Mode: ModeObserve},
		"openai:*":   {UpstreamRetryAfter: RetryAfterOn429And503},
	} {
		if got := c.Keys[key]; got != want {
			t.Errorf("keys.%s: %+v, want %+v", key, got, want)
		}
	}
	b, _ := newSet(t, WithConfig(c))
	b.Middleware("scaffolder")
	b.Middleware("other")
	b.Middleware("openai:gpt-4o")
	for _, s := range b.Snapshot() {
		if s.Side == "" {
			continue // catalog and search: named by the file, wired by nothing here
		}
		want := DefaultPolicy()
		want.IdleTTL = Off // a Middleware key
		want.HalfOpenSuccesses = want.HalfOpenRequests
		switch s.Key {
		case "scaffolder":
			want.ConsecutiveFailures, want.HalfOpenRequests, want.HalfOpenSuccesses, want.OpenFor = Off, 1, 1, 10*time.Second
		case "openai:gpt-4o":
			want.UpstreamRetryAfter = RetryAfterOn429And503
		}
		if s.Policy != want {
			t.Errorf("%s: resolved policy %+v, want %+v", s.Key, s.Policy, want)
		}
	}
}

func TestLoadConfigReadsJSON(t *testing.T) {
	c, err := LoadConfig(strings.NewReader(`{"defaults": {"open_for": "45s", "slow_call": "off"},
		"keys": {"GET /api/items/{id}": {"failure_rate": 0.2, "mode": "observe"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if p := c.policyFor("GET /api/items/{id}"); p.OpenFor != 45*time.Second || p.FailureRate != 0.2 || p.Mode != ModeObserve {
		t.Fatalf("policy %+v", p)
	}
}

func TestLoadConfigAcceptsAnEmptyDocument(t *testing.T) {
	for _, doc := range []string{"", "# nothing yet\n", "---\n"} {
		c, err := LoadConfig(strings.NewReader(doc))
		if err != nil || c.Defaults != (Policy{}) || len(c.Keys) != 0 {
			t.Errorf("LoadConfig(%q) = %+v, %v; want the built-in defaults", doc, c, err)
		}
	}
}

func TestLoadConfigErrorsNameTheFieldAndLine(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []string
	}{
		{"unknown top-level field", "default:\n  open_for: 1s\n",
			[]string{"line 1: default: unknown field (want defaults or keys)"}},
		{"mistyped policy field", "keys:\n  catalog:\n    failure_ratio: 0.5\n",
			[]string{"line 3: keys.catalog.failure_ratio: unknown field; did you mean failure_rate?"}},
		{"unknown policy field", "keys:\n  catalog:\n    retries: 3\n",
			[]string{"line 3: keys.catalog.retries: unknown field (want one of failure_rate, "}},
		{"a * inside a key", "keys:\n  open*ai:*:\n    open_for: 1s\n",
			[]string{`line 2: keys: "open*ai:*": a * may only end a key, where it names a family`, "at byte 4"}},
		{"rate above 1", "keys:\n  catalog:\n    failure_rate: 1.5\n",
			[]string{"line 3: keys.catalog.failure_rate: must be in (0, 1], or off; got 1.5"}},
		{"rate 0", "defaults:\n  failure_rate: 0\n",
			[]string{"line 2: defaults.failure_rate: must be in (0, 1], or off; got 0"}},
		{"negative rate", "defaults:\n  failure_rate: -0.5\n",
			[]string{"line 2: defaults.failure_rate: must be in (0, 1], or off; got -0.5"}},
		{"rate as text", "defaults:\n  failure_rate: half\n",
			[]string{`line 2: defaults.failure_rate: want a number in (0, 1], or off; got "half"`}},
		{"negative duration", "defaults:\n  open_for: -5s\n",
			[]string{`line 2: defaults.open_for: must be positive; got "-5s"`}},
		{"zero duration", "keys:\n  a:\n    slow_call: 0s\n",
			[]string{`line 3: keys.a.slow_call: must be positive, or off; got "0s"`}},
		{"duration without unit", "defaults:\n  window: 30\n",
			[]string{`line 2: defaults.window: want a duration such as "30s" or "1m30s"; got 30, a number without a unit (did you mean "30ms" or "30s"?)`}},
		{"slow call without unit", "keys:\n  a:\n    slow_call: 500\n",
			[]string{`line 3: keys.a.slow_call: want a duration such as "30s" or "1m30s", or off; got 500, a number without a unit (did you mean "500ms" or "500s"?)`}},
		{"duration in words", "defaults:\n  window: 30 seconds\n",
			[]string{`line 2: defaults.window: want a duration such as "30s" or "1m30s"; got "30 seconds"`}},
		{"negative ramp", "defaults:\n  recovery_ramp: -1m\n",
			[]string{`line 2: defaults.recovery_ramp: must be positive, or off; got "-1m"`}},
		{"idle_ttl in words", "keys:\n  a:\n    idle_ttl: an hour\n",
			[]string{`line 3: keys.a.idle_ttl: want a duration such as "30s" or "1m30s", or off; got "an hour"`}},
		{"duration too short", "keys:\n  a:\n    open_for: 30ns\n",
			[]string{"line 3: keys.a.open_for: 30ns is too short (at least 1ms); did you mean 30 * time.Second (30s in a config file)?"}},
		{"off where not allowed", "defaults:\n  open_for: off\n",
			[]string{"line 2: defaults.open_for: cannot be off"}},
		{"count zero", "defaults:\n  consecutive_failures: 0\n",
			[]string{"line 2: defaults.consecutive_failures: must be at least 1, or off; got 0"}},
		{"count as string", "defaults:\n  min_requests: \"10\"\n",
			[]string{`line 2: defaults.min_requests: want a whole number; got "10"`}},
		{"count as float", "defaults:\n  half_open_requests: 2.5\n",
			[]string{"line 2: defaults.half_open_requests: want a whole number; got 2.5"}},
		{"min_requests off", "defaults:\n  min_requests: off\n",
			[]string{"line 2: defaults.min_requests: cannot be off"}},
		{"buckets out of range", "defaults:\n  buckets: 5000\n",
			[]string{"line 2: defaults.buckets: must be between 1 and 1000; got 5000"}},
		{"buckets too short", "keys:\n  a:\n    window: 5ms\n    buckets: 10\n",
			[]string{"line 4: keys.a.buckets: window 5ms in 10 buckets makes buckets shorter than 1ms"}},
		{"bad mode", "keys:\n  a:\n    mode: enforcing\n",
			[]string{`line 3: keys.a.mode: want enforce, observe or disabled, got "enforcing"`}},
		{"empty key", "keys:\n  \"\":\n    open_for: 1s\n",
			[]string{"line 2: keys: a key must not be empty"}},
		{"repeated field", "defaults:\n  open_for: 1s\n  open_for: 2s\n",
			[]string{"line 3: defaults.open_for: repeated"}},
		{"repeated key", "keys:\n  a: {}\n  a: {}\n",
			[]string{"line 3: keys.a: repeated"}},
		{"policy not a mapping", "keys:\n  a: 5\n",
			[]string{"line 2: keys.a: want a mapping, got 5"}},
		{"trip conditions both off", "keys:\n  a:\n    failure_rate: off\n    consecutive_failures: off\n",
			[]string{"line 4: keys.a.consecutive_failures: failure_rate and consecutive_failures are both off"}},
		{"both off across levels", "defaults:\n  failure_rate: off\nkeys:\n  a:\n    consecutive_failures: off\n",
			[]string{"line 5: keys.a.consecutive_failures: failure_rate and consecutive_failures are both off"}},
		{"max_open_for below open_for", "keys:\n  a:\n    open_for: 2m\n    max_open_for: 1m\n",
			[]string{"line 4: keys.a.max_open_for: 1m0s must not be shorter than open_for (2m0s), or off"}},
		{"max_open_for below inherited open_for", "defaults:\n  open_for: 2m\nkeys:\n  a:\n    max_open_for: 1m\n",
			[]string{"line 5: keys.a.max_open_for: 1m0s must not be shorter than open_for (2m0s)"}},
		{"syntax error", "defaults:\n  open_for: [1s\n",
			[]string{"httpbreaker: config: yaml: line 1: did not find expected"}},
		{"two documents", "defaults: {}\n---\nkeys: {}\n",
			[]string{"line 2: want one document, found another"}},
		{"every mistake at once", "defaults:\n  failure_rate: 2\n  open_for: soon\nkeys:\n  a:\n    mode: maybe\n",
			[]string{"line 2: defaults.failure_rate", "line 3: defaults.open_for", "line 6: keys.a.mode"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig(strings.NewReader(tc.doc))
			if err == nil {
				t.Fatalf("no error for:\n%s", tc.doc)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q\ndoes not contain %q", err, want)
				}
			}
		})
	}
}

// TestAMistypedPolicyFieldNamesTheClosestField holds the did_you_mean of
// a config file or JSON policy's unknown field: the one field it most
// likely misspells, in its config name, and the whole list only when none
// is close.
func TestAMistypedPolicyFieldNamesTheClosestField(t *testing.T) {
	for typo, want := range map[string]string{
		"halfopen_requests":   "half_open_requests",
		"consecutive_failure": "consecutive_failures",
		"OpenFor":             "open_for", // the Go name
		"FailureRate":         "failure_rate",
		"min_request":         "min_requests",
		"quroum":              "quorum",
		"slowcall":            "slow_call",
		"max_open":            "",
		"retries":             "",
	} {
		_, err := LoadConfig(strings.NewReader("keys:\n  catalog:\n    " + typo + ": 1\n"))
		var jerr error
		var p Policy
		jerr = json.Unmarshal([]byte(`{"`+typo+`": 1}`), &p)
		for _, err := range []error{err, jerr} {
			switch {
			case err == nil:
				t.Errorf("%s: no error", typo)
			case want != "" && (!strings.Contains(err.Error(), "unknown field; did you mean "+want+"?") || strings.Contains(err.Error(), "want one of")):
				t.Errorf("%s: %v; want it to name %s alone", typo, err, want)
			case want == "" && !strings.Contains(err.Error(), "unknown field (want one of failure_rate, min_requests"):
				t.Errorf("%s: %v; want every field listed, none being close", typo, err)
			}
		}
	}
}

func TestConfigErrorsAreFieldErrors(t *testing.T) {
	_, err := LoadConfig(strings.NewReader("keys:\n  catalog:\n    failure_rate: 7\n"))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path != "keys.catalog.failure_rate" || fe.Line != 3 {
		t.Fatalf("errors.As gives %+v from %v", fe, err)
	}
}

func TestBadDefaultIsReportedOnceNotPerKey(t *testing.T) {
	_, err := LoadConfig(strings.NewReader("defaults:\n  failure_rate: 3\nkeys:\n  a: {}\n  b: {}\n"))
	if err == nil || strings.Count(err.Error(), "failure_rate") != 1 {
		t.Fatalf("error %v, want the bad default reported once", err)
	}
}

func TestConfigInsideALargerYAMLFile(t *testing.T) {
	var file struct {
		Listen   string `yaml:"listen"`
		Breakers Config `yaml:"breakers"`
	}
	doc := "listen: :8080\nbreakers:\n  keys:\n    catalog:\n      open_for: 1m\n"
	if err := yaml.Unmarshal([]byte(doc), &file); err != nil {
		t.Fatal(err)
	}
	if file.Breakers.Keys["catalog"].OpenFor != time.Minute {
		t.Fatalf("decoded %+v", file.Breakers)
	}
	err := yaml.Unmarshal([]byte("breakers:\n  keys:\n    catalog:\n      open_for: 1\n"), &file)
	if err == nil || !strings.Contains(err.Error(), "line 4: keys.catalog.open_for") {
		t.Fatalf("error %v, want the file's line and the path inside the config", err)
	}
}

func TestPolicyJSONIsTheConfigFormat(t *testing.T) {
	p := Policy{OpenFor: 90 * time.Second, SlowCall: Off, ConsecutiveFailures: Off, FailureRate: 0.25, RecoveryRamp: time.Minute, IdleTTL: Off, Mode: ModeObserve}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"failure_rate":0.25,"consecutive_failures":"off","open_for":"1m30s","slow_call":"off","recovery_ramp":"1m0s","idle_ttl":"off","mode":"observe"}`
	if string(b) != want {
		t.Fatalf("JSON %s\nwant %s", b, want)
	}
	var back Policy
	if err := json.Unmarshal(b, &back); err != nil || back != p {
		t.Fatalf("round trip gives %+v, %v", back, err)
	}
	full, _ := json.Marshal(DefaultPolicy())
	if err := json.Unmarshal(full, &back); err != nil || back != DefaultPolicy() {
		t.Fatalf("defaults round trip gives %+v, %v", back, err)
	}
	err = json.Unmarshal([]byte(`{"open_for": "-1s", "retries": 2}`), &back)
	if err == nil || !strings.Contains(err.Error(), "policy.open_for: must be positive") || !strings.Contains(err.Error(), "policy.retries: unknown field") {
		t.Fatalf("bad policy JSON: %v", err)
	}
}

func TestConfigJSONRoundTrips(t *testing.T) {
	c := Config{
		Defaults: Policy{OpenFor: time.Minute},
		Keys:     map[string]Policy{"a": {SlowCall: 2 * time.Second}, "b": {MaxOpenFor: Off}},
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := LoadConfig(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var viaJSON Config
	if err := json.Unmarshal(b, &viaJSON); err != nil {
		t.Fatal(err)
	}
	for _, got := range []Config{back, viaJSON} {
		if got.Defaults != c.Defaults || len(got.Keys) != 2 || got.Keys["a"] != c.Keys["a"] || got.Keys["b"] != c.Keys["b"] {
			t.Fatalf("%s read back as %+v", b, got)
		}
	}
}

// endless is a reader of endless bytes that counts what it gave.
type endless struct{ read int }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '#'
	}
	e.read += len(p)
	return len(p), nil
}

func TestLoadConfigRefusesALargeDocumentAtOnce(t *testing.T) {
	src := &endless{}
	_, err := LoadConfig(src)
	if err == nil || !strings.Contains(err.Error(), "larger than 1048576 bytes (MaxConfigBytes)") {
		t.Fatalf("error %v, want the size limit named", err)
	}
	if src.read > MaxConfigBytes+1 {
		t.Fatalf("read %d bytes of an endless document, want at most the limit and one", src.read)
	}
	big := `{"defaults": {"open_for": "` + strings.Repeat("1", MaxConfigBytes) + `s"}}`
	var c Config
	if err := json.Unmarshal([]byte(big), &c); err == nil || !strings.Contains(err.Error(), "MaxConfigBytes") {
		t.Fatalf("json.Unmarshal of %d bytes into a Config: %v", len(big), err)
	}
}

func TestLoadConfigRefusesADocumentThatAliasesBlowUp(t *testing.T) {
	t.Parallel() // a megabyte of YAML to parse: seconds under the race detector
	var doc strings.Builder
	doc.WriteString("defaults: &p {failure_rate: 0.5, min_requests: 10, consecutive_failures: 5, window: 10s, buckets: 10, " +
		"open_for: 30s, max_open_for: 5m, half_open_requests: 3, probe_timeout: 30s, slow_call: off, recovery_ramp: off, mode: enforce}\nkeys:\n")
	for i := 0; doc.Len() < MaxConfigBytes-16; i++ {
		fmt.Fprintf(&doc, "  k%d: *p\n", i) // each key walks the 12 fields of the anchor
	}
	_, err := LoadConfig(strings.NewReader(doc.String()))
	if err == nil || !strings.Contains(err.Error(), "more than 1000000 fields once aliases are followed") {
		t.Fatalf("error %v, want the alias expansion refused", err)
	}
}

func TestLoadConfigReportsAtMostAHundredMistakes(t *testing.T) {
	var doc strings.Builder
	doc.WriteString("defaults:\n")
	for i := range 500 {
		fmt.Fprintf(&doc, "  unknown%d: 1\n", i)
	}
	_, err := LoadConfig(strings.NewReader(doc.String()))
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 101 || !strings.Contains(lines[100], "more than 100 mistakes") {
		t.Fatalf("%d lines, the last %q; want 100 mistakes and a line that says there are more", len(lines), lines[len(lines)-1])
	}
}

// FuzzLoadConfig feeds LoadConfig any document. It must never panic, and a
// document it accepts must make a valid Breakers and survive a round trip
// through JSON unchanged.
func FuzzLoadConfig(f *testing.F) {
	sample, err := os.ReadFile("testdata/config.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		string(sample),
		`{"defaults": {"open_for": "45s", "slow_call": "off"}, "keys": {"GET /x": {"failure_rate": 0.2, "mode": "observe"}}}`,
		"defaults: &d {open_for: 1m}\nkeys: {a: *d, b: *d}\n",
		"keys:\n  a:\n    failure_rate: 1.5\n    retries: 3\n",
		"defaults:\n  upstream_retry_after: on_429_and_503\n  probe_timeout: off\n",
		"a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n",
		"---\n---\n", "", "keys: {\"\": {}}", "defaults: [1, 2]", "defaults: {window: 1ns, buckets: 1000}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		c, err := LoadConfig(bytes.NewReader(doc))
		if err != nil {
			return
		}
		if _, err := New(WithConfig(c), WithLogger(slog.New(slog.DiscardHandler))); err != nil {
			t.Fatalf("LoadConfig accepted a config that New refuses: %v\n%s", err, doc)
		}
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		back, err := LoadConfig(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("its JSON %s does not load: %v", out, err)
		}
		if !reflect.DeepEqual(normalize(back), normalize(c)) {
			t.Fatalf("round trip: %+v became %+v through %s", c, back, out)
		}
	})
}

// normalize makes an empty key map nil, which JSON leaves out.
func normalize(c Config) Config {
	if len(c.Keys) == 0 {
		c.Keys = nil
	}
	return c
}

// FuzzConfigUnmarshalJSON feeds Config's UnmarshalJSON, as encoding/json
// calls it for a Config inside a larger document.
func FuzzConfigUnmarshalJSON(f *testing.F) {
	for _, seed := range []string{
		`{"config": {"defaults": {"open_for": "30s"}, "keys": {"a": {"mode": "observe"}}}}`,
		`{"config": {"defaults": {"failure_rate": "off", "consecutive_failures": "off"}}}`,
		`{"config": null}`, `{"config": []}`, `{"config": {"keys": {"a": {"window": 10}}}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		var wrapper struct{ Config Config }
		if err := json.Unmarshal(doc, &wrapper); err != nil {
			return
		}
		if _, err := New(WithConfig(wrapper.Config), WithLogger(slog.New(slog.DiscardHandler))); err != nil {
			t.Fatalf("UnmarshalJSON accepted a config that New refuses: %v\n%s", err, doc)
		}
	})
}
