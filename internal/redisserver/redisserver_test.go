package redisserver

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the tests if any goroutine outlives them: Kill and Close
// must wait for every process they started.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// patience bounds a test's wait for what must happen; the harness's own
// waits are longer where the servers' clocks demand it.
const patience = 10 * time.Second

// dialT connects to addr; the connection is closed when the test ends.
func dialT(t *testing.T, addr string) *Conn {
	t.Helper()
	c, err := Dial(addr, patience)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// want runs a command on c and fails the test unless it replies want.
func want(t *testing.T, c *Conn, want any, args ...string) {
	t.Helper()
	got, err := c.Do(args...)
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: %v, %v; want %v", strings.Join(args, " "), got, err, want)
	}
}

// startServer starts a redis-server, killed when the test ends.
func startServer(t *testing.T) *Server {
	t.Helper()
	RequireInstalled(t)
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Kill)
	return s
}

func TestServerPauseKillRestart(t *testing.T) {
	s := startServer(t)
	c := dialT(t, s.Addr())
	want(t, c, "OK", "SET", "k", "v")
	want(t, c, "v", "GET", "k")

	s.Pause()
	short, err := Dial(s.Addr(), 300*time.Millisecond) // the kernel accepts for it
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	var ne net.Error
	if v, err := short.Do("PING"); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("PING to a paused server: %v, %v; want a timeout", v, err)
	}
	s.Resume()
	want(t, c, "v", "GET", "k")

	s.Kill()
	s.Kill() // twice is fine
	if _, err := c.Do("PING"); err == nil {
		t.Fatal("PING on a connection to a killed server succeeded")
	}
	if _, err := Dial(s.Addr(), patience); err == nil {
		t.Fatal("a killed server still accepts connections")
	}
	s.Pause() // nothing to pause: no-ops
	s.Resume()

	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(); err == nil {
		t.Error("Restart of a running server succeeded")
	}
	want(t, dialT(t, s.Addr()), "<nil>", "GET", "k") // empty: no persistence
}

func TestKillAPausedServer(t *testing.T) {
	s := startServer(t)
	s.Pause()
	s.Kill()
	if _, err := Dial(s.Addr(), patience); err == nil {
		t.Fatal("a paused server that was killed still accepts connections")
	}
}

func TestRestartOnATakenPortSaysSo(t *testing.T) {
	s := startServer(t)
	s.Kill()
	l, err := net.Listen("tcp", s.Addr())
	if err != nil {
		t.Skipf("the port went to another process before the test could take it: %v", err)
	}
	defer l.Close()
	err = s.Restart()
	if !errors.Is(err, errAddrInUse) || !strings.Contains(err.Error(), s.Addr()) {
		t.Fatalf("Restart on a taken port: %v; want an error that names the address and says it is taken", err)
	}
	if s.running() {
		t.Error("a server that did not start counts as running")
	}
}

func TestStartReportsWhyTheServerExited(t *testing.T) {
	RequireInstalled(t)
	path, _ := exec.LookPath("redis-server")
	_, err := startOnFreePort(false, func(port int) *Server {
		return &Server{path: path, port: port, args: []string{"--no-such-option", "x"}}
	})
	if err == nil || !strings.Contains(err.Error(), "no-such-option") {
		t.Fatalf("starting with a bad option: %v; want an error quoting the server's complaint", err)
	}
}
