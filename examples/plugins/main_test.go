package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/httpbreaker/httpbreaker"
)

// syncBuffer is an io.Writer that tests can read while run writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestDemoTellsTheStory(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	if err := run(context.Background(), []string{"-demo"}, &out, io.Discard); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{
		"fault: scaffolder now answers 500",
		"scaffolder: closed → open on ",
		"scaffolder: half_open → open: a probe failed",
		"fault cleared",
		"scaffolder: half_open → closed: every probe succeeded",
		"closed → open → half_open → open → half_open → closed",
		"✓ scaffolder failed",
		`fault: the Git host, which catalog reads through breakers.Transport("git")`,
		"git: closed → open on consecutive_failures",
		"git: half_open → closed: every probe succeeded",
		"each blamed on git",
		"catalog answered from its cache in",
		"catalog     closed  since",
		"✓ the Git host failed",
		"GET /breakers, the status page",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the demo's output lacks %q", want)
		}
	}
	if strings.Contains(text, "\x1b[") {
		t.Error("the demo wrote escape codes to output that is not a terminal")
	}
	// Each second's rejections are shown beside the states the breaker was
	// in during that second, never beside closed alone.
	views := 0
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) != 9 || !strings.HasSuffix(f[0], "s") || strings.Count(f[2], "/") != 2 {
			continue
		}
		views++
		for col := 1; col < 9; col += 2 {
			counts := strings.Split(f[col+1], "/")
			if counts[2] != "0" && !strings.Contains(f[col], "open") {
				t.Errorf("rejections shown beside %q: %s", f[col], line)
			}
		}
	}
	if views < 10 {
		t.Errorf("%d lines of the live view, want one a second", views)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`\n  catalog +closed +since the start +\d+ succeeded`),
		regexp.MustCompile(`\n  scaffolder +closed +since \d+\.\ds, after 5 state changes +\d+ succeeded`),
	} {
		if !want.MatchString(text) {
			t.Errorf("the status page's lines do not match %s", want)
		}
	}
	if t.Failed() {
		t.Log(text)
	}
}

func TestDemoFailsWhenTheStoryDoesNotHappen(t *testing.T) {
	t.Parallel() // the story runs on the clock: each demo test waits, and they wait together
	cfg := httpbreaker.Config{Keys: map[string]httpbreaker.Policy{"scaffolder": {Mode: httpbreaker.ModeDisabled}}}
	var out syncBuffer
	err := runStory(context.Background(), cfg, &out, false, 2*time.Second)
	if err == nil || !strings.Contains(err.Error(), "scaffolder did not go from closed to open") {
		t.Fatalf("with scaffolder's breaker disabled the demo returned %v, want the missing transition named\n%s", err, out.String())
	}
	if !strings.Contains(err.Error(), "got no rejections") {
		t.Errorf("error %q does not list the missing rejections", err)
	}
}

func TestDemoFailsWhenTheClientSideStoryDoesNotHappen(t *testing.T) {
	t.Parallel()
	cfg := httpbreaker.Config{Keys: map[string]httpbreaker.Policy{gitUpstream: {Mode: httpbreaker.ModeDisabled}}}
	var out syncBuffer
	// Long enough for scaffolder's steps, which come first.
	err := runStory(context.Background(), cfg, &out, false, 8*time.Second)
	if err == nil || !strings.Contains(err.Error(), "git did not go from closed to open") {
		t.Fatalf("with the git breaker disabled the demo returned %v, want the missing transition named\n%s", err, out.String())
	}
	if !strings.Contains(err.Error(), "no call of catalog's to the Git host was rejected") {
		t.Errorf("error %q does not say that the catalog's calls were never rejected", err)
	}
}

// TestDemoFailsWithoutBlame: counted as the catalog's own, the Git host's
// failures trip the catalog's breaker along with git's, and the cache hides
// behind the catalog's 503s; the demo says so.
func TestDemoFailsWithoutBlame(t *testing.T) {
	t.Parallel()
	noBlame := httpbreaker.WithClassifier(func(c httpbreaker.Call) httpbreaker.Outcome {
		if o := httpbreaker.DefaultClassifier(c); o != httpbreaker.UpstreamFailure {
			return o
		}
		return httpbreaker.Failure
	})
	var out syncBuffer
	err := runStory(context.Background(), httpbreaker.Config{}, &out, false, 8*time.Second, noBlame)
	if err == nil || !strings.Contains(err.Error(), "catalog was affected by another's outage") ||
		!strings.Contains(err.Error(), "and 0 were blamed on git") {
		t.Fatalf("with blame turned off the demo returned %v, want the catalog's trip and the missing blame named\n%s", err, out.String())
	}
}

