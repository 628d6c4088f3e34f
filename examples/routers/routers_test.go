// Package routers shows that httpbreaker.RoutePattern keys a route the same
// way on http.ServeMux and on chi: the method and the pattern, so that GET
// and POST of one route have breakers of their own on both.
// (examples/gorillamux has the KeyFunc that does the same on gorilla/mux.)
package routers

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/httpbreaker/httpbreaker"
)

func newBreakers(t *testing.T) *httpbreaker.Breakers {
	t.Helper()
	b, err := httpbreaker.New(
		httpbreaker.WithPolicy(httpbreaker.Policy{ConsecutiveFailures: 3}),
		httpbreaker.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

var (
	failing = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) })
	working = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
)

func TestRoutePatternSplitsMethodsOnEveryRouter(t *testing.T) {
	for name, route := range map[string]func(b *httpbreaker.Breakers) http.Handler{
		"ServeMux": func(b *httpbreaker.Breakers) http.Handler {
			perRoute := b.KeyedMiddleware(httpbreaker.RoutePattern)
			mux := http.NewServeMux()
			mux.Handle("GET /items/{id}", perRoute(failing))
			mux.Handle("POST /items/{id}", perRoute(working))
			return mux
		},
		"chi": func(b *httpbreaker.Breakers) http.Handler {
			r := chi.NewRouter()
			perRoute := r.With(b.KeyedMiddleware(httpbreaker.RoutePattern))
			perRoute.Get("/items/{id}", failing)
			perRoute.Post("/items/{id}", working)
			return r
		},
	} {
		t.Run(name, func(t *testing.T) {
			b := newBreakers(t)
			srv := httptest.NewServer(route(b))
			t.Cleanup(srv.Close)
			for i := range 5 {
				url := srv.URL + "/items/" + strconv.Itoa(i)
				resp, err := http.Get(url)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp, err = http.Post(url, "text/plain", nil); err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("POST answered %d while GET of the same route failed", resp.StatusCode)
				}
			}
			var keys []string
			for _, s := range b.Snapshot() {
				keys = append(keys, s.Key+"="+s.State.String())
			}
			if got := strings.Join(keys, ","); got != "GET /items/{id}=open,POST /items/{id}=closed" {
				t.Fatalf("keys %s, want GET open and POST closed, each its own", got)
			}
		})
	}
}
