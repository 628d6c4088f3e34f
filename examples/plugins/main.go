// Command plugins is a plugin host in the style of a Backstage backend: three
// plugins, each a chi router mounted at /api/{plugin}, each behind its own
// circuit breaker, configured from config.yaml. The catalog plugin reads a
// Git host through breakers.Transport("git", nil): the same breakers around
// an outgoing call. The 502s the catalog answers while the Git host fails
// are blamed on "git", so the catalog's own breaker stays closed.
//
//	go run ./examples/plugins -demo         # the scripted story, in under a minute
//	go run ./examples/plugins -demo -stay   # then keep serving: open the status page
//	go run ./examples/plugins               # serve on 127.0.0.1:8080
//	go run ./examples/plugins -soak 5m      # load it with faults and key churn; check it stays flat
//
// Besides the plugins it serves /metrics (Prometheus), /breakers (the
// status page: JSON for curl, a page with control buttons in a browser;
// control only from loopback), /healthz, and a fault control:
//
//	curl -X POST localhost:8080/faults/scaffolder -d '{"status": 503}'
//	curl -X POST localhost:8080/faults/search -d '{"delay": "1500ms"}'
//	curl -X POST localhost:8080/faults/git -d '{"status": 503}'   # the Git host the catalog reads
//	curl -X DELETE localhost:8080/faults/scaffolder
package main

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/httpbreaker/httpbreaker"
)

//go:embed config.yaml
var defaultConfig []byte

// shutdownTimeout is how long in-flight requests get to finish after SIGINT
// or SIGTERM.
const shutdownTimeout = 10 * time.Second

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(1)
	}
}

// run is main without the exit, for tests: it returns when the demo ends or
// the server has shut down.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("plugins", flag.ContinueOnError)
	flags.SetOutput(stderr)
	addr := flags.String("addr", "127.0.0.1:8080", "listen address")
	configPath := flags.String("config", "", "breaker policies, YAML or JSON (default: the config.yaml built in)")
	demo := flags.Bool("demo", false, "run the scripted story on a free loopback port, print it, and exit")
	stay := flags.Bool("stay", false, "with -demo: after the story, keep serving (open the status page) until Ctrl-C")
	soak := flags.Duration("soak", 0, "load the host this long with faults flapping and keys churning, and check that it stays flat")
	if err := flags.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	if *demo {
		return runDemo(ctx, cfg, stdout, *stay)
	}
	if *soak > 0 {
		return runSoak(ctx, cfg, *soak, stdout)
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	h, err := newHost(cfg, logger)
	if err != nil {
		return err
	}
	defer h.close()
	return serve(ctx, *addr, h, stdout, logger)
}

func loadConfig(path string) (httpbreaker.Config, error) {
	if path == "" {
		return httpbreaker.LoadConfig(bytes.NewReader(defaultConfig))
	}
	f, err := os.Open(path)
	if err != nil {
		return httpbreaker.Config{}, err
	}
	defer f.Close()
	cfg, err := httpbreaker.LoadConfig(f)
	if err != nil {
		return httpbreaker.Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// serve runs the host until SIGINT or SIGTERM (or ctx ends), then stops
// accepting connections and lets in-flight requests finish for up to
// shutdownTimeout.
func serve(ctx context.Context, addr string, h http.Handler, stdout io.Writer, logger *slog.Logger) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "plugin host listening on http://%s (plugins at /api/{catalog,scaffolder,search}, /breakers, /metrics)\n", ln.Addr())

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down: waiting for in-flight requests", "timeout", shutdownTimeout)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
