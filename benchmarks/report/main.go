// Command report measures httpbreaker from scratch and writes BENCHMARKS.md
// and benchmarks/chart.svg:
//
//	go run ./benchmarks/report        # from the repository root; about half an hour
//
// It runs the library's benchmarks and the comparison with other libraries
// (go test -bench, -count times each, medians), then the end-to-end test: a
// real HTTP server on loopback, bare and with the middleware, loaded with
// wrk (apt-get install wrk) in alternating rounds, and last the plugin host's
// soak (go run ./examples/plugins -soak 5m), and the fleet's measurements on
// a real redis-server (go run ./benchmarks/fleet). Every ratio in the report
// compares figures from the same run of this command. -quick runs every step
// once and briefly, to check that the command works (CI does that); its
// figures mean nothing.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

type options struct {
	quick     bool
	count     int
	benchtime string
	rounds    int
	duration  time.Duration
	soak      time.Duration
	mdPath    string
	svgPath   string
}

func main() {
	var o options
	flag.BoolVar(&o.quick, "quick", false, "run every step once and briefly, to check the command works (the figures mean nothing)")
	flag.IntVar(&o.count, "count", 5, "runs of each benchmark; the report shows medians")
	flag.StringVar(&o.benchtime, "benchtime", "1s", "go test -benchtime")
	flag.IntVar(&o.rounds, "rounds", 15, "end-to-end rounds, each a wrk run on the bare and on the guarded server")
	flag.DurationVar(&o.duration, "duration", 2*time.Second, "wrk run length per server and round")
	flag.DurationVar(&o.soak, "soak", 5*time.Minute, "how long the soak runs (go run ./examples/plugins -soak)")
	flag.StringVar(&o.mdPath, "md", "BENCHMARKS.md", "report to write, relative to the repository root")
	flag.StringVar(&o.svgPath, "svg", "benchmarks/chart.svg", "chart to write, relative to the repository root")
	flag.Parse()
	if o.quick {
		o.count, o.benchtime, o.rounds, o.duration, o.soak = 1, "1x", 1, time.Second, 30*time.Second
	}
	if err := run(o); err != nil {
		log.Fatal(err)
	}
}

func run(o options) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk is not installed (apt-get install wrk); the end-to-end test needs it")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		return errors.New("redis-server is not installed (apt-get install redis-server); the fleet's measurements need it")
	}
	m := machine()
	log.Printf("measuring on %s", m)

	log.Print("library benchmarks")
	lib, err := goBench(root, ".", ".", "", o)
	if err != nil {
		return err
	}
	log.Printf("memory per key at GOMAXPROCS %s", strings.Join(memoryCores, ", "))
	cores, err := goBench(root, ".", "^BenchmarkMemoryPerKey$", strings.Join(memoryCores, ","), o)
	if err != nil {
		return err
	}
	log.Print("comparison with other libraries")
	peers, err := goBench(root, "./benchmarks", ".", "", o)
	if err != nil {
		return err
	}
	log.Print("end to end, with wrk")
	rounds, err := endToEnd(root, o)
	if err != nil {
		return err
	}

	log.Printf("soak, %v", o.soak)
	soak, err := soakRun(root, o.soak)
	if err != nil {
		return err
	}

	log.Print("fleet")
	fleet, err := fleetRun(root, o.quick)
	if err != nil {
		return err
	}

	r := report{machine: m, opts: o, lib: lib, peers: peers, cores: cores, rounds: rounds, soak: soak, fleet: fleet}
	md, svg := r.markdown(), r.chart()
	if err := os.WriteFile(inRoot(root, o.mdPath), []byte(md), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(inRoot(root, o.svgPath), []byte(svg), 0o644); err != nil {
		return err
	}
	log.Printf("wrote %s and %s", o.mdPath, o.svgPath)
	return nil
}

// fleetRun runs the fleet's measurements (benchmarks/fleet) and returns
// the markdown they printed.
func fleetRun(root string, quick bool) (string, error) {
	args := []string{"run", "./benchmarks/fleet"}
	if quick {
		args = append(args, "-quick")
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("fleet: %w\n%s", err, stderr.String())
	}
	return string(out), nil
}

