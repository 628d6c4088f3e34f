package main

import (
	"flag"
	"strconv"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them.
//
// The demo's stories wait on the clock, not on the CPU (each is twenty
// seconds of a request every 50ms): all of them run at once, rather than as
// many as there are CPUs, unless -parallel says otherwise.
func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		_ = flag.Set("test.parallel", strconv.Itoa(parallelStories))
	}
	goleak.VerifyTestMain(m)
}

// parallelStories is how many tests of the package run at once: the demo
// stories and the delay test.
const parallelStories = 5
