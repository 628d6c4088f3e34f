package migrating

import (
	"errors"
	"log/slog"
	"math"
	"net/http"
	"time"

	"github.com/httpbreaker/httpbreaker"
)

// opossumLike is the after of an opossum breaker around a fetch of the
// catalog, with its fallback and an open event.
func opossumLike(logger *slog.Logger) (fetch func(*http.Request) (*http.Response, error), breakers *httpbreaker.Breakers, err error) {
	// guide: opossum-after
	breakers, err = httpbreaker.New(
		httpbreaker.WithKeyPolicy("catalog", httpbreaker.Policy{
			FailureRate:         math.Nextafter(0.5, 1), // errorThresholdPercentage: 50 opens above 50%; 0.5 would open at 50%
			MinRequests:         10,                     // volumeThreshold (its default 0 is MinRequests: 1)
			Window:              10 * time.Second,       // rollingCountTimeout, in 10 buckets (rollingCountBuckets)
			OpenFor:             30 * time.Second,       // resetTimeout
			MaxOpenFor:          httpbreaker.Off,        // resetTimeout stays; ours doubles after a failed probe unless Off
			HalfOpenRequests:    1,                      // one trial call
			ConsecutiveFailures: httpbreaker.Off,        // opossum has no in-a-row rule; ours is on (5) unless Off
		}),
		httpbreaker.WithLogger(logger),
		httpbreaker.WithStateChangeHook(func(e httpbreaker.Event) { // breaker.on('open', ...)
			if e.To == httpbreaker.StateOpen {
				logger.Warn("catalog breaker opened", "reason", e.Reason)
			}
		}),
	)
	client := &http.Client{Transport: breakers.Transport("catalog", nil), Timeout: 3 * time.Second} // timeout: 3000
	fetch = func(req *http.Request) (*http.Response, error) {
		resp, err := client.Do(req)
		if errors.Is(err, httpbreaker.ErrOpen) {
			return cachedCatalog(), nil // breaker.fallback(...)
		}
		return resp, err
	}
	// guide: end
	return fetch, breakers, err
}

// cachedCatalog is the fallback while catalog's breaker is open.
func cachedCatalog() *http.Response {
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"X-Cache": {"stale"}}, Body: http.NoBody}
}
