package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/httpbreaker/httpbreaker"
)

func TestTheOrdersAPIAnswersFromItsCacheWhileTheDatabaseIsDownAndItsOwnBreakerStaysClosed(t *testing.T) {
	breakers, err := newBreakers(httpbreaker.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = breakers.Close() })
	s := newStore(order{1, "espresso machine", 24900}, order{2, "coffee grinder", 8900})
	db := s.open()
	defer db.Close()
	srv := httptest.NewServer(newServer(breakers, s, db))
	defer srv.Close()
	send := func(method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header.Get("X-From-Cache")
	}
	status := func(key string) httpbreaker.Status {
		for _, st := range breakers.Snapshot() {
			if st.Key == key {
				return st
			}
		}
		t.Fatalf("no breaker %q", key)
		return httpbreaker.Status{}
	}
	expect := func(method, path string, code int, cached string) {
		t.Helper()
		if got, fromCache := send(method, path); got != code || fromCache != cached {
			t.Fatalf("%s %s: %d (from the cache: %q), want %d (%q)", method, path, got, fromCache, code, cached)
		}
	}

	expect("GET", "/api/orders/1", 200, "")
	expect("GET", "/api/orders/42", 404, "") // no rows: an answer of the database's, not a failure
	if st := status("orders-db"); st.Totals.Successes != 2 || st.Side != "client" {
		t.Fatalf("orders-db: %+v, want a client key with 2 successes", st)
	}

	expect("POST", "/db/down", 204, "")
	for range 3 {
		expect("GET", "/api/orders/2", 502, "")
	}
	queries := s.queries.Load()
	expect("GET", "/api/orders/1", 200, "true") // the breaker rejected the query: the cache answers
	expect("GET", "/api/orders/2", 503, "")     // not in the cache
	if n := s.queries.Load(); n != queries {
		t.Fatalf("%d queries reached the database while its breaker was open", n-queries)
	}
	if st := status("orders-db"); st.State != httpbreaker.StateOpen {
		t.Fatalf("orders-db: %v, want open", st.State)
	}
	orders := status("orders")
	if orders.State != httpbreaker.StateClosed || orders.Totals.Failures != 0 || orders.BlamedOn["orders-db"] != 4 {
		t.Fatalf("orders: %v %+v blamed on %v, want closed, its 4 failures blamed on orders-db",
			orders.State, orders.Totals, orders.BlamedOn)
	}

	expect("DELETE", "/db/down", 204, "")
	if err := breakers.Probe("orders-db"); err != nil { // rather than wait for the cooldown
		t.Fatal(err)
	}
	for i := range 3 {
		expect("GET", fmt.Sprintf("/api/orders/%d", i%2+1), 200, "")
	}
	if st := status("orders-db"); st.State != httpbreaker.StateClosed {
		t.Fatalf("orders-db after its probes succeeded: %v, want closed", st.State)
	}
}
