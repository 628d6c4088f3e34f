package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// fault is what the fault control makes a plugin do: wait Delay before each
// request, then answer Status to a share ErrorRate of them.
type fault struct {
	Status    int           `json:"status"`
	ErrorRate float64       `json:"error_rate"`
	Delay     time.Duration `json:"-"`
}

// maxDelay bounds injected delays, so that a typo cannot hold connections
// for hours.
const maxDelay = time.Minute

// faultRequest is the body of POST /faults/{plugin}. Every field is
// optional: {"status": 503} fails every request with 503,
// {"delay": "800ms"} slows every request down, {"error_rate": 0.3} fails
// three in ten with 500.
type faultRequest struct {
	Status    *int     `json:"status"`
	ErrorRate *float64 `json:"error_rate"`
	Delay     *string  `json:"delay"`
}

func (fr faultRequest) fault() (fault, error) {
	f := fault{Status: http.StatusInternalServerError, ErrorRate: 1}
	var errs []error
	if fr.Status != nil {
		if *fr.Status < 200 || *fr.Status > 599 {
			errs = append(errs, fmt.Errorf("status: must be an HTTP status from 200 to 599, got %d", *fr.Status))
		}
		f.Status = *fr.Status
	}
	if fr.ErrorRate != nil {
		if !(*fr.ErrorRate >= 0 && *fr.ErrorRate <= 1) {
			errs = append(errs, fmt.Errorf("error_rate: must be between 0 and 1, got %v", *fr.ErrorRate))
		}
		f.ErrorRate = *fr.ErrorRate
	}
	if fr.Delay != nil {
		d, err := time.ParseDuration(*fr.Delay)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("delay: want a duration such as \"800ms\", got %q", *fr.Delay))
		case d < 0 || d > maxDelay:
			errs = append(errs, fmt.Errorf("delay: must be between 0s and %v, got %v", maxDelay, d))
		}
		f.Delay = d
		if fr.ErrorRate == nil && fr.Status == nil {
			f.ErrorRate = 0 // a delay alone only slows the plugin down
		}
	}
	return f, errors.Join(errs...)
}

// faults holds the fault of each plugin, and injects it in front of the
// plugin's own handler.
type faults struct {
	plugins []string
	mu      sync.RWMutex
	active  map[string]fault
}

func newFaults(plugins []string) *faults {
	return &faults{plugins: plugins, active: map[string]fault{}}
}

func (fs *faults) get(plugin string) (fault, bool) {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	f, ok := fs.active[plugin]
	return f, ok
}

func (fs *faults) set(plugin string, f fault) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.active[plugin] = f
}

func (fs *faults) clear(plugin string) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	delete(fs.active, plugin)
}

// inject wraps a plugin's handler with its fault, if one is set.
func (fs *faults) inject(plugin string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := fs.get(plugin)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		if f.Delay > 0 {
			select {
			case <-time.After(f.Delay):
			case <-r.Context().Done():
				return
			}
		}
		if f.ErrorRate > 0 && rand.Float64() < f.ErrorRate {
			writeJSON(w, f.Status, map[string]string{"error": "injected fault"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ServeHTTP is the fault control: GET /faults lists the faults, POST
// /faults/{plugin} sets one, DELETE /faults/{plugin} clears it.
func (fs *faults) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	plugin := r.PathValue("plugin")
	if r.Method == http.MethodGet && plugin == "" {
		fs.mu.RLock()
		out := map[string]any{}
		for p, f := range fs.active {
			out[p] = map[string]any{"status": f.Status, "error_rate": f.ErrorRate, "delay": f.Delay.String()}
		}
		fs.mu.RUnlock()
		writeJSON(w, http.StatusOK, out)
		return
	}
	if !slices.Contains(fs.plugins, plugin) {
		http.Error(w, fmt.Sprintf("no plugin %q (plugins: %s)", plugin, strings.Join(fs.plugins, ", ")), http.StatusNotFound)
		return
	}
	switch r.Method {
	case http.MethodDelete:
		fs.clear(plugin)
		w.WriteHeader(http.StatusNoContent)
	case http.MethodPost:
		var fr faultRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&fr); err != nil && !errors.Is(err, io.EOF) {
			http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
			return
		}
		f, err := fr.fault()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fs.set(plugin, f)
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "POST, DELETE")
		http.Error(w, "use POST to set a fault and DELETE to clear it", http.StatusMethodNotAllowed)
	}
}
