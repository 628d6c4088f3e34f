package redisserver

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the tests if any goroutine outlives them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// patience bounds a test's wait for what must happen.
const patience = 10 * time.Second
