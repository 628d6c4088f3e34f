package echobreaker

import (
	"errors"
	"fmt"
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

	"github.com/httpbreaker/httpbreaker"
	"github.com/httpbreaker/httpbreaker/internal/adaptertest"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testBreakers trips a key after 3 failures in a row and keeps it open far
// longer than any test runs, and answers rejections with RejectHandler.
func testBreakers(t *testing.T) *httpbreaker.Breakers {
	t.Helper()
	breakers, err := httpbreaker.New(
		httpbreaker.WithRejectHandler(RejectHandler()),
		httpbreaker.WithPolicy(httpbreaker.Policy{ConsecutiveFailures: 3, OpenFor: time.Hour}),
		httpbreaker.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = breakers.Close() })
	return breakers
}

// newEcho mounts two plugin groups, each behind its own breaker, and an
// items API with a breaker per route, as an echo service would.
func newEcho(breakers *httpbreaker.Breakers, scaffolder, getItem echo.HandlerFunc) *echo.Echo {
	e := echo.New()
	e.Use(middleware.Recover()) // outside every breaker
	e.Group("/api/catalog", Wrap(breakers.Middleware("catalog"))).GET("/entities", working)
	e.Group("/api/scaffolder", Wrap(breakers.Middleware("scaffolder"))).POST("/tasks", scaffolder)
	items := e.Group("/api/items", Wrap(breakers.KeyedMiddleware(RouteKey)))
	items.GET("/:id", getItem)
	items.POST("/:id", working)
	return e
}

// serve serves e with its log (Recover's panic stacks) discarded.
func serve(t *testing.T, e *echo.Echo) string {
	t.Helper()
	e.Logger.SetOutput(io.Discard)
	return adaptertest.Serve(t, e)
}

// rejection is RejectHandler's answer, as echo's default HTTPErrorHandler
// writes an *echo.HTTPError.
var rejection = adaptertest.Rejection{ContentType: echo.MIMEApplicationJSON, Member: "message"}

func working(c echo.Context) error { return c.JSON(http.StatusOK, echo.Map{"ok": true}) }

