package ginbreaker

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/httpbreaker/httpbreaker"
	"github.com/httpbreaker/httpbreaker/internal/adaptertest"
	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func init() {
	// No route listing, request log or panic stacks in the test output.
	gin.SetMode(gin.TestMode)
	gin.DefaultWriter = io.Discard
	gin.DefaultErrorWriter = io.Discard
}

// testBreakers trips a key after 3 failures in a row and keeps it open far
// longer than any test runs; opts come after, RejectHandler first.
func testBreakers(t *testing.T, opts ...httpbreaker.Option) *httpbreaker.Breakers {
	t.Helper()
	breakers, err := httpbreaker.New(append([]httpbreaker.Option{
		httpbreaker.WithRejectHandler(RejectHandler()),
		httpbreaker.WithPolicy(httpbreaker.Policy{ConsecutiveFailures: 3, OpenFor: time.Hour}),
		httpbreaker.WithLogger(slog.New(slog.DiscardHandler))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = breakers.Close() })
	return breakers
}

// newEngine mounts two plugin groups, each behind its own breaker, and an
// items API with a breaker per route, as a gin service would.
func newEngine(breakers *httpbreaker.Breakers, scaffolder, getItem gin.HandlerFunc) *gin.Engine {
	r := gin.Default() // Logger and Recovery outside every breaker
	r.Group("/api/catalog", Wrap(breakers.Middleware("catalog"))).GET("/entities", working)
	r.Group("/api/scaffolder", Wrap(breakers.Middleware("scaffolder"))).POST("/tasks", scaffolder)
	items := r.Group("/api/items", Wrap(breakers.KeyedMiddleware(RouteKey)))
	items.GET("/:id", getItem)
	items.POST("/:id", working)
	return r
}

// rejection is RejectHandler's answer, in gin's error style.
var rejection = adaptertest.Rejection{ContentType: "application/json; charset=utf-8", Member: "error"}

func working(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"ok": true}) }

func TestFailingGroupIsCutOffWithAGinErrorWhileTheOtherGroupAnswers(t *testing.T) {
	breakers := testBreakers(t)
	var calls atomic.Int64
	url := adaptertest.Serve(t, newEngine(breakers, func(c *gin.Context) {
		calls.Add(1)
		c.JSON(http.StatusInternalServerError, gin.H{"error": "template repository unreachable"})
	}, working))
	for i := range 6 {
		a := adaptertest.Send(t, http.MethodPost, url+"/api/scaffolder/tasks")
		if i < 3 {
			// c.JSON sets the status before the content type: the writer
			// must hold the status back, as gin's own does.
			if a.Status != 500 || a.ContentType != "application/json; charset=utf-8" || a.Body["error"] != "template repository unreachable" {
				t.Fatalf("scaffolder request %d: %d %q %v, want the handler's 500", i+1, a.Status, a.ContentType, a.Body)
			}
		} else {
			rejection.Want(t, a, "scaffolder")
		}
		if a := adaptertest.Send(t, http.MethodGet, url+"/api/catalog/entities"); a.Status != http.StatusOK {
			t.Fatalf("catalog answered %d while scaffolder failed", a.Status)
		}
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("the scaffolder handler ran %d times, want 3: an open breaker must not call it", n)
	}
	if s, c := breakers.State("scaffolder"), breakers.State("catalog"); s != httpbreaker.StateOpen || c != httpbreaker.StateClosed {
		t.Fatalf("scaffolder %v, catalog %v; want open and closed", s, c)
	}
}

func TestEveryWayAGinHandlerAnswersAFailureCounts(t *testing.T) {
	for name, tc := range map[string]struct {
		status  int
		handler gin.HandlerFunc
	}{
		"c.JSON":                       {500, func(c *gin.Context) { c.JSON(500, gin.H{"error": "down"}) }},
		"c.String":                     {504, func(c *gin.Context) { c.String(504, "upstream timed out") }},
		"c.AbortWithStatus":            {502, func(c *gin.Context) { c.AbortWithStatus(502) }},
		"c.AbortWithError":             {500, func(c *gin.Context) { _ = c.AbortWithError(500, errors.New("down")) }},
		"c.Status, with no body after": {503, func(c *gin.Context) { c.Status(503) }},
	} {
		t.Run(name, func(t *testing.T) {
			url := adaptertest.Serve(t, newEngine(testBreakers(t), tc.handler, working))
			rejection.FailFirst3(t, http.MethodPost, url+"/api/scaffolder/tasks", "scaffolder", tc.status)
		})
	}
}

