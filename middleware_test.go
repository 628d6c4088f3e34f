package httpbreaker

import (
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// recoverer stands for whatever recovers panics above the breaker (net/http
// itself, or a recovery middleware): it keeps the value and the stack.
type recoverer struct {
	next  http.Handler
	value atomic.Value
	stack atomic.Value
}

func (rc *recoverer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			rc.value.Store(p)
			rc.stack.Store(string(debug.Stack()))
			w.WriteHeader(http.StatusInternalServerError)
		}
	}()
	rc.next.ServeHTTP(w, r)
}

func panickingHandler(w http.ResponseWriter, r *http.Request) {
	panic("plugin bug")
}

func TestPanicIsAFailureAndIsRaisedAgainWithItsStack(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 2}))
	rc := &recoverer{next: b.Middleware("p")(http.HandlerFunc(panickingHandler))}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)

	if code, _, _ := get(t, srv.URL); code != 500 {
		t.Fatalf("status %d, want the recoverer's 500", code)
	}
	if v := rc.value.Load(); v != "plugin bug" {
		t.Fatalf("recovered %v, want the handler's own panic value", v)
	}
	if stack := rc.stack.Load().(string); !strings.Contains(stack, "panickingHandler") {
		t.Fatalf("the stack seen above the breaker does not show where the panic happened:\n%s", stack)
	}
	if s := status(t, b, "p"); s.Totals.Failures != 1 || s.Window.Failures != 1 {
		t.Fatalf("totals %+v window %+v, want one failure", s.Totals, s.Window)
	}
	get(t, srv.URL)
	if st := b.State("p"); st != StateOpen {
		t.Fatalf("after 2 panics: state %v, want open", st)
	}
}

func TestMiddlewareCreatesTheBreakerUpFront(t *testing.T) {
	b, _ := newSet(t, WithKeyPolicy("catalog", Policy{Mode: ModeObserve, OpenFor: time.Minute}))
	b.Middleware("catalog")
	snap := b.Snapshot()
	if len(snap) != 1 || snap[0].Key != "catalog" || snap[0].State != StateClosed {
		t.Fatalf("snapshot %+v, want catalog closed", snap)
	}
	if p := snap[0].Policy; p.Mode != ModeObserve || p.OpenFor != time.Minute || p.FailureRate != 0.5 {
		t.Fatalf("policy %+v, want the key's override on top of the defaults", p)
	}
}

func TestMiddlewarePanicsOnEmptyKey(t *testing.T) {
	b, _ := newSet(t)
	defer func() {
		if p := recover(); p == nil {
			t.Fatal("Middleware(\"\") did not panic")
		}
	}()
	b.Middleware("")
}

// unrelatedKey is a context key of some other middleware's.
type unrelatedKey struct{}

// TestPlainSuccessAgreesWithDefaultClassifier holds the shortcut that
// judges a plain success without building its Call to what
// DefaultClassifier says of every status.
func TestPlainSuccessAgreesWithDefaultClassifier(t *testing.T) {
	br := benchSet(t).breakerFor("k", false)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	for code := 100; code < 600; code++ {
		sw := &statusWriter{w: httptest.NewRecorder(), ctx: r.Context(), status: code}
		want := br.judging.judge(&Call{Key: "k", Request: r, StatusCode: code}, 0)
		if plainSuccess(br, sw, ending{returned: true}) && want != (verdict{outcome: Success}) {
			t.Errorf("status %d: a plain success, DefaultClassifier says %+v", code, want)
		}
		if got, _ := judgeAnswer(br, sw, r, ending{returned: true}, nil); got != want {
			t.Errorf("status %d: judged %+v, DefaultClassifier says %+v", code, got, want)
		}
	}
}
