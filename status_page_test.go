package httpbreaker

import (
	"context"
	"encoding/json"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// chromium returns the path of a headless Chromium. CI installs Debian's
// chromium package, and there a missing browser fails the test; elsewhere
// the test is skipped.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no Chromium: .ci/run installs Debian's chromium package for this test")
	}
	t.Skip("no Chromium installed (apt-get install chromium)")
	return ""
}

// headless runs Chromium on url with args, the way that works in a sandbox
// with no network: no GPU, no sandbox, no background traffic.
func headless(t *testing.T, browser, url string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, browser, append(append(base, args...), url)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", browser, err, stderr.String())
	}
	return out
}

func TestStatusPageRendersInABrowser(t *testing.T) {
	browser := chromium(t)
	_, srv := statusServer(t)

	dom := string(headless(t, browser, srv.URL, "--dump-dom"))
	for _, want := range []string{
		`<tr id="key-scaffolder">`, `<span class="state open">open</span>`,
		`<tr id="key-catalog">`, `<span class="state closed">closed</span>`,
		"2 keys, 1 rejecting requests.",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered page lacks %q", want)
		}
	}

	dir := os.Getenv("HTTPBREAKER_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	shot := filepath.Join(dir, "status_page.png")
	headless(t, browser, srv.URL, "--window-size=1200,300", "--screenshot="+shot)
	t.Logf("screenshot: %s", shot)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	// The state badges are drawn in their colours: count the pixels of each.
	colours := map[string][3]uint32{"open red": {0xd9, 0x30, 0x25}, "closed green": {0x1e, 0x8e, 0x3e}}
	counts := map[string]int{}
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			for name, c := range colours {
				if near(r>>8, c[0]) && near(g>>8, c[1]) && near(b>>8, c[2]) {
					counts[name]++
				}
			}
		}
	}
	for name := range colours {
		if counts[name] < 200 {
			t.Errorf("the screenshot has %d %s pixels: the state is not colour-coded", counts[name], name)
		}
	}
}

func near(a, b uint32) bool { return a+12 >= b && b+12 >= a }

// statusServer serves a set with an open "scaffolder" and a closed
// "catalog" behind StatusHandler(opts...).
func statusServer(t *testing.T, opts ...StatusOption) (*Breakers, *httptest.Server) {
	t.Helper()
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Hour}))
	record(b.Middleware("catalog")(newStatusHandler(200)), "/")
	record(b.Middleware("scaffolder")(newStatusHandler(500)), "/")
	srv := httptest.NewServer(b.StatusHandler(opts...))
	t.Cleanup(srv.Close)
	return b, srv
}

func fetch(t *testing.T, method, url, accept string, form url.Values) (int, http.Header, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, url, body)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestStatusHandlerAnswersJSON(t *testing.T) {
	_, srv := statusServer(t)
	for _, accept := range []string{"", "*/*", "application/json"} {
		code, header, body := fetch(t, "GET", srv.URL, accept, nil)
		var got []map[string]any
		if code != 200 || header.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(body), &got) != nil {
			t.Fatalf("Accept %q: %d %s %s", accept, code, header.Get("Content-Type"), body)
		}
		if len(got) != 2 || got[0]["key"] != "catalog" || got[0]["state"] != "closed" || got[1]["state"] != "open" ||
			got[1]["retry_after_seconds"].(float64) < 3500 || got[1]["window"] == nil || got[1]["since"] == nil {
			t.Fatalf("JSON %s", body)
		}
	}
}

func TestStatusHandlerAnswersHTMLToBrowsers(t *testing.T) {
	_, srv := statusServer(t, StatusRefresh(2*time.Second))
	code, header, body := fetch(t, "GET", srv.URL, "text/html,application/xhtml+xml,*/*;q=0.8", nil)
	if code != 200 || !strings.HasPrefix(header.Get("Content-Type"), "text/html") {
		t.Fatalf("%d %s", code, header.Get("Content-Type"))
	}
	for _, want := range []string{
		`<meta http-equiv="refresh" content="2">`,
		`<tr id="key-scaffolder">`,
		`<span class="state open">open</span>`,
		`<span class="state closed">closed</span>`,
		"2 keys, 1 rejecting requests.",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, external := range []string{"<script src", "<link", "http://", "https://"} {
		if strings.Contains(body, external) {
			t.Errorf("page refers to %q: it must be self-contained", external)
		}
	}
	if strings.Contains(body, "<form") {
		t.Error("a read-only page shows control buttons")
	}
}

func TestStatusHandlerEscapesKeys(t *testing.T) {
	b, _ := newSet(t)
	b.Middleware(`<script>alert(1)</script>`)
	srv := httptest.NewServer(b.StatusHandler())
	defer srv.Close()
	_, _, body := fetch(t, "GET", srv.URL, "text/html", nil)
	if strings.Contains(body, "<script>alert") {
		t.Fatal("a key went into the page unescaped")
	}
}

func TestStatusHandlerIsReadOnlyWithoutAllowControl(t *testing.T) {
	b, srv := statusServer(t)
	code, header, _ := fetch(t, "POST", srv.URL, "", url.Values{"key": {"catalog"}, "action": {"force_open"}})
	if code != http.StatusMethodNotAllowed || header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST to a read-only handler: %d Allow %q", code, header.Get("Allow"))
	}
	if st := b.State("catalog"); st != StateClosed {
		t.Fatalf("state changed to %v", st)
	}
}

