package redisstate_test

import (
	"context"
	"errors"
	"fmt"
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
		keys := append(redisstate.KeysOf(s, key), redisstate.SentKeyOf(s, redisstate.ShardOf(key), "pod-7"),
			redisstate.IndexOf(s, redisstate.ShardOf(key)))
		if len(keys) != 6 {
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
	if len(slots) < 4 {
		t.Errorf("7 breaker keys in %d slots: the keys are not spread over the shards", len(slots))
	}
	// The keys of one shard share a slot, so that one script call carries
	// them all.
	byShard := map[int]int{}
	for i := range 2000 {
		key := fmt.Sprintf("key-%d", i)
		sh, k := redisstate.ShardOf(key), redisstate.KeysOf(s, key)[0]
		if want, ok := byShard[sh]; ok && slot(k) != want {
			t.Fatalf("shard %d is in slots %d and %d", sh, want, slot(k))
		}
		byShard[sh] = slot(k)
	}
	if len(byShard) != redisstate.Shards {
		t.Errorf("2000 keys in %d shards, want all %d", len(byShard), redisstate.Shards)
	}
}

func TestLeaseOfADeadReplicaExpires(t *testing.T) {
	srv := startRedis(t)
	s := newStore(t, srv.client(t))
	sync := syncer(t, s)
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
	// A window of the wrong type, a hold that does not parse, a command of
	// no known kind, an index and a record of the last sync of the wrong
	// type.
	raw.Set(ctx, keys[win], "garbage", 0)
	raw.HSet(ctx, keys[hold], "phase", "open", "gen", "abc", "until", "soon")
	raw.HSet(ctx, keys[cmd], "at", 3, "kind", "explode", "for", 0, "by", "nobody", "replica", "x")
	index := redisstate.IndexOf(s, redisstate.ShardOf("pay"))
	raw.Set(ctx, index, "garbage", 0)
	sent := redisstate.SentKeyOf(s, redisstate.ShardOf("search"), "r1")
	raw.LPush(ctx, sent, "x")
	// And a second key whose fields break the script's arithmetic: sums
	// that are not numbers, reports that do not parse or are dated in the
	// future, a date that is not an integer.
	other := redisstate.KeysOf(s, "search")
	raw.HSet(ctx, other[win], "S", "many", "F", "1e300", "N", "-3", "U", "nan", "r:mallory", "garbage",
		"r:eve", "1 1 99999999999999 5 5 1", "x", "y", "e", "9007199254740992") // e: its TTL was set for ever
	raw.HSet(ctx, other[cmd], "at", "1.5", "kind", "force_open", "for", 0)
	p := fleetPolicy()
	p.MaxOpenFor = 5 * time.Second
	up, sick := newUpstream(200), newUpstream(500)
	r := newReplica(t, srv.Addr(), "r1", p, map[string]*upstream{"pay": up, "search": sick})
	waitFor(t, "connected", func() bool { return r.set.FleetStatus().Connected })
	for range 3 {
		r.call("search")
	}
	read := syncer(t, s)
	waitFor(t, "search's 3 failures, and nothing else, in the fleet's window", func() bool {
		rp := read("observer", sharedstate.KeySync{Key: "search"})
		return rp.Failures == 3 && rp.Successes == 0 && rp.FailingReplicas == 1
	})
	if ttl := raw.PTTL(ctx, other[win]).Val(); ttl <= 0 {
		t.Errorf("a window that claimed its TTL was set for ever has none: %v", ttl)
	}
	if err := r.set.ForceOpen("search", time.Minute); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the fleet's ForceOpen written over the bad fields", func() bool {
		return raw.HGet(ctx, other[cmd], "kind").Val() == "force_open" && raw.HGet(ctx, other[cmd], "replica").Val() == "r1"
	})
	if strings.Contains(r.logs.String(), "could not be synced") {
		t.Errorf("bad fields made a sync fail:\n%s", r.logs.String())
	}
	for range 3 {
		if code := r.call("pay"); code != 200 {
			t.Fatalf("answered %d with bad data in Redis", code)
		}
	}
	waitFor(t, "the bad records dropped", func() bool {
		return raw.Type(ctx, keys[win]).Val() != "string" && raw.Exists(ctx, keys[hold], keys[cmd]).Val() == 0 &&
			raw.Type(ctx, sent).Val() != "list" && raw.Type(ctx, index).Val() != "string"
	})
	if st := r.set.State("pay"); st != httpbreaker.StateClosed {
		t.Errorf("bad data put the key in %v", st)
	}

	// A hold with a reason of no known kind reaches the set, which ignores
	// it and says so once.
	now, _ := raw.Time(ctx).Result()
	raw.HSet(ctx, keys[hold], "phase", "open", "gen", now.UnixMicro(), "until", now.Add(time.Second).UnixMilli(),
		"nominal", 1000, "reason", "<script>", "replica", "mallory", "probed", 0, "failed", 0)
	raw.Publish(ctx, redisstate.ChannelOf(s), "pay")
	waitFor(t, "the bad hold logged", func() bool { return strings.Contains(r.logs.String(), `hold reason: \"<script>\"`) })
	time.Sleep(300 * time.Millisecond) // several syncs: the bad data is logged once
	if n := strings.Count(r.logs.String(), "<script>"); n != 1 {
		t.Errorf("the bad hold was logged %d times, want once", n)
	}
	if st := r.set.State("pay"); st != httpbreaker.StateClosed {
		t.Errorf("a hold of no known reason put the key in %v", st)
	}
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
