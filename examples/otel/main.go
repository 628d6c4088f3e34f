// Command otel shows httpbreaker in an OpenTelemetry pipeline, with no
// OpenTelemetry in the library itself.
//
//	go run ./examples/otel
//
// It wires two things:
//
//   - metrics: the breakers register with a Prometheus registry as usual,
//     and the OpenTelemetry Prometheus bridge reads that registry into the
//     OpenTelemetry SDK, which exports it with the rest of the service's
//     metrics (here to stdout; OTLP in production);
//   - traces: a state-change hook records each change as a span with one
//     event that carries the change's facts (key, from, to, reason, the trip's
//     counts, the cooldown). A change happens between requests, on the
//     breakers' own goroutine, so it is a span of its own rather than an
//     event on some request's span.
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/httpbreaker/httpbreaker"
	"github.com/prometheus/client_golang/prometheus"
	otelprom "go.opentelemetry.io/contrib/bridges/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// newBreakers returns breakers whose metrics go to registry and whose state
// changes become spans of tracer.
func newBreakers(registry prometheus.Registerer, tracer trace.Tracer) (*httpbreaker.Breakers, error) {
	return httpbreaker.New(
		httpbreaker.WithRegisterer(registry),
		httpbreaker.WithPolicy(httpbreaker.Policy{ConsecutiveFailures: 3, OpenFor: 10 * time.Second}),
		httpbreaker.WithStateChangeHook(stateChangeSpans(tracer)),
	)
}

// stateChangeSpans is a state-change hook that records each change as a
// span, stamped with the time of the change, holding one event with the
// change's facts.
func stateChangeSpans(tracer trace.Tracer) func(httpbreaker.Event) {
	return func(e httpbreaker.Event) {
		at := trace.WithTimestamp(e.Time)
		_, span := tracer.Start(context.Background(), "circuit breaker state change", at,
			trace.WithAttributes(attribute.String("httpbreaker.key", e.Key)))
		attrs := []attribute.KeyValue{
			attribute.String("httpbreaker.key", e.Key),
			attribute.String("httpbreaker.from", e.From.String()),
			attribute.String("httpbreaker.to", e.To.String()),
			attribute.String("httpbreaker.reason", string(e.Reason)),
		}
		if e.By != "" {
			attrs = append(attrs, attribute.String("httpbreaker.by", e.By))
		}
		if e.Reason == httpbreaker.ReasonFailureRate || e.Reason == httpbreaker.ReasonConsecutiveFailures {
			attrs = append(attrs,
				attribute.Int("httpbreaker.failures", int(e.Failures)),
				attribute.Int("httpbreaker.successes", int(e.Successes)),
				attribute.Float64("httpbreaker.failure_rate", e.FailureRate()))
		}
		if e.OpenFor > 0 {
			attrs = append(attrs, attribute.Int64("httpbreaker.open_for_ms", e.OpenFor.Milliseconds()))
		}
		span.AddEvent("circuit breaker "+e.To.String(), at, trace.WithAttributes(attrs...))
		span.End(at)
	}
}

// bridge returns the reader option that feeds registry's metrics, the
// breakers' among them, into an OpenTelemetry reader.
func bridge(registry prometheus.Gatherer) sdkmetric.ReaderOption {
	return sdkmetric.WithProducer(otelprom.NewMetricProducer(otelprom.WithGatherer(registry)))
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	spans, err := stdouttrace.New(stdouttrace.WithPrettyPrint())
	if err != nil {
		log.Fatal(err)
	}
	tracing := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer func() { _ = tracing.Shutdown(context.Background()) }()
	metrics, err := stdoutmetric.New()
	if err != nil {
		log.Fatal(err)
	}
	registry := prometheus.NewRegistry()
	meters := sdkmetric.NewMeterProvider(sdkmetric.WithReader(
		sdkmetric.NewPeriodicReader(metrics, sdkmetric.WithInterval(15*time.Second), bridge(registry))))
	defer func() { _ = meters.Shutdown(context.Background()) }()

	breakers, err := newBreakers(registry, tracing.Tracer("httpbreaker-example"))
	if err != nil {
		log.Fatal(err)
	}
	defer breakers.Close()
	mux := http.NewServeMux()
	mux.Handle("/api/inventory/", breakers.Middleware("inventory")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"inventory database down"}`, http.StatusServiceUnavailable)
	})))
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown(context.Background())
	}()
	log.Printf("listening on http://%s: three requests to /api/inventory/ trip its breaker; the span and metrics print here", *addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
