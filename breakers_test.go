package httpbreaker

import (
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestKeysAreIsolated(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 3}))
	catalog, scaffolder := newStatusHandler(200), newStatusHandler(500)
	srv := serve(t, b, map[string]http.Handler{"catalog": catalog, "scaffolder": scaffolder})

	for range 10 {
		get(t, srv.URL+"/scaffolder/")
		if code, _, _ := get(t, srv.URL+"/catalog/"); code != 200 {
			t.Fatalf("catalog answered %d while scaffolder failed, want 200", code)
		}
	}
	if st := b.State("scaffolder"); st != StateOpen {
		t.Fatalf("scaffolder: state %v, want open", st)
	}
	if st := b.State("catalog"); st != StateClosed {
		t.Fatalf("catalog: state %v, want closed", st)
	}
	if n := catalog.calls.Load(); n != 10 {
		t.Fatalf("catalog handler ran %d times, want 10", n)
	}
	if n := scaffolder.calls.Load(); n != 3 {
		t.Fatalf("scaffolder handler ran %d times, want 3 (then the breaker rejected)", n)
	}
}

func TestStateOfUnknownKeyIsClosed(t *testing.T) {
	b, _ := newSet(t)
	if st := b.State("nobody"); st != StateClosed {
		t.Fatalf("state %v, want closed", st)
	}
	if n := len(b.Snapshot()); n != 0 {
		t.Fatalf("State created a breaker: %d in the snapshot", n)
	}
}

func TestMaxKeysBoundsBreakersAndPassesTheRestThrough(t *testing.T) {
	b, sink := newSet(t, WithMaxKeys(2), WithPolicy(Policy{ConsecutiveFailures: 1}))
	h := newStatusHandler(500)
	mw := b.KeyedMiddleware(func(r *http.Request) string { return r.URL.Query().Get("tenant") })(h)
	for _, tenant := range []string{"a", "b", "c", "d", "c"} {
		record(mw, "/?tenant="+tenant)
	}
	// c and d are past the bound: their failures trip nothing and their
	// requests keep reaching the handler.
	for range 3 {
		if rec := record(mw, "/?tenant=c"); rec.Code != 500 {
			t.Fatalf("untracked key: status %d, want the handler's 500", rec.Code)
		}
	}
	var keys []string
	for _, s := range b.Snapshot() {
		keys = append(keys, s.Key)
	}
	if !slices.Equal(keys, []string{"a", "b"}) {
		t.Fatalf("keys %q, want [a b]", keys)
	}
	if n := b.untracked.Load(); n != 6 {
		t.Fatalf("untracked count %d, want 6", n)
	}
	if logs := sink.matching("key limit reached"); len(logs) != 1 || logs[0].attrs["first_untracked_key"] != "c" {
		t.Fatalf("key limit logs %+v, want one naming c", logs)
	}
}

func TestConcurrentKeysUnderLoad(t *testing.T) {
	b, _ := newSet(t, WithPolicy(Policy{ConsecutiveFailures: 5, OpenFor: time.Millisecond, HalfOpenRequests: 1}))
	mw := b.KeyedMiddleware(func(r *http.Request) string { return r.URL.Path })
	var n atomic.Int64
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%3 == 0 {
			w.WriteHeader(500)
		}
	}))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				record(h, "/k"+string(rune('a'+(g+i)%5)))
				if i%50 == 0 {
					b.Snapshot()
				}
			}
		})
	}
	wg.Wait()
	var total uint64
	for _, s := range b.Snapshot() {
		c := s.Totals
		total += c.Successes + c.Failures + c.Excluded + c.Rejected
	}
	if total != 8*500 {
		t.Fatalf("counted %d requests, want %d: each request counts once", total, 8*500)
	}
}

func TestIdleKeysAreDroppedSoManyKeysRunAtFlatMemory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		b, _ := newSet(t, WithRegisterer(reg), WithMaxKeys(100_000), WithPolicy(Policy{IdleTTL: time.Minute}))
		h := b.KeyedMiddleware(func(r *http.Request) string { return r.URL.Query().Get("session") })(newStatusHandler(200))
		const perRound, rounds = 500, 60
		var heapAt10 uint64
		for round := range rounds {
			// Each round brings 500 new keys, used a few times, then never again.
			for i := range perRound {
				key := strconv.Itoa(round*perRound + i)
				for range 3 {
					record(h, "/?session="+key)
				}
			}
			time.Sleep(30 * time.Second)
			// Keys live at most IdleTTL plus a sweep interval after their last
			// request: no more than four rounds' worth at any time.
			n := len(b.Snapshot())
			if n > 4*perRound {
				t.Fatalf("round %d: %d keys alive, want at most %d", round, n, 4*perRound)
			}
			// A scrape has a state series per state of each key alive, and no
			// more. (A scrape sorts every series: one in ten rounds is enough
			// to hold the series to the keys, which every round counts.)
			if round%10 == 9 {
				series, err := testutil.GatherAndCount(reg, "httpbreaker_state")
				if err != nil {
					t.Fatal(err)
				}
				if alive := len(b.Snapshot()); series != alive*int(numStates) {
					t.Fatalf("round %d: %d state series for %d keys", round, series, alive)
				}
			}
			if round == 10 || round == rounds-1 {
				runtime.GC()
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				if round == 10 {
					heapAt10 = m.HeapAlloc
				} else if m.HeapAlloc > heapAt10*3/2 {
					t.Fatalf("heap grew from %d to %d bytes between rounds 10 and %d: idle keys are not freed", heapAt10, m.HeapAlloc, rounds)
				}
			}
		}
		if total := rounds * perRound; total <= 4*perRound {
			t.Fatalf("the test cycled only %d keys", total)
		}
	})
}

