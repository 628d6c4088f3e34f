package redisserver

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Sentinel timings: short, so that a failover takes seconds. A sentinel
// takes a master for down after sentinelDownAfter without an answer, and
// a failover that stalls is retried after twice sentinelFailoverTimeout.
const (
	sentinelDownAfter       = 1000 * time.Millisecond
	sentinelFailoverTimeout = 3000 * time.Millisecond
	sentinelCount           = 3
	sentinelQuorum          = 2
)

// failoverWait bounds each of Failover's waits and WaitMaster's: a
// sentinels' election can fail and be retried after
// 2*sentinelFailoverTimeout, more than once on a loaded machine, and the
// sentinels take about 20s on their own clock to take a demoted master
// back as a replica (see Failover).
const failoverWait = 40 * time.Second

// Sentinel is a master, its replica and three sentinels that monitor them
// under one master name: the setup go-redis's FailoverClient connects to.
// Every process is a redis-server on loopback, with no persistence; a
// sentinel is redis-server --sentinel, so redis-sentinel need not be
// installed. The sentinels' config files, which they rewrite, are in a
// temporary directory that Close removes.
type Sentinel struct {
	name string
	dir  string
	// data are the master as started, then its replica.
	data      []*Server
	sentinels []*Server
}

// StartSentinel starts a master, a replica of it and three sentinels that
// monitor it as masterName (quorum two), and waits until every sentinel
// knows the replica, in sync, and the other sentinels. It returns
// ErrNotInstalled when there is no redis-server.
func StartSentinel(masterName string) (*Sentinel, error) {
	if masterName == "" || strings.ContainsFunc(masterName, func(r rune) bool { return r <= ' ' || r == '"' }) {
		return nil, fmt.Errorf("redisserver: StartSentinel(%q): a master name is a word, without spaces or quotes, such as \"mymaster\"", masterName)
	}
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNotInstalled
	}
	dir, err := os.MkdirTemp("", "redisserver-sentinel-")
	if err != nil {
		return nil, fmt.Errorf("redisserver: a directory for the sentinels' config files: %w", err)
	}
	if dir, err = filepath.Abs(dir); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("redisserver: a directory for the sentinels' config files: %w", err)
	}
	s := &Sentinel{name: masterName, dir: dir}
	if err := s.start(path); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// start starts the processes and waits until the sentinels see them all.
func (s *Sentinel) start(path string) error {
	dataServer := func(replicaOf string) func(port int) *Server {
		return func(port int) *Server {
			args := []string{"--dir", s.dir,
				// A replica writes the master's data to a file as it
				// syncs; each its own.
				"--dbfilename", fmt.Sprintf("dump-%d.rdb", port),
				// A replica syncs at once, not after the default 5s.
				"--repl-diskless-sync-delay", "0"}
			if replicaOf != "" {
				host, port, _ := net.SplitHostPort(replicaOf)
				args = append(args, "--replicaof", host, port)
			}
			return &Server{path: path, port: port, args: args}
		}
	}
	master, err := startOnFreePort(false, dataServer(""))
	if err != nil {
		return fmt.Errorf("redisserver: starting the master: %w", err)
	}
	s.data = append(s.data, master)
	replica, err := startOnFreePort(false, dataServer(master.Addr()))
	if err != nil {
		return fmt.Errorf("redisserver: starting the replica: %w", err)
	}
	s.data = append(s.data, replica)
	for i := range sentinelCount {
		conf := filepath.Join(s.dir, fmt.Sprintf("sentinel-%d.conf", i))
		text := fmt.Sprintf("dir %s\n"+
			"sentinel monitor %s 127.0.0.1 %d %d\n"+
			"sentinel down-after-milliseconds %[2]s %[5]d\n"+
			"sentinel failover-timeout %[2]s %[6]d\n"+
			"sentinel parallel-syncs %[2]s 1\n",
			s.dir, s.name, master.port, sentinelQuorum,
			sentinelDownAfter.Milliseconds(), sentinelFailoverTimeout.Milliseconds())
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			return fmt.Errorf("redisserver: writing a sentinel's config file: %w", err)
		}
		sentinel, err := startOnFreePort(false, func(port int) *Server {
			return &Server{path: path, port: port, conf: conf, sentinel: true}
		})
		if err != nil {
			return fmt.Errorf("redisserver: starting a sentinel: %w", err)
		}
		s.sentinels = append(s.sentinels, sentinel)
	}
	return s.WaitReady(20 * time.Second)
}

