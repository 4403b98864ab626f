package dashboard

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/airut/airut/internal/agent"
	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/channel/web"
	"github.com/airut/airut/internal/gateway"
)

// maxUpload bounds one form or API request with attachments.
const maxUpload = 64 << 20

func (s *Server) apiRoutes() {
	m := s.mux
	m.HandleFunc("GET /api/health", s.apiHealth)
	m.HandleFunc("GET /api/version", s.apiVersion)
	m.HandleFunc("GET /api/repos", s.apiRepos)
	m.HandleFunc("GET /api/tasks", s.apiTasks)
	m.HandleFunc("GET /api/tasks/{id}", s.apiTask)
	m.HandleFunc("GET /api/tasks/{id}/events", s.apiTaskEvents)
	m.HandleFunc("POST /api/tasks/{id}/stop", s.apiStop)
	m.HandleFunc("GET /api/conversations/{id}", s.apiConversation)
	m.HandleFunc("POST /api/conversations", s.apiNewConversation)
	m.HandleFunc("POST /api/conversations/{id}/messages", s.apiMessage)
	m.HandleFunc("GET /api/conversations/{id}/network", s.apiNetwork)
}

// writeJSON answers v, redacted, with an ETag; a matching If-None-Match
// gets 304.
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		s.serverError(w, err)
		return
	}
	data = []byte(s.opts.Registry.Redact(string(data)) + "\n")
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-cache")
	if r.Method == http.MethodGet && status == http.StatusOK {
		sum := sha256.Sum256(data)
		etag := `"` + hex.EncodeToString(sum[:12]) + `"`
		h.Set("ETag", etag)
		if match := r.Header.Get("If-None-Match"); match != "" && (match == etag || match == "*") {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

type apiError struct {
	Error string `json:"error"`
}

func (s *Server) apiFail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.writeJSON(w, r, status, apiError{msg})
}

// Health is GET /api/health.
type Health struct {
	Status           string         `json:"status"`
	Repos            map[string]int `json:"repos"`
	Tasks            map[string]int `json:"tasks"`
	ConfigGeneration uint64         `json:"config_generation"`
	LastReloadError  string         `json:"last_reload_error"`
	// WarmSandboxes is the warm pool's state; null while there is no
	// pool (execution.warm_sandboxes: 0, not started yet, failed to
	// start, or drained at shutdown): every task then starts its network
	// sandbox cold.
	WarmSandboxes *WarmSandboxes `json:"warm_sandboxes"`
}

// WarmSandboxes is the gateway's pool of warm network sandboxes, as
// sandbox.PoolStats reports it. The fields mirror PoolStats one for one:
// warmSandboxes converts between the two, so a field added there fails to
// compile here instead of going missing from the API.
type WarmSandboxes struct {
	Size     int `json:"size"`     // spares the pool keeps
	Ready    int `json:"ready"`    // spares waiting for a task
	Starting int `json:"starting"` // spares being created
	Claimed  int `json:"claimed"`  // network sandboxes of running tasks (claimed spares and cold starts), until torn down
	Replaced int `json:"replaced"` // spares whose proxy died and were replaced, since start
	Warm     int `json:"warm"`     // tasks that claimed a spare, since start
	Cold     int `json:"cold"`     // tasks that found no spare ready and started cold, since start
}

// warmSandboxes is the pool's state now, nil without a pool.
func (s *Server) warmSandboxes() *WarmSandboxes {
	st, ok := s.opts.Gateway.WarmPool()
	if !ok {
		return nil
	}
	w := WarmSandboxes(st)
	return &w
}

func (s *Server) health() Health {
	h := Health{Repos: map[string]int{"live": 0, "failed": 0}, Tasks: map[string]int{"running": 0, "queued": 0}}
	repos := s.opts.Gateway.Repos()
	for _, r := range repos {
		switch r.State {
		case gateway.RepoLive:
			h.Repos["live"]++
		case gateway.RepoFailed:
			h.Repos["failed"]++
		}
	}
	for _, t := range s.opts.Gateway.Tasks() {
		switch t.State {
		case gateway.StateRunning:
			h.Tasks["running"]++
		case gateway.StateQueued, gateway.StatePending:
			h.Tasks["queued"]++
		}
	}
	rs := s.opts.Reload()
	h.ConfigGeneration, h.LastReloadError = rs.Generation, rs.LastError
	h.WarmSandboxes = s.warmSandboxes()
	switch {
	case len(repos) == 0:
		h.Status = "setup"
	case h.Repos["failed"] > 0 || h.Repos["live"] < len(repos) || rs.LastError != "":
		h.Status = "degraded"
	default:
		h.Status = "ok"
	}
	return h
}

func (s *Server) apiHealth(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, r, 200, s.health())
}

