// Package redisserver starts and stops redis-server for the fleet's tests,
// demo and benchmarks: on a free loopback port, with no persistence, so
// that every run starts empty and leaves nothing behind.
//
// Start runs one server. StartCluster runs a Redis Cluster and
// StartSentinel a master, its replica and three sentinels, so that the
// fleet can be tested against the topologies it meets in production and
// against their failovers. All of them need only the redis-server binary:
// sentinels run as redis-server --sentinel and the cluster is assembled
// with CLUSTER commands over a plain connection (Conn), not with redis-cli,
// so redis-sentinel and redis-tools need not be installed. RequireInstalled
// is the one rule for a test when redis-server is missing.
//
// Nothing here is safe for concurrent use: one test goroutine drives a
// server, a cluster or a sentinel set.
package redisserver

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNotInstalled is returned by Start, StartCluster and StartSentinel
// when there is no redis-server.
var ErrNotInstalled = errors.New("redis-server is not installed " +
	"(Debian, Ubuntu: apt-get install redis-server; macOS: brew install redis; Fedora: dnf install redis)")

// errAddrInUse is wrapped by Restart's error when redis-server could not
// listen because another process holds its port: a server on a port picked
// at random can then try another one.
var errAddrInUse = errors.New("its port is taken by another process")

// Server is a running redis-server.
type Server struct {
	path string
	port int
	// conf is a config file given before the options ("" for none): a
	// sentinel reads its monitors from one and rewrites it.
	conf string
	// args are options after the common ones: cluster mode, replicaof, the
	// directory for the files a replica or a cluster node writes.
	args []string
	// sentinel runs the server as a sentinel, which takes no persistence
	// options.
	sentinel bool

	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait has returned
	log    *tail
}

// Start starts redis-server on a free loopback port and waits until it
// answers.
func Start() (*Server, error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNotInstalled
	}
	return startOnFreePort(false, func(port int) *Server { return &Server{path: path, port: port} })
}

// startOnFreePort starts the server newServer returns for a free loopback
// port. A free port can be taken by another process before redis-server
// listens on it, so when that happens it tries another. withBus also
// keeps port+10000 free, for a cluster node's bus.
func startOnFreePort(withBus bool, newServer func(port int) *Server) (*Server, error) {
	var err error
	for range 5 {
		var port int
		port, err = freePort(withBus)
		if err != nil {
			return nil, err
		}
		s := newServer(port)
		if err = s.Restart(); err == nil {
			return s, nil
		}
		if !errors.Is(err, errAddrInUse) {
			return nil, err
		}
	}
	return nil, err
}

// freePort returns a loopback port nothing listens on; withBus, one whose
// port+10000 is free too (a cluster node listens there for its peers).
func freePort(withBus bool) (int, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("redisserver: no free loopback port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if !withBus {
			l.Close()
			return port, nil
		}
		if port+10000 > 65535 {
			l.Close()
			continue
		}
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		l.Close()
		if err != nil {
			continue
		}
		bus.Close()
		return port, nil
	}
	return 0, errors.New("redisserver: found no free loopback port p with p+10000 free too, " +
		"for a cluster node and its bus, in 100 tries")
}

// Addr returns the server's address.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Restart starts the server again, empty, on the same port, after Kill;
// Start calls it the first time. A cluster node or a sentinel keeps the
// config file it wrote, and with it its identity and its peers.
func (s *Server) Restart() error {
	if s.cmd != nil {
		return errors.New("redisserver: running already")
	}
	log := &tail{}
	cmd := exec.Command(s.path, s.commandLine()...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.cmd, s.exited, s.log = cmd, exited, log
	deadline := time.Now().Add(10 * time.Second)
	for !s.answers() {
		select {
		case <-exited:
			s.cmd = nil
			if strings.Contains(log.String(), "in use") {
				return fmt.Errorf("redis-server could not listen on %s, %w; its log: %s", s.Addr(), errAddrInUse, log)
			}
			return fmt.Errorf("redis-server on %s exited as it started; its log: %s", s.Addr(), log)
		default:
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("redis-server on %s did not answer PING within 10s "+
				"(is the machine overloaded?); its log: %s", s.Addr(), log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// commandLine returns redis-server's arguments: a loopback port, no
// daemon, only warnings logged and, but for a sentinel, no persistence.
func (s *Server) commandLine() []string {
	var args []string
	if s.conf != "" {
		args = append(args, s.conf)
	}
	args = append(args, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--daemonize", "no", "--loglevel", "warning")
	if !s.sentinel {
		args = append(args, "--save", "", "--appendonly", "no")
	}
	args = append(args, s.args...)
	if s.sentinel {
		args = append(args, "--sentinel")
	}
	return args
}

// answers reports whether the server answers PING.
func (s *Server) answers() bool {
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// running reports whether the server was started and not killed since.
func (s *Server) running() bool { return s.cmd != nil }

// Pause stops the server's process (SIGSTOP): it holds its connections and
// answers nothing, as a server stuck in a long command or a VM paused does.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume lets a paused server go on (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

// Kill kills the server, and with it everything it held. It is safe to
// call more than once.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // a paused server dies too
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// tail keeps the last lines a process wrote, to put in an error when it
// does not start.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

const tailSize = 2048

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailSize {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailSize:]...)
	}
	return len(p), nil
}

// String returns what was kept, on one line, or "(empty)".
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.Join(strings.Fields(strings.ReplaceAll(string(t.buf), "\n", " | ")), " ")
	if s == "" {
		return "(empty)"
	}
	return s
}
