package httpbreaker

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestAKeyPolicyNobodyUsesShowsOnTheStatusPage holds that a key a per-key
// policy names is on the page, the JSON and Snapshot from the start, as
// configured with no traffic, until something uses it.
func TestAKeyPolicyNobodyUsesShowsOnTheStatusPage(t *testing.T) {
	b, _ := newSet(t, WithKeyPolicy("paymnets", Policy{OpenFor: time.Minute}))
	b.Middleware("payments")
	s := status(t, b, "paymnets")
	if s.Side != "" || s.State != StateClosed || s.Policy.OpenFor != time.Minute || s.Totals != (Totals{}) || s.History == nil {
		t.Fatalf("the unused key's status %+v, want closed, no side, its policy, no requests", s)
	}
	if b.lookup("paymnets") != nil {
		t.Fatal("showing the unused key made it a breaker")
	}
	_, _, page := serveOnce(b.StatusHandler(), "text/html")
	row := page[strings.Index(page, `<tr id="key-paymnets">`):]
	row = row[:strings.Index(row, "</tr>")]
	if !strings.Contains(row, "configured, no traffic yet") || strings.Contains(row, "<svg") {
		t.Errorf("the page's row for the unused key does not say it is unused:\n%s", row)
	}
	_, _, js := serveOnce(b.StatusHandler(), "application/json")
	if !strings.Contains(js, `"key": "paymnets"`) {
		t.Errorf("the JSON lacks the unused key: %s", js)
	}
	record(b.KeyedMiddleware(func(*http.Request) string { return "paymnets" })(newStatusHandler(200)), "/")
	if s := status(t, b, "paymnets"); s.Side != "server" || s.Totals.Successes != 1 {
		t.Errorf("once used: %+v", s)
	}
}

// TestAKeyPolicyNobodyUsesIsLoggedOnceAfterAMinute holds the warning: a
// minute after New, each key that a policy names and nothing uses is logged
// once, with the key in use it most likely misspells; keys in use, from
// Middleware, Transport, a KeyFunc or Do, are not.
func TestAKeyPolicyNobodyUsesIsLoggedOnceAfterAMinute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, err := LoadConfig(strings.NewReader("keys:\n  GET /api/itmes/{id}:\n    open_for: 1m\n  github:\n    open_for: 1m\n"))
		if err != nil {
			t.Fatal(err)
		}
		b, sink := newSet(t, WithConfig(cfg), WithKeyPolicy("paymnets", Policy{}), WithKeyPolicy("payments", Policy{}),
			WithKeyPolicy("zzz", Policy{}), WithKeyPolicy("keyed", Policy{}), WithKeyPolicy("orders-db", Policy{}))
		b.Middleware("payments")
		b.Transport("github", nil)
		keyed := b.KeyedMiddleware(func(r *http.Request) string { return r.URL.Path[1:] })(newStatusHandler(200))
		mux := http.NewServeMux()
		mux.Handle("GET /api/items/{id}", b.KeyedMiddleware(RoutePattern)(newStatusHandler(200)))
		time.Sleep(59 * time.Second)
		record(keyed, "/keyed")
		_ = b.Do(context.Background(), "orders-db", func(context.Context) error { return nil })
		mux.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/api/items/1", nil))
		if got := sink.matching("nothing uses"); len(got) != 0 {
			t.Fatalf("logged before the minute was up: %+v", got)
		}
		time.Sleep(2 * time.Second)
		want := map[string]string{"paymnets": "payments", "zzz": "", "GET /api/itmes/{id}": "GET /api/items/{id}"}
		got := sink.matching("nothing uses")
		for _, e := range got {
			near, ok := want[e.attrs["key"]]
			if !ok || e.attrs["did_you_mean"] != near || e.level.String() != "WARN" {
				t.Errorf("logged %v %s did_you_mean %q", e.level, e.attrs["key"], e.attrs["did_you_mean"])
			}
			delete(want, e.attrs["key"])
		}
		if len(want) != 0 {
			t.Errorf("not logged: %v (logged %+v)", want, got)
		}
		time.Sleep(time.Hour)
		if n := len(sink.matching("nothing uses")); n != len(got) {
			t.Errorf("%d records after an hour, want the %d of the first minute only", n, len(got))
		}
	})
}

