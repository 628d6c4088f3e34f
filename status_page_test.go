package httpbreaker

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
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

// anHour renders the status page after an hour of a service's life, on the
// fake clock of a synctest bubble, and returns the page and its headers: a
// key that tripped, failed a probe and recovered, twice; one open now; one
// forced open; one in observe mode; one that a policy names and nothing
// uses; short and long keys. The page is static HTML, so a browser shown it
// later sees what it would have seen then.
func anHour(t *testing.T, opts ...StatusOption) (http.Header, string) {
	var header http.Header
	var body string
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: 2 * time.Minute, MaxOpenFor: 10 * time.Minute, HalfOpenRequests: 1}),
			WithKeyPolicy("search", Policy{Mode: ModeObserve}), WithKeyPolicy("paymnets", Policy{}))
		for _, key := range []string{"catalog", "billing", "kubernetes-ingestion", "GET /api/items/{id}", "search", "techdocs"} {
			record(b.Middleware(key)(newStatusHandler(200)), "/")
		}
		payments := newStatusHandler(200)
		pay := b.Middleware("payments")(payments)
		scaffolder := b.Middleware("scaffolder")(newStatusHandler(500))
		for _, flap := range []time.Duration{15 * time.Minute, 15 * time.Minute} {
			time.Sleep(flap)
			payments.set(500)
			record(pay, "/") // trips
			time.Sleep(3 * time.Minute)
			record(pay, "/") // the probe fails
			time.Sleep(5 * time.Minute)
			payments.set(200)
			record(pay, "/") // the probe succeeds
		}
		time.Sleep(9 * time.Minute)
		_ = b.ForceOpen("techdocs", 10*time.Minute)
		time.Sleep(6 * time.Minute)
		record(scaffolder, "/")
		time.Sleep(time.Minute)
		var code int
		code, header, body = serveOnce(b.StatusHandler(opts...), "text/html")
		if code != http.StatusOK {
			t.Fatalf("the page answered %d", code)
		}
	})
	return header, body
}

// served serves a page rendered earlier, with its headers.
func served(t *testing.T, header http.Header, body string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		maps.Copy(w.Header(), header)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestStatusPageRendersInABrowser(t *testing.T) {
	t.Parallel() // Chromium's start-up is most of it
	browser := chromium(t)
	header, body := anHour(t)
	srv := served(t, header, body)

	// One start of Chromium dumps the DOM and takes the screenshot.
	shot := filepath.Join(artifacts(t), "status_page.png")
	dom := string(headless(t, browser, srv.URL, "--dump-dom", "--window-size=1280,1000", "--screenshot="+shot))
	t.Logf("screenshot: %s", shot)
	for _, want := range []string{
		`<tr id="key-scaffolder">`, `<span class="state open">open</span>`,
		`<tr id="key-catalog">`, `<span class="state closed">closed</span>`,
		"9 keys. 2 are rejecting requests.", "tripped 1m0s ago: 1 failure in a row",
		`<svg class="timeline"`, "configured, no traffic yet", "2 need attention.",
		"last hour: 2 outages, 16m0s in all; the latest, 8m0s: tripped on 1 failure in a row, probes failed once, closed when its probes succeeded",
		`<svg class="timeline zoom"`, "the latest outage, zoomed",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered page lacks %q", want)
		}
	}

	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	// The state badges and the timelines' bands are drawn in their colours,
	// under the page's content security policy: count the pixels of each.
	// Orange is only in the timelines: no key is half-open now.
	colours := map[string][3]uint32{"open red": {0xd9, 0x30, 0x25}, "closed green": {0x1e, 0x8e, 0x3e}, "half-open orange": {0xe3, 0x74, 0x00}}
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
	for name, least := range map[string]int{"open red": 200, "closed green": 200, "half-open orange": 4 * 16} {
		if counts[name] < least {
			t.Errorf("the screenshot has %d %s pixels, want at least %d: the state or the timeline is not colour-coded", counts[name], name, least)
		}
	}
}

// artifacts returns the directory for screenshots: HTTPBREAKER_ARTIFACTS in
// CI, a temporary one elsewhere.
func artifacts(t *testing.T) string {
	if dir := os.Getenv("HTTPBREAKER_ARTIFACTS"); dir != "" {
		return dir
	}
	return t.TempDir()
}

