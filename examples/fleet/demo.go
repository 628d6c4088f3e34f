package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/httpbreaker/httpbreaker"
	"github.com/httpbreaker/httpbreaker/internal/redisserver"
)

// replicas is how many replicas of the plugin host the demo runs.
const replicas = 3

// runDemo tells the fleet's story, and returns an error if it did not
// happen as told.
func runDemo(ctx context.Context, out io.Writer) error {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return fmt.Errorf("the fleet demo runs a real Redis: %w", redisserver.ErrNotInstalled)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	d := &demo{out: out, exe: exe, start: time.Now()}
	defer d.cleanup()
	up, err := d.serve(http.HandlerFunc(d.upstream))
	if err != nil {
		return err
	}
	d.upstreamURL = "http://" + up
	lb, err := d.serve(http.HandlerFunc(d.balance))
	if err != nil {
		return err
	}
	d.lbURL = "http://" + lb

	d.say("The plugin host runs as %d replicas behind a round-robin load balancer. Its search plugin calls an upstream;", replicas)
	d.say("each replica's breaker for it trips at 50%% failures over at least 20 calls (policy in replica.go).")
	d.say("")

	// Act 1: alone.
	d.say("1. Without shared state: each replica learns alone.")
	if err := d.startFleet(""); err != nil {
		return err
	}
	alone, err := d.outage(ctx)
	if err != nil {
		return err
	}
	d.say("   every replica stopped calling the upstream after %d failures reached it (each needed 20 of its own)", alone)
	d.stopFleet()
	d.say("")

	// Act 2: together.
	d.say("2. With shared state through Redis (redisstate):")
	srv, err := redisserver.Start()
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.redis = srv
	d.mu.Unlock()
	redisAddr := srv.Addr()
	d.say("   redis-server on %s", redisAddr)
	if err := d.startFleet(redisAddr); err != nil {
		return err
	}
	if err := d.waitReplicas("every replica connected to the fleet", func(r replicaReport) bool {
		return r.Fleet.Connected && r.Fleet.Replicas == replicas
	}); err != nil {
		return err
	}
	together, err := d.outage(ctx)
	if err != nil {
		return err
	}
	held := d.fleetHold()
	d.say("   the fleet opened everywhere after %d failures in total, against %d alone: %s", together, alone, held)
	d.check(together < alone, "the fleet absorbed %d failures, no fewer than the %d of replicas alone", together, alone)
	d.check(together >= 20, "the fleet opened after %d failures, fewer than its MinRequests", together)

	d.setFailing(false)
	d.say("%s  the upstream recovers; the fleet's hold ends after its cooldown, and the fleet probes it together", d.clock())
	traffic := d.traffic(ctx)
	err = d.waitReplicas("every replica closed", func(r replicaReport) bool { return r.Search == httpbreaker.StateClosed.String() })
	traffic.stop()
	if err != nil {
		return err
	}
	probes := int64(0)
	for _, r := range d.reports() {
		probes += r.Probes
	}
	d.say("%s  every replica closed after %d probe in the whole fleet (HalfOpenRequests: 1; alone, each replica probes)", d.clock(), probes)
	d.check(probes == 1, "the fleet sent %d probes, want 1", probes)
	d.say("")

	// Act 3: Redis goes away.
	d.say("3. Redis is killed mid-traffic:")
	traffic = d.traffic(ctx)
	time.Sleep(500 * time.Millisecond)
	d.stopRedis()
	d.say("%s  redis-server killed", d.clock())
	err = d.waitReplicas("every replica noticed", func(r replicaReport) bool { return !r.Fleet.Connected })
	if err == nil {
		time.Sleep(time.Second)
	}
	ok, failed := traffic.stop()
	if err != nil {
		return err
	}
	d.say("%s  %d requests answered while Redis went away, %d failed; each replica's breakers go on alone", d.clock(), ok, failed)
	d.check(failed == 0, "%d requests failed while Redis went away", failed)
	d.say("")

	if len(d.problems) > 0 {
		return fmt.Errorf("the story did not happen:\n  %s", strings.Join(d.problems, "\n  "))
	}
	d.say("✓ the fleet stopped calling a failing upstream after %d failures instead of %d, probed it once, recovered everywhere,", together, alone)
	d.say("  and lost no request when Redis went away")
	return nil
}

