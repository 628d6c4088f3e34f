package redisstate

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Check verifies what the fleet needs of Redis, and returns an error that
// names the first thing missing and how to fix it: the server answers, the
// client's credentials are accepted, its user may run the store's scripts
// (EVAL and EVALSHA), PUBLISH and SUBSCRIBE, and the server's
// maxmemory-policy is not an allkeys-* one, which may evict the fleet's
// state. Call it at startup to fail fast: without it, a replica that cannot
// reach Redis works alone and says so in the log, which a misconfigured
// fleet may never notice.
func (s *Store) Check(ctx context.Context) error {
	for _, step := range []struct {
		what string
		run  func() error
	}{
		{"reach the server (PING)", func() error { return s.client.Ping(ctx).Err() }},
		{"run the store's scripts (EVAL)", func() error {
			return probeScript.Eval(ctx, s.client, []string{s.replicasKey()}).Err()
		}},
		{"run the store's cached scripts (EVALSHA)", func() error {
			return probeScript.EvalSha(ctx, s.client, []string{s.replicasKey()}).Err()
		}},
		{"announce changes (PUBLISH)", func() error { return s.client.Publish(ctx, s.channel(), "").Err() }},
		{"hear of changes (SUBSCRIBE)", func() error {
			sub := s.client.Subscribe(ctx, s.channel())
			defer sub.Close()
			_, err := sub.Receive(ctx)
			return err
		}},
	} {
		if err := step.run(); err != nil {
			return fmt.Errorf("redisstate: cannot %s: %w", step.what, explain(err))
		}
	}
	policy, err := s.evictionPolicy(ctx)
	if err != nil {
		return fmt.Errorf("redisstate: cannot read the server's maxmemory-policy: %w", explain(err))
	}
	if strings.HasPrefix(policy, "allkeys-") {
		return fmt.Errorf("redisstate: the server's maxmemory-policy is %s, which may evict the fleet's state under memory "+
			"pressure: set it to noeviction or a volatile-* policy (every key the store writes has a TTL)", policy)
	}
	return nil
}

// probeScript is what Check runs to see that scripts may run.
var probeScript = redis.NewScript("return 1")

// neededACL is what a Redis ACL user needs to run the store: the commands
// it sends, those its scripts call (which Redis checks against the same
// user), its keys and its channel.
const neededACL = "+eval +evalsha +publish +subscribe +ping +info +time +type +exists +del +pexpire " +
	"+hget +hmget +hgetall +hset +hdel +hexists +hincrby +zadd +zrange +zremrangebyscore ~{<prefix>* &<prefix>:events"

// explain returns err with what its Redis error code means in plain words,
// and what to do about it: the codes a misconfigured client meets first.
func explain(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, c := range []struct{ code, means string }{
		{"WRONGPASS", "the server refused the client's username or password: check Username and Password in the client's options"},
		{"NOAUTH", "the server wants a password: set Password (and Username, with ACL users) in the client's options"},
		{"NOPERM", "the client's user may not run a command the store needs: grant it " + neededACL + " (ACL SETUSER)"},
		{"READONLY", "the address leads to a replica, not the master: point the client at the master, or use a FailoverClient"},
		{"MOVED", "the server is part of a Redis Cluster: make the client with redis.NewClusterClient"},
		{"CROSSSLOT", "the server is part of a Redis Cluster: make the client with redis.NewClusterClient"},
		{"LOADING", "the server is loading its data: retry shortly"},
	} {
		if strings.Contains(msg, c.code) {
			return fmt.Errorf("%s (%w)", c.means, err)
		}
	}
	var rerr redis.Error
	if !errors.As(err, &rerr) && (errors.Is(err, context.DeadlineExceeded) || strings.Contains(msg, "connection refused") ||
		strings.Contains(msg, "i/o timeout") || strings.Contains(msg, "no such host")) {
		return fmt.Errorf("the server did not answer: check its address and that it runs (%w)", err)
	}
	return err
}
