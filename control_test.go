package httpbreaker

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestForceOpenRejectsUntilReleased(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	b, sink := newSet(t, WithRegisterer(reg), WithPolicy(Policy{OpenFor: 45 * time.Second}))
	handler := newStatusHandler(200)
	h := b.Middleware("search")(handler)
	if err := b.ForceOpen("search", 0); err != nil {
		t.Fatal(err)
	}
	rec := record(h, "/")
	if rec.Code != 503 || handler.calls.Load() != 0 || rec.Header().Get("Retry-After") != "45" ||
		!strings.Contains(rec.Body.String(), `"state":"forced_open"`) {
		t.Fatalf("forced open answered %d %q Retry-After %q, handler ran %d times",
			rec.Code, rec.Body, rec.Header().Get("Retry-After"), handler.calls.Load())
	}
	if st := b.State("search"); st != StateForcedOpen {
		t.Fatalf("state %v, want forced_open", st)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP httpbreaker_state Circuit breaker state by key: 1 for the current state (closed, half_open, open, recovering, forced_open, forced_closed), 0 for the others.
# TYPE httpbreaker_state gauge
httpbreaker_state{key="search",state="closed"} 0
httpbreaker_state{key="search",state="forced_closed"} 0
httpbreaker_state{key="search",state="forced_open"} 1
httpbreaker_state{key="search",state="half_open"} 0
httpbreaker_state{key="search",state="open"} 0
httpbreaker_state{key="search",state="recovering"} 0
`), "httpbreaker_state"); err != nil {
		t.Fatal(err)
	}
	if err := b.Release("search"); err != nil {
		t.Fatal(err)
	}
	if rec := record(h, "/"); rec.Code != 200 || b.State("search") != StateClosed {
		t.Fatalf("after Release: %d in state %v", rec.Code, b.State("search"))
	}
	want := []string{"search: closed -> forced_open", "search: forced_open -> closed"}
	if got := sink.changes(); !slices.Equal(got, want) {
		t.Fatalf("logged %q, want %q", got, want)
	}
	logs := sink.matching("state changed")
	if logs[0].attrs["by"] != "ForceOpen" || logs[1].attrs["by"] != "Release" {
		t.Fatalf("records do not say who changed the state: %v", logs)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP httpbreaker_transitions_total Circuit breaker state changes by key.
# TYPE httpbreaker_transitions_total counter
httpbreaker_transitions_total{from="closed",key="search",to="forced_open"} 1
httpbreaker_transitions_total{from="closed",key="search",to="open"} 0
httpbreaker_transitions_total{from="forced_open",key="search",to="closed"} 1
httpbreaker_transitions_total{from="half_open",key="search",to="closed"} 0
httpbreaker_transitions_total{from="half_open",key="search",to="open"} 0
httpbreaker_transitions_total{from="open",key="search",to="half_open"} 0
`), "httpbreaker_transitions_total"); err != nil {
		t.Fatal(err)
	}
}

func TestForceOpenForATimeEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, sink := newSet(t)
		h := b.Middleware("search")(newStatusHandler(200))
		if err := b.ForceOpen("search", time.Minute); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Second)
		if rec := record(h, "/"); rec.Code != 503 || rec.Header().Get("Retry-After") != "40" {
			t.Fatalf("20s into a minute: %d, Retry-After %q; want 503 and 40", rec.Code, rec.Header().Get("Retry-After"))
		}
		if s := status(t, b, "search"); s.State != StateForcedOpen || s.RetryAfter != 40*time.Second {
			t.Fatalf("status %v with %v left", s.State, s.RetryAfter)
		}
		time.Sleep(40*time.Second + 1)
		if rec := record(h, "/"); rec.Code != 200 {
			t.Fatalf("after the minute: %d, want 200", rec.Code)
		}
		logs := sink.matching("state changed")
		if last := logs[len(logs)-1]; last.attrs["from"] != "forced_open" || last.attrs["to"] != "closed" || last.attrs["by"] != "expiry" {
			t.Fatalf("the end of a timed ForceOpen was logged as %v", last.attrs)
		}
	})
}

func TestForceOpenWorksInEveryMode(t *testing.T) {
	for _, mode := range []Mode{ModeEnforce, ModeObserve, ModeDisabled} {
		b, _ := newSet(t, WithPolicy(Policy{Mode: mode}))
		h := b.Middleware("k")(newStatusHandler(200))
		if err := b.ForceOpen("k", 0); err != nil {
			t.Fatal(err)
		}
		if rec := record(h, "/"); rec.Code != 503 {
			t.Errorf("%v mode: forced open answered %d, want 503", mode, rec.Code)
		}
	}
}

