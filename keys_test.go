package httpbreaker

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func TestKeyedMiddlewareKeysByRoutePattern(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 3}))
	items, users := newStatusHandler(500), newStatusHandler(200)
	mw := b.KeyedMiddleware(RoutePattern)
	mux := http.NewServeMux()
	mux.Handle("GET /items/{id}", mw(items))
	mux.Handle("GET /users/{id}", mw(users))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	for i := range 5 {
		get(t, fmt.Sprintf("%s/items/%d", srv.URL, i))
		if code, _, _ := get(t, fmt.Sprintf("%s/users/%d", srv.URL, i)); code != 200 {
			t.Fatalf("users answered %d while items failed", code)
		}
	}
	if st := b.State("GET /items/{id}"); st != StateOpen {
		t.Fatalf("items: state %v, want open after failures on five different ids", st)
	}
	var keys []string
	for _, s := range b.Snapshot() {
		keys = append(keys, s.Key)
	}
	if strings.Join(keys, ",") != "GET /items/{id},GET /users/{id}" {
		t.Fatalf("keys %q, want the two route patterns and no raw paths", keys)
	}
}

func TestRoutePatternKeysByMethodAndPatternOnEveryRouter(t *testing.T) {
	for _, tc := range []struct{ method, pattern, want string }{
		{"GET", "GET /items/{id}", "GET /items/{id}"},                 // ServeMux, with a method
		{"POST", "/items/{id}", "POST /items/{id}"},                   // chi, or ServeMux without one
		{"DELETE", "example.com/items/", "DELETE example.com/items/"}, // ServeMux, with a host
		{"PROPFIND", "/dav/*", "PROPFIND /dav/*"},                     // a method of its own
		{"GET", "", ""}, // outside any route
	} {
		r := httptest.NewRequest(tc.method, "/", nil)
		r.Pattern = tc.pattern
		if got := RoutePattern(r); got != tc.want {
			t.Errorf("RoutePattern(%s %q) = %q, want %q", tc.method, tc.pattern, got, tc.want)
		}
	}
	r := httptest.NewRequest("GET", "/items/1", nil)
	r.Pattern = "/items/{id}"
	if n := testing.AllocsPerRun(100, func() { RoutePattern(r) }); n != 0 {
		t.Errorf("RoutePattern allocates %v times per request for a pattern without a method, want 0", n)
	}
}

func TestKeyedMiddlewareOutsideTheRouterPassesUntracked(t *testing.T) {
	b, sink := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1}))
	mux := http.NewServeMux()
	mux.Handle("GET /items/{id}", newStatusHandler(500))
	srv := httptest.NewServer(b.KeyedMiddleware(RoutePattern)(mux)) // too early: no pattern yet
	t.Cleanup(srv.Close)
	if got := hit(t, srv.URL+"/items/1", 5); got[500] != 5 {
		t.Fatalf("got %v, want 5 x 500 passed through", got)
	}
	if n := b.untracked.Load(); n != 5 {
		t.Fatalf("untracked %d, want 5", n)
	}
	if logs := sink.matching("KeyFunc returned no key"); len(logs) != 1 {
		t.Fatalf("got %d warnings, want one", len(logs))
	}
}

func TestInvalidKeysPassUntrackedAndNeverBreakAScrape(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	b, sink := newSet(t, WithRegisterer(reg))
	mux := http.NewServeMux()
	mux.Handle("/api/{plugin}/", b.KeyedMiddleware(func(r *http.Request) string { return r.PathValue("plugin") })(newStatusHandler(200)))
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	long := strings.Repeat("a", maxKeyBytes+1)
	for _, path := range []string{"/api/catalog/x", "/api/%ff/x", "/api/%fe%ff/y", "/api/" + long + "/z"} {
		if code, _, _ := get(t, srv.URL+path); code != 200 {
			t.Fatalf("GET %s: %d, want the handler's 200", path, code)
		}
	}
	if n := b.untracked.Load(); n != 3 {
		t.Fatalf("%d requests untracked, want the 3 with invalid keys", n)
	}
	code, _, body := get(t, srv.URL+"/metrics")
	if code != 200 || !strings.Contains(body, `httpbreaker_requests_total{key="catalog",result="success"} 1`) ||
		!strings.Contains(body, "go_goroutines") {
		t.Fatalf("scrape: %d\n%s", code, body)
	}
	if logs := sink.matching("key is not valid"); len(logs) != 1 || logs[0].attrs["key"] != `"\xff"` {
		t.Fatalf("invalid key logs %+v, want one, with the key quoted in ASCII", logs)
	}
}

func TestInvalidKeysAreRefusedWhereTheyAreWired(t *testing.T) {
	b, _ := newSet(t)
	func() {
		defer func() {
			if p := recover(); p == nil || !strings.Contains(fmt.Sprint(p), "not valid UTF-8") {
				t.Errorf("Middleware(\"\\xff\") panicked with %v, want a message naming the problem", p)
			}
		}()
		b.Middleware("\xff")
	}()
	if _, err := New(WithKeyPolicy("\xff", Policy{})); err == nil || !strings.Contains(err.Error(), "not valid UTF-8") {
		t.Errorf("WithKeyPolicy: %v", err)
	}
	if err := b.ForceOpen("\xff", 0); err == nil || !strings.Contains(err.Error(), "not valid UTF-8") {
		t.Errorf("ForceOpen: %v", err)
	}
	if _, err := LoadConfig(strings.NewReader("keys:\n  " + strings.Repeat("k", maxKeyBytes+1) + ":\n    open_for: 1s\n")); err == nil ||
		!strings.Contains(err.Error(), "line 2: keys: ") || !strings.Contains(err.Error(), "longer than 512") {
		t.Errorf("LoadConfig with a long key: %v", err)
	}
}
