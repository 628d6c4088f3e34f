package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	"github.com/gorilla/websocket"
	"github.com/httpbreaker/httpbreaker"
)

func newServer(t *testing.T, orders http.Handler) (*httptest.Server, *httpbreaker.Breakers) {
	t.Helper()
	breakers, err := httpbreaker.New(
		httpbreaker.WithPolicy(httpbreaker.Policy{ConsecutiveFailures: 3}),
		httpbreaker.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = breakers.Close() })
	srv := httptest.NewServer(newRouter(breakers, orders))
	t.Cleanup(srv.Close)
	return srv, breakers
}

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestFailingSubrouterIsCutOffAndTheOtherAnswers(t *testing.T) {
	var calls int
	srv, breakers := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.WriteHeader(http.StatusBadGateway)
	}))
	for i := range 6 {
		want := http.StatusBadGateway
		if i >= 3 {
			want = http.StatusServiceUnavailable
		}
		if got := status(t, srv.URL+"/api/orders/42"); got != want {
			t.Fatalf("orders request %d: %d, want %d", i+1, got, want)
		}
		if got := status(t, srv.URL+"/api/users/7"); got != http.StatusOK {
			t.Fatalf("users answered %d while orders failed", got)
		}
	}
	if calls != 3 {
		t.Fatalf("the orders handler ran %d times, want 3: the open breaker must stop it", calls)
	}
	if breakers.State("orders") != httpbreaker.StateOpen || breakers.State("users") != httpbreaker.StateClosed {
		t.Fatalf("orders %v, users %v", breakers.State("orders"), breakers.State("users"))
	}
}

func TestWebsocketUpgradesThroughTheBreaker(t *testing.T) {
	srv, breakers := newServer(t, http.NotFoundHandler())
	conn, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/ws/echo", nil)
	if err != nil {
		t.Fatalf("dial through the breaker: %v", err)
	}
	defer conn.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake answered %d", resp.StatusCode)
	}
	for _, msg := range []string{"hello", "again"} {
		if err := conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := conn.ReadMessage()
		if err != nil || string(got) != msg {
			t.Fatalf("echo %q, %v; want %q", got, err, msg)
		}
	}
	if st := breakers.State("ws"); st != httpbreaker.StateClosed {
		t.Fatalf("ws breaker %v, want closed", st)
	}
}

// TestRouteKeySplitsMethodsAsRoutePatternDoes: with routeKey, GET and POST
// of one gorilla/mux route have breakers of their own, keyed as
// RoutePattern keys ServeMux and chi routes (examples/routers).
func TestRouteKeySplitsMethodsAsRoutePatternDoes(t *testing.T) {
	breakers, err := httpbreaker.New(
		httpbreaker.WithPolicy(httpbreaker.Policy{ConsecutiveFailures: 3}),
		httpbreaker.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = breakers.Close() })
	r := mux.NewRouter()
	r.Use(breakers.KeyedMiddleware(routeKey))
	r.HandleFunc("/items/{id}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) }).Methods(http.MethodGet)
	r.HandleFunc("/items/{id}", func(w http.ResponseWriter, _ *http.Request) {}).Methods(http.MethodPost)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	for i := range 5 {
		status(t, srv.URL+"/items/"+strconv.Itoa(i))
		resp, err := http.Post(srv.URL+"/items/"+strconv.Itoa(i), "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST answered %d while GET of the same route failed", resp.StatusCode)
		}
	}
	var keys []string
	for _, s := range breakers.Snapshot() {
		keys = append(keys, s.Key+"="+s.State.String())
	}
	if got := strings.Join(keys, ","); got != "GET /items/{id}=open,POST /items/{id}=closed" {
		t.Fatalf("keys %s, want GET open and POST closed, each its own", got)
	}
}
