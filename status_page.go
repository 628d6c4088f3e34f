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

// StatusHandler returns a handler that shows every key's breaker: an HTML
// page for browsers (the keys that need attention first), a StatusPage as
// JSON for others. A GET's query narrows the keys: key=K (repeatable),
// filter=TEXT, state=S (or not_closed) and, for the page, page=N; a bad
// query is a 400 that says why. GET never changes anything; see
// AllowControl for POST.
func (b *Breakers) StatusHandler(opts ...StatusOption) http.Handler {
	h := &statusPage{set: b, refresh: 5 * time.Second}
	for _, opt := range opts {
		opt(h)
	}
	return h
}

// A StatusOption configures StatusHandler.
type StatusOption func(*statusPage)

// AllowControl lets StatusHandler's page force, release, reset and probe
// keys (a POST of key and action) when authorize(r) is true, 403 otherwise;
// authorize is where your authentication goes. A browser's cross-origin
// POST is refused before authorize is asked (http.CrossOriginProtection).
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
		h.serveStatus(w, r)
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

func (h *statusPage) serveStatus(w http.ResponseWriter, r *http.Request) {
	q, err := parseStatusQuery(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if wantsHTML(r) {
		h.showHTML(w, q)
		return
	}
	st := StatusPage{Time: time.Now(), Fleet: h.set.FleetStatus(), Keys: []Status{}}
	if len(q.keys) > 0 { // describe those keys only, not every key
		for _, key := range q.keys {
			s, ok := h.set.statusOf(key)
			if !ok {
				http.Error(w, fmt.Sprintf("key %q: %v", key, ErrNoBreaker), http.StatusNotFound)
				return
			}
			if q.matches(&s) && !slices.ContainsFunc(st.Keys, func(o Status) bool { return o.Key == key }) {
				st.Keys = append(st.Keys, s)
			}
		}
		slices.SortFunc(st.Keys, func(a, b Status) int { return strings.Compare(a.Key, b.Key) })
	} else {
		for _, s := range h.set.Snapshot() {
			if q.matches(&s) {
				st.Keys = append(st.Keys, s)
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(st)
}

// The HTML page shows the keys that need attention first, in full, and
// the others in short, one line each, so that it stays small and quick to
// build with a thousand keys: detailedKeys keys at most in full (every
// key, when the keys asked for are no more), shortKeys a page in short.
const (
	detailedKeys = 20
	shortKeys    = 1000
)

func (h *statusPage) showHTML(w http.ResponseWriter, q statusQuery) {
	now := time.Now()
	all := h.set.Snapshot()
	for _, key := range q.keys {
		if _, found := slices.BinarySearchFunc(all, key, func(s Status, key string) int { return strings.Compare(s.Key, key) }); !found {
			http.Error(w, fmt.Sprintf("key %q: %v", key, ErrNoBreaker), http.StatusNotFound)
			return
		}
	}
	x := newBlameIndex(all)
	page := statusView{Refresh: refreshText(h.refresh), RefreshSeconds: int(h.refresh.Seconds()),
		Now: now.UTC().Format(time.RFC3339), Control: h.authorize != nil, Filter: q.filter,
		States: stateChoices(q.state)}
	type ranked struct {
		s    *Status
		rank int
	}
	var shown []ranked
	rejecting, attention := 0, 0
	for i := range all {
		s := &all[i]
		rank := attentionOf(s, x)
		if s.Rejecting {
			rejecting++
		}
		if rank > 0 {
			attention++
		}
		if q.matches(s) {
			shown = append(shown, ranked{s, rank})
		}
	}
	// Those that need attention first, most urgent first, the latest
	// change first among equals; then the others, by key.
	slices.SortStableFunc(shown, func(a, b ranked) int {
		switch {
		case a.rank == b.rank && a.rank > 0:
			return b.s.Since.Compare(a.s.Since)
		case a.rank == 0 || b.rank == 0:
			return b.rank - a.rank
		}
		return a.rank - b.rank
	})
	detailed := 0
	for detailed < len(shown) && detailed < detailedKeys && shown[detailed].rank > 0 {
		detailed++
	}
	if len(shown) <= detailedKeys {
		detailed = len(shown)
	}
	short := shown[detailed:]
	pages := max((len(short)+shortKeys-1)/shortKeys, 1)
	from := min((q.page-1)*shortKeys, len(short))
	to := min(from+shortKeys, len(short))
	if q.page == 1 {
		for _, r := range shown[:detailed] {
			page.Breakers = append(page.Breakers, fullRow(r.s, x, now))
		}
	}
	page.ShortAttention = len(short) > 0 && short[0].rank > 0
	inShort := make([]*Status, 0, to-from)
	for _, r := range short[from:to] {
		inShort = append(inShort, r.s)
	}
	page.Short = shortRows(inShort, x, now)
	if len(short) > 0 {
		page.ShortFrom, page.ShortTo, page.ShortOf = detailed+from+1, detailed+to, len(shown)
	}
	if q.page > 1 && q.page <= pages {
		page.Prev = q.encode(q.page - 1)
	}
	if q.page < pages {
		page.Next = q.encode(q.page + 1)
	}
	if q.page > pages {
		page.Past = fmt.Sprintf("There are %d pages; this is page %d.", pages, q.page)
	}
	page.Summary = summary(len(all), rejecting) + attentionSummary(attention) +
		untrackedSummary(h.set.untracked.Load(), h.set.overflowed.Load(), h.set.maxKeys) + fleetSummary(h.set.FleetStatus())
	if q.narrowed() {
		page.Showing = fmt.Sprintf("Showing %s: %s.", q.describe(), quantity(len(shown), "key"))
	}
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
	Summary        string // how many keys, how many reject requests, how many need attention
	Showing        string // which keys the query asks for; "" for every key
	Filter         string // the filter form's text
	States         []stateChoice
	Breakers       []statusRow // the keys shown in full
	// Short holds this page's keys shown in short: ShortFrom to ShortTo of
	// the ShortOf keys shown, counting those in full. ShortAttention says
	// whether some of them need attention.
	Short                       template.HTML
	ShortFrom, ShortTo, ShortOf int
	ShortAttention              bool
	// Prev and Next are the query strings of the pages before and after
	// this one, "" if there is none; Past says that the page asked for is
	// past the last.
	Prev, Next, Past string
}

// stateChoice is an option of the filter form's state list.
type stateChoice struct {
	Value, Label string
	Selected     bool
}

// stateChoices lists the filter form's states, with chosen selected:
// any, not closed, and each state; a list of states that is none of these
// is an option of its own.
func stateChoices(chosen []string) []stateChoice {
	cur := strings.Join(chosen, ",")
	out := []stateChoice{{"", "any state", cur == ""}, {"not_closed", "not closed", cur == "not_closed"}}
	found := cur == "" || cur == "not_closed"
	for _, name := range stateNames {
		out = append(out, stateChoice{name, name, cur == name})
		found = found || cur == name
	}
	if !found {
		out = append(out, stateChoice{cur, strings.ReplaceAll(cur, ",", " or "), true})
	}
	return out
}

// statusRow is a key shown in full.
type statusRow struct {
	Status
	Since, SinceTime, RetryIn, FailureRate string
	// Why says what put the key in its state, whether its window is
	// failing, and what blame says of it: a line each.
	Why      []string
	Timeline *timeline     // nil for a key nothing has used
	Changes  template.HTML // its transitions, newest first; "" if none
	// LongKey says the key may wrap: a short key never does, so that a
	// table short of width cannot break "billing" in two.
	LongKey bool
}

// fullRow describes s for its row in full.
func fullRow(s *Status, x *blameIndex, now time.Time) statusRow {
	row := statusRow{Status: *s, SinceTime: s.Since.UTC().Format(time.RFC3339),
		Since: roughly(now.Sub(s.Since)), FailureRate: percent(s.Window.FailureRate()), Why: whyOf(s, x, now),
		LongKey: utf8.RuneCountInString(s.Key) > shortKey}
	if len(s.History) > 0 {
		row.Changes = changesOf(*s, now)
	}
	if s.Side != "" || len(s.History) > 0 {
		tl := timelineOf(*s, now)
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
	return row
}

// shortRows writes the rows of the keys shown in short, a line each: its
// name (a link to its row in full), its side, state and for how long, what
// its row in full would say of why, and its totals. They are written here,
// not in the template: a page holds up to shortKeys of them, and the
// template's work per value would be most of the page's cost. Every string
// that comes from a key, a person or a replica is escaped
// (template.HTMLEscapeString; a key in a link, url.QueryEscape first).
func shortRows(keys []*Status, x *blameIndex, now time.Time) template.HTML {
	var b strings.Builder
	for _, s := range keys {
		key, long, side := template.HTMLEscapeString(s.Key), "", s.Side
		if utf8.RuneCountInString(s.Key) > shortKey {
			long = " long"
		}
		if side == "" {
			side = "configured, no traffic yet"
		}
		t := s.Totals
		totals := fmt.Sprintf("%d ok, %d failed, %d rejected", t.Successes+t.Slow, t.Failures, t.Rejected)
		if t.UpstreamFailures > 0 {
			totals += fmt.Sprintf(", %d blamed upstream", t.UpstreamFailures)
		}
		if t.WouldReject > 0 {
			totals += fmt.Sprintf(", %d would reject", t.WouldReject)
		}
		fmt.Fprintf(&b, `<tr id="key-%s"><td class="key"><a class="name%s" href="?key=%s">%s</a><span class="side">%s</span></td>`+
			`<td><span class="state %s">%s</span> <span class="muted" title="%s">for %s</span></td><td class="why">%s</td><td>%s</td></tr>`+"\n",
			key, long, template.HTMLEscapeString(url.QueryEscape(s.Key)), key, side,
			s.State, s.State, s.Since.UTC().Format(time.RFC3339), roughly(now.Sub(s.Since)),
			template.HTMLEscapeString(strings.Join(whyOf(s, x, now), "; ")), totals)
	}
	return template.HTML(b.String())
}

// whyOf says, a line each, what put s in its state (who forced it, the
// fleet's hold, what tripped it), whether its window is heading for a
// trip, and what blame says of it.
func whyOf(s *Status, x *blameIndex, now time.Time) []string {
	var out []string
	if c := cause(*s, now); c != "" {
		out = append(out, c)
	}
	if f := failingNote(s); f != "" {
		out = append(out, f)
	}
	return append(out, blameNotes(s, x, now)...)
}

// attentionOf says how much s needs on-call's eye, most first: 1 open, 2
// half-open, 3 recovering, 4 forced open, 5 forced closed, 6 failing (a
// closed key whose window is heading for a trip), 7 blamed (a route group
// whose failures are blamed on an upstream that needs attention itself);
// 0 for a key that needs none.
func attentionOf(s *Status, x *blameIndex) int {
	switch s.State {
	case StateOpen:
		return 1
	case StateHalfOpen:
		return 2
	case StateRecovering:
		return 3
	case StateForcedOpen:
		return 4
	case StateForcedClosed:
		return 5
	}
	if isFailing(s) {
		return 6
	}
	if x.blamedNow(s) {
		return 7
	}
	return 0
}

// isFailing reports whether a closed or recovering key's window is heading
// for a trip (failingNote says how).
func isFailing(s *Status) bool { return failingNote(s) != "" }

// failingNote says how a closed or recovering key's window heads for a
// trip, "" if it does not: failures at half the rate that trips it or
// more, once the window holds half of MinRequests; at least two failures
// in a row, and half of ConsecutiveFailures or more; or slow calls at half
// SlowCallRate.
func failingNote(s *Status) string {
	if s.State != StateClosed && s.State != StateRecovering {
		return ""
	}
	w, p := s.Window, s.Policy
	n := w.Successes + w.Failures
	enough := 2*int(n) >= p.MinRequests
	switch {
	case p.FailureRate > 0 && w.Failures > 0 && enough && w.FailureRate() >= p.FailureRate/2:
		return fmt.Sprintf("failing: %d of %d failed in its window (%s; it trips at %s)", w.Failures, n,
			percent(w.FailureRate()), percent(p.FailureRate))
	case p.ConsecutiveFailures > 0 && w.ConsecutiveFailures >= 2 && 2*int(w.ConsecutiveFailures) >= p.ConsecutiveFailures:
		return fmt.Sprintf("failing: %d failures in a row (it trips at %d)", w.ConsecutiveFailures, p.ConsecutiveFailures)
	case p.SlowCallRate > 0 && w.Slow > 0 && enough && w.SlowCallRate() >= p.SlowCallRate/2:
		return fmt.Sprintf("failing: %d of %d slow in its window (%s; it trips at %s)", w.Slow, n,
			percent(w.SlowCallRate()), percent(p.SlowCallRate))
	}
	return ""
}

// blameIndex is what the page knows of blame across keys: every key's
// status by key, and for each upstream the route groups whose failures
// were blamed on it. It is nil when no key has blamed or been blamed.
type blameIndex struct {
	byKey    map[string]*Status
	blamedBy map[string]map[string]uint64 // upstream -> route group -> failures
}

// newBlameIndex indexes keys (which it keeps pointers into) for blame.
func newBlameIndex(keys []Status) *blameIndex {
	if !slices.ContainsFunc(keys, func(s Status) bool { return len(s.BlamedOn) > 0 || len(s.Dependents) > 0 }) {
		return nil
	}
	x := &blameIndex{byKey: make(map[string]*Status, len(keys)), blamedBy: map[string]map[string]uint64{}}
	for i := range keys {
		s := &keys[i]
		x.byKey[s.Key] = s
		for up, n := range s.BlamedOn {
			if x.blamedBy[up] == nil {
				x.blamedBy[up] = map[string]uint64{}
			}
			x.blamedBy[up][s.Key] = n
		}
	}
	return x
}

// blamedNow reports whether s is a route group whose failures were blamed
// on an upstream that needs attention now (not closed, or failing): the
// cascade is going on.
func (x *blameIndex) blamedNow(s *Status) bool {
	if x == nil {
		return false
	}
	for up := range s.BlamedOn {
		if u := x.byKey[up]; u != nil && (u.State != StateClosed || isFailing(u)) {
			return true
		}
	}
	return false
}

// blameNotes says, for a key's "why", whom its failures were blamed on
// (each upstream, how many, and its state if it is not closed) and which
// route groups depend on it (with how many of their failures were blamed
// on it). It is the one place where the page says what blame knows: a
// field of Status that tells more is a line here.
func blameNotes(s *Status, x *blameIndex, now time.Time) []string {
	var out []string
	if len(s.BlamedOn) > 0 {
		ups := byCount(s.BlamedOn)
		parts := make([]string, len(ups))
		for i, up := range ups {
			parts[i] = fmt.Sprintf("%s (%s", up, quantity(int(s.BlamedOn[up]), "failure"))
			if u := x.statusByKey(up); u != nil && u.State != StateClosed {
				parts[i] += ", " + u.State.String() + " now"
			}
			parts[i] += ")"
		}
		noun := "upstream"
		if len(ups) > 1 {
			noun = "upstreams"
		}
		note := fmt.Sprintf("its failures are blamed on %s %s, not counted in its window", noun, strings.Join(parts, ", "))
		if !s.LastBlamedAt.IsZero() {
			note += fmt.Sprintf("; the latest on %s %s ago", s.LastBlamedOn, roughly(now.Sub(s.LastBlamedAt)))
		}
		out = append(out, note)
	}
	if len(s.Dependents) > 0 {
		parts := make([]string, len(s.Dependents))
		for i, route := range s.Dependents {
			parts[i] = route
			if n := x.blamedRoute(s.Key, route); n > 0 {
				parts[i] += fmt.Sprintf(" (%s blamed on it)", quantity(int(n), "failure"))
			}
		}
		out = append(out, "called by "+strings.Join(parts, ", "))
	}
	return out
}

// statusByKey returns key's statusByKey, nil if the page has none.
func (x *blameIndex) statusByKey(key string) *Status {
	if x == nil {
		return nil
	}
	return x.byKey[key]
}

// blamedRoute returns how many of route's failures were blamedRoute on up.
func (x *blameIndex) blamedRoute(up, route string) uint64 {
	if x == nil {
		return 0
	}
	return x.blamedBy[up][route]
}

// byCount returns counts' keys, most first, then by key.
func byCount(counts map[string]uint64) []string {
	keys := slices.Collect(maps.Keys(counts))
	slices.SortFunc(keys, func(a, b string) int {
		if c := cmp.Compare(counts[b], counts[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return keys
}

// quantity says n things in English: "1 key", "3 keys".
func quantity(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// attentionSummary says how many keys need attention, for the header.
func attentionSummary(n int) string {
	switch n {
	case 0:
		return ""
	case 1:
		return " 1 needs attention."
	}
	return fmt.Sprintf(" %d need attention.", n)
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
// untrackedSummary says how many requests passed with no breaker, and
// whether new keys get none because WithMaxKeys was reached: a client
// side's upstream first called after that has no breaker, and blame none
// to name.
func untrackedSummary(n uint64, overflowed bool, maxKeys int) string {
	if n == 0 {
		return ""
	}
	s := " 1 request passed with no breaker"
	if n > 1 {
		s = fmt.Sprintf(" %d requests passed with no breaker", n)
	}
	if overflowed {
		s += fmt.Sprintf(" (the limit of %d keys was reached: new keys get none)", maxKeys)
	}
	return s + "."
}

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
	return fmt.Sprintf("%s %s ago: %s", prefix, roughly(now.Sub(t.Time)), what)
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

// backToPage returns the Location that sends a browser from a POST back to
// the page at path, asking for the keys that the query q asked for: a
// relative reference to the path's last segment, which resolves against
// the URL the browser posted to, mounted under a prefix or not, and can
// never name another host (a path such as //evil.example/x taken as it is
// would). The query is written afresh from what the page understood of q,
// and left out if the page does not understand it.
func backToPage(path string, q url.Values) string {
	last := path[strings.LastIndex(path, "/")+1:]
	loc := "./" + url.PathEscape(last)
	if sq, err := parseStatusQuery(q); err == nil && (sq.narrowed() || sq.page > 1) {
		loc += sq.encode(sq.page)
	}
	return loc
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
		err = h.set.endCooldownOf(key, by)
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
		w.Header().Set("Location", backToPage(r.URL.Path, r.URL.Query()))
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
