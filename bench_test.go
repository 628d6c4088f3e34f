package httpbreaker

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
)

// benchWriter stands for net/http's HTTP/1 response writer: a reused header
// map, and the optional interfaces that one has. net/http's is some 300
// bytes, one per connection: so is this one big enough that the writers of
// two goroutines never share a cache line, which would measure the
// benchmark's own false sharing.
type benchWriter struct {
	header http.Header
	code   int
	_      [128 - 16]byte
}

func (w *benchWriter) Header() http.Header         { return w.header }
func (w *benchWriter) WriteHeader(code int)        { w.code = code }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *benchWriter) Flush()                      {}
func (w *benchWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, errors.New("not hijackable")
}
func (w *benchWriter) ReadFrom(r io.Reader) (int64, error) { return io.Copy(io.Discard, r) }

var benchBody = []byte("ok")

// okHandler is the handler every benchmark wraps: it writes a status and a
// short body, as a small JSON endpoint does.
var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(benchBody)
})

func benchRequest() (*benchWriter, *http.Request) {
	return &benchWriter{header: http.Header{}}, httptest.NewRequest(http.MethodGet, "/api/catalog/entities", nil)
}

func benchSet(b testing.TB, opts ...Option) *Breakers {
	b.Helper()
	set, err := New(append([]Option{WithLogger(slog.New(slog.DiscardHandler))}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	return set
}

// BenchmarkClosed compares, in one run, the cost of a request through a
// closed breaker with the handler alone and with gobreaker's own Execute
// around it (gobreaker's floor: two mutex sections and two clock reads).
func BenchmarkClosed(b *testing.B) {
	b.Run("bare", func(b *testing.B) {
		w, r := benchRequest()
		b.ReportAllocs()
		for b.Loop() {
			okHandler.ServeHTTP(w, r)
		}
	})
	b.Run("gobreaker-execute", func(b *testing.B) {
		w, r := benchRequest()
		cb := gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{Interval: 10 * time.Second, BucketPeriod: time.Second})
		b.ReportAllocs()
		for b.Loop() {
			_, _ = cb.Execute(func() (struct{}, error) {
				okHandler.ServeHTTP(w, r)
				return struct{}{}, nil
			})
		}
	})
	b.Run("middleware", func(b *testing.B) {
		w, r := benchRequest()
		h := benchSet(b).Middleware("catalog")(okHandler)
		b.ReportAllocs()
		for b.Loop() {
			h.ServeHTTP(w, r)
		}
	})
	b.Run("keyed-middleware", func(b *testing.B) {
		w, r := benchRequest()
		r.Pattern = "GET /api/catalog/entities"
		h := benchSet(b).KeyedMiddleware(RoutePattern)(okHandler)
		b.ReportAllocs()
		for b.Loop() {
			h.ServeHTTP(w, r)
		}
	})
}

// keyPatterns returns n distinct route patterns, and the order to use them
// in: a shuffle, so that the order in which the keys' breakers were created
// (and laid out in memory) tells nothing about the order they are used in,
// as on a real server.
func keyPatterns(n int) (patterns []string, order []int) {
	patterns = make([]string, n)
	for i := range patterns {
		patterns[i] = "GET /api/group" + strconv.Itoa(i) + "/{id}"
	}
	return patterns, rand.New(rand.NewPCG(1, 2)).Perm(n)
}

// keyCounts are the numbers of keys that BenchmarkKeys and
// BenchmarkEngineKeys measure.
var keyCounts = []int{1, 1000, 10_000, 100_000}

// BenchmarkKeys measures the closed path with KeyedMiddleware over 1, 1000,
// 10 000 and 100 000 keys, every key's breaker created before the timer starts,
// requests cycling over all of them. One request is reused with each key's
// pattern in turn: a server's request is fresh in the cache, its key's
// breaker is not.
func BenchmarkKeys(b *testing.B) {
	for _, n := range keyCounts {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			patterns, order := keyPatterns(n)
			h := benchSet(b, WithMaxKeys(n)).KeyedMiddleware(RoutePattern)(okHandler)
			w, r := benchRequest()
			for _, p := range patterns {
				r.Pattern = p
				h.ServeHTTP(w, r)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				r.Pattern = patterns[order[i%n]]
				h.ServeHTTP(w, r)
			}
		})
	}
}

