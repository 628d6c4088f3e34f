package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestBreakerMetricsAndStateChangesReachOpenTelemetry trips a breaker and
// reads what an OpenTelemetry pipeline got: the metrics through the bridge
// (a manual reader in place of an exporter) and the state change as a span
// (an in-memory recorder).
func TestBreakerMetricsAndStateChangesReachOpenTelemetry(t *testing.T) {
	recorder := tracetest.NewSpanRecorder()
	tracing := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	registry := prometheus.NewRegistry()
	reader := sdkmetric.NewManualReader(bridge(registry))
	meters := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		_ = meters.Shutdown(context.Background())
		_ = tracing.Shutdown(context.Background())
	})

	breakers, err := newBreakers(registry, tracing.Tracer("test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = breakers.Close() })
	h := breakers.Middleware("inventory")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	for range 4 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/api/inventory/1", nil))
	}

	// The state change, as a span with one event (the hook runs on the
	// breakers' own goroutine: wait for it).
	deadline := time.Now().Add(10 * time.Second)
	for len(recorder.Ended()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	spans := recorder.Ended()
	if len(spans) != 1 || len(spans[0].Events()) != 1 {
		t.Fatalf("got %d spans, want one with one event", len(spans))
	}
	event := spans[0].Events()[0]
	attrs := attribute.NewSet(event.Attributes...)
	for key, want := range map[attribute.Key]attribute.Value{
		"httpbreaker.key":         attribute.StringValue("inventory"),
		"httpbreaker.from":        attribute.StringValue("closed"),
		"httpbreaker.to":          attribute.StringValue("open"),
		"httpbreaker.reason":      attribute.StringValue("consecutive_failures"),
		"httpbreaker.failures":    attribute.IntValue(3),
		"httpbreaker.open_for_ms": attribute.Int64Value(10000),
	} {
		if got, ok := attrs.Value(key); !ok || got != want {
			t.Errorf("span event %s = %v, want %v", key, got.String(), want.String())
		}
	}

	// The metrics, through the bridge.
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	found := map[string]float64{}
	for _, scope := range rm.ScopeMetrics {
		for _, m := range scope.Metrics {
			switch data := m.Data.(type) {
			case metricdata.Gauge[float64]:
				for _, p := range data.DataPoints {
					if state, _ := p.Attributes.Value("state"); state.AsString() == "open" {
						found[m.Name+"{state=open}"] = p.Value
					}
				}
			case metricdata.Sum[float64]:
				for _, p := range data.DataPoints {
					if result, _ := p.Attributes.Value("result"); result.AsString() == "rejected" {
						found[m.Name+"{result=rejected}"] = p.Value
					}
				}
			}
		}
	}
	if found["httpbreaker_state{state=open}"] != 1 || found["httpbreaker_requests_total{result=rejected}"] != 1 {
		t.Fatalf("metrics through the bridge: %v, want the key open and one rejection", found)
	}
}
