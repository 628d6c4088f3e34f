package faultproxy

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/httpbreaker/httpbreaker/internal/redisserver"
	"go.uber.org/goleak"
)

// TestMain fails the tests if any goroutine outlives them: Close must
// stop every goroutine of the proxy.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// silence is how long a test waits to see that nothing arrives. It proves
// an absence, so a slow machine cannot make it fail, only a broken proxy.
const silence = 300 * time.Millisecond

// patience bounds a wait for what must arrive.
const patience = 10 * time.Second

// echoServer echoes every connection's bytes back, each prefixed by its
// name, and keeps what it received, so that a test can tell which server
// got what.
type echoServer struct {
	name string
	ln   net.Listener
	wg   sync.WaitGroup

	mu       sync.Mutex
	received bytes.Buffer
	conns    map[net.Conn]bool
}

// startEcho starts an echo server, stopped when the test ends.
func startEcho(t *testing.T, name string) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{name: name, ln: ln, conns: map[net.Conn]bool{}}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.conns[c] = true
			e.mu.Unlock()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				buf := make([]byte, 1024)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						e.mu.Lock()
						e.received.Write(buf[:n])
						e.mu.Unlock()
						if _, err := c.Write(append([]byte(e.name+":"), buf[:n]...)); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(e.stop)
	return e
}

// stop closes the listener and every connection, and waits for the
// server's goroutines.
func (e *echoServer) stop() {
	e.ln.Close()
	e.mu.Lock()
	for c := range e.conns {
		c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}

func (e *echoServer) addr() string { return e.ln.Addr().String() }

// got returns everything the server received.
func (e *echoServer) got() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.received.String()
}

// startProxy starts a proxy to target, closed when the test ends.
func startProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := Start(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// dial connects to the proxy; the connection is closed when the test
// ends.
func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), patience)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends msg and returns what comes back within d, with the
// read's error.
func roundTrip(t *testing.T, c net.Conn, msg string, d time.Duration) (string, error) {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, 1024)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

// echoes checks that msg goes through c to the server named name and
// back.
func echoes(t *testing.T, c net.Conn, name, msg string) {
	t.Helper()
	want := name + ":" + msg
	got, err := roundTrip(t, c, msg, patience)
	if err != nil || got != want {
		t.Fatalf("sent %q through the proxy, got %q, %v; want %q", msg, got, err, want)
	}
}

// waitLinks waits until the proxy has accepted n connections.
func waitLinks(t *testing.T, p *Proxy, n int) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		p.mu.Lock()
		got := len(p.links)
		p.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proxy holds %d connections after %s, want %d", got, patience, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// isTimeout reports whether err is a read that timed out: the connection
// is still open and nothing came.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// closedByPeer waits until c's peer closes it and fails the test if
// anything else comes first.
func closedByPeer(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(patience))
	buf := make([]byte, 1024)
	n, err := c.Read(buf)
	if n > 0 || err == nil || isTimeout(err) {
		t.Fatalf("read %q, %v; want the connection closed by the proxy", buf[:n], err)
	}
}

func TestForwardsBothWaysOnEveryConnection(t *testing.T) {
	e := startEcho(t, "a")
	p := startProxy(t, e.addr())
	c1, c2 := dial(t, p), dial(t, p)
	echoes(t, c1, "a", "one")
	echoes(t, c2, "a", "two")
	echoes(t, c1, "a", "three")
	if got := e.got(); len(got) != len("onetwothree") {
		t.Errorf("the server received %q, want one, two and three", got)
	}
}

func TestCutHoldsConnectionsOpenAndForwardsNothing(t *testing.T) {
	e := startEcho(t, "a")
	p := startProxy(t, e.addr())
	old := dial(t, p)
	echoes(t, old, "a", "before")

	p.Cut()
	got, err := roundTrip(t, old, "during", silence)
	if !isTimeout(err) {
		t.Errorf("on a connection open before the cut, read %q, %v; want a timeout, the connection open", got, err)
	}
	fresh := dial(t, p) // accepted, as a partition does not refuse
	got, err = roundTrip(t, fresh, "new", silence)
	if !isTimeout(err) {
		t.Errorf("on a connection made during the cut, read %q, %v; want a timeout, the connection open", got, err)
	}
	if got := e.got(); got != "before" {
		t.Errorf("during the cut the server received %q; want only what came before it", got)
	}
	// Still held, still silent, however long the client waits.
	got, err = roundTrip(t, old, "again", silence)
	if !isTimeout(err) {
		t.Errorf("a second read during the cut: %q, %v; want a timeout", got, err)
	}
}

func TestHealClosesHeldConnectionsAndForwardsNewOnes(t *testing.T) {
	e := startEcho(t, "a")
	p := startProxy(t, e.addr())
	old := dial(t, p)
	echoes(t, old, "a", "before")
	p.Cut()
	held := dial(t, p)
	if _, err := held.Write([]byte("lost")); err != nil {
		t.Fatal(err)
	}
	// The dial returned once the kernel completed the handshake; the
	// connection is the cut's once the proxy has accepted it.
	waitLinks(t, p, 2)

	p.Heal()
	closedByPeer(t, old)
	closedByPeer(t, held)
	echoes(t, dial(t, p), "a", "after")
	if got := e.got(); got != "beforeafter" {
		t.Errorf("the server received %q; want what was sent outside the cut only", got)
	}
}

