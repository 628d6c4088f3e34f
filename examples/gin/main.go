// Command gin puts each route group of a gin engine behind its own circuit
// breaker: a failing scaffolder plugin is cut off while catalog keeps
// answering, and the items API has a breaker per route. gin middleware is a
// gin.HandlerFunc, so wrap (wrap.go) adapts the breakers' net/http
// middleware to it.
//
//	go run ./examples/gin
package main

import (
	"flag"
	"log"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
	"github.com/httpbreaker/httpbreaker"
)

// newBreakers makes the set with rejected as its reject handler, so that
// a request a breaker turns away gets gin's usual error answer.
func newBreakers(opts ...httpbreaker.Option) (*httpbreaker.Breakers, error) {
	return httpbreaker.New(append(opts, httpbreaker.WithRejectHandler(http.HandlerFunc(rejected)))...)
}

// newEngine mounts two plugin groups, each behind its own breaker, and an
// items API with a breaker per route.
func newEngine(breakers *httpbreaker.Breakers, scaffolder, getItem gin.HandlerFunc) *gin.Engine {
	// gin.Default puts Logger and Recovery on the engine, before every
	// group: outside every breaker, where Recovery belongs. A handler's
	// panic then goes up through the breaker, which counts it as a failure
	// and lets it go on, and Recovery answers 500 on gin's own writer. A
	// Recovery inside the breaker (after wrap in a group) turns the panic
	// into a 500 before the breaker sees it: that still counts, through the
	// breaker's writer, but a CustomRecovery there that answers below 500
	// would hide the failure.
	r := gin.Default()

	catalog := r.Group("/api/catalog", wrap(breakers.Middleware("catalog")))
	catalog.GET("/entities", func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"entities": []string{"component:default/website"}})
	})

	r.Group("/api/scaffolder", wrap(breakers.Middleware("scaffolder"))).POST("/tasks", scaffolder)

	// One breaker per route and method: "GET /api/items/:id" and
	// "POST /api/items/:id", whatever the id.
	items := r.Group("/api/items", wrap(breakers.KeyedMiddleware(routeKey)))
	items.GET("/:id", getItem)
	items.POST("/:id", func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"id": c.Param("id"), "updated": true})
	})
	return r
}

// routeKey is a KeyFunc for one breaker per gin route, keyed as
// httpbreaker.RoutePattern keys ServeMux and chi routes: the method and the
// route's template, "GET /api/items/:id", never the path. gin has the
// template once it has picked the route, before any middleware runs, as
// c.FullPath(); it is empty when no route matched, which leaves the request
// untracked. gin picks routes by method too, so the method in a key is
// always one the route was registered for.
func routeKey(r *http.Request) string {
	c := ginContext(r)
	if c == nil || c.FullPath() == "" {
		return ""
	}
	return r.Method + " " + c.FullPath()
}

// rejected answers a request that a breaker turned away as gin handlers
// answer errors, with c.AbortWithStatusJSON, and with Retry-After. It
// answers on the gin.Context that wrap passes along, so every breaker of the
// set must be used through wrap.
func rejected(w http.ResponseWriter, r *http.Request) {
	rj, _ := httpbreaker.RejectionFrom(r)
	onGin(ginContext(r), w, r, func(c *gin.Context) {
		c.Header("Retry-After", strconv.Itoa(rj.RetryAfterSeconds()))
		c.AbortWithStatusJSON(http.StatusServiceUnavailable, gin.H{
			"error": rj.Key + " is unavailable: its circuit breaker is " + rj.State.String() + "; retry after the delay in Retry-After",
		})
	})
}

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
	scaffolder := func(c *gin.Context) {
		c.JSON(http.StatusBadGateway, gin.H{"error": "template repository unreachable"})
	}
	getItem := func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"id": c.Param("id")}) }
	log.Printf("listening on http://%s: GET /api/catalog/entities answers, POST /api/scaffolder/tasks fails until its breaker opens", addr)
	return newEngine(breakers, scaffolder, getItem).Run(addr)
}
