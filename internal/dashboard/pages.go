package dashboard

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/airut/airut/internal/channel/web"
	"github.com/airut/airut/internal/gateway"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

var pageTemplates = template.Must(template.New("").Funcs(template.FuncMap{
	"join": strings.Join,
	"dict": func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	},
}).ParseFS(templateFS, "templates/*.html"))

func (s *Server) routes() {
	m := s.mux
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", cacheStatic(http.FileServerFS(static))))
	m.HandleFunc("GET /{$}", s.overview)
	m.HandleFunc("GET /tasks/{id}", s.taskPage)
	m.HandleFunc("POST /tasks/{id}/stop", s.stopForm)
	m.HandleFunc("GET /conversations/{id}", s.conversationPage)
	m.HandleFunc("POST /conversations/{id}/messages", s.replyForm)
	m.HandleFunc("GET /conversations/{id}/outbox/{name}", s.outboxFile)
	m.HandleFunc("GET /conversations/{id}/files/{task}/{name}", s.replyFile)
	m.HandleFunc("GET /conversations/{id}/network", s.networkPage)
	m.HandleFunc("GET /repos/{id}", s.repoPage)
	m.HandleFunc("POST /repos/{id}/tasks", s.newTaskForm)
	s.apiRoutes()
}

func cacheStatic(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		h.ServeHTTP(w, r)
	})
}

// layoutData is what the shared layout needs.
type layoutData struct {
	Title string
	Nav   []NavLink
	Body  template.HTML
}

func (s *Server) nav() []NavLink {
	return append([]NavLink{{"Overview", "/"}}, s.opts.Nav...)
}

// Page renders body in the dashboard's layout (header, navigation,
// stylesheet, htmx), redacted. Packages that Mount pages use it so that
// every page looks and behaves the same.
func (s *Server) Page(w http.ResponseWriter, r *http.Request, title string, body template.HTML) {
	var b bytes.Buffer
	if err := pageTemplates.ExecuteTemplate(&b, "page", layoutData{Title: title, Nav: s.nav(), Body: body}); err != nil {
		s.serverError(w, err)
		return
	}
	s.writeHTML(w, b.Bytes())
}

// renderPage runs one content template into the layout.
func (s *Server) renderPage(w http.ResponseWriter, r *http.Request, title, name string, data any) {
	var b bytes.Buffer
	if err := pageTemplates.ExecuteTemplate(&b, name, data); err != nil {
		s.serverError(w, err)
		return
	}
	s.Page(w, r, title, template.HTML(b.String()))
}

func (s *Server) writeHTML(w http.ResponseWriter, page []byte) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(s.opts.Registry.Redact(string(page))))
}

