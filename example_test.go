package httpbreaker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"

	"github.com/httpbreaker/httpbreaker"
	"github.com/prometheus/client_golang/prometheus"
)

// Two plugins on one server, each behind its own breaker: when scaffolder
// fails, its breaker opens and answers 503 at once, while catalog goes on.
func ExampleBreakers_Middleware() {
	breakers, err := httpbreaker.New(
		httpbreaker.WithPolicy(httpbreaker.Policy{ConsecutiveFailures: 3, OpenFor: 30 * time.Second}),
		httpbreaker.WithLogger(slog.New(slog.DiscardHandler)), // it logs the change to open, from a goroutine of its own
	)
	if err != nil {
		log.Fatal(err)
	}
	catalog := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "entities") })
	scaffolder := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) })

	mux := http.NewServeMux()
	mux.Handle("/api/catalog/", breakers.Middleware("catalog")(catalog))
	mux.Handle("/api/scaffolder/", breakers.Middleware("scaffolder")(scaffolder))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, path := range []string{"scaffolder", "scaffolder", "scaffolder", "scaffolder", "catalog"} {
		resp, err := http.Get(srv.URL + "/api/" + path + "/")
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		line := fmt.Sprint(path, " ", resp.StatusCode)
		// Retry-After counts down the whole seconds until probes are
		// admitted: 30 right after the trip, less on a slow machine.
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs >= 1 && secs <= 30 {
			line += " Retry-After: at most 30"
		}
		fmt.Println(line)
	}
	fmt.Println("scaffolder is", breakers.State("scaffolder"))
	// Output:
	// scaffolder 500
	// scaffolder 500
	// scaffolder 500
	// scaffolder 503 Retry-After: at most 30
	// catalog 200
	// scaffolder is open
}

// KeyedMiddleware with RoutePattern gives every ServeMux route its own
// breaker, keyed by the pattern, never by the raw path.
func ExampleBreakers_KeyedMiddleware() {
	breakers, err := httpbreaker.New(
		httpbreaker.WithPolicy(httpbreaker.Policy{ConsecutiveFailures: 2}),
		httpbreaker.WithLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		log.Fatal(err)
	}
	perRoute := breakers.KeyedMiddleware(httpbreaker.RoutePattern)
	mux := http.NewServeMux()
	mux.Handle("GET /items/{id}", perRoute(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	})))
	mux.Handle("GET /users/{id}", perRoute(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))

	for _, path := range []string{"/items/1", "/items/2", "/items/3", "/users/1"} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		fmt.Println(path, rec.Code)
	}
	for _, s := range breakers.Snapshot() {
		fmt.Printf("%q %s\n", s.Key, s.State)
	}
	// Output:
	// /items/1 502
	// /items/2 502
	// /items/3 503
	// /users/1 200
	// "GET /items/{id}" open
	// "GET /users/{id}" closed
}

// Policies come from a file: defaults, and per-key overrides that name only
// what differs.
func ExampleLoadConfig() {
	cfg, err := httpbreaker.LoadConfig(strings.NewReader(`
defaults:
  open_for: 30s
keys:
  scaffolder:
    consecutive_failures: off
    half_open_requests: 1
  search:
    slow_call: 2s
    mode: observe
`))
	if err != nil {
		log.Fatal(err)
	}
	breakers, err := httpbreaker.New(httpbreaker.WithConfig(cfg))
	if err != nil {
		log.Fatal(err)
	}
	breakers.Middleware("scaffolder")
	breakers.Middleware("search")
	for _, s := range breakers.Snapshot() {
		policy, _ := json.Marshal(s.Policy)
		fmt.Printf("%s %s\n", s.Key, policy)
	}
	// Output:
	// scaffolder {"failure_rate":0.5,"min_requests":10,"consecutive_failures":"off","window":"10s","buckets":10,"last_calls":"off","open_for":"30s","max_open_for":"5m0s","half_open_requests":1,"half_open_successes":1,"quorum":2,"probe_timeout":"30s","slow_call":"off","slow_call_rate":"off","recovery_ramp":"off","idle_ttl":"off","upstream_retry_after":"on_503","mode":"enforce"}
	// search {"failure_rate":0.5,"min_requests":10,"consecutive_failures":5,"window":"10s","buckets":10,"last_calls":"off","open_for":"30s","max_open_for":"5m0s","half_open_requests":3,"half_open_successes":3,"quorum":2,"probe_timeout":"30s","slow_call":"2s","slow_call_rate":"off","recovery_ramp":"off","idle_ttl":"off","upstream_retry_after":"on_503","mode":"observe"}
}

