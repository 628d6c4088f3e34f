package main

import (
	"encoding/xml"
	"strings"
	"testing"
	"time"
)

const sampleOutput = `goos: linux
BenchmarkClosed/bare-2          	312050641	         4.000 ns/op	       0 B/op	       0 allocs/op
BenchmarkClosed/bare-2          	312050641	         3.000 ns/op	       0 B/op	       0 allocs/op
BenchmarkClosed/bare-2          	312050641	         9.000 ns/op	       0 B/op	       0 allocs/op
BenchmarkClosed/gobreaker-execute-2 	 8226568	       144.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkClosed/middleware-2    	 6618422	       184.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkMemoryPerKey-2         	      31	  41214769 ns/op	      1422 B/key	20118546 B/op	  223952 allocs/op
BenchmarkPeers/open/go-zero-2   	  520209	      1139 ns/op	         0.9999 rejected/op	     528 B/op	       9 allocs/op
BenchmarkPeers/closed-1key/httpbreaker-2   	  520209	      100 ns/op	         0 B/op	       0 allocs/op
BenchmarkPeers/closed-1key/go-resiliency-2 	  520209	      40 ns/op	         24 B/op	       1 allocs/op
BenchmarkKeys/1-2          	 1000000	       150 ns/op	       0 B/op	       0 allocs/op
BenchmarkKeys/1000-2       	 1000000	       170 ns/op	       0 B/op	       0 allocs/op
BenchmarkKeys/10000-2      	 1000000	       300 ns/op	       0 B/op	       0 allocs/op
BenchmarkKeys/100000-2     	 1000000	       900 ns/op	       0 B/op	       0 allocs/op
BenchmarkEngineKeys/1-2    	 1000000	       140 ns/op	       0 B/op	       0 allocs/op
BenchmarkEngineKeys/1000-2 	 1000000	       200 ns/op	       0 B/op	       0 allocs/op
BenchmarkEngineKeys/10000-2 	 1000000	       400 ns/op	       0 B/op	       0 allocs/op
BenchmarkEngineKeys/100000-2 	 1000000	      1000 ns/op	       0 B/op	       0 allocs/op
BenchmarkParallel/one-key-2 	 1000000	       100 ns/op	       0 B/op	       0 allocs/op
BenchmarkParallel/one-key-raised-2 	 1000000	       115 ns/op	       0 B/op	       0 allocs/op
BenchmarkParallel/many-keys-2 	 1000000	       100 ns/op	       0 B/op	       0 allocs/op
BenchmarkStatusPage/html/incident-2 	      40	  30000000 ns/op	    600000 bytes/page	 5000 B/op	 100 allocs/op
BenchmarkStatusPage/html/all-open-2 	      40	  45000000 ns/op	    900000 bytes/page	 5000 B/op	 100 allocs/op
BenchmarkStatusPage/json/incident-2 	      40	  20000000 ns/op	    200000 bytes/page	 5000 B/op	 100 allocs/op
PASS
`

const coresOutput = `BenchmarkMemoryPerKey-2     	      31	  41214769 ns/op	       911 B/key
BenchmarkMemoryPerKey-2     	      31	  41214769 ns/op	       915 B/key
BenchmarkMemoryPerKey-16    	      31	  41214769 ns/op	       913 B/key
BenchmarkMemoryPerKey-64    	      31	  41214769 ns/op	      1030 B/key
`

func TestParseBenchTakesMediansByUnit(t *testing.T) {
	s, err := parseBench(strings.NewReader(sampleOutput), false)
	if err != nil {
		t.Fatal(err)
	}
	if v := s.ns("Closed/bare"); v != 4 {
		t.Errorf("median of 4, 3, 9 = %v, want 4", v)
	}
	if v, ok := s.get("MemoryPerKey", "B/key"); !ok || v != 1422 {
		t.Errorf("B/key = %v %v", v, ok)
	}
	if v, _ := s.get("Peers/open/go-zero", "rejected/op"); v != 0.9999 {
		t.Errorf("rejected/op = %v", v)
	}
	if v := s.ns("No/such"); v == v { // NaN
		t.Errorf("a missing benchmark reads %v, want NaN", v)
	}
	cores, err := parseBench(strings.NewReader(coresOutput), true)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := cores.get("MemoryPerKey-2", "B/key"); !ok || v != 913 {
		t.Errorf("B/key at GOMAXPROCS 2 = %v %v, want the median of 911 and 915", v, ok)
	}
	if _, ok := cores.get("MemoryPerKey", "B/key"); ok {
		t.Error("keepProcs dropped the -N suffix that tells the runs apart")
	}
	if _, err := parseBench(strings.NewReader("PASS\n"), false); err == nil {
		t.Error("no benchmark lines parsed without an error")
	}
}

func TestReportChecksTargetsFromTheFigures(t *testing.T) {
	s, _ := parseBench(strings.NewReader(sampleOutput), false)
	cores, _ := parseBench(strings.NewReader(coresOutput), true)
	r := report{machine: machineInfo{cpu: "test CPU", cpus: 2, date: time.Unix(0, 0)}, opts: options{count: 3, benchtime: "1s", duration: time.Second},
		lib: s, peers: s, cores: cores, rounds: []round{{bare: 100, guarded: 99}, {bare: 100, guarded: 90}, {bare: 100, guarded: 98}}}
	md := r.markdown()
	for _, want := range []string{
		"| `Middleware` | 184 | 0 | 180 ns | 1.29x |", // (184-4)/(144-4)
		"`Middleware`: 1.29x, 0 allocs/op, met",
		"| 64 | 1030 |",
		"Target: at most 1 KiB per key at any `GOMAXPROCS`: 1030 bytes at worst, **not met**.",
		"| 100000 | 900 | 6.00x | 1000 | 7.14x | 0.90x |",
		"1000 keys cost at most 1.2x one key: 1.13x, met; 100 000 keys no slower than the map of gobreakers in the same run: 0.90x, met.",
		"one key scales with cores, at least 1.7x on 2 CPUs: 1.84x, met (after a raise of `GOMAXPROCS`: 1.60x)",
		"at most 2x go-resiliency's in the same run: 2.50x, **not met**.",
		"Target: the HTML for 1000 keys at most 1 MiB and 100 ms: 900000 bytes and 45 ms at worst, met.",
		"Median ratio: 98.0%. Target: at least 97% of the bare server, met.",
		"| go-zero | yes | 1139 (rejects 99.99%) |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	r.rounds = []round{{bare: 100, guarded: 90}}
	if md := r.markdown(); !strings.Contains(md, "Median ratio: 90.0%. Target: at least 97% of the bare server, **not met**.") {
		t.Error("a missed target is not reported as not met")
	}
}

func TestChartIsWellFormedSVG(t *testing.T) {
	s, _ := parseBench(strings.NewReader(sampleOutput), false)
	svg := report{peers: s}.chart()
	dec := xml.NewDecoder(strings.NewReader(svg))
	for {
		_, err := dec.Token()
		if err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("chart is not well-formed XML: %v", err)
		}
	}
	for _, lib := range peerList {
		if !strings.Contains(svg, ">"+lib.name+"<") {
			t.Errorf("chart lacks %s", lib.name)
		}
	}
	if !strings.Contains(svg, "1139 (off scale)") {
		t.Error("a bar past the scale is not labelled")
	}
}
