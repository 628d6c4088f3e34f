// Command echo puts each route group of an echo server behind its own
// circuit breaker: a failing scaffolder plugin is cut off while catalog
// keeps answering, and the items API has a breaker per route.
// echobreaker.Wrap adapts the breakers' net/http middleware to echo and
// judges the errors handlers return as the status they become;
// echobreaker.RejectHandler answers a rejection through echo's
// HTTPErrorHandler.
//
//	go run ./examples/echo
package main

import (
	"flag"
	"log"
	"net/http"

	"github.com/httpbreaker/httpbreaker"
	"github.com/httpbreaker/httpbreaker/echobreaker"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// newBreakers makes the set with echobreaker's reject handler, so that a
// request a breaker turns away gets echo's usual error answer.
func newBreakers(opts ...httpbreaker.Option) (*httpbreaker.Breakers, error) {
	return httpbreaker.New(append(opts, httpbreaker.WithRejectHandler(echobreaker.RejectHandler()))...)
}

// newEcho mounts two plugin groups, each behind its own breaker, and an
// items API with a breaker per route.
func newEcho(breakers *httpbreaker.Breakers, scaffolder, getItem echo.HandlerFunc) *echo.Echo {
	e := echo.New()
	// Recover sits on the server, outside every breaker (see
	// echobreaker.Wrap).
	e.Use(middleware.Recover())

	catalog := e.Group("/api/catalog", echobreaker.Wrap(breakers.Middleware("catalog")))
	catalog.GET("/entities", func(c echo.Context) error {
		return c.JSON(http.StatusOK, echo.Map{"entities": []string{"component:default/website"}})
	})

	e.Group("/api/scaffolder", echobreaker.Wrap(breakers.Middleware("scaffolder"))).POST("/tasks", scaffolder)

	// One breaker per route and method: "GET /api/items/:id" and
	// "POST /api/items/:id", whatever the id.
	items := e.Group("/api/items", echobreaker.Wrap(breakers.KeyedMiddleware(echobreaker.RouteKey)))
	items.GET("/:id", getItem)
	items.POST("/:id", func(c echo.Context) error {
		return c.JSON(http.StatusOK, echo.Map{"id": c.Param("id"), "updated": true})
	})
	return e
}

// The example's scaffolder fails, with an error echo answers; its items
// answer.
func scaffolderTasks(echo.Context) error {
	return echo.NewHTTPError(http.StatusBadGateway, "template repository unreachable")
}

func getItem(c echo.Context) error { return c.JSON(http.StatusOK, echo.Map{"id": c.Param("id")}) }

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	if err := listen(*addr); err != nil {
		log.Fatal(err)
	}
}

// listen serves the example on addr until it fails, and then closes the
// breakers (log.Fatal would skip a deferred Close in main).
func listen(addr string) error {
	breakers, err := newBreakers()
	if err != nil {
		return err
	}
	defer breakers.Close()
	log.Printf("listening on http://%s: GET /api/catalog/entities answers, POST /api/scaffolder/tasks fails until its breaker opens", addr)
	return newEcho(breakers, scaffolderTasks, getItem).Start(addr)
}
