// Package redisstate shares the state of httpbreaker's breakers among the
// replicas of a fleet, through Redis: plug a Store into a set with
// httpbreaker.WithSharedState.
//
//	rdb := redis.NewClient(&redis.Options{Addr: "redis:6379", ContextTimeoutEnabled: true})
//	store, err := redisstate.New(rdb)
//	if err != nil { ... }
//	if err := store.Check(ctx); err != nil { ... } // optional: fail fast at startup
//	breakers, err := httpbreaker.New(httpbreaker.WithSharedState(store))
//	if err != nil { ... }
//	defer breakers.Close()
//
// No request waits on Redis. Each replica syncs in the background, every
// SyncInterval (and soon after something changed), in one pipelined round
// trip: a heartbeat, and the keys with news for the fleet in a few script
// calls (on one server, one per 256 keys; on a Cluster, one per shard, at
// most Shards). A key that only succeeds has no news: a replica reports its
// window of a key when its failures change, and every replica reports at
// every sync only while a fleet-wide trip is possible. While Redis is
// unreachable the replica's breakers work alone.
//
// A sync gives up after five intervals or two seconds, whichever is longer,
// and the replica counts as cut off from the fleet until one succeeds. For
// go-redis to honour that deadline on a Redis that stopped answering, make
// the client with ContextTimeoutEnabled; its ReadTimeout bounds it
// otherwise (three seconds by default), and so bounds Breakers.Close. A
// client's retries (go-redis retries a command 3 times by default) are
// safe: a sync sent twice is applied once.
//
// Everything lives under the prefix (WithPrefix). A breaker key's state is
// four Redis keys that share the hash tag of the key's shard, so that a
// Redis Cluster keeps a shard on one node and one script call can update
// all of its keys atomically; a shard has an index of the keys the fleet
// holds something for, and a record per replica of its last sync applied:
//
//	{<prefix>:<shard>}:rep:<replica> the session and number of the replica's last sync whose requests were applied
//	{<prefix>:<shard>}:idx           the keys of the shard with a hold, a command or a gathering
//	{<prefix>:<shard>}:<key>:win     the fleet's window: each replica's latest report of its own, and their sums
//	{<prefix>:<shard>}:<key>:hold    the fleet-wide hold on the key, if any
//	{<prefix>:<shard>}:<key>:leases  the probe leases of the hold
//	{<prefix>:<shard>}:<key>:cmd     the latest manual command (ForceOpen, ForceClose, Release, Reset, Probe)
//	{<prefix>}:replicas              the replicas that synced lately (and :v, the version of that set)
//	<prefix>:events                  the pub/sub channel that announces changes
//
// Every key has a TTL, renewed while the fleet uses it: a fleet that goes
// away leaves nothing behind after ten minutes. Times are Redis's (its TIME
// command, read inside the scripts), never a replica's, so replicas whose
// clocks disagree share holds, windows and the order of commands exactly.
//
// The fleet's state must not be evicted while it is in use: run Redis with
// a maxmemory-policy of noeviction or volatile-* (every key here has a
// TTL). With an allkeys-* policy an evicted record is treated as lost: the
// breakers fail safe (a hold ends no sooner than this replica's own view of
// it, the quorum does not drop, a lost command forces nothing), and the
// store says so once, in the set's log.
package redisstate

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/httpbreaker/httpbreaker/sharedstate"
	"github.com/redis/go-redis/v9"
)

// DefaultSyncInterval is how often a replica syncs when nothing changed.
const DefaultSyncInterval = 200 * time.Millisecond

// DefaultPrefix starts the name of every Redis key the store uses.
const DefaultPrefix = "httpbreaker"

// Shards is how many hash tags a fleet's breaker keys are spread over. A
// sync makes one script call per shard that has keys with news, so that
// its work grows with the shards, not with the keys; a Redis Cluster
// spreads the shards over its masters.
const Shards = 64

