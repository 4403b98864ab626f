package scheduler

import (
	"encoding/json"
	"errors"
	"net/http"
)

// SocketName is the control socket `airut run` serves Handler on, in the
// state directory: `airut schedule` talks to the running gateway through
// it.
const SocketName = "scheduler.sock"

// Handler serves the schedules as JSON:
//
//	GET  /api/schedules                    → 200 [Info…]
//	GET  /api/schedules/{repo}/{name}      → 200 Info, 404
//	POST /api/schedules/{repo}/{name}/run  → 202 Info (the run started),
//	     404 no such schedule, 409 its previous run is still going,
//	     503 the scheduler is not running
//
// Errors are {"error": "…"}.
func (s *Scheduler) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/schedules", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.List())
	})
	mux.HandleFunc("GET /api/schedules/{repo}/{name}", func(w http.ResponseWriter, r *http.Request) {
		in, ok := s.Schedule(r.PathValue("repo"), r.PathValue("name"))
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": ErrUnknownSchedule.Error()})
			return
		}
		writeJSON(w, http.StatusOK, in)
	})
	mux.HandleFunc("POST /api/schedules/{repo}/{name}/run", func(w http.ResponseWriter, r *http.Request) {
		repo, name := r.PathValue("repo"), r.PathValue("name")
		err := s.RunNow(repo, name)
		code := http.StatusAccepted
		switch {
		case errors.Is(err, ErrUnknownSchedule):
			code = http.StatusNotFound
		case errors.Is(err, ErrRunning):
			code = http.StatusConflict
		case err != nil:
			code = http.StatusServiceUnavailable
		}
		if err != nil {
			writeJSON(w, code, map[string]string{"error": err.Error()})
			return
		}
		in, _ := s.Schedule(repo, name)
		writeJSON(w, code, in)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
