package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/httpbreaker/httpbreaker"
)

// The demo's script. Each step waits for what the breaker does rather than
// for a fixed time, so that a slow machine only makes the story longer.
const (
	healthyFor       = 3 * time.Second
	afterRecovery    = 2 * time.Second
	requestEvery     = 50 * time.Millisecond
	failingPlugin    = "scaffolder"
	faultBody        = `{"status": 500, "delay": "200ms"}`
	faultDescription = "answers 500 after 200ms to every request"
	gitFaultBody     = `{"status": 503, "delay": "300ms"}`
	gitOutageFor     = 2 * time.Second // how long the Git host stays down once its breaker is open
)

// stepTimeout bounds each wait of the script; tests that make the story
// fail on purpose wait less (runStory).
const stepTimeout = 20 * time.Second

// demoPlugins are the plugins the traffic visits, with the request each one gets.
var demoPlugins = []struct{ id, method, path string }{
	{"catalog", http.MethodGet, "/api/catalog/entities"},
	{"scaffolder", http.MethodPost, "/api/scaffolder/tasks"},
	{"search", http.MethodGet, "/api/search/query?term=pay"},
}

// quickCooldowns shorten config.yaml's cooldowns to seconds for the demo
// and the soak, so that a whole outage and recovery fits in a few seconds.
// Options given after WithConfig refine it.
var quickCooldowns = []httpbreaker.Option{
	httpbreaker.WithPolicy(httpbreaker.Policy{OpenFor: 5 * time.Second, MaxOpenFor: time.Minute}),
	httpbreaker.WithKeyPolicy("scaffolder", httpbreaker.Policy{OpenFor: 3 * time.Second}),
	httpbreaker.WithKeyPolicy(gitUpstream, httpbreaker.Policy{OpenFor: 3 * time.Second}),
}

// runDemo starts the host on a free loopback port, drives traffic through
// the story, prints a live view and a summary to out, and returns an error
// if the story did not happen as told.
func runDemo(ctx context.Context, cfg httpbreaker.Config, out io.Writer, stay bool) error {
	return runStory(ctx, cfg, out, stay, stepTimeout)
}

// runStory is runDemo with each wait of the script bounded by stepTimeout,
// and opts, for tests, added to the breakers' options.
func runStory(ctx context.Context, cfg httpbreaker.Config, out io.Writer, stay bool, stepTimeout time.Duration,
	opts ...httpbreaker.Option) error {
	d := &demo{out: out, color: isTerminal(out), start: time.Now(), stats: map[string]*pluginStats{}, changed: make(chan struct{}),
		stepTimeout: stepTimeout}
	for _, p := range demoPlugins {
		d.stats[p.id] = &pluginStats{}
	}
	h, err := newHost(cfg, slog.New(slog.DiscardHandler),
		slices.Concat(quickCooldowns, []httpbreaker.Option{httpbreaker.WithStateChangeHook(d.onChange)}, opts)...)
	if err != nil {
		return err
	}
	defer h.close()
	d.breakers = h.breakers
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	d.base = "http://" + ln.Addr().String()
	d.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}

	d.header()
	traffic, stopTraffic := context.WithCancel(ctx)
	var workers sync.WaitGroup
	for _, p := range demoPlugins {
		workers.Go(func() { d.drive(traffic, p.id, p.method, p.path) })
	}
	viewDone := make(chan struct{})
	go d.view(traffic, viewDone)

	storyErr := d.script(ctx)
	stopTraffic()
	workers.Wait()
	<-viewDone
	if err := errors.Join(storyErr, d.summary()); err != nil {
		return err
	}
	if err := d.statusPage(); err != nil {
		return err
	}
	if !stay {
		return nil
	}
	d.printf("\nStill serving: open %s/breakers in a browser (the status page, with control buttons),\n"+
		"or curl %s/api/catalog/entities. Ctrl-C stops.\n", d.base, d.base)
	wait, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-wait.Done()
	return nil
}