// Store is a sharedstate.Store on Redis. Make one per Breakers with New; a
// Store is safe for concurrent use.
type Store struct {
	client redis.UniversalClient
	// clustered: the client spreads keys over servers by slot (a
	// ClusterClient, a Ring), so that a script call carries one shard.
	clustered bool
	prefix    string
	interval  time.Duration

	mu      sync.Mutex
	live    []string           // the live replicas at the last sync
	liveVer string             // the version of their set
	nlive   int                // how many they are
	runID   string             // the server's run id at the last sync
	watch   context.CancelFunc // ends the current subscription, for a new server
	checked bool               // the eviction policy has been read
	warning string             // what the eviction policy check found, once
	// The server's clock (µs) read by the last heartbeat, and this
	// process's monotonic clock then: a manual change is dated on the
	// server's clock from them, whenever its sync arrives.
	clockUs int64
	clockAt time.Time
}

// Option configures a Store.
type Option func(*Store) error

// WithPrefix sets the prefix of every Redis key and channel the store
// uses: fleets with different prefixes share one Redis without seeing each
// other. It must be 1 to 64 bytes of printable ASCII without braces, which
// would break the keys' hash tags. The default is DefaultPrefix.
func WithPrefix(prefix string) Option {
	return func(s *Store) error {
		if prefix == "" || len(prefix) > 64 || strings.ContainsAny(prefix, "{}") || !printable(prefix) {
			return fmt.Errorf("WithPrefix(%q): want 1 to 64 bytes of printable ASCII, no braces", prefix)
		}
		s.prefix = prefix
		return nil
	}
}

// WithSyncInterval sets how often each replica syncs with Redis when
// nothing changed: the delay before a replica hears of another's trip
// when pub/sub is slow, and the rate of Redis calls (one pipelined round
// trip per interval per replica). 10ms to 1m; the default is
// DefaultSyncInterval.
func WithSyncInterval(d time.Duration) Option {
	return func(s *Store) error {
		if d < 10*time.Millisecond || d > time.Minute {
			return fmt.Errorf("WithSyncInterval(%v): want 10ms to 1m", d)
		}
		s.interval = d
		return nil
	}
}

// New returns a Store on client: a redis.Client, a ClusterClient or a
// FailoverClient (Sentinel). It returns an error naming every invalid
// option. It does not reach Redis: Check does.
func New(client redis.UniversalClient, opts ...Option) (*Store, error) {
	_, single := client.(*redis.Client)
	s := &Store{client: client, clustered: !single, prefix: DefaultPrefix, interval: DefaultSyncInterval}
	var errs []error
	if client == nil {
		errs = append(errs, errors.New("nil redis client"))
	}
	for _, opt := range opts {
		if opt == nil {
			errs = append(errs, errors.New("nil Option"))
		} else if err := opt(s); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("redisstate: %w", err)
	}
	return s, nil
}

// Interval returns the sync interval.
func (s *Store) Interval() time.Duration { return s.interval }

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// shard returns the shard of a breaker key.
func shard(key string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % Shards)
}

// keys returns the Redis keys of a breaker key, in the order the sync
// script takes them: window, hold, leases, command. They share the hash tag
// of the key's shard.
func (s *Store) keys(key string) []string {
	tag := "{" + s.prefix + ":" + strconv.Itoa(shard(key)) + "}:" + key
	return []string{tag + ":win", tag + ":hold", tag + ":leases", tag + ":cmd"}
}

// sentKey returns the Redis key of the last sync of a replica whose
// requests for the keys of a shard were applied.
func (s *Store) sentKey(shard int, replica string) string {
	return "{" + s.prefix + ":" + strconv.Itoa(shard) + "}:rep:" + replica
}

// indexKey returns the Redis key of a shard's index: the breaker keys of
// the shard for which the fleet holds something.
func (s *Store) indexKey(shard int) string {
	return "{" + s.prefix + ":" + strconv.Itoa(shard) + "}:idx"
}