// TestFailingGroupIsCutOffWithAnEchoErrorWhileTheOtherGroupAnswers: the
// scaffolder returns its failure as an error, which echo answers after the
// chain; echo.WrapMiddleware alone would let the breaker count successes.
func TestFailingGroupIsCutOffWithAnEchoErrorWhileTheOtherGroupAnswers(t *testing.T) {
	breakers := testBreakers(t)
	var calls atomic.Int64
	url := serve(t, newEcho(breakers, func(c echo.Context) error {
		calls.Add(1)
		return echo.NewHTTPError(http.StatusInternalServerError, "template repository unreachable")
	}, working))
	for i := range 6 {
		a := adaptertest.Send(t, http.MethodPost, url+"/api/scaffolder/tasks")
		if i < 3 {
			if a.Status != 500 || a.Body["message"] != "template repository unreachable" {
				t.Fatalf("scaffolder request %d: %d %v, want the handler's 500", i+1, a.Status, a.Body)
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

func TestEveryWayAnEchoHandlerAnswersAFailureCounts(t *testing.T) {
	for name, tc := range map[string]struct {
		status  int
		handler echo.HandlerFunc
	}{
		"an *echo.HTTPError": {502, func(echo.Context) error { return echo.NewHTTPError(502, "upstream down") }},
		"any other error":    {500, func(echo.Context) error { return errors.New("database down") }},
		"c.JSON":             {500, func(c echo.Context) error { return c.JSON(500, echo.Map{"message": "down"}) }},
		"c.String":           {504, func(c echo.Context) error { return c.String(504, "upstream timed out") }},
		"c.NoContent":        {503, func(c echo.Context) error { return c.NoContent(503) }},
	} {
		t.Run(name, func(t *testing.T) {
			url := serve(t, newEcho(testBreakers(t), tc.handler, working))
			rejection.FailFirst3(t, http.MethodPost, url+"/api/scaffolder/tasks", "scaffolder", tc.status)
		})
	}
}

func TestClientErrorsDoNotTrip(t *testing.T) {
	breakers := testBreakers(t)
	var calls atomic.Int64
	url := serve(t, newEcho(breakers, func(c echo.Context) error {
		switch calls.Add(1) % 3 {
		case 0:
			return c.JSON(http.StatusUnprocessableEntity, echo.Map{"message": "template name missing"})
		case 1:
			return echo.ErrNotFound
		default:
			return echo.NewHTTPError(http.StatusConflict, "task already running")
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

func TestPanicCountsAsAFailureWithRecoverOnEitherSide(t *testing.T) {
	panicking := func(echo.Context) error { panic("nil map in the scaffolder") }
	for name, server := range map[string]func(*httpbreaker.Breakers) *echo.Echo{
		// The panic goes up through the breaker to the server's Recover.
		"outside, on the server": func(b *httpbreaker.Breakers) *echo.Echo {
			return newEcho(b, panicking, working)
		},
		// Recover answers 500 through the breaker's writer.
		"inside, after Wrap": func(b *httpbreaker.Breakers) *echo.Echo {
			e := echo.New()
			e.Group("/api/scaffolder", Wrap(b.Middleware("scaffolder")), middleware.Recover()).POST("/tasks", panicking)
			return e
		},
	} {
		t.Run(name, func(t *testing.T) {
			breakers := testBreakers(t)
			url := serve(t, server(breakers))
			rejection.FailFirst3(t, http.MethodPost, url+"/api/scaffolder/tasks", "scaffolder", http.StatusInternalServerError)
			if st := breakers.State("scaffolder"); st != httpbreaker.StateOpen {
				t.Fatalf("scaffolder %v after 3 panics, want open", st)
			}
		})
	}
}

func TestPerRouteBreakersKeyByMethodAndRouteTemplateNotPath(t *testing.T) {
	breakers := testBreakers(t)
	url := serve(t, newEcho(breakers, working, func(echo.Context) error {
		return echo.NewHTTPError(http.StatusInternalServerError, "inventory down")
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
	// A request in the group that matches no route reaches the group's
	// catch-all, and is keyed by its template; one with a method routeKey
	// does not know gets no breaker.
	for _, req := range [][2]string{{http.MethodGet, "/api/items/"}, {http.MethodDelete, "/api/items/1"}, {http.MethodDelete, "/api/items/2"}} {
		if a := adaptertest.Send(t, req[0], url+req[1]); a.Status != http.StatusNotFound {
			t.Fatalf("%s %s: %d, want 404", req[0], req[1], a.Status)
		}
	}
	for _, method := range []string{"PURGE", "BREW", "X-ANYTHING"} {
		if a := adaptertest.Send(t, method, url+"/api/items/1"); a.Status != http.StatusNotFound {
			t.Fatalf("%s: %d, want 404", method, a.Status)
		}
	}

	var keys []string
	for _, s := range breakers.Snapshot() {
		keys = append(keys, s.Key+"="+s.State.String())
	}
	want := []string{"DELETE /api/items/*=closed", "GET /api/items/*=closed", "GET /api/items/:id=open", "POST /api/items/:id=closed", "catalog=closed", "scaffolder=closed"}
	if !slices.Equal(keys, want) {
		t.Fatalf("breakers %q, want %q", keys, want)
	}
}

// TestMiddlewareOutsideTheBreakerSeesTheAnswerOnEchosOwnResponse: once the
// breaker is done, c.Response() is echo's own again, and knows what was
// answered, errors included.
func TestMiddlewareOutsideTheBreakerSeesTheAnswerOnEchosOwnResponse(t *testing.T) {
	type seen struct {
		status      int
		own         bool
		committed   bool
		contentType string
	}
	got := make(chan seen, 1)
	e := echo.New()
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			res := c.Response()
			err := next(c)
			got <- seen{c.Response().Status, c.Response() == res, c.Response().Committed, c.Response().Header().Get("Content-Type")}
			return err
		}
	})
	e.Group("/api/scaffolder", Wrap(testBreakers(t).Middleware("scaffolder"))).POST("/tasks", func(echo.Context) error {
		return echo.NewHTTPError(http.StatusBadGateway, "down")
	})
	url := serve(t, e)
	for i := range 4 {
		a := adaptertest.Send(t, http.MethodPost, url+"/api/scaffolder/tasks")
		want := seen{a.Status, true, true, echo.MIMEApplicationJSON}
		if s := <-got; s != want {
			t.Fatalf("request %d answered %d; the middleware outside saw %+v, want %+v", i+1, a.Status, s, want)
		}
	}
}

// TestLibrarysOwnRejectResponseWorksThroughWrap: without RejectHandler, the
// breaker answers with its problem document, and the handler is not called.
func TestLibrarysOwnRejectResponseWorksThroughWrap(t *testing.T) {
	breakers, err := httpbreaker.New(
		httpbreaker.WithPolicy(httpbreaker.Policy{ConsecutiveFailures: 3, OpenFor: time.Hour}),
		httpbreaker.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = breakers.Close() })
	var calls atomic.Int64
	e := echo.New()
	e.Group("/api/scaffolder", Wrap(breakers.Middleware("scaffolder"))).POST("/tasks", func(echo.Context) error {
		calls.Add(1)
		return echo.ErrInternalServerError
	})
	url := serve(t, e)
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

func TestRouteKeyOfARequestThatDidNotComeThroughWrapIsEmpty(t *testing.T) {
	if k := RouteKey(httptest.NewRequest(http.MethodGet, "/api/items/1", nil)); k != "" {
		t.Fatalf("RouteKey of a plain request: %q, want \"\" (untracked)", k)
	}
	if c := Context(httptest.NewRequest(http.MethodGet, "/", nil)); c != nil {
		t.Fatalf("Context of a plain request: %v, want nil", c)
	}
}

// TestRejectHandlerAnswersAPlainNetHTTPRequestTooWithTheSameJSON: a set
// whose breakers guard echo routes and net/http handlers alike answers both
// in one style.
func TestRejectHandlerAnswersAPlainNetHTTPRequestTooWithTheSameJSON(t *testing.T) {
	breakers := testBreakers(t)
	url := adaptertest.Serve(t, breakers.Middleware("reports")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusBadGateway)
	})))
	rejection.FailFirst3(t, http.MethodGet, url, "reports", http.StatusBadGateway)
}

// TestAStreamReachesTheClientAsItIsWrittenAndCountsByItsStatus: a handler
// that flushes through echo's Response reaches the client event by event
// through the breaker's writer; the stream's 200 is a success.
func TestAStreamReachesTheClientAsItIsWrittenAndCountsByItsStatus(t *testing.T) {
	breakers := testBreakers(t)
	read := make(chan struct{})
	readFirst := sync.OnceFunc(func() { close(read) })
	defer readFirst() // on a failure, the handler need not wait
	e := echo.New()
	e.Group("/api/events", Wrap(breakers.Middleware("events"))).GET("", func(c echo.Context) error {
		res := c.Response()
		res.Header().Set(echo.HeaderContentType, "text/event-stream")
		res.WriteHeader(http.StatusOK)
		for i := range 2 {
			if i > 0 {
				select {
				case <-read: // the client has the event before the next is written
				case <-time.After(10 * time.Second):
					return errors.New("the client never read the first event")
				}
			}
			if _, err := fmt.Fprintf(res, "data:%d\n\n", i); err != nil {
				return err
			}
			res.Flush()
		}
		return nil
	})
	url := serve(t, e)
	events := adaptertest.Stream(t, url+"/api/events", readFirst)
	if !slices.Equal(events, []string{"0", "1"}) {
		t.Fatalf("events %q, want 0 then 1, each read before the next was written", events)
	}
	s := breakers.Snapshot()
	if len(s) != 1 || s[0].Window.Successes != 1 || s[0].Window.Failures != 0 {
		t.Fatalf("after the stream: %+v, want one success", s)
	}
}
