package httpbreaker

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// addMany adds n calls of kind to c from each of g goroutines, each call
// through the stripe of its P, as the request path does.
func addMany(c *counters, g, n, kind int) {
	together(g, func(int) {
		for range n {
			c.inc(kind, c.line())
		}
	})
}

func TestAKeyThatContendsGetsAStripePerP(t *testing.T) {
	var c counters
	for range promoteAfter - 1 {
		c.contended()
	}
	if c.striped.Load() != nil {
		t.Fatalf("striped after %d contended adds, want %d", promoteAfter-1, promoteAfter)
	}
	c.inc(countSuccess, 0)
	c.contended()
	s := c.striped.Load()
	if s == nil || len(s.lines) != stripeCount() {
		t.Fatalf("after %d contended adds: stripes %v, want one per P (%d)", promoteAfter, s, stripeCount())
	}
	c.inc(countSuccess, c.line())
	if got := c.kindTotal(countSuccess); got != 2 {
		t.Fatalf("counted %d, want the call before the promotion and the one after", got)
	}
	c.rolled(0, int64(time.Second))
	if c.striped.Load() != nil || c.hits.Load() != 0 {
		t.Fatal("a roll of a cold key kept its stripes or its contention count")
	}
}

// TestCallsOnEveryCoreAreCountedOnce adds from many goroutines at once, as
// a hot key gets them: whether or not they meet (and the key is promoted
// on the way), every call is counted once.
func TestCallsOnEveryCoreAreCountedOnce(t *testing.T) {
	var c counters
	addMany(&c, 8, 50_000, countSuccess)
	if got := c.kindTotal(countSuccess); got != 8*50_000 {
		t.Fatalf("counted %d, want %d", got, 8*50_000)
	}
}

func TestAQuietKeyStaysOneBlock(t *testing.T) {
	var c counters
	for range 100_000 {
		c.inc(countSuccess, c.line())
	}
	if c.striped.Load() != nil || c.kindTotal(countSuccess) != 100_000 {
		t.Fatalf("a key one goroutine uses: striped %v, counted %d", c.striped.Load() != nil, c.kindTotal(countSuccess))
	}
}

// TestStripesFollowGOMAXPROCSAndCountExactly raises and lowers GOMAXPROCS
// while calls are counted: a striped key gets more stripes at its next
// roll after a raise, goes back to one block when cold, and no call is lost
// or counted twice on the way.
func TestStripesFollowGOMAXPROCSAndCountExactly(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	var c counters
	runtime.GOMAXPROCS(2)
	c.promote()
	if n := len(c.striped.Load().lines); n != 2 {
		t.Fatalf("%d stripes at GOMAXPROCS 2", n)
	}
	var (
		wg    sync.WaitGroup
		stop  = make(chan struct{})
		mu    sync.Mutex
		added uint64
	)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var n uint64
			defer func() {
				mu.Lock()
				added += n
				mu.Unlock()
			}()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c.inc(countFailure, c.line())
				n++
			}
		}()
	}
	busy := uint64(1e9) // calls in the bucket: hot, never demoted
	for _, procs := range []int{8, 4, 16, 2, 8} {
		runtime.GOMAXPROCS(procs)
		time.Sleep(10 * time.Millisecond)
		c.rolled(busy, int64(time.Second))
		if n := len(c.striped.Load().lines); n < stripeCount() {
			t.Fatalf("GOMAXPROCS %d: %d stripes after a roll, want at least %d", procs, n, stripeCount())
		}
	}
	c.rolled(0, int64(time.Second)) // cold: demoted (the adders may promote it again)
	time.Sleep(10 * time.Millisecond)
	close(stop)
	wg.Wait()
	for range 3 { // demoted, then the retired stripes folded two rolls later
		c.rolled(0, int64(time.Second))
	}
	if c.retired != nil || c.striped.Load() != nil {
		t.Fatal("a cold key kept its stripes three rolls on")
	}
	if got := c.kindTotal(countFailure); got != added {
		t.Fatalf("counted %d failures, %d were added", got, added)
	}
}

// TestMemoryPerKeyDoesNotGrowWithTheCores holds issue 28's bound: a key
// that is not hot costs at most 1 KiB of heap, at GOMAXPROCS 64 as at 2.
func TestMemoryPerKeyDoesNotGrowWithTheCores(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, procs := range []int{2, 64} {
		runtime.GOMAXPROCS(procs)
		// The least of a few tries: what else the process frees or
		// allocates meanwhile (goroutines other tests left) only blurs one.
		least := -1.0
		for try := 0; try < 5 && (least < 0 || least > 1024); try++ {
			if perKey := heapPerKey(t, 10_000); perKey > 0 && (least < 0 || perKey < least) {
				least = perKey
			}
		}
		if least < 0 || least > 1024 {
			t.Errorf("GOMAXPROCS %d: %.0f bytes of heap a key, want at most 1024", procs, least)
		}
	}
}

// heapPerKey returns the heap that each of n keys holds once it has served
// a request: its breaker, its window's ring, its entry in the key map.
func heapPerKey(t testing.TB, n int) float64 {
	patterns, _ := keyPatterns(n)
	w, r := benchRequest()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	set := benchSet(t, WithMaxKeys(n))
	h := set.KeyedMiddleware(RoutePattern)(okHandler)
	for _, p := range patterns {
		r.Pattern = p
		h.ServeHTTP(w, r)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(set)
	return (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / float64(n)
}
