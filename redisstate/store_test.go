package redisstate_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/httpbreaker/httpbreaker"
	"github.com/httpbreaker/httpbreaker/redisstate"
	"github.com/httpbreaker/httpbreaker/sharedstate"
	"github.com/redis/go-redis/v9"
)

func TestNewReportsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		opts []redisstate.Option
		want string
	}{
		{[]redisstate.Option{redisstate.WithPrefix("")}, "WithPrefix"},
		{[]redisstate.Option{redisstate.WithPrefix("a{b}")}, "no braces"},
		{[]redisstate.Option{redisstate.WithPrefix("has space")}, "printable"},
		{[]redisstate.Option{redisstate.WithSyncInterval(time.Millisecond)}, "WithSyncInterval(1ms)"},
		{[]redisstate.Option{nil}, "nil Option"},
	} {
		c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
		_, err := redisstate.New(c, tc.opts...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "redisstate") {
			t.Errorf("New with %d options: %v, want an error naming %q", len(tc.opts), err, tc.want)
		}
		c.Close()
	}
	if _, err := redisstate.New(nil); err == nil ||
		!strings.Contains(err.Error(), "nil redis client") {
		t.Errorf("a nil client: %v", err)
	}
}

// slot is Redis Cluster's hash slot of a key: CRC16 (XMODEM) of its hash
// tag, the part between the first { and the next }, if that is not empty,
// else of the whole key.
func slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

func TestKeysShareOneClusterSlot(t *testing.T) {
	if slot("123456789") != 12739 { // the check value of Redis Cluster's spec
		t.Fatal("slot() is not Redis Cluster's hash slot")
	}
	c := redis.NewClient(&redis.Options{})
	defer c.Close()
	s := newStore(t, c, redisstate.WithPrefix("fleet-a"))
	slots := map[int]bool{}
	for _, key := range []string{"search", "GET /api/{plugin}/", "}{", "a}b", "{", "catalog:v2", "ключ"} {
		keys := redisstate.KeysOf(s, key)
		if len(keys) != 4 {
			t.Fatalf("%d keys", len(keys))
		}
		for _, k := range keys[1:] {
			if slot(k) != slot(keys[0]) {
				t.Errorf("key %q: %s is in slot %d, %s in slot %d: a cluster cannot run the sync script on them",
					key, k, slot(k), keys[0], slot(keys[0]))
			}
		}
		slots[slot(keys[0])] = true
	}
	if len(slots) < 5 {
		t.Errorf("7 breaker keys in %d slots: the hash tag does not hold the breaker key", len(slots))
	}
}

func TestLeaseOfADeadReplicaExpires(t *testing.T) {
	srv := startRedis(t)
	s := newStore(t, srv.client(t))
	ctx := context.Background()
	sync := func(replica string, ks sharedstate.KeySync) sharedstate.Reply {
		t.Helper()
		ks.Key, ks.Window, ks.Buckets, ks.Slots = "k", 10*time.Second, 10, 1
		sy := &sharedstate.Sync{Replica: replica, Live: time.Second, Keys: []sharedstate.KeySync{ks}}
		if err := s.Sync(ctx, sy); err != nil {
			t.Fatal(err)
		}
		if err := sy.Keys[0].Err; err != nil {
			t.Fatal(err)
		}
		return sy.Keys[0].Reply
	}
	fl := sync("a", sharedstate.KeySync{Trip: &sharedstate.Hold{Open: 50 * time.Millisecond, Nominal: 50 * time.Millisecond,
		Reason: "failure_rate"}})
	if fl.Hold == nil || fl.Hold.Closed || fl.Hold.Open <= 0 || fl.Hold.Replica != "a" {
		t.Fatalf("after a trip: %+v", fl.Hold)
	}
	if fl := sync("ghost", sharedstate.KeySync{Lease: time.Second}); fl.Lease != "" {
		t.Fatalf("a lease during the cooldown: %q", fl.Lease)
	}
	time.Sleep(100 * time.Millisecond)
	ghost := sync("ghost", sharedstate.KeySync{Lease: 300 * time.Millisecond})
	if ghost.Lease == "" || ghost.Hold.Open > 0 {
		t.Fatalf("no lease once half-open: %+v", ghost)
	}
	// ghost dies holding the only slot: nobody else probes until it ends.
	if fl := sync("b", sharedstate.KeySync{Lease: time.Second}); fl.Lease != "" {
		t.Fatalf("a second lease for one slot: %q", fl.Lease)
	}
	time.Sleep(400 * time.Millisecond)
	b := sync("b", sharedstate.KeySync{Lease: time.Second})
	if b.Lease == "" {
		t.Fatal("the dead replica's lease did not expire")
	}
	// ghost's late result counts for nothing; b's success closes the key.
	late := sync("ghost", sharedstate.KeySync{Probe: &sharedstate.ProbeResult{Generation: ghost.Hold.Generation,
		Lease: ghost.Lease, Outcome: sharedstate.Failed, Reopen: time.Minute, Nominal: time.Minute}})
	if late.Hold == nil || late.Hold.Generation != ghost.Hold.Generation {
		t.Fatalf("an expired lease's failure reopened the key: %+v", late.Hold)
	}
	fl = sync("b", sharedstate.KeySync{Probe: &sharedstate.ProbeResult{Generation: b.Hold.Generation, Lease: b.Lease,
		Outcome: sharedstate.Succeeded}})
	if fl.Hold == nil || !fl.Hold.Closed {
		t.Fatalf("the probe's success did not close the key: %+v", fl.Hold)
	}
}

