// Package publish checks that the repository's modules can be used the way
// a user gets them: each go.mod requires real versions of the others (the
// replace directives and go.work only serve development here), and a module
// outside the repository builds against them with nothing but a module
// proxy.
//
// TestAConsumerBuildsFromAModuleProxy serves the library module,
// redisstate, ginbreaker and echobreaker, as HEAD has them, from a file://
// GOPROXY at the versions the go.mod files name, and builds a consumer
// module in a temporary directory that imports all of them, as `go get`
// would.
package publish

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const (
	rootModule  = "github.com/httpbreaker/httpbreaker"
	redisModule = "github.com/httpbreaker/httpbreaker/redisstate"
	ginModule   = "github.com/httpbreaker/httpbreaker/ginbreaker"
	echoModule  = "github.com/httpbreaker/httpbreaker/echobreaker"
)

func TestAConsumerBuildsFromAModuleProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module from a proxy: not in -short")
	}
	repo := gitOutput(t, ".", "rev-parse", "--show-toplevel")
	// The versions the repository's own go.mod files name: what a user of
	// redisstate gets of the library, and what a user of the examples gets
	// of redisstate.
	rootVersion := required(t, filepath.Join(repo, "redisstate", "go.mod"), rootModule)
	for _, dir := range []string{"examples", "ginbreaker", "echobreaker"} {
		if v := required(t, filepath.Join(repo, dir, "go.mod"), rootModule); v != rootVersion {
			t.Fatalf("redisstate requires %s %s, %s requires %s", rootModule, rootVersion, dir, v)
		}
	}
	examples := filepath.Join(repo, "examples", "go.mod")
	modules := []struct{ path, dir, version string }{
		{rootModule, "", rootVersion},
		{redisModule, "redisstate", required(t, examples, redisModule)},
		{ginModule, "ginbreaker", required(t, examples, ginModule)},
		{echoModule, "echobreaker", required(t, examples, echoModule)},
	}

	proxy := t.TempDir()
	var get, want []string
	for _, m := range modules {
		serve(t, repo, proxy, m.path, m.dir, m.version)
		get = append(get, m.path+"@"+m.version)
		want = append(want, m.path+" "+m.version)
	}

	consumer := t.TempDir()
	writeFile(t, filepath.Join(consumer, "go.mod"), "module example.com/consumer\n\ngo 1.26.0\n")
	writeFile(t, filepath.Join(consumer, "main.go"), consumerMain)

	// The consumer's own module cache, so that the versions served here
	// never enter the machine's; the machine's cache serves as a proxy for
	// the other modules, and the usual proxy for what it does not hold.
	goproxy := "file://" + proxy + ",file://" + filepath.Join(goEnv(t, "GOMODCACHE"), "cache", "download") + "," + goEnv(t, "GOPROXY")
	modcache := filepath.Join(t.TempDir(), "modcache")
	env := append(os.Environ(),
		"GOPROXY="+goproxy,
		"GOMODCACHE="+modcache,
		"GONOSUMDB=github.com/httpbreaker",
		"GOWORK=off",
		// -trimpath keeps the module cache's directory, new for each run,
		// out of the build cache's keys: a second run reuses the first's
		// compiled dependencies (gin, echo, go-redis) instead of taking
		// minutes to build them again.
		"GOFLAGS=-mod=mod -trimpath",
	)
	// The consumer's module cache is read-only: clean it, and it alone,
	// before TempDir removes it.
	t.Cleanup(func() {
		clean := exec.Command("go", "clean", "-modcache")
		clean.Env = env
		_ = clean.Run()
	})
	run(t, consumer, env, "go", append([]string{"get"}, get...)...)
	run(t, consumer, env, "go", "mod", "tidy")
	run(t, consumer, env, "go", "build", "-o", filepath.Join(t.TempDir(), "consumer"), ".")
	list := run(t, consumer, env, "go", "list", "-m", "all")
	for _, want := range want {
		if !strings.Contains(list, want+"\n") {
			t.Errorf("the consumer's build list has no %q:\n%s", want, list)
		}
	}
	// A module made from the proxy's zip holds no go.work and no replace
	// that could make the build pass on the repository's own files.
	if strings.Contains(list, "=>") {
		t.Errorf("the consumer's build list has a replacement:\n%s", list)
	}
}

// TestAConsumerBuildsAgainstACheckoutAsTheREADMESays runs the commands
// README.md gives for depending on a checkout before a version is tagged,
// as written, in a consumer module beside a checkout (a link to this
// repository's working tree, named httpbreaker): the replace, then the
// workspace.
func TestAConsumerBuildsAgainstACheckoutAsTheREADMESays(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module against a checkout: not in -short")
	}
	repo := gitOutput(t, ".", "rev-parse", "--show-toplevel")
	readme, err := os.ReadFile(filepath.Join(repo, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	// The README's commands, in backquotes on the lines after go get.
	commands := regexp.MustCompile("`((?:go mod edit|go work init|github.com/httpbreaker/httpbreaker/ginbreaker=)[^`]*)`").
		FindAllStringSubmatch(string(readme), -1)
	if len(commands) != 3 {
		t.Fatalf("README.md has %d of the 3 commands for a checkout (the replace, the adapter's replace, the workspace): %q", len(commands), commands)
	}
	replace, adapter, workspace := commands[0][1], commands[1][1], commands[2][1]

	for _, tc := range []struct {
		name  string
		steps []string
		env   string
	}{
		{"replace", []string{"go mod edit -replace " + adapter, replace}, "GOWORK=off"},
		{"workspace", []string{workspace}, "GOWORK="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Symlink(repo, filepath.Join(dir, "httpbreaker")); err != nil {
				t.Fatal(err)
			}
			consumer := filepath.Join(dir, "consumer")
			if err := os.Mkdir(consumer, 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(consumer, "go.mod"), "module example.com/consumer\n\ngo 1.26.0\n")
			writeFile(t, filepath.Join(consumer, "main.go"), checkoutConsumerMain)
			env := append(os.Environ(), tc.env, "GOFLAGS=-trimpath")
			for _, step := range tc.steps {
				run(t, consumer, env, "sh", "-c", step)
			}
			run(t, consumer, env, "go", "build", "-o", filepath.Join(t.TempDir(), "consumer"), ".")
		})
	}
}

