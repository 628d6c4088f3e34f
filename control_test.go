package httpbreaker

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
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
	if logs[0].attrs["reason"] != "force_open" || logs[1].attrs["reason"] != "release" ||
		!strings.Contains(logs[0].attrs["by"], "/control_test.go:") || !strings.Contains(logs[1].attrs["by"], "/control_test.go:") {
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
		if last := logs[len(logs)-1]; last.attrs["from"] != "forced_open" || last.attrs["to"] != "closed" || last.attrs["reason"] != "expiry" {
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
	if s.State != StateForcedClosed || s.Totals.Failures != 2 || s.Totals.WouldReject != 8 {
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
		if logs := sink.matching("state changed"); logs[len(logs)-2].attrs["reason"] != "reset" || logs[len(logs)-2].attrs["from"] != "forced_open" {
			t.Fatalf("Reset logged as %v", logs[len(logs)-2].attrs)
		}
	})
}

func TestControlOfAKeyThatDoesNotExistIsErrNoBreakerAndMakesNoKey(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	b, _ := newSet(t, WithRegisterer(reg), WithKeyPolicy("billing", Policy{OpenFor: time.Minute}))
	b.Middleware("billing")
	for name, control := range map[string]func(string) error{
		"ForceOpen":  func(k string) error { return b.ForceOpen(k, time.Minute) },
		"ForceClose": b.ForceClose,
		"Release":    b.Release,
		"Reset":      b.Reset,
	} {
		err := control("bilingg")
		if !errors.Is(err, ErrNoBreaker) || !strings.Contains(err.Error(), `"bilingg"`) {
			t.Errorf("%s of a typo: %v, want ErrNoBreaker naming the key", name, err)
		}
		if err := control(""); err == nil || errors.Is(err, ErrNoBreaker) {
			t.Errorf("%s of an empty key: %v, want an error that says the key is not valid", name, err)
		}
	}
	if n := len(b.Snapshot()); n != 1 {
		t.Fatalf("%d keys after controlling a typo, want only billing", n)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || strings.Contains(fmt.Sprint(gatherKeys(t, reg)), "bilingg") {
		t.Fatalf("metric series for the typo (%d series, %v)", n, err)
	}
}

// gatherKeys returns the key label values of every series reg gathers.
func gatherKeys(t *testing.T, reg prometheus.Gatherer) map[string]bool {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "key" {
					keys[l.GetValue()] = true
				}
			}
		}
	}
	return keys
}

func TestControlActsOnKeysThatExist(t *testing.T) {
	cfg, err := LoadConfig(strings.NewReader("keys:\n  billing:\n    open_for: 1m\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newSet(t, WithConfig(cfg), WithMaxKeys(2))
	b.Middleware("catalog")
	keyed := b.KeyedMiddleware(func(r *http.Request) string { return r.URL.Path[1:] })(newStatusHandler(200))
	record(keyed, "/git")
	for _, key := range []string{"catalog", "git", "billing"} { // wired, seen by a KeyFunc, named in the config
		if err := b.ForceOpen(key, 0); err != nil {
			t.Fatalf("ForceOpen(%q): %v", key, err)
		}
		if st := b.State(key); st != StateForcedOpen {
			t.Fatalf("%s: %v after ForceOpen", key, st)
		}
	}
	// billing, named in the config, was forced open before its first
	// request, even past WithMaxKeys: the config bounds its own keys.
	if rec := record(keyed, "/billing"); rec.Code != 503 {
		t.Fatalf("a configured key forced open before its first request answered %d", rec.Code)
	}
	for _, key := range []string{"catalog", "git", "billing"} {
		if err := b.Release(key); err != nil {
			t.Fatalf("Release(%q): %v", key, err)
		}
		if err := b.Reset(key); err != nil {
			t.Fatalf("Reset(%q): %v", key, err)
		}
	}
	if rec := record(keyed, "/billing"); rec.Code != 200 {
		t.Fatalf("billing after Release answered %d", rec.Code)
	}
}

func TestForceOpenForTheLongestDurationStaysOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t)
		h := b.Middleware("p")(newStatusHandler(200))
		time.Sleep(time.Minute) // the set's clock has moved, as it has in a running service
		if err := b.ForceOpen("p", math.MaxInt64); err == nil || !strings.Contains(err.Error(), "168h0m0s") {
			t.Fatalf("ForceOpen(MaxInt64): %v, want an error naming the longest there is", err)
		}
		if err := b.ForceOpen("p", maxForceOpen); err != nil {
			t.Fatal(err)
		}
		time.Sleep(24 * time.Hour)
		rec := record(h, "/")
		secs, _ := strconv.ParseInt(rec.Header().Get("Retry-After"), 10, 64)
		if b.State("p") != StateForcedOpen || rec.Code != 503 || secs != int64(MaxRetryAfter/time.Second) {
			t.Fatalf("a day into a week's ForceOpen: %v, %d, Retry-After %ds; want forced open, and come back in an hour (MaxRetryAfter)",
				b.State("p"), rec.Code, secs)
		}
		if left := status(t, b, "p").RetryAfter; left != 6*24*time.Hour {
			t.Fatalf("a day into a week's ForceOpen, the status says %v left, want six days", left)
		}
	})
}

