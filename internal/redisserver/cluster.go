package redisserver

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// clusterNodeTimeout is how long a cluster node may be unreachable before
// its peers take it for failed: short, so that a test's failover takes
// seconds, not the default 15s.
const clusterNodeTimeout = 1000 * time.Millisecond

// Cluster is a Redis Cluster of redis-server processes on loopback, with
// no persistence: the masters share the slots evenly, in order, and each
// has the same number of replicas.
//
// It is assembled by hand, with the commands redis-cli --cluster create
// sends (CLUSTER SET-CONFIG-EPOCH, ADDSLOTS, MEET, REPLICATE) over a
// plain connection, so that it needs no redis-cli.
type Cluster struct {
	dir      string
	masters  int
	replicas int
	// nodes are the masters as started, then master 0's replicas, master
	// 1's, and so on.
	nodes []*Node
}

// Node is one redis-server of a Cluster. Kill, Pause, Resume and Restart
// are its Server's; a restarted node keeps its cluster config file, so it
// rejoins the cluster as the same node, empty.
type Node struct {
	*Server
	id string
}

// ID returns the node's cluster ID, as CLUSTER NODES names it.
func (n *Node) ID() string { return n.id }

// StartCluster starts a Redis Cluster of masters masters, each with
// replicasPerMaster replicas, and waits until every node says the cluster
// is ok and every slot is served. A failover needs a majority of the
// masters alive: three masters and one replica each let a test kill a
// master and see its replica take over, in a few seconds
// (cluster-node-timeout is 1s). It returns ErrNotInstalled when there is
// no redis-server.
func StartCluster(masters, replicasPerMaster int) (*Cluster, error) {
	if masters < 1 || masters > clusterSlots || replicasPerMaster < 0 {
		return nil, fmt.Errorf("redisserver: StartCluster(%d, %d): a cluster needs at least one master "+
			"(three for a failover) and no negative number of replicas", masters, replicasPerMaster)
	}
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNotInstalled
	}
	dir, err := os.MkdirTemp("", "redisserver-cluster-")
	if err != nil {
		return nil, fmt.Errorf("redisserver: a directory for the cluster's config files: %w", err)
	}
	c := &Cluster{dir: dir, masters: masters, replicas: replicasPerMaster}
	if err := c.assemble(path); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// assemble starts the nodes and makes them one cluster.
func (c *Cluster) assemble(path string) error {
	for range c.masters * (1 + c.replicas) {
		s, err := startOnFreePort(true, func(port int) *Server {
			return &Server{path: path, port: port, args: []string{
				"--dir", c.dir,
				"--cluster-enabled", "yes",
				"--cluster-config-file", fmt.Sprintf("nodes-%d.conf", port),
				"--cluster-node-timeout", strconv.FormatInt(clusterNodeTimeout.Milliseconds(), 10),
				// A replica writes the master's data to a file as it
				// syncs; each its own.
				"--dbfilename", fmt.Sprintf("dump-%d.rdb", port),
				// A replica syncs at once, not after the default 5s.
				"--repl-diskless-sync-delay", "0",
			}}
		})
		if err != nil {
			return fmt.Errorf("redisserver: starting a cluster node: %w", err)
		}
		c.nodes = append(c.nodes, &Node{Server: s})
	}
	for _, n := range c.nodes {
		id, err := doString(n.Addr(), "CLUSTER", "MYID")
		if err != nil {
			return fmt.Errorf("redisserver: CLUSTER MYID on %s: %w (was redis-server built without cluster support?)", n.Addr(), err)
		}
		n.id = id
	}
	// Distinct config epochs from the start, as redis-cli sets them, so
	// that the nodes need not resolve a collision first.
	for i := range c.masters {
		addr := c.nodes[i].Addr()
		if _, err := do(addr, "CLUSTER", "SET-CONFIG-EPOCH", strconv.Itoa(i+1)); err != nil {
			return fmt.Errorf("redisserver: CLUSTER SET-CONFIG-EPOCH on %s: %w", addr, err)
		}
		args := []string{"CLUSTER", "ADDSLOTS"}
		for slot := c.firstSlot(i); slot < c.firstSlot(i+1); slot++ {
			args = append(args, strconv.Itoa(slot))
		}
		if _, err := do(addr, args...); err != nil {
			return fmt.Errorf("redisserver: CLUSTER ADDSLOTS on %s: %w", addr, err)
		}
	}
	first := c.nodes[0].Addr()
	for _, n := range c.nodes[1:] {
		if _, err := do(first, "CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(n.port)); err != nil {
			return fmt.Errorf("redisserver: CLUSTER MEET %s on %s: %w", n.Addr(), first, err)
		}
	}
	// A replica can follow only a master it knows.
	if err := waitFor(20*time.Second, "the cluster's nodes to know each other", c.acquainted); err != nil {
		return err
	}
	for i := range c.masters {
		for j := range c.replicas {
			r := c.nodes[c.masters+i*c.replicas+j]
			if _, err := do(r.Addr(), "CLUSTER", "REPLICATE", c.nodes[i].id); err != nil {
				return fmt.Errorf("redisserver: CLUSTER REPLICATE on %s: %w", r.Addr(), err)
			}
		}
	}
	return c.WaitReady(20 * time.Second)
}

