package benchmarks

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests and benchmarks if any goroutine
// outlives them, but for those of the peer libraries that cannot be
// stopped: go-zero's, started when it is imported (signals, CPU usage), a
// goroutine per streadway/handy breaker, hystrix-go's metric monitors, and
// the goroutine that go-resiliency sleeps in for each cooldown.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent(),
		goleak.IgnoreTopFunction("github.com/streadway/handy/breaker.breaker.run"),
		goleak.IgnoreTopFunction("github.com/afex/hystrix-go/hystrix.(*metricExchange).Monitor"),
		goleak.IgnoreTopFunction("github.com/afex/hystrix-go/hystrix.(*poolMetrics).Monitor"),
		goleak.IgnoreAnyFunction("github.com/eapache/go-resiliency/breaker.(*Breaker).timer"))
}