// soakRun runs the plugin host's soak for d and returns what it printed. A
// soak that finds the host growing, or a request unanswered, is an error.
func soakRun(root string, d time.Duration) (string, error) {
	cmd := exec.Command("go", "run", "./examples/plugins", "-soak", d.String())
	cmd.Dir, cmd.Stderr = root, os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("soak: %w\n%s", err, out)
	}
	return string(out), nil
}

// inRoot resolves a relative path against the repository root.
func inRoot(root, path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(root, path)
}

// repoRoot finds the directory with go.work, upwards from the working one.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run it inside the httpbreaker repository (no go.work found above the working directory)")
		}
		dir = parent
	}
}

// machineInfo says where the figures come from.
type machineInfo struct {
	cpu, goVersion, osArch string
	cpus                   int
	date                   time.Time
}

func (m machineInfo) String() string {
	return fmt.Sprintf("%s, %d CPUs, %s, %s", m.cpu, m.cpus, m.osArch, m.goVersion)
}

func machine() machineInfo {
	m := machineInfo{cpu: "unknown CPU", cpus: runtime.NumCPU(), osArch: runtime.GOOS + "/" + runtime.GOARCH, date: time.Now().UTC()}
	if out, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		m.goVersion = strings.TrimSpace(string(out))
	}
	if info, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(info), "\n") {
			if name, ok := strings.CutPrefix(line, "model name"); ok {
				m.cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
				break
			}
		}
	}
	return m
}

// goBench runs the benchmarks of the packages in dir that match pattern and
// returns the samples by benchmark name. With cpu (go test -cpu) the names
// keep their -N suffix, which then tells the runs apart; without, it is
// dropped.
func goBench(root, dir, pattern, cpu string, o options) (samples, error) {
	args := []string{"test", "-run", "^$", "-bench", pattern, "-benchmem", "-timeout", "0",
		"-count", strconv.Itoa(o.count), "-benchtime", o.benchtime}
	if cpu != "" {
		args = append(args, "-cpu", cpu)
	}
	cmd := exec.Command("go", append(args, dir)...)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(&out, progress{partial: new([]byte)})
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go test -bench %s in %s: %w", pattern, dir, err)
	}
	return parseBench(&out, cpu != "")
}

// progress echoes finished benchmark lines while they come, so that a long
// run shows life.
type progress struct{ partial *[]byte }

func (pr progress) Write(p []byte) (int, error) {
	*pr.partial = append(*pr.partial, p...)
	for {
		i := bytes.IndexByte(*pr.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		if line := string((*pr.partial)[:i]); strings.HasPrefix(line, "Benchmark") {
			fmt.Fprintln(os.Stderr, "  "+line)
		}
		*pr.partial = (*pr.partial)[i+1:]
	}
}

// samples holds each benchmark's runs: unit -> values.
type samples map[string]map[string][]float64

var procSuffix = regexp.MustCompile(`-\d+$`)

// parseBench reads go test -bench output; keepProcs keeps the -N suffix of
// each name (GOMAXPROCS).
func parseBench(r io.Reader, keepProcs bool) (samples, error) {
	s := samples{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		name := strings.TrimPrefix(fields[0], "Benchmark")
		if !keepProcs {
			name = procSuffix.ReplaceAllString(name, "")
		}
		if s[name] == nil {
			s[name] = map[string][]float64{}
		}
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return nil, fmt.Errorf("benchmark line %q: %w", sc.Text(), err)
			}
			s[name][fields[i+1]] = append(s[name][fields[i+1]], v)
		}
	}
	if len(s) == 0 {
		return nil, errors.New("no benchmark results in the output")
	}
	return s, sc.Err()
}

// get returns the median of a benchmark's values in unit, and whether it
// ran.
func (s samples) get(name, unit string) (float64, bool) {
	vs := s[name][unit]
	if len(vs) == 0 {
		return 0, false
	}
	vs = slices.Clone(vs)
	slices.Sort(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2], true
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2, true
}