func TestClientErrorsDoNotTrip(t *testing.T) {
	breakers := testBreakers(t)
	var calls atomic.Int64
	url := adaptertest.Serve(t, newEngine(breakers, func(c *gin.Context) {
		switch calls.Add(1) % 3 {
		case 0:
			c.JSON(http.StatusUnprocessableEntity, gin.H{"error": "template name missing"})
		case 1:
			c.AbortWithStatus(http.StatusNotFound)
		default:
			c.Status(http.StatusConflict)
		}
	}, working))
	for i := range 10 {
		if a := adaptertest.Send(t, http.MethodPost, url+"/api/scaffolder/tasks"); a.Status < 400 || a.Status > 499 {
			t.Fatalf("request %d: %d, want the handler's 4xx", i+1, a.Status)
		}
	}
	if n := calls.Load(); n != 10 {
		t.Fatalf("the handler ran %d times, want 10", n)
	}
	if st := breakers.State("scaffolder"); st != httpbreaker.StateClosed {
		t.Fatalf("scaffolder %v after 4xx answers, want closed", st)
	}
}

func TestPanicCountsAsAFailureWithRecoveryOnEitherSide(t *testing.T) {
	panicking := func(*gin.Context) { panic("nil map in the scaffolder") }
	for name, engine := range map[string]func(*httpbreaker.Breakers) *gin.Engine{
		// The panic goes up through the breaker to gin.Default's Recovery.
		"outside, on the engine": func(b *httpbreaker.Breakers) *gin.Engine {
			return newEngine(b, panicking, working)
		},
		// Recovery answers 500 through the breaker's writer.
		"inside, after Wrap": func(b *httpbreaker.Breakers) *gin.Engine {
			r := gin.New()
			r.Group("/api/scaffolder", Wrap(b.Middleware("scaffolder")), gin.Recovery()).POST("/tasks", panicking)
			return r
		},
	} {
		t.Run(name, func(t *testing.T) {
			breakers := testBreakers(t)
			url := adaptertest.Serve(t, engine(breakers))
			rejection.FailFirst3(t, http.MethodPost, url+"/api/scaffolder/tasks", "scaffolder", http.StatusInternalServerError)
			if st := breakers.State("scaffolder"); st != httpbreaker.StateOpen {
				t.Fatalf("scaffolder %v after 3 panics, want open", st)
			}
		})
	}
}

func TestPerRouteBreakersKeyByMethodAndRouteTemplateNotPath(t *testing.T) {
	breakers := testBreakers(t)
	url := adaptertest.Serve(t, newEngine(breakers, working, func(c *gin.Context) {
		c.JSON(http.StatusInternalServerError, gin.H{"error": "inventory down"})
	}))
	for i := range 5 {
		// Every id is another path, and the same route.
		item := url + "/api/items/" + strconv.Itoa(i+1)
		a := adaptertest.Send(t, http.MethodGet, item)
		if i < 3 && a.Status != http.StatusInternalServerError {
			t.Fatalf("GET %d: %d, want the handler's 500", i+1, a.Status)
		}
		if i >= 3 {
			rejection.Want(t, a, "GET /api/items/:id")
		}
		if a := adaptertest.Send(t, http.MethodPost, item); a.Status != http.StatusOK {
			t.Fatalf("POST %d answered %d while GET of the same route failed", i+1, a.Status)
		}
	}
	// Requests that match no route get no breaker: keys come from routes.
	adaptertest.Send(t, http.MethodGet, url+"/api/items/1/no/such/route")
	adaptertest.Send(t, "PURGE", url+"/api/items/1")

	var keys []string
	for _, s := range breakers.Snapshot() {
		keys = append(keys, s.Key+"="+s.State.String())
	}
	want := []string{"GET /api/items/:id=open", "POST /api/items/:id=closed", "catalog=closed", "scaffolder=closed"}
	if !slices.Equal(keys, want) {
		t.Fatalf("breakers %q, want %q", keys, want)
	}
}

func TestRouteKeyOfARequestThatDidNotComeThroughWrapIsEmpty(t *testing.T) {
	if k := RouteKey(httptest.NewRequest(http.MethodGet, "/api/items/1", nil)); k != "" {
		t.Fatalf("RouteKey of a plain request: %q, want \"\" (untracked)", k)
	}
	if c := Context(httptest.NewRequest(http.MethodGet, "/", nil)); c != nil {
		t.Fatalf("Context of a plain request: %v, want nil", c)
	}
}

