// Command servemux gives every route of a Go http.ServeMux its own circuit
// breaker, keyed by the route's method-and-path pattern: a failing
// "GET /api/items/{id}" is cut off, "GET /api/users/{id}" keeps answering.
//
//	go run ./examples/servemux
package main

import (
	"flag"
	"log"
	"net/http"

	"github.com/httpbreaker/httpbreaker"
)

// newMux registers each route with its handler behind KeyedMiddleware, which
// keys the breaker by r.Pattern. The pattern is set once the mux has picked
// the route, so the middleware wraps each route's handler, not the mux.
func newMux(breakers *httpbreaker.Breakers, items http.Handler) *http.ServeMux {
	perRoute := breakers.KeyedMiddleware(httpbreaker.RoutePattern)
	mux := http.NewServeMux()
	mux.Handle("GET /api/items/{id}", perRoute(items))
	mux.Handle("GET /api/users/{id}", perRoute(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"id":"` + r.PathValue("id") + `"}`))
	})))
	mux.Handle("POST /api/users", perRoute(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	})))
	return mux
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	if err := listen(*addr); err != nil {
		log.Fatal(err)
	}
}

// listen serves the example on addr until it fails, and then closes the
// breakers (log.Fatal would skip a deferred Close in main).
func listen(addr string) error {
	breakers, err := httpbreaker.New()
	if err != nil {
		return err
	}
	defer breakers.Close()
	items := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"inventory service down"}`, http.StatusServiceUnavailable)
	})
	log.Printf("listening on http://%s: /api/users/1 answers, /api/items/1 fails until its breaker opens", addr)
	return http.ListenAndServe(addr, newMux(breakers, items))
}
