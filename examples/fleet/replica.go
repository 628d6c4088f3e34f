package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/httpbreaker/httpbreaker"
	"github.com/httpbreaker/httpbreaker/redisstate"
	"github.com/redis/go-redis/v9"
)

// policy is every replica's policy for its plugins: a key trips on its
// failure rate alone (50% of at least 20 outcomes in 10s), so that a
// replica alone and the fleet together trip on the same rule.
func policy() httpbreaker.Policy {
	p := httpbreaker.DefaultPolicy()
	p.ConsecutiveFailures = httpbreaker.Off
	p.FailureRate = 0.5
	p.MinRequests = 20
	p.Window = 10 * time.Second
	p.OpenFor = 2 * time.Second
	p.MaxOpenFor = 30 * time.Second
	p.HalfOpenRequests = 1
	p.Quorum = 2
	p.RecoveryRamp = httpbreaker.Off
	return p
}

// replicaConfig is what one replica of the plugin host needs.
type replicaConfig struct {
	name     string
	listen   string
	redis    string // "": no shared state
	upstream string // the search plugin's upstream
	logs     io.Writer
}

// replicaReport is what a replica says of itself at /fleet, for the demo
// (and anyone curious).
type replicaReport struct {
	Replica string                  `json:"replica"`
	Fleet   httpbreaker.FleetStatus `json:"fleet"`
	Search  string                  `json:"search"` // the search key's state
	// Probes counts the calls the search plugin made to its upstream as
	// half-open probes.
	Probes int64 `json:"probes"`
}

// runReplica serves one replica of the plugin host until ctx ends: the
// search plugin proxies to its upstream behind the "search" breaker, the
// catalog answers by itself behind "catalog". It writes the address it
// listens on to ready.
func runReplica(ctx context.Context, cfg replicaConfig, ready func(addr string)) error {
	opts := []httpbreaker.Option{
		httpbreaker.WithPolicy(policy()),
		httpbreaker.WithReplica(cfg.name),
		httpbreaker.WithLogger(slog.New(slog.NewTextHandler(cfg.logs, nil)).With("replica", cfg.name)),
	}
	if cfg.redis != "" {
		rdb := redis.NewClient(&redis.Options{Addr: cfg.redis, DialTimeout: time.Second, ReadTimeout: time.Second,
			WriteTimeout: time.Second, MaxRetries: -1, ContextTimeoutEnabled: true})
		defer rdb.Close()
		store, err := redisstate.New(rdb, redisstate.WithPrefix("plugin-host"))
		if err != nil {
			return err
		}
		opts = append(opts, httpbreaker.WithSharedState(store))
	}
	breakers, err := httpbreaker.New(opts...)
	if err != nil {
		return err
	}
	defer breakers.Close()

	target, err := url.Parse(cfg.upstream)
	if err != nil {
		return err
	}
	var probes atomic.Int64
	proxy := httputil.NewSingleHostReverseProxy(target)
	search := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The breaker admitted this call; while the key is half-open, that
		// makes it a probe.
		if breakers.State("search") == httpbreaker.StateHalfOpen {
			probes.Add(1)
		}
		proxy.ServeHTTP(w, r)
	})
	mux := http.NewServeMux()
	mux.Handle("/api/search/", breakers.Middleware("search")(search))
	mux.Handle("/api/catalog/", breakers.Middleware("catalog")(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, `{"entities":[]}`)
	})))
	mux.Handle("/status", breakers.StatusHandler())
	mux.HandleFunc("/fleet", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(replicaReport{Replica: cfg.name, Fleet: breakers.FleetStatus(),
			Search: breakers.State("search").String(), Probes: probes.Load()})
	})

	l, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ready(l.Addr().String())
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(l); err != http.ErrServerClosed {
		return err
	}
	return nil
}