// demo holds the story's moving parts.
type demo struct {
	out                io.Writer
	exe                string
	start              time.Time
	upstreamURL, lbURL string
	problems           []string

	failing  atomic.Bool  // the upstream answers 500
	failures atomic.Int64 // the failures it answered

	mu       sync.Mutex
	backends []*url.URL
	next     int
	children []*child
	servers  []*http.Server
	redis    *redisserver.Server
}

func (d *demo) clock() string { return fmt.Sprintf("   [%5.1fs]", time.Since(d.start).Seconds()) }

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

func (d *demo) check(ok bool, format string, args ...any) {
	if !ok {
		d.problems = append(d.problems, fmt.Sprintf(format, args...))
	}
}

// upstream is the search plugin's upstream: it answers 500 while failing.
func (d *demo) upstream(w http.ResponseWriter, _ *http.Request) {
	if d.failing.Load() {
		d.failures.Add(1)
		http.Error(w, "upstream down", http.StatusInternalServerError)
		return
	}
	fmt.Fprintln(w, `{"results":[]}`)
}

func (d *demo) setFailing(on bool) { d.failing.Store(on) }

// balance is the load balancer: each request to the next replica in turn.
func (d *demo) balance(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	if len(d.backends) == 0 {
		d.mu.Unlock()
		http.Error(w, "no replicas", http.StatusBadGateway)
		return
	}
	target := d.backends[d.next%len(d.backends)]
	d.next++
	d.mu.Unlock()
	httputil.NewSingleHostReverseProxy(target).ServeHTTP(w, r)
}

// serve serves h on a free loopback port until the demo ends.
func (d *demo) serve(h http.Handler) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	d.mu.Lock()
	d.servers = append(d.servers, srv)
	d.mu.Unlock()
	return l.Addr().String(), nil
}

// child is a replica's process.
type child struct {
	name  string
	cmd   *exec.Cmd
	stdin io.Closer
	addr  string
}

// startFleet starts the replicas, sharing state through redisAddr unless
// it is empty, and puts them behind the load balancer.
func (d *demo) startFleet(redisAddr string) error {
	var urls []*url.URL
	for i := range replicas {
		name := "r" + strconv.Itoa(i+1)
		cmd := exec.Command(d.exe, "-child", "-replica", name, "-listen", "127.0.0.1:0", "-redis", redisAddr,
			"-upstream", d.upstreamURL)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("starting replica %s: %w", name, err)
		}
		c := &child{name: name, cmd: cmd, stdin: stdin}
		d.mu.Lock()
		d.children = append(d.children, c)
		d.mu.Unlock()
		line, err := bufio.NewReader(stdout).ReadString('\n')
		addr, found := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
		if err != nil || !found {
			return fmt.Errorf("replica %s did not start: %q %v", name, line, err)
		}
		go func() { _, _ = io.Copy(io.Discard, stdout) }()
		c.addr = addr
		urls = append(urls, &url.URL{Scheme: "http", Host: addr})
	}
	d.mu.Lock()
	d.backends = urls
	d.mu.Unlock()
	return d.waitReplicas("every replica serving", func(replicaReport) bool { return true })
}

// stopFleet stops the replicas: each exits when its stdin closes.
func (d *demo) stopFleet() {
	d.mu.Lock()
	children := d.children
	d.children, d.backends = nil, nil
	d.mu.Unlock()
	for _, c := range children {
		_ = c.stdin.Close()
		done := make(chan struct{})
		go func() { _ = c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = c.cmd.Process.Kill()
			<-done
		}
	}
}

// reports asks every replica how it is; a replica that does not answer is
// left out.
func (d *demo) reports() []replicaReport {
	d.mu.Lock()
	children := d.children
	d.mu.Unlock()
	var out []replicaReport
	for _, c := range children {
		resp, err := http.Get("http://" + c.addr + "/fleet")
		if err != nil {
			continue
		}
		var r replicaReport
		if json.NewDecoder(resp.Body).Decode(&r) == nil {
			out = append(out, r)
		}
		resp.Body.Close()
	}
	return out
}

