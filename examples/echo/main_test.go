package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/httpbreaker/httpbreaker"
)

// TestScaffolderIsCutOffWhileCatalogAndItemsAnswer runs the example's
// server with its own handlers: the 502 errors scaffolder returns open its
// breaker, which then answers through echo's error handler, and the other
// groups go on. The adapter's behaviour is tested in echobreaker.
func TestScaffolderIsCutOffWhileCatalogAndItemsAnswer(t *testing.T) {
	breakers, err := newBreakers(
		httpbreaker.WithPolicy(httpbreaker.Policy{ConsecutiveFailures: 3, OpenFor: time.Hour}),
		httpbreaker.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = breakers.Close() })
	e := newEcho(breakers, scaffolderTasks, getItem)
	e.Logger.SetOutput(io.Discard)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)

	send := func(method, path string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatalf("%s %s: %d with a body that is not JSON: %v", method, path, resp.StatusCode, err)
		}
		return resp.StatusCode, body
	}
	for i := range 5 {
		status, body := send(http.MethodPost, "/api/scaffolder/tasks")
		want := http.StatusBadGateway
		if i >= 3 {
			want = http.StatusServiceUnavailable
		}
		if status != want {
			t.Fatalf("scaffolder request %d: %d %v, want %d", i+1, status, body, want)
		}
		if i >= 3 && body["message"] != "scaffolder is unavailable: its circuit breaker is open; retry after the delay in Retry-After" {
			t.Fatalf("the rejection's body: %v, want echo's error JSON", body)
		}
		if status, _ := send(http.MethodGet, "/api/catalog/entities"); status != http.StatusOK {
			t.Fatalf("catalog answered %d while scaffolder failed", status)
		}
		if status, body := send(http.MethodGet, "/api/items/7"); status != http.StatusOK || body["id"] != "7" {
			t.Fatalf("GET /api/items/7: %d %v", status, body)
		}
	}
	var keys []string
	for _, s := range breakers.Snapshot() {
		keys = append(keys, s.Key+"="+s.State.String())
	}
	if want := []string{"GET /api/items/:id=closed", "catalog=closed", "scaffolder=open"}; !slices.Equal(keys, want) {
		t.Fatalf("breakers %q, want %q", keys, want)
	}
}
