package httpbreaker

import (
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// bandsOf writes a timeline's bands as "state x+w", in drawing order.
func bandsOf(tl timeline) []string {
	var out []string
	for _, b := range tl.Bands {
		out = append(out, fmt.Sprintf("%s %s+%s", b.State, b.X, b.W))
	}
	return out
}

func TestTimelineDrawsTheLastHour(t *testing.T) {
	now := time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	for _, tc := range []struct {
		name    string
		s       Status
		bands   []string
		known   string
		summary string
	}{{
		name: "tripped, recovered after a probe of a second, then forced open",
		s: Status{State: StateForcedOpen, HistorySince: ago(2 * time.Hour), History: []Transition{
			{Time: ago(50 * time.Minute), From: StateClosed, To: StateOpen, Reason: ReasonFailureRate},
			{Time: ago(49 * time.Minute), From: StateOpen, To: StateHalfOpen, Reason: ReasonCooldown},
			{Time: ago(49*time.Minute - time.Second), From: StateHalfOpen, To: StateClosed, Reason: ReasonProbesSucceeded},
			{Time: ago(10 * time.Minute), From: StateClosed, To: StateForcedOpen, Reason: ReasonForceOpen},
		}},
		// 4px a minute. Closed bands first; the probe's second, a 15th of a
		// pixel, is drawn 2px wide.
		bands:   []string{"closed 0+40", "closed 44.1+155.9", "half_open 44+2", "open 40+4", "forced_open 200+40"},
		summary: "last hour: opened 2 times; open or half-open for 11m1s",
	}, {
		name: "forced open while the breaker underneath trips: forced open throughout",
		s: Status{State: StateForcedOpen, HistorySince: ago(2 * time.Hour), History: []Transition{
			{Time: ago(30 * time.Minute), From: StateClosed, To: StateForcedOpen, Reason: ReasonForceOpen},
			{Time: ago(20 * time.Minute), From: StateClosed, To: StateOpen, Reason: ReasonConsecutiveFailures, Forced: StateForcedOpen},
		}},
		bands:   []string{"closed 0+120", "forced_open 120+40", "forced_open 160+80"},
		summary: "last hour: opened once; open or half-open for 30m0s",
	}, {
		name: "older transitions forgotten: nothing drawn before the oldest kept",
		s: Status{State: StateClosed, HistorySince: ago(30 * time.Minute), History: []Transition{
			{Time: ago(30 * time.Minute), From: StateHalfOpen, To: StateClosed, Reason: ReasonProbesSucceeded},
		}},
		bands:   []string{"closed 120+120"},
		known:   "120",
		summary: "last hour: closed throughout (history since 30m0s ago)",
	}, {
		name:    "made a quarter of an hour ago, never changed",
		s:       Status{State: StateClosed, HistorySince: ago(15 * time.Minute), History: []Transition{}},
		bands:   []string{"closed 180+60"},
		known:   "180",
		summary: "last hour: closed throughout (history since 15m0s ago)",
	}, {
		name: "open since before the hour",
		s: Status{State: StateOpen, HistorySince: ago(3 * time.Hour), History: []Transition{
			{Time: ago(2 * time.Hour), From: StateClosed, To: StateOpen, Reason: ReasonConsecutiveFailures},
		}},
		bands:   []string{"open 0+240"},
		summary: "last hour: open or half-open for 1h0m0s",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			tl := timelineOf(tc.s, now)
			if got := bandsOf(tl); strings.Join(got, ", ") != strings.Join(tc.bands, ", ") {
				t.Errorf("bands %q\nwant  %q", got, tc.bands)
			}
			if tl.Known != tc.known || tl.Summary != tc.summary {
				t.Errorf("known %q, summary %q; want %q, %q", tl.Known, tl.Summary, tc.known, tc.summary)
			}
			for _, b := range tl.Bands {
				if h := fmt.Sprint(bandHeight[b.State]); b.H != h || !strings.HasPrefix(b.Title, b.State.String()+" from ") {
					t.Errorf("band %+v: want height %s and a title naming its state", b, h)
				}
			}
		})
	}
}