func (s *Store) replicasKey() string { return "{" + s.prefix + "}:replicas" }

// channel returns the pub/sub channel on which changes are announced.
func (s *Store) channel() string { return s.prefix + ":events" }

// Sync sends a replica's news and reads what the fleet holds, in one
// pipelined round trip: a heartbeat, and one script call per shard of the
// keys it carries.
func (s *Store) Sync(ctx context.Context, sy *sharedstate.Sync) error {
	err := s.sync(ctx, sy, false)
	if isNoScript(err) {
		// A Redis that restarted, or a node that never ran the scripts:
		// send them whole, which caches them for the next syncs.
		err = s.sync(ctx, sy, true)
	}
	if err != nil {
		return explain(err)
	}
	s.checkEviction(ctx, sy)
	return nil
}

func isNoScript(err error) bool {
	return err != nil && strings.Contains(err.Error(), "NOSCRIPT")
}

func (s *Store) sync(ctx context.Context, sy *sharedstate.Sync, whole bool) error {
	run := (*redis.Script).EvalSha
	if whole {
		run = (*redis.Script).Eval
	}
	// One round trip: the heartbeat, the script calls of plan, and the
	// shards' indexes if asked. The live replicas, whose reports alone
	// count, are those the last heartbeat heard, and this one.
	pipe := s.client.Pipeline()
	live, ver := s.liveReplicas(sy.Replica)
	hb := run(heartbeat, ctx, pipe, []string{s.replicasKey(), s.replicasKey() + ":v"}, sy.Replica, sy.Live.Milliseconds(), ver)
	dated := s.dater()
	calls := s.plan(sy)
	// Before a heartbeat was heard, how many replicas are live is not known:
	// only its time completes a gathering, not the count of reports.
	nlive := len(live)
	if !s.heardOnce() {
		nlive = 1 << 20
	}
	head := []any{sy.Replica, strconv.FormatUint(sy.Session, 36), sy.Seq, s.channel(), strings.Join(live, "\n") + "\n",
		nlive, max(s.interval.Milliseconds(), 1)}
	for i := range calls {
		c := &calls[i]
		var keys []string
		args := append(append([]any(nil), head...), len(c.groups))
		for _, g := range c.groups {
			args = append(args, len(g.keys))
		}
		for _, g := range c.groups {
			keys = append(keys, s.sentKey(g.shard, sy.Replica), s.indexKey(g.shard))
			for _, k := range g.keys {
				keys = append(keys, s.keys(sy.Keys[k].Key)...)
				args = append(args, keyArgs(&sy.Keys[k], dated)...)
			}
		}
		c.cmd = run(syncKeys, ctx, pipe, keys, args...)
	}
	var indexes []*redis.MapStringStringCmd
	if sy.Index {
		for sh := range Shards {
			indexes = append(indexes, pipe.HGetAll(ctx, s.indexKey(sh)))
		}
	}
	sent := time.Now()
	_, _ = pipe.Exec(ctx)
	reply, err := hb.Slice()
	if err != nil {
		return err
	}
	if sy.Replicas, err = s.heard(reply, sent); err != nil {
		return err
	}
	for _, c := range calls {
		reply, err := c.cmd.Slice()
		if err != nil {
			var rerr redis.Error
			if isNoScript(err) || !errors.As(err, &rerr) { // the connection or the scripts, not the keys
				return err
			}
			for _, i := range c.keys {
				sy.Keys[i].Err = explain(err)
			}
			continue
		}
		if len(reply) != replyLen*len(c.keys) {
			err := fmt.Errorf("redisstate: a sync reply of %d values for %d keys, want %d each", len(reply), len(c.keys), replyLen)
			for _, i := range c.keys {
				sy.Keys[i].Err = err
			}
			continue
		}
		for j, i := range c.keys {
			sy.Keys[i].Reply, sy.Keys[i].Err = parse(reply[j*replyLen : (j+1)*replyLen])
		}
	}
	for _, idx := range indexes {
		keys, err := idx.Result()
		if err != nil {
			var rerr redis.Error
			if errors.As(err, &rerr) && strings.HasPrefix(err.Error(), "WRONGTYPE") {
				continue // not an index: the script deletes what is not what it should be
			}
			return err
		}
		for key := range keys {
			sy.Indexed = append(sy.Indexed, key)
		}
	}
	return nil
}