func (s *Server) apiVersion(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, r, 200, map[string]string{"version": s.opts.Version})
}

// APIRepo is one entry of GET /api/repos.
type APIRepo struct {
	ID       string   `json:"id"`
	State    string   `json:"state"`
	Reason   string   `json:"reason,omitempty"`
	Channels []string `json:"channels"`
}

func (s *Server) apiRepos(w http.ResponseWriter, r *http.Request) {
	out := []APIRepo{}
	for _, st := range s.opts.Gateway.Repos() {
		out = append(out, APIRepo{ID: st.ID, State: st.State, Reason: st.Reason, Channels: nonNil(st.Channels)})
	}
	s.writeJSON(w, r, 200, out)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// APITask is a task in the JSON API.
type APITask struct {
	ID            string       `json:"id"`
	Repo          string       `json:"repo"`
	Conversation  string       `json:"conversation"`
	Channel       string       `json:"channel"`
	State         string       `json:"state"`
	Outcome       string       `json:"outcome,omitempty"`
	Reason        string       `json:"reason,omitempty"`
	Sender        string       `json:"sender,omitempty"`
	SenderName    string       `json:"sender_name,omitempty"`
	Subject       string       `json:"subject,omitempty"`
	Model         string       `json:"model,omitempty"`
	Queued        string       `json:"queued,omitempty"`
	Started       string       `json:"started,omitempty"`
	Finished      string       `json:"finished,omitempty"`
	Usage         agent.Usage  `json:"usage"`
	Cost          float64      `json:"cost"`
	CoalescedInto string       `json:"coalesced_into,omitempty"`
	Todos         []agent.Todo `json:"todos,omitempty"`
	Reply         string       `json:"reply,omitempty"`
}

func apiTask(t gateway.TaskInfo) APITask {
	ts := func(tm interface{ IsZero() bool }) bool { return !tm.IsZero() }
	a := APITask{ID: t.ID, Repo: t.Repo, Conversation: t.Conversation, Channel: t.Channel, State: t.State,
		Outcome: string(t.Outcome), Reason: t.Reason, Sender: t.Sender, SenderName: t.SenderName, Subject: t.Subject, Model: t.Model,
		Usage: t.Usage, Cost: t.Cost, CoalescedInto: t.CoalescedInto, Todos: t.Todos}
	if ts(t.Queued) {
		a.Queued = t.Queued.UTC().Format(timeFormat)
	}
	if ts(t.Started) {
		a.Started = t.Started.UTC().Format(timeFormat)
	}
	if ts(t.Finished) {
		a.Finished = t.Finished.UTC().Format(timeFormat)
	}
	return a
}

const timeFormat = "2006-01-02T15:04:05Z07:00"

func (s *Server) apiTasks(w http.ResponseWriter, r *http.Request) {
	if wantsSSE(r) {
		s.stateStream(w, r)
		return
	}
	tasks := s.opts.Gateway.Tasks()
	out := make([]APITask, 0, len(tasks))
	for i := len(tasks) - 1; i >= 0; i-- { // newest first
		out = append(out, apiTask(tasks[i]))
	}
	s.writeJSON(w, r, 200, out)
}

func (s *Server) apiTask(w http.ResponseWriter, r *http.Request) {
	v, ok := s.findTask(r.PathValue("id"))
	if !ok {
		s.apiFail(w, r, 404, "no such task")
		return
	}
	a := apiTask(v.Info)
	for _, t := range v.Conv.Record.Tasks {
		if t.ID == v.Info.ID {
			a.Reply = t.Reply
		}
	}
	s.writeJSON(w, r, 200, a)
}

// apiTaskEvents is the task's stream-json, NDJSON, redacted; with SSE it
// follows a running task, resuming after the byte offset in
// Last-Event-ID.
func (s *Server) apiTaskEvents(w http.ResponseWriter, r *http.Request) {
	v, ok := s.findTask(r.PathValue("id"))
	if !ok {
		s.apiFail(w, r, 404, "no such task")
		return
	}
	if wantsSSE(r) {
		s.eventStream(w, r, v, false)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	if v.Conv.Dir == "" {
		return
	}
	release, ok := s.acquireStream(w)
	if !ok {
		return
	}
	defer release()
	red := s.opts.Registry.Redact
	to := v.To
	if to == -2 {
		to = -1
	}
	rc := http.NewResponseController(w)
	_ = tail(r.Context(), v.Conv.EventsPath(), v.From, to, false, nil, nil, func(line []byte, _ int64) error {
		_, err := io.WriteString(w, red(string(line))+"\n")
		return err
	})
	_ = rc.Flush()
}

func (s *Server) apiStop(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.opts.Gateway.Cancel(id); err != nil {
		if errors.Is(err, gateway.ErrUnknownTask) {
			s.apiFail(w, r, 404, "no such queued or running task")
			return
		}
		s.apiFail(w, r, 500, err.Error())
		return
	}
	s.writeJSON(w, r, 202, map[string]string{"task": id, "status": "stopping"})
}

// APIConversation is GET /api/conversations/{id}.
type APIConversation struct {
	ID      string          `json:"id"`
	Repo    string          `json:"repo"`
	Channel string          `json:"channel"`
	Created string          `json:"created"`
	Updated string          `json:"updated"`
	Model   string          `json:"model,omitempty"`
	Tasks   []APIConvTask   `json:"tasks"`
	Outbox  []APIOutboxFile `json:"outbox"`
}

// APIConvTask is one task of a conversation, newest first.
type APIConvTask struct {
	ID            string  `json:"id"`
	State         string  `json:"state"`
	Outcome       string  `json:"outcome,omitempty"`
	Sender        string  `json:"sender,omitempty"`
	Started       string  `json:"started,omitempty"`
	Finished      string  `json:"finished,omitempty"`
	Cost          float64 `json:"cost"`
	Message       string  `json:"message,omitempty"`
	Reply         string  `json:"reply,omitempty"`
	CoalescedInto string  `json:"coalesced_into,omitempty"`
}

// APIOutboxFile is a file waiting in the outbox.
type APIOutboxFile struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

func (s *Server) apiConversation(w http.ResponseWriter, r *http.Request) {
	v, err := s.opts.Gateway.Conversation(r.PathValue("id"))
	if err != nil {
		s.apiFail(w, r, 404, "no such conversation")
		return
	}
	rec := v.Record
	a := APIConversation{ID: rec.ID, Repo: rec.Repo, Channel: rec.Channel, Created: rec.Created.UTC().Format(timeFormat),
		Updated: rec.Updated.UTC().Format(timeFormat), Model: rec.Model, Tasks: []APIConvTask{}, Outbox: []APIOutboxFile{}}
	seen := map[string]bool{}
	for _, t := range rec.Tasks {
		seen[t.ID] = true
	}
	tasks := s.opts.Gateway.Tasks()
	for i := len(tasks) - 1; i >= 0; i-- {
		if t := tasks[i]; t.Conversation == rec.ID && !seen[t.ID] {
			a.Tasks = append(a.Tasks, APIConvTask{ID: t.ID, State: t.State, Sender: t.Sender, Started: apiTask(t).Started})
		}
	}
	for i := len(rec.Tasks) - 1; i >= 0; i-- {
		t := rec.Tasks[i]
		ct := APIConvTask{ID: t.ID, State: gateway.StateDone, Outcome: t.Outcome, Sender: t.Sender, Cost: t.Cost,
			Message: t.Message, Reply: t.Reply, CoalescedInto: t.CoalescedInto, Started: t.Started.UTC().Format(timeFormat)}
		if !t.Finished.IsZero() {
			ct.Finished = t.Finished.UTC().Format(timeFormat)
		}
		a.Tasks = append(a.Tasks, ct)
	}
	files, _ := v.Outbox()
	for _, f := range files {
		a.Outbox = append(a.Outbox, APIOutboxFile{Name: f.Name, Size: f.Size})
	}
	s.writeJSON(w, r, 200, a)
}

// submitRequest is the body of POST /api/conversations and
// /api/conversations/{id}/messages (JSON), or the forms' fields.
type submitRequest struct {
	Repo   string `json:"repo"`
	Prompt string `json:"prompt"`
}

// submit hands a message from the dashboard to the gateway.
func (s *Server) submit(r *http.Request, repo, conv, prompt string, atts []channel.Attachment) (gateway.Submitted, int, error) {
	if strings.TrimSpace(prompt) == "" {
		return gateway.Submitted{}, 400, errors.New("prompt is empty")
	}
	if !s.opts.Config().Dashboard.WebChannel() {
		return gateway.Submitted{}, 403, errors.New("tasks from the dashboard are turned off (dashboard.tasks: false)")
	}
	sub, err := s.opts.Gateway.Submit(r.Context(), gateway.Submission{
		Repo: repo, Conversation: conv, Channel: web.Name,
		Message: channel.Message{SenderAddress: "dashboard", SenderName: "Dashboard", Body: prompt, Attachments: atts},
	})
	switch {
	case err == nil:
		return sub, 0, nil
	case errors.Is(err, gateway.ErrUnknownRepo), errors.Is(err, gateway.ErrUnknownConversation):
		return sub, 404, err
	case errors.Is(err, gateway.ErrRepoNotLive), errors.Is(err, gateway.ErrUnknownChannel):
		return sub, 409, err
	case errors.Is(err, gateway.ErrDuplicate):
		return sub, 409, err
	}
	return sub, 503, err
}

func readSubmit(r *http.Request) (submitRequest, []channel.Attachment, error) {
	var req submitRequest
	ct := r.Header.Get("Content-Type")
	if strings.HasPrefix(ct, "multipart/form-data") || strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		if err := r.ParseMultipartForm(maxUpload); err != nil && !errors.Is(err, http.ErrNotMultipart) {
			return req, nil, err
		}
		req.Repo, req.Prompt = r.FormValue("repo"), r.FormValue("prompt")
		var atts []channel.Attachment
		if r.MultipartForm != nil {
			for _, fh := range r.MultipartForm.File["files"] {
				f, err := fh.Open()
				if err != nil {
					return req, nil, err
				}
				data, err := io.ReadAll(io.LimitReader(f, maxUpload))
				f.Close()
				if err != nil {
					return req, nil, err
				}
				atts = append(atts, channel.Attachment{Name: fh.Filename, Data: data})
			}
		}
		return req, atts, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return req, nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, nil, errors.New("body: " + err.Error())
	}
	return req, nil, nil
}

func (s *Server) apiNewConversation(w http.ResponseWriter, r *http.Request) {
	req, atts, err := readSubmit(r)
	if err != nil {
		s.apiFail(w, r, 400, err.Error())
		return
	}
	if req.Repo == "" {
		s.apiFail(w, r, 400, "repo is required")
		return
	}
	sub, code, err := s.submit(r, req.Repo, "", req.Prompt, atts)
	if err != nil {
		s.apiFail(w, r, code, err.Error())
		return
	}
	w.Header().Set("Location", "/api/conversations/"+sub.Conversation)
	s.writeJSON(w, r, 201, map[string]string{"conversation": sub.Conversation, "task": sub.Task})
}

func (s *Server) apiMessage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	v, err := s.opts.Gateway.Conversation(id)
	if err != nil {
		s.apiFail(w, r, 404, "no such conversation")
		return
	}
	req, atts, err := readSubmit(r)
	if err != nil {
		s.apiFail(w, r, 400, err.Error())
		return
	}
	sub, code, err := s.submit(r, v.Record.Repo, id, req.Prompt, atts)
	if err != nil {
		s.apiFail(w, r, code, err.Error())
		return
	}
	s.writeJSON(w, r, 202, map[string]string{"task": sub.Task})
}