func TestBadConfigStopsStartup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte("keys:\n  scaffolder:\n    failure_rate: 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), []string{"-config", path}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "line 3: keys.scaffolder.failure_rate: must be in (0, 1], or off; got 2") {
		t.Fatalf("run with a bad config: %v, want the library's error", err)
	}
	if err := run(context.Background(), []string{"-config", filepath.Join(t.TempDir(), "missing.yaml")}, io.Discard, io.Discard); err == nil {
		t.Fatal("run with a missing config file started")
	}
}

// startHost runs the host on a free port until the test ends, and returns
// its base URL and a channel that gets run's result.
func startHost(t *testing.T, ctx context.Context) (string, <-chan error) {
	t.Helper()
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-addr", "127.0.0.1:0"}, &out, io.Discard) }()
	listening := regexp.MustCompile(`listening on (http://[0-9.:]+)`)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := listening.FindStringSubmatch(out.String()); m != nil {
			return m[1], done
		}
		select {
		case err := <-done:
			t.Fatalf("run ended before listening: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatal("the host did not start listening")
	return "", nil
}

func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHostServesPluginsBreakersMetricsAndHealth(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, _ := startHost(t, ctx)
	for _, tc := range []struct{ method, path string }{
		{"GET", "/api/catalog/entities"}, {"GET", "/api/catalog/entities/orders"},
		{"POST", "/api/scaffolder/tasks"}, {"GET", "/api/search/query?term=pay"}, {"GET", "/healthz"},
	} {
		if code, body := do(t, tc.method, base+tc.path, ""); code >= 300 {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, code, body)
		}
	}
	code, body := do(t, "GET", base+"/breakers", "")
	statuses := keysJSON(t, body)
	if code != 200 || len(statuses) != 4 {
		t.Fatalf("/breakers: %d %s", code, body)
	}
	for _, s := range statuses {
		side := "server"
		if s["key"] == gitUpstream {
			side = "client" // the catalog's calls to the Git host
		}
		if s["state"] != "closed" || s["retry_after_seconds"] != 0.0 || s["window"] == nil || s["side"] != side {
			t.Errorf("/breakers entry %v", s)
		}
	}
	_, metrics := do(t, "GET", base+"/metrics", "")
	for _, want := range []string{
		`httpbreaker_state{key="scaffolder",state="closed"} 1`,
		`httpbreaker_requests_total{key="catalog",result="success"} 2`,
		`httpbreaker_transitions_total{from="closed",key="search",to="open"} 0`,
		`httpbreaker_requests_total{key="git",result="success"} 2`, // the catalog's two calls
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestStatusPageControlsBreakersFromLoopback(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, _ := startHost(t, ctx)
	form := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	post := func(body string) (int, string) {
		resp, err := http.Post(base+"/breakers", "application/x-www-form-urlencoded", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post(form("key", "search", "action", "force_open", "for", "1m")); code != 200 || !strings.Contains(body, `"forced_open"`) {
		t.Fatalf("force_open from loopback: %d %s", code, body)
	}
	if code, _ := do(t, "GET", base+"/api/search/query?term=pay", ""); code != 503 {
		t.Fatalf("search forced open answered %d", code)
	}
	if code, body := post(form("key", "search", "action", "release")); code != 200 {
		t.Fatalf("release: %d %s", code, body)
	}
	if code, _ := do(t, "GET", base+"/api/search/query?term=pay", ""); code != 200 {
		t.Fatalf("search released answered %d", code)
	}
	req, _ := http.NewRequest("GET", base+"/breakers", nil)
	req.Header.Set("Accept", "text/html")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), `<tr id="key-scaffolder">`) || !strings.Contains(string(page), "Force open") {
		t.Fatalf("the status page in a browser lacks the plugins or the control buttons")
	}
}

func TestFromLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:5000": true, "[::1]:5000": true, "10.0.0.7:5000": false, "garbage": false} {
		if got := fromLoopback(&http.Request{RemoteAddr: addr}); got != want {
			t.Errorf("fromLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestFaultControl(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, _ := startHost(t, ctx)
	for _, tc := range []struct {
		name, method, plugin, body string
		code                       int
		msg                        string
	}{
		{"status too high", "POST", "scaffolder", `{"status": 700}`, 400, "status: must be an HTTP status from 200 to 599, got 700"},
		{"rate above 1", "POST", "scaffolder", `{"error_rate": 1.5}`, 400, "error_rate: must be between 0 and 1, got 1.5"},
		{"negative delay", "POST", "search", `{"delay": "-1s"}`, 400, "delay: must be between 0s and 1m0s, got -1s"},
		{"delay without unit", "POST", "search", `{"delay": "800"}`, 400, `delay: want a duration such as "800ms", got "800"`},
		{"unknown field", "POST", "search", `{"latency": "1s"}`, 400, `unknown field "latency"`},
		{"not JSON", "POST", "search", `status=500`, 400, "body: invalid character"},
		{"two mistakes", "POST", "search", `{"status": 99, "error_rate": -1}`, 400, "status: must be"},
		{"unknown plugin", "POST", "billing", `{}`, 404, `no plugin "billing"`},
		{"wrong method", "PUT", "search", `{}`, 405, "use POST"},
		{"valid", "POST", "scaffolder", `{"status": 503, "error_rate": 1}`, 204, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := do(t, tc.method, base+"/faults/"+tc.plugin, tc.body)
			if code != tc.code || !strings.Contains(body, tc.msg) {
				t.Fatalf("got %d %q, want %d with %q", code, body, tc.code, tc.msg)
			}
		})
	}
	if code, _ := do(t, "POST", base+"/api/scaffolder/tasks", ""); code != 503 {
		t.Fatalf("with the fault set, scaffolder answered %d, want the injected 503", code)
	}
	if _, body := do(t, "GET", base+"/faults", ""); !strings.Contains(body, `"scaffolder":{"delay":"0s","error_rate":1,"status":503}`) {
		t.Fatalf("GET /faults: %s", body)
	}
	if code, _ := do(t, "DELETE", base+"/faults/scaffolder", ""); code != 204 {
		t.Fatalf("DELETE answered %d", code)
	}
	if code, _ := do(t, "POST", base+"/api/scaffolder/tasks", ""); code != 201 {
		t.Fatalf("with the fault cleared, scaffolder answered %d, want 201", code)
	}
}

func TestShutsDownGracefullyOnSIGTERM(t *testing.T) {
	base, done := startHost(t, context.Background())
	if code, body := do(t, "POST", base+"/faults/search", `{"delay": "700ms"}`); code != 204 {
		t.Fatalf("setting a delay: %d %s", code, body)
	}
	answered := make(chan int, 1)
	go func() {
		resp, err := http.Get(base + "/api/search/query?term=pay")
		if err != nil {
			t.Error(err)
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	// Wait until the request is in flight, as the breaker sees it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := do(t, "GET", base+"/breakers", "")
		if strings.Contains(body, `"in_flight": 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the slow request never showed in flight: %s", body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := <-answered; code != 200 {
		t.Fatalf("the in-flight request got %d, want 200: shutdown must let it finish", code)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after SIGTERM: %v, want nil (exit 0)", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after SIGTERM")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("the host still accepts connections after shutting down")
	}
}

var soakFor = flag.Duration("soak", 0, "run TestSoak for this long: go test ./examples/plugins -run TestSoak -soak 5m")

// TestSoak is the soak behind a flag: real load with faults flapping, keys
// churning past WithMaxKeys, a slow hook and the status page polled; it
// fails if a request went unanswered or the host grew.
func TestSoak(t *testing.T) {
	if *soakFor == 0 {
		t.Skip("the soak runs only with -soak, for example: go test ./examples/plugins -run TestSoak -soak 5m")
	}
	var out syncBuffer
	cfg, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if err := runSoak(context.Background(), cfg, *soakFor, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log(out.String())
}

// requireTool returns the path of a command the by-hand session uses. CI
// installs it: there a missing one fails the test; elsewhere it is skipped.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed; .ci/run installs it", name)
		}
		t.Skipf("%s is not installed (apt-get install %s)", name, name)
	}
	return path
}

// readmeSession returns the lines of the by-hand session in this example's
// README.md and the output it says the loop prints.
func readmeSession(t *testing.T) (lines []string, loopOutput string) {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	if !strings.Contains(text, "```sh\ngo run ./examples/plugins\n```") {
		t.Fatal("examples/plugins/README.md no longer starts the host with go run ./examples/plugins in a block of its own")
	}
	_, after, ok := strings.Cut(text, "<!-- by-hand session")
	if !ok {
		t.Fatal("examples/plugins/README.md has no by-hand session marker")
	}
	_, after, _ = strings.Cut(after, "```sh\n")
	block, after, _ := strings.Cut(after, "```")
	_, after, _ = strings.Cut(after, "```\n")
	loopOutput, _, _ = strings.Cut(after, "```")
	return strings.Split(strings.TrimSpace(block), "\n"), loopOutput
}

// TestTheREADMESessionDoesWhatItSays runs the by-hand session of this
// example's README.md as written, with curl against a host on a free port in
// place of 8080.
func TestTheREADMESessionDoesWhatItSays(t *testing.T) {
	bash, _ := requireTool(t, "bash"), requireTool(t, "curl")
	lines, loopOutput := readmeSession(t)
	if len(lines) != 5 {
		t.Fatalf("the session has %d lines, want 5 (this test checks each): %q", len(lines), lines)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, _ := startHost(t, ctx)
	var out []string
	for _, line := range lines {
		cmd := exec.Command(bash, "-c", strings.ReplaceAll(line, "localhost:8080", strings.TrimPrefix(base, "http://")))
		got, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v\n%s", line, err, got)
		}
		out = append(out, string(got))
	}
	if out[0] != "" || out[4] != "" {
		t.Errorf("setting and clearing the fault printed %q and %q, want nothing", out[0], out[4])
	}
	if out[1] != loopOutput {
		t.Errorf("the loop printed\n%s\nexamples/plugins/README.md says\n%s", out[1], loopOutput)
	}
	scaffolder := breakerJSON(t, out[2], "scaffolder")
	trip, _ := scaffolder["last_trip"].(map[string]any)
	if retry, _ := scaffolder["retry_after_seconds"].(float64); scaffolder["state"] != "open" || retry < 15 || trip["consecutive_failures"] != 5.0 {
		t.Errorf("/breakers says scaffolder is %v for %vs, last trip %v; want open for about 20s after 5 failures in a row",
			scaffolder["state"], scaffolder["retry_after_seconds"], trip)
	}
	if !strings.Contains(out[3], `httpbreaker_state{key="scaffolder",state="open"} 1`) {
		t.Errorf("the metrics line shows\n%s\nwant scaffolder open", out[3])
	}
}

// keysJSON returns the keys of the status page's JSON.
func keysJSON(t *testing.T, body string) []map[string]any {
	t.Helper()
	var status struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal([]byte(body), &status); err != nil {
		t.Fatalf("/breakers: %v\n%s", err, body)
	}
	return status.Keys
}

// breakerJSON returns key's entry in the status page's JSON.
func breakerJSON(t *testing.T, body, key string) map[string]any {
	t.Helper()
	for _, s := range keysJSON(t, body) {
		if s["key"] == key {
			return s
		}
	}
	t.Fatalf("/breakers has no %s: %s", key, body)
	return nil
}

// TestADelayTripsOnlyWhereThePolicyHasSlowCall checks the table of faults in
// this example's README.md: a delay trips search, whose policy has
// slow_call, and only slows scaffolder down.
func TestADelayTripsOnlyWhereThePolicyHasSlowCall(t *testing.T) {
	t.Parallel() // beside the demo tests; parallel tests start once the others, and the SIGTERM of one of them, are done
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, _ := startHost(t, ctx)
	for _, p := range []struct{ id, method, path, want string }{
		{"scaffolder", "POST", "/api/scaffolder/tasks", "closed"},
		{"search", "GET", "/api/search/query?term=pay", "open"},
	} {
		if code, body := do(t, "POST", base+"/faults/"+p.id, `{"delay": "1500ms"}`); code != 204 {
			t.Fatalf("setting a delay on %s: %d %s", p.id, code, body)
		}
		var wg sync.WaitGroup
		for range 6 {
			wg.Go(func() { do(t, p.method, base+p.path, "") })
		}
		wg.Wait()
		_, body := do(t, "GET", base+"/breakers", "")
		if st := breakerJSON(t, body, p.id)["state"]; st != p.want {
			t.Errorf("%s after 6 requests delayed 1.5s: %v, want %s", p.id, st, p.want)
		}
	}
}