func (s *Server) serverError(w http.ResponseWriter, err error) {
	s.log.Error("dashboard: page failed", "error", err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}

// taskRow is a task as the overview lists it.
type taskRow struct {
	gateway.TaskInfo
	Duration string
}

type overviewData struct {
	Repos                    []gateway.RepoStatus
	Running, Waiting, Recent []taskRow
	Checks                   []Finding
	Generation               uint64
	ReloadError              string
	Seq                      uint64
	// Warm is the warm pool's state, nil without a pool; WarmOff says
	// the config turned it off (execution.warm_sandboxes: 0).
	Warm    *WarmSandboxes
	WarmOff bool
}

// maxRecent is how many finished tasks the overview lists.
const maxRecent = 30

func (s *Server) overviewData(withChecks bool, r *http.Request) overviewData {
	g := s.opts.Gateway
	d := overviewData{Seq: g.Events().Seq(), Repos: g.Repos()}
	tasks := g.Tasks()
	now := time.Now()
	for i := len(tasks) - 1; i >= 0; i-- { // newest first
		t := tasks[i]
		row := taskRow{TaskInfo: t, Duration: taskDuration(t, now)}
		switch t.State {
		case gateway.StateRunning:
			d.Running = append(d.Running, row)
		case gateway.StateQueued, gateway.StatePending:
			d.Waiting = append(d.Waiting, row)
		default:
			if len(d.Recent) < maxRecent {
				d.Recent = append(d.Recent, row)
			}
		}
	}
	if withChecks && s.opts.Checks != nil {
		for _, f := range s.opts.Checks(r.Context()) {
			if !f.OK {
				d.Checks = s.opts.Checks(r.Context())
				break
			}
		}
	}
	rs := s.opts.Reload()
	d.Generation, d.ReloadError = rs.Generation, rs.LastError
	d.Warm = s.warmSandboxes()
	d.WarmOff = d.Warm == nil && s.opts.Config().Execution.WarmSandboxCount() == 0
	return d
}

func taskDuration(t gateway.TaskInfo, now time.Time) string {
	switch {
	case t.Started.IsZero() && !t.Finished.IsZero():
		return ""
	case t.Started.IsZero():
		return "waiting " + fmtDuration(now.Sub(t.Queued).Seconds())
	case t.Finished.IsZero():
		return fmtDuration(now.Sub(t.Started).Seconds())
	}
	return fmtDuration(t.Finished.Sub(t.Started).Seconds())
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	if wantsSSE(r) {
		s.overviewStream(w, r)
		return
	}
	CSRFToken(w, r)
	s.renderPage(w, r, "Overview", "overview", s.overviewData(true, r))
}

// taskView is everything the task page shows of one task.
type taskView struct {
	Info gateway.TaskInfo
	// Conv is the task's conversation on disk ("" Dir when not created).
	Conv gateway.ConversationView
	// From/To is the task's byte range in events.jsonl; To < 0 while it
	// runs.
	From, To int64
	Live     bool
	Reply    template.HTML
	Timing   string
	CSRF     string
}

// findTask looks a task up in the tracker, else on disk.
func (s *Server) findTask(id string) (taskView, bool) {
	g := s.opts.Gateway
	if ti, ok := g.Task(id); ok {
		v := taskView{Info: ti, From: ti.EventsFrom, To: -1}
		if ti.Conversation != "" {
			v.Conv, _ = g.Conversation(ti.Conversation)
		}
		v.Live = !final(ti.State)
		recorded := false
		for _, t := range v.Conv.Record.Tasks {
			if t.ID == id {
				v.From, v.To, recorded = t.EventsFrom, t.EventsTo, true
				v.Reply = template.HTML(mdHTML(t.Reply))
			} else if !recorded {
				// Tasks of a conversation run one at a time: this one's
				// events start after the last recorded task's, even before
				// the tracker says where.
				v.From = max(v.From, t.EventsTo)
			}
		}
		switch {
		case v.Live:
			v.To = -1
		case !recorded:
			v.To = v.From // finished without running, or without a record
		}
		return v, true
	}
	conv, t, ok := g.FindTask(id)
	if !ok {
		return taskView{}, false
	}
	info := gateway.TaskInfo{ID: t.ID, Repo: conv.Record.Repo, Conversation: conv.Record.ID, Channel: conv.Record.Channel,
		State: gateway.StateDone, Sender: t.Sender, Model: t.Model, Started: t.Started, Finished: t.Finished,
		Cost: t.Cost, CoalescedInto: t.CoalescedInto}
	info.Outcome = outcome(t.Outcome)
	info.Usage.InputTokens, info.Usage.OutputTokens = t.Usage.InputTokens, t.Usage.OutputTokens
	info.Usage.CacheReadInputTokens = t.Usage.CacheReadInputTokens
	info.Usage.CacheCreationInputTokens = t.Usage.CacheCreationInputTokens
	v := taskView{Info: info, Conv: conv, From: t.EventsFrom, To: t.EventsTo, Reply: template.HTML(mdHTML(t.Reply))}
	if t.EventsTo == 0 && t.EventsFrom == 0 && t.CoalescedInto == "" {
		v.To = -2 // recorded before tasks kept their range: the whole file
	}
	return v, true
}

func final(state string) bool {
	return state == gateway.StateDone || state == gateway.StateCoalesced || state == gateway.StateAbandoned
}

func (v *taskView) timing() string {
	i := v.Info
	parts := []string{"queued " + i.Queued.UTC().Format("2006-01-02 15:04:05 UTC")}
	if i.Queued.IsZero() {
		parts = nil
	}
	if !i.Started.IsZero() {
		parts = append(parts, "started "+i.Started.UTC().Format("15:04:05"))
	}
	if !i.Finished.IsZero() {
		parts = append(parts, "finished "+i.Finished.UTC().Format("15:04:05"), "took "+fmtDuration(i.Finished.Sub(i.Started).Seconds()))
	}
	return strings.Join(parts, " · ")
}

// taskPage streams: the header, then the transcript event by event as it
// is read from events.jsonl (flushed as it goes), then the live part.
func (s *Server) taskPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	v, ok := s.findTask(id)
	if !ok {
		http.NotFound(w, r)
		return
	}
	if wantsSSE(r) {
		s.transcriptStream(w, r, v)
		return
	}
	v.CSRF = CSRFToken(w, r)
	v.Timing = v.timing()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	red := s.opts.Registry.Redact
	rc := http.NewResponseController(w)
	var b bytes.Buffer
	title := v.Info.Subject
	if title == "" {
		title = "Task " + v.Info.ID
	}
	if err := pageTemplates.ExecuteTemplate(&b, "head", layoutData{Title: title, Nav: s.nav()}); err != nil {
		s.serverError(w, err)
		return
	}
	// The header is swapped in place on every state change while the
	// task runs.
	b.WriteString(`<div hx-ext="sse" sse-connect="/tasks/` + template.HTMLEscapeString(v.Info.ID) + `?after=`)
	to := s.transcriptEnd(v)
	fmt.Fprintf(&b, `%d" sse-close="end" id="task-live">`, to)
	if err := pageTemplates.ExecuteTemplate(&b, "task-head", v); err != nil {
		s.serverError(w, err)
		return
	}
	fmt.Fprintf(&b, `<div sse-swap="head" hx-target="#task-head" hx-swap="outerHTML"></div><h2>Transcript</h2><div class="transcript" id="transcript" sse-swap="event" hx-swap="beforeend">`)
	_, _ = w.Write([]byte(red(b.String())))
	_ = rc.Flush()
	if v.Conv.Dir != "" {
		var sb strings.Builder
		n := 0
		end := to
		_ = tail(r.Context(), v.Conv.EventsPath(), v.From, end, false, nil, nil, func(line []byte, _ int64) error {
			sb.Reset()
			renderEvent(&sb, []byte(red(string(line))))
			if _, err := w.Write([]byte(red(sb.String()))); err != nil {
				return err
			}
			if n++; n%200 == 0 {
				_ = rc.Flush()
			}
			return nil
		})
	}
	b.Reset()
	b.WriteString(`</div></div>`)
	_ = pageTemplates.ExecuteTemplate(&b, "foot", nil)
	_, _ = w.Write(b.Bytes())
}