// waitReplicas waits until every replica's report meets cond.
func (d *demo) waitReplicas(what string, cond func(replicaReport) bool) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		rs := d.reports()
		ok := len(rs) == replicas
		for _, r := range rs {
			ok = ok && cond(r)
		}
		if ok {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("gave up waiting for %s: %+v", what, d.reports())
}

// outage makes the upstream fail, starts traffic, and returns how many
// failures reached the upstream before every replica stopped calling it.
// The replicas' windows start empty, as after a deploy or a quiet night:
// then MinRequests decides, per replica alone and once for the fleet.
func (d *demo) outage(ctx context.Context) (int64, error) {
	base := d.failures.Load()
	d.setFailing(true)
	traffic := d.traffic(ctx)
	defer traffic.stop()
	d.say("%s  the search plugin's upstream is down; traffic starts: about %d requests a second", d.clock(), rate)
	if err := d.waitReplicas("every replica open", func(r replicaReport) bool { return r.Search == httpbreaker.StateOpen.String() }); err != nil {
		return 0, err
	}
	d.say("%s  every replica is open", d.clock())
	time.Sleep(200 * time.Millisecond) // requests in flight land
	return d.failures.Load() - base, nil
}

// rate is the demo's traffic, in requests a second.
const rate = 200

// trafficRun is traffic sent to the load balancer until stopped.
type trafficRun struct {
	cancel     context.CancelFunc
	done       chan struct{}
	ok, failed atomic.Int64
}

// traffic sends requests to the search plugin through the load balancer,
// about rate a second, and counts those answered 200 and the others.
func (d *demo) traffic(ctx context.Context) *trafficRun {
	ctx, cancel := context.WithCancel(ctx)
	t := &trafficRun{cancel: cancel, done: make(chan struct{})}
	client := &http.Client{Timeout: 5 * time.Second}
	go func() {
		defer close(t.done)
		tick := time.NewTicker(time.Second / rate)
		defer tick.Stop()
		var wg sync.WaitGroup
		defer wg.Wait()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			wg.Go(func() {
				resp, err := client.Get(d.lbURL + "/api/search/query?q=breakers")
				if err != nil {
					t.failed.Add(1)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					t.ok.Add(1)
				} else {
					t.failed.Add(1)
				}
			})
		}
	}()
	return t
}

// stop ends the traffic, and returns how many requests were answered well
// and how many failed.
func (t *trafficRun) stop() (ok, failed int64) {
	t.cancel()
	<-t.done
	return t.ok.Load(), t.failed.Load()
}

// fleetHold says what the fleet's hold on search is, as a replica's status
// page tells it.
func (d *demo) fleetHold() string {
	d.mu.Lock()
	c := d.children[len(d.children)-1]
	d.mu.Unlock()
	resp, err := http.Get("http://" + c.addr + "/status")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var status httpbreaker.StatusPage
	if err := json.NewDecoder(resp.Body).Decode(&status); err != nil {
		return err.Error()
	}
	for _, s := range status.Keys {
		if s.Key == "search" && s.LastTrip != nil && s.LastTrip.Fleet {
			return fmt.Sprintf("%s's status page says the fleet tripped search on %s (%d of %d calls failed, seen by %s)",
				c.name, s.LastTrip.Reason, s.LastTrip.Failures, s.LastTrip.Failures+s.LastTrip.Successes, s.LastTrip.Replica)
		}
	}
	d.check(false, "%s's status page shows no fleet trip of search", c.name)
	return "no fleet trip on the status page"
}

func (d *demo) stopRedis() {
	d.mu.Lock()
	srv := d.redis
	d.mu.Unlock()
	if srv != nil {
		srv.Kill()
	}
}

// cleanup stops everything the demo started.
func (d *demo) cleanup() {
	d.stopFleet()
	d.stopRedis()
	d.mu.Lock()
	servers := d.servers
	d.mu.Unlock()
	for _, s := range servers {
		_ = s.Close()
	}
}
