// Command e2eserver serves one small JSON endpoint on loopback, bare or
// behind an httpbreaker breaker with its metrics registered, for the
// end-to-end load test that the report command runs with wrk.
//
//	go run ./benchmarks/e2eserver -breaker -addr 127.0.0.1:0
//
// It prints "listening on ADDR" once it accepts connections, and serves
// until its standard input is closed, so that it never outlives the
// command that started it.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"

	"github.com/httpbreaker/httpbreaker"
	"github.com/prometheus/client_golang/prometheus"
)

var body = []byte(`{"items":[{"kind":"Component","name":"checkout"},{"kind":"API","name":"orders"}]}`)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (loopback)")
	withBreaker := flag.Bool("breaker", false, "put the endpoint behind a breaker")
	flag.Parse()

	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	if *withBreaker {
		breakers, err := httpbreaker.New(
			httpbreaker.WithRegisterer(prometheus.NewRegistry()),
			httpbreaker.WithLogger(slog.New(slog.DiscardHandler)),
		)
		if err != nil {
			log.Fatal(err)
		}
		h = breakers.Middleware("catalog")(h)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /api/catalog/entities", h)

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	log.Fatal(http.Serve(ln, mux))
}