// transcriptEnd is where the transcript the page renders ends: the
// recorded end of a finished task, the current end of the file for a
// running one (the stream goes on from there).
func (s *Server) transcriptEnd(v taskView) int64 {
	if v.To >= 0 {
		return v.To
	}
	if v.Conv.Dir == "" {
		return v.From
	}
	return fileSize(v.Conv.EventsPath())
}

func (s *Server) stopForm(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.opts.Gateway.Cancel(id); err != nil && !errors.Is(err, gateway.ErrUnknownTask) {
		s.serverError(w, err)
		return
	}
	http.Redirect(w, r, "/tasks/"+id, http.StatusSeeOther)
}

// convItem is one message and its task on the conversation page.
type convItem struct {
	ID, Sender, Started, State, Message string
	Cost                                float64
	Reply                               template.HTML
	Files                               []fileLink
}

type fileLink struct{ Name, URL string }

type convData struct {
	Conv     convRecord
	Items    []convItem
	Outbox   []gateway.OutboxFile
	Total    float64
	CanReply bool
	NoReply  string
	CSRF     string
}

type convRecord struct {
	ID, Repo, Channel string
	Created           time.Time
}

func (s *Server) conversationPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	v, err := s.opts.Gateway.Conversation(id)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	if wantsSSE(r) {
		s.threadStream(w, r, id)
		return
	}
	d := s.convData(v)
	d.CSRF = CSRFToken(w, r)
	s.renderPage(w, r, "Conversation "+id, "conversation", d)
}

// threadStream re-renders the conversation's thread whenever one of its
// tasks changes, so a reply shows up without a reload.
func (s *Server) threadStream(w http.ResponseWriter, r *http.Request, id string) {
	release, ok := s.acquireStream(w)
	if !ok {
		return
	}
	defer release()
	sub := s.opts.Gateway.Events().Subscribe(gateway.Filter{Conversation: id, Kinds: []gateway.EventKind{gateway.EventTask}})
	defer sub.Close()
	sw := s.newSSE(w)
	s.pump(r.Context(), sw, sub, overviewDebounce, nil, func([]*gateway.Event) error {
		v, err := s.opts.Gateway.Conversation(id)
		if err != nil {
			return err
		}
		var b bytes.Buffer
		if err := pageTemplates.ExecuteTemplate(&b, "thread", s.convData(v)); err != nil {
			return err
		}
		return sw.event("thread", "", b.String())
	})
}