// A call is one script call of a sync: the groups of keys it carries, one
// group per shard, a shard's keys all in one call.
type call struct {
	groups []group
	keys   []int // the indices in Sync.Keys of the keys carried, in order
	cmd    *redis.Cmd
}

type group struct {
	shard int
	keys  []int
}

// maxCallKeys is how many keys one script call carries at most (a shard
// with more goes in a call of its own): a script blocks the server while
// it runs, a few milliseconds at most.
const maxCallKeys = 256

// plan groups the keys of a sync into script calls. A Redis Cluster needs
// one call per shard, whose keys share a slot; one server takes many
// shards in one call, which costs it far less than a call each.
func (s *Store) plan(sy *sharedstate.Sync) []call {
	byShard := map[int][]int{}
	for i := range sy.Keys {
		sh := shard(sy.Keys[i].Key)
		byShard[sh] = append(byShard[sh], i)
	}
	shards := slices.Sorted(maps.Keys(byShard))
	var calls []call
	for _, sh := range shards {
		g := group{shard: sh, keys: byShard[sh]}
		if n := len(calls); s.clustered || n == 0 || len(calls[n-1].keys)+len(g.keys) > maxCallKeys {
			calls = append(calls, call{})
		}
		c := &calls[len(calls)-1]
		c.groups = append(c.groups, g)
		c.keys = append(c.keys, g.keys...)
	}
	return calls
}

// heardOnce reports whether a heartbeat's reply has been heard.
func (s *Store) heardOnce() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live != nil
}

// liveReplicas returns the replicas the last heartbeat heard, and self,
// and the version of their set.
func (s *Store) liveReplicas(self string) ([]string, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Contains(s.live, self) {
		return s.live, s.liveVer // replaced, never changed in place
	}
	return append(s.live[:len(s.live):len(s.live)], self), s.liveVer
}

