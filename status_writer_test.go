package httpbreaker

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fullWriter is a ResponseWriter with every optional interface that
// statusWriter passes on, recording what reaches it.
type fullWriter struct {
	header  http.Header
	codes   []int
	body    bytes.Buffer
	flushes int
	hijacks int
	readSrc io.Reader
	pushed  []string
}

func newFullWriter() *fullWriter { return &fullWriter{header: http.Header{}} }

func (f *fullWriter) Header() http.Header         { return f.header }
func (f *fullWriter) WriteHeader(code int)        { f.codes = append(f.codes, code) }
func (f *fullWriter) Write(p []byte) (int, error) { return f.body.Write(p) }
func (f *fullWriter) Flush()                      { f.flushes++ }
func (f *fullWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	f.hijacks++
	return nil, nil, nil
}
func (f *fullWriter) ReadFrom(src io.Reader) (int64, error) {
	f.readSrc = src
	return f.body.ReadFrom(src)
}
func (f *fullWriter) Push(target string, _ *http.PushOptions) error {
	f.pushed = append(f.pushed, target)
	return nil
}

func TestStatusWriterRecordsTheFinalStatus(t *testing.T) {
	for _, tc := range []struct {
		name     string
		do       func(w http.ResponseWriter)
		status   int
		hijacked bool
	}{
		{"nothing", func(w http.ResponseWriter) {}, 0, false},
		{"WriteHeader", func(w http.ResponseWriter) { w.WriteHeader(404) }, 404, false},
		{"Write", func(w http.ResponseWriter) { _, _ = w.Write([]byte("x")) }, 200, false},
		{"WriteString", func(w http.ResponseWriter) { _, _ = io.WriteString(w, "x") }, 200, false},
		{"Flush", func(w http.ResponseWriter) { w.(http.Flusher).Flush() }, 200, false},
		{"ReadFrom", func(w http.ResponseWriter) { _, _ = w.(io.ReaderFrom).ReadFrom(strings.NewReader("x")) }, 200, false},
		{"103 then 503", func(w http.ResponseWriter) { w.WriteHeader(103); w.WriteHeader(503) }, 503, false},
		{"100 then Write", func(w http.ResponseWriter) { w.WriteHeader(100); _, _ = w.Write(nil) }, 200, false},
		{"101 is final", func(w http.ResponseWriter) { w.WriteHeader(101); w.WriteHeader(500) }, 101, false},
		{"first code wins", func(w http.ResponseWriter) { w.WriteHeader(201); w.WriteHeader(500) }, 201, false},
		{"Write then WriteHeader", func(w http.ResponseWriter) { _, _ = w.Write(nil); w.WriteHeader(500) }, 200, false},
		{"Hijack", func(w http.ResponseWriter) { _, _, _ = w.(http.Hijacker).Hijack() }, 0, true},
		{"Hijack then Write", func(w http.ResponseWriter) {
			_, _, _ = w.(http.Hijacker).Hijack()
			_, _ = w.Write([]byte("x"))
		}, 0, true},
		{"WriteHeader then Hijack", func(w http.ResponseWriter) {
			w.WriteHeader(101)
			_, _, _ = w.(http.Hijacker).Hijack()
		}, 101, true},
		{"Push is not a status", func(w http.ResponseWriter) { _ = w.(http.Pusher).Push("/x", nil) }, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sw := newStatusWriter(newFullWriter(), context.Background())
			tc.do(sw.wrapped())
			if sw.status != tc.status || sw.hijacked != tc.hijacked {
				t.Fatalf("status %d hijacked %v, want %d %v", sw.status, sw.hijacked, tc.status, tc.hijacked)
			}
		})
	}
}

func TestStatusWriterPassesEverythingOn(t *testing.T) {
	inner := newFullWriter()
	w := newStatusWriter(inner, context.Background()).wrapped()
	w.Header().Set("X-Test", "1")
	w.WriteHeader(103)
	w.WriteHeader(202)
	_, _ = io.WriteString(w, "a")
	_, _ = w.Write([]byte("b"))
	file := strings.NewReader("c")
	_, _ = w.(io.ReaderFrom).ReadFrom(file)
	w.(http.Flusher).Flush()
	_ = w.(http.Pusher).Push("/style.css", nil)
	_, _, _ = w.(http.Hijacker).Hijack()
	if inner.header.Get("X-Test") != "1" || len(inner.codes) != 2 || inner.codes[0] != 103 || inner.codes[1] != 202 ||
		inner.body.String() != "abc" || inner.flushes != 1 || inner.hijacks != 1 || len(inner.pushed) != 1 {
		t.Fatalf("wrapped writer got %+v", inner)
	}
	// ReadFrom hands the source itself on: net/http's ReadFrom needs the
	// *os.File to use sendfile.
	if inner.readSrc != file {
		t.Fatalf("ReadFrom passed on %T, want the caller's reader itself", inner.readSrc)
	}
	if u, ok := w.(interface{ Unwrap() http.ResponseWriter }); !ok || u.Unwrap() != inner {
		t.Fatal("Unwrap does not return the wrapped writer")
	}
}