// A config file's mistakes come back together, each with its line and path.
func ExampleLoadConfig_errors() {
	_, err := httpbreaker.LoadConfig(strings.NewReader(`
keys:
  catalog:
    failure_rate: 1.5
    open_for: 30
    halfopen_requests: 1
`))
	fmt.Println(err)
	// Output:
	// httpbreaker: config: line 4: keys.catalog.failure_rate: must be in (0, 1], or off; got 1.5
	// line 5: keys.catalog.open_for: want a duration such as "30s" or "1m30s"; got 30, a number without a unit (did you mean "30ms" or "30s"?)
	// line 6: keys.catalog.halfopen_requests: unknown field; did you mean half_open_requests?
}

// A fallback answers rejected requests instead of the 503 problem response,
// here with a stale result, and learns from the request which breaker
// rejected it.
func ExampleWithRejectHandler() {
	fallback := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rj, _ := httpbreaker.RejectionFrom(r)
		w.Header().Set("Warning", `110 - "stale"`)
		w.Header().Set("Retry-After", strconv.Itoa(rj.RetryAfterSeconds()))
		fmt.Fprintf(w, "cached results (%s is %s)", rj.Key, rj.State)
	})
	breakers, err := httpbreaker.New(
		httpbreaker.WithRejectHandler(fallback),
		httpbreaker.WithPolicy(httpbreaker.Policy{ConsecutiveFailures: 1, OpenFor: time.Minute}),
		httpbreaker.WithLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		log.Fatal(err)
	}
	search := breakers.Middleware("search")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusGatewayTimeout)
	}))
	for range 2 {
		rec := httptest.NewRecorder()
		search.ServeHTTP(rec, httptest.NewRequest("GET", "/search?q=go", nil))
		fmt.Printf("%d %q\n", rec.Code, rec.Body.String())
	}
	// Output:
	// 504 ""
	// 200 "cached results (search is open)"
}

// A classifier decides what counts as a failure. This one treats 404 as a
// failure for one key whose upstream answers 404 when its index is lost,
// and leaves the rest to DefaultClassifier.
func ExampleWithClassifier() {
	classify := func(c httpbreaker.Call) httpbreaker.Outcome {
		if c.Key == "search" && c.StatusCode == http.StatusNotFound {
			return httpbreaker.Failure
		}
		return httpbreaker.DefaultClassifier(c)
	}
	breakers, err := httpbreaker.New(
		httpbreaker.WithClassifier(classify),
		httpbreaker.WithPolicy(httpbreaker.Policy{ConsecutiveFailures: 2}),
		httpbreaker.WithLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		log.Fatal(err)
	}
	notFound := http.NotFoundHandler()
	search, docs := breakers.Middleware("search")(notFound), breakers.Middleware("docs")(notFound)
	for range 2 {
		search.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
		docs.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}
	fmt.Println("search:", breakers.State("search"), "docs:", breakers.State("docs"))
	// Output:
	// search: open docs: closed
}

// Metrics go to the registerer you pass, and are read at scrape time.
func ExampleWithRegisterer() {
	reg := prometheus.NewRegistry()
	breakers, err := httpbreaker.New(httpbreaker.WithRegisterer(reg))
	if err != nil {
		log.Fatal(err)
	}
	h := breakers.Middleware("catalog")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))

	printSeries(reg) // what a scrape would see, but for the zeros
	// Output:
	// httpbreaker_requests_total key=catalog result=success 1
	// httpbreaker_state key=catalog state=closed 1
}

