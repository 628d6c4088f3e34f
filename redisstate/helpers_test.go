package redisstate_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/httpbreaker/httpbreaker"
	"github.com/httpbreaker/httpbreaker/internal/redisserver"
	"github.com/httpbreaker/httpbreaker/redisstate"
	"github.com/httpbreaker/httpbreaker/sharedstate"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// TestMain fails the tests if any goroutine outlives them: Close must stop
// every sync loop and watcher.
// go-redis's own log of failed dials is quiet: the tests make them on
// purpose.
func TestMain(m *testing.M) {
	redis.SetLogger(quiet{})
	goleak.VerifyTestMain(m)
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// redisServer is a redis-server the test started on a free loopback port,
// with no persistence; it is killed when the test ends.
type redisServer struct {
	*redisserver.Server
	t testing.TB
}

// startRedis starts a redis-server. CI installs Debian's redis-server
// package, and there a missing one fails the test; elsewhere the test is
// skipped.
func startRedis(t testing.TB) *redisServer {
	t.Helper()
	srv, err := redisserver.Start()
	if errors.Is(err, redisserver.ErrNotInstalled) {
		if os.Getenv("CI") != "" {
			t.Fatal("no redis-server: .ci/run installs Debian's redis-server package for this test")
		}
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Kill)
	return &redisServer{Server: srv, t: t}
}

// start starts the killed server again, empty.
func (r *redisServer) start() {
	r.t.Helper()
	if err := r.Restart(); err != nil {
		r.t.Fatal(err)
	}
}

// client returns a client of the server, closed when the test ends.
func (r *redisServer) client(t *testing.T) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), DialTimeout: time.Second, ReadTimeout: time.Second,
		WriteTimeout: time.Second, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	return c
}

// replica is one replica of a fleet: its own Breakers, Store and client,
// with one route group per key behind Middleware, answering as its
// upstream does.
type replica struct {
	stop     func() // closes the set and its client
	name     string
	logs     lockedBuffer
	set      *httpbreaker.Breakers
	handlers map[string]http.Handler
	mu       sync.Mutex
	events   []httpbreaker.Event
}

// upstream is a route group's handler, shared by every replica: it answers
// with code and counts its calls.
type upstream struct {
	code  atomic.Int32
	calls atomic.Int64
}

func newUpstream(code int) *upstream {
	u := &upstream{}
	u.code.Store(int32(code))
	return u
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	u.calls.Add(1)
	w.WriteHeader(int(u.code.Load()))
}

// fleet starts n replicas on the server at addr, each with the policy and
// options given, each key wired to its upstream.
func fleet(t *testing.T, addr string, n int, policy httpbreaker.Policy, ups map[string]*upstream, opts ...redisstate.Option) []*replica {
	t.Helper()
	var out []*replica
	for i := range n {
		out = append(out, newReplica(t, addr, fmt.Sprintf("r%d", i+1), policy, ups, opts...))
	}
	return out
}

func newReplica(t *testing.T, addr, name string, policy httpbreaker.Policy, ups map[string]*upstream, opts ...redisstate.Option) *replica {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, ContextTimeoutEnabled: true,
		ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second, MaxRetries: -1})
	return replicaOn(t, c, name, policy, ups, opts...)
}

// replicaOn is newReplica on a client of the test's making, which it
// closes when the test ends.
func replicaOn(t *testing.T, c redis.UniversalClient, name string, policy httpbreaker.Policy, ups map[string]*upstream,
	opts ...redisstate.Option) *replica {
	t.Helper()
	r := &replica{name: name, handlers: map[string]http.Handler{}}
	opts = append([]redisstate.Option{redisstate.WithSyncInterval(50 * time.Millisecond)}, opts...)
	set, err := httpbreaker.New(
		httpbreaker.WithPolicy(policy),
		httpbreaker.WithSharedState(newStore(t, c, opts...)),
		httpbreaker.WithReplica(name),
		httpbreaker.WithLogger(slog.New(slog.NewTextHandler(&r.logs, nil))),
		httpbreaker.WithStateChangeHook(func(e httpbreaker.Event) {
			r.mu.Lock()
			r.events = append(r.events, e)
			r.mu.Unlock()
		}),
	)
	if err != nil {
		t.Fatal(err)
	}
	r.set = set
	for key, u := range ups {
		r.handlers[key] = set.Middleware(key)(u)
	}
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			if err := set.Close(); err != nil {
				t.Error(err)
			}
			c.Close()
		})
	}
	t.Cleanup(r.stop)
	return r
}

