package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

var nan = math.NaN()

// report turns the measurements into BENCHMARKS.md.
type report struct {
	machine machineInfo
	opts    options
	lib     samples
	peers   samples
	cores   samples // BenchmarkMemoryPerKey at each of memoryCores, names with their -N
	rounds  []round
	soak    string // what the soak printed
	fleet   string // what benchmarks/fleet printed: markdown
}

// peer is a library of the comparison, as named in BenchmarkPeers, with
// what explains its figures: each note says what the library does per
// request, read from its source.
type peer struct {
	name string
	rate bool // trips on a failure rate over a rolling window
	what string
}

var peerList = []peer{
	{"httpbreaker", true, "this library: gobreaker underneath, a pooled status writer, classification, metrics counters, panic handling"},
	{"gobreaker-twostep", true, "the same engine as a hand-written middleware: TwoStepCircuitBreaker's Allow and done (its done callback is allocated per request) and a capture wrapper per request"},
	{"failsafe-go", true, "admits in the closed state under a mutex without reading the clock and records with one clock read, where gobreaker reads it on both sides"},
	{"handy", true, "streadway/handy: every Allow, Success and Failure is a channel round trip to the breaker's goroutine"},
	{"hystrix-go", true, "afex/hystrix-go: runs every call on a goroutine of its own, with channels, a ticket pool and asynchronous metrics"},
	{"rubyist", true, "rubyist/circuitbreaker: atomics and a mutex-guarded rolling window"},
	{"go-zero", true, "go-zero's adaptive throttling (Google SRE): a rolling window and a random draw per request; it sheds a share of load instead of opening, so some requests get through while failing"},
	{"go-resiliency", false, "eapache/go-resiliency: one mutex section per call and no window: it counts errors until an error-free pause, with no rate; less to do, and not the policy compared"},
}

var workloads = []struct{ name, title string }{
	{"closed-1key", "closed, one key"},
	{"closed-1000key", "closed, 1000 keys"},
	{"closed-1key-parallel", "closed, one key, every core"},
	{"closed-1000key-parallel", "closed, 1000 keys, every core"},
	{"open", "open: the rejection"},
}

func (r report) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	o := r.opts
	p("# Benchmarks\n\n")
	p("Written by `go run ./benchmarks/report` from fresh measurements on %s.\n\n", r.machine.date.Format("2006-01-02"))
	p("- Machine: %s, %d CPUs, %s; %s.\n", r.machine.cpu, r.machine.cpus, r.machine.osArch, r.machine.goVersion)
	p("- Each figure is the median of %d runs of `go test -bench` with `-benchtime %s`; every ratio compares figures from the same run of the command.\n", o.count, o.benchtime)
	p("- The library's benchmarks are in [`bench_test.go`](bench_test.go), the comparison in [`benchmarks/`](benchmarks), a module of its own so that the library's `go.mod` names none of the other libraries.\n")
	p("- Absolute times drift between runs on a shared machine; read the ratios.\n")
	if o.quick {
		p("- **Written with -quick: every benchmark ran once, briefly. These figures only show that the command works; they measure nothing.**\n")
	}
	p("\n")
	p("![ns/op and allocs/op per library](benchmarks/chart.svg)\n\n")

	r.closedPath(p)
	r.rejection(p)
	r.keys(p)
	r.parallel(p)
	r.memory(p)
	r.statusPage(p)
	r.capture(p)
	r.peersSection(p)
	r.clientSection(p)
	r.endToEndSection(p)
	r.soakSection(p)
	r.fleetSection(p)
	return b.String()
}

type printer func(format string, args ...any)

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