// statusPage prints what the host's status page (the library's
// StatusHandler at /breakers) answers a client that asks for JSON.
func (d *demo) statusPage() error {
	resp, err := d.client.Get(d.base + "/breakers")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var status httpbreaker.StatusPage
	if err := json.NewDecoder(resp.Body).Decode(&status); err != nil {
		return fmt.Errorf("status page: %w", err)
	}
	d.printf("\nGET /breakers, the status page (a browser gets it as HTML):\n")
	for _, s := range status.Keys {
		since := "the start" // it never changed state
		if n := len(s.History); n > 0 {
			since = fmt.Sprintf("%.1fs, after %d state changes", s.Since.Sub(d.start).Seconds(), n)
		}
		d.printf("  %-11s %-7s since %-32s %4d succeeded, %3d failed, %3d rejected", s.Key, s.State,
			since, s.Totals.Successes, s.Totals.Failures, s.Totals.Rejected)
		for up, n := range s.BlamedOn {
			d.printf(", %d blamed on %s", n, up)
		}
		if len(s.Dependents) > 0 {
			d.printf(", called by %s", strings.Join(s.Dependents, ", "))
		}
		d.printf("\n")
	}
	return nil
}

// demo holds what the story needs: the host, the traffic's statistics, and
// the transitions seen in the breaker's logs.
type demo struct {
	out      io.Writer
	color    bool
	start    time.Time
	base     string
	client   *http.Client
	breakers *httpbreaker.Breakers
	stats    map[string]*pluginStats
	// stepTimeout bounds each wait of the script.
	stepTimeout time.Duration

	mu          sync.Mutex // guards out and the fields below
	transitions []transition
	shown       map[string]string // each key's state at the end of the view's last second
	viewed      map[string]int    // how many transitions the view had seen at its last line, by key
	changed     chan struct{}
	closedAt    time.Time // when the failing plugin closed again
}

type transition struct {
	at       time.Duration
	key      string
	from, to string
}

type pluginStats struct {
	ok, failed, rejected, badRejections atomic.Int64
	okAfterRecovery                     atomic.Int64
	rejectNanos, failNanos              atomic.Int64 // total latency, for the averages
	perSecond                           [3]atomic.Int64
	// The catalog's calls to the Git host, by how they went (gitOutcomes),
	// with their requests' total latency and this second's counts.
	git, gitNanos, gitPerSecond [3]atomic.Int64
}

// gitOutcomes are the values of the catalog's X-Catalog-Git header.
var gitOutcomes = [3]string{"ok", "failed", "rejected"}

func (d *demo) elapsed() time.Duration { return time.Since(d.start) }

func (d *demo) printf(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, format, args...)
}

func (d *demo) header() {
	d.printf("httpbreaker demo: a plugin host serving catalog, scaffolder and search on %s,\n", d.base)
	d.printf("each plugin a chi router behind its own circuit breaker. Traffic: one request every %v per plugin.\n", requestEvery)
	for _, s := range d.breakers.Snapshot() {
		p := s.Policy
		probes := "probes"
		if p.HalfOpenRequests == 1 {
			probes = "probe"
		}
		d.printf("  %-10s trips at %v failures in a row or a %.0f%% failure rate; open for %v, then %d %s\n",
			s.Key, p.ConsecutiveFailures, p.FailureRate*100, p.OpenFor, p.HalfOpenRequests, probes)
	}
	d.printf("catalog reads its entities from a Git host through breakers.Transport(%q): it passes the Git host's\n"+
		"failures on (502), and answers from its cache once the %s breaker opens; the last column is those calls.\n",
		gitUpstream, gitUpstream)
	d.printf("\n%7s  %-*s %-*s %-*s %s\n", "", column, "catalog", column, "scaffolder", column, "search", "git (catalog's calls)")
	head := fmt.Sprintf("%-*s %s", stateWidth, "state", "ok/failed/rej")
	d.printf("%7s  %-*s %-*s %-*s %s\n", "time", column, head, column, head, column, head, head)
	d.printf("%7s  (a state of a → b: the breaker went from a to b in that second, which counts what both saw)\n", "")
}

