package httpbreaker

//go:generate go run ./internal/genwriters

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"sync"
	"time"
)

// statusWriter wraps the http.ResponseWriter of an admitted request and
// records what the breaker needs to classify it: the final status, whether
// the client had gone by then, whether the connection was hijacked, and the
// Retry-After that came with a 429 or 503.
//
// The final status is the first non-1xx code written: 103 Early Hints then
// 503 is a 503. Write, WriteString, ReadFrom and Flush before any code mean
// 200, as in net/http. 101 is final, and so is a successful Hijack.
//
// It passes on exactly the optional interfaces that the wrapped writer has,
// among http.Flusher, http.Hijacker, io.ReaderFrom and http.Pusher (see
// status_writer_gen.go), so a handler's type assertions see what they would
// see without it: SSE streams flush, websockets upgrade, io.Copy from a file
// reaches net/http's ReadFrom and its sendfile. Unwrap lets
// http.ResponseController reach the methods it does not pass on, such as
// SetWriteDeadline and EnableFullDuplex, and FlushError gives the
// controller's Flush the error of the flush, so that a streaming handler
// learns when its client has gone. Every error of the wrapped writer comes
// back as it was. http.CloseNotifier, deprecated since
// Go 1.11, is not passed on.
//
// Why not github.com/felixge/httpsnoop, which does the same job: httpsnoop
// allocates its wrapper, its hooks and the interface combination on every
// request, while this writer is pooled and each of its combinations is a
// struct holding one pointer, which converts to an interface without
// allocating, so the middleware allocates nothing per request.
// BenchmarkStatusCapture in the benchmarks module measures both around the
// same gobreaker Execute (BENCHMARKS.md has the figures). Being ours, it also
// records what httpsnoop cannot: whether the client had gone when the status
// was written, and the hijack.
//
// Pooling relies on net/http's rule that a ResponseWriter is not used after
// ServeHTTP returns; a handler that breaks it is already racing with
// net/http's own reuse of the connection's buffers.
type statusWriter struct {
	w   http.ResponseWriter
	ctx context.Context
	// status is the final status, 0 until one is written.
	status int
	// gone reports whether the client had gone away (the request's context
	// was canceled) when status was written.
	gone     bool
	hijacked bool
	// retryAfter is the Retry-After delay sent with a 429 or 503 status;
	// rateLimited says the status was 429.
	retryAfter  time.Duration
	rateLimited bool
	// rejected reports that a breaker nested inside rejected the request.
	// Its rejection is not a failure of the handlers here either.
	rejected bool
	// probe is the half-open probe this request is, nil if it is none: the
	// writer tells it what the handler has answered, which the breaker goes
	// by should the handler outlive the ProbeTimeout (a stream).
	probe *probeRun
	// scope is the request's scope for blame, nil if it carries none, and
	// answeredOn the upstream that a failure could be blamed on when the
	// status was written, nil if none (blame.go).
	scope      *callScope
	answeredOn *keyBreaker

	// seen and seenSet are the type of the last writer this one wrapped and
	// its optional interfaces: a pooled writer is handed the same type of
	// writer almost every time (net/http's), whose interfaces are found once.
	seen    reflect.Type
	seenSet int

	// Each core writes its own writers on every request: padded to a
	// multiple of the cache line (in a size class whose objects start on
	// one), so that two cores' writers never share a line.
	_ [128 - 112]byte
}

var writerPool = sync.Pool{New: func() any { return new(statusWriter) }}

func newStatusWriter(w http.ResponseWriter, ctx context.Context) *statusWriter {
	sw := writerPool.Get().(*statusWriter)
	*sw = statusWriter{w: w, ctx: ctx, seen: sw.seen, seenSet: sw.seenSet}
	return sw
}

// release returns sw to the pool. The caller must not use it afterwards.
func (sw *statusWriter) release() {
	*sw = statusWriter{seen: sw.seen, seenSet: sw.seenSet}
	writerPool.Put(sw)
}

func (sw *statusWriter) setStatus(code int) {
	sw.status = code
	sw.gone = sw.ctx.Err() == context.Canceled
	if sw.scope != nil {
		sw.answeredOn = sw.scope.blameable()
	}
	if sw.probe != nil {
		o := Success
		if failureStatus(code) {
			o = Failure
		}
		sw.probe.noteAnswer(o)
	}
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
		sw.retryAfter = parseRetryAfter(sw.w.Header().Get("Retry-After"), time.Now())
		sw.rateLimited = code == http.StatusTooManyRequests
	}
}

