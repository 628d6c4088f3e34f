package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/httpbreaker/httpbreaker"
	"github.com/prometheus/client_golang/prometheus"
)

// A provider is an upstream AI API the gateway proxies to, with what its
// status codes mean and how its clients expect errors.
type provider struct {
	// name prefixes the provider's paths on the gateway ("/anthropic/...")
	// and its breaker keys ("anthropic:/v1/messages:claude-sonnet-4").
	name      string
	endpoints []string // the paths it serves, each with a breaker per model
	baseURL   *url.URL
	auth      func(h http.Header) // sets the gateway's credentials on a request
	// unavailable reports whether a status means the provider cannot serve
	// now (overloaded, rate limited, failing): a failure of its breaker.
	// Every other status is an answer about the request (a bad model, a
	// prompt too long, a bad key), which says nothing of the provider.
	unavailable func(status int) bool
	// errorBody is the provider's own error document, which its SDKs parse:
	// the gateway answers a rejection with it.
	errorBody func(msg string) any
	// policy is the provider's family policy ("anthropic:*"): every
	// endpoint and model of it that has no policy of its own.
	policy httpbreaker.Policy
}

// anthropic is Anthropic's Messages API. Its 429 (rate_limit_error) is the
// gateway's one API key over its limit: every user's request would get it,
// so it fails the key and its Retry-After keeps the breaker open; 529
// (overloaded_error) and 500 (api_error) are Anthropic failing; 502 and 504
// are the gateway's proxy not reaching it.
func anthropic(baseURL *url.URL, apiKey string) *provider {
	return &provider{
		name: "anthropic", endpoints: []string{"/v1/messages"}, baseURL: baseURL,
		auth: func(h http.Header) {
			h.Set("X-Api-Key", apiKey)
			if h.Get("Anthropic-Version") == "" {
				h.Set("Anthropic-Version", "2023-06-01")
			}
		},
		unavailable: func(status int) bool {
			switch status {
			case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
				http.StatusServiceUnavailable, http.StatusGatewayTimeout, 529:
				return true
			}
			return false
		},
		errorBody: func(msg string) any {
			return map[string]any{"type": "error", "error": map[string]string{"type": "overloaded_error", "message": msg}}
		},
		policy: httpbreaker.Policy{ConsecutiveFailures: 3, UpstreamRetryAfter: httpbreaker.RetryAfterOn429And503},
	}
}

// openAI is OpenAI's Chat Completions and Responses APIs. Its 429 is the
// gateway's key over its rate limit or quota, 503 its engine overloaded,
// 500 a server error.
func openAI(baseURL *url.URL, apiKey string) *provider {
	return &provider{
		name: "openai", endpoints: []string{"/v1/chat/completions", "/v1/responses"}, baseURL: baseURL,
		auth: func(h http.Header) { h.Set("Authorization", "Bearer "+apiKey) },
		unavailable: func(status int) bool {
			switch status {
			case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
				http.StatusServiceUnavailable, http.StatusGatewayTimeout:
				return true
			}
			return false
		},
		errorBody: func(msg string) any {
			return map[string]any{"error": map[string]any{"message": msg, "type": "server_error", "param": nil, "code": "circuit_breaker_open"}}
		},
		policy: httpbreaker.Policy{ConsecutiveFailures: 5, UpstreamRetryAfter: httpbreaker.RetryAfterOn429And503},
	}
}

// maxKeys bounds the breakers the gateway keeps: a model comes from the
// client, and a client can name any. Past it, requests for new models pass
// through without a breaker, logged once.
const maxKeys = 200

