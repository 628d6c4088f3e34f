// Command fleet is a plugin host that runs as several replicas behind a
// load balancer, its breakers shared through Redis with redisstate.
//
//	go run ./examples/fleet -demo
//
// starts redis-server, three replicas of the host (each its own process)
// and a round-robin load balancer, and tells the fleet's story: an upstream
// fails, and the fleet stops calling it after fewer failures than replicas
// learning alone would take; it probes once, and recovers everywhere; then
// Redis is killed mid-traffic and no request fails. It exits non-zero if
// the story does not happen.
//
//	go run ./examples/fleet -redis 127.0.0.1:6379 -upstream http://search.internal -listen :8080
//
// runs one replica.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(1)
	}
}

// run is main without the exit, for tests.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("fleet", flag.ContinueOnError)
	flags.SetOutput(stderr)
	demo := flags.Bool("demo", false, "run the fleet's story: redis-server, three replicas, a load balancer; print it, and exit")
	name := flags.String("replica", "", "this replica's name in the fleet (default: host name and process id)")
	listen := flags.String("listen", "127.0.0.1:8080", "listen address")
	redisAddr := flags.String("redis", "", "Redis address; empty: no shared state")
	upstream := flags.String("upstream", "", "the search plugin's upstream URL")
	child := flags.Bool("child", false, "run under the demo: exit when stdin closes")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *demo {
		return runDemo(ctx, stdout)
	}
	if *upstream == "" {
		return errors.New("fleet: -upstream is required (or -demo)")
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *child { // the demo that started this replica is gone: so is the replica
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			cancel()
		}()
	}
	cfg := replicaConfig{name: *name, listen: *listen, redis: *redisAddr, upstream: *upstream, logs: stderr}
	if cfg.name == "" {
		host, _ := os.Hostname()
		cfg.name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	w := bufio.NewWriter(stdout)
	return runReplica(ctx, cfg, func(addr string) {
		fmt.Fprintf(w, "listening on %s\n", addr)
		_ = w.Flush()
	})
}
