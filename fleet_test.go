package httpbreaker

import (
	"context"
	"errors"
	"reflect"
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