func (r report) closedPath(p printer) {
	l := r.lib
	bare, exec := l.ns("Closed/bare"), l.ns("Closed/gobreaker-execute")
	p("## Closed path\n\nThe same handler (a status and a short body) alone, inside gobreaker's own `Execute`, and behind the middleware.\n\n")
	p("| | ns/op | allocs/op | added to the handler | added, relative to gobreaker's |\n|---|---:|---:|---:|---:|\n")
	for _, row := range []struct{ label, name string }{
		{"handler alone", "Closed/bare"},
		{"gobreaker `Execute`", "Closed/gobreaker-execute"},
		{"`Middleware`", "Closed/middleware"},
		{"`KeyedMiddleware` (`RoutePattern`)", "Closed/keyed-middleware"},
	} {
		ns := l.ns(row.name)
		added, rel := "", ""
		if row.name != "Closed/bare" {
			added = fmt.Sprintf("%.0f ns", ns-bare)
			rel = fmt.Sprintf("%.2fx", (ns-bare)/(exec-bare))
		}
		p("| %s | %s | %s | %s | %s |\n", row.label, num(ns), num(l.allocs(row.name)), added, rel)
	}
	mw, keyed := (l.ns("Closed/middleware")-bare)/(exec-bare), (l.ns("Closed/keyed-middleware")-bare)/(exec-bare)
	p("\nTarget: the middleware adds at most 1.5x what gobreaker's `Execute` adds (aim 1.25x), with 0 allocs/op. "+
		"`Middleware`: %.2fx, %s allocs/op, %s; `KeyedMiddleware`: %.2fx, %s.\n\n",
		mw, num(l.allocs("Closed/middleware")), verdict(mw <= 1.5 && l.allocs("Closed/middleware") == 0),
		keyed, verdict(keyed <= 1.5 && l.allocs("Closed/keyed-middleware") == 0))
}

func (r report) rejection(p printer) {
	l := r.lib
	gb := l.ns("Rejection/gobreaker-open")
	p("## Rejection\n\ngobreaker's own rejection by an open breaker (`Execute` returning `ErrOpenState`, no response written) beside the middleware's, which writes the 503 problem response.\n\n")
	p("| | ns/op | allocs/op | relative to gobreaker's |\n|---|---:|---:|---:|\n")
	for _, row := range []struct{ label, name string }{
		{"gobreaker, open", "Rejection/gobreaker-open"},
		{"middleware, open", "Rejection/open"},
		{"middleware, half-open with every probe taken", "Rejection/half-open"},
	} {
		p("| %s | %s | %s | %.2fx |\n", row.label, num(l.ns(row.name)), num(l.allocs(row.name)), l.ns(row.name)/gb)
	}
	ratio, allocs := l.ns("Rejection/open")/gb, l.allocs("Rejection/open")
	p("\nTarget: at most 5x gobreaker's own rejection and at most 3 allocs/op: %.2fx and %s allocs/op, %s.\n\n", ratio, num(allocs), verdict(ratio <= 5 && allocs <= 3))
}

func (r report) keys(p printer) {
	l := r.lib
	p("## Many keys\n\n`KeyedMiddleware` over 1, 1000, 10 000 and 100 000 keys, each key's breaker created first, then requests cycling over all keys in a shuffled order; " +
		"beside it the naive design, a plain map of gobreaker breakers (a map read without a lock, then `Execute` around the handler), over as many breakers in the same order.\n\n")
	p("| keys | middleware ns/op | relative to one key | map of gobreakers ns/op | relative to one key | middleware relative to the map |\n|---:|---:|---:|---:|---:|---:|\n")
	one, engOne := l.ns("Keys/1"), l.ns("EngineKeys/1")
	for _, n := range []string{"1", "1000", "10000", "100000"} {
		ns, eng := l.ns("Keys/"+n), l.ns("EngineKeys/"+n)
		p("| %s | %s | %.2fx | %s | %.2fx | %.2fx |\n", n, num(ns), ns/one, num(eng), eng/engOne, ns/eng)
	}
	k1000 := l.ns("Keys/1000") / one
	vsMap := l.ns("Keys/100000") / l.ns("EngineKeys/100000")
	p("\nTargets: 1000 keys cost at most 1.2x one key: %.2fx, %s; 100 000 keys no slower than the map of gobreakers in the same run: %.2fx, %s. "+
		"At 100 000 keys no key's state stays in the CPU's caches and a request in a random order reads cold memory, the map's as much as ours; "+
		"nothing on the path is linear in the number of keys, and a real server's traffic, skewed towards its busy keys, keeps those in the cache.\n\n",
		k1000, verdict(k1000 <= 1.2), vsMap, verdict(vsMap <= 1.0))
}

