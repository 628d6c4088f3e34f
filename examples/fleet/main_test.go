package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// TestMain runs the replicas that the demo starts as processes of this
// test binary, and checks that no goroutine outlives the tests.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "-child" {
		if err := run(context.Background(), os.Args[1:], os.Stdout, io.Discard); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestDemoTellsTheFleetsStory(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no redis-server: .ci/run installs Debian's redis-server package for this test")
		}
		t.Skip("no redis-server installed (apt-get install redis-server)")
	}
	var out syncBuffer
	if err := run(context.Background(), []string{"-demo"}, &out, io.Discard); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	text := out.String()
	t.Log("\n" + text)
	for _, want := range []string{
		"1. Without shared state",
		"every replica stopped calling the upstream after",
		"2. With shared state through Redis",
		"the fleet opened everywhere after",
		"the fleet tripped search on failure_rate",
		"every replica closed after 1 probe in the whole fleet",
		"3. Redis is killed mid-traffic",
		", 0 failed;",
		"✓ the fleet stopped calling a failing upstream",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the story lacks %q", want)
		}
	}
}