// call sends one request for key through the replica and returns the
// status it answered.
func (r *replica) call(key string) int {
	rec := httptest.NewRecorder()
	r.handlers[key].ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	return rec.Code
}

// hooked returns every event the replica's hook got so far.
func (r *replica) hooked() []httpbreaker.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]httpbreaker.Event(nil), r.events...)
}

// eventsWith returns the replica's events for key with reason why.
func (r *replica) eventsWith(key string, why httpbreaker.Reason) []httpbreaker.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []httpbreaker.Event
	for _, e := range r.events {
		if e.Key == key && e.Reason == why {
			out = append(out, e)
		}
	}
	return out
}

// eventWith waits for the replica's first event for key with reason why:
// events reach hooks after the change, from the set's notifier.
func (r *replica) eventWith(t *testing.T, key string, why httpbreaker.Reason) httpbreaker.Event {
	t.Helper()
	var evs []httpbreaker.Event
	waitFor(t, r.name+": an event "+string(why), func() bool {
		evs = r.eventsWith(key, why)
		return len(evs) > 0
	})
	return evs[0]
}

// lockedBuffer is a log sink safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls cond until it holds, failing the test after a deadline
// that guards only against a hang: what it waits for takes well under a
// second.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// all reports whether every replica's key is in state st.
func all(rs []*replica, key string, st httpbreaker.State) bool {
	for _, r := range rs {
		if r.set.State(key) != st {
			return false
		}
	}
	return true
}

// states lists the replicas' states of key, for messages.
func states(rs []*replica, key string) string {
	var s []string
	for _, r := range rs {
		s = append(s, r.name+"="+r.set.State(key).String())
	}
	return strings.Join(s, " ")
}

// newStore returns a Store on c, failing the test if an option is bad.
func newStore(t testing.TB, c redis.UniversalClient, opts ...redisstate.Option) *redisstate.Store {
	t.Helper()
	s, err := redisstate.New(c, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The Redis keys of a breaker key, as KeysOf returns them.
const (
	win = iota
	hold
	leases
	cmd
)

// syncer returns a function that syncs one key "k" of replica with s, as a
// set would: each sync with the next sequence number, the report given, a
// window of 10s, one probe slot, holds of at most 10s.
func syncer(t *testing.T, s *redisstate.Store) func(replica string, ks sharedstate.KeySync) sharedstate.Reply {
	var mu sync.Mutex
	seq := map[string]uint64{}
	return func(replica string, ks sharedstate.KeySync) sharedstate.Reply {
		t.Helper()
		mu.Lock()
		seq[replica]++
		n := seq[replica]
		mu.Unlock()
		if ks.Key == "" {
			ks.Key = "k"
		}
		ks.Window, ks.MaxHold = 10*time.Second, 10*time.Second
		ks.Slots, ks.Need = max(ks.Slots, 1), max(ks.Need, 1)
		sy := &sharedstate.Sync{Replica: replica, Seq: n, Live: time.Second, Keys: []sharedstate.KeySync{ks}}
		if err := s.Sync(context.Background(), sy); err != nil {
			t.Fatal(err)
		}
		if err := sy.Keys[0].Err; err != nil {
			t.Fatal(err)
		}
		return sy.Keys[0].Reply
	}
}
