package benchmarks

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/afex/hystrix-go/hystrix"
	resiliency "github.com/eapache/go-resiliency/breaker"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/httpbreaker/httpbreaker"
	circuit "github.com/rubyist/circuitbreaker"
	"github.com/sony/gobreaker/v2"
	handy "github.com/streadway/handy/breaker"
	"github.com/zeromicro/go-zero/core/breaker"
	"github.com/zeromicro/go-zero/core/logx"
)

// Every contender gets the same policy, as far as its library can express
// it: trip at a failure rate of 50% over a 10s window once 10 outcomes are
// in it, stay open 30s. It gets the same handler, the same key for each
// request (its route pattern), and, except httpbreaker, the same status
// capture: a wrapper allocated per request, as a hand-written middleware's
// status-capturing writer usually is. Rejections are answered with
// http.Error and 503.
const (
	failureRate = 0.5
	minRequests = 10
	window      = 10 * time.Second
	openFor     = 30 * time.Second
)

// A contender builds middleware that gives each key its own breaker.
type contender struct {
	name string
	// rate reports whether the library trips on a failure rate over a
	// rolling window, the policy httpbreaker is measured against.
	rate       bool
	middleware func(next http.Handler) http.Handler
}

var contenders = []contender{
	{"httpbreaker", true, httpbreakerMiddleware},
	{"gobreaker-twostep", true, gobreakerTwoStepMiddleware},
	{"failsafe-go", true, failsafeMiddleware},
	{"handy", true, handyMiddleware},
	{"hystrix-go", true, hystrixMiddleware},
	{"rubyist", true, rubyistMiddleware},
	{"go-zero", true, goZeroMiddleware},
	{"go-resiliency", false, resiliencyMiddleware},
}

func httpbreakerMiddleware(next http.Handler) http.Handler {
	set, err := httpbreaker.New(
		httpbreaker.WithLogger(slog.New(slog.DiscardHandler)),
		httpbreaker.WithPolicy(httpbreaker.Policy{FailureRate: failureRate, MinRequests: minRequests, Window: window, OpenFor: openFor}),
		httpbreaker.WithMaxKeys(1_000_000),
	)
	if err != nil {
		panic(err)
	}
	return set.KeyedMiddleware(httpbreaker.RoutePattern)(next)
}

// captureWriter is the status capture every contender but httpbreaker
// uses: a wrapper per request, as hand-written middlewares have it.
type captureWriter struct {
	http.ResponseWriter
	status int
}

func (w *captureWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *captureWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// serveCaptured runs next and reports whether the answer was a failure.
func serveCaptured(next http.Handler, w http.ResponseWriter, r *http.Request) (failed bool) {
	cw := &captureWriter{ResponseWriter: w}
	next.ServeHTTP(cw, r)
	return cw.status >= 500 || cw.status == http.StatusTooManyRequests
}

func reject(w http.ResponseWriter) {
	http.Error(w, "circuit breaker is open", http.StatusServiceUnavailable)
}

// perKey keeps one breaker per key in a sync.Map, created on first use.
type perKey[T any] struct {
	m    sync.Map
	make func(key string) T
}

func (p *perKey[T]) get(key string) T {
	if v, ok := p.m.Load(key); ok {
		return v.(T)
	}
	v, _ := p.m.LoadOrStore(key, p.make(key))
	return v.(T)
}

var errFailed = errors.New("failed")

// gobreakerTwoStepMiddleware is a plain gobreaker middleware written the
// usual way: a sync.Map by key, TwoStepCircuitBreaker's Allow and done, a
// fresh capture wrapper per request.
func gobreakerTwoStepMiddleware(next http.Handler) http.Handler {
	keys := &perKey[*gobreaker.TwoStepCircuitBreaker[any]]{make: func(key string) *gobreaker.TwoStepCircuitBreaker[any] {
		return gobreaker.NewTwoStepCircuitBreaker[any](gobreaker.Settings{
			Name: key, Interval: window, BucketPeriod: time.Second, Timeout: openFor, MaxRequests: 3,
			ReadyToTrip: func(c gobreaker.Counts) bool {
				n := c.TotalSuccesses + c.TotalFailures
				return n >= minRequests && float64(c.TotalFailures)/float64(n) >= failureRate
			},
		})
	}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		done, err := keys.get(r.Pattern).Allow()
		if err != nil {
			reject(w)
			return
		}
		if serveCaptured(next, w, r) {
			done(errFailed)
		} else {
			done(nil)
		}
	})
}