// BenchmarkEngineKeys is BenchmarkKeys for a plain map of gobreaker
// breakers, the naive design: each request looks its key (the same route
// pattern) up in a map[string] read without a lock, and runs the handler in
// Execute, over as many breakers in the same order. It is what
// the key's breaker's own state costs once it no longer fits in the CPU's
// caches, with the least a lookup can cost.
func BenchmarkEngineKeys(b *testing.B) {
	for _, n := range keyCounts {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			patterns, order := keyPatterns(n)
			engines := make(map[string]*gobreaker.CircuitBreaker[struct{}], n)
			for _, p := range patterns {
				engines[p] = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{Interval: 10 * time.Second, BucketPeriod: time.Second})
			}
			w, r := benchRequest()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				r.Pattern = patterns[order[i%n]]
				_, _ = engines[r.Pattern].Execute(func() (struct{}, error) {
					okHandler.ServeHTTP(w, r)
					return struct{}{}, nil
				})
			}
		})
	}
}

// BenchmarkParallel measures the closed path from every core: on one key
// (every request contends for that key's breaker) and on many keys (no lock
// or counter is shared between keys, so it should scale with cores).
func BenchmarkParallel(b *testing.B) {
	b.Run("one-key", func(b *testing.B) {
		h := benchSet(b).Middleware("catalog")(okHandler)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			w, r := benchRequest()
			for pb.Next() {
				h.ServeHTTP(w, r)
			}
		})
	})
	// one-key-raised is one-key on a key that became hot while GOMAXPROCS
	// was 1 and was then raised to what the benchmark runs with: the key
	// gets a stripe per P at its next roll, so the figure is one-key's.
	b.Run("one-key-raised", func(b *testing.B) {
		procs := runtime.GOMAXPROCS(1)
		set := benchSet(b)
		h := set.Middleware("catalog")(okHandler)
		w, r := benchRequest()
		h.ServeHTTP(w, r)
		br := set.lookup("catalog")
		br.counters.promote()
		runtime.GOMAXPROCS(procs)
		for deadline := time.Now().Add(3 * time.Second); len(br.counters.striped.Load().lines) < stripeCount(); {
			if time.Now().After(deadline) {
				b.Fatalf("GOMAXPROCS %d: the hot key kept %d stripes past its roll", procs, len(br.counters.striped.Load().lines))
			}
			h.ServeHTTP(w, r) // the window rolls on a request at a bucket's end
			time.Sleep(time.Millisecond)
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			w, r := benchRequest()
			for pb.Next() {
				h.ServeHTTP(w, r)
			}
		})
	})
	b.Run("many-keys", func(b *testing.B) {
		const n = 1000
		patterns, order := keyPatterns(n)
		h := benchSet(b).KeyedMiddleware(RoutePattern)(okHandler)
		var next atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			w, r := benchRequest()
			i := int(next.Add(1)) * 7919 // each goroutine starts elsewhere
			for pb.Next() {
				r.Pattern = patterns[order[i%n]]
				h.ServeHTTP(w, r)
				i++
			}
		})
	})
}

// BenchmarkRejection measures rejecting a request, beside gobreaker's own
// rejection by an open breaker (Execute returning ErrOpenState): open with
// the 503 problem response written, and half-open with all probes taken.
func BenchmarkRejection(b *testing.B) {
	failing := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	b.Run("gobreaker-open", func(b *testing.B) {
		cb := gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
			Timeout: time.Hour, ReadyToTrip: func(gobreaker.Counts) bool { return true },
		})
		_, _ = cb.Execute(func() (struct{}, error) { return struct{}{}, errors.New("fail") })
		b.ReportAllocs()
		for b.Loop() {
			if _, err := cb.Execute(func() (struct{}, error) { return struct{}{}, nil }); err != gobreaker.ErrOpenState {
				b.Fatal(err)
			}
		}
	})
	b.Run("open", func(b *testing.B) {
		w, r := benchRequest()
		set := benchSet(b, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Hour}))
		h := set.Middleware("catalog")(failing)
		h.ServeHTTP(w, r)
		if set.State("catalog") != StateOpen {
			b.Fatal("breaker did not open")
		}
		b.ReportAllocs()
		for b.Loop() {
			h.ServeHTTP(w, r)
		}
	})
	b.Run("half-open", func(b *testing.B) {
		set := benchSet(b, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Millisecond, HalfOpenRequests: 1}))
		probe, release := make(chan struct{}), make(chan struct{})
		var tripped atomic.Bool
		h := set.Middleware("catalog")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !tripped.Swap(true) {
				w.WriteHeader(500)
				return
			}
			close(probe)
			<-release // the probe stays in flight: every other request is rejected
		}))
		w, r := benchRequest()
		h.ServeHTTP(w, r)
		time.Sleep(5 * time.Millisecond)
		go h.ServeHTTP(&benchWriter{header: http.Header{}}, r)
		<-probe
		b.ReportAllocs()
		for b.Loop() {
			h.ServeHTTP(w, r)
		}
		b.StopTimer()
		if w.code != http.StatusServiceUnavailable || set.State("catalog") != StateHalfOpen {
			b.Fatalf("last answer %d in state %v, want 503 in half_open", w.code, set.State("catalog"))
		}
		close(release)
	})
}

