package httpbreaker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/httpbreaker/httpbreaker/sharedstate"
)

// fakeStore is a sharedstate.Store in memory, for the set's side of the fleet:
// it answers each Sync with the fleet that reply says, or fails while down.
// The fleet's behaviour with a real store is tested in redisstate, against
// a real Redis.
type fakeStore struct {
	mu      sync.Mutex
	down    bool
	syncs   int
	sent    []sharedstate.KeySync
	reply   map[string]sharedstate.Reply
	indexed []string // what a sync that asks for the index gets
	carried []int    // how many keys each sync carried
	changed chan string
}

func newFakeStore() *fakeStore {
	return &fakeStore{reply: map[string]sharedstate.Reply{}, changed: make(chan string, 16)}
}

func (s *fakeStore) Interval() time.Duration { return 10 * time.Millisecond }

func (s *fakeStore) Sync(_ context.Context, sy *sharedstate.Sync) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.syncs++
	if s.down {
		return errors.New("fake store down")
	}
	sy.Replicas = 3
	s.carried = append(s.carried, len(sy.Keys))
	if sy.Index {
		sy.Indexed = s.indexed
	}
	for i := range sy.Keys {
		s.sent = append(s.sent, sy.Keys[i])
		sy.Keys[i].Reply = s.reply[sy.Keys[i].Key]
	}
	return nil
}

func (s *fakeStore) Watch(ctx context.Context, changed func(string)) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case key := <-s.changed:
			changed(key)
		}
	}
}

// set changes what the store answers for key, and announces it.
func (s *fakeStore) set(key string, fl sharedstate.Reply) {
	s.mu.Lock()
	s.reply[key] = fl
	s.mu.Unlock()
	s.changed <- key
}

func (s *fakeStore) setDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

func TestCloseIsIdempotentWithOrWithoutSharedState(t *testing.T) {
	plain, _ := newSet(t)
	shared, _ := newSet(t, WithSharedState(newFakeStore()))
	waitFor(t, "connected", func() bool { return shared.FleetStatus().Connected })
	for _, b := range []*Breakers{plain, shared, plain, shared} {
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if shared.FleetStatus().Connected {
		t.Error("a closed set still counts as connected to its fleet")
	}
	// TestMain's goleak check fails the package if the loop outlived Close.
}

func TestSharedStateOptionsAreChecked(t *testing.T) {
	for _, tc := range []struct {
		opt  Option
		want string
	}{
		{WithSharedState(nil), "nil Store"},
		{WithReplica(""), "WithReplica"},
		{WithReplica(strings.Repeat("r", 129)), "1 to 128 bytes"},
		{WithReplica("bad\xff"), "UTF-8"},
		{WithReplica("pod\n7"), "control characters"},
	} {
		if _, err := New(tc.opt); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New: %v, want an error naming %q", err, tc.want)
		}
	}
}

// TestSyncCarriesNoWallClock pins down what replicas rely on: a Sync
// carries durations, never a replica's wall-clock time, so that replicas
// whose clocks disagree share holds exactly (a store measures every
// duration on one clock of its own: redisstate uses Redis's TIME).
func TestSyncCarriesNoWallClock(t *testing.T) {
	timeType := reflect.TypeFor[time.Time]()
	seen := map[reflect.Type]bool{}
	var walk func(path string, typ reflect.Type)
	walk = func(path string, typ reflect.Type) {
		if seen[typ] {
			return
		}
		seen[typ] = true
		switch typ.Kind() {
		case reflect.Pointer, reflect.Slice:
			walk(path, typ.Elem())
		case reflect.Struct:
			if typ == timeType {
				t.Errorf("%s is a time.Time: a replica's clock would enter the fleet's state", path)
			}
			for i := range typ.NumField() {
				f := typ.Field(i)
				walk(path+"."+f.Name, f.Type)
			}
		}
	}
	walk("Sync", reflect.TypeFor[sharedstate.Sync]())
}