// checkoutConsumerMain is a user's program on gin, as the README shows it.
const checkoutConsumerMain = `package main

import (
	"log"

	"github.com/gin-gonic/gin"
	"github.com/httpbreaker/httpbreaker"
	"github.com/httpbreaker/httpbreaker/ginbreaker"
)

func main() {
	breakers, err := httpbreaker.New(httpbreaker.WithRejectHandler(ginbreaker.RejectHandler()))
	if err != nil {
		log.Fatal(err)
	}
	defer breakers.Close()
	r := gin.Default()
	r.Group("/api/catalog", ginbreaker.Wrap(breakers.Middleware("catalog"))).GET("/entities", func(c *gin.Context) {})
}
`

// consumerMain is a user's program: it wires a set of breakers to a fleet
// on Redis, as the README shows, and puts route groups of a gin engine and
// an echo server behind them through the adapters.
const consumerMain = `package main

import (
	"log"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/httpbreaker/httpbreaker"
	"github.com/httpbreaker/httpbreaker/echobreaker"
	"github.com/httpbreaker/httpbreaker/ginbreaker"
	"github.com/httpbreaker/httpbreaker/redisstate"
	"github.com/httpbreaker/httpbreaker/sharedstate"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"
)

func main() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ContextTimeoutEnabled: true})
	store, err := redisstate.New(rdb)
	if err != nil {
		log.Fatal(err)
	}
	var _ sharedstate.Store = store
	breakers, err := httpbreaker.New(httpbreaker.WithSharedState(store))
	if err != nil {
		log.Fatal(err)
	}
	defer breakers.Close()
	mux := http.NewServeMux()
	mux.Handle("/api/catalog/", breakers.Middleware("catalog")(http.NotFoundHandler()))

	r := gin.New()
	r.Group("/gin/items", ginbreaker.Wrap(breakers.KeyedMiddleware(ginbreaker.RouteKey))).GET("/:id", func(c *gin.Context) {})
	mux.Handle("/gin/", r)
	e := echo.New()
	e.Group("/echo/items", echobreaker.Wrap(breakers.KeyedMiddleware(echobreaker.RouteKey))).GET("/:id", func(c echo.Context) error { return nil })
	mux.Handle("/echo/", e)
	_ = ginbreaker.RejectHandler()
	_ = echobreaker.RejectHandler()
}
`

// serve puts module at version into the file:// proxy, from the files HEAD
// has under dir (the repository's root for ""), as the go command's module
// zip holds them: every file of the module's tree but those of nested
// modules, under module@version/.
func serve(t *testing.T, repo, proxy, module, dir, version string) {
	t.Helper()
	at := filepath.Join(proxy, filepath.FromSlash(module), "@v")
	if err := os.MkdirAll(at, 0o755); err != nil {
		t.Fatal(err)
	}
	files := strings.Split(gitOutput(t, repo, "ls-tree", "-r", "--name-only", "HEAD"), "\n")
	prefix := ""
	if dir != "" {
		prefix = dir + "/"
	}
	var nested []string // directories of other modules inside this one
	for _, f := range files {
		if strings.HasSuffix(f, "/go.mod") && strings.HasPrefix(f, prefix) && f != prefix+"go.mod" {
			nested = append(nested, strings.TrimSuffix(f, "go.mod"))
		}
	}
	var buf bytes.Buffer
	z := zip.NewWriter(&buf)
	var mod []byte
	for _, f := range files {
		if !strings.HasPrefix(f, prefix) || inAny(f, nested) {
			continue
		}
		body := gitBytes(t, repo, "show", "HEAD:"+f)
		if f == prefix+"go.mod" {
			mod = body
		}
		w, err := z.Create(module + "@" + version + "/" + strings.TrimPrefix(f, prefix))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	if mod == nil {
		t.Fatalf("HEAD has no %sgo.mod", prefix)
	}
	info, _ := json.Marshal(map[string]string{"Version": version, "Time": time.Now().UTC().Format(time.RFC3339)})
	writeFile(t, filepath.Join(at, "list"), version+"\n")
	writeFile(t, filepath.Join(at, version+".info"), string(info))
	writeFile(t, filepath.Join(at, version+".mod"), string(mod))
	writeFile(t, filepath.Join(at, version+".zip"), buf.String())
}

func inAny(f string, dirs []string) bool {
	for _, d := range dirs {
		if strings.HasPrefix(f, d) {
			return true
		}
	}
	return false
}

// required returns the version of module that the go.mod at path requires.
func required(t *testing.T, path, module string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(s.Text()), "require "))
		if len(fields) >= 2 && fields[0] == module {
			if !strings.HasPrefix(fields[1], "v") || strings.HasPrefix(fields[1], "v0.0.0-") {
				t.Fatalf("%s requires %s %s: not a version a user can get", path, module, fields[1])
			}
			return fields[1]
		}
	}
	t.Fatalf("%s does not require %s", path, module)
	return ""
}

func gitOutput(t *testing.T, dir string, args ...string) string {
	t.Helper()
	return strings.TrimSuffix(string(gitBytes(t, dir, args...)), "\n")
}

func gitBytes(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("needs git (apt-get install git)")
	}
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func goEnv(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		t.Fatalf("go env %s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