// TestCloseBeforeTheMinuteLogsNoUnusedKey: a set closed within the grace
// period looks at nothing.
func TestCloseBeforeTheMinuteLogsNoUnusedKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, sink := newSet(t, WithKeyPolicy("paymnets", Policy{}))
		_ = b.Close()
		time.Sleep(time.Hour)
		if got := sink.matching("nothing uses"); len(got) != 0 {
			t.Fatalf("a closed set logged %+v", got)
		}
	})
}

func TestClosestKeyFindsTheLikelyTypo(t *testing.T) {
	keys := []string{"catalog", "payments", "search", "GET /api/items/{id}", "ab"}
	for key, want := range map[string]string{
		"paymnets":           "payments", // two neighbours swapped
		"Payments":           "payments", // case
		"paymentss":          "payments",
		"catlog":             "catalog",
		"GET /api/item/{id}": "GET /api/items/{id}",
		"billing":            "",
		"ba":                 "ab",
		"xy":                 "",
		"":                   "",
	} {
		if got := closestKey(key, keys); got != want {
			t.Errorf("closestKey(%q) = %q, want %q", key, got, want)
		}
	}
}

// TestAFamilyNoKeyBelongsToIsLoggedOnceAfterAMinute holds the warning for
// families: a minute after New, each family whose policy no key in use has
// taken is logged once, with the family that the keys in use would match
// if it is close. A family that covers a key in use, under a longer family
// too, was used: the longer one inherits what it leaves unset. A family
// whose keys were all dropped as idle before the minute was used.
func TestAFamilyNoKeyBelongsToIsLoggedOnceAfterAMinute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, sink := newSet(t,
			WithKeyPolicy("openai:*", Policy{}), WithKeyPolicy("openai:gpt-*", Policy{}),
			WithKeyPolicy("opneai:*", Policy{}), WithKeyPolicy("mistral:*", Policy{}),
			WithKeyPolicy("anthropic:*", Policy{}), WithKeyPolicy("azure:*", Policy{IdleTTL: time.Second}),
			WithKeyPolicy("google:*", Policy{}))
		byPath := b.KeyedMiddleware(func(r *http.Request) string { return r.URL.Path[1:] })(newStatusHandler(200))
		for _, key := range []string{"openai:gpt-4o", "azure:gpt-4o"} {
			record(byPath, "/"+key)
		}
		_ = b.Do(context.Background(), "anthropic:claude", func(context.Context) error { return nil })
		b.Middleware("google:gemini")
		for range 3 { // sweeps: azure:gpt-4o is idle past its IdleTTL
			time.Sleep(10 * time.Second)
			b.Snapshot()
		}
		if b.lookup("azure:gpt-4o") != nil {
			t.Fatal("the idle key was not dropped")
		}
		time.Sleep(31 * time.Second)
		want := map[string]string{ // did_you_mean
			"opneai:*":  "openai:*",
			"mistral:*": "",
		}
		got := sink.matching("no key in use belongs to")
		for _, e := range got {
			hint, ok := want[e.attrs["key"]]
			if !ok || e.attrs["did_you_mean"] != hint || e.level != slog.LevelWarn {
				t.Errorf("logged %v %s did_you_mean %q", e.level, e.attrs["key"], e.attrs["did_you_mean"])
			}
			delete(want, e.attrs["key"])
		}
		if len(want) != 0 {
			t.Errorf("not logged: %v (logged %+v)", want, got)
		}
		if other := sink.matching("nothing uses"); len(other) != 0 {
			t.Errorf("a family was logged as a key: %+v", other)
		}
		time.Sleep(time.Hour)
		if n := len(sink.matching("no key in use belongs to")); n != len(got) {
			t.Errorf("%d records after an hour, want the %d of the first minute only", n, len(got))
		}
	})
}

func TestClosestFamilyIsMadeFromTheKeysInUse(t *testing.T) {
	keys := []string{"openai:gpt-4o", "anthropic:claude-sonnet", "GET /api/items/{id}", "search"}
	for family, want := range map[string]string{
		"opneai:*":          "openai:*",
		"openai:gtp-*":      "openai:gpt-*",
		"antropic:*":        "anthropic:*",
		"GET /api/itmes/*":  "GET /api/items/*",
		"mistral:*":         "",
		"openai:gpt-4o-mi*": "", // "openai:gpt-4o*" would cover it and more: no fix of a typo
		"search:*":          "", // not "search*", which would take in the route group "search"
		"openai:gtp-4o*":    "openai:gpt-4o*",
	} {
		if got := closestFamily(family, keys); got != want {
			t.Errorf("closestFamily(%q) = %q, want %q", family, got, want)
		}
	}
}