func TestForceCloseNeverRejectsButKeepsCounting(t *testing.T) {
	b, sink := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 2, OpenFor: time.Hour}))
	handler := newStatusHandler(500)
	h := b.Middleware("scaffolder")(handler)
	if err := b.ForceClose("scaffolder"); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if rec := record(h, "/"); rec.Code != 500 {
			t.Fatalf("forced closed answered %d, want the handler's 500", rec.Code)
		}
	}
	s := status(t, b, "scaffolder")
	if s.State != StateForcedClosed || s.Totals.Failure != 2 || s.Totals.WouldReject != 8 {
		t.Fatalf("status %v %+v, want forced_closed, 2 failures and 8 would-be rejections", s.State, s.Totals)
	}
	if err := b.Release("scaffolder"); err != nil {
		t.Fatal(err)
	}
	if st := b.State("scaffolder"); st != StateOpen {
		t.Fatalf("after Release: %v, want the open state reached underneath", st)
	}
	want := []string{"scaffolder: closed -> forced_closed", "scaffolder: closed -> open", "scaffolder: forced_closed -> open"}
	if got := sink.changes(); !slices.Equal(got, want) {
		t.Fatalf("logged %q, want %q", got, want)
	}
	if trip := sink.matching("state changed")[1]; trip.attrs["forced"] != "forced_closed" {
		t.Fatalf("the trip underneath is not marked as forced: %v", trip.attrs)
	}
}

func TestResetStartsTheBreakerAfresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, sink := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: 10 * time.Second, HalfOpenRequests: 1}))
		handler := newStatusHandler(500)
		h := b.Middleware("p")(handler)
		record(h, "/")
		time.Sleep(11 * time.Second)
		record(h, "/") // failed probe: the cooldown doubles
		if s := status(t, b, "p"); s.RetryAfter < 16*time.Second {
			t.Fatalf("cooldown %v after a failed probe, want about 20s", s.RetryAfter)
		}
		if err := b.ForceOpen("p", 0); err != nil {
			t.Fatal(err)
		}
		if err := b.Reset("p"); err != nil {
			t.Fatal(err)
		}
		s := status(t, b, "p")
		if s.State != StateClosed || s.Window != (Counts{}) {
			t.Fatalf("after Reset: %v %+v, want closed with an empty window", s.State, s.Window)
		}
		handler.set(200)
		if rec := record(h, "/"); rec.Code != 200 {
			t.Fatalf("after Reset: %d", rec.Code)
		}
		handler.set(500)
		record(h, "/")
		if s := status(t, b, "p"); s.RetryAfter != 10*time.Second {
			t.Fatalf("first cooldown after Reset %v, want OpenFor again", s.RetryAfter)
		}
		if logs := sink.matching("state changed"); logs[len(logs)-2].attrs["by"] != "Reset" || logs[len(logs)-2].attrs["from"] != "forced_open" {
			t.Fatalf("Reset logged as %v", logs[len(logs)-2].attrs)
		}
	})
}

func TestControlErrors(t *testing.T) {
	b, _ := newSet(t, WithMaxKeys(1))
	b.Middleware("a")
	if err := b.Release("nobody"); !errors.Is(err, ErrNoBreaker) {
		t.Errorf("Release of an unknown key: %v", err)
	}
	if err := b.Reset("nobody"); !errors.Is(err, ErrNoBreaker) {
		t.Errorf("Reset of an unknown key: %v", err)
	}
	if err := b.ForceOpen("", 0); err == nil {
		t.Error("ForceOpen of an empty key succeeded")
	}
	if err := b.ForceClose("b"); err == nil || !strings.Contains(err.Error(), "key limit") {
		t.Errorf("ForceClose past WithMaxKeys: %v", err)
	}
	if err := b.ForceOpen("future", 0); err == nil {
		t.Error("ForceOpen past WithMaxKeys succeeded")
	}
}

func TestForceOpenCreatesTheKey(t *testing.T) {
	b, _ := newSet(t)
	if err := b.ForceOpen("billing", 0); err != nil {
		t.Fatal(err)
	}
	h := b.KeyedMiddleware(func(*http.Request) string { return "billing" })(newStatusHandler(200))
	if rec := record(h, "/"); rec.Code != 503 {
		t.Fatalf("a key forced open before its first request answered %d", rec.Code)
	}
}

func TestUpstreamRetryAfterKeepsTheBreakerOpenLonger(t *testing.T) {
	for _, tc := range []struct {
		name, header string
		maxOpenFor   time.Duration
		want         string
	}{
		{"seconds", "120", 5 * time.Minute, "120"},
		{"capped by MaxOpenFor", "3600", 5 * time.Minute, "300"},
		{"shorter than OpenFor", "5", 5 * time.Minute, "30"},
		{"HTTP date", "", 5 * time.Minute, "90"},
		{"malformed", "soon", 5 * time.Minute, "30"},
		{"MaxOpenFor off caps at OpenFor", "120", Off, "30"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 2, OpenFor: 30 * time.Second, MaxOpenFor: tc.maxOpenFor}))
				h := b.Middleware("llm")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					after := tc.header
					if tc.name == "HTTP date" {
						after = time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
					}
					w.Header().Set("Retry-After", after)
					w.WriteHeader(http.StatusTooManyRequests)
				}))
				record(h, "/")
				record(h, "/") // trips
				if got := record(h, "/").Header().Get("Retry-After"); got != tc.want {
					t.Fatalf("Retry-After %q, want %q", got, tc.want)
				}
			})
		})
	}
}