func TestCutSurvivesTheServerClosing(t *testing.T) {
	e := startEcho(t, "a")
	p := startProxy(t, e.addr())
	c := dial(t, p)
	echoes(t, c, "a", "before")
	p.Cut()
	e.stop() // closes its side of every connection
	// A partition hides that: the client's connection stays open.
	if got, err := roundTrip(t, c, "during", silence); !isTimeout(err) {
		t.Errorf("read %q, %v after the server closed during a cut; want a timeout", got, err)
	}
	p.Heal()
	closedByPeer(t, c)
}

func TestDropRepliesClosesTheClientAfterTheServerGotTheRequest(t *testing.T) {
	e := startEcho(t, "a")
	p := startProxy(t, e.addr())
	c1, c2, c3 := dial(t, p), dial(t, p), dial(t, p)
	echoes(t, c1, "a", "0")

	p.DropReplies(2)
	for i, c := range []net.Conn{c1, c2} {
		got, err := roundTrip(t, c, "x", patience)
		if got != "" || err == nil || isTimeout(err) {
			t.Errorf("connection %d: read %q, %v; want its reply swallowed and the connection closed", i+1, got, err)
		}
	}
	if got := e.got(); got != "0xx" {
		t.Errorf("the server received %q; want both requests whose replies were dropped", got)
	}
	echoes(t, c3, "a", "y") // the two drops are spent
	echoes(t, dial(t, p), "a", "z")
}

func TestDropRepliesZeroCancels(t *testing.T) {
	e := startEcho(t, "a")
	p := startProxy(t, e.addr())
	p.DropReplies(5)
	p.DropReplies(0)
	echoes(t, dial(t, p), "a", "kept")
}

func TestSetTargetMovesNewConnections(t *testing.T) {
	a, b := startEcho(t, "a"), startEcho(t, "b")
	p := startProxy(t, a.addr())
	old := dial(t, p)
	echoes(t, old, "a", "1")
	p.SetTarget(b.addr())
	echoes(t, dial(t, p), "b", "2")
	echoes(t, old, "a", "3") // stays where it was
}

func TestTargetGoneClosesTheClient(t *testing.T) {
	e := startEcho(t, "a")
	p := startProxy(t, e.addr())
	c := dial(t, p)
	echoes(t, c, "a", "1")
	e.stop()
	closedByPeer(t, c)
	// A new connection finds no server: the proxy closes it.
	closedByPeer(t, dial(t, p))
}

func TestCloseClosesEverythingAndStops(t *testing.T) {
	e := startEcho(t, "a")
	p, err := Start(e.addr())
	if err != nil {
		t.Fatal(err)
	}
	live := dial(t, p)
	echoes(t, live, "a", "1")
	p.Cut()
	held := dial(t, p)

	p.Close()
	closedByPeer(t, live)
	closedByPeer(t, held)
	if c, err := net.DialTimeout("tcp", p.Addr(), patience); err == nil {
		c.Close()
		t.Error("the proxy still accepts connections after Close")
	}
	p.Close() // twice is fine
	p.Heal()
	p.Cut()
	p.DropReplies(1)
	p.SetTarget(e.addr())
}

// TestConcurrentFaults drives every method from several goroutines while
// clients talk through the proxy: under -race it finds unsynchronized
// state, and goleak goroutines a fault left behind.
func TestConcurrentFaults(t *testing.T) {
	a, b := startEcho(t, "a"), startEcho(t, "b")
	p := startProxy(t, a.addr())
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", p.Addr(), patience)
				if err != nil {
					continue
				}
				// Whatever the faults do to it, a round trip ends: in a
				// reply, a closed connection or the deadline.
				_ = c.SetDeadline(time.Now().Add(50 * time.Millisecond))
				_, _ = c.Write([]byte{byte('0' + i)})
				_, _ = c.Read(make([]byte, 64))
				c.Close()
			}
		}()
	}
	for i := range 200 {
		switch i % 5 {
		case 0:
			p.Cut()
		case 1:
			p.Heal()
		case 2:
			p.DropReplies(2)
		case 3:
			p.SetTarget(b.addr())
		case 4:
			p.SetTarget(a.addr())
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	p.Heal()
	p.DropReplies(0)
	echoes(t, dial(t, p), "a", "still works")
}

// TestDropRepliesRunsTheCommandOnRedis shows what DropReplies is for: a
// real redis-server runs an INCR whose reply the client never sees, so a
// client that retries would increment twice.
func TestDropRepliesRunsTheCommandOnRedis(t *testing.T) {
	redisserver.RequireInstalled(t)
	srv, err := redisserver.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Kill)
	p := startProxy(t, srv.Addr())

	c, err := redisserver.Dial(p.Addr(), patience)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if v, err := c.Do("PING"); err != nil || v != "PONG" {
		t.Fatalf("PING through the proxy: %v, %v", v, err)
	}
	p.DropReplies(1)
	v, err := c.Do("INCR", "counter")
	var re redisserver.ReplyError
	if err == nil || errors.As(err, &re) || isTimeout(err) {
		t.Fatalf("INCR with its reply dropped: %v, %v; want a network error, the connection closed", v, err)
	}

	direct, err := redisserver.Dial(srv.Addr(), patience)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	if v, err := direct.Do("GET", "counter"); err != nil || v != "1" {
		t.Fatalf("GET counter on the server itself: %v, %v; want 1: the INCR ran", v, err)
	}

	// The retry a client would make: a new connection, the same command.
	again, err := redisserver.Dial(p.Addr(), patience)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if v, err := again.Do("INCR", "counter"); err != nil || v != int64(2) {
		t.Fatalf("INCR retried: %v, %v; want 2, the command run twice", v, err)
	}
}
