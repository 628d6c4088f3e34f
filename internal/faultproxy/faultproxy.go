// Package faultproxy is a TCP proxy that tests put between a client and a
// server to break the network between them on purpose: a partition that
// leaves connections open and silent (Cut, Heal), replies lost after the
// server ran the command (DropReplies), and a server that moved
// (SetTarget).
//
// It is a package of its own, not part of redisserver, because it knows
// nothing of Redis: it forwards bytes, so the same proxy can stand between
// the breaker and any HTTP upstream, and its tests need no redis-server.
// It also runs goroutines of its own, which its tests check for leaks on
// their own.
//
// A Proxy is safe for concurrent use.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// dialTimeout bounds the proxy's dial to its target.
const dialTimeout = 5 * time.Second

// Proxy listens on a loopback port and forwards each connection to its
// target.
type Proxy struct {
	ln     net.Listener
	ctx    context.Context // done once Close is called: stops dials
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and every connection's goroutines

	mu     sync.Mutex
	target string
	cut    bool
	drop   int // server-to-client reads still to swallow
	links  map[*link]struct{}
	closed bool
}

// link is a client's connection and the proxy's connection to the target
// for it.
type link struct {
	client net.Conn
	// The fields below are under Proxy.mu.
	server net.Conn // nil until dialed; nil for good if accepted during a cut
	cut    bool     // forwards nothing; Heal closes it
	closed bool
}

// direction says which way a pump copies.
type direction int

const (
	toServer direction = iota
	toClient
)

// Start listens on a free loopback port and forwards every connection
// accepted there to target, until Close.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: no free loopback port to listen on: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{ln: ln, ctx: ctx, cancel: cancel, target: target, links: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr returns the address clients connect to instead of the target's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetTarget makes connections accepted from now on go to addr: to a
// server restarted on another port, or another server altogether.
// Connections open already stay with the old target.
func (p *Proxy) SetTarget(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = addr
}

// Cut partitions the client from the server, as a network does when it
// drops every packet: on the connections open, bytes read from either side
// from now on are thrown away, and neither side is closed, so a client
// waits for its reply until its own timeout. New connections are accepted
// and forward nothing either. Bytes read just before Cut may still be
// delivered, as packets in flight are. A connection whose peer closes
// during the cut has that side closed only; the other waits for Heal.
//
// A connection is the cut's if the proxy accepts it during the cut: one
// whose dial returned just before Heal (the kernel completes the handshake
// before the proxy accepts) may be accepted after it, and forward.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for l := range p.links {
		l.cut = true
	}
}

// Heal ends a Cut: it closes every connection that was open during it (a
// client sees a network error, as when its connection times out and it
// drops it) and forwards new connections again.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
	for l := range p.links {
		if l.cut {
			p.closeLocked(l)
		}
	}
}

// DropReplies makes the proxy swallow the next n chunks of bytes the
// server sends, on whichever connections they come: for each, it closes
// that client's connection instead of passing the chunk on. The client's
// request did reach the server, which ran it, but the client sees a
// network error; a client that retries runs the command twice. A chunk is
// what one read from the server returns: one reply, for a client that
// sends one command at a time. DropReplies(0) cancels what is left of an
// earlier call.
func (p *Proxy) DropReplies(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drop = max(n, 0)
}

// Close stops listening, closes every connection and waits until every
// goroutine of the proxy has returned. It is safe to call more than once.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.cancel()
	_ = p.ln.Close()
	for l := range p.links {
		p.closeLocked(l)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// serve accepts connections until Close.
func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors, say: wait a little, as net/http
			// does, rather than spin.
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		l := &link{client: c, cut: p.cut}
		p.links[l] = struct{}{}
		target, cut := p.target, p.cut
		// Under mu and before closed is set: Close's Wait counts it.
		p.wg.Add(1)
		p.mu.Unlock()
		go p.run(l, target, cut)
	}
}

// run dials the target for a new link and forwards until either side
// closes; a link accepted during a cut only reads its client, to throw the
// bytes away.
func (p *Proxy) run(l *link, target string, cut bool) {
	defer p.wg.Done()
	if cut {
		p.pump(l, l.client, nil, toServer)
		return
	}
	d := net.Dialer{Timeout: dialTimeout}
	s, err := d.DialContext(p.ctx, "tcp", target)
	if err != nil {
		// The client sees its connection closed, as it would a server
		// that is down behind a load balancer.
		p.close(l)
		return
	}
	p.mu.Lock()
	if l.closed {
		p.mu.Unlock()
		s.Close()
		return
	}
	l.server = s
	// This goroutine is counted, so the count is not zero: Add may race
	// with Close's Wait.
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		p.pump(l, s, l.client, toClient)
	}()
	p.pump(l, l.client, s, toServer)
}

// pump copies from src to dst (nil: nowhere) until src fails, dropping
// what a cut or DropReplies says to.
func (p *Proxy) pump(l *link, src, dst net.Conn, dir direction) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			forward := !l.cut && dst != nil
			swallow := forward && dir == toClient && p.drop > 0
			if swallow {
				p.drop--
				p.closeLocked(l)
			}
			p.mu.Unlock()
			if swallow {
				return
			}
			if forward {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					p.close(l)
					return
				}
			}
		}
		if err != nil {
			p.mu.Lock()
			if l.cut {
				// A partition hides that the other side went away.
				src.Close()
			} else {
				p.closeLocked(l)
			}
			p.mu.Unlock()
			return
		}
	}
}

// close closes both sides of a link.
func (p *Proxy) close(l *link) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeLocked(l)
}

// closeLocked is close with p.mu held.
func (p *Proxy) closeLocked(l *link) {
	if l.closed {
		return
	}
	l.closed = true
	delete(p.links, l)
	l.client.Close()
	if l.server != nil {
		l.server.Close()
	}
}