// newBreakers makes the gateway's set: a family policy per provider, a
// classifier that reads statuses as each provider means them, each
// provider's own error document while open, and trips counted in the
// gateway's metrics by provider, endpoint and model.
func newBreakers(providers []*provider, reg prometheus.Registerer, logger *slog.Logger, opts ...httpbreaker.Option) (*httpbreaker.Breakers, error) {
	trips := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "aigateway_circuit_breaker_trips_total",
		Help: "Times a provider's endpoint and model breaker opened from closed.",
	}, []string{"provider", "endpoint", "model"})
	if err := reg.Register(trips); err != nil {
		return nil, err
	}
	byName := map[string]*provider{}
	all := []httpbreaker.Option{
		httpbreaker.WithPolicy(httpbreaker.Policy{HalfOpenRequests: 2}),
		httpbreaker.WithMaxKeys(maxKeys),
		httpbreaker.WithRegisterer(reg),
		httpbreaker.WithLogger(logger),
		httpbreaker.WithClassifier(func(c httpbreaker.Call) httpbreaker.Outcome {
			o := httpbreaker.DefaultClassifier(c) // panics, clients gone, hijacks, blame
			p := byName[providerOf(c.Key)]
			if p == nil || c.Panic != nil || (o != httpbreaker.Success && o != httpbreaker.Failure) {
				return o
			}
			if p.unavailable(c.StatusCode) {
				return httpbreaker.Failure
			}
			return httpbreaker.Success
		}),
		httpbreaker.WithRejectHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rj, _ := httpbreaker.RejectionFrom(r)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", strconv.Itoa(rj.RetryAfterSeconds()))
			w.WriteHeader(http.StatusServiceUnavailable)
			msg := rj.Key + " is unavailable: the gateway's circuit breaker is " + rj.State.String() + "; retry after the delay in Retry-After"
			var body any = map[string]string{"error": msg}
			if p := byName[providerOf(rj.Key)]; p != nil {
				body = p.errorBody(msg)
			}
			_ = json.NewEncoder(w).Encode(body)
		})),
		httpbreaker.WithStateChangeHook(func(e httpbreaker.Event) {
			if e.From == httpbreaker.StateClosed && e.To == httpbreaker.StateOpen {
				name, endpoint, model := splitKey(e.Key)
				trips.WithLabelValues(name, endpoint, model).Inc()
			}
		}),
	}
	for _, p := range providers {
		byName[p.name] = p
		all = append(all, httpbreaker.WithKeyPolicy(p.name+":*", p.policy))
	}
	return httpbreaker.New(append(all, opts...)...)
}

// newGateway routes POST /{provider}{endpoint} to the provider, through a
// breaker per provider, endpoint and model.
func newGateway(breakers *httpbreaker.Breakers, providers []*provider, transport http.RoundTripper) http.Handler {
	mux := http.NewServeMux()
	for _, p := range providers {
		proxy := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(p.baseURL)
				pr.Out.URL.Path = strings.TrimPrefix(pr.In.URL.Path, "/"+p.name)
				pr.Out.URL.RawPath = ""
				p.auth(pr.Out.Header)
			},
			Transport:     transport,
			FlushInterval: -1, // streams (SSE) go out as they come
		}
		for _, endpoint := range p.endpoints {
			key := func(r *http.Request) string {
				m := modelOf(r)
				if m == "" {
					// No model, or no model's name: all such requests share one
					// key, rather than pass untracked (which the shipped
					// alert CircuitBreakerUntrackedRequests tickets).
					m = noModel
				}
				return p.name + ":" + endpoint + ":" + m
			}
			mux.Handle("POST /"+p.name+endpoint, withModel(breakers.KeyedMiddleware(key)(proxy)))
		}
	}
	return mux
}

// maxBody bounds the request body the gateway reads to find the model.
const maxBody = 8 << 20

type modelKey struct{}

// withModel reads the request's JSON body for its "model" and puts it in
// the request's context for the breaker's KeyFunc, leaving the body for
// the proxy as it came.
func withModel(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		if err != nil {
			return // the client went away
		}
		var req struct {
			Model string `json:"model"`
		}
		_ = json.Unmarshal(body, &req) // a body that is not JSON has no model: the provider says what is wrong
		r = r.WithContext(context.WithValue(r.Context(), modelKey{}, req.Model))
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}

// modelName is what the gateway takes for a model's name: provider model
// ids are short words of letters, digits and a little punctuation
// ("claude-sonnet-4-20250514", "gpt-4o-mini", "meta-llama/Llama-3-8b").
// Anything else shares one key (noModel), so that a client cannot make
// keys of arbitrary text.
var modelName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,99}$`)

// noModel is the model part of the key of a request that names no model,
// or something that is not a model's name: no model's name begins with "(".
const noModel = "(none)"

// modelOf returns the model withModel found in r's body, or "" if there is
// none or it is not a model's name.
func modelOf(r *http.Request) string {
	m, _ := r.Context().Value(modelKey{}).(string)
	if !modelName.MatchString(m) {
		return ""
	}
	return m
}

// providerOf returns the provider part of a breaker key.
func providerOf(key string) string {
	name, _, _ := splitKey(key)
	return name
}

// splitKey splits "provider:/endpoint:model" into its parts.
func splitKey(key string) (name, endpoint, model string) {
	name, rest, _ := strings.Cut(key, ":")
	endpoint, model, _ = strings.Cut(rest, ":")
	return name, endpoint, model
}