// firstSlot returns the first slot of master i's share; firstSlot(masters)
// is one past the last slot.
func (c *Cluster) firstSlot(i int) int { return i * clusterSlots / c.masters }

// acquainted returns nil once every node knows every other one (handshake
// over).
func (c *Cluster) acquainted() error {
	for _, n := range c.nodes {
		view, err := clusterNodes(n.Addr())
		if err != nil {
			return err
		}
		for _, m := range c.nodes {
			v, ok := view[m.id]
			if !ok {
				return fmt.Errorf("%s does not know %s yet", n.Addr(), m.Addr())
			}
			if v.flags["handshake"] || v.flags["noaddr"] {
				return fmt.Errorf("%s has %s as %s", n.Addr(), m.Addr(), v.flagString)
			}
		}
	}
	return nil
}

// Addrs returns the addresses of the nodes started as masters: the seeds
// for go-redis's ClusterClient, which learns the rest of the cluster from
// any one of them. After a failover some may be replicas or dead; Master
// says who serves a share of the slots now.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, c.masters)
	for i := range addrs {
		addrs[i] = c.nodes[i].Addr()
	}
	return addrs
}

// Nodes returns every node: the masters as started, in the order of their
// shares of the slots, then master 0's replicas, master 1's, and so on.
func (c *Cluster) Nodes() []*Node { return slices.Clone(c.nodes) }

// Master returns the node that masters share i of the slots now (the one
// master i was started with), as the first live node that answers says.
func (c *Cluster) Master(i int) (*Node, error) {
	if i < 0 || i >= c.masters {
		return nil, fmt.Errorf("redisserver: Master(%d): the cluster has masters 0 to %d", i, c.masters-1)
	}
	var errs []error
	for _, n := range c.nodes {
		if !n.running() {
			continue
		}
		view, err := clusterNodes(n.Addr())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		owner := view.owner(c.firstSlot(i))
		if owner == "" {
			return nil, fmt.Errorf("redisserver: %s says no node serves slot %d", n.Addr(), c.firstSlot(i))
		}
		if m := c.node(owner); m != nil {
			return m, nil
		}
		return nil, fmt.Errorf("redisserver: %s says slot %d is served by %s, not a node of this cluster", n.Addr(), c.firstSlot(i), owner)
	}
	return nil, fmt.Errorf("redisserver: no node of the cluster answers CLUSTER NODES: %w", errors.Join(errs...))
}

// KillMaster kills the node that masters share i of the slots now and
// returns it. It does not wait for a replica to take over: WaitReady
// does.
func (c *Cluster) KillMaster(i int) (*Node, error) {
	n, err := c.Master(i)
	if err != nil {
		return nil, err
	}
	n.Kill()
	return n, nil
}

// WaitReady waits up to timeout until the cluster serves again: every
// node not killed says cluster_state:ok with every slot ok, they agree on
// which node masters each share of the slots, each such master is alive,
// and every replica is connected to its master. After KillMaster, that is
// when a replica has taken over (with none, the cluster stays down and
// WaitReady fails).
func (c *Cluster) WaitReady(timeout time.Duration) error {
	return waitFor(timeout, "the cluster to be ok", c.ready)
}

