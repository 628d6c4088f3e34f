package httpbreaker

import (
	"fmt"
	"strings"
)

// State is the state of one key's breaker.
type State uint8

// The states of a breaker.
const (
	StateClosed       State = iota // admits every request and counts outcomes
	StateHalfOpen                  // admits up to HalfOpenRequests probes at a time
	StateOpen                      // rejects every request until its cooldown ends
	StateRecovering                // closed again, admitting a share that rises with RecoveryRamp
	StateForcedOpen                // rejects every request, by ForceOpen
	StateForcedClosed              // rejects none, by ForceClose; the breaker underneath goes on
	numStates
)

var stateNames = [numStates]string{"closed", "half_open", "open", "recovering", "forced_open", "forced_closed"}

// String returns the state's name as metrics, logs and reject responses
// use it: "closed", "half_open", "open", "recovering", "forced_open",
// "forced_closed".
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state(" + fmt.Sprint(uint8(s)) + ")"
}

// MarshalText writes the state's name.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a state's name, as MarshalText writes it: a program
// can decode the status page's JSON into Status values.
func (s *State) UnmarshalText(b []byte) error {
	for st, name := range stateNames {
		if string(b) == name {
			*s = State(st)
			return nil
		}
	}
	return fmt.Errorf("httpbreaker: want a state (%s), got %q", strings.Join(stateNames[:], ", "), b)
}