// MasterName returns the name the sentinels monitor the master under.
func (s *Sentinel) MasterName() string { return s.name }

// SentinelAddrs returns the sentinels' addresses, for go-redis's
// FailoverOptions.SentinelAddrs.
func (s *Sentinel) SentinelAddrs() []string {
	addrs := make([]string, len(s.sentinels))
	for i, sentinel := range s.sentinels {
		addrs[i] = sentinel.Addr()
	}
	return addrs
}

// Servers returns the master as started, then its replica: which is
// master now, MasterAddr says.
func (s *Sentinel) Servers() []*Server { return slices.Clone(s.data) }

// Sentinels returns the sentinels, in the order of SentinelAddrs.
func (s *Sentinel) Sentinels() []*Server { return slices.Clone(s.sentinels) }

// MasterAddr returns the master's address as the first live sentinel that
// answers says (SENTINEL GET-MASTER-ADDR-BY-NAME), as a client asks it.
func (s *Sentinel) MasterAddr() (string, error) {
	var errs []error
	for _, sentinel := range s.sentinels {
		if !sentinel.running() {
			continue
		}
		addr, err := s.masterAddr(sentinel)
		if err == nil {
			return addr, nil
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("redisserver: no sentinel says where master %s is: %w", s.name, errors.Join(errs...))
}

// masterAddr asks one sentinel where the master is.
func (s *Sentinel) masterAddr(sentinel *Server) (string, error) {
	v, err := do(sentinel.Addr(), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.name)
	if err != nil {
		return "", err
	}
	a, _ := v.([]any)
	if len(a) != 2 {
		return "", fmt.Errorf("sentinel %s replied %v to GET-MASTER-ADDR-BY-NAME %s", sentinel.Addr(), v, s.name)
	}
	host, _ := a[0].(string)
	port, _ := a[1].(string)
	return net.JoinHostPort(host, port), nil
}

// Failover makes the sentinels promote the replica (SENTINEL FAILOVER)
// and waits until every live sentinel names it master and it answers ROLE
// as one. It first waits, as WaitReady does, for a replica the sentinels
// will promote: after a failover, the sentinels take the old master back
// as a replica in sync only about 20s later (they give it 8s to change its
// mind, then see its new role at their next 10s INFO), so a second
// Failover waits that long.
func (s *Sentinel) Failover() error {
	if err := s.WaitReady(failoverWait); err != nil {
		return err
	}
	old, err := s.MasterAddr()
	if err != nil {
		return err
	}
	var sentinel *Server
	for _, sn := range s.sentinels {
		if sn.running() {
			sentinel = sn
			break
		}
	}
	err = waitFor(failoverWait, "a sentinel to start a failover", func() error {
		_, err := do(sentinel.Addr(), "SENTINEL", "FAILOVER", s.name)
		var re ReplyError
		switch {
		case errors.As(err, &re) && strings.HasPrefix(string(re), "INPROG"):
			return nil // one is on its way already: wait for it
		case errors.As(err, &re) && strings.HasPrefix(string(re), "NOGOODSLAVE"):
			return fmt.Errorf("sentinel %s finds no replica fit to promote: %w", sentinel.Addr(), err)
		}
		return err
	})
	if err != nil {
		return err
	}
	_, err = s.WaitMaster(old)
	return err
}

// KillMaster kills the master the sentinels name and returns its address.
// It does not wait for the sentinels to promote the replica: WaitMaster
// does. Without a replica in sync, none is promoted.
func (s *Sentinel) KillMaster() (string, error) {
	addr, err := s.MasterAddr()
	if err != nil {
		return "", err
	}
	for _, d := range s.data {
		if d.Addr() == addr {
			d.Kill()
			return addr, nil
		}
	}
	return "", fmt.Errorf("redisserver: the sentinels name %s master, not a server of this set", addr)
}

// WaitMaster waits until every live sentinel names a master other than
// old, the same one, which answers ROLE as master, and no sentinel is in
// a failover any more; it returns the new master's address. After
// KillMaster or a master's Pause, that is once the sentinels have agreed
// it is down and promoted the replica: a few seconds, more when an
// election fails and is retried.
func (s *Sentinel) WaitMaster(old string) (string, error) {
	var master string
	err := waitFor(failoverWait, "the sentinels to name a new master", func() error {
		master = ""
		for _, sentinel := range s.sentinels {
			if !sentinel.running() {
				continue
			}
			addr, err := s.masterAddr(sentinel)
			if err != nil {
				return err
			}
			if addr == old {
				return fmt.Errorf("sentinel %s still names %s master", sentinel.Addr(), old)
			}
			if master != "" && addr != master {
				return fmt.Errorf("the sentinels name %s and %s master", master, addr)
			}
			master = addr
			m, err := do(sentinel.Addr(), "SENTINEL", "MASTER", s.name)
			if err != nil {
				return err
			}
			if flags := pairs(m)["flags"]; flags != "master" {
				return fmt.Errorf("sentinel %s has master %s as %q", sentinel.Addr(), s.name, flags)
			}
		}
		if master == "" {
			return errors.New("every sentinel is killed")
		}
		role, err := do(master, "ROLE")
		if err != nil {
			return err
		}
		if r, _ := role.([]any); len(r) == 0 || r[0] != "master" {
			return fmt.Errorf("%s, named master, answers ROLE with %v", master, role)
		}
		return nil
	})
	return master, err
}

// WaitReady waits up to timeout until the set is as StartSentinel leaves
// it, with whichever server is master now: every live sentinel names the
// same master, a live server that answers ROLE as master, and is in no
// failover; each knows every other live sentinel, and every other live
// server as a replica in sync. Only then can the sentinels fail over
// again.
func (s *Sentinel) WaitReady(timeout time.Duration) error {
	return waitFor(timeout, "the sentinels to agree on a master and know its replica in sync and each other", s.ready)
}

// ready returns nil when the set is ready, or what it waits for.
func (s *Sentinel) ready() error {
	live := 0
	for _, sentinel := range s.sentinels {
		if sentinel.running() {
			live++
		}
	}
	if live == 0 {
		return errors.New("every sentinel is killed")
	}
	master, err := s.MasterAddr()
	if err != nil {
		return err
	}
	alive := false
	for _, d := range s.data {
		alive = alive || (d.running() && d.Addr() == master)
	}
	if !alive {
		return fmt.Errorf("the sentinels name %s master, which is killed", master)
	}
	role, err := do(master, "ROLE")
	if err != nil {
		return err
	}
	if r, _ := role.([]any); len(r) == 0 || r[0] != "master" {
		return fmt.Errorf("%s, named master, answers ROLE with %v", master, role)
	}
	for _, sentinel := range s.sentinels {
		if !sentinel.running() {
			continue
		}
		addr, err := s.masterAddr(sentinel)
		if err != nil {
			return err
		}
		if addr != master {
			return fmt.Errorf("sentinel %s names %s master, another %s", sentinel.Addr(), addr, master)
		}
		m, err := do(sentinel.Addr(), "SENTINEL", "MASTER", s.name)
		if err != nil {
			return err
		}
		info := pairs(m)
		if info["flags"] != "master" {
			return fmt.Errorf("sentinel %s has master %s as %q", sentinel.Addr(), s.name, info["flags"])
		}
		if n, _ := strconv.Atoi(info["num-other-sentinels"]); n < live-1 {
			return fmt.Errorf("sentinel %s knows %d other sentinels, not %d yet", sentinel.Addr(), n, live-1)
		}
		v, err := do(sentinel.Addr(), "SENTINEL", "REPLICAS", s.name)
		if err != nil {
			return err
		}
		replicas := map[string]map[string]string{}
		list, _ := v.([]any)
		for _, r := range list {
			p := pairs(r)
			replicas[net.JoinHostPort(p["ip"], p["port"])] = p
		}
		for _, d := range s.data {
			if !d.running() || d.Addr() == master {
				continue
			}
			r, ok := replicas[d.Addr()]
			if !ok {
				return fmt.Errorf("sentinel %s does not know replica %s yet", sentinel.Addr(), d.Addr())
			}
			if r["flags"] != "slave" || r["master-link-status"] != "ok" {
				return fmt.Errorf("sentinel %s has replica %s as %q, its link to the master %q",
					sentinel.Addr(), d.Addr(), r["flags"], r["master-link-status"])
			}
		}
	}
	return nil
}

// Close kills every process and removes the config files. It is safe to
// call more than once.
func (s *Sentinel) Close() {
	for _, sentinel := range s.sentinels {
		sentinel.Kill()
	}
	for _, d := range s.data {
		d.Kill()
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}
