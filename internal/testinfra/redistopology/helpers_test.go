// Package redistopology tests the Redis Cluster and Sentinel sets that
// internal/redisserver starts for the fleet's tests: their failovers wait
// on the servers' own clocks, tens of seconds, so they run here, in a
// module of their own, and not in the library module's go test ./...
package redistopology

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/httpbreaker/httpbreaker/internal/redisserver"
	"go.uber.org/goleak"
)

// TestMain fails the tests if any goroutine outlives them: Kill and Close
// must wait for every process they started.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// patience bounds a test's wait for what must happen; the harness's own
// waits are longer where the servers' clocks demand it.
const patience = 10 * time.Second

// dialT connects to addr; the connection is closed when the test ends.
func dialT(t *testing.T, addr string) *redisserver.Conn {
	t.Helper()
	c, err := redisserver.Dial(addr, patience)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// want runs a command on c and fails the test unless it replies want.
func want(t *testing.T, c *redisserver.Conn, want any, args ...string) {
	t.Helper()
	got, err := c.Do(args...)
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: %v, %v; want %v", strings.Join(args, " "), got, err, want)
	}
}

// clusterInfo returns the fields of CLUSTER INFO on the node at addr.
func clusterInfo(t *testing.T, addr string) map[string]string {
	t.Helper()
	v, err := dialT(t, addr).Do("CLUSTER", "INFO")
	s, ok := v.(string)
	if err != nil || !ok {
		t.Fatalf("CLUSTER INFO on %s: %v, %v", addr, v, err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m
}

// share returns the index of the master that StartCluster gives slot to:
// master i serves the slots from i*16384/masters up to the next master's
// first, in order.
func share(slot, masters int) int {
	for i := range masters {
		if slot < (i+1)*16384/masters {
			return i
		}
	}
	return -1
}

// workDir returns the working directory of the server at addr, where it
// keeps its files.
func workDir(t *testing.T, addr string) string {
	t.Helper()
	v, err := dialT(t, addr).Do("CONFIG", "GET", "dir")
	reply, _ := v.([]any)
	if err != nil || len(reply) != 2 {
		t.Fatalf("CONFIG GET dir on %s: %v, %v", addr, v, err)
	}
	return reply[1].(string)
}

// port returns the port of addr as ROLE replies it.
func port(t *testing.T, addr string) int64 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	n, perr := strconv.ParseInt(p, 10, 64)
	if err != nil || perr != nil {
		t.Fatalf("address %q has no port", addr)
	}
	return n
}

// waitFor polls check until it returns "" and fails the test if patience
// runs out first, with what was awaited and check's last answer.
func waitFor(t *testing.T, what string, check func() string) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		got := check()
		if got == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s; last: %s", patience, what, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
