// Command aigateway is an AI gateway in the shape of the one in seed 003:
// it proxies Anthropic's and OpenAI's APIs with a circuit breaker per
// provider, endpoint and model, so that one model's overload or rate limit
// cuts off that model alone.
//
// Keys come from the request's body ("anthropic:/v1/messages:claude-sonnet-4"),
// bounded by a check on the model's name and by WithMaxKeys; each provider's
// family policy ("anthropic:*") covers all its models. Statuses are read as
// each provider means them (Anthropic's 529 is overloaded, a 429 is the
// gateway's key over its limit, with a Retry-After that keeps the breaker
// open), and a rejection is answered in the provider's own error format,
// which its SDKs parse and retry on.
//
//	ANTHROPIC_API_KEY=... OPENAI_API_KEY=... go run ./examples/aigateway
//	curl -X POST localhost:8080/anthropic/v1/messages -d '{"model": "claude-sonnet-4-20250514", ...}'
package main

import (
	"flag"
	"log"
	"log/slog"
	"net/http"
	"net/url"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	anthropicURL := flag.String("anthropic", "https://api.anthropic.com", "Anthropic's API base URL")
	openAIURL := flag.String("openai", "https://api.openai.com", "OpenAI's API base URL")
	flag.Parse()
	if err := listen(*addr, *anthropicURL, *openAIURL); err != nil {
		log.Fatal(err)
	}
}

// listen serves the gateway on addr until it fails, and then closes the
// breakers (log.Fatal would skip a deferred Close in main).
func listen(addr, anthropicURL, openAIURL string) error {
	a, err := url.Parse(anthropicURL)
	if err != nil {
		return err
	}
	o, err := url.Parse(openAIURL)
	if err != nil {
		return err
	}
	providers := []*provider{anthropic(a, os.Getenv("ANTHROPIC_API_KEY")), openAI(o, os.Getenv("OPENAI_API_KEY"))}
	reg := prometheus.NewRegistry()
	breakers, err := newBreakers(providers, reg, slog.Default())
	if err != nil {
		return err
	}
	defer breakers.Close()
	mux := http.NewServeMux()
	mux.Handle("/", newGateway(breakers, providers, nil))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("GET /debug/breakers", breakers.StatusHandler())
	log.Printf("listening on http://%s: POST /anthropic/v1/messages, /openai/v1/chat/completions, /openai/v1/responses", addr)
	return http.ListenAndServe(addr, mux)
}
