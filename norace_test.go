//go:build !race

package httpbreaker

const raceEnabled = false
