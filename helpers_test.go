package httpbreaker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Tests of time (cooldowns, windows, the recovery ramp, hooks) run in a
// synctest bubble: time.Now, for this package and for gobreaker alike, is a
// fake clock that moves only when every goroutine in the bubble is blocked,
// so time.Sleep(d) advances it by exactly d, and no test waits on the
// machine being fast.

// newSet returns a Breakers whose logs go to the returned sink.
func newSet(t *testing.T, opts ...Option) (*Breakers, *logSink) {
	t.Helper()
	sink := &logSink{}
	b, err := New(append([]Option{WithLogger(slog.New(sink))}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	sink.flush = func() { _ = b.Flush(context.Background()) }
	return b, sink
}

// statusHandler answers with the status in code, counting the calls.
type statusHandler struct {
	code  atomic.Int32
	calls atomic.Int64
}

func newStatusHandler(code int) *statusHandler {
	h := &statusHandler{}
	h.code.Store(int32(code))
	return h
}

func (h *statusHandler) set(code int) { h.code.Store(int32(code)) }

func (h *statusHandler) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	h.calls.Add(1)
	w.WriteHeader(int(h.code.Load()))
	_, _ = io.WriteString(w, "from handler")
}

// serve starts a test server with each handler behind Middleware(key) at
// /key/.
func serve(t *testing.T, b *Breakers, handlers map[string]http.Handler) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	for key, h := range handlers {
		mux.Handle("/"+key+"/", b.Middleware(key)(h))
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// get sends a GET and returns the status, headers and body.
func get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

// hit sends n GETs to url and returns how many got each status.
func hit(t *testing.T, url string, n int) map[int]int {
	t.Helper()
	got := map[int]int{}
	for range n {
		code, _, _ := get(t, url)
		got[code]++
	}
	return got
}

// record runs one request through h in process and returns the recorder.
func record(h http.Handler, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline: the conditions it waits for take milliseconds, and the deadline
// only guards against a hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func status(t *testing.T, b *Breakers, key string) Status {
	t.Helper()
	for _, s := range b.Snapshot() {
		if s.Key == key {
			return s
		}
	}
	t.Fatalf("no status for key %q", key)
	return Status{}
}

// logSink is a slog.Handler that keeps the records. Reading them first
// waits for the records queued so far, when flush is set.
type logSink struct {
	mu      sync.Mutex
	records []slog.Record
	flush   func()
}

func (s *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (s *logSink) WithAttrs([]slog.Attr) slog.Handler       { return s }
func (s *logSink) WithGroup(string) slog.Handler            { return s }

func (s *logSink) Handle(_ context.Context, r slog.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records = append(s.records, r.Clone())
	return nil
}

// all returns the records, each as its level, message and attributes.
func (s *logSink) all() []logEntry {
	if s.flush != nil {
		s.flush()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []logEntry
	for _, r := range s.records {
		e := logEntry{level: r.Level, msg: r.Message, attrs: map[string]string{}}
		r.Attrs(func(a slog.Attr) bool {
			e.attrs[a.Key] = a.Value.String()
			return true
		})
		out = append(out, e)
	}
	return out
}

// changes returns the logged state changes as "key: from -> to".
func (s *logSink) changes() []string {
	var out []string
	for _, e := range s.all() {
		if e.msg == "circuit breaker state changed" {
			out = append(out, fmt.Sprintf("%s: %s -> %s", e.attrs["key"], e.attrs["from"], e.attrs["to"]))
		}
	}
	return out
}

// matching returns the records whose message contains text.
func (s *logSink) matching(text string) []logEntry {
	var out []logEntry
	for _, e := range s.all() {
		if strings.Contains(e.msg, text) {
			out = append(out, e)
		}
	}
	return out
}

type logEntry struct {
	level slog.Level
	msg   string
	attrs map[string]string
}