func TestStatusPageSaysStateIsShared(t *testing.T) {
	store := newFakeStore()
	b, _ := newSet(t, WithSharedState(store), WithReplica("pod-7"))
	defer b.Close()
	waitFor(t, "connected", func() bool { return b.FleetStatus().Connected })
	if got := fleetSummary(b.FleetStatus()); got != " Shared with the fleet as replica pod-7: 3 live." {
		t.Errorf("connected: %q", got)
	}
	store.setDown(true)
	waitFor(t, "disconnected", func() bool { return !b.FleetStatus().Connected })
	if got := fleetSummary(b.FleetStatus()); !strings.Contains(got, "cannot reach the shared state") {
		t.Errorf("disconnected: %q", got)
	}
	if got := fleetSummary(FleetStatus{}); got != "" {
		t.Errorf("without shared state: %q", got)
	}
}

// syncCount returns how many syncs the store has been asked for.
func (s *fakeStore) syncCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.syncs
}

// sentOf returns what the syncs since the i-th key sync sent of key.
func (s *fakeStore) sentOf(key string, since int) []sharedstate.KeySync {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []sharedstate.KeySync
	for _, ks := range s.sent[min(since, len(s.sent)):] {
		if ks.Key == key {
			out = append(out, ks)
		}
	}
	return out
}

func (s *fakeStore) sentCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sent)
}

// TestFleetProblemsAreLoggedOnceUntilTheyClear holds that a store that stays
// unreachable over many syncs is logged once, whether the set never reached
// it or lost it, and once more when it is lost again after coming back.
func TestFleetProblemsAreLoggedOnceUntilTheyClear(t *testing.T) {
	store := newFakeStore()
	store.setDown(true)
	b, sink := newSet(t, WithSharedState(store), WithReplica("r1"))
	defer b.Close()
	failing := func(n int) {
		t.Helper()
		from := store.syncCount()
		waitFor(t, "failed syncs", func() bool { return store.syncCount() >= from+n })
	}
	failing(4)
	if n := len(sink.matching("unreachable")); n != 1 {
		t.Fatalf("never reached: %d records of the store unreachable over 4 syncs, want 1", n)
	}
	store.setDown(false)
	waitFor(t, "connected", func() bool { return b.FleetStatus().Connected })
	store.setDown(true)
	waitFor(t, "cut off", func() bool { return !b.FleetStatus().Connected })
	failing(4)
	if n := len(sink.matching("unreachable")); n != 2 {
		t.Fatalf("lost after it came back: %d records of the store unreachable in all, want 2", n)
	}
	for _, e := range sink.matching("shared state") {
		if _, named := e.attrs["replica"]; named {
			t.Errorf("%q names this replica, which the user's logger names if it names replicas: %v", e.msg, e.attrs)
		}
	}
}

// TestFleetRecordsNameOnlyAnotherReplica logs through a logger made with
// With("replica", "r1"), as a service names its replicas: no record repeats
// the attribute, and a change another replica made names it apart.
func TestFleetRecordsNameOnlyAnotherReplica(t *testing.T) {
	var buf lockedBuffer
	store := newFakeStore()
	b, err := New(WithSharedState(store), WithReplica("r1"), WithPolicy(Policy{OpenFor: time.Minute, MaxOpenFor: time.Hour}),
		WithLogger(slog.New(slog.NewTextHandler(&buf, nil)).With("replica", "r1")))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.Middleware("search")(newStatusHandler(200))
	b.Middleware("pay")(newStatusHandler(200))
	waitFor(t, "connected", func() bool { return b.FleetStatus().Connected })
	store.set("search", sharedstate.Reply{Hold: &sharedstate.Hold{Generation: 1, Open: time.Minute, Nominal: time.Minute,
		Reason: "failure_rate", Replica: "r2", Failures: 30, FailingReplicas: 2}})
	store.set("pay", sharedstate.Reply{Hold: &sharedstate.Hold{Generation: 2, Open: time.Minute, Nominal: time.Minute,
		Reason: "failure_rate", Replica: "r1", Failures: 30, FailingReplicas: 2}})
	waitFor(t, "both held", func() bool { return b.State("search") == StateOpen && b.State("pay") == StateOpen })
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var byOther, bySelf string
	for _, line := range lines {
		if n := strings.Count(line, "replica=r1"); n != 1 {
			t.Errorf("replica=r1 %d times: %s", n, line)
		}
		switch {
		case strings.Contains(line, "key=search"):
			byOther = line
		case strings.Contains(line, "key=pay"):
			bySelf = line
		}
	}
	if !strings.Contains(byOther, "fleet=true fleet_replica=r2") {
		t.Errorf("a change r2 made does not name it: %s", byOther)
	}
	if !strings.Contains(bySelf, "fleet=true") || strings.Contains(bySelf, "fleet_replica") {
		t.Errorf("a change this replica made names a replica: %s", bySelf)
	}
}