// TestTimelineBandsReadWithoutColour holds that each state's band height
// is its own among those a key passes through on a trip, ordered by how
// much the state turns away.
func TestTimelineBandsReadWithoutColour(t *testing.T) {
	order := []State{StateClosed, StateRecovering, StateHalfOpen, StateOpen}
	for i := 1; i < len(order); i++ {
		if bandHeight[order[i]] <= bandHeight[order[i-1]] {
			t.Errorf("%v's band (%dpx) is not taller than %v's (%dpx)", order[i], bandHeight[order[i]], order[i-1], bandHeight[order[i-1]])
		}
	}
	for st := range numStates {
		if bandHeight[st] == 0 {
			t.Errorf("%v has no band height", st)
		}
	}
}

// TestStatusPageDrawsEachKeysLastHour holds the page's part: a key that
// tripped and recovered has a timeline with its open band, and its changes
// listed newest first on demand, all in markup the page's content security
// policy allows (no inline style or script).
func TestStatusPageDrawsEachKeysLastHour(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Minute, HalfOpenRequests: 1}))
		up := newStatusHandler(500)
		h := b.Middleware("payments")(up)
		b.Middleware("catalog")
		time.Sleep(10 * time.Minute)
		record(h, "/")
		time.Sleep(2 * time.Minute)
		up.set(200)
		record(h, "/")
		time.Sleep(5 * time.Minute)
		_, _, page := serveOnce(b.StatusHandler(), "text/html")
		row := page[strings.Index(page, `<tr id="key-payments">`):]
		row = row[:strings.Index(row, "</tr>")]
		for _, want := range []string{
			`<svg class="timeline" width="240" height="24" viewBox="0 0 240 24" role="img" aria-label="last hour: opened once; open or half-open for 2m0s (history since 17m0s ago)">`,
			`<rect class="open" x="212" y="0" width="4" height="24"><title>open from 00:10:00 to 00:11:00 (1m0s)</title></rect>`,
			`<summary>last 3 state changes</summary>`,
			`<time datetime="2000-01-01T00:12:00Z" title="2000-01-01T00:12:00Z">00:12:00</time> (5m0s ago) half_open → closed: probes_succeeded (1 succeeded, 0 failed)</li>` +
				`<li><time datetime="2000-01-01T00:11:00Z" title="2000-01-01T00:11:00Z">00:11:00</time> (6m0s ago) open → half_open: cooldown over</li>` +
				`<li><time datetime="2000-01-01T00:10:00Z" title="2000-01-01T00:10:00Z">00:10:00</time> (7m0s ago) closed → open: 1 failure in a row</li>`,
		} {
			if !strings.Contains(row, want) {
				t.Errorf("payments' row lacks\n%s\nin\n%s", want, row)
			}
		}
		catalog := page[strings.Index(page, `<tr id="key-catalog">`):]
		if catalog = catalog[:strings.Index(catalog, "</tr>")]; !strings.Contains(catalog, `<svg class="timeline"`) || strings.Contains(catalog, "<details>") {
			t.Errorf("catalog, which never changed, wants a timeline and no list of changes:\n%s", catalog)
		}
		body := page[strings.Index(page, "<body>"):]
		for _, banned := range []string{"style=", "<script", "<style", "href=", "xlink"} {
			if strings.Contains(body, banned) {
				t.Errorf("the page's body has %q, which its content security policy refuses", banned)
			}
		}
	})
}

func TestStatusPageSaysHowOftenItReloads(t *testing.T) {
	for every, want := range map[time.Duration]string{
		time.Second:             "; this page reloads every second.",
		300 * time.Millisecond:  "; this page reloads every second.",
		1500 * time.Millisecond: "; this page reloads every second.",
		5 * time.Second:         "; this page reloads every 5 seconds.",
		time.Minute:             "; this page reloads every 60 seconds.",
	} {
		_, srv := statusServer(t, StatusRefresh(every))
		if _, _, body := fetch(t, "GET", srv.URL, "text/html", nil); !strings.Contains(body, want) {
			t.Errorf("StatusRefresh(%v): the page does not say %q", every, want)
		}
	}
}
