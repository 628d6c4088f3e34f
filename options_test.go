package httpbreaker

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestNewRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
		want string
	}{
		{"rate", []Option{WithPolicy(Policy{FailureRate: 2})}, "defaults.failure_rate: must be in (0, 1], or off; got 2"},
		{"key duration", []Option{WithKeyPolicy("catalog", Policy{OpenFor: -time.Second})}, "keys.catalog.open_for: must be positive; got -1s"},
		{"negative slow call", []Option{WithPolicy(Policy{SlowCall: -time.Second})}, "defaults.slow_call: must be positive, or off; got -1s"},
		{"negative idle ttl", []Option{WithKeyPolicy("a", Policy{IdleTTL: -time.Hour})}, "keys.a.idle_ttl: must be positive, or off; got -1h0m0s"},
		{"bare number", []Option{WithPolicy(Policy{OpenFor: 30})}, "defaults.open_for: 30ns is too short (at least 1ms); did you mean 30 * time.Second (30s in a config file)?"},
		{"bare milliseconds", []Option{WithKeyPolicy("a", Policy{SlowCall: 2500})}, "keys.a.slow_call: 2.5µs is too short (at least 1ms); did you mean 2500 * time.Millisecond (2500ms in a config file)?"},
		{"microseconds", []Option{WithPolicy(Policy{Window: 500 * time.Microsecond})}, "defaults.window: 500µs is too short (at least 1ms)"},
		{"idle ttl floor", []Option{WithPolicy(Policy{IdleTTL: 10 * time.Millisecond})}, "defaults.idle_ttl: 10ms is too short (at least 1s)"},
		{"duration off", []Option{WithPolicy(Policy{OpenFor: Off})}, "defaults.open_for: cannot be off"},
		{"count off", []Option{WithPolicy(Policy{HalfOpenRequests: Off})}, "defaults.half_open_requests: cannot be off"},
		{"negative count", []Option{WithPolicy(Policy{MinRequests: -3})}, "defaults.min_requests: must be at least 1; got -3"},
		{"bad mode", []Option{WithPolicy(Policy{Mode: 9})}, "defaults.mode: must be enforce, observe or disabled; got mode(9)"},
		{"empty key", []Option{WithKeyPolicy("", Policy{})}, `WithKeyPolicy(""): the key must not be empty`},
		{"empty key in config", []Option{WithConfig(Config{Keys: map[string]Policy{"": {}}})}, `WithConfig: keys: WithKeyPolicy(""): the key must not be empty`},
		{"max keys", []Option{WithMaxKeys(0)}, "WithMaxKeys: must be at least 1, got 0"},
		{"namespace", []Option{WithNamespace("my-app")}, `WithNamespace: "my-app" is not a metric name prefix`},
		{"nil logger", []Option{WithLogger(nil)}, "WithLogger: nil Logger"},
		{"nil classifier", []Option{WithClassifier(nil)}, "WithClassifier: nil Classifier"},
		{"nil reject handler", []Option{WithRejectHandler(nil)}, "WithRejectHandler: nil Handler"},
		{"nil hook", []Option{WithStateChangeHook(nil)}, "WithStateChangeHook: nil func"},
		{"nil registerer", []Option{WithRegisterer(nil)}, "WithRegisterer: nil Registerer"},
		{"nil option", []Option{nil}, "nil Option"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := New(tc.opts...)
			if err == nil || b != nil {
				t.Fatalf("New = %v, %v; want an error", b, err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "httpbreaker: ") {
				t.Fatalf("error %q\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestTurningOffAFieldThatCannotBeOffIsOneLine(t *testing.T) {
	for _, p := range []Policy{{OpenFor: Off}, {Window: Off}, {MinRequests: Off}, {Buckets: Off}, {HalfOpenRequests: Off}} {
		_, err := New(WithPolicy(p))
		if err == nil {
			t.Fatalf("New(%+v) = nil error", p)
		}
		if msg := err.Error(); strings.Contains(msg, "\n") || strings.Contains(msg, "-1") || !strings.HasSuffix(msg, ": cannot be off") {
			t.Errorf("New(%+v): %q, want one line ending in \"cannot be off\" with no internal value", p, msg)
		}
	}
}

func TestLaterOptionsRefineEarlierOnes(t *testing.T) {
	b, err := New(
		WithLogger(slog.New(slog.DiscardHandler)),
		WithPolicy(Policy{OpenFor: time.Minute, SlowCall: time.Second}),
		WithPolicy(Policy{SlowCall: 2 * time.Second}),
		WithKeyPolicy("a", Policy{Mode: ModeObserve}),
		WithKeyPolicy("a", Policy{HalfOpenRequests: 1}),
	)
	if err != nil {
		t.Fatal(err)
	}
	b.Middleware("a")
	p := b.Snapshot()[0].Policy
	if p.OpenFor != time.Minute || p.SlowCall != 2*time.Second || p.Mode != ModeObserve || p.HalfOpenRequests != 1 {
		t.Fatalf("policy %+v", p)
	}
}
