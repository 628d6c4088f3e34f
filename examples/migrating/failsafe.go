package migrating

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/httpbreaker/httpbreaker"
)

// failsafeBreaker is the before of a policy: 5 failures of the last 10
// calls open the breaker for a minute; 2 successes close it.
func failsafeBreaker() circuitbreaker.CircuitBreaker[*http.Response] {
	// guide: failsafe-policy-before
	cb := circuitbreaker.NewBuilder[*http.Response]().
		HandleIf(func(resp *http.Response, err error) bool {
			return err != nil || resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests
		}).
		WithFailureThresholdRatio(5, 10).
		WithDelay(time.Minute).
		WithSuccessThreshold(2).
		Build()
	// guide: end
	return cb
}

// failsafePolicy is the after of failsafeBreaker.
func failsafePolicy() httpbreaker.Policy {
	// guide: failsafe-policy-after
	policy := httpbreaker.Policy{
		LastCalls:           10,              // WithFailureThresholdRatio(5, 10): the last 10 calls ...
		FailureRate:         0.5,             // ... of which 5 failed ...
		MinRequests:         10,              // ... once 10 have come (failsafe-go opens on 5 failures of fewer)
		ConsecutiveFailures: httpbreaker.Off, // failsafe-go has one rule; ours adds 5 in a row unless Off
		OpenFor:             time.Minute,     // WithDelay
		MaxOpenFor:          httpbreaker.Off, // the delay stays a minute; ours doubles after a failed probe unless Off
		HalfOpenRequests:    2,               // WithSuccessThreshold(2): 2 probes, both must succeed
	}
	// guide: end
	return policy
}

// failsafeClient is the before of a client: failsafehttp's RoundTripper.
func failsafeClient(cb circuitbreaker.CircuitBreaker[*http.Response], req *http.Request) (*http.Response, error) {
	// guide: failsafe-client-before
	client := &http.Client{Transport: failsafehttp.NewRoundTripper(nil, cb)}
	resp, err := client.Do(req)
	if errors.Is(err, circuitbreaker.ErrOpen) {
		return cachedRepos(), nil
	}
	// guide: end
	return resp, err
}

// httpbreakerTransport is the after of failsafeClient.
func httpbreakerTransport(breakers *httpbreaker.Breakers, req *http.Request) (*http.Response, error) {
	// guide: failsafe-client-after
	client := &http.Client{Transport: breakers.Transport("github", nil)}
	resp, err := client.Do(req)
	if errors.Is(err, httpbreaker.ErrOpen) {
		return cachedRepos(), nil
	}
	// guide: end
	return resp, err
}

// failsafeRun is the before of a call that is not HTTP.
func failsafeRun(ctx context.Context, cb circuitbreaker.CircuitBreaker[any], refresh func(context.Context) error) error {
	// guide: failsafe-run-before
	err := failsafe.With(cb).WithContext(ctx).Run(func() error { return refresh(ctx) })
	// guide: end
	return err
}

// httpbreakerDo is the after of failsafeRun.
func httpbreakerDo(ctx context.Context, breakers *httpbreaker.Breakers, refresh func(context.Context) error) error {
	// guide: failsafe-run-after
	err := breakers.Do(ctx, "search-index", refresh) // refresh gets ctx
	// guide: end
	return err
}
