package redisserver

import (
	"os"
	"os/exec"
)

// TB is the part of testing.TB that RequireInstalled uses; a *testing.T
// or *testing.B is one. It is an interface of its own so that the demo and
// the benchmarks, which import this package, do not import testing.
type TB interface {
	Helper()
	Skip(args ...any)
	Fatal(args ...any)
}

// RequireInstalled is the rule for a test that needs redis-server (a
// server, a cluster or sentinels: they all run that one binary). Without
// it the test is skipped, with a message that says how to install it, but
// when the environment variable CI is "true" the test fails: CI installs
// redis-server, so a missing one there is a broken setup and must not pass
// as a skip.
func RequireInstalled(t TB) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err == nil {
		return
	}
	msg := "redis-server is not installed; this test runs real Redis servers, clusters and sentinels " +
		"(Debian, Ubuntu: apt-get install redis-server redis-sentinel redis-tools; " +
		"only redis-server is needed: sentinels run as redis-server --sentinel; " +
		"macOS: brew install redis; Fedora: dnf install redis)"
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true and " + msg + ": CI must install it (see .ci/run)")
		return
	}
	t.Skip(msg)
}
