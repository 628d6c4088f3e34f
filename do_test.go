package httpbreaker

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var errDatabaseDown = errors.New("dial tcp 10.0.0.7:5432: connection refused")

func TestDoTripsAndRejectsWithoutRunningTheFunc(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 3, OpenFor: time.Minute}))
	var runs atomic.Int32
	query := func(context.Context) error { runs.Add(1); return errDatabaseDown }
	for range 3 {
		if err := b.Do(context.Background(), "orders-db", query); err != errDatabaseDown {
			t.Fatalf("closed: %v, want the func's own error, as it is", err)
		}
	}
	err := b.Do(context.Background(), "orders-db", query)
	var rj *RejectedError
	if !errors.Is(err, ErrOpen) || !errors.As(err, &rj) || rj.Key != "orders-db" || rj.State != StateOpen || rj.RetryAfter <= 50*time.Second {
		t.Fatalf("open: %v, want a *RejectedError of orders-db for about a minute", err)
	}
	if n := runs.Load(); n != 3 {
		t.Fatalf("the func ran %d times, want the 3 before the trip", n)
	}
	if s := status(t, b, "orders-db"); s.Side != "client" || s.Totals.Failures != 3 || s.Totals.Rejected != 1 {
		t.Fatalf("status %+v, want a client key with 3 failures and 1 rejection", s)
	}
}

func TestDoJudgesTheFuncsError(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(ctx context.Context, cancel context.CancelCauseFunc) error
		want Totals
	}{
		{"nil is a success", func(context.Context, context.CancelCauseFunc) error { return nil }, Totals{Successes: 1}},
		{"an error is a failure", func(context.Context, context.CancelCauseFunc) error { return errDatabaseDown }, Totals{Failures: 1}},
		{"the caller's cancellation, with a cause, is excluded", func(ctx context.Context, cancel context.CancelCauseFunc) error {
			cancel(errors.New("the request was abandoned"))
			return context.Cause(ctx)
		}, Totals{Excluded: 1}},
		{"a passed deadline is a failure", func(ctx context.Context, _ context.CancelCauseFunc) error {
			ctx, stop := context.WithTimeout(ctx, time.Millisecond)
			defer stop()
			<-ctx.Done()
			return ctx.Err()
		}, Totals{Failures: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := newSet(t)
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			_ = b.Do(ctx, "db", func(ctx context.Context) error { return tc.run(ctx, cancel) })
			if got := status(t, b, "db").Totals; got != tc.want {
				t.Fatalf("totals %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestDoWithAClassifierThatKnowsTheErrors(t *testing.T) {
	errNoRows := errors.New("sql: no rows in result set")
	var sawRequest atomic.Bool
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 2}), WithClassifier(func(c Call) Outcome {
		if c.Request != nil {
			sawRequest.Store(true)
		}
		if errors.Is(c.Err, errNoRows) {
			return Success
		}
		return DefaultClassifier(c)
	}))
	for range 5 {
		_ = b.Do(context.Background(), "db", func(context.Context) error { return errNoRows })
	}
	if s := status(t, b, "db"); s.State != StateClosed || s.Totals.Successes != 5 || sawRequest.Load() {
		t.Fatalf("%v %+v, want 5 successes of a Call with no Request", s.State, s.Totals)
	}
}

func TestDoRecordsAPanicOrGoexitAsAFailureAndLetsItGoOn(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 2, OpenFor: time.Minute}))
	func() {
		defer func() {
			if v := recover(); v != "driver bug" {
				t.Fatalf("recovered %v, want the func's panic", v)
			}
		}()
		_ = b.Do(context.Background(), "db", func(context.Context) error { panic("driver bug") })
	}()
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = b.Do(context.Background(), "db", func(context.Context) error { runtime.Goexit(); return nil })
	})
	wg.Wait()
	if s := status(t, b, "db"); s.State != StateOpen || s.Totals.Failures != 2 {
		t.Fatalf("%v %+v, want open on the panic and the Goexit", s.State, s.Totals)
	}
}

func TestDoRefusesMistakesWithAnError(t *testing.T) {
	b, _ := newSet(t)
	var noContext context.Context // the mistake under test
	ran := false
	fn := func(context.Context) error { ran = true; return nil }
	for name, tc := range map[string]struct {
		do   func() error
		want string
	}{
		"empty key":   {func() error { return b.Do(context.Background(), "", fn) }, `Do(""): the key must not be empty`},
		"bad key":     {func() error { return b.Do(context.Background(), "\xff", fn) }, "not valid UTF-8"},
		"nil func":    {func() error { return b.Do(context.Background(), "db", nil) }, `Do("db"): nil func`},
		"nil Context": {func() error { return b.Do(noContext, "db", fn) }, `Do("db"): nil Context`},
	} {
		if err := tc.do(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, tc.want)
		}
	}
	if ran || len(b.Snapshot()) != 0 {
		t.Fatalf("a refused call ran (%v) or made a breaker (%v)", ran, b.Snapshot())
	}
}

func TestDoKeysAreBoundedByMaxKeys(t *testing.T) {
	b, _ := newSet(t, WithMaxKeys(1))
	var runs int
	for _, key := range []string{"db-1", "db-2", "db-2"} {
		if err := b.Do(context.Background(), key, func(context.Context) error { runs++; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if runs != 3 || b.untracked.Load() != 2 || len(b.Snapshot()) != 1 {
		t.Fatalf("%d runs, %d untracked, %d keys; want 3 runs, the 2 past the limit untracked", runs, b.untracked.Load(), len(b.Snapshot()))
	}
}

func TestDoInObserveModeNeverRejects(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, Mode: ModeObserve, OpenFor: time.Minute}))
	var runs int
	for range 3 {
		_ = b.Do(context.Background(), "db", func(context.Context) error { runs++; return errDatabaseDown })
	}
	if s := status(t, b, "db"); runs != 3 || s.Totals.WouldReject != 2 {
		t.Fatalf("%d runs, totals %+v; want all 3 run, 2 that would have been rejected", runs, s.Totals)
	}
}

// TestDoWithASpentDeadlineIsNotTheDependencysFailure: a caller whose
// deadline had passed before the call (or who had given up) spent its own
// budget: whatever fn returns, the call is excluded, and a healthy
// dependency stays closed for the callers with a full budget.
func TestDoWithASpentDeadlineIsNotTheDependencysFailure(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 5, OpenFor: time.Minute}))
	spent, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	gone, leave := context.WithCancel(context.Background())
	leave()
	for _, fn := range []func(context.Context) error{
		func(ctx context.Context) error { return ctx.Err() }, // answered at once with ctx.Err()
		func(context.Context) error { return errDatabaseDown },
		func(context.Context) error { return nil },
		func(context.Context) error { return errors.New("driver: bad connection") },
	} {
		for _, ctx := range []context.Context{spent, gone} {
			_ = b.Do(ctx, "orders-db", fn)
			_ = b.Do(ctx, "orders-db", fn)
		}
	}
	if s := status(t, b, "orders-db"); s.State != StateClosed || s.Totals.Excluded != 16 || s.Totals.Failures != 0 || s.Totals.Successes != 0 {
		t.Fatalf("after 16 calls with a spent budget: %v %+v, want closed with all 16 excluded", s.State, s.Totals)
	}
	var ran bool
	if err := b.Do(context.Background(), "orders-db", func(context.Context) error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("a caller with a full budget: %v (ran %v), want its call run", err, ran)
	}
}