// One set per provider on one registry: each set's metrics carry a
// constant provider label, from prometheus.WrapRegistererWith, so the same
// metric names hold both sets' series (a second set on the bare registry
// would need its own WithNamespace instead).
func ExampleWithRegisterer_onePerProvider() {
	reg := prometheus.NewRegistry()
	sets := map[string]*httpbreaker.Breakers{}
	for _, provider := range []string{"anthropic", "openai"} {
		b, err := httpbreaker.New(
			httpbreaker.WithRegisterer(prometheus.WrapRegistererWith(prometheus.Labels{"provider": provider}, reg)),
			httpbreaker.WithPolicy(httpbreaker.Policy{ConsecutiveFailures: 1}),
			httpbreaker.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			log.Fatal(err)
		}
		defer b.Close()
		sets[provider] = b
	}
	failing := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(529) }) // Anthropic: overloaded
	working := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	sets["anthropic"].Middleware("/v1/messages")(failing).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/", nil))
	sets["openai"].Middleware("/v1/responses")(working).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/", nil))
	for _, b := range sets {
		if err := b.Flush(context.Background()); err != nil { // the transition counted
			log.Fatal(err)
		}
	}

	printSeries(reg) // what a scrape would see, but for the zeros
	// Output:
	// httpbreaker_requests_total key=/v1/messages provider=anthropic result=failure 1
	// httpbreaker_requests_total key=/v1/responses provider=openai result=success 1
	// httpbreaker_state key=/v1/messages provider=anthropic state=open 1
	// httpbreaker_state key=/v1/responses provider=openai state=closed 1
	// httpbreaker_transitions_total from=closed key=/v1/messages provider=anthropic to=open 1
}

// A state-change hook gets an Event with why the state changed: here, a
// message for a chat channel when a key trips. Hooks run on a goroutine of
// the set's own, in order; Flush waits until those of every change so far
// have run, as a test written for gobreaker's synchronous OnStateChange
// needs.
func ExampleWithStateChangeHook() {
	breakers, err := httpbreaker.New(
		httpbreaker.WithLogger(slog.New(slog.DiscardHandler)),
		httpbreaker.WithPolicy(httpbreaker.Policy{ConsecutiveFailures: 2, OpenFor: 30 * time.Second}),
		httpbreaker.WithStateChangeHook(func(e httpbreaker.Event) {
			if e.To == httpbreaker.StateOpen {
				fmt.Printf("%s opened (%s: %d failures in a row); it probes again in %v\n",
					e.Key, e.Reason, e.ConsecutiveFailures, e.OpenFor)
			}
		}))
	if err != nil {
		panic(err)
	}
	h := breakers.Middleware("billing")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	for range 2 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}
	if err := breakers.Flush(context.Background()); err != nil {
		panic(err)
	}
	fmt.Println("flushed")
	// Output:
	// billing opened (consecutive_failures: 2 failures in a row); it probes again in 30s
	// flushed
}

// Transport puts a client's calls to an upstream behind the key's breaker:
// once the upstream has failed enough, calls fail fast with ErrOpen, without
// touching the network, and the caller can answer from a fallback.
func ExampleBreakers_Transport() {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway) // the upstream is down
	}))
	defer upstream.Close()
	breakers, err := httpbreaker.New(
		httpbreaker.WithLogger(slog.New(slog.DiscardHandler)),
		httpbreaker.WithPolicy(httpbreaker.Policy{ConsecutiveFailures: 3, OpenFor: 30 * time.Second}))
	if err != nil {
		panic(err)
	}
	git := &http.Client{Transport: breakers.Transport("git", nil), Timeout: 5 * time.Second}
	for range 5 {
		resp, err := git.Get(upstream.URL + "/repos")
		var rejected *httpbreaker.RejectedError
		switch {
		case errors.As(err, &rejected) && rejected.RetryAfter <= 30*time.Second: // 30s after the trip, and counting down
			fmt.Printf("rejected by %s (%s), retry within 30s: answering from the cache\n", rejected.Key, rejected.State)
		case err != nil:
			fmt.Println(err)
		default:
			resp.Body.Close()
			fmt.Println(resp.StatusCode)
		}
	}
	// Output:
	// 502
	// 502
	// 502
	// rejected by git (open), retry within 30s: answering from the cache
	// rejected by git (open), retry within 30s: answering from the cache
}