// heard reads the heartbeat's reply to a pipeline sent at sent: the
// server's run id, its clock, and the live replicas (their names only if
// their set changed), and returns how many replicas are live. A new run id
// (a failover, a restart) ends the current subscription, which Watch then
// makes again, on the server the address now leads to.
func (s *Store) heard(reply []any, sent time.Time) (int, error) {
	if len(reply) != 5 {
		return 0, fmt.Errorf("redisstate: a heartbeat reply of %d values, want 5", len(reply))
	}
	run, _ := reply[0].(string)
	names, named := reply[1].([]any)
	clockUs, _ := reply[2].(int64)
	ver, _ := reply[3].(string)
	n, _ := reply[4].(int64)
	var live []string
	if named {
		live = make([]string, 0, len(names))
		for _, n := range names {
			if name, ok := n.(string); ok {
				live = append(live, name)
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runID != "" && run != s.runID {
		if s.watch != nil {
			s.watch()
		}
		s.checked = false // another server: its policy may differ
		if live == nil {
			s.liveVer = "" // its set's versions are not comparable: the names next time
		}
	}
	s.runID = run
	if live != nil {
		s.live, s.liveVer = live, ver
	}
	s.nlive = max(int(n), len(s.live))
	// The server read its clock between the pipeline's sending and its
	// reply: the middle is the best guess, off by half a round trip at most.
	if clockUs > 0 {
		now := time.Now()
		s.clockUs, s.clockAt = clockUs, sent.Add(now.Sub(sent)/2)
	}
	return s.nlive, nil
}

// dater returns what dates a manual change on the server's clock, in
// microseconds, from how long ago it was made: the server's clock at the
// last heartbeat plus the time this process's monotonic clock measured
// since, minus the change's age. It returns 0 (the script then dates the
// change by its age when the sync arrives) before any heartbeat was heard.
func (s *Store) dater() func(age time.Duration) int64 {
	s.mu.Lock()
	clockUs, clockAt := s.clockUs, s.clockAt
	s.mu.Unlock()
	if clockUs == 0 {
		return func(time.Duration) int64 { return 0 }
	}
	return func(age time.Duration) int64 {
		return max(clockUs+(time.Since(clockAt)-age).Microseconds(), 1)
	}
}

// keyArgs returns the sync script's 30 values for ks; dated dates its
// command on the server's clock.
func keyArgs(ks *sharedstate.KeySync, dated func(age time.Duration) int64) []any {
	ms := func(d time.Duration) int64 { return max(d.Milliseconds(), 0) }
	args := []any{
		ks.Key, ms(ks.Window), // 1-2
		flag(ks.Report), ks.Successes, ks.Failures, flag(ks.Over), // 3-6: the report
		max(ks.TripFailures, 0), max(ks.Quorum, 1), max(ms(ks.MaxHold), 1), // 7-9
		"0", 0, 0, "", 0, 0, 0, // 10-16: trip
		0, max(ks.Slots, 1), max(ks.Need, 1), // 17-19: lease, slots, need
		"0", 0, "", "", 0, 0, // 20-25: probe
		"", 0, "", 0, 0, // 26-30: command, and when it was made (µs on the server's clock)
	}
	if t := ks.Trip; t != nil {
		copy(args[9:16], []any{"1", max(ms(t.Open), 1), ms(t.Nominal), t.Reason, t.Failures, t.Successes, t.FailingReplicas})
	}
	if ks.Lease > 0 {
		args[16] = max(ms(ks.Lease), 1)
	}
	if p := ks.Probe; p != nil {
		copy(args[19:25], []any{"1", p.Generation, p.Lease, outcomeCode(p.Outcome), max(ms(p.Reopen), 1), ms(p.Nominal)})
	}
	if c := ks.Command; c != nil {
		copy(args[25:30], []any{string(c.Kind), ms(c.For), c.By, ms(c.Age), dated(c.Age)})
	}
	return args
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func outcomeCode(o sharedstate.Outcome) string {
	switch o {
	case sharedstate.Succeeded:
		return "s"
	case sharedstate.Excluded:
		return "x"
	}
	return "f"
}

// replyLen is how many values the sync script returns per key.
const replyLen = 7

// parse reads one key's part of the sync script's reply. It checks the
// reply's shape; the set checks the values.
func parse(reply []any) (sharedstate.Reply, error) {
	var rp sharedstate.Reply
	var bad error
	at := func(vs []any, i int) any {
		if i >= len(vs) {
			if bad == nil {
				bad = fmt.Errorf("redisstate: a sync reply of %d values where %d were due", len(vs), i+1)
			}
			return nil
		}
		return vs[i]
	}
	num := func(vs []any, i int) int64 {
		n, ok := at(vs, i).(int64)
		if !ok && bad == nil {
			bad = fmt.Errorf("redisstate: sync reply value %d is %T, want an integer", i, at(vs, i))
		}
		return n
	}
	str := func(vs []any, i int) string {
		s, ok := at(vs, i).(string)
		if !ok && bad == nil {
			bad = fmt.Errorf("redisstate: sync reply value %d is %T, want a string", i, at(vs, i))
		}
		return s
	}
	count := func(vs []any, i int) uint64 {
		n := num(vs, i)
		if n < 0 && bad == nil {
			bad = fmt.Errorf("redisstate: sync reply value %d is negative", i)
		}
		return uint64(max(n, 0))
	}
	rp.Successes, rp.Failures, rp.FailingReplicas = count(reply, 0), count(reply, 1), int(count(reply, 2))
	flags := num(reply, 3)
	rp.Gathering, rp.Complete = flags&1 != 0, flags&2 != 0
	if h, ok := reply[4].([]any); ok {
		rp.Hold = &sharedstate.Hold{
			Generation: num(h, 0), Closed: str(h, 1) == "closed",
			Open: time.Duration(num(h, 2)) * time.Millisecond, Nominal: time.Duration(num(h, 3)) * time.Millisecond,
			Probed: int(num(h, 4)), Reason: str(h, 5), Replica: str(h, 6),
			Failures: count(h, 7), Successes: count(h, 8), FailingReplicas: int(count(h, 9)),
		}
	}
	rp.Lease = str(reply, 5)
	if c, ok := reply[6].([]any); ok {
		rp.Command = sharedstate.Command{Version: num(c, 0), Kind: sharedstate.Kind(str(c, 1)),
			For: time.Duration(num(c, 2)) * time.Millisecond, By: str(c, 3), Replica: str(c, 4)}
	}
	return rp, bad
}

// checkEviction reads the server's maxmemory-policy once per server, and
// adds a warning to sy when it may evict the fleet's state.
func (s *Store) checkEviction(ctx context.Context, sy *sharedstate.Sync) {
	s.mu.Lock()
	done := s.checked
	s.checked = true
	s.mu.Unlock()
	if !done {
		policy, err := s.evictionPolicy(ctx)
		warning := ""
		if err == nil && strings.HasPrefix(policy, "allkeys-") {
			warning = fmt.Sprintf("redisstate: redis evicts any key under memory pressure (maxmemory-policy %s): "+
				"the fleet's state may be lost; use noeviction or a volatile-* policy", policy)
		}
		s.mu.Lock()
		s.warning = warning
		s.mu.Unlock()
	}
	s.mu.Lock()
	if s.warning != "" {
		sy.Warnings = append(sy.Warnings, s.warning)
	}
	s.mu.Unlock()
}

// evictionPolicy returns the server's maxmemory-policy, from CONFIG GET, or
// from INFO memory for a user who may not read the configuration.
func (s *Store) evictionPolicy(ctx context.Context) (string, error) {
	if m, err := s.client.ConfigGet(ctx, "maxmemory-policy").Result(); err == nil {
		if p, ok := m["maxmemory-policy"]; ok {
			return p, nil
		}
	}
	info, err := s.client.Info(ctx, "memory").Result()
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "maxmemory_policy:"); ok {
			return v, nil
		}
	}
	return "", errors.New("redisstate: the server does not say its maxmemory-policy")
}

// Watch subscribes to the store's channel and calls changed with each key
// announced there, until ctx ends, the subscription fails, or a sync finds
// another server behind the address (a failover): then it returns, and is
// called again on the new one.
func (s *Store) Watch(ctx context.Context, changed func(key string)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	s.watch = cancel
	s.mu.Unlock()
	sub := s.client.Subscribe(ctx, s.channel())
	// A blocked receive does not see ctx end; closing the subscription ends
	// it.
	stop := context.AfterFunc(ctx, func() { _ = sub.Close() })
	defer func() {
		if stop() {
			_ = sub.Close()
		}
	}()
	if _, err := sub.Receive(ctx); err != nil { // the subscription's confirmation
		return explain(err)
	}
	for {
		msg, err := sub.ReceiveMessage(ctx)
		if err != nil {
			return explain(err)
		}
		changed(msg.Payload) // the set checks the key, as it checks all the store says
	}
}

// String describes the store, for logs.
func (s *Store) String() string {
	return "redisstate(prefix=" + strconv.Quote(s.prefix) + ", interval=" + s.interval.String() + ")"
}