// measure is a script the layout test adds to the page: it writes onto the
// body of the frame around it the viewport's width, the document's scroll
// width, how many controls there are, which of them lie outside the
// viewport, and how many text boxes have no label.
const measure = `<script>
const vw = document.documentElement.clientWidth;
const controls = [...document.querySelectorAll("button, input:not([type=hidden]), summary")];
const outside = controls.filter(el => { const r = el.getBoundingClientRect(); return r.left < 0 || r.right > vw || r.width === 0; });
const unlabelled = [...document.querySelectorAll("input:not([type=hidden])")].filter(el => !el.closest("label"));
const out = parent.document.body.dataset;
out.viewport = vw;
out.scrollWidth = document.documentElement.scrollWidth;
out.controls = controls.length;
out.outside = outside.map(el => el.textContent || el.name).join("|");
out.unlabelled = unlabelled.length;
out.brokenKeys = [...document.querySelectorAll(".key .name")].filter(el => { const r = document.createRange(); r.selectNodeContents(el); return r.getClientRects().length > 1; }).map(el => el.textContent).join("|");
const inView = el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.left >= 0 && r.right <= vw; };
out.timelines = [...document.querySelectorAll("svg.timeline")].filter(inView).length;
const pay = document.querySelector("#key-payments svg.timeline");
out.paymentsBands = pay ? ["open", "half_open"].map(c => c + ":" + [...pay.querySelectorAll("rect." + c)].filter(el => el.getBoundingClientRect().width >= 1.5).length).join(",") : "none";
out.widest = [...document.querySelectorAll("*")].filter(el => el.scrollWidth > vw).map(el => el.tagName + "." + el.className + ":" + el.scrollWidth + "/" + Math.round(el.getBoundingClientRect().right)).join(",");
</script>`

