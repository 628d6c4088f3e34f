// Package redisstate shares the state of httpbreaker's breakers among the
// replicas of a fleet, through Redis: plug a Store into a set with
// httpbreaker.WithSharedState.
//
//	rdb := redis.NewClient(&redis.Options{Addr: "redis:6379", ContextTimeoutEnabled: true})
//	store, err := redisstate.New(rdb)
//	if err != nil { ... }
//	breakers, err := httpbreaker.New(httpbreaker.WithSharedState(store))
//	if err != nil { ... }
//	defer breakers.Close()
//
// No request waits on Redis. Each replica syncs in the background, every
// SyncInterval (and at once when something changed), in one pipelined round
// trip that carries every key with news, whatever the request rate; while
// Redis is unreachable the replica's breakers work alone.
//
// A sync gives up after five intervals or two seconds, whichever is longer,
// and the replica counts as cut off from the fleet until one succeeds. For
// go-redis to honour that deadline on a Redis that stopped answering, make
// the client with ContextTimeoutEnabled; its ReadTimeout bounds it
// otherwise (three seconds by default), and so bounds Breakers.Close.
//
// Everything lives under the prefix (WithPrefix), per breaker key in four
// Redis keys that share one hash tag, so that a Redis Cluster keeps them on
// one node and the store's Lua scripts can update them atomically:
//
//	{<prefix>:<key>}:win     the fleet's rolling window: outcome counts per bucket and replica
//	{<prefix>:<key>}:hold    the fleet-wide hold on the key, if any
//	{<prefix>:<key>}:leases  the probe leases of the hold
//	{<prefix>:<key>}:ctl     the latest manual change (ForceOpen, ForceClose, Release, Reset)
//	{<prefix>}:replicas      the replicas that synced lately
//	<prefix>:events          the pub/sub channel that announces changes
//
// Every key has a TTL, renewed while the fleet uses it: a fleet that goes
// away leaves nothing behind after ten minutes. Times are Redis's (its TIME
// command, read inside the scripts), never a replica's, so replicas whose
// clocks disagree share holds and windows exactly.
package redisstate

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/httpbreaker/httpbreaker/sharedstate"
	"github.com/redis/go-redis/v9"
)

// DefaultSyncInterval is how often a replica syncs when nothing changed.
const DefaultSyncInterval = 200 * time.Millisecond

// DefaultPrefix starts the name of every Redis key the store uses.
const DefaultPrefix = "httpbreaker"

