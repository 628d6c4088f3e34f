package httpbreaker

import (
	"fmt"
	"slices"
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
const (
	timelineSpan   = time.Hour
	timelineWidth  = 240 // px
	timelineHeight = 24  // px
	// minBand is the narrowest band of a state other than closed, so that
	// a trip of a second, a 15th of a pixel, still shows.
	minBand = 2.0
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
	Width, Height int
	BaseY         int // where a 1px line along the bottom starts
	Bands         []band
	// Known is where the key's history starts, from the left edge (the
	// breaker was made, or older transitions were forgotten, within the
	// hour); the part before it is drawn as a grey line.
	Known string
	// Summary says in words what the bands show.
	Summary string
}

// band is a span of time the key spent in one state.
type band struct {
	State      State
	X, W, Y, H string // SVG coordinates
	Title      string
}

// span is a part of the key's history in one state, in ns from the
// timeline's left edge.
type span struct {
	from, to int64
	state    State
}

// timelineOf draws s's last hour, up to now.
func timelineOf(s Status, now time.Time) timeline {
	start := now.Add(-timelineSpan)
	pos := func(t time.Time) int64 { return int64(min(max(t.Sub(start), 0), timelineSpan)) }
	var spans []span
	add := func(from, to time.Time, st State) {
		if f, t := pos(from), pos(to); t > f {
			spans = append(spans, span{from: f, to: t, state: st})
		}
	}
	h := s.History
	if len(h) == 0 {
		add(s.HistorySince, now, s.State)
	} else {
		add(s.HistorySince, h[0].Time, h[0].before())
		for i, t := range h {
			until := now
			if i+1 < len(h) {
				until = h[i+1].Time
			}
			add(t.Time, until, t.shown())
		}
	}
	tl := timeline{Width: timelineWidth, Height: timelineHeight, BaseY: timelineHeight - 1, Summary: summarize(s, spans, now)}
	if k := pos(s.HistorySince); k > 0 {
		tl.Known = px(float64(k) / float64(timelineSpan) * timelineWidth)
	}
	// Closed bands first: a short trip's band, widened to minBand, is drawn
	// over them, not under.
	slices.SortStableFunc(spans, func(a, b span) int { return bandHeight[a.state] - bandHeight[b.state] })
	for _, sp := range spans {
		x := float64(sp.from) / float64(timelineSpan) * timelineWidth
		w := float64(sp.to-sp.from) / float64(timelineSpan) * timelineWidth
		if sp.state != StateClosed && w < minBand {
			w = minBand
			x = min(x, timelineWidth-minBand)
		}
		ht := bandHeight[sp.state]
		tl.Bands = append(tl.Bands, band{State: sp.state, X: px(x), W: px(w), Y: fmt.Sprint(timelineHeight - ht),
			H: fmt.Sprint(ht), Title: fmt.Sprintf("%s from %s to %s (%s)", sp.state, clockTime(start.Add(time.Duration(sp.from)), now),
				clockTime(start.Add(time.Duration(sp.to)), now), roughly(time.Duration(sp.to-sp.from)))})
	}
	return tl
}

// px writes an SVG coordinate to a tenth of a pixel.
func px(v float64) string { return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0") }

// summarize says in words what a key's timeline shows: how often it
// opened in the last hour and how long it turned requests away.
func summarize(s Status, spans []span, now time.Time) string {
	var opened int
	for _, t := range s.History {
		if isOpen(t.shown()) && !isOpen(t.before()) && now.Sub(t.Time) <= timelineSpan {
			opened++
		}
	}
	var away time.Duration // open, forced open or half-open
	for _, sp := range spans {
		if sp.state == StateOpen || sp.state == StateForcedOpen || sp.state == StateHalfOpen {
			away += time.Duration(sp.to - sp.from)
		}
	}
	made := ""
	if age := now.Sub(s.HistorySince); age < timelineSpan && age >= 0 {
		made = fmt.Sprintf(" (history since %s ago)", roughly(age))
	}
	if opened == 0 && away == 0 {
		return fmt.Sprintf("last hour: %s throughout%s", s.State, made)
	}
	times := ""
	switch opened {
	case 0: // open since before the hour
	case 1:
		times = "opened once; "
	default:
		times = fmt.Sprintf("opened %d times; ", opened)
	}
	return fmt.Sprintf("last hour: %sopen or half-open for %s%s", times, roughly(away), made)
}

func isOpen(st State) bool { return st == StateOpen || st == StateForcedOpen }

// clockTime writes t for the page, in UTC as the page's time is: the time
// of day within a day of now, with the date before that.
func clockTime(t, now time.Time) string {
	t = t.UTC()
	if now.Sub(t) < 24*time.Hour {
		return t.Format("15:04:05")
	}
	return t.Format("Jan 2 15:04:05")
}

// change is one transition as the page lists it.
type change struct {
	At, When, Ago, From, To, What string
}

// changesOf lists s's transitions for the page, newest first.
func changesOf(s Status, now time.Time) []change {
	out := make([]change, 0, len(s.History))
	for i := len(s.History) - 1; i >= 0; i-- {
		t := s.History[i]
		out = append(out, change{At: t.Time.UTC().Format(time.RFC3339), When: clockTime(t.Time, now),
			Ago: roughly(max(now.Sub(t.Time), 0)), From: t.From.String(), To: t.To.String(), What: describeChange(t)})
	}
	return out
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
	if t.By != "" {
		what += " by " + t.By
	}
	if t.Forced != StateClosed {
		what += ", underneath " + t.Forced.String()
	}
	if t.Fleet {
		what += ", fleet-wide"
		if t.Replica != "" {
			what += " (replica " + t.Replica + ")"
		}
	}
	return what
}
