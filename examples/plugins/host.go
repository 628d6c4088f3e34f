package main

import (
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/httpbreaker/httpbreaker"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// host is the plugin host. Like a Backstage backend whose httpRouter
// factory is overridden, it mounts each plugin's router at /api/{plugin}
// behind that plugin's breaker, so that no plugin has to change; and it
// gives the plugins that call upstreams an http.Client whose transport is
// the upstream's breaker.
type host struct {
	http.Handler
	breakers *httpbreaker.Breakers
	faults   *faults
	upstream *http.Server // the Git host the catalog reads from
}

// plugin is a plugin's id and router.
type plugin struct {
	id     string
	router http.Handler
}

// pluginIDs are the plugins the host serves; gitUpstream is the fault
// control's name for the Git host, the catalog's upstream, whose breaker
// key it is too.
var pluginIDs = []string{"catalog", "scaffolder", "search"}

const gitUpstream = "git"

// newHost wires the plugins with their breakers, configured by cfg, and
// adds the host's own endpoints: /metrics, /breakers (the library's status
// page), /healthz and the fault control at /faults. It starts the Git host
// on a loopback port of its own; close stops it and closes the breakers.
func newHost(cfg httpbreaker.Config, logger *slog.Logger, opts ...httpbreaker.Option) (*host, error) {
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	breakers, err := httpbreaker.New(append([]httpbreaker.Option{
		httpbreaker.WithConfig(cfg),
		httpbreaker.WithRegisterer(registry),
		httpbreaker.WithLogger(logger),
	}, opts...)...)
	if err != nil {
		return nil, err
	}
	h := &host{breakers: breakers, faults: newFaults(append(slices.Clone(pluginIDs), gitUpstream))}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = breakers.Close()
		return nil, err
	}
	h.upstream = &http.Server{Handler: h.faults.inject(gitUpstream, gitHost()), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = h.upstream.Serve(ln) }()
	// The catalog's calls to the Git host go through the "git" key's
	// breaker: a dead Git host is cut off without the catalog changing.
	git := &http.Client{Transport: breakers.Transport(gitUpstream, nil), Timeout: 2 * time.Second}
	plugins := []plugin{
		{"catalog", catalogPlugin(git, "http://"+ln.Addr().String())},
		{"scaffolder", scaffolderPlugin()},
		{"search", searchPlugin()},
	}

	r := chi.NewRouter()
	for _, p := range plugins {
		// The breaker sees what the plugin answers, injected faults included.
		r.Mount("/api/"+p.id, breakers.Middleware(p.id)(h.faults.inject(p.id, p.router)))
	}
	r.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	// The status page: JSON for curl, HTML with control buttons in a browser.
	r.Handle("/breakers", breakers.StatusHandler(httpbreaker.AllowControl(fromLoopback)))
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	faultControl := http.NewServeMux() // for {plugin} in r.PathValue
	faultControl.Handle("/faults", h.faults)
	faultControl.Handle("/faults/{plugin}", h.faults)
	r.Handle("/faults", faultControl)
	r.Handle("/faults/*", faultControl)
	h.Handler = r
	return h, nil
}

// close stops the Git host and closes the breakers.
func (h *host) close() {
	_ = h.upstream.Close()
	_ = h.breakers.Close()
}

// fromLoopback allows breaker control from this machine only. The demo
// host listens on loopback anyway; a real one would check an operator's
// credentials here.
func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	ip := net.ParseIP(host)
	return err == nil && ip != nil && ip.IsLoopback()
}