// The live view's columns: a breaker's states in a second, and what its
// traffic got.
const (
	stateWidth = 16
	column     = stateWidth + 1 + 12
)

// script tells the story: healthy, then scaffolder fails and its breaker
// opens, a probe fails and it backs off, the fault clears, and it closes.
func (d *demo) script(ctx context.Context) error {
	sleep := func(t time.Duration) error {
		select {
		case <-time.After(t):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := sleep(healthyFor); err != nil {
		return err
	}
	if err := d.control(failingPlugin, http.MethodPost, faultBody); err != nil {
		return err
	}
	d.step("fault: %s now %s", failingPlugin, faultDescription)
	if err := d.waitFor(ctx, failingPlugin, "closed", "open"); err != nil {
		return err
	}
	if err := d.waitFor(ctx, failingPlugin, "half_open", "open"); err != nil {
		return err
	}
	if err := d.control(failingPlugin, http.MethodDelete, ""); err != nil {
		return err
	}
	d.step("fault cleared: %s answers normally again; its breaker waits out the cooldown, then probes", failingPlugin)
	if err := d.waitFor(ctx, failingPlugin, "half_open", "closed"); err != nil {
		return err
	}

	// The client side: the catalog's upstream fails.
	if err := d.control(gitUpstream, http.MethodPost, gitFaultBody); err != nil {
		return err
	}
	d.step("fault: the Git host, which catalog reads through breakers.Transport(%q), answers 503 after 300ms", gitUpstream)
	if err := d.waitFor(ctx, gitUpstream, "closed", "open"); err != nil {
		return err
	}
	if err := sleep(gitOutageFor); err != nil {
		return err
	}
	if err := d.control(gitUpstream, http.MethodDelete, ""); err != nil {
		return err
	}
	d.step("fault cleared: the Git host answers again; the %s breaker probes it after its cooldown", gitUpstream)
	if err := d.waitFor(ctx, gitUpstream, "half_open", "closed"); err != nil {
		return err
	}
	return sleep(afterRecovery)
}

// control sets (POST) or clears (DELETE) the fault of a plugin or of the
// Git host.
func (d *demo) control(target, method, body string) error {
	req, err := http.NewRequest(method, d.base+"/faults/"+target, strings.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return fmt.Errorf("fault control: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("fault control: %s %s", resp.Status, msg)
	}
	return nil
}

func (d *demo) step(format string, args ...any) {
	d.printf("%6.1fs  %s %s\n", d.elapsed().Seconds(), d.paint("1", "●"), fmt.Sprintf(format, args...))
}

// waitFor waits until key's breaker has gone from -> to.
func (d *demo) waitFor(ctx context.Context, key, from, to string) error {
	timeout := time.After(d.stepTimeout)
	for {
		d.mu.Lock()
		seen := slices.ContainsFunc(d.transitions, func(t transition) bool {
			return t.key == key && t.from == from && t.to == to
		})
		changed := d.changed
		d.mu.Unlock()
		if seen {
			return nil
		}
		select {
		case <-changed:
		case <-timeout:
			return fmt.Errorf("story: %s did not go from %s to %s within %v", key, from, to, d.stepTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// every calls f every period until ctx ends.
func every(ctx context.Context, period time.Duration, f func()) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			f()
		}
	}
}

// drive sends one plugin's traffic until ctx ends.
func (d *demo) drive(ctx context.Context, id, method, path string) {
	every(ctx, requestEvery, func() { d.request(ctx, d.stats[id], id, method, path) })
}

// request sends one request and sorts the answer: ok, failed, or rejected
// by the breaker (a 503 problem document).
func (d *demo) request(ctx context.Context, st *pluginStats, id, method, path string) {
	req, _ := http.NewRequestWithContext(ctx, method, d.base+path, nil)
	began := time.Now()
	resp, err := d.client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			st.failed.Add(1)
			st.perSecond[1].Add(1)
		}
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(began)
	if i := slices.Index(gitOutcomes[:], resp.Header.Get("X-Catalog-Git")); i >= 0 {
		st.git[i].Add(1)
		st.gitNanos[i].Add(int64(took))
		st.gitPerSecond[i].Add(1)
	}
	switch {
	case resp.StatusCode < 300:
		st.ok.Add(1)
		st.perSecond[0].Add(1)
		d.mu.Lock()
		recovered := !d.closedAt.IsZero()
		d.mu.Unlock()
		if recovered {
			st.okAfterRecovery.Add(1)
		}
	case resp.Header.Get("Content-Type") == "application/problem+json":
		st.rejected.Add(1)
		st.perSecond[2].Add(1)
		st.rejectNanos.Add(int64(took))
		if !wellFormedRejection(resp, body, id) {
			st.badRejections.Add(1)
		}
	default:
		st.failed.Add(1)
		st.perSecond[1].Add(1)
		st.failNanos.Add(int64(took))
	}
}

// wellFormedRejection checks a rejection the way a client would read it.
func wellFormedRejection(resp *http.Response, body []byte, key string) bool {
	var problem struct {
		Title  string `json:"title"`
		Status int    `json:"status"`
		Key    string `json:"key"`
		State  string `json:"state"`
	}
	secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	return resp.StatusCode == http.StatusServiceUnavailable && err == nil && secs >= 1 &&
		resp.Header.Get("Cache-Control") == "no-store" &&
		json.Unmarshal(body, &problem) == nil && problem.Status == 503 && problem.Title != "" &&
		problem.Key == key && (problem.State == "open" || problem.State == "half_open")
}

// view prints one line a second until ctx ends: each breaker's state, and
// what its plugin's traffic got in that second.
func (d *demo) view(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	every(ctx, time.Second, func() {
		line := fmt.Sprintf("%6.1fs ", d.elapsed().Seconds())
		for _, p := range demoPlugins {
			st := d.stats[p.id]
			counts := fmt.Sprintf("%d/%d/%d", st.perSecond[0].Swap(0), st.perSecond[1].Swap(0), st.perSecond[2].Swap(0))
			line += " " + d.states(p.id) + fmt.Sprintf(" %-12s", counts)
		}
		c := d.stats["catalog"]
		counts := fmt.Sprintf("%d/%d/%d", c.gitPerSecond[0].Swap(0), c.gitPerSecond[1].Swap(0), c.gitPerSecond[2].Swap(0))
		line += " " + d.states(gitUpstream) + fmt.Sprintf(" %-12s", counts)
		d.printf("%s\n", strings.TrimRight(line, " "))
	})
}

// states returns, painted and padded for the live view, the states key's
// breaker was in during the second since the view's last line: "closed",
// or "half_open → closed" when it closed in that second, so that the
// rejections of a second in which it was half-open and then closed are not
// shown in a row that says closed alone.
func (d *demo) states(key string) string {
	now := d.breakers.State(key).String()
	d.mu.Lock()
	if d.shown == nil {
		d.shown, d.viewed = map[string]string{}, map[string]int{}
	}
	seen := []string{cmp.Or(d.shown[key], "closed")}
	for _, t := range d.transitions[d.viewed[key]:] {
		if t.key == key && t.to != seen[len(seen)-1] {
			seen = append(seen, t.to)
		}
	}
	d.viewed[key] = len(d.transitions)
	d.shown[key] = now
	d.mu.Unlock()
	if now != seen[len(seen)-1] { // a change not yet delivered to the hook
		seen = append(seen, now)
	}
	painted := make([]string, len(seen))
	for i, st := range seen {
		painted[i] = d.paintState(st, st)
	}
	text := strings.Join(seen, "→")
	return strings.Join(painted, "→") + strings.Repeat(" ", max(stateWidth-utf8.RuneCountInString(text), 0))
}

// summary prints the totals and checks that the story happened.
func (d *demo) summary() error {
	d.mu.Lock()
	transitions := slices.Clone(d.transitions)
	d.mu.Unlock()
	d.printf("\nsummary after %.1fs\n", d.elapsed().Seconds())
	d.printf("  %-11s %6s %7s %9s  %s\n", "plugin", "ok", "failed", "rejected", "state changes")
	var problems []string
	blamed := d.blamedOnGit()
	for _, p := range demoPlugins {
		st := d.stats[p.id]
		path := []string{}
		for _, t := range transitions {
			if t.key == p.id {
				if len(path) == 0 {
					path = append(path, t.from)
				}
				path = append(path, t.to)
			}
		}
		changes := strings.Join(path, " → ")
		if changes == "" {
			changes = "none"
		}
		d.printf("  %-11s %6d %7d %9d  %s\n", p.id, st.ok.Load(), st.failed.Load(), st.rejected.Load(), changes)
		if p.id != failingPlugin {
			own := st.failed.Load() // the catalog's failures that were the Git host's are not its own
			if p.id == "catalog" {
				own -= int64(blamed)
			}
			if own != 0 || st.rejected.Load() != 0 || len(path) != 0 || st.ok.Load() == 0 {
				problems = append(problems, fmt.Sprintf("%s was affected by another's outage: %d failures of its own, %d rejected, state changes: %s",
					p.id, own, st.rejected.Load(), changes))
			}
			continue
		}
		if st.rejected.Load() == 0 {
			problems = append(problems, failingPlugin+" got no rejections while open")
		}
		if n := st.badRejections.Load(); n > 0 {
			problems = append(problems, fmt.Sprintf("%d rejections were not a 503 problem document with Retry-After", n))
		}
		if st.okAfterRecovery.Load() == 0 {
			problems = append(problems, failingPlugin+" answered nothing after its breaker closed")
		}
	}
	if st := d.stats[failingPlugin]; st.rejected.Load() > 0 && st.failed.Load() > 0 {
		d.printf("  %s's rejections took %v on average, its failed requests %v\n", failingPlugin,
			(time.Duration(st.rejectNanos.Load() / st.rejected.Load())).Round(10*time.Microsecond),
			(time.Duration(st.failNanos.Load() / st.failed.Load())).Round(time.Millisecond))
	}
	problems = append(problems, d.gitSummary(transitions, blamed)...)
	for _, s := range d.breakers.Snapshot() {
		if s.State != httpbreaker.StateClosed {
			problems = append(problems, fmt.Sprintf("%s ended %s, not closed", s.Key, s.State))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("the story did not happen: %s", strings.Join(problems, "; "))
	}
	d.printf("\n%s %s failed, its breaker opened and answered a fast 503 with Retry-After; a failed probe\n"+
		"  doubled the cooldown; once the fault cleared the probes passed and it closed. catalog and\n"+
		"  search answered 200 throughout its outage.\n", d.paint("32", "✓"), failingPlugin)
	d.printf("%s the Git host failed; catalog passed its failures on, each blamed on %s, so its own breaker stayed\n"+
		"  closed; the %s breaker around catalog's calls opened, and catalog answered from its cache at once\n"+
		"  instead of waiting on the dead upstream; then a probe passed and it closed.\n",
		d.paint("32", "✓"), gitUpstream, gitUpstream)
	return nil
}

// blamedOnGit returns how many of the catalog's failures its breaker blamed
// on the Git host.
func (d *demo) blamedOnGit() uint64 {
	for _, s := range d.breakers.Snapshot() {
		if s.Key == "catalog" {
			return s.BlamedOn[gitUpstream]
		}
	}
	return 0
}

// gitSummary prints how the catalog's calls to the Git host went, and
// returns what of the client side's story did not happen; blamed is how
// many of the catalog's failures its breaker blamed on the Git host.
func (d *demo) gitSummary(transitions []transition, blamed uint64) []string {
	c := d.stats["catalog"]
	var path []string
	for _, t := range transitions {
		if t.key == gitUpstream {
			if len(path) == 0 {
				path = append(path, t.from)
			}
			path = append(path, t.to)
		}
	}
	changes := strings.Join(path, " → ")
	if changes == "" {
		changes = "none"
	}
	d.printf("  %-11s %6d %7d %9d  %s   (catalog's calls to the Git host, through the transport)\n",
		gitUpstream, c.git[0].Load(), c.git[1].Load(), c.git[2].Load(), changes)
	avg := func(i int) time.Duration {
		if n := c.git[i].Load(); n > 0 {
			return time.Duration(c.gitNanos[i].Load() / n)
		}
		return 0
	}
	if c.git[1].Load() > 0 && c.git[2].Load() > 0 {
		d.printf("  catalog passed %d of the Git host's failures on (502), after %v on average, each blamed on %s;\n"+
			"  catalog answered from its cache in %v on average when the breaker rejected the call\n",
			c.git[1].Load(), avg(1).Round(time.Millisecond), gitUpstream, avg(2).Round(10*time.Microsecond))
	}
	var problems []string
	if n := uint64(c.git[1].Load()); n != blamed || n == 0 {
		problems = append(problems, fmt.Sprintf("catalog answered %d of the Git host's failures, and %d were blamed on %s", n, blamed, gitUpstream))
	}
	if !strings.Contains(changes, "closed → open") || !strings.HasSuffix(changes, "closed") {
		problems = append(problems, fmt.Sprintf("the %s breaker went %s, want it to open and close again", gitUpstream, changes))
	}
	if c.git[2].Load() == 0 {
		problems = append(problems, "no call of catalog's to the Git host was rejected by its breaker")
	}
	if c.git[1].Load() > 0 && c.git[2].Load() > 0 && avg(2) >= avg(1) {
		problems = append(problems, "catalog was not faster with the Git host's breaker open than without")
	}
	return problems
}

// onChange is the breakers' state-change hook in the demo: it turns each
// change into a line of the live view, from the Event's facts.
func (d *demo) onChange(e httpbreaker.Event) {
	tr := transition{at: e.Time.Sub(d.start), key: e.Key, from: e.From.String(), to: e.To.String()}
	openFor := e.OpenFor.Round(100 * time.Millisecond)
	what := ""
	switch e.Reason {
	case httpbreaker.ReasonFailureRate, httpbreaker.ReasonConsecutiveFailures:
		what = fmt.Sprintf(" on %s (%d failures, %d successes); open for %s", e.Reason, e.Failures, e.Successes, openFor)
	case httpbreaker.ReasonProbeFailed:
		what = fmt.Sprintf(": a probe failed; open for %s this time", openFor)
	case httpbreaker.ReasonProbeTimeout:
		what = fmt.Sprintf(": a probe ran %s, past its timeout; open for %s this time", e.ProbeRanFor.Round(100*time.Millisecond), openFor)
	case httpbreaker.ReasonCooldown:
		what = ": cooldown over, admitting probes"
	case httpbreaker.ReasonProbesSucceeded:
		what = ": every probe succeeded"
	default:
		what = ": " + string(e.Reason)
		if e.By != "" {
			what += " by " + e.By
		}
	}
	d.printf("%6.1fs  %s %s: %s → %s%s\n", tr.at.Seconds(), d.paint("1", "▸"), tr.key,
		d.paintState(tr.from, tr.from), d.paintState(tr.to, tr.to), what)
	d.mu.Lock()
	d.transitions = append(d.transitions, tr)
	if tr.key == failingPlugin && tr.to == "closed" {
		d.closedAt = time.Now()
	}
	close(d.changed) // wakes the script's waitFor
	d.changed = make(chan struct{})
	d.mu.Unlock()
}

// paint wraps s in an ANSI style when the output is a terminal.
func (d *demo) paint(style, s string) string {
	if !d.color {
		return s
	}
	return "\x1b[" + style + "m" + s + "\x1b[0m"
}

func (d *demo) paintState(s, state string) string {
	switch state {
	case "closed":
		return d.paint("32", s)
	case "half_open":
		return d.paint("33", s)
	case "open":
		return d.paint("31", s)
	}
	return s
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}
