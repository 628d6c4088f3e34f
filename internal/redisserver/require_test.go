package redisserver

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// fakeTB records what RequireInstalled does to a test.
type fakeTB struct{ skipped, failed string }

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Skip(args ...any)  { f.skipped = fmt.Sprint(args...) }
func (f *fakeTB) Fatal(args ...any) { f.failed = fmt.Sprint(args...) }

func TestRequireInstalled(t *testing.T) {
	_, installed := exec.LookPath("redis-server")
	if installed == nil {
		for _, ci := range []string{"", "true"} {
			t.Setenv("CI", ci)
			var f fakeTB
			RequireInstalled(&f)
			if f.skipped != "" || f.failed != "" {
				t.Errorf("CI=%q, redis-server installed: skipped %q, failed %q; want neither", ci, f.skipped, f.failed)
			}
		}
	}
	t.Setenv("PATH", t.TempDir()) // no redis-server there
	for _, c := range []struct {
		ci       string
		wantFail bool
	}{{"", false}, {"1", false}, {"true", true}} {
		t.Setenv("CI", c.ci)
		var f fakeTB
		RequireInstalled(&f)
		msg := f.skipped + f.failed
		if (f.failed != "") != c.wantFail || (f.skipped != "") == c.wantFail {
			t.Errorf("CI=%q, no redis-server: skipped %q, failed %q; want it to fail only when CI=true", c.ci, f.skipped, f.failed)
		}
		if !strings.Contains(msg, "apt-get install redis-server") {
			t.Errorf("CI=%q: %q does not say how to install redis-server", c.ci, msg)
		}
	}
}
