package httpbreaker

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestRecentIsAtMostATickOldWhileCallsAskForIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &clock{epoch: time.Now()}
		defer c.stop()
		for range 1000 {
			time.Sleep(time.Millisecond + 7*time.Microsecond)
			if now, r := c.now(), c.recent(); r > now || now-r > int64(coarseTick) {
				t.Fatalf("recent %v at %v: %v old, want at most %v", r, now, time.Duration(now-r), coarseTick)
			}
		}
	})
}

func TestTheClockStopsTickingWhenNoCallAsks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &clock{epoch: time.Now()}
		c.recent()
		time.Sleep(keepTicking + askEvery + 2*coarseTick)
		c.mu.Lock()
		ticking := c.ticking
		c.mu.Unlock()
		if ticking || c.coarse.Load() != 0 {
			t.Fatal("the clock still ticks a second after the last call asked")
		}
		if now, r := c.now(), c.recent(); r != now {
			t.Fatalf("recent after a quiet spell is %v, want the clock's %v", r, now)
		}
		c.stop()
		time.Sleep(time.Second)
		if c.coarse.Load() != 0 {
			t.Fatal("a stopped clock ticks")
		}
		if now, r := c.now(), c.recent(); r != now {
			t.Fatalf("recent on a stopped clock is %v, want the clock's %v", r, now)
		}
	})
}

// TestASuccessJustAfterABucketBeganCountsInIt: the closed path's reading
// may be a tick old, but not at a bucket's end, where the window reads the
// clock: a success a nanosecond into a bucket counts in that bucket, and
// stays in the window as long as it does.
func TestASuccessJustAfterABucketBeganCountsInIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newSet(t, WithPolicy(Policy{Window: 10 * time.Second, Buckets: 10}))
		defer b.Close()
		h := b.Middleware("k")(newStatusHandler(200))
		time.Sleep(time.Millisecond) // the clock's ticks fall between whole seconds
		for range 15 {
			record(h, "/") // keeps the clock ticking
			time.Sleep(100*time.Millisecond + time.Millisecond/3)
		}
		time.Sleep(time.Duration(int64(time.Second)-b.now()%int64(time.Second)) + time.Nanosecond)
		if b.clock.coarse.Load() == 0 {
			t.Fatal("the clock stopped ticking: the test checks nothing")
		}
		record(h, "/")
		time.Sleep(9 * time.Second) // the bucket it ended in is the oldest in the window
		if got := status(t, b, "k").Window.Successes; got != 1 {
			t.Fatalf("%d successes in the window, want the one of the bucket still in it", got)
		}
	})
}
