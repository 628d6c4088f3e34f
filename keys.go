package httpbreaker

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"
)

// A KeyFunc picks the breaker key of a request: a value from a small set (a
// route pattern, a plugin id, an upstream name), never raw input such as the
// path, since every key gets a breaker and metric series, up to WithMaxKeys.
// "", or a key that is not valid UTF-8 or longer than 512 bytes, leaves the
// request untracked.
type KeyFunc func(*http.Request) string

// RoutePattern is a KeyFunc that keys each request by its method and the
// route pattern that matched it, the same on http.ServeMux and chi:
// "GET /api/items/{id}". Routers set the pattern when they pick the route,
// so the middleware must run inside the route (ServeMux.Handle's handler,
// chi's With or Route); around a whole router every request passes
// untracked (logged once).
func RoutePattern(r *http.Request) string {
	p := r.Pattern
	if p == "" || hasMethod(p) {
		return p
	}
	return withMethod(r.Method, p)
}

// hasMethod reports whether a ServeMux-style pattern starts with a method:
// "GET /x" does, "/x" and "example.com/x" do not.
func hasMethod(pattern string) bool {
	for i := 0; i < len(pattern); i++ {
		switch pattern[i] {
		case ' ', '\t':
			return true
		case '/':
			return false
		}
	}
	return false
}

// routeKeys holds, for each pattern RoutePattern has seen without a method,
// its keys for the standard methods, so that keying a request allocates
// nothing. Patterns are the router's own, a set as small as its routes.
var routeKeys sync.Map // pattern -> *[len(standardMethods)]string

var standardMethods = [...]string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace,
}

// withMethod returns method + " " + pattern.
func withMethod(method, pattern string) string {
	i := slices.Index(standardMethods[:], method)
	if i < 0 {
		return method + " " + pattern
	}
	v, ok := routeKeys.Load(pattern)
	if !ok {
		var keys [len(standardMethods)]string
		for j, m := range standardMethods {
			keys[j] = m + " " + pattern
		}
		v, _ = routeKeys.LoadOrStore(pattern, &keys)
	}
	return v.(*[len(standardMethods)]string)[i]
}

// Host is a KeyFunc for KeyedTransport: the request URL's host as written,
// with its port if it has one ("api.example.com", "127.0.0.1:8443").
func Host(r *http.Request) string { return r.URL.Host }

// maxKeyBytes bounds a key's length: a key names a route group or an
// upstream, and a longer one is input, not a name.
const maxKeyBytes = 512

// checkKey says what is wrong with key as a breaker key, if anything. A key
// must be valid UTF-8, as metric label values and JSON must be, so that no
// key can break a scrape or a status page.
func checkKey(key string) error {
	switch {
	case key == "":
		return errors.New("the key must not be empty")
	case len(key) > maxKeyBytes:
		return fmt.Errorf("the key is %d bytes long, longer than %d", len(key), maxKeyBytes)
	case !utf8.ValidString(key):
		return errors.New("the key is not valid UTF-8")
	}
	return nil
}

// quoteKey quotes a key for a message: ASCII only, at most 64 bytes of it.
func quoteKey(key string) string {
	if len(key) > 64 {
		return strconv.QuoteToASCII(key[:64]) + "..."
	}
	return strconv.QuoteToASCII(key)
}