func failsafeMiddleware(next http.Handler) http.Handler {
	keys := &perKey[circuitbreaker.CircuitBreaker[any]]{make: func(string) circuitbreaker.CircuitBreaker[any] {
		return circuitbreaker.NewBuilder[any]().
			WithFailureRateThreshold(failureRate, minRequests, window).
			WithDelay(openFor).WithSuccessThreshold(3).Build()
	}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cb := keys.get(r.Pattern)
		if !cb.TryAcquirePermit() {
			reject(w)
			return
		}
		if serveCaptured(next, w, r) {
			cb.RecordFailure()
		} else {
			cb.RecordSuccess()
		}
	})
}

// handyMiddleware uses streadway/handy's breaker, whose state lives in a
// goroutine that every call talks to over channels.
func handyMiddleware(next http.Handler) http.Handler {
	keys := &perKey[handy.Breaker]{make: func(string) handy.Breaker {
		b := handy.NewBreaker(failureRate)
		b.WithWindow(window)
		b.WithMinObservation(minRequests)
		b.WithCooldown(openFor)
		return b
	}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := keys.get(r.Pattern)
		if !b.Allow() {
			reject(w)
			return
		}
		begin := time.Now()
		failed := serveCaptured(next, w, r)
		if failed {
			b.Failure(time.Since(begin))
		} else {
			b.Success(time.Since(begin))
		}
	})
}

var hystrixRun atomic.Int64

// hystrixMiddleware uses afex/hystrix-go, which runs each call on a
// goroutine of its own and keeps commands in a global registry by name.
func hystrixMiddleware(next http.Handler) http.Handler {
	hystrix.SetLogger(quietLogger{})
	prefix := "run" + strconv.FormatInt(hystrixRun.Add(1), 10) + ":"
	var configured sync.Map
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := prefix + r.Pattern
		if _, ok := configured.Load(name); !ok {
			// hystrix fills a channel with MaxConcurrentRequests tickets
			// per command: keep it to what the benchmark can use at once.
			hystrix.ConfigureCommand(name, hystrix.CommandConfig{
				Timeout: 10_000, MaxConcurrentRequests: 256, RequestVolumeThreshold: minRequests,
				SleepWindow: int(openFor / time.Millisecond), ErrorPercentThreshold: int(failureRate * 100),
			})
			configured.Store(name, true)
		}
		err := hystrix.Do(name, func() error {
			if serveCaptured(next, w, r) {
				return errFailed
			}
			return nil
		}, nil)
		if err != nil && err != errFailed {
			reject(w)
		}
	})
}

type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}

func rubyistMiddleware(next http.Handler) http.Handler {
	keys := &perKey[*circuit.Breaker]{make: func(string) *circuit.Breaker {
		return circuit.NewBreakerWithOptions(&circuit.Options{
			ShouldTrip: circuit.RateTripFunc(failureRate, minRequests),
			WindowTime: window, WindowBuckets: 10,
		})
	}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cb := keys.get(r.Pattern)
		if !cb.Ready() {
			reject(w)
			return
		}
		if serveCaptured(next, w, r) {
			cb.Fail()
		} else {
			cb.Success()
		}
	})
}

// go-zero logs CPU and memory statistics once a minute from the moment its
// packages are loaded; on stdout they would land inside benchmark result
// lines, whichever benchmark is running.
func init() {
	logx.Disable()
	logx.DisableStat()
}

