package httpbreaker

import (
	"fmt"
	"html/template"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

var bandRect = regexp.MustCompile(`<rect class="([a-z_]+)" x="([0-9.]+)" y="([0-9.]+)" width="([0-9.]+)" height="([0-9.]+)"><title>([^<]*)</title>`)

// bandsOf writes a strip's bands as "state x+w", in drawing order: the
// states' bands, without the grey line of what is not known or the frame
// of what is zoomed.
func bandsOf(strip template.HTML) []string {
	var out []string
	for _, m := range bandRect.FindAllStringSubmatch(string(strip), -1) {
		if m[1] != "unknown" && m[1] != "zoomed" {
			out = append(out, fmt.Sprintf("%s %s+%s", m[1], m[2], m[4]))
		}
	}
	return out
}

// knownOf returns where a strip's history starts, from its left edge: ""
// when it starts before the strip.
func knownOf(strip template.HTML) string {
	for _, m := range bandRect.FindAllStringSubmatch(string(strip), -1) {
		if m[1] == "unknown" {
			return m[4]
		}
	}
	return ""
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
		summary: "last hour: 2 outages, 11m1s in all; the latest, going on for 10m0s: forced open",
	}, {
		name: "forced open while the breaker underneath trips: forced open throughout",
		s: Status{State: StateForcedOpen, HistorySince: ago(2 * time.Hour), History: []Transition{
			{Time: ago(30 * time.Minute), From: StateClosed, To: StateForcedOpen, Reason: ReasonForceOpen},
			{Time: ago(20 * time.Minute), From: StateClosed, To: StateOpen, Reason: ReasonConsecutiveFailures, Forced: StateForcedOpen},
		}},
		bands:   []string{"closed 0+120", "forced_open 120+40", "forced_open 160+80"},
		summary: "last hour: 1 outage, going on for 30m0s: forced open",
	}, {
		name: "older transitions forgotten: nothing drawn before the oldest kept",
		s: Status{State: StateClosed, HistorySince: ago(30 * time.Minute), History: []Transition{
			{Time: ago(30 * time.Minute), From: StateHalfOpen, To: StateClosed, Reason: ReasonProbesSucceeded},
		}},
		bands:   []string{"closed 120+120"},
		known:   "120",
		summary: "last hour (history since 30m0s ago): closed throughout",
	}, {
		name:    "made a quarter of an hour ago, never changed",
		s:       Status{State: StateClosed, HistorySince: ago(15 * time.Minute), History: []Transition{}},
		bands:   []string{"closed 180+60"},
		known:   "180",
		summary: "last hour (history since 15m0s ago): closed throughout",
	}, {
		name: "open since before the hour",
		s: Status{State: StateOpen, HistorySince: ago(3 * time.Hour), History: []Transition{
			{Time: ago(2 * time.Hour), From: StateClosed, To: StateOpen, Reason: ReasonConsecutiveFailures, ConsecutiveFailures: 5},
		}},
		bands:   []string{"open 0+240"},
		summary: "last hour: 1 outage, going on for 2h0m0s: tripped on 5 failures in a row",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			tl := timelineOf(tc.s, now)
			if got := bandsOf(tl.Hour); strings.Join(got, ", ") != strings.Join(tc.bands, ", ") {
				t.Errorf("bands %q\nwant  %q", got, tc.bands)
			}
			if known := knownOf(tl.Hour); known != tc.known || tl.Summary != tc.summary {
				t.Errorf("known %q, summary %q\nwant  %q, %q", known, tl.Summary, tc.known, tc.summary)
			}
			for _, m := range bandRect.FindAllStringSubmatch(string(tl.Hour), -1) {
				var st State
				if m[1] == "unknown" || m[1] == "zoomed" || st.UnmarshalText([]byte(m[1])) != nil {
					continue
				}
				if h := fmt.Sprint(bandHeight[st]); m[5] != h || !strings.HasPrefix(m[6], m[1]+" from ") {
					t.Errorf("band %q: want height %s and a title naming its state", m[0], h)
				}
			}
		})
	}
}

// widthOf sums the widths of a strip's bands of the states named.
func widthOf(strip template.HTML, states ...string) float64 {
	var w float64
	for _, m := range bandRect.FindAllStringSubmatch(string(strip), -1) {
		if slices.Contains(states, m[1]) {
			f, _ := strconv.ParseFloat(m[4], 64)
			w += f
		}
	}
	return w
}