// measured serves page at / with the measure script before </body>, and
// without the headers that forbid scripts and frames, and at
// /frame/{width}/{height} a frame of that size around it: headless Chromium
// does not make windows narrower than 500 pixels, a frame can be a phone.
func measured(page http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/frame/{width}/{height}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><html><body style="margin:0"><iframe src="/" style="border:0;width:%spx;height:%spx"></iframe></body></html>`,
			r.PathValue("width"), r.PathValue("height"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		page.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			if k != "Content-Security-Policy" && k != "X-Frame-Options" && k != "Content-Length" {
				w.Header()[k] = v
			}
		}
		w.WriteHeader(rec.Code)
		_, _ = io.WriteString(w, strings.Replace(rec.Body.String(), "</body>", measure+"</body>", 1))
	})
	return mux
}

func TestStatusPageFitsADesktopWindowAndAPhone(t *testing.T) {
	t.Parallel() // Chromium's start-up is most of it
	browser := chromium(t)
	header, body := anHour(t, AllowControl(func(*http.Request) bool { return true }), StatusRefresh(0))
	srv := httptest.NewServer(measured(served(t, header, body).Config.Handler))
	t.Cleanup(srv.Close)

	dataset := regexp.MustCompile(`data-([a-z-]+)="([^"]*)"`)
	for _, size := range []struct {
		name          string
		width, height int
	}{{"desktop", 1280, 800}, {"phone", 390, 844}} {
		t.Run(size.name, func(t *testing.T) {
			t.Parallel()
			frame := fmt.Sprintf("%s/frame/%d/%d", srv.URL, size.width, size.height)
			window := fmt.Sprintf("--window-size=%d,%d", max(size.width, 500), size.height)
			shot := filepath.Join(artifacts(t), "status_page_"+size.name+".png")
			dom := string(headless(t, browser, frame, "--dump-dom", window, "--screenshot="+shot))
			t.Logf("screenshot: %s", shot)
			body := dom[strings.Index(dom, "<body"):]
			body = body[:strings.Index(body, ">")]
			got := map[string]string{}
			for _, m := range dataset.FindAllStringSubmatch(body, -1) {
				got[m[1]] = m[2]
			}
			if got["viewport"] != strconv.Itoa(size.width) {
				t.Fatalf("the page was laid out %s pixels wide, not %d: the test measures nothing (%v)", got["viewport"], size.width, got)
			}
			if sw, _ := strconv.Atoi(got["scroll-width"]); sw > size.width {
				t.Errorf("the page is %d pixels wide in a %d-pixel window: it scrolls sideways (%s)", sw, size.width, got["widest"])
			}
			// 9 keys, each a duration box and 4 buttons, Probe now on the open
			// one, a list of changes to open on the 3 that changed state, and
			// the filter's text box and button.
			if got["controls"] != "51" {
				t.Errorf("%s controls on the page, want 51", got["controls"])
			}
			if got["outside"] != "" {
				t.Errorf("controls outside the %d-pixel viewport: %s", size.width, got["outside"])
			}
			if got["unlabelled"] != "0" {
				t.Errorf("%s text boxes without a label", got["unlabelled"])
			}
			if got["broken-keys"] != "" {
				t.Errorf("keys broken across lines: %s", got["broken-keys"])
			}
			// Every key with a breaker has its hour's timeline in view, and
			// the 3 whose latest outage is short a zoomed one too; the
			// flapping key's shows its four trips and its probes.
			if got["timelines"] != "11" || got["payments-bands"] != "open:4,half_open:4" {
				t.Errorf("%s timelines in view, payments' bands %q; want 11, and open:4,half_open:4", got["timelines"], got["payments-bands"])
			}
		})
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
		var page struct {
			Fleet map[string]any   `json:"fleet"`
			Keys  []map[string]any `json:"keys"`
		}
		if code != 200 || header.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(body), &page) != nil {
			t.Fatalf("Accept %q: %d %s %s", accept, code, header.Get("Content-Type"), body)
		}
		got := page.Keys
		if page.Fleet == nil || page.Fleet["shared"] != false {
			t.Fatalf("JSON without its fleet section: %s", body)
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
		"2 keys. 1 is rejecting requests.",
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
	if strings.Contains(body, `<form method="post"`) {
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
	if code != http.StatusSeeOther || resolve(t, srv.URL+"/", header.Get("Location")) != srv.URL+"/" {
		t.Fatalf("a form POST from the page: %d Location %q, want 303 back to the page", code, header.Get("Location"))
	}
	for _, tc := range []struct {
		form url.Values
		code int
		msg  string
	}{
		{url.Values{"key": {"catalog"}, "action": {"explode"}}, 400, "action: want force_open, force_close, release, reset or probe"},
		{url.Values{"action": {"reset"}}, 400, "key: missing"},
		{url.Values{"key": {"catalog"}, "action": {"force_open"}, "for": {"soon"}}, 400, `for: want a duration such as "5m", got "soon"`},
		{url.Values{"key": {"nobody"}, "action": {"reset"}}, 404, "no breaker for this key"},
		{url.Values{"key": {"nobody"}, "action": {"force_open"}}, 404, "no breaker for this key"},
		{url.Values{"key": {"nobody"}, "action": {"force_close"}}, 404, "no breaker for this key"},
		{url.Values{"key": {"nobody"}, "action": {"release"}}, 404, "no breaker for this key"},
		{url.Values{"key": {"bad\xff"}, "action": {"force_open"}}, 400, "not valid UTF-8"},
	} {
		if code, _, body := post(tc.form, true, ""); code != tc.code || !strings.Contains(body, tc.msg) {
			t.Errorf("%v: %d %q, want %d %q", tc.form, code, body, tc.code, tc.msg)
		}
	}
	if n := len(b.Snapshot()); n != 2 {
		t.Errorf("%d keys after posting for keys that do not exist, want the 2 there were", n)
	}
	_, _, page := fetch(t, "GET", srv.URL, "text/html", nil)
	if !strings.Contains(page, "forced by status page from 127.0.0.1:") {
		t.Error("the page does not say who forced catalog closed")
	}
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

// resolve resolves a Location against the URL the request went to.
func resolve(t *testing.T, base, location string) string {
	t.Helper()
	b, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	l, err := url.Parse(location)
	if err != nil {
		t.Fatalf("Location %q: %v", location, err)
	}
	return b.ResolveReference(l).String()
}

func TestStatusPageRefusesCrossOriginControl(t *testing.T) {
	b, srv := statusServer(t, AllowControl(func(*http.Request) bool { return true }))
	for _, tc := range []struct {
		name    string
		headers map[string]string
		code    int
	}{
		{"a cross-site form", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"a same-site form of another origin", map[string]string{"Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
		{"an old browser's cross-origin form", map[string]string{"Origin": "http://evil.example"}, http.StatusForbidden},
		{"the page's own form", map[string]string{"Sec-Fetch-Site": "same-origin"}, http.StatusOK},
		{"curl", nil, http.StatusOK},
	} {
		_ = b.Reset("catalog")
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("key=catalog&action=force_open"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range tc.headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		forced := b.State("catalog") == StateForcedOpen
		if resp.StatusCode != tc.code || forced != (tc.code == http.StatusOK) {
			t.Errorf("%s: %d, forced open %v; want %d", tc.name, resp.StatusCode, forced, tc.code)
		}
	}
}

func TestStatusPageCannotBeFramedAndLoadsOnlyItsOwnStyle(t *testing.T) {
	_, srv := statusServer(t)
	_, header, body := fetch(t, http.MethodGet, srv.URL, "text/html", nil)
	csp := header.Get("Content-Security-Policy")
	style := body[strings.Index(body, "<style>")+len("<style>") : strings.Index(body, "</style>")]
	sum := sha256.Sum256([]byte(style))
	if header.Get("X-Frame-Options") != "DENY" || !strings.Contains(csp, "frame-ancestors 'none'") ||
		!strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe") ||
		!strings.Contains(csp, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'") {
		t.Fatalf("HTML headers: X-Frame-Options %q, Content-Security-Policy %q", header.Get("X-Frame-Options"), csp)
	}
}

// TestRedirectAfterControlNeverLeavesTheSite: after a button on the page,
// the browser goes back to the page it was on, under whatever prefix, and
// never to another host.
func TestRedirectAfterControlNeverLeavesTheSite(t *testing.T) {
	b, _ := newSet(t)
	b.Middleware("catalog")
	page := b.StatusHandler(AllowControl(func(*http.Request) bool { return true }))
	mux := http.NewServeMux()
	mux.Handle("/", page)
	mux.Handle("/debug/", http.StripPrefix("/debug", page))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for path, want := range map[string]string{
		"//evil.example/x":   srv.URL + "//evil.example/x",
		"/\\evil.example/x":  srv.URL + "/%5Cevil.example/x",
		"/debug/breakers":    srv.URL + "/debug/breakers",
		"/debug/breakers/":   srv.URL + "/debug/breakers/",
		"/a:b":               srv.URL + "/a:b",
		"/debug/javascript:": srv.URL + "/debug/javascript:",
		// Back to the keys the page showed; a query it does not
		// understand is left behind.
		"/debug/breakers?key=catalog":           srv.URL + "/debug/breakers?key=catalog",
		"/debug/breakers?filter=cat&state=open": srv.URL + "/debug/breakers?filter=cat&state=open",
		"/?page=2":                              srv.URL + "/?page=2",
		"/?evil=%3Cscript%3E&page=2":            srv.URL + "/",
	} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/placeholder", strings.NewReader("key=catalog&action=release"))
		req.URL.Opaque = path // the path as the client sent it
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "text/html")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if got := resolve(t, srv.URL+path, loc); resp.StatusCode != http.StatusSeeOther || got != want {
			t.Errorf("POST %s: %d Location %q resolves to %s, want %s", path, resp.StatusCode, loc, got, want)
		}
	}
}

func TestStatusRefreshNeverLoops(t *testing.T) {
	for _, tc := range []struct {
		every time.Duration
		meta  string
	}{
		{100 * time.Millisecond, `content="1"`},
		{0, ""},
		{-time.Second, ""},
		{90 * time.Second, `content="90"`},
	} {
		_, srv := statusServer(t, StatusRefresh(tc.every))
		_, _, body := fetch(t, http.MethodGet, srv.URL, "text/html", nil)
		has := strings.Contains(body, `http-equiv="refresh"`)
		if (tc.meta == "") == has || (tc.meta != "" && !strings.Contains(body, tc.meta)) {
			t.Errorf("StatusRefresh(%v): page has refresh %v, want %q", tc.every, has, tc.meta)
		}
	}
}

// TestCrossSiteFormCannotForceAKeyOpenFromABrowser is the attack as a
// browser runs it: a page on another site auto-submits a form to the status
// page, whose control trusts the client's network position.
func TestCrossSiteFormCannotForceAKeyOpenFromABrowser(t *testing.T) {
	t.Parallel() // Chromium's start-up is most of it
	browser := chromium(t)
	b, _ := newSet(t)
	b.Middleware("catalog")
	var posts atomic.Int32
	var site atomic.Value
	page := b.StatusHandler(AllowControl(func(*http.Request) bool { return true })) // trusts everyone, as loopback-only control does
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			posts.Add(1)
			site.Store(r.Header.Get("Sec-Fetch-Site"))
		}
		page.ServeHTTP(w, r)
	}))
	t.Cleanup(target.Close)
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<html><body><form id="f" method="post" action="%s">
<input name="key" value="catalog"><input name="action" value="force_open"></form>
<script>document.getElementById("f").submit()</script></body></html>`, target.URL)
	}))
	t.Cleanup(evil.Close)
	evilURL := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1) // another site than 127.0.0.1
	headless(t, browser, evilURL, "--dump-dom", "--virtual-time-budget=5000")
	if posts.Load() == 0 {
		t.Fatal("the browser never posted the form: the test proves nothing")
	}
	if st := b.State("catalog"); st != StateClosed {
		t.Fatalf("a cross-site form (Sec-Fetch-Site %q) forced catalog %v", site.Load(), st)
	}
}

func TestStatusPageSpeaksEnglish(t *testing.T) {
	for _, tc := range []struct {
		keys, rejecting int
		want            string
	}{
		{0, 0, "No keys yet."},
		{1, 0, "1 key. None is rejecting requests."},
		{1, 1, "1 key. 1 is rejecting requests."},
		{3, 2, "3 keys. 2 are rejecting requests."},
	} {
		if got := summary(tc.keys, tc.rejecting); got != tc.want {
			t.Errorf("summary(%d, %d) = %q, want %q", tc.keys, tc.rejecting, got, tc.want)
		}
	}
	now := time.Now()
	trip := &Transition{Time: now.Add(-2 * time.Minute), Reason: ReasonFailureRate, Failures: 6, Successes: 4}
	for _, tc := range []struct {
		s    Status
		want string
	}{
		{Status{State: StateOpen, LastTrip: trip}, "tripped 2m0s ago: 6 of 10 failed (60%)"},
		{Status{State: StateClosed, LastTrip: trip}, "last tripped 2m0s ago: 6 of 10 failed (60%)"},
		{Status{State: StateOpen, LastTrip: &Transition{Time: now, Reason: ReasonConsecutiveFailures, ConsecutiveFailures: 5}}, "tripped 0s ago: 5 failures in a row"},
		{Status{State: StateForcedOpen, ForcedBy: "status page from 10.0.0.7:5123", LastTrip: trip}, "forced by status page from 10.0.0.7:5123"},
		{Status{State: StateClosed}, ""},
	} {
		if got := cause(tc.s, now); got != tc.want {
			t.Errorf("cause(%v) = %q, want %q", tc.s.State, got, tc.want)
		}
	}
}

func TestAHalfOpenKeyWithFreeProbeSlotsIsNotCountedAsRejecting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Second}))
		record(b.Middleware("p")(newStatusHandler(500)), "/")
		page := b.StatusHandler()
		if _, _, body := serveOnce(page, "text/html"); !strings.Contains(body, "1 key. 1 is rejecting requests.") {
			t.Fatalf("open key: page says %q", body[strings.Index(body, `<p class="meta">`):][:80])
		}
		time.Sleep(2 * time.Second)
		if _, _, body := serveOnce(page, "text/html"); !strings.Contains(body, "1 key. None is rejecting requests.") {
			t.Fatalf("half-open key waiting for probes: page says %q", body[strings.Index(body, `<p class="meta">`):][:80])
		}
	})
}

// htmlAt GETs the HTML page at / with query from h, which must answer
// 200.
func htmlAt(t *testing.T, h http.Handler, query string) string {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/"+query, nil)
	req.Header.Set("Accept", "text/html")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", query, rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// serveOnce GETs / from h with the Accept header given.
func serveOnce(h http.Handler, accept string) (int, http.Header, string) {
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Accept", accept)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Header(), rec.Body.String()
}

// rowsIn returns the keys of the rows of a page, in order: those shown in
// full, and those in short.
func rowsIn(page string) (full, short []string) {
	id := regexp.MustCompile(`<tr id="key-([^"]*)">`)
	split := strings.Index(page, `<table class="short">`)
	if split < 0 {
		split = len(page)
	}
	for _, m := range id.FindAllStringSubmatch(page[:split], -1) {
		full = append(full, m[1])
	}
	for _, m := range id.FindAllStringSubmatch(page[split:], -1) {
		short = append(short, m[1])
	}
	return full, short
}

