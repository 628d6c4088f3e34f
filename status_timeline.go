package httpbreaker

import (
	"fmt"
	"html/template"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The timeline of a key on the status page: its last hour, drawn on the
// server as inline SVG (no script, and no style but the page's own, which
// its content security policy allows by hash), one band per state. A band's
// height says how much the key turned away, so that the timeline reads
// without colour: a thin band closed, a full one open. Each band has a
// title with its state and times, and a line of text under the timeline
// says the same in words.
//
// An hour is 240 pixels, 15 seconds a pixel: a 30-second outage is two
// pixels, and its probes are slivers. So the latest outage of the hour,
// when it is short (under zoomUnder), gets a second strip of its own,
// zoomed to the outage and a little either side, where a 30-second outage
// takes most of the width; the hour's strip marks the part zoomed.
//
// The strips are written here, not in the page's template: a key with a
// full history has some forty bands, and the page shows many keys, so the
// template's per-value work would be most of the page's cost. Every string
// written comes from this package's formatting (states, times, counts) or
// is escaped with template.HTMLEscapeString.
const (
	timelineSpan   = time.Hour
	timelineWidth  = 240 // px
	timelineHeight = 24  // px
	// minBand is the narrowest band of a state other than closed, so that
	// a trip of a second, a 15th of a pixel, still shows.
	minBand = 2.0
	// zoomUnder is the longest outage that gets a strip of its own: a
	// longer one takes a quarter of the hour's strip or more, where its
	// probes show.
	zoomUnder = 15 * time.Minute
)

// bandHeight is each state's band height: how much of the traffic the state
// turns away, in steps that stay apart without colour.
var bandHeight = [numStates]int{
	StateClosed:       6,
	StateForcedClosed: 6,
	StateRecovering:   12,
	StateHalfOpen:     16,
	StateOpen:         timelineHeight,
	StateForcedOpen:   timelineHeight,
}

// timeline is what the page draws of a key's last hour.
type timeline struct {
	// Hour is the last hour's strip, as an SVG element.
	Hour template.HTML
	// Zoom is the latest outage's strip, zoomed, when the hour's strip
	// draws it too small to read; "" otherwise. ZoomFrom and ZoomTo are
	// the times of day at its ends.
	Zoom             template.HTML
	ZoomFrom, ZoomTo string
	// Summary says in words what the strips show.
	Summary string
}

// span is a part of a key's history in one state.
type span struct {
	from, to time.Time
	state    State
}

// inTimeOrder returns h in the order of its times (stably), copying it
// only if it is not in that order: a change recorded late, such as a
// cooldown that ended while nothing asked, is dated when it happened.
func inTimeOrder(h []Transition) []Transition {
	if slices.IsSortedFunc(h, byTime) {
		return h
	}
	h = slices.Clone(h)
	slices.SortStableFunc(h, byTime)
	return h
}

func byTime(a, b Transition) int { return a.Time.Compare(b.Time) }

// spansOf returns s's history as spans of one state each, in time order,
// from HistorySince to now. h is s.History in time order.
func spansOf(s Status, h []Transition, now time.Time) []span {
	var out []span
	add := func(from, to time.Time, st State) {
		if to.After(from) {
			out = append(out, span{from: from, to: to, state: st})
		}
	}
	if len(h) == 0 {
		add(s.HistorySince, now, s.State)
		return out
	}
	add(s.HistorySince, h[0].Time, h[0].before())
	for i, t := range h {
		until := now
		if i+1 < len(h) {
			until = h[i+1].Time
		}
		add(t.Time, until, t.shown())
	}
	return out
}

// turnsAway reports whether a key in st turns requests away, all or some
// of them: an outage is a time in such states, from the change that
// entered them to the change back to closed (or forced closed).
func turnsAway(st State) bool {
	return st == StateOpen || st == StateHalfOpen || st == StateRecovering || st == StateForcedOpen
}

// outage is one time a key turned requests away: a trip, its cooldowns,
// its failed probes and its recovery are one outage, however often the
// key reopened in it.
type outage struct {
	from, to time.Time // to is now while it goes on
	ongoing  bool
	// start is what began it, nil if it began before the history kept;
	// end what ended it, nil while it goes on.
	start, end *Transition
	// reopened counts the probes that failed in it: each sent the key
	// from half-open back to open.
	reopened int
}

// outagesOf returns s's outages, oldest first. h is s.History in time
// order.
func outagesOf(s Status, h []Transition, now time.Time) []outage {
	var out []outage
	var cur *outage
	if len(h) > 0 && turnsAway(h[0].before()) || len(h) == 0 && turnsAway(s.State) {
		cur = &outage{from: s.HistorySince}
	}
	for i := range h {
		t := &h[i]
		switch away := turnsAway(t.shown()); {
		case cur == nil && away:
			cur = &outage{from: t.Time, start: t}
		case cur != nil && !away:
			cur.to, cur.end = t.Time, t
			if cur.to.After(cur.from) { // not one that ended as the history starts
				out = append(out, *cur)
			}
			cur = nil
		case cur != nil && t.Forced == StateClosed && (t.Reason == ReasonProbeFailed || t.Reason == ReasonProbeTimeout):
			cur.reopened++
		}
	}
	if cur != nil {
		cur.to, cur.ongoing = now, true
		out = append(out, *cur)
	}
	return out
}

// timelineOf draws s's last hour, up to now.
func timelineOf(s Status, now time.Time) timeline {
	h := inTimeOrder(s.History)
	spans := spansOf(s, h, now)
	outages := outagesOf(s, h, now)
	start := now.Add(-timelineSpan)
	tl := timeline{Summary: summarize(s, outages, now)}
	var zoom *[2]time.Time
	if n := len(outages); n > 0 {
		if o := outages[n-1]; o.to.After(start) && o.to.Sub(o.from) < zoomUnder {
			pad := max(o.to.Sub(o.from)/10, time.Second)
			from, to := o.from.Add(-pad), earlierOf(o.to.Add(pad), now)
			zoom = &[2]time.Time{from, to}
			tl.Zoom = drawStrip(spans, s.HistorySince, from, to, now, nil, "timeline zoom",
				fmt.Sprintf("the latest outage, zoomed: %s to %s", clockTime(from, now), clockTime(to, now)))
			tl.ZoomFrom, tl.ZoomTo = clockTime(from, now), clockTime(to, now)
			if o.ongoing {
				tl.ZoomTo = "now"
			}
		}
	}
	tl.Hour = drawStrip(spans, s.HistorySince, start, now, now, zoom, "timeline", tl.Summary)
	return tl
}

// drawStrip draws the spans between from and to as an SVG strip: the part
// before known (where the history starts) as a grey line, each span as a
// band, closed bands first so that a short trip's band, widened to
// minBand, is drawn over them, and mark, if set, as a frame around the
// part that another strip zooms into. label is the strip's accessible
// name.
func drawStrip(spans []span, known, from, to, now time.Time, mark *[2]time.Time, class, label string) template.HTML {
	length := float64(to.Sub(from))
	x := func(t time.Time) float64 {
		return float64(min(max(t.Sub(from), 0), to.Sub(from))) / length * timelineWidth
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="%s" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s">`,
		class, timelineWidth, timelineHeight, timelineWidth, timelineHeight, template.HTMLEscapeString(label))
	if k := x(known); k > 0 {
		fmt.Fprintf(&b, `<rect class="unknown" x="0" y="%d" width="%s" height="1"><title>no history: the breaker was made later, or older changes are forgotten</title></rect>`,
			timelineHeight-1, px(k))
	}
	drawn := make([]span, 0, len(spans))
	for _, sp := range spans {
		if sp.to.After(from) && sp.from.Before(to) {
			drawn = append(drawn, sp)
		}
	}
	slices.SortStableFunc(drawn, func(a, b span) int { return bandHeight[a.state] - bandHeight[b.state] })
	for _, sp := range drawn {
		x0, w := x(sp.from), x(sp.to)-x(sp.from)
		switch {
		case sp.state != StateClosed && w < minBand:
			w = minBand
			x0 = min(x0, timelineWidth-minBand)
		case w < 0.05: // closed for less than a tenth of a pixel: nothing to draw
			continue
		}
		ht := bandHeight[sp.state]
		shown := func(t time.Time) time.Time { return earlierOf(laterOf(t, from), to) }
		fmt.Fprintf(&b, `<rect class="%s" x="%s" y="%d" width="%s" height="%d"><title>%s from %s to %s (%s)</title></rect>`,
			sp.state, px(x0), timelineHeight-ht, px(w), ht, sp.state, clockTime(shown(sp.from), now), clockTime(shown(sp.to), now),
			roughly(shown(sp.to).Sub(shown(sp.from))))
	}
	if mark != nil {
		x0, w := x(mark[0]), max(x(mark[1])-x(mark[0]), minBand)
		x0 = min(x0, timelineWidth-w)
		fmt.Fprintf(&b, `<rect class="zoomed" x="%s" y="0.5" width="%s" height="%d"><title>zoomed below: %s to %s</title></rect>`,
			px(x0), px(w), timelineHeight-1, clockTime(mark[0], now), clockTime(mark[1], now))
	}
	b.WriteString("</svg>")
	return template.HTML(b.String())
}

func earlierOf(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// px writes an SVG coordinate to a tenth of a pixel.
func px(v float64) string { return strings.TrimSuffix(strconv.FormatFloat(v, 'f', 1, 64), ".0") }

// summarize says in words what a key's last hour shows: closed throughout,
// or its outages, the latest told in full: how it began, how often its
// probes failed, how it ended.
func summarize(s Status, outages []outage, now time.Time) string {
	start := now.Add(-timelineSpan)
	made := ""
	if age := now.Sub(s.HistorySince); age < timelineSpan && age >= 0 {
		made = fmt.Sprintf(" (history since %s ago)", roughly(age))
	}
	var hour []outage
	var total time.Duration
	for _, o := range outages {
		if o.to.After(start) {
			hour = append(hour, o)
			total += o.to.Sub(laterOf(o.from, start))
		}
	}
	if len(hour) == 0 {
		return fmt.Sprintf("last hour%s: %s throughout", made, s.State)
	}
	latest := describeOutage(hour[len(hour)-1], s.State)
	if len(hour) == 1 {
		return fmt.Sprintf("last hour%s: 1 outage, %s", made, latest)
	}
	return fmt.Sprintf("last hour%s: %d outages, %s in all; the latest, %s", made, len(hour), roughly(total), latest)
}

// describeOutage says how long o lasted, how it began, how often its
// probes failed and how it ended (or, going on, the state now).
func describeOutage(o outage, now State) string {
	var parts []string
	long := roughly(o.to.Sub(o.from))
	if o.start == nil {
		long = "over " + long
	}
	if o.ongoing {
		long = "going on for " + long
	}
	if t := o.start; t != nil {
		parts = append(parts, describeStart(*t))
	} else {
		parts = append(parts, "began before the history kept")
	}
	switch o.reopened {
	case 0:
	case 1:
		parts = append(parts, "probes failed once")
	case 2:
		parts = append(parts, "probes failed twice")
	default:
		parts = append(parts, fmt.Sprintf("probes failed %d times", o.reopened))
	}
	switch {
	case o.end != nil:
		parts = append(parts, describeEnd(*o.end))
	case o.start == nil || o.reopened > 0 || o.start.shown() != now:
		parts = append(parts, now.String()+" now")
	}
	return long + ": " + strings.Join(parts, ", ")
}

// describeStart says what began an outage.
func describeStart(t Transition) string {
	switch t.Reason {
	case ReasonConsecutiveFailures, ReasonFailureRate, ReasonSlowCallRate:
		return "tripped on " + describeChange(t)
	case ReasonForceOpen:
		return "forced open" + byWhom(t)
	}
	return fmt.Sprintf("%s → %s: %s", t.before(), t.shown(), describeChange(t))
}

// describeEnd says what ended an outage.
func describeEnd(t Transition) string {
	switch t.Reason {
	case ReasonProbesSucceeded:
		return "closed when its probes succeeded" + fleetWide(t)
	case ReasonRampDone:
		return "closed when its recovery ramp ended"
	case ReasonRelease:
		return "released" + byWhom(t)
	case ReasonReset:
		return "reset" + byWhom(t)
	case ReasonForceClose:
		return "forced closed" + byWhom(t)
	}
	return fmt.Sprintf("%s → %s: %s", t.before(), t.shown(), describeChange(t))
}

func byWhom(t Transition) string {
	if t.By == "" {
		return ""
	}
	return " by " + t.By
}

func fleetWide(t Transition) string {
	if !t.Fleet {
		return ""
	}
	if t.Replica != "" {
		return ", fleet-wide (replica " + t.Replica + ")"
	}
	return ", fleet-wide"
}

// clockTime writes t for the page, in UTC as the page's time is: the time
// of day within a day of now, with the date before that.
func clockTime(t, now time.Time) string {
	t = t.UTC()
	if now.Sub(t) < 24*time.Hour {
		return t.Format("15:04:05")
	}
	return t.Format("Jan 2 15:04:05")
}

// changesOf lists s's transitions for the page, newest first, in the
// order of their times, local and the fleet's alike, as an HTML list.
func changesOf(s Status, now time.Time) template.HTML {
	h := inTimeOrder(s.History)
	var b strings.Builder
	b.WriteString(`<ol class="changes">`)
	for i := len(h) - 1; i >= 0; i-- {
		t := h[i]
		at := t.Time.UTC().Format(time.RFC3339)
		fmt.Fprintf(&b, `<li><time datetime="%s" title="%s">%s</time> (%s ago) %s → %s: %s</li>`, at, at, clockTime(t.Time, now),
			roughly(max(now.Sub(t.Time), 0)), t.From, t.To, template.HTMLEscapeString(describeChange(t)))
	}
	b.WriteString("</ol>")
	return template.HTML(b.String())
}

// describeChange says why a transition happened, with its counts, for the
// page.
func describeChange(t Transition) string {
	var what string
	switch t.Reason {
	case ReasonConsecutiveFailures:
		what = plural(t.ConsecutiveFailures, "failure") + " in a row"
	case ReasonFailureRate:
		what = fmt.Sprintf("%d of %d failed (%s)", t.Failures, t.Failures+t.Successes, percent(failureRate(t.Failures, t.Successes)))
	case ReasonSlowCallRate:
		what = fmt.Sprintf("%d of %d slow", t.Slow, t.Failures+t.Successes)
	case ReasonCooldown:
		what = "cooldown over"
	case ReasonProbe:
		what = "probe now"
	case ReasonProbeFailed, ReasonProbeTimeout, ReasonProbesSucceeded:
		what = string(t.Reason)
		if t.Successes+t.Failures > 0 {
			what += fmt.Sprintf(" (%d succeeded, %d failed)", t.Successes, t.Failures)
		}
	case ReasonRampDone:
		what = "recovery ramp over"
	case ReasonExpiry:
		what = "the fleet's hold ended"
		if t.From == StateForcedOpen || t.From == StateForcedClosed {
			what = "the forced state ran out"
		}
	default:
		what = strings.ReplaceAll(string(t.Reason), "_", " ")
	}
	what += byWhom(t)
	if t.Forced != StateClosed {
		what += ", underneath " + t.Forced.String()
	}
	return what + fleetWide(t)
}

// plural says n things in English: "1 failure", "3 failures".
func plural(n uint32, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// percent prints a rate as a whole percentage.
func percent(r float64) string { return fmt.Sprintf("%.0f%%", 100*r) }

// roughly prints a duration as people read it on a status page.
func roughly(d time.Duration) string {
	if d < time.Hour {
		return d.Truncate(time.Second).String()
	}
	return d.Truncate(time.Minute).String()
}