// ns and allocs read the two figures most tables show; a missing benchmark
// reads as NaN, which the report prints as "n/a".
func (s samples) ns(name string) float64     { return s.must(name, "ns/op") }
func (s samples) allocs(name string) float64 { return s.must(name, "allocs/op") }
func (s samples) bytes(name string) float64  { return s.must(name, "B/op") }

func (s samples) must(name, unit string) float64 {
	if v, ok := s.get(name, unit); ok {
		return v
	}
	return nan
}

// round is one end-to-end round: requests per second without and with the
// middleware.
type round struct{ bare, guarded float64 }

func (r round) ratio() float64 { return r.guarded / r.bare }

// endToEnd builds the e2e server and starts it twice, bare and guarded,
// then loads them with wrk in turn, many short runs each: every round is a
// run on each, in alternating order, so that drift in the machine's speed
// falls on both, and the median of the rounds' ratios is the figure.
func endToEnd(root string, o options) ([]round, error) {
	tmp, err := os.MkdirTemp("", "httpbreaker-e2e")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "e2eserver")
	build := exec.Command("go", "build", "-o", bin, "./benchmarks/e2eserver")
	build.Dir, build.Stderr = root, os.Stderr
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("building the e2e server: %w", err)
	}
	var urls [2]string // bare, guarded
	for i, guarded := range []bool{false, true} {
		url, stop, err := startServer(bin, guarded)
		if err != nil {
			return nil, err
		}
		defer stop()
		if _, err := wrk(url, time.Second); err != nil { // warm-up: connections, caches, the heap
			return nil, err
		}
		urls[i] = url
	}
	var rounds []round
	for i := range o.rounds {
		var rps [2]float64
		for _, which := range [][2]int{{0, 1}, {1, 0}}[i%2] {
			if rps[which], err = wrk(urls[which], o.duration); err != nil {
				return nil, err
			}
		}
		r := round{bare: rps[0], guarded: rps[1]}
		log.Printf("  round %d: bare %.0f req/s, with the middleware %.0f req/s (%.1f%%)", i+1, r.bare, r.guarded, 100*r.ratio())
		rounds = append(rounds, r)
	}
	return rounds, nil
}

// pinned runs a command on one CPU with taskset, when there are two or more
// CPUs and taskset is installed, so that the server and wrk do not take
// turns on the same core: that is most of the noise of a load test on a
// small machine.
func pinned(cpu int, name string, args ...string) *exec.Cmd {
	if runtime.NumCPU() < 2 {
		return exec.Command(name, args...)
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return exec.Command(name, args...)
	}
	return exec.Command("taskset", append([]string{"-c", strconv.Itoa(cpu), name}, args...)...)
}

// startServer starts the e2e server on CPU 0 with GOMAXPROCS=1 and returns
// its URL, and a function that stops it.
func startServer(bin string, guarded bool) (string, func(), error) {
	args := []string{"-addr", "127.0.0.1:0"}
	if guarded {
		args = append(args, "-breaker")
	}
	srv := pinned(0, bin, args...)
	srv.Env = append(os.Environ(), "GOMAXPROCS=1")
	stdin, err := srv.StdinPipe() // the server exits when this closes
	if err != nil {
		return "", nil, err
	}
	stdout, err := srv.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		stdin.Close()
		_ = srv.Wait()
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if err != nil || !ok {
		stop()
		return "", nil, fmt.Errorf("e2e server did not start: %q %v", line, err)
	}
	return "http://" + addr + "/api/catalog/entities", stop, nil
}

// runWithContext runs cmd, killing it if ctx ends first.
func runWithContext(ctx context.Context, cmd *exec.Cmd) ([]byte, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.Bytes(), err
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		return out.Bytes(), ctx.Err()
	}
}

var rpsLine = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

func wrk(url string, d time.Duration) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	cmd := pinned(1, "wrk", "-t1", "-c32", "-d"+strconv.Itoa(int(d.Seconds()))+"s", url)
	out, err := runWithContext(ctx, cmd)
	if err != nil {
		return 0, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	m := rpsLine.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("wrk printed no Requests/sec:\n%s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}
