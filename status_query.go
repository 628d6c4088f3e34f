package httpbreaker

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// statusQuery is what a GET of the status page asks for, from its query
// string: which keys (all of them by default), and which page of the HTML.
//
//	key=K        the key K only (repeat it for several keys)
//	filter=TEXT  the keys whose name contains TEXT, in any case
//	state=S,...  the keys in one of these states: closed, half_open, open,
//	             recovering, forced_open, forced_closed, or not_closed (all
//	             but closed); repeat it or list states with commas
//	page=N       the HTML's Nth page of the keys it lists in short (1 first)
//
// Several parameters narrow together: key=a&key=b&state=open is whichever
// of a and b is open. An empty filter or state asks for nothing (so that
// the page's filter form can leave them blank); anything else the page does
// not know is an error that names it.
type statusQuery struct {
	keys   []string
	filter string // as given
	lower  string // filter in lower case
	states []State
	state  []string // the state parameter's values, as given
	page   int      // from 1
}

// statusParams are the query parameters the status page knows.
const statusParams = "key, filter, state or page"

// parseStatusQuery reads q, or says what in it is wrong.
func parseStatusQuery(q url.Values) (statusQuery, error) {
	sq := statusQuery{page: 1}
	for _, name := range slices.Sorted(maps.Keys(q)) { // the same error for the same query
		values := q[name]
		switch name {
		case "key":
			for _, k := range values {
				if k == "" {
					return sq, fmt.Errorf("key: empty; want a key's name (use filter for part of one)")
				}
			}
			sq.keys = values
		case "filter":
			if len(values) > 1 {
				return sq, fmt.Errorf("filter: given %d times; want it once", len(values))
			}
			sq.filter, sq.lower = values[0], strings.ToLower(values[0])
		case "state":
			for part := range strings.SplitSeq(strings.Join(values, ","), ",") {
				st, err := parseStateParam(part)
				if err != nil {
					return sq, err
				}
				if st != nil {
					sq.state = append(sq.state, strings.TrimSpace(part))
					sq.states = append(sq.states, st...)
				}
			}
		case "page":
			n, err := strconv.Atoi(values[0])
			if len(values) > 1 || err != nil || n < 1 {
				return sq, fmt.Errorf("page: want one whole number from 1, got %q", strings.Join(values, ","))
			}
			sq.page = n
		default:
			return sq, fmt.Errorf("unknown query parameter %q: want %s", name, statusParams)
		}
	}
	return sq, nil
}

// parseStateParam reads one state of the state parameter: a state's name,
// not_closed (every state but closed), or "" (none).
func parseStateParam(v string) ([]State, error) {
	switch v = strings.TrimSpace(v); v {
	case "":
		return nil, nil
	case "not_closed":
		return []State{StateHalfOpen, StateOpen, StateRecovering, StateForcedOpen, StateForcedClosed}, nil
	}
	for st, name := range stateNames {
		if v == name {
			return []State{State(st)}, nil
		}
	}
	return nil, fmt.Errorf("state: want %s or not_closed, got %q", strings.Join(stateNames[:], ", "), v)
}

// narrowed reports whether q asks for some keys only.
func (q statusQuery) narrowed() bool {
	return len(q.keys) > 0 || q.filter != "" || len(q.states) > 0
}

// matches reports whether q asks for s.
func (q statusQuery) matches(s *Status) bool {
	return (len(q.keys) == 0 || slices.Contains(q.keys, s.Key)) &&
		(q.filter == "" || strings.Contains(strings.ToLower(s.Key), q.lower)) &&
		(len(q.states) == 0 || slices.Contains(q.states, s.State))
}

// describe says in English which keys q asks for, for the page's header:
// `the keys whose name contains "pay" in state open or half_open`.
func (q statusQuery) describe() string {
	var parts []string
	switch len(q.keys) {
	case 0:
	case 1:
		parts = append(parts, fmt.Sprintf("key %q", q.keys[0]))
	default:
		parts = append(parts, "keys "+strings.Join(quoted(q.keys), ", "))
	}
	if q.filter != "" {
		parts = append(parts, fmt.Sprintf("whose name contains %q", q.filter))
	}
	if len(q.state) > 0 {
		parts = append(parts, "in state "+strings.ReplaceAll(strings.Join(q.state, " or "), "not_closed", "other than closed"))
	}
	if len(q.keys) == 0 {
		parts = append([]string{"the keys"}, parts...)
	}
	return strings.Join(parts, " ")
}

func quoted(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

// encode returns the query string, "?" and all, that asks for q's keys and
// the page given (1: the first, which needs no parameter): "?" alone for
// every key's first page, which a link resolves to the page's own path.
func (q statusQuery) encode(page int) string {
	v := url.Values{}
	if len(q.keys) > 0 {
		v["key"] = q.keys
	}
	if q.filter != "" {
		v.Set("filter", q.filter)
	}
	if len(q.state) > 0 {
		v.Set("state", strings.Join(q.state, ","))
	}
	if page > 1 {
		v.Set("page", strconv.Itoa(page))
	}
	return "?" + v.Encode()
}