// goZeroMiddleware uses go-zero's breaker, Google SRE's adaptive
// throttling: it drops a share of requests that grows with the failure
// rate over its window, rather than opening outright.
func goZeroMiddleware(next http.Handler) http.Handler {
	keys := &perKey[breaker.Breaker]{make: func(key string) breaker.Breaker {
		return breaker.NewBreaker(breaker.WithName(key))
	}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		promise, err := keys.get(r.Pattern).Allow()
		if err != nil {
			reject(w)
			return
		}
		if serveCaptured(next, w, r) {
			promise.Reject("server error")
		} else {
			promise.Accept()
		}
	})
}

// resiliencyMiddleware uses eapache/go-resiliency, which trips on a count
// of errors without an error-free pause, not on a rate.
func resiliencyMiddleware(next http.Handler) http.Handler {
	keys := &perKey[*resiliency.Breaker]{make: func(string) *resiliency.Breaker {
		return resiliency.New(5, 3, openFor)
	}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := keys.get(r.Pattern).Run(func() error {
			if serveCaptured(next, w, r) {
				return errFailed
			}
			return nil
		})
		if err == resiliency.ErrBreakerOpen {
			reject(w)
		}
	})
}

// switchable answers 200 with a short body, or 500 while failing is set.
type switchable struct{ failing atomic.Bool }

func (s *switchable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.failing.Load() {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// keyed returns n requests with distinct route patterns, shuffled.
func keyed(n int) []*http.Request {
	reqs := make([]*http.Request, n)
	for i := range reqs {
		reqs[i] = httptest.NewRequest(http.MethodGet, "/api/items/1", nil)
		reqs[i].Pattern = "GET /api/group" + strconv.Itoa(i) + "/{id}"
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(n, func(i, j int) { reqs[i], reqs[j] = reqs[j], reqs[i] })
	return reqs
}

// BenchmarkPeers runs each contender through the same workloads: the
// closed path on one key and on 1000 keys, serial and from every core, and
// the rejection of an open breaker.
func BenchmarkPeers(b *testing.B) {
	for _, keys := range []int{1, 1000} {
		for _, parallel := range []bool{false, true} {
			name := "closed-" + strconv.Itoa(keys) + "key"
			if parallel {
				name += "-parallel"
			}
			b.Run(name, func(b *testing.B) {
				for _, c := range contenders {
					b.Run(c.name, func(b *testing.B) { closedPath(b, c, keyed(keys), parallel) })
				}
			})
		}
	}
	b.Run("open", func(b *testing.B) {
		for _, c := range contenders {
			b.Run(c.name, func(b *testing.B) { openPath(b, c) })
		}
	})
}

func closedPath(b *testing.B, c contender, reqs []*http.Request, parallel bool) {
	h := c.middleware(&switchable{})
	w := &netWriter{header: http.Header{}}
	for _, r := range reqs { // create every key's breaker before timing
		h.ServeHTTP(w, r)
	}
	b.ReportAllocs()
	b.ResetTimer()
	if !parallel {
		for i := 0; b.Loop(); i++ {
			h.ServeHTTP(w, reqs[i%len(reqs)])
		}
		return
	}
	var start atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		w := &netWriter{header: http.Header{}}
		i := int(start.Add(1)) * 7919
		for pb.Next() {
			h.ServeHTTP(w, reqs[i%len(reqs)])
			i++
		}
	})
}

func openPath(b *testing.B, c contender) {
	handler := &switchable{}
	handler.failing.Store(true)
	h := c.middleware(handler)
	r := keyed(1)[0]
	w := &netWriter{header: http.Header{}}
	deadline := time.Now().Add(10 * time.Second)
	for w.code != http.StatusServiceUnavailable { // fail until the breaker rejects
		if time.Now().After(deadline) {
			b.Fatalf("%s did not open", c.name)
		}
		h.ServeHTTP(w, r)
		if w.code != http.StatusServiceUnavailable {
			time.Sleep(time.Millisecond) // hystrix counts failures asynchronously
		}
	}
	var rejected int
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w.code = 0
		h.ServeHTTP(w, r)
		if w.code == http.StatusServiceUnavailable {
			rejected++
		}
	}
	b.ReportMetric(float64(rejected)/float64(b.N), "rejected/op")
}
