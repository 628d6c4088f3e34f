package redistopology

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/httpbreaker/httpbreaker/internal/redisserver"
)

// startCluster starts a cluster, closed when the test ends.
func startCluster(t *testing.T, masters, replicas int) *redisserver.Cluster {
	t.Helper()
	redisserver.RequireInstalled(t)
	c, err := redisserver.StartCluster(masters, replicas)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestClusterServesEverySlotFromItsMaster(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3, 0)
	if got := len(c.Addrs()); got != 3 {
		t.Fatalf("Addrs: %d addresses, want 3", got)
	}
	if got := len(c.Nodes()); got != 3 {
		t.Fatalf("Nodes: %d nodes, want 3", got)
	}
	for i, addr := range c.Addrs() {
		m, err := c.Master(i)
		if err != nil || m.Addr() != addr || m.ID() == "" {
			t.Fatalf("Master(%d): %v, %v; want the node started as master %d, %s", i, m, err, i, addr)
		}
		if f := clusterInfo(t, addr); f["cluster_state"] != "ok" || f["cluster_slots_ok"] != "16384" || f["cluster_known_nodes"] != "3" {
			t.Errorf("%s: CLUSTER INFO %v", addr, f)
		}
	}
	// Every key goes to the master of its slot's share, and any other
	// node redirects to it.
	first := dialT(t, c.Addrs()[0])
	seen := map[int]bool{}
	for k := range 30 {
		key := "key" + strconv.Itoa(k)
		v, err := first.Do("CLUSTER", "KEYSLOT", key)
		if err != nil {
			t.Fatal(err)
		}
		slot := int(v.(int64))
		i := share(slot, 3)
		seen[i] = true
		owner := dialT(t, c.Addrs()[i])
		want(t, owner, "OK", "SET", key, "v")
		other := dialT(t, c.Addrs()[(i+1)%3])
		_, err = other.Do("GET", key)
		if err == nil || !strings.HasPrefix(err.Error(), "MOVED "+strconv.Itoa(slot)+" "+c.Addrs()[i]) {
			t.Errorf("GET %s from a node that does not serve slot %d: %v; want MOVED to %s", key, slot, err, c.Addrs()[i])
		}
	}
	if len(seen) != 3 {
		t.Errorf("30 keys went to masters %v, want all three", seen)
	}
	if _, err := c.Master(3); err == nil {
		t.Error("Master(3) of three masters succeeded")
	}
}

func TestClusterCloseStopsEverythingAndRemovesItsFiles(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3, 0)
	dir := workDir(t, c.Addrs()[0])
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the cluster's directory: %v", err)
	}
	c.Close()
	for _, n := range c.Nodes() {
		if _, err := redisserver.Dial(n.Addr(), patience); err == nil {
			t.Errorf("node %s still accepts connections after Close", n.Addr())
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the cluster's directory after Close: %v; want it removed", err)
	}
	c.Close() // twice is fine
}

func TestStartClusterRejectsBadSizes(t *testing.T) {
	for _, size := range [][2]int{{0, 0}, {-1, 1}, {3, -1}} {
		if c, err := redisserver.StartCluster(size[0], size[1]); err == nil {
			c.Close()
			t.Errorf("redisserver.StartCluster(%d, %d) succeeded", size[0], size[1])
		}
	}
}

func TestClusterWithoutReplicasGoesDownWithAMaster(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3, 0)
	killed, err := c.KillMaster(1)
	if err != nil {
		t.Fatal(err)
	}
	if killed.Addr() != c.Addrs()[1] {
		t.Fatalf("KillMaster(1) killed %s, want %s", killed.Addr(), c.Addrs()[1])
	}
	// The others stop serving once they agree the master failed: with no
	// replica, its slots are lost (cluster-require-full-coverage).
	waitFor(t, "a live node to say cluster_state:fail", func() string {
		if s := clusterInfo(t, c.Addrs()[0])["cluster_state"]; s != "fail" {
			return "cluster_state:" + s
		}
		return ""
	})
	if err := c.WaitReady(time.Second); err == nil {
		t.Error("WaitReady succeeded on a cluster that lost a master and has no replica")
	}
}

func TestClusterReplicaTakesOverFromAKilledMaster(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3, 1)
	nodes := c.Nodes()
	if len(nodes) != 6 {
		t.Fatalf("Nodes: %d, want 6", len(nodes))
	}
	for i := range 3 {
		role, err := dialT(t, nodes[3+i].Addr()).Do("ROLE")
		if err != nil {
			t.Fatal(err)
		}
		r := role.([]any)
		if r[0] != "slave" || r[2] != port(t, nodes[i].Addr()) || r[3] != "connected" {
			t.Fatalf("node %d, started as master %d's replica: ROLE %v", 3+i, i, r)
		}
	}
	// A key in master 0's share, written where the replica has it.
	master := dialT(t, c.Addrs()[0])
	key := ""
	for k := 0; key == ""; k++ {
		v, err := master.Do("CLUSTER", "KEYSLOT", "k"+strconv.Itoa(k))
		if err != nil {
			t.Fatal(err)
		}
		if share(int(v.(int64)), 3) == 0 {
			key = "k" + strconv.Itoa(k)
		}
	}
	want(t, master, "OK", "SET", key, "kept")
	want(t, master, 1, "WAIT", "1", "10000")

	start := time.Now()
	killed, err := c.KillMaster(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("the replica took over in %s", time.Since(start).Round(time.Millisecond))
	m, err := c.Master(0)
	if err != nil {
		t.Fatal(err)
	}
	if m == killed || m != nodes[3] {
		t.Fatalf("Master(0) after the kill: %s; want its replica %s", m.Addr(), nodes[3].Addr())
	}
	want(t, dialT(t, m.Addr()), "kept", "GET", key)

	// The old master comes back, empty, as the new master's replica.
	if err := killed.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	role, err := dialT(t, killed.Addr()).Do("ROLE")
	if err != nil {
		t.Fatal(err)
	}
	if r := role.([]any); r[0] != "slave" || r[2] != port(t, m.Addr()) {
		t.Errorf("the old master, restarted: ROLE %v; want a replica of %s", r, m.Addr())
	}
}