func (r report) parallel(p printer) {
	l := r.lib
	p("## Every core\n\n`RunParallel` on %d CPUs: ns/op is wall time per request across all goroutines, so a speed-up near the number of CPUs means no shared lock or cache line.\n\n", r.machine.cpus)
	p("| | one goroutine ns/op | every core ns/op | speed-up |\n|---|---:|---:|---:|\n")
	serial := l.ns("Closed/middleware")
	one, raised, many := serial/l.ns("Parallel/one-key"), serial/l.ns("Parallel/one-key-raised"), l.ns("Keys/1000")/l.ns("Parallel/many-keys")
	p("| one key | %s | %s | %.2fx |\n", num(serial), num(l.ns("Parallel/one-key")), one)
	p("| one key, hot since `GOMAXPROCS` was 1, then raised | %s | %s | %.2fx |\n", num(serial), num(l.ns("Parallel/one-key-raised")), raised)
	p("| 1000 keys | %s | %s | %.2fx |\n", num(l.ns("Keys/1000")), num(l.ns("Parallel/many-keys")), many)
	cpus := float64(r.machine.cpus)
	p("\nA closed request adds to its key's compact counters; a key whose adds contend gets a stripe of counters per P (and per `GOMAXPROCS` of the moment, "+
		"re-read at each roll of its window), and reads lines that no core writes; gobreaker's "+
		"mutex is taken only by outcomes that could trip the breaker ([docs/design/closed-path.md](docs/design/closed-path.md)). "+
		"Targets: one key scales with cores, at least %.1fx on %d CPUs: %.2fx, %s (after a raise of `GOMAXPROCS`: %.2fx); many keys, at least %.1fx: %.2fx, %s.\n\n",
		0.85*cpus, r.machine.cpus, one, verdict(one >= 0.85*cpus), raised, 0.75*cpus, many, verdict(many >= 0.75*cpus))
}

// memoryCores are the GOMAXPROCS values the memory per key is measured at.
var memoryCores = []string{"2", "16", "64"}

func (r report) memory(p printer) {
	p("## Memory per key\n\nHeap held per key after 10 000 keys have each served a request, with metrics registered: the breaker, its gobreaker instance and window, its counters and its map entry. " +
		"The metric series are read from the counters at scrape time and hold nothing more. Measured at several `GOMAXPROCS` (`-cpu`): a key that is not hot keeps one compact block of counters whatever the cores; " +
		"only a key whose adds contend gets a stripe per P, and loses it once it has been cold for a minute.\n\n")
	p("| GOMAXPROCS | bytes per key |\n|---:|---:|\n")
	worst := 0.0
	for _, c := range memoryCores {
		v, ok := r.cores.get("MemoryPerKey-"+c, "B/key")
		if !ok {
			v = nan
		}
		worst = max(worst, v) // NaN, if a figure is missing
		p("| %s | %s |\n", c, num(v))
	}
	p("\nTarget: at most 1 KiB per key at any `GOMAXPROCS`: %s bytes at worst, %s.\n\n", num(worst), verdict(worst <= 1024))
}

