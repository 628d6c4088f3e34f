package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-chi/chi/v5"
	"github.com/httpbreaker/httpbreaker"
)

// The three plugins are what a plugin host runs without having written them:
// each is a router of its own, and none of them knows about the host's
// breakers or faults. They answer JSON, as backend plugins do. The catalog
// calls an upstream, the Git host, with the http.Client the host gives it
// and the request's context, and knows one thing of httpbreaker: that
// ErrOpen means "answer from the cache, at once".

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type entity struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

var entities = []entity{
	{"Component", "checkout"}, {"Component", "payments"}, {"API", "orders"}, {"System", "shop"},
}

// catalogPlugin lists the software catalog's entities, which it reads from
// the Git host (as a Backstage catalog reads catalog-info files), through
// git, a client whose transport is the "git" key's breaker. When a call to
// the Git host fails, the plugin passes the failure on (502), as plugins
// do; once the breaker rejects the calls, the Git host being down, it
// answers from the last list it read, at once, without touching the
// network. The X-Catalog-Git header says which ("ok", "failed" after waiting
// on the Git host, "rejected" at once by the breaker).
//
// Its calls carry the request's context, so the 502s it answers while the
// Git host fails are blamed on the "git" key: the catalog's own breaker
// stays closed, and its cache answers as soon as the git breaker opens.
func catalogPlugin(git *http.Client, gitURL string) http.Handler {
	var last atomic.Pointer[[]entity]
	last.Store(&entities)
	list := func(r *http.Request) ([]entity, string) {
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, gitURL+"/catalog-info", nil)
		resp, err := git.Do(req)
		if errors.Is(err, httpbreaker.ErrOpen) {
			return *last.Load(), "rejected"
		}
		if err != nil {
			return *last.Load(), "failed"
		}
		defer resp.Body.Close()
		var fresh []entity
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&fresh) != nil {
			return *last.Load(), "failed"
		}
		last.Store(&fresh)
		return fresh, "ok"
	}
	// read answers the Git host's failure, and reports whether it did.
	read := func(w http.ResponseWriter, r *http.Request) ([]entity, bool) {
		list, git := list(r)
		w.Header().Set("X-Catalog-Git", git)
		if git == "failed" {
			writeJSON(w, http.StatusBadGateway, map[string]string{"error": "the Git host failed"})
			return nil, false
		}
		return list, true
	}
	r := chi.NewRouter()
	r.Get("/entities", func(w http.ResponseWriter, r *http.Request) {
		if list, ok := read(w, r); ok {
			writeJSON(w, http.StatusOK, list)
		}
	})
	r.Get("/entities/{name}", func(w http.ResponseWriter, r *http.Request) {
		list, ok := read(w, r)
		if !ok {
			return
		}
		for _, e := range list {
			if e.Name == chi.URLParam(r, "name") {
				writeJSON(w, http.StatusOK, e)
				return
			}
		}
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such entity"})
	})
	return r
}

// gitHost is the upstream the catalog reads: a Git host serving the
// catalog-info of the organisation's repositories.
func gitHost() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /catalog-info", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, entities)
	})
	return mux
}

// scaffolderPlugin creates projects from templates.
func scaffolderPlugin() http.Handler {
	var next atomic.Int64
	var mu sync.Mutex
	tasks := map[int64]string{}
	r := chi.NewRouter()
	r.Post("/tasks", func(w http.ResponseWriter, r *http.Request) {
		id := next.Add(1)
		mu.Lock()
		tasks[id] = "completed"
		if len(tasks) > 1000 {
			delete(tasks, id-1000)
		}
		mu.Unlock()
		writeJSON(w, http.StatusCreated, map[string]any{"id": id, "status": "completed"})
	})
	return r
}

// searchPlugin searches the catalog.
func searchPlugin() http.Handler {
	r := chi.NewRouter()
	r.Get("/query", func(w http.ResponseWriter, r *http.Request) {
		term := strings.ToLower(r.URL.Query().Get("term"))
		var hits []entity
		for _, e := range entities {
			if strings.Contains(e.Name, term) {
				hits = append(hits, e)
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"results": hits})
	})
	return r
}
