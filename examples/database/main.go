// Command database puts a database behind a circuit breaker with Do, and
// shows blame on a call that is not HTTP: the orders API of a shop reads
// its orders with database/sql, each query through
// breakers.Do(r.Context(), "orders-db", ...). When the database goes down,
// the orders-db breaker opens and the API answers from its cache at once,
// without querying; the orders route group's own breaker stays closed,
// because its failures were the database's.
//
//	go run ./examples/database
//	curl localhost:8080/api/orders/1
//	curl -X POST localhost:8080/db/down     # the database goes down
//	curl -X DELETE localhost:8080/db/down   # and comes back
//	curl localhost:8080/breakers
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"log"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/httpbreaker/httpbreaker"
)

// newBreakers returns the example's breakers: an answer of no rows is a
// success of the database (the order does not exist), not a failure.
func newBreakers(opts ...httpbreaker.Option) (*httpbreaker.Breakers, error) {
	return httpbreaker.New(append([]httpbreaker.Option{
		httpbreaker.WithKeyPolicy("orders-db", httpbreaker.Policy{ConsecutiveFailures: 3, OpenFor: 10 * time.Second}),
		httpbreaker.WithClassifier(func(c httpbreaker.Call) httpbreaker.Outcome {
			if errors.Is(c.Err, sql.ErrNoRows) {
				return httpbreaker.Success
			}
			return httpbreaker.DefaultClassifier(c)
		}),
	}, opts...)...)
}

// ordersAPI answers GET /api/orders/{id} from db, through the "orders-db"
// key's breaker, and from the orders it read last when the breaker rejects
// the query. It answers 502 when the query fails (a gateway answer: the
// database's failure, passed on, which blame counts against orders-db), 503
// when the breaker rejects it and the order is not cached, and 404 for an
// order that does not exist.
func ordersAPI(breakers *httpbreaker.Breakers, db *sql.DB) http.Handler {
	var mu sync.Mutex
	cache := map[int64]order{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "the id is not a number"})
			return
		}
		var o order
		err = breakers.Do(r.Context(), "orders-db", func(ctx context.Context) error {
			return db.QueryRowContext(ctx, selectOrder, id).Scan(&o.ID, &o.Item, &o.TotalCents)
		})
		var rejected *httpbreaker.RejectedError
		switch {
		case err == nil:
			mu.Lock()
			cache[id] = o
			mu.Unlock()
			writeJSON(w, http.StatusOK, o)
		case errors.Is(err, sql.ErrNoRows):
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such order"})
		case errors.As(err, &rejected):
			mu.Lock()
			o, ok := cache[id]
			mu.Unlock()
			if ok {
				w.Header().Set("X-From-Cache", "true")
				writeJSON(w, http.StatusOK, o)
				return
			}
			w.Header().Set("Retry-After", strconv.Itoa(rejected.RetryAfterSeconds()))
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the orders database is unavailable"})
		default:
			writeJSON(w, http.StatusBadGateway, map[string]string{"error": "the orders database failed"})
		}
	})
	return mux
}

// newServer serves the orders API, which reads db, behind the "orders"
// route group's breaker, the status page at /breakers, and a switch at
// /db/down that takes the database s down (POST) and brings it back
// (DELETE).
func newServer(breakers *httpbreaker.Breakers, s *store, db *sql.DB) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/orders/", breakers.Middleware("orders")(ordersAPI(breakers, db)))
	mux.Handle("/breakers", breakers.StatusHandler())
	mux.HandleFunc("/db/down", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			s.down.Store(true)
		case http.MethodDelete:
			s.down.Store(false)
		default:
			w.Header().Set("Allow", "POST, DELETE")
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	breakers, err := newBreakers(httpbreaker.WithLogger(slog.Default()))
	if err != nil {
		log.Fatal(err)
	}
	s := newStore(order{1, "espresso machine", 24900}, order{2, "coffee grinder", 8900})
	db := s.open()
	log.Printf("listening on http://%s: GET /api/orders/1; POST /db/down takes the database down", *addr)
	srv := &http.Server{Addr: *addr, Handler: newServer(breakers, s, db), ReadHeaderTimeout: 5 * time.Second}
	err = srv.ListenAndServe()
	db.Close()
	breakers.Close()
	log.Fatal(err)
}