// statusPage reports what the status page costs for 1000 keys with full
// history.
func (r report) statusPage(p printer) {
	l := r.lib
	p("## Status page\n\nThe status page of 1000 keys, each with a full history, during an incident (about one key in fifteen not closed) and with every key open; the HTML puts the keys that need attention first and summarises the rest.\n\n")
	p("| | ms per page | bytes per page | allocs/op |\n|---|---:|---:|---:|\n")
	worstMS, worstSize := 0.0, 0.0
	for _, row := range []struct{ label, name string }{
		{"HTML, incident", "StatusPage/html/incident"},
		{"HTML, every key open", "StatusPage/html/all-open"},
		{"JSON, incident", "StatusPage/json/incident"},
	} {
		ms := l.ns(row.name) / 1e6
		size := l.must(row.name, "bytes/page")
		if strings.HasPrefix(row.name, "StatusPage/html") {
			worstMS, worstSize = max(worstMS, ms), max(worstSize, size)
		}
		p("| %s | %s | %s | %s |\n", row.label, num(ms), num(size), num(l.allocs(row.name)))
	}
	p("\nTarget: the HTML for 1000 keys at most 1 MiB and 100 ms: %s bytes and %s ms at worst, %s.\n\n", num(worstSize), num(worstMS), verdict(worstSize <= 1<<20 && worstMS <= 100))
}

func (r report) capture(p printer) {
	s := r.peers
	p("## Status capture\n\nThe ways to learn the status a handler wrote, each around the same gobreaker `Execute` (see the doc comment of `status_writer.go`).\n\n")
	p("| | ns/op | B/op | allocs/op |\n|---|---:|---:|---:|\n")
	for _, row := range []struct{ label, name string }{
		{"httpsnoop `Wrap` with capture hooks", "StatusCapture/httpsnoop-wrap"},
		{"httpsnoop `CaptureMetrics`", "StatusCapture/httpsnoop-capturemetrics"},
		{"httpbreaker's middleware, whole", "StatusCapture/httpbreaker"},
	} {
		p("| %s | %s | %s | %s |\n", row.label, num(s.ns(row.name)), num(s.bytes(row.name)), num(s.allocs(row.name)))
	}
	p("\n")
}

func (r report) peersSection(p printer) {
	s := r.peers
	p("## Against other libraries\n\n")
	p("Each library gets the same policy as far as it can express it (trip at 50%% failures over 10 s once 10 outcomes are in, open 30 s), " +
		"the same handler, the same key per request, and, except httpbreaker, the same status capture: a wrapper allocated per request, as hand-written middlewares have it. " +
		"Rejections are answered with `http.Error`. Rolling-window failure rate: the policy compared; go-resiliency has none and is shown for reference.\n\n")
	for _, w := range workloads {
		p("### %s\n\n| library | rolling failure rate | ns/op | B/op | allocs/op | relative to httpbreaker |\n|---|:-:|---:|---:|---:|---:|\n", w.title)
		ours := s.ns("Peers/" + w.name + "/httpbreaker")
		for _, lib := range peerList {
			name := "Peers/" + w.name + "/" + lib.name
			rate := "yes"
			if !lib.rate {
				rate = "no"
			}
			extra := ""
			if v, ok := s.get(name, "rejected/op"); ok && v < 1 {
				extra = fmt.Sprintf(" (rejects %.2f%%)", 100*v)
			}
			p("| %s | %s | %s%s | %s | %s | %.2fx |\n", lib.name, rate, num(s.ns(name)), extra, num(s.bytes(name)), num(s.allocs(name)), s.ns(name)/ours)
		}
		p("\n%s\n\n", r.peerVerdict(w.name))
	}
	floor := s.ns("Peers/closed-1key/httpbreaker") / s.ns("Peers/closed-1key/go-resiliency")
	p("go-resiliency keeps no window, so it is the floor of any breaker: one mutex section per call and a count. "+
		"Target: httpbreaker's closed path, one key, one goroutine, at most 2x go-resiliency's in the same run: %.2fx, %s. "+
		"httpbreaker's closed request does not enter gobreaker at all: it admits on a few atomic loads, reads a coarse clock "+
		"and adds to its key's counters; [docs/design/closed-path.md](docs/design/closed-path.md) says where the remaining nanoseconds go.\n\n",
		floor, verdict(floor <= 2))
	p("What each library does per request:\n\n")
	for _, lib := range peerList {
		p("- **%s**: %s.\n", lib.name, lib.what)
	}
	p("\n")
}

