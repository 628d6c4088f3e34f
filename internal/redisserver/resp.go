package redisserver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Conn is a connection to a Redis server that sends commands and reads
// their replies in RESP2, one at a time. It is what assembles a cluster
// and asks sentinels, and what tests use to talk to a server without
// go-redis, which the root module does not depend on.
//
// After any error but a ReplyError the connection is in an unknown state:
// close it and dial again.
type Conn struct {
	c       net.Conn
	r       *bufio.Reader
	timeout time.Duration
}

// ReplyError is an error reply from the server (ERR, MOVED, NOGOODSLAVE,
// ...): the server got the command and refused it. Any other error from
// Do is the network's or the protocol's.
type ReplyError string

func (e ReplyError) Error() string { return string(e) }

// Dial connects to addr. timeout bounds the dial and then each Do, so a
// server that is paused, killed or cut off makes Do fail instead of hang.
func Dial(addr string, timeout time.Duration) (*Conn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	return &Conn{c: c, r: bufio.NewReader(c), timeout: timeout}, nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// Do sends a command and returns its reply: a string (simple or bulk), an
// int64, nil (a null bulk string or array) or a []any of those. An error
// reply is returned as a ReplyError.
func (c *Conn) Do(args ...string) (any, error) {
	if len(args) == 0 {
		return nil, errors.New("redisserver: Do needs a command")
	}
	_ = c.c.SetDeadline(time.Now().Add(c.timeout))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c.c, b.String()); err != nil {
		return nil, err
	}
	return readReply(c.r)
}

// readReply reads one RESP2 reply.
func readReply(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("redisserver: malformed reply line %q", line)
	}
	kind, body := line[0], line[1:len(line)-2]
	switch kind {
	case '+':
		return body, nil
	case '-':
		return nil, ReplyError(body)
	case ':':
		n, err := strconv.ParseInt(body, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("redisserver: malformed integer reply %q", line)
		}
		return n, nil
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return nil, fmt.Errorf("redisserver: malformed bulk string length %q", line)
		}
		if n == -1 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		if string(buf[n:]) != "\r\n" {
			return nil, errors.New("redisserver: bulk string not ended by CRLF")
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return nil, fmt.Errorf("redisserver: malformed array length %q", line)
		}
		if n == -1 {
			return nil, nil
		}
		a := make([]any, n)
		for i := range a {
			// An error inside an array (EXEC's) is a value, not the
			// reply's failure.
			v, err := readReply(r)
			var re ReplyError
			if errors.As(err, &re) {
				v, err = re, nil
			}
			if err != nil {
				return nil, err
			}
			a[i] = v
		}
		return a, nil
	}
	return nil, fmt.Errorf("redisserver: unknown reply type %q (is this a RESP2 Redis server?)", line)
}

// do sends one command to addr on a connection of its own.
func do(addr string, args ...string) (any, error) {
	c, err := Dial(addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Do(args...)
}

// doString is do for a command whose reply is a string.
func doString(addr string, args ...string) (string, error) {
	v, err := do(addr, args...)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("redisserver: %s %s replied %v, not a string", addr, args[0], v)
	}
	return s, nil
}

// fields parses the "key:value" lines of INFO and CLUSTER INFO.
func fields(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m
}

// pairs turns a flat array of names and values (SENTINEL MASTER's reply)
// into a map.
func pairs(v any) map[string]string {
	a, _ := v.([]any)
	m := map[string]string{}
	for i := 0; i+1 < len(a); i += 2 {
		k, _ := a[i].(string)
		v, _ := a[i+1].(string)
		m[k] = v
	}
	return m
}
