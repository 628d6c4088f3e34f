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