// ready returns nil when the cluster serves, or what it waits for.
func (c *Cluster) ready() error {
	owners := make([]string, c.masters)
	for _, n := range c.nodes {
		if !n.running() {
			continue
		}
		info, err := doString(n.Addr(), "CLUSTER", "INFO")
		if err != nil {
			return err
		}
		f := fields(info)
		if f["cluster_state"] != "ok" || f["cluster_slots_ok"] != strconv.Itoa(clusterSlots) {
			return fmt.Errorf("%s says cluster_state:%s, cluster_slots_ok:%s", n.Addr(), f["cluster_state"], f["cluster_slots_ok"])
		}
		view, err := clusterNodes(n.Addr())
		if err != nil {
			return err
		}
		for _, m := range c.nodes {
			v, ok := view[m.id]
			if m.running() && (!ok || v.flags["fail"] || v.flags["fail?"] || v.flags["handshake"] || v.flags["noaddr"]) {
				return fmt.Errorf("%s has %s as %q", n.Addr(), m.Addr(), v.flagString)
			}
		}
		for i := range owners {
			owner := view.owner(c.firstSlot(i))
			if m := c.node(owner); m == nil || !m.running() {
				return fmt.Errorf("%s says slot %d is served by %s, which is not a live node", n.Addr(), c.firstSlot(i), owner)
			}
			if owners[i] == "" {
				owners[i] = owner
			} else if owners[i] != owner {
				return fmt.Errorf("the nodes do not agree yet on who serves slot %d", c.firstSlot(i))
			}
		}
		role, err := do(n.Addr(), "ROLE")
		if err != nil {
			return err
		}
		if r, _ := role.([]any); len(r) >= 4 && r[0] == "slave" && r[3] != "connected" {
			return fmt.Errorf("replica %s is %v to its master %v:%v", n.Addr(), r[3], r[1], r[2])
		}
	}
	return nil
}

// node returns the node with that ID, or nil.
func (c *Cluster) node(id string) *Node {
	for _, n := range c.nodes {
		if n.id == id {
			return n
		}
	}
	return nil
}

// Close kills every node and removes the cluster's files. It is safe to
// call more than once.
func (c *Cluster) Close() {
	for _, n := range c.nodes {
		n.Kill()
	}
	if c.dir != "" {
		_ = os.RemoveAll(c.dir)
	}
}

// nodeView is one line of CLUSTER NODES.
type nodeView struct {
	flagString string
	flags      map[string]bool
	slots      [][2]int // first and last slot of each range
}

// clusterView is a node's CLUSTER NODES, by node ID.
type clusterView map[string]nodeView

// owner returns the ID of the master that view says serves slot, or "".
func (v clusterView) owner(slot int) string {
	for id, n := range v {
		if !n.flags["master"] {
			continue
		}
		for _, r := range n.slots {
			if r[0] <= slot && slot <= r[1] {
				return id
			}
		}
	}
	return ""
}

// clusterNodes asks addr for CLUSTER NODES.
func clusterNodes(addr string) (clusterView, error) {
	s, err := doString(addr, "CLUSTER", "NODES")
	if err != nil {
		return nil, err
	}
	return parseClusterNodes(s)
}

// parseClusterNodes parses CLUSTER NODES: "<id> <ip:port@cport> <flags>
// <master> <ping-sent> <pong-recv> <config-epoch> <link-state> <slot>...",
// where a slot is "n", "first-last", or a migration in brackets.
func parseClusterNodes(s string) (clusterView, error) {
	view := clusterView{}
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, fmt.Errorf("redisserver: CLUSTER NODES line %q has fewer than 8 fields", line)
		}
		n := nodeView{flagString: f[2], flags: map[string]bool{}}
		for _, flag := range strings.Split(f[2], ",") {
			n.flags[flag] = true
		}
		for _, slot := range f[8:] {
			if strings.HasPrefix(slot, "[") {
				continue
			}
			first, last, isRange := strings.Cut(slot, "-")
			if !isRange {
				last = first
			}
			a, err1 := strconv.Atoi(first)
			b, err2 := strconv.Atoi(last)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("redisserver: CLUSTER NODES line %q has slot %q", line, slot)
			}
			n.slots = append(n.slots, [2]int{a, b})
		}
		view[f[0]] = n
	}
	return view, nil
}

// waitFor polls check until it returns nil or timeout has passed; the
// error then says what was awaited and check's last answer.
func waitFor(timeout time.Duration, what string, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redisserver: waited %s for %s: %w", timeout, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
