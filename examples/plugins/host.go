package main

import (
	"log/slog"
	"net"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/httpbreaker/httpbreaker"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// host is the plugin host. Like a Backstage backend whose httpRouter
// factory is overridden, it mounts each plugin's router at /api/{plugin}
// behind that plugin's breaker, so that no plugin has to change.
type host struct {
	http.Handler
	breakers *httpbreaker.Breakers
	faults   *faults
}

// plugin is a plugin's id and router.
type plugin struct {
	id     string
	router http.Handler
}

func defaultPlugins() []plugin {
	return []plugin{
		{"catalog", catalogPlugin()},
		{"scaffolder", scaffolderPlugin()},
		{"search", searchPlugin()},
	}
}

// newHost wires the plugins with their breakers, configured by cfg, and
// adds the host's own endpoints: /metrics, /breakers (the library's status
// page), /healthz and the fault control at /faults.
func newHost(cfg httpbreaker.Config, logger *slog.Logger, plugins []plugin, opts ...httpbreaker.Option) (*host, error) {
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
	var ids []string
	for _, p := range plugins {
		ids = append(ids, p.id)
	}
	h := &host{breakers: breakers, faults: newFaults(ids)}

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

// fromLoopback allows breaker control from this machine only. The demo
// host listens on loopback anyway; a real one would check an operator's
// credentials here.
func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	ip := net.ParseIP(host)
	return err == nil && ip != nil && ip.IsLoopback()
}
