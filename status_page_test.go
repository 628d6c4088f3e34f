package httpbreaker

import (
	"context"
	"image/png"
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