// TestTimelineZoomsIntoAShortOutage holds issue 27's 30-second outage: two
// pixels of the hour's strip, so a second strip zooms to it, where it
// takes most of the width and its probe shows; the hour's strip frames
// the part zoomed.
func TestTimelineZoomsIntoAShortOutage(t *testing.T) {
	now := time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	s := Status{State: StateClosed, HistorySince: ago(2 * time.Hour), History: []Transition{
		{Time: ago(20 * time.Minute), From: StateClosed, To: StateOpen, Reason: ReasonConsecutiveFailures, ConsecutiveFailures: 5},
		{Time: ago(20*time.Minute - 20*time.Second), From: StateOpen, To: StateHalfOpen, Reason: ReasonCooldown},
		{Time: ago(20*time.Minute - 30*time.Second), From: StateHalfOpen, To: StateClosed, Reason: ReasonProbesSucceeded, Successes: 3},
	}}
	tl := timelineOf(s, now)
	if w := widthOf(tl.Hour, "open", "half_open"); w > 4 {
		t.Fatalf("the hour's strip draws the 30s outage %vpx wide, want the 2px it is", w)
	}
	// 3s either side: 36s across 240px.
	if got, want := bandsOf(tl.Zoom), []string{"closed 0+20", "closed 220+20", "half_open 153.3+66.7", "open 20+133.3"}; !slices.Equal(got, want) {
		t.Errorf("zoomed bands %q\nwant        %q", got, want)
	}
	if tl.ZoomFrom != "02:39:57" || tl.ZoomTo != "02:40:33" {
		t.Errorf("the zoomed strip runs from %s to %s, want 02:39:57 to 02:40:33", tl.ZoomFrom, tl.ZoomTo)
	}
	if !strings.Contains(string(tl.Hour), `<rect class="zoomed" x="159.8" y="0.5" width="2.4" height="23">`) {
		t.Errorf("the hour's strip does not frame the part zoomed:\n%s", tl.Hour)
	}
	if want := "last hour: 1 outage, 30s: tripped on 5 failures in a row, closed when its probes succeeded"; tl.Summary != want {
		t.Errorf("summary %q\nwant    %q", tl.Summary, want)
	}

	// An outage of a quarter of an hour or more reads in the hour's strip.
	s.History[1].Time, s.History[2].Time = ago(10*time.Minute), ago(5*time.Minute)
	if tl := timelineOf(s, now); tl.Zoom != "" || strings.Contains(string(tl.Hour), "zoomed") {
		t.Errorf("a 15-minute outage is zoomed: %s", tl.Zoom)
	}
}

// TestTimelineTellsOneOutageWithFailedProbesAsOne holds issue 27's "opened
// 5 times": a trip whose probes fail four times before they succeed is
// one outage, and the summary says how its probes went.
func TestTimelineTellsOneOutageWithFailedProbesAsOne(t *testing.T) {
	now := time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)
	at := now.Add(-30 * time.Minute)
	h := []Transition{{Time: at, From: StateClosed, To: StateOpen, Reason: ReasonFailureRate, Failures: 6, Successes: 4}}
	for range 4 {
		at = at.Add(30 * time.Second)
		h = append(h, Transition{Time: at, From: StateOpen, To: StateHalfOpen, Reason: ReasonCooldown})
		at = at.Add(time.Second)
		h = append(h, Transition{Time: at, From: StateHalfOpen, To: StateOpen, Reason: ReasonProbeFailed, Failures: 1})
	}
	h = append(h, Transition{Time: at.Add(30 * time.Second), From: StateOpen, To: StateHalfOpen, Reason: ReasonCooldown})
	closed := Transition{Time: at.Add(31 * time.Second), From: StateHalfOpen, To: StateClosed, Reason: ReasonProbesSucceeded, Successes: 3}
	s := Status{State: StateClosed, HistorySince: now.Add(-2 * time.Hour), History: append(h, closed)}
	if got, want := timelineOf(s, now).Summary, "last hour: 1 outage, 2m35s: tripped on 6 of 10 failed (60%), probes failed 4 times, closed when its probes succeeded"; got != want {
		t.Errorf("summary %q\nwant    %q", got, want)
	}
	// Still going on, half-open now: said so.
	s.State, s.History = StateHalfOpen, h
	if got, want := timelineOf(s, now).Summary, "last hour: 1 outage, going on for 30m0s: tripped on 6 of 10 failed (60%), probes failed 4 times, half_open now"; got != want {
		t.Errorf("summary %q\nwant    %q", got, want)
	}
	// A second outage: both counted, the latest told.
	s.State, s.History = StateForcedOpen, append(append(slices.Clone(h), closed),
		Transition{Time: now.Add(-time.Minute), From: StateClosed, To: StateForcedOpen, Reason: ReasonForceOpen, By: "status page from 10.0.0.7:5123"})
	if got, want := timelineOf(s, now).Summary, "last hour: 2 outages, 3m35s in all; the latest, going on for 1m0s: forced open by status page from 10.0.0.7:5123"; got != want {
		t.Errorf("summary %q\nwant    %q", got, want)
	}
}

