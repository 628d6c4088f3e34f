package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/httpbreaker/httpbreaker"
)

func TestEachRoutePatternHasItsOwnBreaker(t *testing.T) {
	breakers, err := httpbreaker.New(
		httpbreaker.WithPolicy(httpbreaker.Policy{ConsecutiveFailures: 3}),
		httpbreaker.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = breakers.Close() })
	var calls int
	srv := httptest.NewServer(newMux(breakers, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.WriteHeader(http.StatusServiceUnavailable)
	})))
	defer srv.Close()

	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type")
	}
	// Different ids, one pattern: they share the breaker.
	for i := range 6 {
		code, ctype := get(fmt.Sprintf("/api/items/%d", i))
		if i >= 3 && (code != 503 || ctype != "application/problem+json") {
			t.Fatalf("items request %d: %d %s, want the breaker's 503 problem", i+1, code, ctype)
		}
		if code, _ := get(fmt.Sprintf("/api/users/%d", i)); code != 200 {
			t.Fatalf("users answered %d while items failed", code)
		}
	}
	if calls != 3 {
		t.Fatalf("the items handler ran %d times, want 3", calls)
	}
	var keys []string
	for _, s := range breakers.Snapshot() {
		keys = append(keys, s.Key+"="+s.State.String())
	}
	if want := []string{"GET /api/items/{id}=open", "GET /api/users/{id}=closed"}; !slices.Equal(keys, want) {
		t.Fatalf("breakers %q, want %q", keys, want)
	}
}