func TestStaticKeysAreKeptByDefault(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t)
		b.Middleware("catalog")
		keyed := b.KeyedMiddleware(func(*http.Request) string { return "dynamic" })(newStatusHandler(200))
		record(keyed, "/")
		if p := status(t, b, "catalog").Policy; p.IdleTTL != Off {
			t.Fatalf("a Middleware key's IdleTTL is %v, want off", p.IdleTTL)
		}
		if p := status(t, b, "dynamic").Policy; p.IdleTTL != time.Hour {
			t.Fatalf("a KeyedMiddleware key's IdleTTL is %v, want an hour", p.IdleTTL)
		}
		time.Sleep(3 * time.Hour)
		b.Snapshot()
		time.Sleep(3 * time.Hour)
		snap := b.Snapshot()
		if len(snap) != 1 || snap[0].Key != "catalog" {
			t.Fatalf("after six idle hours: %v, want catalog only", snap)
		}
	})
}

func TestDroppedStaticKeyGetsANewBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithKeyPolicy("catalog", Policy{IdleTTL: time.Minute}))
		h := b.Middleware("catalog")(newStatusHandler(200))
		record(h, "/")
		for range 4 {
			time.Sleep(time.Minute)
			b.Snapshot()
		}
		if n := len(b.Snapshot()); n != 0 {
			t.Fatalf("%d keys after the IdleTTL, want the idle key dropped", n)
		}
		record(h, "/")
		if s := status(t, b, "catalog"); s.Totals.Successes != 1 {
			t.Fatalf("the key's new breaker counted %+v", s.Totals)
		}
	})
}

func TestOpenBreakersAreNotDroppedWhenIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{IdleTTL: time.Minute, ConsecutiveFailures: 1, OpenFor: time.Hour}))
		h := b.KeyedMiddleware(func(*http.Request) string { return "broken" })(newStatusHandler(500))
		record(h, "/")
		for range 10 {
			time.Sleep(time.Minute)
			b.Snapshot()
		}
		if st := b.State("broken"); st != StateOpen {
			t.Fatalf("an open breaker left idle: %v, want it kept open", st)
		}
	})
}

func TestScrapeLeavesOutASeriesItCannotWriteAndGoesOn(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	b, sink := newSet(t, WithRegisterer(reg))
	b.Middleware("good")
	bad := newBreaker("\xff", b.intern(keyPolicy(b.cfg.policyFor("\xff"), true)), &b.clock, &b.alarm, b.now(), b.notifier, nil) // as if a check were missed
	b.keys.store(bad.key, bad)
	if _, err := reg.Gather(); err != nil {
		t.Fatalf("gather: %v", err)
	}
	if n := testutil.CollectAndCount(reg, "httpbreaker_state"); n != len(stateNames) {
		t.Fatalf("%d state series, want the good key's %d", n, len(stateNames))
	}
	if logs := sink.matching("left out of a scrape"); len(logs) != 1 {
		t.Fatalf("logs %+v, want one record of the series left out", logs)
	}
}

func TestMiddlewareKeyKeepsItsBreakerPastMaxKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithMaxKeys(2), WithKeyPolicy("static", Policy{IdleTTL: time.Minute}))
		static := b.Middleware("static")(newStatusHandler(200))
		keyed := b.KeyedMiddleware(func(r *http.Request) string { return r.URL.Path })(newStatusHandler(200))
		record(static, "/")
		time.Sleep(2 * time.Minute)
		b.Snapshot() // a sweep: the static key has been idle past its IdleTTL
		time.Sleep(2 * time.Minute)
		record(keyed, "/a") // keyed traffic fills the set
		record(keyed, "/b")
		if rec := record(static, "/"); rec.Code != 200 {
			t.Fatalf("static route: %d", rec.Code)
		}
		if n := b.untracked.Load(); n != 0 {
			t.Fatalf("%d requests untracked, want the static route to have its breaker back", n)
		}
		if err := b.ForceOpen("static", 0); err != nil {
			t.Fatal(err)
		}
		if rec := record(static, "/"); rec.Code != 503 || b.State("static") != StateForcedOpen {
			t.Fatalf("forced open: the route answered %d and the state is %v; control must be what requests see", rec.Code, b.State("static"))
		}
	})
}