// writerWith returns a writer with exactly the optional interfaces in set
// (bit 0 Flusher, 1 Hijacker, 2 ReaderFrom, 3 Pusher).
func writerWith(set int) http.ResponseWriter {
	sw := &statusWriter{w: newFullWriter(), ctx: context.Background()}
	return []http.ResponseWriter{
		sw, writerF{sw}, writerH{sw}, writerFH{sw}, writerR{sw}, writerFR{sw}, writerHR{sw}, writerFHR{sw},
		writerP{sw}, writerFP{sw}, writerHP{sw}, writerFHP{sw}, writerRP{sw}, writerFRP{sw}, writerHRP{sw}, writerFHRP{sw},
	}[set]
}

func interfaceSet(w http.ResponseWriter) int {
	set := 0
	if _, ok := w.(http.Flusher); ok {
		set |= 1
	}
	if _, ok := w.(http.Hijacker); ok {
		set |= 2
	}
	if _, ok := w.(io.ReaderFrom); ok {
		set |= 4
	}
	if _, ok := w.(http.Pusher); ok {
		set |= 8
	}
	return set
}

func TestStatusWriterHasExactlyTheInterfacesOfTheWrappedWriter(t *testing.T) {
	for set := range 16 {
		inner := writerWith(set)
		if got := interfaceSet(inner); got != set {
			t.Fatalf("test writer for set %04b has set %04b", set, got)
		}
		sw := newStatusWriter(inner, context.Background())
		if got := interfaceSet(sw.wrapped()); got != set {
			t.Errorf("wrapping a writer with interfaces %04b gives %04b", set, got)
		}
		if _, ok := sw.wrapped().(interface{ Unwrap() http.ResponseWriter }); !ok {
			t.Errorf("set %04b: no Unwrap", set)
		}
		sw.release()
	}
}

func TestEarlyHintsThen503CountsAs503(t *testing.T) {
	b, _ := newSet(t)
	srv := serve(t, b, map[string]http.Handler{"p": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusServiceUnavailable)
	})})
	var informational []int
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
		informational = append(informational, code)
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", srv.URL+"/p/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(informational) != 1 || informational[0] != 103 || resp.StatusCode != 503 {
		t.Fatalf("client saw 1xx %v then %d, want [103] then 503", informational, resp.StatusCode)
	}
	if s := status(t, b, "p"); s.Totals.Failures != 1 {
		t.Fatalf("totals %+v, want the 503 counted as a failure", s.Totals)
	}
}