func TestHostileDataIsIgnored(t *testing.T) {
	srv := startRedis(t)
	raw := srv.client(t)
	ctx := context.Background()
	s := newStore(t, raw)
	keys := redisstate.KeysOf(s, "pay")
	// A window of the wrong type, a hold that does not parse, a manual
	// change of no known kind.
	raw.Set(ctx, keys[0], "garbage", 0)
	raw.HSet(ctx, keys[1], "phase", "open", "gen", "abc", "until", "soon")
	raw.HSet(ctx, keys[3], "v", 3, "kind", "explode", "by", "nobody", "replica", "x")
	// And a second key whose fields break the script's arithmetic: a count
	// that is not a number, a version that is not an integer.
	other := redisstate.KeysOf(s, "search")
	raw.HSet(ctx, other[0], "1:r9:f", "many", "x", "y")
	raw.HSet(ctx, other[3], "v", "1.5", "kind", "force_open")
	p := fleetPolicy()
	p.MaxOpenFor = 5 * time.Second
	up := newUpstream(200)
	r := newReplica(t, srv.Addr(), "r1", p, map[string]*upstream{"pay": up, "search": up})
	waitFor(t, "connected", func() bool { return r.set.FleetStatus().Connected })
	if err := r.set.ForceOpen("search", time.Minute); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the fleet's ForceOpen written over the bad fields", func() bool {
		return raw.HGet(ctx, other[3], "kind").Val() == "force_open" && raw.HGet(ctx, other[3], "v").Val() == "1"
	})
	if typ := raw.HGet(ctx, other[0], "1:r9:f").Val(); typ != "" {
		t.Errorf("a window field that is not a count is still there: %q", typ)
	}
	if strings.Contains(r.logs.String(), "could not be synced") {
		t.Errorf("bad fields made a sync fail:\n%s", r.logs.String())
	}
	for range 3 {
		if code := r.call("pay"); code != 200 {
			t.Fatalf("answered %d with bad data in Redis", code)
		}
	}
	waitFor(t, "the bad manual change logged", func() bool { return strings.Contains(r.logs.String(), `command kind: \"explode\"`) })
	if typ := raw.Type(ctx, keys[0]).Val(); typ == "string" {
		t.Error("the window of the wrong type is still there")
	}
	time.Sleep(300 * time.Millisecond) // several syncs: the bad data is logged once
	if n := strings.Count(r.logs.String(), "explode"); n != 1 {
		t.Errorf("the bad manual change was logged %d times, want once", n)
	}

	// A hold that would last ten days holds for MaxOpenFor at most.
	raw.Del(ctx, keys[3])
	now, _ := raw.Time(ctx).Result()
	raw.HSet(ctx, keys[1], "phase", "open", "gen", 7, "until", now.Add(240*time.Hour).UnixMilli(), "nominal", 1000,
		"reason", "failure_rate", "replica", "mallory", "probed", 0)
	raw.Publish(ctx, redisstate.ChannelOf(s), "pay")
	waitFor(t, "the hold applied", func() bool { return r.set.State("pay") == httpbreaker.StateOpen })
	if st := r.set.Snapshot()[0]; st.RetryAfter > p.MaxOpenFor {
		t.Errorf("a hold from Redis keeps the key open for %v, more than MaxOpenFor %v", st.RetryAfter, p.MaxOpenFor)
	}

	// A hold with a reason of no known kind is ignored.
	raw.HSet(ctx, keys[1], "gen", 8, "reason", "<script>")
	raw.Publish(ctx, redisstate.ChannelOf(s), "pay")
	waitFor(t, "the bad hold logged", func() bool { return strings.Contains(r.logs.String(), `hold reason: \"<script>\"`) })
}