func TestStatusHandlerControl(t *testing.T) {
	authorize := func(r *http.Request) bool { return r.Header.Get("X-Operator") == "yes" }
	b, srv := statusServer(t, AllowControl(authorize))
	post := func(form url.Values, operator bool, accept string) (int, http.Header, string) {
		req, _ := http.NewRequest("POST", srv.URL, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if operator {
			req.Header.Set("X-Operator", "yes")
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(body)
	}

	if code, _, _ := post(url.Values{"key": {"catalog"}, "action": {"force_open"}}, false, ""); code != http.StatusForbidden {
		t.Fatalf("unauthorized POST: %d, want 403", code)
	}
	if st := b.State("catalog"); st != StateClosed {
		t.Fatalf("a denied request changed the state to %v", st)
	}
	code, _, body := post(url.Values{"key": {"catalog"}, "action": {"force_open"}, "for": {"5m"}}, true, "")
	if code != 200 || !strings.Contains(body, `"state":"forced_open"`) {
		t.Fatalf("force_open: %d %s", code, body)
	}
	if s := status(t, b, "catalog"); s.State != StateForcedOpen || s.RetryAfter <= 4*time.Minute {
		t.Fatalf("after force_open for 5m: %v %v", s.State, s.RetryAfter)
	}
	for _, tc := range []struct {
		action string
		key    string
		want   State
	}{
		{"release", "catalog", StateClosed},
		{"force_close", "scaffolder", StateForcedClosed},
		{"reset", "scaffolder", StateClosed},
	} {
		if code, _, body := post(url.Values{"key": {tc.key}, "action": {tc.action}}, true, ""); code != 200 {
			t.Fatalf("%s: %d %s", tc.action, code, body)
		}
		if st := b.State(tc.key); st != tc.want {
			t.Fatalf("after %s: %v, want %v", tc.action, st, tc.want)
		}
	}
	code, header, _ := post(url.Values{"key": {"catalog"}, "action": {"force_close"}}, true, "text/html")
	if code != http.StatusSeeOther || header.Get("Location") != "/" {
		t.Fatalf("a form POST from the page: %d Location %q, want 303 back to the page", code, header.Get("Location"))
	}
	for _, tc := range []struct {
		form url.Values
		code int
		msg  string
	}{
		{url.Values{"key": {"catalog"}, "action": {"explode"}}, 400, "action: want force_open, force_close, release or reset"},
		{url.Values{"action": {"reset"}}, 400, "key: missing"},
		{url.Values{"key": {"catalog"}, "action": {"force_open"}, "for": {"soon"}}, 400, `for: want a duration such as "5m", got "soon"`},
		{url.Values{"key": {"nobody"}, "action": {"reset"}}, 404, "no breaker for this key"},
	} {
		if code, _, body := post(tc.form, true, ""); code != tc.code || !strings.Contains(body, tc.msg) {
			t.Errorf("%v: %d %q, want %d %q", tc.form, code, body, tc.code, tc.msg)
		}
	}
	_, _, page := fetch(t, "GET", srv.URL, "text/html", nil)
	if !strings.Contains(page, `name="action" value="force_open"`) {
		t.Error("a page with control shows no buttons")
	}
}

func TestStatusHandlerGETNeverChangesState(t *testing.T) {
	b, srv := statusServer(t, AllowControl(func(*http.Request) bool { return true }))
	fetch(t, "GET", srv.URL+"?key=catalog&action=force_open", "", nil)
	fetch(t, "HEAD", srv.URL+"?key=catalog&action=force_open", "", nil)
	if st := b.State("catalog"); st != StateClosed {
		t.Fatalf("a GET changed the state to %v", st)
	}
	if code, header, _ := fetch(t, "DELETE", srv.URL, "", nil); code != 405 || header.Get("Allow") != "GET, HEAD, POST" {
		t.Fatalf("DELETE: %d Allow %q", code, header.Get("Allow"))
	}
}