// parseRetryAfter reads a Retry-After value, delay-seconds or an HTTP date
// (RFC 9110, section 10.2.3), as a delay from now; 0 when it is absent,
// malformed or past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(math.MaxInt64/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// implicitOK records the 200 that net/http sends when the body starts before
// any status.
func (sw *statusWriter) implicitOK() {
	if sw.status == 0 && !sw.hijacked {
		sw.setStatus(http.StatusOK)
	}
}

func (sw *statusWriter) Header() http.Header { return sw.w.Header() }

func (sw *statusWriter) WriteHeader(code int) {
	if sw.status == 0 && !sw.hijacked && (code < 100 || code > 199 || code == http.StatusSwitchingProtocols) {
		sw.setStatus(code)
	}
	sw.w.WriteHeader(code)
}

func (sw *statusWriter) Write(p []byte) (int, error) {
	sw.implicitOK()
	return sw.w.Write(p)
}

// WriteString passes strings on without a copy when the writer takes them.
func (sw *statusWriter) WriteString(s string) (int, error) {
	sw.implicitOK()
	return io.WriteString(sw.w, s)
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (sw *statusWriter) Unwrap() http.ResponseWriter { return sw.w }

func (sw *statusWriter) self() *statusWriter { return sw }

// rejectedMark is the request header that reject sets: a name of this
// process's own, which no client can send.
var rejectedMark = func() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "Httpbreaker-Rejected-" + hex.EncodeToString(b[:])
}()

// rejectedInside reports whether a breaker nested inside rejected r.
func rejectedInside(r *http.Request) bool {
	_, ok := r.Header[rejectedMark]
	return ok
}

// markRejected tells each statusWriter that w wraps, directly or through
// other writers with Unwrap, that a breaker rejected the request.
func markRejected(w http.ResponseWriter) {
	for {
		switch x := w.(type) {
		case interface{ self() *statusWriter }:
			sw := x.self()
			sw.rejected = true
			w = sw.w
		case interface{ Unwrap() http.ResponseWriter }:
			w = x.Unwrap()
		default:
			return
		}
	}
}

func (sw *statusWriter) flush() {
	sw.implicitOK()
	sw.w.(http.Flusher).Flush()
}

// FlushError flushes and returns the error of the flush, which
// http.ResponseController.Flush passes on: once the client has gone (a
// broken pipe, an HTTP/2 stream reset) or a write deadline has passed, a
// streaming handler learns it and can stop. Without it the controller would
// find Flush, which has no error to return. A writer that cannot flush
// answers http.ErrNotSupported, as it does without the wrapper.
func (sw *statusWriter) FlushError() error {
	err := http.NewResponseController(sw.w).Flush()
	if !errors.Is(err, http.ErrNotSupported) {
		sw.implicitOK() // the flush sent the header, or tried to
	}
	return err
}

func (sw *statusWriter) hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := sw.w.(http.Hijacker).Hijack()
	if err == nil {
		sw.hijacked = true
		if sw.status == 0 {
			sw.probe.noteAnswer(Excluded) // the connection is the handler's now
		}
	}
	return conn, rw, err
}

func (sw *statusWriter) readFrom(src io.Reader) (int64, error) {
	sw.implicitOK()
	return sw.w.(io.ReaderFrom).ReadFrom(src)
}

func (sw *statusWriter) push(target string, opts *http.PushOptions) error {
	return sw.w.(http.Pusher).Push(target, opts)
}

// upstreamKey returns the key of the upstream that a failure of the
// request whose handler wrote through sw, within s, could be blamed on; ""
// if none, or if s is nil. It is what the status writer noted when the
// handler wrote its status (what happened after the answer cannot have
// caused it), or, if it wrote none, what s says now.
func (s *callScope) upstreamKey(sw *statusWriter) string {
	if s == nil {
		return ""
	}
	up := sw.answeredOn
	if sw.status == 0 {
		up = s.blameable()
	}
	if up == nil {
		return ""
	}
	return up.key
}