func TestProbeEndsTheCooldownNow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, sink := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Hour}))
		up := newStatusHandler(500)
		h := b.Middleware("p")(up)
		record(h, "/")
		if st := b.State("p"); st != StateOpen {
			t.Fatalf("%v, want open", st)
		}
		if err := b.Probe("p"); err != nil {
			t.Fatal(err)
		}
		if st := b.State("p"); st != StateHalfOpen {
			t.Fatalf("after Probe: %v, want half-open", st)
		}
		up.set(200)
		for range 3 {
			if rec := record(h, "/"); rec.Code != 200 {
				t.Fatalf("a probe got %d", rec.Code)
			}
		}
		if st := b.State("p"); st != StateClosed {
			t.Fatalf("after 3 probes: %v, want closed", st)
		}
		rec := sink.matching("state changed")
		if e := rec[1]; e.attrs["reason"] != "probe" || e.attrs["to"] != "half_open" || !strings.Contains(e.attrs["by"], "control_test.go:") {
			t.Fatalf("Probe's record %v, want open -> half_open, reason probe, by this file", e.attrs)
		}
	})
}

func TestProbeOnAKeyThatIsNotOpenChangesNothing(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Hour}))
	b.Middleware("p")
	if err := b.Probe("p"); !errors.Is(err, ErrNotOpen) || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Probe of a closed key: %v, want ErrNotOpen saying it is closed", err)
	}
	_ = b.ForceOpen("p", 0)
	if err := b.Probe("p"); !errors.Is(err, ErrNotOpen) || b.State("p") != StateForcedOpen {
		t.Errorf("Probe of a forced key: %v in %v, want ErrNotOpen and still forced open", err, b.State("p"))
	}
	if err := b.Probe("nope"); !errors.Is(err, ErrNoBreaker) {
		t.Errorf("Probe of an unknown key: %v, want ErrNoBreaker", err)
	}
}

func TestTheStatusPageProbesAnOpenKey(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Hour}))
	record(b.Middleware("p")(newStatusHandler(500)), "/")
	b.Middleware("q")
	page := b.StatusHandler(AllowControl(func(*http.Request) bool { return true }))
	html := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Accept", "text/html")
	page.ServeHTTP(html, req)
	if n := strings.Count(html.Body.String(), `value="probe"`); n != 1 {
		t.Fatalf("%d Probe now buttons, want one, for the open key", n)
	}
	for key, want := range map[string]int{"q": http.StatusConflict, "p": http.StatusOK} {
		rec := httptest.NewRecorder()
		post := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("key="+key+"&action=probe"))
		post.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		page.ServeHTTP(rec, post)
		if rec.Code != want {
			t.Errorf("probe %s: %d %s, want %d", key, rec.Code, rec.Body, want)
		}
	}
	if st := b.State("p"); st != StateHalfOpen {
		t.Errorf("after the page's probe: %v, want half-open", st)
	}
}