// Store is a sharedstate.Store on Redis. Make one per Breakers with New; a
// Store is safe for concurrent use.
type Store struct {
	client   redis.UniversalClient
	prefix   string
	interval time.Duration
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
// trip per interval per replica). At least 10ms; the default is
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
// option.
func New(client redis.UniversalClient, opts ...Option) (*Store, error) {
	s := &Store{client: client, prefix: DefaultPrefix, interval: DefaultSyncInterval}
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

// keys returns the Redis keys of a breaker key, in the order the sync
// script takes them: window, hold, leases, manual change. They share the
// hash tag {<prefix>:<key>}.
func (s *Store) keys(key string) []string {
	tag := "{" + s.prefix + ":" + key + "}"
	return []string{tag + ":win", tag + ":hold", tag + ":leases", tag + ":ctl"}
}

func (s *Store) replicasKey() string { return "{" + s.prefix + "}:replicas" }

// channel returns the pub/sub channel on which changes are announced.
func (s *Store) channel() string { return s.prefix + ":events" }

// Sync sends a replica's news and reads what the fleet holds, in one
// pipelined round trip: a heartbeat, and one script call per key.
func (s *Store) Sync(ctx context.Context, sy *sharedstate.Sync) error {
	err := s.sync(ctx, sy, false)
	if isNoScript(err) {
		// A Redis that restarted, or a node that never ran the scripts:
		// send them whole, which caches them for the next syncs.
		err = s.sync(ctx, sy, true)
	}
	return err
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

func (s *Store) sync(ctx context.Context, sy *sharedstate.Sync, whole bool) error {
	pipe := s.client.Pipeline()
	run := (*redis.Script).EvalSha
	if whole {
		run = (*redis.Script).Eval
	}
	hb := run(heartbeat, ctx, pipe, []string{s.replicasKey()}, sy.Replica, sy.Live.Milliseconds())
	cmds := make([]*redis.Cmd, len(sy.Keys))
	for i := range sy.Keys {
		cmds[i] = run(syncKey, ctx, pipe, s.keys(sy.Keys[i].Key), s.keyArgs(sy.Replica, &sy.Keys[i])...)
	}
	_, _ = pipe.Exec(ctx)
	n, err := hb.Int64()
	if err != nil {
		return err
	}
	sy.Replicas = int(n)
	for i, cmd := range cmds {
		ks := &sy.Keys[i]
		reply, err := cmd.Slice()
		if err != nil {
			if isNoScript(err) {
				return err
			}
			var rerr redis.Error
			if !errors.As(err, &rerr) { // the connection, not the key
				return err
			}
			ks.Err = err
			continue
		}
		if ks.Reply, err = parse(reply); err != nil {
			ks.Err = err
		}
	}
	return nil
}

// keyArgs returns the sync script's ARGV for ks.
func (s *Store) keyArgs(replica string, ks *sharedstate.KeySync) []any {
	ms := func(d time.Duration) int64 { return max(d.Milliseconds(), 0) }
	args := []any{
		replica, max(ms(ks.Window), 1), max(ks.Buckets, 1), ks.Successes, ks.Failures, // 1-5
		"0", 0, 0, "", 0, 0, 0, // 6-12: trip
		0, max(ks.Slots, 1), // 13-14: lease, slots
		"0", 0, "", "", 0, 0, // 15-20: probe
		"", 0, "", // 21-23: manual change
		s.channel(), ks.Key, // 24-25
		max(min(ks.Need, ks.Slots), 1), // 26: successes that close the key
	}
	if t := ks.Trip; t != nil {
		copy(args[5:12], []any{"1", max(ms(t.Open), 1), ms(t.Nominal), t.Reason, t.Failures, t.Successes, t.FailingReplicas})
	}
	if ks.Lease > 0 {
		args[12] = max(ms(ks.Lease), 1)
	}
	if p := ks.Probe; p != nil {
		copy(args[14:20], []any{"1", p.Generation, p.Lease, outcomeCode(p.Outcome), max(ms(p.Reopen), 1), ms(p.Nominal)})
	}
	if c := ks.Command; c != nil {
		copy(args[20:23], []any{string(c.Kind), ms(c.For), c.By})
	}
	return args
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

// parse reads the sync script's reply. It checks the reply's shape; the
// set checks the values.
func parse(reply []any) (sharedstate.Reply, error) {
	var fl sharedstate.Reply
	if len(reply) != 20 {
		return fl, fmt.Errorf("redisstate: a sync reply of %d values, want 20", len(reply))
	}
	var bad error
	num := func(i int) int64 {
		n, ok := reply[i].(int64)
		if !ok && bad == nil {
			bad = fmt.Errorf("redisstate: sync reply value %d is %T, want an integer", i, reply[i])
		}
		return n
	}
	str := func(i int) string {
		s, ok := reply[i].(string)
		if !ok && bad == nil {
			bad = fmt.Errorf("redisstate: sync reply value %d is %T, want a string", i, reply[i])
		}
		return s
	}
	count := func(i int) uint64 {
		n := num(i)
		if n < 0 && bad == nil {
			bad = fmt.Errorf("redisstate: sync reply value %d is negative", i)
		}
		return uint64(max(n, 0))
	}
	fl.Successes, fl.Failures, fl.FailingReplicas = count(0), count(1), int(count(2))
	if num(3) == 1 {
		fl.Hold = &sharedstate.Hold{
			Generation: num(4), Closed: str(5) == "closed",
			Open: time.Duration(num(6)) * time.Millisecond, Nominal: time.Duration(num(7)) * time.Millisecond,
			Probed: int(num(8)), Reason: str(9), Replica: str(10),
			Failures: count(11), Successes: count(12), FailingReplicas: int(count(13)),
		}
	}
	fl.Lease = str(14)
	fl.Command = sharedstate.Command{Version: num(15), Kind: sharedstate.Kind(str(16)),
		For: time.Duration(num(17)) * time.Millisecond, By: str(18), Replica: str(19)}
	return fl, bad
}

// Watch subscribes to the store's channel and calls changed with each key
// announced there, until ctx ends or the subscription fails.
func (s *Store) Watch(ctx context.Context, changed func(key string)) error {
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
		return err
	}
	for {
		msg, err := sub.ReceiveMessage(ctx)
		if err != nil {
			return err
		}
		changed(msg.Payload) // the set checks the key, as it checks all the store says
	}
}

// String describes the store, for logs.
func (s *Store) String() string {
	return "redisstate(prefix=" + strconv.Quote(s.prefix) + ", interval=" + s.interval.String() + ")"
}