// TestStatusPageShowsTheKeysThatNeedAttentionFirst: with more keys than
// the page shows in full, the open, half-open, forced and failing ones
// come first, in full, most urgent first; the others follow in short, by
// key, one line each.
func TestStatusPageShowsTheKeysThatNeedAttentionFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 4, OpenFor: time.Hour, HalfOpenRequests: 2}))
		var healthy []string
		for i := range 25 {
			key := fmt.Sprintf("k%02d", i)
			healthy = append(healthy, key)
			record(b.Middleware(key)(newStatusHandler(200)), "/")
		}
		fail := func(key string, n int) {
			for range n {
				record(b.Middleware(key)(newStatusHandler(500)), "/")
			}
		}
		fail("x-half", 4)
		fail("recovered", 4)
		_ = b.Probe("recovered")
		record(b.Middleware("recovered")(newStatusHandler(200)), "/")
		record(b.Middleware("recovered")(newStatusHandler(200)), "/")
		time.Sleep(time.Minute)
		fail("z-open", 4)
		_ = b.Probe("x-half")
		time.Sleep(time.Minute)
		b.Middleware("y-forced")
		_ = b.ForceOpen("y-forced", 0)
		time.Sleep(time.Minute)
		fail("w-failing", 2) // 2 in a row, of the 4 that trip it

		_, _, page := serveOnce(b.StatusHandler(), "text/html")
		full, short := rowsIn(page)
		if want := []string{"z-open", "x-half", "y-forced", "w-failing"}; !slices.Equal(full, want) {
			t.Errorf("in full: %q, want the keys that need attention, most urgent first: %q", full, want)
		}
		if want := append(append(healthy[:0:0], healthy...), "recovered"); !slices.Equal(short, want) {
			t.Errorf("in short: %q, want the others by key: %q", short, want)
		}
		for _, want := range []string{
			"30 keys. 2 are rejecting requests. 4 need attention.",
			"<h2>Needs attention</h2>", "Keys 5 to 30 of 30, by key.",
			"failing: 2 failures in a row (it trips at 4)",
			`<a class="name" href="?key=recovered">recovered</a>`,
			"last tripped 3m0s ago: 4 failures in a row",
		} {
			if !strings.Contains(page, want) {
				t.Errorf("the page lacks %q", want)
			}
		}
	})
}