func TestServerSentEventsArriveOneByOne(t *testing.T) {
	b, _ := newSet(t)
	next := make(chan struct{})
	srv := serve(t, b, map[string]http.Handler{"events": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			_, _ = io.WriteString(w, "data: event "+string(rune('1'+i))+"\n\n")
			w.(http.Flusher).Flush()
			<-next // the next event waits until the client has read this one
		}
	})})
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(srv.URL + "/events/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewReader(resp.Body)
	for i := range 3 {
		line, err := lines.ReadString('\n')
		if err != nil {
			t.Fatalf("reading event %d: %v (not flushed through the middleware?)", i+1, err)
		}
		if want := "data: event " + string(rune('1'+i)) + "\n"; line != want {
			t.Fatalf("read %q, want %q", line, want)
		}
		_, _ = lines.ReadString('\n')
		next <- struct{}{}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	waitFor(t, "the stream's outcome", func() bool { return status(t, b, "events").Totals.Successes == 1 })
}

// The websocket test speaks RFC 6455 by hand, to keep the library free of
// test-only dependencies: the opening handshake, then one masked text frame
// from the client, echoed back.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func websocketAccept(key string) string {
	sum := sha1.Sum([]byte(key + websocketGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

func echoOneWebsocketFrame(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") != "websocket" {
		http.Error(w, "want a websocket upgrade", http.StatusBadRequest)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "websocket: response does not implement http.Hijacker", http.StatusInternalServerError)
		return
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + websocketAccept(r.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n")
	_ = rw.Flush()
	var head [2]byte
	var mask [4]byte
	if _, err := io.ReadFull(rw, head[:]); err != nil {
		return
	}
	payload := make([]byte, head[1]&0x7f)
	if _, err := io.ReadFull(rw, mask[:]); err != nil {
		return
	}
	if _, err := io.ReadFull(rw, payload); err != nil {
		return
	}
	for i := range payload {
		payload[i] ^= mask[i%4]
	}
	_, _ = rw.Write(append([]byte{0x81, byte(len(payload))}, payload...))
	_ = rw.Flush()
}

func TestWebsocketUpgradesThroughTheMiddleware(t *testing.T) {
	b, _ := newSet(t)
	srv := serve(t, b, map[string]http.Handler{"ws": http.HandlerFunc(echoOneWebsocketFrame)})
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	const key = "dGhlIHNhbXBsZSBub25jZQ==" // RFC 6455's example
	_, _ = io.WriteString(conn, "GET /ws/ HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: "+key+"\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("handshake answered %d %v", resp.StatusCode, resp.Header)
	}
	msg := []byte("hello")
	mask := []byte{1, 2, 3, 4}
	frame := append([]byte{0x81, 0x80 | byte(len(msg))}, mask...)
	for i, c := range msg {
		frame = append(frame, c^mask[i%4])
	}
	if _, err := conn.Write(frame); err != nil {
		t.Fatal(err)
	}
	echo := make([]byte, 2+len(msg))
	if _, err := io.ReadFull(br, echo); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(echo, append([]byte{0x81, byte(len(msg))}, msg...)) {
		t.Fatalf("echo frame %q", echo)
	}
	waitFor(t, "the upgrade's outcome", func() bool { return status(t, b, "ws").Totals.Excluded == 1 })
}

func TestResponseControllerReachesTheConnection(t *testing.T) {
	b, _ := newSet(t)
	type result struct{ deadline, duplex, write error }
	results := make(chan result, 1)
	srv := serve(t, b, map[string]http.Handler{"p": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		var res result
		res.duplex = rc.EnableFullDuplex()
		// A deadline in the past: writes past the buffer must fail.
		res.deadline = rc.SetWriteDeadline(time.Now().Add(-time.Second))
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for range 64 {
			if _, err := w.Write(chunk); err != nil {
				res.write = err
				break
			}
		}
		results <- res
	})})
	resp, err := http.Get(srv.URL + "/p/")
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	res := <-results
	if res.deadline != nil || res.duplex != nil {
		t.Fatalf("SetWriteDeadline: %v, EnableFullDuplex: %v; want both to reach net/http through Unwrap", res.deadline, res.duplex)
	}
	var ne net.Error
	if !errors.As(res.write, &ne) || !ne.Timeout() {
		t.Fatalf("write after a past deadline: %v, want a timeout: the deadline did not reach the connection", res.write)
	}
}

func TestReadFromServesAFileThroughTheMiddleware(t *testing.T) {
	path := filepath.Join(t.TempDir(), "asset.bin")
	content := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	b, _ := newSet(t)
	var viaReadFrom bool
	srv := serve(t, b, map[string]http.Handler{"files": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(path)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		_, viaReadFrom = w.(io.ReaderFrom)
		_, _ = io.Copy(w, f) // net/http's ReadFrom sends the file with sendfile
	})})
	code, _, body := get(t, srv.URL+"/files/")
	if code != 200 || body != string(content) {
		t.Fatalf("got %d and %d bytes, want 200 and the file's %d", code, len(body), len(content))
	}
	if !viaReadFrom {
		t.Fatal("the handler's writer is not an io.ReaderFrom: io.Copy cannot reach sendfile")
	}
	if s := status(t, b, "files"); s.Totals.Successes != 1 {
		t.Fatalf("totals %+v, want one success", s.Totals)
	}
}

