// Package observability holds a Grafana dashboard and Prometheus alerting
// rules for httpbreaker's metrics. Its tests check that they query only
// metrics and label values the library exports, and run promtool on the
// rules and their unit tests.
package observability

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/httpbreaker/httpbreaker"
	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"
)

// exported returns the metric names the library registers.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	b, err := httpbreaker.New(httpbreaker.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	b.Middleware("k")(http.NotFoundHandler())
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	return names
}

var (
	states      = []string{"closed", "half_open", "open", "recovering", "forced_open", "forced_closed"}
	labelValues = map[string][]string{
		"state":  states,
		"from":   states,
		"to":     states,
		"result": {"success", "failure", "excluded", "slow", "rejected", "would_reject", "upstream_failure", "untracked"},
	}
	metricName = regexp.MustCompile(`\bhttpbreaker_[a-z_]+`)
	matcher    = regexp.MustCompile(`\b(state|from|to|result)\s*(=~|=)\s*"([^"]*)"`)
)

// checkQuery fails the test for a metric the library does not export or a
// label value it never sets, and returns the metric names used.
func checkQuery(t *testing.T, where, query string, names map[string]bool) []string {
	t.Helper()
	used := metricName.FindAllString(query, -1)
	for _, name := range used {
		if !names[name] {
			t.Errorf("%s: %s is not a metric of the library (it exports %v)", where, name, names)
		}
	}
	for _, m := range matcher.FindAllStringSubmatch(query, -1) {
		label, values := m[1], []string{m[3]}
		if m[2] == "=~" {
			values = strings.Split(m[3], "|")
		}
		for _, v := range values {
			if !contains(labelValues[label], v) {
				t.Errorf("%s: %s=%q is not a value the library sets (want one of %v)", where, label, v, labelValues[label])
			}
		}
	}
	return used
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// strings walks decoded JSON and calls f with every string under key.
func walk(v any, key string, f func(string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == key {
				f(s)
			}
			walk(x, key, f)
		}
	case []any:
		for _, x := range v {
			walk(x, key, f)
		}
	}
}

func TestDashboardQueriesOnlyRealMetrics(t *testing.T) {
	raw, err := os.ReadFile("dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard.json does not parse: %v", err)
	}
	names := exported(t)
	used := map[string]bool{}
	queries := 0
	for _, key := range []string{"expr", "definition"} {
		walk(dash, key, func(q string) {
			queries++
			for _, n := range checkQuery(t, "dashboard "+key, q, names) {
				used[n] = true
			}
		})
	}
	if queries < 8 {
		t.Fatalf("found %d queries in the dashboard", queries)
	}
	for name := range names {
		if !used[name] {
			t.Errorf("the dashboard never shows %s", name)
		}
	}
}

func TestAlertRulesQueryOnlyRealMetrics(t *testing.T) {
	names := exported(t)
	for _, file := range []string{"alerts.yml", "alerts_test.yml"} {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := yaml.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		n := 0
		for _, key := range []string{"expr", "series"} {
			walk(doc, key, func(q string) {
				n++
				checkQuery(t, file+" "+key, q, names)
			})
		}
		if n == 0 {
			t.Fatalf("%s: no queries found", file)
		}
	}
}

// requirePromtool returns promtool's path. CI installs it (Debian's
// prometheus package): there a missing promtool fails the test; elsewhere
// the test is skipped.
func requirePromtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is not installed; .ci/run installs Debian's prometheus package for it")
		}
		t.Skip("promtool is not installed (apt-get install prometheus)")
	}
	return path
}

func TestAlertRulesPassPromtool(t *testing.T) {
	promtool := requirePromtool(t)
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
