package httpbreaker

import (
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// collector exposes the breakers' metrics. It reads everything at scrape
// time, from the atomics each breaker keeps: the request path pays one
// atomic add per request, a key's series cost no memory of their own, and
// the state is the state at the scrape (a change that was due by then is
// made first, as a call would make it).
//
// The three families, with the namespace in front:
//
//	state{key,state}               gauge: 1 for the current state, 0 for the others
//	requests_total{key,result}     counter: success, failure, excluded, slow, rejected, would_reject,
//	                               upstream_failure
//	transitions_total{key,from,to} counter: closed->open, open->half_open, half_open->closed,
//	                               half_open->open from the start; others once they happen
//
// Requests that no breaker tracked (past WithMaxKeys, or a KeyFunc that
// returned "") are counted in requests_total{result="untracked"}, whose key
// is empty.
//
// With shared state (WithSharedState), four more tell how the link to the
// fleet is doing:
//
//	shared_connected          gauge: 1 if the last sync reached the shared state
//	shared_replicas           gauge: the live replicas at the last sync, this one included
//	shared_sync_errors_total  counter: syncs that failed
//	shared_sync_seconds       histogram: the round-trip time of the syncs that succeeded
type collector struct {
	set                          *Breakers
	state, requests, transitions *prometheus.Desc
	connected, replicas, errors  *prometheus.Desc
	badSeriesOnce                sync.Once
}

func newCollector(b *Breakers) *collector {
	name := func(n string) string { return prometheus.BuildFQName(b.namespace, "", n) }
	return &collector{
		set: b,
		state: prometheus.NewDesc(name("state"),
			"Circuit breaker state by key: 1 for the current state (closed, half_open, open, recovering, forced_open, forced_closed), 0 for the others.",
			[]string{"key", "state"}, nil),
		requests: prometheus.NewDesc(name("requests_total"),
			"Requests through circuit breakers by key and result: success, failure, excluded (not counted by the breaker), "+
				"slow (with slow_call_rate), rejected, would_reject (observe mode let it through), "+
				"upstream_failure (a failure blamed on an upstream the request called, not counted by the breaker), untracked (no breaker, empty key).",
			[]string{"key", "result"}, nil),
		transitions: prometheus.NewDesc(name("transitions_total"),
			"Circuit breaker state changes by key.",
			[]string{"key", "from", "to"}, nil),
		connected: prometheus.NewDesc(name("shared_connected"),
			"Whether this replica's last sync reached the fleet's shared state (1) or not (0).", nil, nil),
		replicas: prometheus.NewDesc(name("shared_replicas"),
			"Live replicas of the fleet at this replica's last sync, this one included.", nil, nil),
		errors: prometheus.NewDesc(name("shared_sync_errors_total"),
			"Syncs with the fleet's shared state that failed.", nil, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.state
	ch <- c.requests
	ch <- c.transitions
	if f := c.set.fleet; f != nil {
		ch <- c.connected
		ch <- c.replicas
		ch <- c.errors
		f.rtt.Describe(ch)
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.set.sweep()
	for _, br := range c.set.allBreakers() {
		current := br.stateNow()
		for st, name := range stateNames {
			value := 0.0
			if st == int(current) {
				value = 1
			}
			c.send(ch, c.state, prometheus.GaugeValue, value, br.key, name)
		}
		counts := br.counters.sumAll()
		for _, r := range results {
			if r.slow && br.policy.SlowCallRate <= 0 {
				continue // only keys that judge slowness apart count it
			}
			n := r.of(&counts)
			if r.upstream && n == 0 && !br.blame.callsOut() {
				continue // only route groups that call upstreams count it
			}
			c.send(ch, c.requests, prometheus.CounterValue, float64(n), br.key, r.name)
		}
		made := br.transitionsMade()
		for from := range numStates {
			for to := range numStates {
				n := made[from][to]
				if n == 0 && !automatic[from][to] {
					continue
				}
				c.send(ch, c.transitions, prometheus.CounterValue, float64(n), br.key, from.String(), to.String())
			}
		}
	}
	c.send(ch, c.requests, prometheus.CounterValue, float64(c.set.untracked.Load()), "", "untracked")
	if f := c.set.fleet; f != nil {
		connected := 0.0
		if f.connected.Load() {
			connected = 1
		}
		ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, connected)
		ch <- prometheus.MustNewConstMetric(c.replicas, prometheus.GaugeValue, float64(f.replicas.Load()))
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(f.syncErrors.Load()))
		f.rtt.Collect(ch)
	}
}

// send sends one metric. Keys are checked when their breaker is made, so
// that no label value can be invalid; should one be, the series is left
// out and logged once, and the scrape goes on: a scrape must never fail
// because of one key.
func (c *collector) send(ch chan<- prometheus.Metric, desc *prometheus.Desc, vt prometheus.ValueType, v float64, labels ...string) {
	m, err := prometheus.NewConstMetric(desc, vt, v, labels...)
	if err != nil {
		c.badSeriesOnce.Do(func() {
			c.set.notifier.log(slog.LevelError, "circuit breaker metric series left out of a scrape",
				"key", quoteKey(labels[0]), "problem", err.Error())
		})
		return
	}
	ch <- m
}

// automatic marks the transitions that every breaker makes by itself (the
// trip, the end of the cooldown, the probes' verdict), which every key
// reports from the start, at 0; the others (to and from the recovery ramp
// and the forced states) are reported once they have happened.
var automatic = func() (a [numStates][numStates]bool) {
	a[StateClosed][StateOpen] = true
	a[StateOpen][StateHalfOpen] = true
	a[StateHalfOpen][StateClosed] = true
	a[StateHalfOpen][StateOpen] = true
	return a
}()

// transitionsMade returns how many transitions of each kind br made.
func (br *keyBreaker) transitionsMade() (made [numStates][numStates]uint64) {
	br.mu.Lock()
	defer br.mu.Unlock()
	if r := br.history.ring; r != nil {
		for from := range numStates {
			for to := range numStates {
				made[from][to] = uint64(r.made[from][to])
			}
		}
	}
	return made
}
