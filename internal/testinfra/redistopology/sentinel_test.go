package redistopology

import (
	"os"
	"testing"
	"time"

	"github.com/httpbreaker/httpbreaker/internal/redisserver"
)

// startSentinel starts a master, a replica and three sentinels, closed
// when the test ends.
func startSentinel(t *testing.T) *redisserver.Sentinel {
	t.Helper()
	redisserver.RequireInstalled(t)
	s, err := redisserver.StartSentinel("mymaster")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// writeReplicated writes key on the master and waits until the replica
// has it.
func writeReplicated(t *testing.T, addr, key, value string) {
	t.Helper()
	c := dialT(t, addr)
	want(t, c, "OK", "SET", key, value)
	want(t, c, 1, "WAIT", "1", "10000")
}

func TestSentinelStartsWithTheMasterItNames(t *testing.T) {
	t.Parallel()
	s := startSentinel(t)
	if s.MasterName() != "mymaster" {
		t.Errorf("MasterName: %q", s.MasterName())
	}
	if got := len(s.SentinelAddrs()); got != 3 {
		t.Fatalf("SentinelAddrs: %d, want 3", got)
	}
	master, replica := s.Servers()[0], s.Servers()[1]
	addr, err := s.MasterAddr()
	if err != nil || addr != master.Addr() {
		t.Fatalf("MasterAddr: %s, %v; want %s", addr, err, master.Addr())
	}
	writeReplicated(t, master.Addr(), "k", "v")
	want(t, dialT(t, replica.Addr()), "v", "GET", "k")
	for _, sentinel := range s.SentinelAddrs() {
		want(t, dialT(t, sentinel), "[sentinel [mymaster]]", "ROLE")
	}
	dir := workDir(t, master.Addr())
	s.Close()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the sentinels' directory after Close: %v; want it removed", err)
	}
	s.Close() // twice is fine
}

func TestStartSentinelRejectsBadNames(t *testing.T) {
	for _, name := range []string{"", "my master", "a\"b"} {
		if s, err := redisserver.StartSentinel(name); err == nil {
			s.Close()
			t.Errorf("redisserver.StartSentinel(%q) succeeded", name)
		}
	}
}

func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	s := startSentinel(t)
	master, replica := s.Servers()[0], s.Servers()[1]
	writeReplicated(t, master.Addr(), "k", "v")

	start := time.Now()
	if err := s.Failover(); err != nil {
		t.Fatal(err)
	}
	t.Logf("failover in %s", time.Since(start).Round(time.Millisecond))
	addr, err := s.MasterAddr()
	if err != nil || addr != replica.Addr() {
		t.Fatalf("MasterAddr after Failover: %s, %v; want the replica, %s", addr, err, replica.Addr())
	}
	c := dialT(t, addr)
	want(t, c, "v", "GET", "k")
	want(t, c, "OK", "SET", "k", "after")
}

// TestSentinelFailsOverAndBack waits the sentinels' own time to take the
// old master back as a replica (about 20s), so it runs beside the others.
func TestSentinelFailsOverAndBack(t *testing.T) {
	t.Parallel()
	s := startSentinel(t)
	master, replica := s.Servers()[0], s.Servers()[1]
	if err := s.Failover(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.Failover(); err != nil {
		t.Fatal(err)
	}
	t.Logf("the second failover, waiting for the old master to be a replica in sync, in %s", time.Since(start).Round(time.Millisecond))
	addr, err := s.MasterAddr()
	if err != nil || addr != master.Addr() {
		t.Fatalf("MasterAddr after two failovers: %s, %v; want the first master, %s", addr, err, master.Addr())
	}
	if replica.Addr() == addr {
		t.Fatal("the replica is master too")
	}
}

func TestSentinelPromotesTheReplicaOfAKilledMaster(t *testing.T) {
	t.Parallel()
	s := startSentinel(t)
	master, replica := s.Servers()[0], s.Servers()[1]
	writeReplicated(t, master.Addr(), "k", "v")

	start := time.Now()
	killed, err := s.KillMaster()
	if err != nil {
		t.Fatal(err)
	}
	if killed != master.Addr() {
		t.Fatalf("KillMaster killed %s, want the master, %s", killed, master.Addr())
	}
	addr, err := s.WaitMaster(killed)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the sentinels promoted the replica in %s", time.Since(start).Round(time.Millisecond))
	if addr != replica.Addr() {
		t.Fatalf("WaitMaster: %s; want the replica, %s", addr, replica.Addr())
	}
	want(t, dialT(t, addr), "v", "GET", "k")
	if got, err := s.MasterAddr(); err != nil || got != addr {
		t.Errorf("MasterAddr: %s, %v; want %s", got, err, addr)
	}
	// With one sentinel gone, the two left still agree and answer.
	s.Sentinels()[0].Kill()
	if got, err := s.MasterAddr(); err != nil || got != addr {
		t.Errorf("MasterAddr with a sentinel killed: %s, %v; want %s", got, err, addr)
	}
}
