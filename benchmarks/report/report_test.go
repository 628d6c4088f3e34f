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
PASS
`

func TestParseBenchTakesMediansByUnit(t *testing.T) {
	s, err := parseBench(strings.NewReader(sampleOutput))
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
	if _, err := parseBench(strings.NewReader("PASS\n")); err == nil {
		t.Error("no benchmark lines parsed without an error")
	}
}

func TestReportChecksTargetsFromTheFigures(t *testing.T) {
	s, _ := parseBench(strings.NewReader(sampleOutput))
	r := report{machine: machineInfo{cpu: "test CPU", cpus: 2, date: time.Unix(0, 0)}, opts: options{count: 3, benchtime: "1s", duration: time.Second},
		lib: s, peers: s, rounds: []round{{bare: 100, guarded: 99}, {bare: 100, guarded: 90}, {bare: 100, guarded: 98}}}
	md := r.markdown()
	for _, want := range []string{
		"| `Middleware` | 184 | 0 | 180 ns | 1.29x |", // (184-4)/(144-4)
		"`Middleware`: 1.29x, 0 allocs/op, met",
		"1422 bytes per key. Target: under 8 KiB, met.",
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
	s, _ := parseBench(strings.NewReader(sampleOutput))
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
