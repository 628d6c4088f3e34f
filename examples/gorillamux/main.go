// Command gorillamux puts each gorilla/mux subrouter behind its own circuit
// breaker: a failing orders API is cut off while users keeps answering.
//
//	go run ./examples/gorillamux
package main

import (
	"flag"
	"log"
	"net/http"

	"github.com/gorilla/mux"
	"github.com/gorilla/websocket"
	"github.com/httpbreaker/httpbreaker"
)

// newRouter mounts two API groups, each a subrouter with its breaker as
// middleware, and a websocket echo behind a third.
func newRouter(breakers *httpbreaker.Breakers, orders http.Handler) *mux.Router {
	r := mux.NewRouter()

	users := r.PathPrefix("/api/users").Subrouter()
	users.Use(breakers.Middleware("users"))
	users.HandleFunc("/{id}", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"id":"` + mux.Vars(r)["id"] + `"}`))
	}).Methods(http.MethodGet)

	o := r.PathPrefix("/api/orders").Subrouter()
	o.Use(breakers.Middleware("orders"))
	o.Handle("/{id}", orders).Methods(http.MethodGet)

	// The breaker's writer passes http.Hijacker on, so websockets upgrade.
	ws := r.PathPrefix("/ws").Subrouter()
	ws.Use(breakers.Middleware("ws"))
	ws.HandleFunc("/echo", echo)
	return r
}

// routeKey is a KeyFunc for one breaker per gorilla/mux route, keyed as
// httpbreaker.RoutePattern keys ServeMux and chi routes: the method and the
// route's template, "GET /api/items/{id}". gorilla/mux does not set
// r.Pattern; it hands the matched route over in the request's context.
// Use it inside the router (Router.Use, or a subrouter's), where the route
// is known.
func routeKey(r *http.Request) string {
	route := mux.CurrentRoute(r)
	if route == nil {
		return ""
	}
	template, err := route.GetPathTemplate()
	if err != nil {
		return ""
	}
	return r.Method + " " + template
}

var upgrader = websocket.Upgrader{}

func echo(w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered the client
	}
	defer conn.Close()
	for {
		kind, msg, err := conn.ReadMessage()
		if err != nil || conn.WriteMessage(kind, msg) != nil {
			return
		}
	}
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
	orders := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"orders database unreachable"}`, http.StatusBadGateway)
	})
	log.Printf("listening on http://%s: /api/users/1 answers, /api/orders/1 fails until its breaker opens", addr)
	return http.ListenAndServe(addr, newRouter(breakers, orders))
}