// TestStatusPageShowsOneKeyOrAFilteredFew: a key's link shows it alone,
// in full; the filter form asks for keys by part of their name and by
// state, and shows what it asked; the header still counts every key.
func TestStatusPageShowsOneKeyOrAFilteredFew(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Hour}))
	for i := range 30 {
		record(b.Middleware(fmt.Sprintf("Key%02d", i))(newStatusHandler(200)), "/")
	}
	record(b.Middleware("Key07")(newStatusHandler(500)), "/")
	page := b.StatusHandler()
	for _, tc := range []struct {
		query       string
		full, short []string
		shows       []string
	}{
		{"?key=Key07", []string{"Key07"}, nil, []string{`Showing key &#34;Key07&#34;: 1 key.`, `<details><summary>last 1 state change</summary>`}},
		{"?filter=key1", []string{"Key10", "Key11", "Key12", "Key13", "Key14", "Key15", "Key16", "Key17", "Key18", "Key19"}, nil,
			[]string{`Showing the keys whose name contains &#34;key1&#34;: 10 keys.`, `name="filter" value="key1"`}},
		{"?filter=&state=not_closed", []string{"Key07"}, nil,
			[]string{`Showing the keys in state other than closed: 1 key.`, `<option value="not_closed" selected>not closed</option>`}},
		{"?filter=nothing", nil, nil, []string{"No key matches.", `<a href="?">every key</a>`}},
	} {
		body := htmlAt(t, page, tc.query)
		full, short := rowsIn(body)
		if !slices.Equal(full, tc.full) || !slices.Equal(short, tc.short) {
			t.Errorf("GET %s: in full %q, in short %q; want %q and %q", tc.query, full, short, tc.full, tc.short)
		}
		for _, want := range append(tc.shows, "30 keys. 1 is rejecting requests. 1 needs attention.") {
			if !strings.Contains(body, want) {
				t.Errorf("GET %s: the page lacks %q", tc.query, want)
			}
		}
	}
}