func (s *Server) convData(v gateway.ConversationView) convData {
	rec := v.Record
	id := rec.ID
	d := convData{Conv: convRecord{ID: rec.ID, Repo: rec.Repo, Channel: rec.Channel, Created: rec.Created}}
	files := map[string][]fileLink{}
	replies, _ := web.Replies(s.webDir(rec.Repo), rec.ID)
	for _, sr := range replies {
		for _, f := range sr.Files {
			files[sr.Task] = append(files[sr.Task], fileLink{Name: f, URL: "/conversations/" + rec.ID + "/files/" + sr.Task + "/" + f})
		}
	}
	seen := map[string]bool{}
	for _, t := range rec.Tasks {
		seen[t.ID] = true
		d.Items = append(d.Items, convItem{ID: t.ID, Sender: s.senderName(t.ID, t.Sender), Started: t.Started.UTC().Format("2006-01-02 15:04 UTC"),
			State: firstString(t.Outcome, "done"), Message: t.Message, Cost: t.Cost, Reply: template.HTML(mdHTML(t.Reply)), Files: files[t.ID]})
		d.Total += t.Cost
	}
	// Tasks still in flight are not in conversation.json yet.
	for _, t := range s.opts.Gateway.Tasks() {
		if t.Conversation == id && !seen[t.ID] {
			d.Items = append(d.Items, convItem{ID: t.ID, Sender: firstString(t.SenderName, t.Sender), State: t.State,
				Started: t.Queued.UTC().Format("2006-01-02 15:04 UTC")})
		}
	}
	d.Outbox, _ = v.Outbox()
	d.CanReply, d.NoReply = s.canSubmit(rec.Repo)
	return d
}

// senderName is a recorded task's sender as the page shows it: the
// display name while the tracker still knows the task, else the address.
func (s *Server) senderName(task, sender string) string {
	if ti, ok := s.opts.Gateway.Task(task); ok && ti.SenderName != "" {
		return ti.SenderName
	}
	return sender
}

// canSubmit says whether the web channel can take a task for repo now,
// and why not.
func (s *Server) canSubmit(repo string) (bool, string) {
	if !s.opts.Config().Dashboard.WebChannel() {
		return false, "Tasks from the dashboard are turned off (dashboard.tasks: false)."
	}
	for _, st := range s.opts.Gateway.Repos() {
		if st.ID == repo {
			if st.State == gateway.RepoLive && slices.Contains(st.Channels, web.Name) {
				return true, ""
			}
			return false, "The repository is " + st.State + ": tasks can be started once it is live."
		}
	}
	return false, "The repository is no longer configured."
}

func (s *Server) webDir(repo string) string {
	return s.opts.StateDir + "/" + repo + "/channels/" + web.Name
}

func (s *Server) outboxFile(w http.ResponseWriter, r *http.Request) {
	v, err := s.opts.Gateway.Conversation(r.PathValue("id"))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	data, err := v.ReadOutbox(r.PathValue("name"), 512<<20)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	download(w, r.PathValue("name"))
	_, _ = w.Write(data)
}

func (s *Server) replyFile(w http.ResponseWriter, r *http.Request) {
	v, err := s.opts.Gateway.Conversation(r.PathValue("id"))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	f, err := web.OpenFile(s.webDir(v.Record.Repo), v.Record.ID, r.PathValue("task"), r.PathValue("name"))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	download(w, r.PathValue("name"))
	http.ServeContent(w, r, "", time.Time{}, f)
}

// download serves a file as an attachment, never rendered by the browser
// on the dashboard's origin.
func download(w http.ResponseWriter, name string) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="`+strings.NewReplacer(`"`, "", "\\", "", "\r", "", "\n", "").Replace(name)+`"`)
}

type repoData struct {
	Status   gateway.RepoStatus
	Model    string
	Convs    []gateway.ConversationView
	CanStart bool
	NoStart  string
	CSRF     string
}

func (s *Server) repoPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var d repoData
	found := false
	for _, st := range s.opts.Gateway.Repos() {
		if st.ID == id {
			d.Status, found = st, true
		}
	}
	if !found {
		http.NotFound(w, r)
		return
	}
	if rc := s.opts.Config().Repos[id]; rc != nil {
		d.Model = rc.Model
	}
	d.Convs = s.opts.Gateway.Conversations(id, 50)
	d.CanStart, d.NoStart = s.canSubmit(id)
	d.CSRF = CSRFToken(w, r)
	s.renderPage(w, r, id, "repo", d)
}