func (s *Server) newTaskForm(w http.ResponseWriter, r *http.Request) {
	req, atts, err := readSubmit(r)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	sub, code, err := s.submit(r, r.PathValue("id"), "", req.Prompt, atts)
	if err != nil {
		http.Error(w, err.Error(), code)
		return
	}
	http.Redirect(w, r, "/conversations/"+sub.Conversation, http.StatusSeeOther)
}

func (s *Server) replyForm(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	v, err := s.opts.Gateway.Conversation(id)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	req, atts, err := readSubmit(r)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	if _, code, err := s.submit(r, v.Record.Repo, id, req.Prompt, atts); err != nil {
		http.Error(w, err.Error(), code)
		return
	}
	http.Redirect(w, r, "/conversations/"+id, http.StatusSeeOther)
}

// apiNetwork is the conversation's network log, NDJSON of {"line": …}
// objects (SSE with Accept: text/event-stream).
func (s *Server) apiNetwork(w http.ResponseWriter, r *http.Request) {
	v, err := s.opts.Gateway.Conversation(r.PathValue("id"))
	if err != nil {
		s.apiFail(w, r, 404, "no such conversation")
		return
	}
	if wantsSSE(r) {
		s.networkStream(w, r, v, false)
		return
	}
	release, ok := s.acquireStream(w)
	if !ok {
		return
	}
	defer release()
	w.Header().Set("Content-Type", "application/x-ndjson")
	red := s.opts.Registry.Redact
	enc := json.NewEncoder(w)
	_ = tail(r.Context(), v.NetworkLogPath(), 0, -1, false, nil, nil, func(line []byte, end int64) error {
		l := red(string(line))
		return enc.Encode(netLine{Line: l, Verdict: verdict(l), Offset: end})
	})
}

type netLine struct {
	Line    string `json:"line"`
	Verdict string `json:"verdict,omitempty"`
	Offset  int64  `json:"offset"`
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func outcome(s string) agent.Outcome { return agent.Outcome(s) }