// TestTimelinePutsChangesInTimeOrder holds the changes of a key recorded
// out of their order (a change recorded late is dated when it happened):
// the bands and the list follow the times.
func TestTimelinePutsChangesInTimeOrder(t *testing.T) {
	now := time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	s := Status{State: StateHalfOpen, HistorySince: ago(2 * time.Hour), History: []Transition{
		{Time: ago(40 * time.Minute), From: StateClosed, To: StateOpen, Reason: ReasonConsecutiveFailures, ConsecutiveFailures: 5},
		{Time: ago(20 * time.Minute), From: StateOpen, To: StateHalfOpen, Reason: ReasonCooldown, Fleet: true, Replica: "r2"},
		{Time: ago(30 * time.Minute), From: StateHalfOpen, To: StateOpen, Reason: ReasonProbeFailed, Failures: 1},
		{Time: ago(35 * time.Minute), From: StateOpen, To: StateHalfOpen, Reason: ReasonCooldown},
	}}
	tl := timelineOf(s, now)
	if got, want := bandsOf(tl.Hour), []string{"closed 0+80", "half_open 100+20", "half_open 160+80", "open 80+20", "open 120+40"}; !slices.Equal(got, want) {
		t.Errorf("bands %q\nwant  %q", got, want)
	}
	var times []string
	for _, m := range regexp.MustCompile(`<time datetime="[^"]*" title="[^"]*">([0-9:]+)</time>`).FindAllStringSubmatch(string(changesOf(s, now)), -1) {
		times = append(times, m[1])
	}
	if want := []string{"02:40:00", "02:30:00", "02:25:00", "02:20:00"}; !slices.Equal(times, want) {
		t.Errorf("the changes are listed at %q, want newest first %q", times, want)
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
			`<svg class="timeline" width="240" height="24" viewBox="0 0 240 24" role="img" aria-label="last hour (history since 17m0s ago): 1 outage, 2m0s: tripped on 1 failure in a row, closed when its probes succeeded">`,
			`<rect class="open" x="212" y="0" width="4" height="24"><title>open from 00:10:00 to 00:11:00 (1m0s)</title></rect>`,
			// Two minutes are 8px of the hour: zoomed, with 12s either side.
			`<svg class="timeline zoom" width="240" height="24" viewBox="0 0 240 24" role="img" aria-label="the latest outage, zoomed: 00:09:48 to 00:12:12">`,
			`<rect class="open" x="20" y="0" width="100" height="24"><title>open from 00:10:00 to 00:11:00 (1m0s)</title></rect>`,
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
		for _, banned := range []string{"style=", "<script", "<style", "xlink"} {
			if strings.Contains(body, banned) {
				t.Errorf("the page's body has %q, which its content security policy refuses", banned)
			}
		}
		// Links go to the page itself, with another query.
		for _, m := range regexp.MustCompile(`href="([^"]*)"`).FindAllStringSubmatch(body, -1) {
			if !strings.HasPrefix(m[1], "?") {
				t.Errorf("the page links to %q, not to itself", m[1])
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

// TestStatusListsChangesRecordedLateInTimeOrder holds the change list and
// the JSON's history in time order when a change is recorded after a later
// one: a key open for 5 minutes is forced open for one; read 20 minutes on,
// its cooldown's end (at 5m) is recorded before the forced state's end (at
// 1m), which is dated when it ran out.
func TestStatusListsChangesRecordedLateInTimeOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: 5 * time.Minute, MaxOpenFor: 5 * time.Minute}))
		record(b.Middleware("payments")(newStatusHandler(500)), "/")
		if err := b.ForceOpen("payments", time.Minute); err != nil {
			t.Fatal(err)
		}
		_ = b.Close() // no timer moves the key on when its time comes: the read does, late
		time.Sleep(20 * time.Minute)
		s := status(t, b, "payments")
		if !slices.IsSortedFunc(s.History, byTime) || len(s.History) < 4 {
			t.Fatalf("history out of time order: %+v", s.History)
		}
		_, _, page := serveOnce(b.StatusHandler(), "text/html")
		var times []string
		for _, m := range regexp.MustCompile(`<time datetime="([^"]*)"`).FindAllStringSubmatch(page, -1) {
			times = append(times, m[1])
		}
		if !slices.IsSortedFunc(times, func(a, b string) int { return strings.Compare(b, a) }) {
			t.Errorf("the page lists the changes at %q, not newest first", times)
		}
	})
}
