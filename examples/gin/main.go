// Command gin puts each route group of a gin engine behind its own circuit
// breaker: a failing scaffolder plugin is cut off while catalog keeps
// answering, and the items API has a breaker per route. gin middleware is a
// gin.HandlerFunc, so ginbreaker.Wrap adapts the breakers' net/http
// middleware to it, and ginbreaker.RejectHandler answers a rejection as gin
// handlers answer errors.
//
//	go run ./examples/gin
package main

import (
	"flag"
	"log"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/httpbreaker/httpbreaker"
	"github.com/httpbreaker/httpbreaker/ginbreaker"
)

// newBreakers makes the set with ginbreaker's reject handler, so that a
// request a breaker turns away gets gin's usual error answer.
func newBreakers(opts ...httpbreaker.Option) (*httpbreaker.Breakers, error) {
	return httpbreaker.New(append(opts, httpbreaker.WithRejectHandler(ginbreaker.RejectHandler()))...)
}

// newEngine mounts two plugin groups, each behind its own breaker, and an
// items API with a breaker per route.
func newEngine(breakers *httpbreaker.Breakers, scaffolder, getItem gin.HandlerFunc) *gin.Engine {
	// gin.Default puts Logger and Recovery on the engine, before every
	// group: outside every breaker, where Recovery belongs (see
	// ginbreaker.Wrap).
	r := gin.Default()

	catalog := r.Group("/api/catalog", ginbreaker.Wrap(breakers.Middleware("catalog")))
	catalog.GET("/entities", func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"entities": []string{"component:default/website"}})
	})

	r.Group("/api/scaffolder", ginbreaker.Wrap(breakers.Middleware("scaffolder"))).POST("/tasks", scaffolder)

	// One breaker per route and method: "GET /api/items/:id" and
	// "POST /api/items/:id", whatever the id.
	items := r.Group("/api/items", ginbreaker.Wrap(breakers.KeyedMiddleware(ginbreaker.RouteKey)))
	items.GET("/:id", getItem)
	items.POST("/:id", func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"id": c.Param("id"), "updated": true})
	})
	return r
}

// The example's scaffolder fails; its items answer.
func scaffolderTasks(c *gin.Context) {
	c.JSON(http.StatusBadGateway, gin.H{"error": "template repository unreachable"})
}

func getItem(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"id": c.Param("id")}) }

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
	return newEngine(breakers, scaffolderTasks, getItem).Run(addr)
}