func TestRecorderWriterIsWrappedToo(t *testing.T) {
	// httptest.ResponseRecorder has Flush only: the handler sees a Flusher
	// and nothing else.
	b, _ := newSet(t)
	var set int
	record(b.Middleware("p")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		set = interfaceSet(w)
	})), "/")
	if set != 1 {
		t.Fatalf("handler saw interfaces %04b, want Flusher only (0001)", set)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"0", 0}, {"-5", 0}, {"30", 30 * time.Second}, {"soon", 0}, {"1.5", 0},
		{"Mon, 23 Nov 2026 12:02:00 GMT", 2 * time.Minute},
		{"Mon, 23 Nov 2026 11:59:00 GMT", 0},
		{"99999999999999999", time.Duration(1<<63 - 1).Truncate(time.Second)},
	} {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// streamUntilFlushFails is a streaming handler that stops when a flush
// fails, and reports how many events it sent, or -1 if no flush failed
// within the time it gives itself.
func streamUntilFlushFails(before func(*http.ResponseController), sent chan<- int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if before != nil {
			before(rc)
		}
		w.Header().Set("Content-Type", "text/event-stream")
		giveUp := time.Now().Add(5 * time.Second)
		for i := 0; ; i++ {
			_, _ = io.WriteString(w, "data: tick\n\n")
			if err := rc.Flush(); err != nil {
				sent <- i
				return
			}
			if time.Now().After(giveUp) {
				sent <- -1
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
}

func TestFlushErrorReachesAStreamingHandler(t *testing.T) {
	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		t.Run(proto, func(t *testing.T) {
			b, _ := newSet(t)
			sent := make(chan int, 1)
			srv := httptest.NewUnstartedServer(b.Middleware("events")(streamUntilFlushFails(nil, sent)))
			if proto == "HTTP/2.0" {
				srv.EnableHTTP2 = true
				srv.StartTLS()
			} else {
				srv.Start()
			}
			t.Cleanup(srv.Close)
			resp, err := srv.Client().Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Proto != proto {
				t.Fatalf("served over %s, want %s", resp.Proto, proto)
			}
			if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
				t.Fatal(err)
			}
			resp.Body.Close() // the client leaves: the connection or stream goes away
			if n := <-sent; n < 0 {
				t.Fatal("the handler streamed on for 5s after the client left: a failed flush returned nil through the middleware")
			}
		})
	}
}

func TestFlushErrorAfterTheWriteDeadlineReachesTheHandler(t *testing.T) {
	b, _ := newSet(t)
	sent := make(chan int, 1)
	pastDeadline := func(rc *http.ResponseController) {
		if err := rc.SetWriteDeadline(time.Now().Add(-time.Second)); err != nil {
			t.Errorf("SetWriteDeadline through the middleware: %v", err)
		}
	}
	srv := httptest.NewServer(b.Middleware("events")(streamUntilFlushFails(pastDeadline, sent)))
	t.Cleanup(srv.Close)
	go func() {
		if resp, err := http.Get(srv.URL); err == nil {
			resp.Body.Close()
		}
	}()
	if n := <-sent; n != 0 {
		t.Fatalf("the first flush past the write deadline: handler sent %d events, want the first flush to fail", n)
	}
}

// failingWriter is a ResponseWriter whose every optional method fails.
type failingWriter struct{ header http.Header }

var errFromWriter = errors.New("from the writer")

func (f *failingWriter) Header() http.Header                          { return f.header }
func (f *failingWriter) WriteHeader(int)                              {}
func (f *failingWriter) Write([]byte) (int, error)                    { return 0, errFromWriter }
func (f *failingWriter) FlushError() error                            { return errFromWriter }
func (f *failingWriter) Flush()                                       {}
func (f *failingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) { return nil, nil, errFromWriter }
func (f *failingWriter) ReadFrom(io.Reader) (int64, error)            { return 0, errFromWriter }
func (f *failingWriter) Push(string, *http.PushOptions) error         { return errFromWriter }
func (f *failingWriter) SetReadDeadline(time.Time) error              { return errFromWriter }
func (f *failingWriter) SetWriteDeadline(time.Time) error             { return errFromWriter }
func (f *failingWriter) EnableFullDuplex() error                      { return errFromWriter }

func TestEveryErrorOfTheWrappedWriterIsPassedOn(t *testing.T) {
	sw := newStatusWriter(&failingWriter{header: http.Header{}}, context.Background())
	w := sw.wrapped()
	rc := http.NewResponseController(w)
	for name, err := range map[string]error{
		"Write":                               func() error { _, err := w.Write(nil); return err }(),
		"ResponseController.Flush":            rc.Flush(),
		"Hijack":                              func() error { _, _, err := w.(http.Hijacker).Hijack(); return err }(),
		"ReadFrom":                            func() error { _, err := w.(io.ReaderFrom).ReadFrom(strings.NewReader("x")); return err }(),
		"Push":                                w.(http.Pusher).Push("/x", nil),
		"ResponseController.SetReadDeadline":  rc.SetReadDeadline(time.Now()),
		"ResponseController.SetWriteDeadline": rc.SetWriteDeadline(time.Now()),
		"ResponseController.EnableFullDuplex": rc.EnableFullDuplex(),
	} {
		if !errors.Is(err, errFromWriter) {
			t.Errorf("%s returned %v, want the wrapped writer's error", name, err)
		}
	}
}

// FuzzParseRetryAfter feeds parseRetryAfter any header value: it must never
// panic, and never return a negative delay.
func FuzzParseRetryAfter(f *testing.F) {
	for _, seed := range []string{"120", "0", "-5", "999999999999", "9223372036854775807", "18446744073709551616",
		"Fri, 31 Dec 9999 23:59:59 GMT", "Wed, 21 Oct 2015 07:28:00 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
		"Sun Nov  6 08:49:37 1994", "soon", "", " 120", "1e3"} {
		f.Add(seed)
	}
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d := parseRetryAfter(v, now)
		if d < 0 {
			t.Fatalf("parseRetryAfter(%q) = %v, want no negative delay", v, d)
		}
		if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs > 0 && secs < 1<<32 && d != time.Duration(secs)*time.Second {
			t.Fatalf("parseRetryAfter(%q) = %v, want %ds", v, d, secs)
		}
	})
}
