// Package adaptertest holds what the tests of the gin and echo adapters
// (ginbreaker, echobreaker) share: requests to a test server, the answers
// read back, and the checks of a rejection and of a stream. It imports
// nothing but the standard library, so that the library's module stays
// free of web frameworks.
package adaptertest

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// Serve serves h until the test ends and returns its URL.
func Serve(t testing.TB, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// An Answer is what a request got back, with a JSON object body decoded.
type Answer struct {
	Status      int
	ContentType string
	RetryAfter  string
	Body        map[string]any
}

// Send sends a request without a body and reads the answer; a JSON answer
// must be an object.
func Send(t testing.TB, method, url string) Answer {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := Answer{Status: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"), RetryAfter: resp.Header.Get("Retry-After")}
	if strings.HasPrefix(a.ContentType, "application/json") && json.Unmarshal(raw, &a.Body) != nil {
		t.Fatalf("%s %s: %d with a body that is not a JSON object: %q", method, url, a.Status, raw)
	}
	return a
}

// A Rejection is how an adapter's RejectHandler answers in its
// framework's error style: the content type, and the one member of the
// JSON object that holds the message.
type Rejection struct {
	ContentType string
	Member      string
}

// Want fails the test unless a is the rejection of key's open breaker:
// 503, the framework's JSON with the message naming the key and the state,
// and a Retry-After of whole seconds.
func (r Rejection) Want(t testing.TB, a Answer, key string) {
	t.Helper()
	if a.Status != http.StatusServiceUnavailable || a.ContentType != r.ContentType {
		t.Fatalf("got %d %q, want the breaker's 503 as %q", a.Status, a.ContentType, r.ContentType)
	}
	if secs, err := strconv.Atoi(a.RetryAfter); err != nil || secs < 1 || secs > 3600 {
		t.Fatalf("Retry-After %q, want whole seconds of the cooldown left", a.RetryAfter)
	}
	want := key + " is unavailable: its circuit breaker is open; retry after the delay in Retry-After"
	if len(a.Body) != 1 || a.Body[r.Member] != want {
		t.Fatalf("body %v, want only %s: %q", a.Body, r.Member, want)
	}
}

// FailFirst3 sends a request 5 times and wants the handler's own answer
// for the first 3 and the breaker's rejection after them.
func (r Rejection) FailFirst3(t testing.TB, method, url, key string, handlerStatus int) {
	t.Helper()
	for i := range 5 {
		a := Send(t, method, url)
		if i < 3 {
			if a.Status != handlerStatus {
				t.Fatalf("request %d: %d, want the handler's %d", i+1, a.Status, handlerStatus)
			}
			continue
		}
		r.Want(t, a, key)
	}
}

// Stream gets an event stream from url and returns the data of its
// events, calling readFirst when the first has arrived: a handler that
// waits for that before writing the next proves that each event reached
// the client as it was written.
func Stream(t testing.TB, url string, readFirst func()) []string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("%d %q, want a 200 event stream", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := bufio.NewScanner(resp.Body)
	var events []string
	for lines.Scan() {
		if data, ok := strings.CutPrefix(lines.Text(), "data:"); ok {
			events = append(events, data)
			if len(events) == 1 {
				readFirst()
			}
		}
	}
	return events
}