// clientSection reports the client side: Transport's share of a
// RoundTrip, and http.Client.Do behind each library's breaker.
func (r report) clientSection(p printer) {
	l, s := r.lib, r.peers
	p("## Client side\n\n`Transport` and `KeyedTransport` (`Host`) around a base transport that answers at once, so that what is measured is the breaker's share of a `RoundTrip`; " +
		"and a rejection by an open `Transport`, which returns a `*RejectedError` without calling the base.\n\n")
	p("| | ns/op | B/op | allocs/op |\n|---|---:|---:|---:|\n")
	for _, row := range []struct{ label, name string }{
		{"base transport alone", "Transport/base"},
		{"`Transport`, closed", "Transport/closed"},
		{"`KeyedTransport` (`Host`), closed", "Transport/keyed-closed"},
		{"`Transport`, open: the rejection", "Transport/open"},
	} {
		p("| %s | %s | %s | %s |\n", row.label, num(l.ns(row.name)), num(l.bytes(row.name)), num(l.allocs(row.name)))
	}
	added := l.allocs("Transport/closed") - l.allocs("Transport/base")
	p("\nTarget: the closed path adds 0 allocations to the base transport, and a rejection allocates at most the error it returns: "+
		"%s added, %s on rejection, %s.\n\n", num(added), num(l.allocs("Transport/open")),
		verdict(added == 0 && l.allocs("Transport/open") <= 1))
	p("The same through `http.Client.Do`, beside the peers with a client-side breaker: failsafe-go's `failsafehttp.NewRoundTripper` " +
		"with a circuit breaker that handles 5xx and 429, and gobreaker's `Execute` around `Client.Do` as its README suggests (a 5xx turned into an error). " +
		"Same policy as above. `bare` is `Client.Do` with no breaker; against an open breaker it calls the failing upstream.\n\n")
	for _, w := range []struct{ name, title string }{{"closed", "closed"}, {"open", "open: the rejection"}} {
		p("### client, %s\n\n| library | ns/op | B/op | allocs/op | relative to httpbreaker |\n|---|---:|---:|---:|---:|\n", w.title)
		ours := s.ns("ClientPeers/" + w.name + "/httpbreaker")
		for _, lib := range []string{"bare", "httpbreaker", "failsafehttp", "gobreaker"} {
			name := "ClientPeers/" + w.name + "/" + lib
			p("| %s | %s | %s | %s | %.2fx |\n", lib, num(s.ns(name)), num(s.bytes(name)), num(s.allocs(name)), s.ns(name)/ours)
		}
		p("\n")
	}
	p("gobreaker's rejection happens before `Client.Do` is called, so it skips the client's own work and allocates nothing; " +
		"a `Transport` rejects inside `Client.Do`, which then allocates what it does for any error (the `*url.Error` around the `*RejectedError`, among others). " +
		"In exchange the transport is a drop-in `http.Client` that every caller of the client gets, with the upstream's `Retry-After` honoured, " +
		"the caller's cancel excluded, metrics, logs and the status page.\n\n")
}

// noise is the difference between two medians that the report does not
// call a difference: runs on a shared machine vary by a few percent.
const noise = 0.05

