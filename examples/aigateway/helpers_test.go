package main

import (
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// collectorOf returns a collector of the one series of name in reg whose
// labels include labels, or of none, which reads as 0.
func collectorOf(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) prometheus.Collector {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(families, func(f *dto.MetricFamily) bool { return f.GetName() == name })
	if i < 0 {
		t.Fatalf("no metric %s", name)
	}
	f := families[i]
	var value float64
	for _, m := range f.GetMetric() {
		if matches(m, labels) {
			value = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "series", Help: name}, func() float64 { return value })
}

func matches(m *dto.Metric, labels map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if want, ok := labels[l.GetName()]; ok {
			if l.GetValue() != want {
				return false
			}
			n++
		}
	}
	return n == len(labels)
}