func TestPrefixesKeepFleetsApart(t *testing.T) {
	srv := startRedis(t)
	p := fleetPolicy()
	p.OpenFor, p.MaxOpenFor = time.Minute, time.Hour
	up := newUpstream(500)
	a := fleet(t, srv.Addr(), 2, p, map[string]*upstream{"search": up}, redisstate.WithPrefix("fleet-a"))
	b := fleet(t, srv.Addr(), 2, p, map[string]*upstream{"search": up}, redisstate.WithPrefix("fleet-b"))
	for _, r := range a {
		for range 12 {
			r.call("search")
		}
	}
	waitFor(t, "fleet a open", func() bool { return all(a, "search", httpbreaker.StateOpen) })
	time.Sleep(300 * time.Millisecond)
	if !all(b, "search", httpbreaker.StateClosed) {
		t.Fatalf("fleet b saw fleet a's trip: %s", states(b, "search"))
	}
	if f := b[0].set.FleetStatus(); f.Replicas != 2 {
		t.Errorf("fleet b counts %d live replicas, want its own 2", f.Replicas)
	}
	// Every key the fleets made expires by itself.
	raw := srv.client(t)
	keys, err := raw.Keys(context.Background(), "*").Result()
	if err != nil || len(keys) < 4 {
		t.Fatalf("keys in Redis: %v %v", keys, err)
	}
	for _, k := range keys {
		if !strings.Contains(k, "fleet-a") && !strings.Contains(k, "fleet-b") {
			t.Errorf("key %q is outside the fleets' prefixes", k)
		}
		if ttl := raw.PTTL(context.Background(), k).Val(); ttl <= 0 || ttl > 20*time.Minute {
			t.Errorf("key %q has TTL %v, want one of at most 20m", k, ttl)
		}
	}
}

// proxy forwards TCP connections to a Redis, holding every chunk of data
// for delay (a Redis far away, or overloaded), and can cut the replicas
// behind it off (a network partition).
type proxy struct {
	addr  string
	delay time.Duration
	mu    sync.Mutex
	cut   bool
	conns []net.Conn
	wg    sync.WaitGroup
}

// newProxy starts a proxy to target, stopped when the test ends.
func newProxy(t *testing.T, target string, delay time.Duration) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: l.Addr().String(), delay: delay}
	t.Cleanup(func() {
		l.Close()
		p.partition(true)
		p.wg.Wait()
	})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			cut := p.cut
			p.mu.Unlock()
			up, err := net.Dial("tcp", target)
			if cut || err != nil {
				c.Close()
				if up != nil {
					up.Close()
				}
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			p.wg.Add(2)
			go p.pipe(up, c)
			go p.pipe(c, up)
		}
	}()
	return p
}

// partition cuts the replicas behind the proxy off from Redis (every
// connection closed, new ones refused), or lets them through again.
func (p *proxy) partition(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	defer dst.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			time.Sleep(p.delay)
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				src.Close()
			}
			return
		}
	}
}

func TestReplicaThatReconnectsLearnsTheHoldsAtOnce(t *testing.T) {
	srv := startRedis(t)
	p := fleetPolicy()
	p.OpenFor, p.MaxOpenFor = time.Minute, time.Hour
	up := newUpstream(500)
	ups := map[string]*upstream{"search": up}
	rs := fleet(t, srv.Addr(), 2, p, ups)
	px := newProxy(t, srv.Addr(), 0)
	cutOff := newReplica(t, px.addr, "cut-off", p, ups)
	waitFor(t, "connected", func() bool { return cutOff.set.FleetStatus().Connected })
	px.partition(true)
	waitFor(t, "the replica sees itself cut off", func() bool { return !cutOff.set.FleetStatus().Connected })
	// The fleet trips while it is cut off: it hears no announcement.
	for _, r := range rs {
		for range 12 {
			r.call("search")
		}
	}
	waitFor(t, "the others open", func() bool { return all(rs, "search", httpbreaker.StateOpen) })
	if st := cutOff.set.State("search"); st != httpbreaker.StateClosed {
		t.Fatalf("the cut-off replica is %v", st)
	}
	px.partition(false)
	waitFor(t, "the reconnected replica holds the key", func() bool { return cutOff.set.State("search") == httpbreaker.StateOpen })
}

func TestSlowRedisSlowsNoRequest(t *testing.T) {
	srv := startRedis(t)
	// 100ms each way: every sync takes 200ms or more, four sync intervals.
	proxy := newProxy(t, srv.Addr(), 100*time.Millisecond).addr
	p := fleetPolicy()
	p.OpenFor, p.MaxOpenFor = time.Minute, time.Hour
	up := newUpstream(500)
	ok := newUpstream(200)
	rs := fleet(t, proxy, 2, p, map[string]*upstream{"search": up, "ok": ok})
	// Every request finishes while the syncs crawl (one stuck on Redis
	// would take 200ms or hang), and the fleet still trips.
	for range 500 {
		for _, r := range rs {
			if code := r.call("ok"); code != 200 {
				t.Fatalf("answered %d with a slow Redis", code)
			}
		}
	}
	for _, r := range rs {
		for range 12 {
			r.call("search")
		}
	}
	t.Logf("fleet: %+v; logs: %s", rs[0].set.FleetStatus(), rs[0].logs.String())
	waitFor(t, "a fleet trip through the slow Redis: "+states(rs, "search"), func() bool {
		return all(rs, "search", httpbreaker.StateOpen)
	})
}