// lockedBuffer is a log sink safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
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

// TestAKeyThatOnlySucceedsCostsTheFleetNothing holds what a replica tells
// the fleet of a key's window: once at the key's first sync, then only when
// its failures change, at every sync while the fleet gathers the key, and
// never again once the failures have left it.
func TestAKeyThatOnlySucceedsCostsTheFleetNothing(t *testing.T) {
	store := newFakeStore()
	b, _ := newSet(t, WithSharedState(store), WithPolicy(Policy{FailureRate: 0.5, MinRequests: 20, Window: time.Second, Buckets: 2}))
	defer b.Close()
	up := newStatusHandler(200)
	h := b.Middleware("search")(up)
	waitFor(t, "the key's first sync", func() bool { return len(store.sentOf("search", 0)) > 0 })
	if first := store.sentOf("search", 0)[0]; first.Report || first.TripFailures != 10 {
		t.Fatalf("the first sync of the key: %+v, want a read, no report, and 10 failures to trip", first)
	}
	from := store.sentCount()
	for range 300 { // 100 syncs' worth of successes: no news for the fleet
		record(h, "/")
		if store.syncCount() > 40 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	waitFor(t, "more syncs, full ones among them", func() bool { return store.syncCount() > 40 })
	if sent := store.sentOf("search", from); len(sent) != 0 {
		t.Fatalf("a key that only succeeds was sent %d times: %+v", len(sent), sent[0])
	}

	up.set(500)
	for range 3 {
		record(h, "/")
	}
	waitFor(t, "a report of the failures", func() bool {
		for _, ks := range store.sentOf("search", from) {
			if ks.Report && ks.Failures == 3 {
				return true
			}
		}
		return false
	})
	// The fleet gathers the key: a report at every sync, successes and all.
	up.set(200)
	store.set("search", sharedstate.Reply{Gathering: true, Failures: 3})
	from = store.sentCount()
	syncs := store.syncCount()
	waitFor(t, "five syncs", func() bool { return store.syncCount() >= syncs+5 })
	if sent := store.sentOf("search", from); len(sent) < 4 || !sent[len(sent)-1].Report {
		t.Fatalf("while the fleet gathers: %d syncs of the key, want a report at each of 5", len(sent))
	}
	store.set("search", sharedstate.Reply{})
	// Once the failures have left the window (1s) and that was reported,
	// nothing more.
	waitFor(t, "a report of a window without failures", func() bool {
		sent := store.sentOf("search", from)
		return len(sent) > 0 && sent[len(sent)-1].Report && sent[len(sent)-1].Failures == 0
	})
	time.Sleep(50 * time.Millisecond) // the last report's reply
	from = store.sentCount()
	syncs = store.syncCount()
	waitFor(t, "more syncs", func() bool { return store.syncCount() >= syncs+30 })
	if sent := store.sentOf("search", from); len(sent) != 0 {
		t.Fatalf("after the failures left the window, the key was sent %d times: %+v", len(sent), sent[0])
	}
}

// TestTheFleetTripsOnAWholeWindowOnly holds that a fleet's window that meets
// the policy trips the key only once every live replica has reported to the
// gathering: a partial window, short of the others' successes, trips
// nothing.
func TestTheFleetTripsOnAWholeWindowOnly(t *testing.T) {
	store := newFakeStore()
	b, _ := newSet(t, WithSharedState(store), WithPolicy(Policy{FailureRate: 0.5, MinRequests: 20, OpenFor: time.Minute}))
	defer b.Close()
	b.Middleware("search")(newStatusHandler(200))
	waitFor(t, "connected", func() bool { return b.FleetStatus().Connected })
	trips := func() int {
		n := 0
		for _, ks := range store.sentOf("search", 0) {
			if ks.Trip != nil {
				n++
			}
		}
		return n
	}
	store.set("search", sharedstate.Reply{Failures: 30, FailingReplicas: 3, Gathering: true})
	syncs := store.syncCount()
	waitFor(t, "syncs", func() bool { return store.syncCount() >= syncs+5 })
	if n := trips(); n != 0 {
		t.Fatalf("%d trips on a window the gathering has not completed", n)
	}
	store.set("search", sharedstate.Reply{Failures: 30, FailingReplicas: 3, Gathering: true, Complete: true})
	waitFor(t, "a trip on the whole window", func() bool { return trips() > 0 })
}

// TestStatusShowsTheFleetsWindow holds the fleet-wide view of a key: in
// Status, in the status JSON and on the page, as the last sync read it;
// nothing of it without shared state.
func TestStatusShowsTheFleetsWindow(t *testing.T) {
	store := newFakeStore()
	b, _ := newSet(t, WithSharedState(store))
	defer b.Close()
	record(b.Middleware("search")(newStatusHandler(200)), "/")
	record(b.Middleware("quiet")(newStatusHandler(200)), "/")
	waitFor(t, "connected", func() bool { return b.FleetStatus().Connected })
	store.set("search", sharedstate.Reply{Successes: 28, Failures: 12, FailingReplicas: 2, Gathering: true})
	waitFor(t, "the fleet's window in Status", func() bool {
		v := status(t, b, "search").Fleet
		return v != nil && v.Failures == 12
	})
	v := status(t, b, "search").Fleet
	if v.Successes != 28 || v.FailingReplicas != 2 || v.LiveReplicas != 3 || !v.Gathering || time.Since(v.At) > time.Minute {
		t.Errorf("Status.Fleet = %+v, want 28 successes, 12 failures on 2 of 3 replicas, gathering, synced now", v)
	}
	_, _, body := serveOnce(b.StatusHandler(), "application/json")
	var page StatusPage
	if err := json.Unmarshal([]byte(body), &page); err != nil {
		t.Fatal(err)
	}
	for _, s := range page.Keys {
		if s.Key == "search" && (s.Fleet == nil || s.Fleet.Failures != 12 || !strings.Contains(body, `"failing_replicas": 2`)) {
			t.Errorf("the JSON's fleet of search: %+v", s.Fleet)
		}
	}
	_, _, html := serveOnce(b.StatusHandler(), "text/html")
	if want := "fleet: 12 of 40 failed (30%) on 2 of 3 live replicas, gathering every window; synced"; !strings.Contains(html, want) {
		t.Errorf("the page does not say %q", want)
	}
	if strings.Count(html, "fleet: ") != 1 {
		t.Errorf("a key without failures in the fleet's window has a fleet line:\n%s", html)
	}

	alone, _ := newSet(t)
	record(alone.Middleware("search")(newStatusHandler(200)), "/")
	if v := status(t, alone, "search").Fleet; v != nil {
		t.Errorf("without shared state, Status.Fleet = %+v", v)
	}
	if _, _, body := serveOnce(alone.StatusHandler(), "application/json"); strings.Contains(body, `"live_replicas"`) {
		t.Errorf("without shared state, the JSON has a fleet view:\n%s", body)
	}
}

// TestManyNewKeysAreLearnedFromTheIndex holds that a replica whose keys are
// all new (it starts, or traffic moves to new keys) learns the fleet's
// holds from the store's index, not by reading every key: a sync reads a
// few new keys, no more.
func TestManyNewKeysAreLearnedFromTheIndex(t *testing.T) {
	store := newFakeStore()
	store.indexed = []string{"key-7"}
	store.reply["key-7"] = sharedstate.Reply{Hold: &sharedstate.Hold{Generation: 1, Open: time.Minute, Nominal: time.Minute,
		Reason: "failure_rate", Replica: "r2", Failures: 30, FailingReplicas: 2}}
	b, _ := newSet(t, WithSharedState(store), WithPolicy(Policy{OpenFor: time.Minute, MaxOpenFor: time.Hour}))
	defer b.Close()
	waitFor(t, "connected", func() bool { return b.FleetStatus().Connected })
	from := store.syncCount()
	for i := range 1000 {
		b.Middleware(fmt.Sprintf("key-%d", i))(newStatusHandler(200))
	}
	waitFor(t, "the indexed key's hold", func() bool { return b.State("key-7") == StateOpen })
	syncs := store.syncCount()
	waitFor(t, "more syncs", func() bool { return store.syncCount() >= syncs+5 })
	store.mu.Lock()
	defer store.mu.Unlock()
	if most := slices.Max(store.carried[from:]); most > maxFresh {
		t.Errorf("a sync carried %d keys of the 1000 new ones, want at most %d: the others are learned from the index", most, maxFresh)
	}
}

// BenchmarkSyncOfKeysThatOnlySucceed measures what one sync costs a replica
// whose keys all only succeed, at 10 000 keys: it reads each key's failure
// total, and carries none of them.
func BenchmarkSyncOfKeysThatOnlySucceed(b *testing.B) {
	store := newFakeStore()
	set, err := New(WithSharedState(store), WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	defer set.Close()
	for i := range 10000 {
		record(set.Middleware(fmt.Sprintf("key-%d", i))(newStatusHandler(200)), "/")
	}
	f := set.fleet
	f.cancel() // the loop stops: the benchmark syncs in its place
	<-f.stopped
	for range 3 { // the first syncs read the new keys
		f.syncKeys(false)
	}
	from := store.sentCount()
	for b.Loop() {
		f.syncKeys(false)
	}
	if n := store.sentCount() - from; n > 0 {
		b.Fatalf("syncs of keys that only succeed carried %d of them", n)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10000, "ns/key")
}

// TestFleetReportsUnderConcurrentTraffic runs many goroutines of traffic,
// failures among it, beside readers of the status and manual control,
// while the loop syncs: under -race it checks the fleet's state shared
// with the request path and the status (a failure's mark, the fleet's
// view), and that every key that failed was reported with its failures.
func TestFleetReportsUnderConcurrentTraffic(t *testing.T) {
	store := newFakeStore()
	b, _ := newSet(t, WithSharedState(store), WithPolicy(Policy{FailureRate: 0.9, MinRequests: 1000, Window: time.Minute}))
	defer b.Close()
	const keys = 20
	hs := make([]http.Handler, keys)
	for i := range hs {
		code := 200
		if i%2 == 0 {
			code = 500 // the even keys fail now and then
		}
		hs[i] = b.Middleware(fmt.Sprintf("key-%d", i))(newStatusHandler(code))
	}
	waitFor(t, "connected", func() bool { return b.FleetStatus().Connected })
	store.set("key-1", sharedstate.Reply{Successes: 5, Failures: 1, FailingReplicas: 1, Gathering: true})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				record(hs[(g+n)%keys], "/")
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, s := range b.Snapshot() {
					if s.Fleet != nil && s.Fleet.LiveReplicas < 0 {
						t.Error("a negative count of live replicas")
					}
				}
				_ = b.ForceClose("key-3")
				_ = b.Release("key-3")
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	waitFor(t, "every key that failed reported with its failures", func() bool {
		for i := 0; i < keys; i += 2 {
			sent := store.sentOf(fmt.Sprintf("key-%d", i), 0)
			if len(sent) == 0 || !sent[len(sent)-1].Report || sent[len(sent)-1].Failures == 0 {
				return false
			}
		}
		return true
	})
}
