package migrating

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/httpbreaker/httpbreaker"
	"github.com/sony/gobreaker/v2"
)

// gobreakerClient is the before of a client: gobreaker around
// http.Client.Do, with a 5xx made into an error so that it counts.
func gobreakerClient(client *http.Client) func(*http.Request) (*http.Response, error) {
	// guide: gobreaker-client-before
	cb := gobreaker.NewCircuitBreaker[*http.Response](gobreaker.Settings{Name: "github"})
	get := func(req *http.Request) (*http.Response, error) {
		resp, err := cb.Execute(func() (*http.Response, error) {
			resp, err := client.Do(req)
			if err == nil && resp.StatusCode >= 500 {
				resp.Body.Close()
				return nil, fmt.Errorf("github: %s", resp.Status)
			}
			return resp, err
		})
		if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
			return cachedRepos(), nil
		}
		return resp, err
	}
	// guide: end
	return get
}

// httpbreakerClient is the after of gobreakerClient: the breaker is the
// client's Transport. With the key's policy gobreakerPolicy it trips as
// gobreaker's defaults do.
func httpbreakerClient(breakers *httpbreaker.Breakers) func(*http.Request) (*http.Response, error) {
	// guide: gobreaker-client-after
	client := &http.Client{Transport: breakers.Transport("github", nil), Timeout: 10 * time.Second}
	get := func(req *http.Request) (*http.Response, error) {
		resp, err := client.Do(req) // 5xx, 429 and transport errors fail; a 5xx response is still yours to read
		if errors.Is(err, httpbreaker.ErrOpen) {
			return cachedRepos(), nil
		}
		return resp, err
	}
	// guide: end
	return get
}

// cachedRepos is the fallback both clients answer with while open.
func cachedRepos() *http.Response {
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"X-Cache": {"stale"}}, Body: http.NoBody}
}

// gobreakerPolicy is the policy that trips and probes as gobreaker's
// defaults do: more than 5 failures in a row, counted for ever while
// closed, a fixed 60s open, one probe.
func gobreakerPolicy() httpbreaker.Policy {
	// guide: gobreaker-defaults
	policy := httpbreaker.Policy{
		ConsecutiveFailures: 6,                // ReadyToTrip's default: more than 5 in a row
		FailureRate:         httpbreaker.Off,  // gobreaker has no rate rule by default
		LastCalls:           100,              // Interval: 0, counts never cleared: failures in a row never age out
		OpenFor:             60 * time.Second, // Timeout
		MaxOpenFor:          httpbreaker.Off,  // gobreaker's Timeout never grows; ours doubles up to MaxOpenFor
		HalfOpenRequests:    1,                // MaxRequests: 0 means 1
	}
	// guide: end
	return policy
}

// gobreakerQuery is the before of a call that is not HTTP: Execute around
// a query.
func gobreakerQuery(ctx context.Context, cb *gobreaker.CircuitBreaker[string], db *sql.DB, id int) (string, error) {
	// guide: gobreaker-execute-before
	name, err := cb.Execute(func() (string, error) {
		var name string
		err := db.QueryRowContext(ctx, "SELECT name FROM orders WHERE id = ?", id).Scan(&name)
		return name, err
	})
	// guide: end
	return name, err
}

// httpbreakerQuery is the after: Do, with the result kept by the func.
func httpbreakerQuery(ctx context.Context, breakers *httpbreaker.Breakers, db *sql.DB, id int) (string, error) {
	// guide: gobreaker-execute-after
	var name string
	err := breakers.Do(ctx, "orders-db", func(ctx context.Context) error {
		return db.QueryRowContext(ctx, "SELECT name FROM orders WHERE id = ?", id).Scan(&name)
	})
	// guide: end
	return name, err
}

// noRowsIsAnAnswer is the classifier both sides of the query need, so that
// a missing row is not the database failing.
func noRowsIsAnAnswer() (gobreaker.Settings, httpbreaker.Option) {
	// guide: gobreaker-classify-before
	settings := gobreaker.Settings{
		Name:         "orders-db",
		IsSuccessful: func(err error) bool { return err == nil || errors.Is(err, sql.ErrNoRows) },
		IsExcluded:   func(err error) bool { return errors.Is(err, context.Canceled) },
	}
	// guide: end
	// guide: gobreaker-classify-after
	classify := httpbreaker.WithClassifier(func(c httpbreaker.Call) httpbreaker.Outcome {
		if errors.Is(c.Err, sql.ErrNoRows) {
			return httpbreaker.Success
		}
		return httpbreaker.DefaultClassifier(c) // a caller's own cancellation is already excluded
	})
	// guide: end
	return settings, classify
}

// stateChange is what both sides' state-change callbacks record.
type stateChange struct{ key, from, to string }

// gobreakerOnStateChange is the before: gobreaker calls OnStateChange
// synchronously, under its lock, before Execute returns.
func gobreakerOnStateChange(changes *[]stateChange) *gobreaker.CircuitBreaker[struct{}] {
	// guide: gobreaker-hook-before
	cb := gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name: "anthropic:/v1/messages",
		OnStateChange: func(name string, from, to gobreaker.State) {
			*changes = append(*changes, stateChange{name, from.String(), to.String()})
		},
	})
	// guide: end
	return cb
}

// httpbreakerHook is the after: a hook, called in order on a goroutine of
// the set's own, after the change; Flush waits for the calls so far.
func httpbreakerHook(changes *[]stateChange, policy httpbreaker.Policy, logger *slog.Logger) (*httpbreaker.Breakers, error) {
	// guide: gobreaker-hook-after
	breakers, err := httpbreaker.New(
		httpbreaker.WithPolicy(policy),
		httpbreaker.WithLogger(logger), // one record per change, as well
		httpbreaker.WithStateChangeHook(func(e httpbreaker.Event) {
			*changes = append(*changes, stateChange{e.Key, e.From.String(), e.To.String()})
		}),
	)
	// guide: end
	return breakers, err
}