// Do puts a call that is not HTTP, here a database query, behind a key's
// breaker. The classifier says which errors are the database's failures:
// sql.ErrNoRows is an answer, not one. Once the database has failed enough,
// Do returns ErrOpen at once without running the query, and the caller can
// degrade.
func ExampleBreakers_Do() {
	errNoRows := errors.New("sql: no rows in result set") // sql.ErrNoRows in a real program
	breakers, err := httpbreaker.New(
		httpbreaker.WithLogger(slog.New(slog.DiscardHandler)),
		httpbreaker.WithPolicy(httpbreaker.Policy{ConsecutiveFailures: 3, OpenFor: 30 * time.Second}),
		httpbreaker.WithClassifier(func(c httpbreaker.Call) httpbreaker.Outcome {
			if errors.Is(c.Err, errNoRows) {
				return httpbreaker.Success
			}
			return httpbreaker.DefaultClassifier(c)
		}))
	if err != nil {
		panic(err)
	}
	query := func(answer error) error { // db.QueryRowContext(ctx, ...).Scan(...) in a real program
		return breakers.Do(context.Background(), "orders-db", func(ctx context.Context) error { return answer })
	}
	fmt.Println(query(errNoRows))
	for range 3 {
		fmt.Println(query(errors.New("connection refused")))
	}
	err = query(nil)
	var rejected *httpbreaker.RejectedError
	if errors.Is(err, httpbreaker.ErrOpen) && errors.As(err, &rejected) && rejected.RetryAfter <= 30*time.Second {
		// RetryAfter counts down from OpenFor: 30s right after the trip.
		fmt.Printf("%s is %s: degrade, and retry within 30s\n", rejected.Key, rejected.State)
	}
	// Output:
	// sql: no rows in result set
	// connection refused
	// connection refused
	// connection refused
	// orders-db is open: degrade, and retry within 30s
}

// A route group whose handler calls an upstream with the request's context
// is not tripped by the upstream's failures: they are blamed on the
// upstream's key. billing answers 502 while payments fails, then from its
// cache once payments' breaker is open, and its own breaker stays closed.
func Example_blame() {
	payments := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError) // payments is down
	}))
	defer payments.Close()
	breakers, err := httpbreaker.New(
		httpbreaker.WithLogger(slog.New(slog.DiscardHandler)),
		httpbreaker.WithPolicy(httpbreaker.Policy{ConsecutiveFailures: 3, OpenFor: 30 * time.Second}))
	if err != nil {
		panic(err)
	}
	client := &http.Client{Transport: breakers.Transport("payments", nil)}
	billing := breakers.Middleware("billing")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The request's context: how the breakers know the call is billing's.
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, payments.URL+"/charge", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		switch {
		case errors.Is(err, httpbreaker.ErrOpen):
			io.WriteString(w, "from the cache")
		case err != nil || resp.StatusCode >= 500:
			http.Error(w, "payments failed", http.StatusBadGateway)
		default:
			io.WriteString(w, "charged")
		}
	}))
	for range 5 {
		rec := httptest.NewRecorder()
		billing.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/billing/charge", nil))
		fmt.Println(rec.Code, strings.TrimSpace(rec.Body.String()))
	}
	for _, s := range breakers.Snapshot() {
		fmt.Printf("%s: %s, %d failures, blamed on %v\n", s.Key, s.State, s.Totals.Failures, s.BlamedOn)
	}
	// Output:
	// 502 payments failed
	// 502 payments failed
	// 502 payments failed
	// 200 from the cache
	// 200 from the cache
	// billing: closed, 0 failures, blamed on map[payments:3]
	// payments: open, 3 failures, blamed on map[]
}

// printSeries prints every series of reg whose value is not zero, one per
// line: the name, the labels and the value.
func printSeries(reg *prometheus.Registry) {
	families, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			value := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			if value == 0 {
				continue
			}
			labels := ""
			for _, l := range m.GetLabel() {
				labels += " " + l.GetName() + "=" + l.GetValue()
			}
			fmt.Printf("%s%s %v\n", f.GetName(), labels, value)
		}
	}
}