// TestStatusPagePagesTheKeysInShort: past shortKeys keys in short, the
// page links to the next page, which links back.
func TestStatusPagePagesTheKeysInShort(t *testing.T) {
	const n = shortKeys + 21
	b, _ := newSet(t, WithMaxKeys(n))
	for i := range n {
		b.Middleware(fmt.Sprintf("k%05d", i))
	}
	page := b.StatusHandler()
	first, second, past := htmlAt(t, page, ""), htmlAt(t, page, "?page=2"), htmlAt(t, page, "?page=3")
	_, short1 := rowsIn(first)
	_, short2 := rowsIn(second)
	if len(short1) != shortKeys || short1[0] != "k00000" || len(short2) != 21 || short2[0] != fmt.Sprintf("k%05d", shortKeys) {
		t.Fatalf("page 1 has %d keys in short, page 2 %d (from %v); want %d and 21", len(short1), len(short2), short2[:1], shortKeys)
	}
	for body, want := range map[string][]string{
		first:  {fmt.Sprintf("Keys 1 to %d of %d, by key.", shortKeys, n), `<a href="?page=2">next page</a>`},
		second: {fmt.Sprintf("Keys %d to %d of %d, by key.", shortKeys+1, n, n), `<a href="?">previous page</a>`},
		past:   {"There are 2 pages; this is page 3.", `<a href="?">The first page.</a>`},
	} {
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("a page lacks %q", w)
			}
		}
	}
	if strings.Contains(second, "previous page</a><a href") || strings.Contains(second, "next page") {
		t.Error("the last page links to a next one")
	}
}

// TestStatusPageForAThousandKeysIsAtMostAMebibyte holds issue 28's bound:
// the HTML for 1,000 keys with full history, with long keys and control on,
// during an incident and with every key open. Its build time is measured
// by BenchmarkStatusPage.
func TestStatusPageForAThousandKeysIsAtMostAMebibyte(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 1,000 keys with full history")
	}
	long := func(i int) string { return fmt.Sprintf("GET /api/v1/tenants/{tenant}/projects/{id}/items-%04d", i) }
	for name, end := range map[string]func(int) State{"incident": incident, "all open": allOpen} {
		page := manyKeys(t, 1000, long, end).StatusHandler(AllowControl(func(*http.Request) bool { return true }))
		_, _, body := serveOnce(page, "text/html")
		full, short := rowsIn(body)
		if len(full) != detailedKeys || len(full)+len(short) != 1000 {
			t.Fatalf("%s: %d keys in full and %d in short, want %d and the rest of 1,000", name, len(full), len(short), detailedKeys)
		}
		if len(body) > 1<<20 {
			t.Errorf("%s: the page for 1,000 keys is %d bytes, over 1 MiB", name, len(body))
		}
		// More keys need attention than the page shows in full: the rest
		// of them lead the keys in short.
		if want := "Keys 21 to 1000 of 1000: those that need attention first, then the others by key."; !strings.Contains(body, want) {
			t.Errorf("%s: the page lacks %q", name, want)
		}
		t.Logf("%s: %d bytes", name, len(body))
	}
}

