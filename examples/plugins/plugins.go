package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-chi/chi/v5"
)

// The three plugins are what a plugin host runs without having written them:
// each is a router of its own, and none of them knows about breakers, faults
// or the host. They answer JSON, as backend plugins do.

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

// catalogPlugin lists the software catalog's entities.
func catalogPlugin() http.Handler {
	r := chi.NewRouter()
	r.Get("/entities", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, entities)
	})
	r.Get("/entities/{name}", func(w http.ResponseWriter, r *http.Request) {
		for _, e := range entities {
			if e.Name == chi.URLParam(r, "name") {
				writeJSON(w, http.StatusOK, e)
				return
			}
		}
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such entity"})
	})
	return r
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
