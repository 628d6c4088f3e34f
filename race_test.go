//go:build race

package httpbreaker

// raceEnabled says the tests run with the race detector, under which
// sync.Pool drops a share of what it is given, so that allocation counts
// are not the program's.
const raceEnabled = true
