package redisserver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// fakeServer answers every command on one connection with the next of
// replies, raw, and returns what it received.
func fakeServer(t *testing.T, replies ...string) (addr string, received func() string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		defer l.Close()
		c, err := l.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		var all strings.Builder
		for _, reply := range replies {
			// A command: *N, then N bulk strings of two lines each.
			line, err := r.ReadString('\n')
			if err != nil {
				break
			}
			all.WriteString(line)
			var n int
			fmt.Sscanf(line, "*%d", &n)
			for range 2 * n {
				line, _ := r.ReadString('\n')
				all.WriteString(line)
			}
			if _, err := io.WriteString(c, reply); err != nil {
				break
			}
		}
		got <- all.String()
	}()
	return l.Addr().String(), func() string { return <-got }
}

func TestConnReadsEveryRESP2Reply(t *testing.T) {
	cases := []struct {
		raw  string
		want string // fmt.Sprintf("%#v") of the value, or the error
	}{
		{"+OK\r\n", `"OK"`},
		{":-42\r\n", `-42`},
		{"$5\r\nhe\r\no\r\n", `"he\r\no"`},
		{"$0\r\n\r\n", `""`},
		{"$-1\r\n", `<nil>`},
		{"*-1\r\n", `<nil>`},
		{"*3\r\n$1\r\na\r\n:1\r\n*1\r\n+x\r\n", `[]interface {}{"a", 1, []interface {}{"x"}}`},
		{"*2\r\n+OK\r\n-ERR inside\r\n", `[]interface {}{"OK", "ERR inside"}`},
		{"-MOVED 1 127.0.0.1:1\r\n", `reply error MOVED 1 127.0.0.1:1`},
	}
	raws := make([]string, len(cases))
	for i, c := range cases {
		raws[i] = c.raw
	}
	addr, received := fakeServer(t, raws...)
	c, err := Dial(addr, patience)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tc := range cases {
		v, err := c.Do("GET", "a b")
		got := fmt.Sprintf("%#v", v)
		if v == nil {
			got = "<nil>"
		}
		if s, ok := v.([]any); ok && len(s) == 2 {
			got = fmt.Sprintf("%#v", []any{s[0], fmt.Sprint(s[1])})
		}
		var re ReplyError
		if errors.As(err, &re) {
			got = "reply error " + string(re)
		} else if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%q: got %s, want %s", tc.raw, got, tc.want)
		}
	}
	c.Close()
	if got, want := received(), strings.Repeat("*2\r\n$3\r\nGET\r\n$3\r\na b\r\n", len(cases)); got != want {
		t.Errorf("the server received %q, want %q", got, want)
	}
}

func TestConnRejectsWhatIsNotRESP2(t *testing.T) {
	for _, raw := range []string{"HTTP/1.1 400\r\n", "+OK\n", "$x\r\n", "$3\r\nabcd\r\n", ":1.5\r\n", "*-2\r\n", "%1\r\n"} {
		addr, received := fakeServer(t, raw)
		c, err := Dial(addr, patience)
		if err != nil {
			t.Fatal(err)
		}
		v, err := c.Do("PING")
		var re ReplyError
		if err == nil || errors.As(err, &re) {
			t.Errorf("%q: %v, %v; want a protocol error", raw, v, err)
		}
		c.Close()
		received()
	}
}

func TestConnTimesOut(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0") // the kernel accepts; nothing replies
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := Dial(l.Addr().String(), 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Do("PING")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("Do to a server that does not reply: %v; want a timeout", err)
	}
	if _, err := c.Do(); err == nil {
		t.Error("Do without a command succeeded")
	}
}