// TestMiddlewareOutsideTheBreakerSeesTheAnswerOnGinsOwnWriter: once the
// breaker is done, c.Writer is gin's own again, and knows what was answered.
func TestMiddlewareOutsideTheBreakerSeesTheAnswerOnGinsOwnWriter(t *testing.T) {
	type seen struct {
		status  int
		ginOwn  bool
		written bool
	}
	got := make(chan seen, 1)
	r := gin.New()
	r.Use(func(c *gin.Context) {
		c.Next()
		_, ours := c.Writer.(*ginWriter)
		got <- seen{c.Writer.Status(), !ours, c.Writer.Written()}
	})
	r.Group("/api/scaffolder", Wrap(testBreakers(t).Middleware("scaffolder"))).POST("/tasks", func(c *gin.Context) {
		c.JSON(http.StatusBadGateway, gin.H{"error": "down"})
	})
	url := adaptertest.Serve(t, r)
	for i := range 4 {
		a := adaptertest.Send(t, http.MethodPost, url+"/api/scaffolder/tasks")
		want := seen{a.Status, true, true}
		if s := <-got; s != want {
			t.Fatalf("request %d answered %d; the middleware outside saw %+v, want %+v", i+1, a.Status, s, want)
		}
	}
}

// TestHandlersBehindARejectionNeverRunWhateverAnswersIt: with the library's
// own reject response instead of RejectHandler, which does not abort the
// gin chain, Wrap still stops it.
func TestHandlersBehindARejectionNeverRunWhateverAnswersIt(t *testing.T) {
	breakers, err := httpbreaker.New(
		httpbreaker.WithPolicy(httpbreaker.Policy{ConsecutiveFailures: 3, OpenFor: time.Hour}),
		httpbreaker.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = breakers.Close() })
	var calls atomic.Int64
	r := gin.New()
	r.Group("/api/scaffolder", Wrap(breakers.Middleware("scaffolder"))).POST("/tasks", func(c *gin.Context) {
		calls.Add(1)
		c.AbortWithStatus(http.StatusInternalServerError)
	})
	url := adaptertest.Serve(t, r)
	for i := range 5 {
		a := adaptertest.Send(t, http.MethodPost, url+"/api/scaffolder/tasks")
		if i >= 3 && (a.Status != http.StatusServiceUnavailable || a.ContentType != "application/problem+json") {
			t.Fatalf("request %d: %d %q, want the library's 503 problem", i+1, a.Status, a.ContentType)
		}
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("the handler ran %d times, want 3", n)
	}
}

// TestRejectHandlerAnswersAPlainNetHTTPRequestTooWithTheSameJSON: a set
// whose breakers guard gin routes and net/http handlers alike answers both
// in one style.
func TestRejectHandlerAnswersAPlainNetHTTPRequestTooWithTheSameJSON(t *testing.T) {
	breakers := testBreakers(t)
	url := adaptertest.Serve(t, breakers.Middleware("reports")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusBadGateway)
	})))
	rejection.FailFirst3(t, http.MethodGet, url, "reports", http.StatusBadGateway)
}

// TestAStreamReachesTheClientAsItIsWrittenAndCountsByItsStatus: c.Stream
// and c.SSEvent flush through the breaker's writer, so a client reads each
// event while the handler still runs; the stream's 200 is a success.
func TestAStreamReachesTheClientAsItIsWrittenAndCountsByItsStatus(t *testing.T) {
	breakers := testBreakers(t)
	read := make(chan struct{})
	readFirst := sync.OnceFunc(func() { close(read) })
	defer readFirst() // on a failure, the handler need not wait
	r := gin.New()
	r.Group("/api/events", Wrap(breakers.Middleware("events"))).GET("", func(c *gin.Context) {
		sent := 0
		c.Stream(func(w io.Writer) bool {
			if sent > 0 {
				select {
				case <-read: // the client has the event before the next is written
				case <-time.After(10 * time.Second):
					c.SSEvent("error", "the client never read the first event")
					return false
				}
			}
			c.SSEvent("tick", strconv.Itoa(sent))
			sent++
			return sent < 2
		})
	})
	url := adaptertest.Serve(t, r)
	events := adaptertest.Stream(t, url+"/api/events", readFirst)
	if !slices.Equal(events, []string{"0", "1"}) {
		t.Fatalf("events %q, want 0 then 1, each read before the next was written", events)
	}
	s := breakers.Snapshot()
	if len(s) != 1 || s[0].Window.Successes != 1 || s[0].Window.Failures != 0 {
		t.Fatalf("after the stream: %+v, want one success", s)
	}
}
