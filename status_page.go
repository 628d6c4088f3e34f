package httpbreaker

import (
	"cmp"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// StatusHandler returns a handler that shows every key's breaker: its state,
// mode, the outcomes in its window, its failure rate, the time until it
// admits requests again and when its state last changed. Clients that list
// text/html in Accept (browsers) get a small self-contained HTML page that
// reloads itself; others get a StatusPage as JSON. GET and HEAD never change
// anything; see AllowControl for POST.
func (b *Breakers) StatusHandler(opts ...StatusOption) http.Handler {
	h := &statusPage{set: b, refresh: 5 * time.Second}
	for _, opt := range opts {
		opt(h)
	}
	return h
}

// A StatusOption configures StatusHandler.
type StatusOption func(*statusPage)

// AllowControl lets StatusHandler change breakers: a POST with the form
// fields key and action (force_open, with an optional for such as "5m";
// force_close; release; reset; probe) calls ForceOpen, ForceClose, Release,
// Reset or Probe, if authorize(r) returns true, and answers 403 Forbidden if it
// returns false. authorize is where your authentication goes: a session,
// a token, a client certificate, a network check. Without AllowControl the
// handler is read-only.
//
// A browser's cross-origin POST is refused with 403 before authorize is
// asked (http.CrossOriginProtection: Sec-Fetch-Site, else Origin against
// Host), so that a page on another site cannot press the buttons with the
// cookies or the network position of whoever visits it. Clients that are not
// browsers, such as curl, send neither header and are not affected.
func AllowControl(authorize func(r *http.Request) bool) StatusOption {
	return func(h *statusPage) { h.authorize = authorize }
}

// StatusRefresh sets how often the HTML page reloads itself (default 5s),
// in whole seconds: a fraction of a second is dropped, and a positive
// duration below one second is taken as one second (so 100ms reloads
// every second, not ten times a second); 0 or less turns the reloading
// off.
func StatusRefresh(every time.Duration) StatusOption {
	return func(h *statusPage) {
		switch {
		case every <= 0:
			h.refresh = 0
		case every < time.Second:
			h.refresh = time.Second
		default:
			h.refresh = every
		}
	}
}

type statusPage struct {
	set       *Breakers
	authorize func(*http.Request) bool
	refresh   time.Duration
}

//go:embed status_page.html
var statusPageHTML string

var statusTemplate = template.Must(template.New("status").Parse(statusPageHTML))

// pagePolicy is the content security policy of the HTML page: nothing but
// its own inline style (by hash), forms that post back to it, and no
// framing, so that another site cannot show it in a frame and trick a click.
var pagePolicy = func() string {
	style := statusPageHTML[strings.Index(statusPageHTML, "<style>")+len("<style>") : strings.Index(statusPageHTML, "</style>")]
	sum := sha256.Sum256([]byte(style))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; " +
		"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
}()

// crossOrigin refuses control requests that a browser sends from another
// origin.
var crossOrigin = http.NewCrossOriginProtection()

func (h *statusPage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.show(w, r)
	case http.MethodPost:
		h.control(w, r)
	default:
		allow := "GET, HEAD"
		if h.authorize != nil {
			allow += ", POST"
		}
		w.Header().Set("Allow", allow)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func wantsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

func (h *statusPage) show(w http.ResponseWriter, r *http.Request) {
	st := StatusPage{Time: time.Now(), Fleet: h.set.FleetStatus(), Keys: h.set.Snapshot()}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if !wantsHTML(r) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
		return
	}
	now := time.Now()
	page := statusView{Refresh: refreshText(h.refresh), RefreshSeconds: int(h.refresh.Seconds()),
		Now: now.UTC().Format(time.RFC3339), Control: h.authorize != nil}
	rejecting := 0
	for _, s := range st.Keys {
		if s.Rejecting {
			rejecting++
		}
		row := statusRow{Status: s, SinceTime: s.Since.UTC().Format(time.RFC3339),
			Since: roughly(now.Sub(s.Since)), FailureRate: percent(s.Window.FailureRate()), Why: cause(s, now),
			BlamedOn: blamedOn(s.BlamedOn), CalledBy: strings.Join(s.Dependents, ", "),
			Changes: changesOf(s, now), LongKey: utf8.RuneCountInString(s.Key) > shortKey}
		if s.Side != "" || len(s.History) > 0 {
			tl := timelineOf(s, now)
			row.Timeline = &tl
		}
		switch {
		case s.RetryAfter > 0:
			row.RetryIn = "in " + roughly(s.RetryAfter)
		case s.State == StateForcedOpen:
			row.RetryIn = "when released"
		case s.State == StateHalfOpen:
			row.RetryIn = "when its probes succeed"
		}
		page.Breakers = append(page.Breakers, row)
	}
	page.Summary = summary(len(st.Keys), rejecting) + fleetSummary(st.Fleet)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", pagePolicy)
	w.Header().Set("X-Frame-Options", "DENY")
	_ = statusTemplate.Execute(w, page)
}

type statusView struct {
	Refresh        string // "every second", "every 5 seconds"; "" when the page does not reload
	RefreshSeconds int
	Now            string
	Control        bool
	Summary        string // how many keys, and how many reject requests
	Breakers       []statusRow
}

type statusRow struct {
	Status
	Since, SinceTime, RetryIn, FailureRate, Why string
	// BlamedOn lists the upstreams the key's failures were blamed on, with
	// how many, most first; CalledBy the route groups that call the key as
	// an upstream.
	BlamedOn, CalledBy string
	Timeline           *timeline // nil for a key nothing has used
	Changes            []change  // newest first
	// LongKey says the key may wrap: a short key never does, so that a
	// table short of width cannot break "billing" in two.
	LongKey bool
}

// blamedOn says in English how many failures were blamed on each upstream,
// most first: "payments 12, inventory 3".
func blamedOn(counts map[string]uint64) string {
	keys := slices.Collect(maps.Keys(counts))
	slices.SortFunc(keys, func(a, b string) int {
		if c := cmp.Compare(counts[b], counts[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, counts[k])
	}
	return strings.Join(parts, ", ")
}

// shortKey is the longest key, in runes, that the page keeps on one line.
const shortKey = 32

// refreshText says how often the page reloads, for its header.
func refreshText(every time.Duration) string {
	switch secs := int(every.Seconds()); secs {
	case 0:
		return ""
	case 1:
		return "every second"
	default:
		return fmt.Sprintf("every %d seconds", secs)
	}
}

// summary says in English how many keys there are and how many of them
// reject requests.
func summary(keys, rejecting int) string {
	var s string
	switch keys {
	case 0:
		return "No keys yet."
	case 1:
		s = "1 key. "
	default:
		s = fmt.Sprintf("%d keys. ", keys)
	}
	switch rejecting {
	case 0:
		return s + "None is rejecting requests."
	case 1:
		return s + "1 is rejecting requests."
	}
	return s + fmt.Sprintf("%d are rejecting requests.", rejecting)
}

// fleetSummary says in English whether the set shares state with a fleet,
// and how that goes; nothing without shared state.
func fleetSummary(f FleetStatus) string {
	if !f.Shared {
		return ""
	}
	if !f.Connected {
		return fmt.Sprintf(" Shared with the fleet as replica %s, which cannot reach the shared state now: its breakers go on alone.", f.Replica)
	}
	return fmt.Sprintf(" Shared with the fleet as replica %s: %d live.", f.Replica, f.Replicas)
}

// cause says what put a key in its state: who forced it, or what tripped it.
func cause(s Status, now time.Time) string {
	if s.ForcedBy != "" {
		return "forced by " + s.ForcedBy
	}
	if h := s.FleetHold; h != nil {
		return fmt.Sprintf("held by the fleet: %s, seen by replica %s", h.Reason, h.Replica)
	}
	t := s.LastTrip
	if t == nil {
		return ""
	}
	var what string
	switch t.Reason {
	case ReasonConsecutiveFailures:
		what = plural(t.ConsecutiveFailures, "failure") + " in a row"
	default:
		what = fmt.Sprintf("%d of %d failed (%s)", t.Failures, t.Failures+t.Successes, percent(t.FailureRate()))
	}
	prefix := "tripped"
	if s.State == StateClosed {
		prefix = "last tripped"
	}
	if t.Fleet {
		prefix += " fleet-wide (replica " + t.Replica + ")"
	}
	return fmt.Sprintf("%s %s ago: %s", prefix, roughly(now.Sub(t.At)), what)
}

// FleetWindow says in English what the fleet's window of the key held at
// this replica's last sync of it, with shared state, when it held failures
// or the fleet was gathering it: "fleet: 12 of 40 failed (30%) on 2 of 3
// live replicas, gathering every window; synced 1s ago". A key that only
// succeeds has nothing in the fleet's window, and says nothing.
func (r statusRow) FleetWindow() string {
	v := r.Fleet
	if v == nil || v.Failures == 0 && !v.Gathering {
		return ""
	}
	n := v.Failures + v.Successes
	line := fmt.Sprintf("fleet: %d of %d failed (%s) on %d of %d live replicas", v.Failures, n,
		percent(failureRate(sat32(v.Failures), sat32(v.Successes))), v.FailingReplicas, v.LiveReplicas)
	if v.Gathering {
		line += ", gathering every window"
	}
	return line + "; synced " + roughly(time.Since(v.At)) + " ago"
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

// backToPage returns the Location that sends a browser from a POST back to
// the page at path: a relative reference to the path's last segment, which
// resolves against the URL the browser posted to, mounted under a prefix or
// not, and can never name another host (a path such as //evil.example/x
// taken as it is would).
func backToPage(path string) string {
	last := path[strings.LastIndex(path, "/")+1:]
	return "./" + url.PathEscape(last)
}

// roughly prints a duration as people read it on a status page.
func roughly(d time.Duration) string {
	if d < time.Hour {
		return d.Truncate(time.Second).String()
	}
	return d.Truncate(time.Minute).String()
}

func (h *statusPage) control(w http.ResponseWriter, r *http.Request) {
	if h.authorize == nil {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "this status handler is read-only (StatusHandler was made without AllowControl)", http.StatusMethodNotAllowed)
		return
	}
	if err := crossOrigin.Check(r); err != nil {
		http.Error(w, "forbidden: "+err.Error(), http.StatusForbidden)
		return
	}
	if !h.authorize(r) {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "form: "+err.Error(), http.StatusBadRequest)
		return
	}
	key, action := r.PostForm.Get("key"), r.PostForm.Get("action")
	if key == "" {
		http.Error(w, "key: missing", http.StatusBadRequest)
		return
	}
	by := "status page from " + r.RemoteAddr
	var err error
	switch action {
	case "force_open":
		var d time.Duration
		if v := r.PostForm.Get("for"); v != "" {
			if d, err = time.ParseDuration(v); err != nil || d < 0 {
				http.Error(w, fmt.Sprintf("for: want a duration such as \"5m\", got %q", v), http.StatusBadRequest)
				return
			}
		}
		err = h.set.forceOpen(key, d, by)
	case "force_close":
		err = h.set.forceClose(key, by)
	case "release":
		err = h.set.release(key, by)
	case "reset":
		err = h.set.reset(key, by)
	case "probe":
		err = h.set.probe(key, by)
	default:
		http.Error(w, fmt.Sprintf("action: want force_open, force_close, release, reset or probe, got %q", action), http.StatusBadRequest)
		return
	}
	switch {
	case errors.Is(err, ErrNoBreaker):
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	case errors.Is(err, ErrNotOpen):
		http.Error(w, err.Error(), http.StatusConflict)
		return
	case err != nil: // a key that is not valid
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if wantsHTML(r) { // a form on the page: back to the page
		w.Header().Set("Location", backToPage(r.URL.Path))
		w.WriteHeader(http.StatusSeeOther)
		return
	}
	for _, s := range h.set.Snapshot() {
		if s.Key == key {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(s)
			return
		}
	}
}
