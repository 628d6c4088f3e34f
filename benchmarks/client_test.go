package benchmarks

import (
	"errors"
	"log/slog"
	"net/http"
	"testing"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/httpbreaker/httpbreaker"
	"github.com/sony/gobreaker/v2"
)

// The client side: each contender puts http.Client.Do to one upstream
// behind a breaker with the policy above. The upstream is a transport that
// answers at once (200, or 500 once failing), so that what is measured is
// what the breaker adds to a call.

// cannedTransport answers every request with a 200, or a 500 once failing.
type cannedTransport struct{ ok, failed *http.Response }

func newCanned() *cannedTransport {
	return &cannedTransport{
		ok:     &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody},
		failed: &http.Response{StatusCode: http.StatusInternalServerError, Header: http.Header{}, Body: http.NoBody},
	}
}

func (c *cannedTransport) RoundTrip(*http.Request) (*http.Response, error) {
	if c.failed != nil && failingUpstream {
		return c.failed, nil
	}
	return c.ok, nil
}

// failingUpstream makes every cannedTransport answer 500; the open
// workload sets it before it builds its contenders, and resets it after.
var failingUpstream bool

// A clientContender makes a call function that does one request to the
// upstream through its breaker; the error is its rejection, or nil.
type clientContender struct {
	name string
	make func(base http.RoundTripper) func(*http.Request) (*http.Response, error)
}

var errStatus = errors.New("upstream failed")

// isRejection reports whether err is a contender's rejection by an open
// breaker, rather than the upstream's failure.
func isRejection(err error) bool {
	return errors.Is(err, httpbreaker.ErrOpen) || errors.Is(err, circuitbreaker.ErrOpen) || errors.Is(err, gobreaker.ErrOpenState)
}

var clientContenders = []clientContender{
	{"bare", func(base http.RoundTripper) func(*http.Request) (*http.Response, error) {
		return (&http.Client{Transport: base}).Do
	}},
	{"httpbreaker", func(base http.RoundTripper) func(*http.Request) (*http.Response, error) {
		set, err := httpbreaker.New(httpbreaker.WithLogger(slog.New(slog.DiscardHandler)),
			httpbreaker.WithPolicy(httpbreaker.Policy{FailureRate: failureRate, MinRequests: minRequests, Window: window,
				OpenFor: openFor, ConsecutiveFailures: httpbreaker.Off}))
		if err != nil {
			panic(err)
		}
		return (&http.Client{Transport: set.Transport("upstream", base)}).Do
	}},
	{"failsafehttp", func(base http.RoundTripper) func(*http.Request) (*http.Response, error) {
		cb := circuitbreaker.NewBuilder[*http.Response]().
			HandleIf(func(r *http.Response, err error) bool {
				return err != nil || r.StatusCode >= 500 || r.StatusCode == http.StatusTooManyRequests
			}).
			WithFailureRateThreshold(failureRate, minRequests, window).
			WithDelay(openFor).WithSuccessThreshold(3).Build()
		return (&http.Client{Transport: failsafehttp.NewRoundTripper(base, cb)}).Do
	}},
	// gobreaker around http.Client.Do, as its README suggests: Execute,
	// with a non-2xx status turned into an error.
	{"gobreaker", func(base http.RoundTripper) func(*http.Request) (*http.Response, error) {
		client := &http.Client{Transport: base}
		cb := gobreaker.NewCircuitBreaker[*http.Response](gobreaker.Settings{
			Interval: window, BucketPeriod: window / 10, Timeout: openFor,
			ReadyToTrip: func(c gobreaker.Counts) bool {
				return c.Requests >= minRequests && float64(c.TotalFailures)/float64(c.Requests) >= failureRate
			},
		})
		return func(req *http.Request) (*http.Response, error) {
			return cb.Execute(func() (*http.Response, error) {
				resp, err := client.Do(req)
				if err == nil && (resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests) {
					return resp, errStatus
				}
				return resp, err
			})
		}
	}},
}

// BenchmarkClientPeers runs each contender's call on the closed path, and
// against an open breaker (bare has none: it calls the failing upstream).
func BenchmarkClientPeers(b *testing.B) {
	req, _ := http.NewRequest(http.MethodGet, "http://api.example.com/v1/models", nil)
	b.Run("closed", func(b *testing.B) {
		for _, c := range clientContenders {
			b.Run(c.name, func(b *testing.B) {
				call := c.make(newCanned())
				b.ReportAllocs()
				for b.Loop() {
					if resp, err := call(req); err != nil || resp.StatusCode != http.StatusOK {
						b.Fatal(resp, err)
					}
				}
			})
		}
	})
	b.Run("open", func(b *testing.B) {
		for _, c := range clientContenders {
			b.Run(c.name, func(b *testing.B) {
				failingUpstream = true
				defer func() { failingUpstream = false }()
				call := c.make(newCanned())
				for range 2 * minRequests { // trip it
					_, _ = call(req)
				}
				rejected := 0
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if _, err := call(req); isRejection(err) {
						rejected++
					}
				}
				b.ReportMetric(float64(rejected)/float64(b.N), "rejected/op")
			})
		}
	})
}