// peerVerdict says whether httpbreaker is the fastest and leanest of the
// libraries with a rolling-window failure rate in one workload, and names
// those that beat it, or come within noise of it.
func (r report) peerVerdict(workload string) string {
	s := r.peers
	ours := "Peers/" + workload + "/httpbreaker"
	var faster, even, leaner []string
	for _, lib := range peerList {
		name := "Peers/" + workload + "/" + lib.name
		if lib.name == "httpbreaker" || !lib.rate {
			continue
		}
		switch ratio := s.ns(name) / s.ns(ours); {
		case ratio < 1-noise:
			faster = append(faster, fmt.Sprintf("%s (%.2fx)", lib.name, ratio))
		case ratio < 1+noise:
			even = append(even, fmt.Sprintf("%s (%.2fx)", lib.name, ratio))
		}
		if s.allocs(name) < s.allocs(ours) {
			leaner = append(leaner, lib.name)
		}
	}
	out := "Of the libraries with a rolling-window failure rate, httpbreaker "
	if len(faster) == 0 {
		out += "is the fastest"
	} else {
		out += "is not the fastest: " + strings.Join(faster, ", ") + " took less time"
	}
	if len(even) > 0 {
		out += fmt.Sprintf(" (%s within %.0f%%, which is noise on this machine)", strings.Join(even, ", "), 100*noise)
	}
	if len(leaner) == 0 {
		out += fmt.Sprintf(", and allocates least (%s allocs/op).", num(s.allocs(ours)))
	} else {
		out += ", and not the leanest: " + strings.Join(leaner, ", ") + " allocated less."
	}
	return out
}

func (r report) endToEndSection(p printer) {
	p("## End to end\n\nA real HTTP server on loopback (`benchmarks/e2eserver`) serving one small JSON endpoint, bare and behind `Middleware` with metrics registered, "+
		"both started once and warmed up, then loaded with `wrk -t1 -c32` in turn, %d rounds of %v on each, in alternating order. "+
		"With two CPUs or more, the servers run on CPU 0 with `GOMAXPROCS=1` and wrk on CPU 1 (`taskset`), so that they do not take turns on one core. "+
		"The figure is the median of the rounds' ratios.\n\n", len(r.rounds), r.opts.duration)
	p("| round | bare req/s | with the middleware req/s | ratio |\n|---:|---:|---:|---:|\n")
	var ratios []float64
	for i, rd := range r.rounds {
		p("| %d | %.0f | %.0f | %.1f%% |\n", i+1, rd.bare, rd.guarded, 100*rd.ratio())
		ratios = append(ratios, rd.ratio())
	}
	med := median(ratios)
	p("\nMedian ratio: %.1f%%. Target: at least 97%% of the bare server, %s.\n", 100*med, verdict(med >= 0.97))
}

// fleetSection shows the fleet's measurements, which benchmarks/fleet
// writes as markdown.
func (r report) fleetSection(p printer) {
	p("\n## Fleet\n\nShared state between replicas (`WithSharedState`, `redisstate`). %s", r.fleet)
}

// soakSection shows the soak's output as it printed it.
func (r report) soakSection(p printer) {
	p("\n## Soak\n\n`go run ./examples/plugins -soak %v`: the plugin host under real HTTP load from 16 workers, "+
		"with scaffolder failing and search slowing down in turns, tenant keys churning through a set bounded by `WithMaxKeys` "+
		"and dropped by `IdleTTL`, a state-change hook that takes 20ms, and the status page and metrics polled. "+
		"Once a second it collects the garbage and samples goroutines, heap, metric series and keys. It fails if a request goes "+
		"unanswered, or if the last quarter's medians grew past the second quarter's (by more than a fifth and 10 goroutines, "+
		"half the heap and 2 MiB, a tenth of the series or keys). What it printed:\n\n```\n%s```\n", r.opts.soak, r.soak)
}

func median(vs []float64) float64 {
	if len(vs) == 0 {
		return nan
	}
	vs = slices.Clone(vs)
	slices.Sort(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2]
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
}

// num prints a figure with the precision it deserves.
func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "n/a"
	case v == math.Trunc(v) && v < 1e6:
		return fmt.Sprintf("%.0f", v)
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}