func TestStatusPageEscapesKeysShownInShort(t *testing.T) {
	b, _ := newSet(t)
	for i := range detailedKeys {
		b.Middleware(fmt.Sprintf("k%02d", i))
	}
	b.Middleware(`"><script>alert(1)</script>&x=1`)
	_, _, body := serveOnce(b.StatusHandler(), "text/html")
	if _, short := rowsIn(body); len(short) != detailedKeys+1 {
		t.Fatalf("%d keys in short, want %d", len(short), detailedKeys+1)
	}
	for _, want := range []string{
		`<tr id="key-&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&amp;x=1">`,
		`href="?key=%22%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E%26x%3D1"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	if strings.Contains(body, "<script>alert") {
		t.Fatal("a key went into the page unescaped")
	}
}

func TestStatusPageSaysWhenAClosedKeyIsFailing(t *testing.T) {
	def := Policy{FailureRate: 0.5, MinRequests: 10, ConsecutiveFailures: 5, SlowCallRate: Off}
	slow := def
	slow.SlowCallRate = 0.5
	off := def
	off.FailureRate, off.ConsecutiveFailures = Off, Off
	for _, tc := range []struct {
		name  string
		state State
		p     Policy
		w     Counts
		want  string
	}{
		{"over the rate", StateClosed, def, Counts{Failures: 6, Successes: 4}, "failing: 6 of 10 failed in its window (60%; it trips at 50%)"},
		{"half the rate", StateClosed, def, Counts{Failures: 3, Successes: 7}, "failing: 3 of 10 failed in its window (30%; it trips at 50%)"},
		{"under half the rate", StateClosed, def, Counts{Failures: 2, Successes: 8}, ""},
		{"too few to judge a rate", StateClosed, def, Counts{Failures: 2, ConsecutiveFailures: 2}, ""},
		{"half the failures in a row", StateClosed, def, Counts{Failures: 3, ConsecutiveFailures: 3}, "failing: 3 failures in a row (it trips at 5)"},
		{"slow", StateClosed, slow, Counts{Successes: 10, Slow: 3}, "failing: 3 of 10 slow in its window (30%; it trips at 50%)"},
		{"recovering", StateRecovering, def, Counts{Failures: 6, Successes: 4}, "failing: 6 of 10 failed in its window (60%; it trips at 50%)"},
		{"open: its own rank says more", StateOpen, def, Counts{Failures: 6, Successes: 4}, ""},
		{"rules off", StateClosed, off, Counts{Failures: 10, ConsecutiveFailures: 10}, ""},
	} {
		s := Status{State: tc.state, Policy: tc.p, Window: tc.w}
		if got := failingNote(&s); got != tc.want || isFailing(&s) != (tc.want != "") {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestStatusPageSaysWhatBlameKnows holds issue 25's "blame visible where
// on-call looks": a route group's why says its failures are blamed on
// which upstream, how many, and the upstream's state if it is not closed;
// the upstream's says which route groups depend on it; a route group
// blamed on an upstream that is open needs attention, one blamed on a
// closed and healthy upstream does not.
func TestStatusPageSaysWhatBlameKnows(t *testing.T) {
	keys := []Status{
		{Key: "billing", Side: "server", State: StateClosed, BlamedOn: map[string]uint64{"payments": 12, "inventory": 3}},
		{Key: "checkout", Side: "server", State: StateClosed},
		{Key: "inventory", Side: "client", State: StateClosed, Dependents: []string{"billing"}},
		{Key: "payments", Side: "client", State: StateOpen, Dependents: []string{"billing", "checkout"}},
	}
	x := newBlameIndex(keys)
	now := time.Now()
	for i, want := range [][]string{
		{"its failures are blamed on upstreams payments (12 failures, open now), inventory (3 failures), not counted in its window"},
		nil,
		{"called by billing (3 failures blamed on it)"},
		{"called by billing (12 failures blamed on it), checkout"},
	} {
		if got := whyOf(&keys[i], x, now); !slices.Equal(got, want) {
			t.Errorf("%s: why %q\nwant    %q", keys[i].Key, got, want)
		}
	}
	if rank := attentionOf(&keys[0], x); rank != 7 {
		t.Errorf("billing, blamed on an open upstream, ranks %d, want 7 (blamed)", rank)
	}
	keys[3].State = StateClosed
	if rank := attentionOf(&keys[0], newBlameIndex(keys)); rank != 0 {
		t.Errorf("billing, blamed on upstreams now closed and healthy, ranks %d, want 0", rank)
	}
	keys[3].Window, keys[3].Policy = Counts{Failures: 6, Successes: 4}, Policy{FailureRate: 0.5, MinRequests: 10}
	if rank := attentionOf(&keys[0], newBlameIndex(keys)); rank != 7 {
		t.Errorf("billing, blamed on a closed upstream that is failing, ranks %d, want 7", rank)
	}
	if got := blameNotes(&Status{BlamedOn: map[string]uint64{"payments": 1}}, nil, time.Now()); !slices.Equal(got, []string{"its failures are blamed on upstream payments (1 failure), not counted in its window"}) {
		t.Errorf("without the other keys: %q", got)
	}
	now = time.Now()
	recent := Status{BlamedOn: map[string]uint64{"payments": 3}, LastBlamedOn: "payments", LastBlamedAt: now.Add(-12 * time.Second)}
	if got := blameNotes(&recent, nil, now); !slices.Equal(got, []string{"its failures are blamed on upstream payments (3 failures), not counted in its window; the latest on payments 12s ago"}) {
		t.Errorf("with the latest blamed failure: %q", got)
	}
}

// TestStatusPageUnderConcurrentChanges reads the page, in full and in
// short, and the JSON asked for one key or by state, on several goroutines
// while many others trip, probe, force and release the keys: under -race,
// every reader of a key's state and history runs beside its writers.
func TestStatusPageUnderConcurrentChanges(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Millisecond, HalfOpenRequests: 1}))
	const keys = detailedKeys + 10
	handlers := make([]http.Handler, keys)
	codes := make([]*statusHandler, keys)
	for i := range keys {
		codes[i] = newStatusHandler(500)
		handlers[i] = b.Middleware(fmt.Sprintf("k%02d", i))(codes[i])
	}
	page := b.StatusHandler()
	var writers, readers sync.WaitGroup
	var done atomic.Bool // the writers are done
	for w := range 16 {
		writers.Go(func() {
			for i := range 60 {
				k := (w*7 + i) % keys
				switch i % 4 {
				case 0, 1:
					codes[k].set([]int{500, 200}[i%2])
					record(handlers[k], "/")
				case 2:
					_ = b.ForceOpen(fmt.Sprintf("k%02d", k), time.Millisecond)
				case 3:
					_ = b.Release(fmt.Sprintf("k%02d", k))
				}
				time.Sleep(time.Millisecond / 2)
			}
		})
	}
	for _, query := range []string{"", "?state=not_closed", "?filter=k1", "?key=k03"} {
		for _, accept := range []string{"text/html", "application/json"} {
			readers.Go(func() {
				for {
					if done.Load() {
						return
					}
					req := httptest.NewRequest(http.MethodGet, "/"+query, nil)
					req.Header.Set("Accept", accept)
					rec := httptest.NewRecorder()
					page.ServeHTTP(rec, req)
					body := rec.Body.String()
					var st StatusPage
					if rec.Code != http.StatusOK || accept == "text/html" && !strings.HasSuffix(body, "</html>\n") ||
						accept != "text/html" && json.Unmarshal(rec.Body.Bytes(), &st) != nil {
						t.Errorf("GET %s (%s): %d\n%s", query, accept, rec.Code, body)
						return
					}
				}
			})
		}
	}
	writers.Wait()
	done.Store(true)
	readers.Wait()
}

// TestThePageSaysWhenRequestsPassWithNoBreaker: requests that no breaker
// tracked are told in the header, and so is the key limit that made them,
// since a client side's upstream first called past it has no breaker (and
// blame none to name).
func TestThePageSaysWhenRequestsPassWithNoBreaker(t *testing.T) {
	b, _ := newSet(t, WithMaxKeys(2))
	defer b.Close()
	h := b.KeyedMiddleware(func(r *http.Request) string { return r.URL.Query().Get("tenant") })(newStatusHandler(200))
	page := func() string {
		_, _, body := serveOnce(b.StatusHandler(), "text/html")
		return body
	}
	record(h, "/?tenant=a")
	if body := page(); strings.Contains(body, "no breaker") {
		t.Fatal("the page tells of requests with no breaker before there was one")
	}
	record(h, "/") // no key: untracked, the limit not reached
	if body := page(); !strings.Contains(body, "1 request passed with no breaker.") || strings.Contains(body, "limit") {
		t.Errorf("after a request with no key, the header lacks it, or names a limit: %s", body)
	}
	record(h, "/?tenant=b")
	record(h, "/?tenant=c") // past the limit of 2
	if body := page(); !strings.Contains(body, "2 requests passed with no breaker (the limit of 2 keys was reached: new keys get none).") {
		t.Errorf("past the key limit, the header does not say so: %s", body)
	}
}