// BenchmarkMemoryPerKey reports the heap that each key's breaker holds once
// it has served a request (heapPerKey): the breaker, its window's ring and
// its entry in the key map. Its metric series are read from its counters at
// scrape time, so they hold nothing more. Run it with -cpu 2,16,64: a key
// that is not hot costs the same at any GOMAXPROCS.
func BenchmarkMemoryPerKey(b *testing.B) {
	var perKey float64
	for b.Loop() {
		perKey = heapPerKey(b, 10_000)
	}
	b.ReportMetric(perKey, "B/key")
}

// cannedTransport is the base transport of the client benchmarks: it
// answers every request with the same response, as a fast upstream does,
// so that what is measured is the breaker's share of RoundTrip.
type cannedTransport struct{ resp *http.Response }

func (c cannedTransport) RoundTrip(*http.Request) (*http.Response, error) { return c.resp, nil }

// BenchmarkTransport compares, in one run, a call through the base
// transport alone, through Transport and KeyedTransport closed, and a
// rejection by an open Transport.
func BenchmarkTransport(b *testing.B) {
	base := cannedTransport{resp: &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody}}
	req := httptest.NewRequest(http.MethodGet, "http://api.example.com/v1/models", nil)
	b.Run("base", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = base.RoundTrip(req)
		}
	})
	b.Run("closed", func(b *testing.B) {
		rt := benchSet(b).Transport("models", base)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rt.RoundTrip(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("keyed-closed", func(b *testing.B) {
		rt := benchSet(b).KeyedTransport(Host, base)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rt.RoundTrip(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("open", func(b *testing.B) {
		set := benchSet(b, WithPolicy(Policy{ConsecutiveFailures: 1, OpenFor: time.Hour}))
		rt := set.Transport("models", cannedTransport{resp: &http.Response{StatusCode: 500, Header: http.Header{}, Body: http.NoBody}})
		_, _ = rt.RoundTrip(req)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rt.RoundTrip(req); !errors.Is(err, ErrOpen) {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRoutePattern measures the KeyFunc alone, for a ServeMux pattern
// with its method and for chi's pattern without one.
func BenchmarkRoutePattern(b *testing.B) {
	for name, pattern := range map[string]string{"servemux": "GET /api/catalog/entities", "chi": "/api/catalog/entities"} {
		b.Run(name, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodGet, "/api/catalog/entities", nil)
			r.Pattern = pattern
			b.ReportAllocs()
			for b.Loop() {
				_ = RoutePattern(r)
			}
		})
	}
}

// BenchmarkBlame measures a route group's request in a set with a client
// side, where it carries the scope that blame needs (its one allocation):
// a handler that makes one client call with the request's context, alone
// and through Middleware, and okHandler, which makes none, through
// Middleware (BenchmarkClosed's middleware is the same without a client
// side).
func BenchmarkBlame(b *testing.B) {
	set := benchSet(b)
	rt := set.Transport("payments", cannedTransport{resp: &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody}})
	out := httptest.NewRequest(http.MethodGet, "http://payments.internal/charge", nil)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = rt.RoundTrip(out.WithContext(r.Context()))
	})
	for name, h := range map[string]http.Handler{
		"handler-and-call":   handler,
		"middleware":         set.Middleware("billing")(handler),
		"middleware-no-call": set.Middleware("catalog")(okHandler),
	} {
		b.Run(name, func(b *testing.B) {
			w, r := benchRequest()
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, r)
			}
		})
	}
}

// BenchmarkDo compares a func called alone and through Do, closed.
func BenchmarkDo(b *testing.B) {
	ctx := context.Background()
	fn := func(context.Context) error { return nil }
	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = fn(ctx)
		}
	})
	b.Run("closed", func(b *testing.B) {
		set := benchSet(b)
		b.ReportAllocs()
		for b.Loop() {
			_ = set.Do(ctx, "db", fn)
		}
	})
}