func TestUpstreamRetryAfterThatHasPassedIsIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// A ten-minute window keeps the first failure in it two minutes on.
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 2, OpenFor: 30 * time.Second, Window: 10 * time.Minute}))
		var after string
		h := b.Middleware("llm")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", after)
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
		after = "60"
		record(h, "/")
		time.Sleep(2 * time.Minute)
		after = ""
		record(h, "/") // trips, two minutes after the Retry-After
		if got := record(h, "/").Header().Get("Retry-After"); got != "30" {
			t.Fatalf("Retry-After %q, want OpenFor's 30: the upstream's delay had passed", got)
		}
	})
}

func TestFailedProbeWithRetryAfterReopensForThatLong(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: 10 * time.Second, HalfOpenRequests: 1}))
		var after string
		h := b.Middleware("llm")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", after)
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
		record(h, "/")
		time.Sleep(11 * time.Second)
		after = "240"
		record(h, "/") // the probe fails with Retry-After: 240
		if got := record(h, "/").Header().Get("Retry-After"); got != "240" {
			t.Fatalf("Retry-After %q, want the upstream's 240 over the doubled cooldown", got)
		}
	})
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"0", 0}, {"-5", 0}, {"30", 30 * time.Second}, {"soon", 0}, {"1.5", 0},
		{"Mon, 23 Nov 2026 12:02:00 GMT", 2 * time.Minute},
		{"Mon, 23 Nov 2026 11:59:00 GMT", 0},
		{"99999999999999999", time.Duration(1<<63 - 1).Truncate(time.Second)},
	} {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// recovering returns key "p" of a new set, in a synctest bubble, just after
// its probe succeeded: tripped by one failure, open for 10s, one probe, and
// a recovery ramp that has just begun. The handler answers 200.
func recovering(t *testing.T, ramp time.Duration, opts ...Option) (*Breakers, *logSink, *statusHandler, http.Handler) {
	t.Helper()
	b, sink := newSet(t, append([]Option{WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: 10 * time.Second,
		HalfOpenRequests: 1, RecoveryRamp: ramp})}, opts...)...)
	handler := newStatusHandler(500)
	h := b.Middleware("p")(handler)
	record(h, "/")
	time.Sleep(11 * time.Second)
	handler.set(200)
	record(h, "/") // the probe succeeds: the ramp begins
	return b, sink, handler, h
}

func TestRecoveryRampAdmitsARisingShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ramp = 100 * time.Second
		b, sink, _, h := recovering(t, ramp, WithPolicy(Policy{FailureRate: Off}))
		if st := b.State("p"); st != StateRecovering {
			t.Fatalf("after the probe: %v, want recovering", st)
		}
		for _, at := range []float64{0.1, 0.25, 0.5, 0.75, 0.9} {
			time.Sleep(time.Duration(at*float64(ramp)) - b.sinceRampStart("p"))
			admitted := 0
			for range 1000 {
				if record(h, "/").Code == 200 {
					admitted++
				}
			}
			if got := float64(admitted) / 1000; got < at-0.02 || got > at+0.02 {
				t.Fatalf("%.0f%% into the ramp %d of 1000 admitted, want %.0f%%", at*100, admitted, at*100)
			}
		}
		time.Sleep(ramp)
		for range 100 {
			if rec := record(h, "/"); rec.Code != 200 {
				t.Fatalf("after the ramp: %d", rec.Code)
			}
		}
		want := []string{"p: closed -> open", "p: open -> half_open", "p: half_open -> recovering", "p: recovering -> closed"}
		if got := sink.changes(); !slices.Equal(got, want) {
			t.Fatalf("logged %q, want %q", got, want)
		}
	})
}

func TestRecoveryRampTripsAgainOnFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, sink, handler, h := recovering(t, time.Minute)
		time.Sleep(30 * time.Second)
		handler.set(500)
		for b.State("p") == StateRecovering {
			record(h, "/")
		}
		if st := b.State("p"); st != StateOpen {
			t.Fatalf("a failure while recovering left the breaker %v, want open", st)
		}
		changes := sink.changes()
		if last := changes[len(changes)-1]; last != "p: recovering -> open" {
			t.Fatalf("last change %q, want recovering -> open", last)
		}
		rec := record(h, "/")
		if !strings.Contains(rec.Body.String(), `"state":"open"`) {
			t.Fatalf("reject body %s", rec.Body)
		}
	})
}

func TestRecoveryRampRejectsWithItsOwnState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, _, _, h := recovering(t, time.Minute)
		rec := record(h, "/") // at the very start of the ramp nothing is admitted
		if rec.Code != 503 || rec.Header().Get("Retry-After") != "1" || !strings.Contains(rec.Body.String(), `"state":"recovering"`) {
			t.Fatalf("ramp rejection: %d Retry-After %q %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
		}
	})
}

// sinceRampStart returns how long key's recovery ramp has run.
func (b *Breakers) sinceRampStart(key string) time.Duration {
	return time.Duration(b.clock() - b.lookup(key).phase.Load().rampStart)
}
