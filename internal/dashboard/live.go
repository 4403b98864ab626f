package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/airut/airut/internal/gateway"
)

// The live parts. Every stream takes a slot (the cap), sends heartbeats,
// and resumes: file tails from a byte offset, state streams from a bus
// sequence number (in Last-Event-ID).

// overviewDebounce merges bursts of changes into one re-render.
const overviewDebounce = 200 * time.Millisecond

// poolPoll is how often the overview stream looks at the warm pool: its
// spares come and go without a bus event, so a change is noticed by
// comparing its figures.
const poolPoll = time.Second

// overviewStream sends the overview's live part, re-rendered, whenever a
// task or repo changes, or the warm pool's figures do. Every event is the
// whole state, so a client that reconnects is up to date with the first
// one.
func (s *Server) overviewStream(w http.ResponseWriter, r *http.Request) {
	release, ok := s.acquireStream(w)
	if !ok {
		return
	}
	defer release()
	bus := s.opts.Gateway.Events()
	sub := bus.Subscribe(gateway.Filter{Kinds: []gateway.EventKind{gateway.EventTask, gateway.EventRepo}})
	defer sub.Close()
	sw := s.newSSE(w)
	// sent is the pool as last sent; a resumed stream that sends nothing
	// at first has not sent it (the page may be older than the pool).
	var sent *WarmSandboxes
	sentAny := false
	send := func() error {
		d := s.overviewData(false, r)
		var b bytes.Buffer
		if err := pageTemplates.ExecuteTemplate(&b, "overview-live", d); err != nil {
			return err
		}
		sent, sentAny = d.Warm, true
		return sw.event("overview", strconv.FormatUint(bus.Seq(), 10), b.String())
	}
	if after, ok := lastEventID(r); !ok || uint64(after) != bus.Seq() {
		if send() != nil {
			return
		}
	}
	poolChanged := func() bool {
		now := s.warmSandboxes()
		return !sentAny || !samePool(now, sent)
	}
	s.pump(r.Context(), sw, sub, overviewDebounce, poolChanged, func([]*gateway.Event) error { return send() })
}

func samePool(a, b *WarmSandboxes) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// pump waits for events on sub, calling fn with each batch (collected for
// debounce), with heartbeats meanwhile. When changed is set, it is asked
// every poolPoll whether state that has no bus event moved, and fn(nil)
// is called when it did. A subscription dropped as too slow ends the
// stream: the client reconnects and resumes.
func (s *Server) pump(ctx context.Context, sw *sseWriter, sub *gateway.Subscription, debounce time.Duration, changed func() bool, fn func([]*gateway.Event) error) {
	hb := time.NewTicker(s.opts.Heartbeat)
	defer hb.Stop()
	var poll <-chan time.Time
	if changed != nil {
		t := time.NewTicker(poolPoll)
		defer t.Stop()
		poll = t.C
	}
	var batch []*gateway.Event
	var timer <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-hb.C:
			if sw.heartbeat() != nil {
				return
			}
		case e, ok := <-sub.Events():
			if !ok {
				return
			}
			batch = append(batch, e)
			if debounce == 0 {
				if fn(batch) != nil {
					return
				}
				batch = nil
			} else if timer == nil {
				timer = time.After(debounce)
			}
		case <-timer:
			timer = nil
			if fn(batch) != nil {
				return
			}
			batch = nil
		case <-poll:
			if timer == nil && changed() && fn(nil) != nil {
				return
			}
		}
	}
}

// stateStream is GET /api/tasks as SSE: every task and repo change as
// JSON, resumable from the bus sequence in Last-Event-ID. When the events
// after it are gone, a "reset" event carries the whole state first.
func (s *Server) stateStream(w http.ResponseWriter, r *http.Request) {
	release, ok := s.acquireStream(w)
	if !ok {
		return
	}
	defer release()
	bus := s.opts.Gateway.Events()
	f := gateway.Filter{Kinds: []gateway.EventKind{gateway.EventTask, gateway.EventRepo}}
	var sub *gateway.Subscription
	reset := true
	if after, ok := lastEventID(r); ok {
		var err error
		if sub, err = bus.SubscribeFrom(uint64(after), f); err == nil {
			reset = false
		} else if !errors.Is(err, gateway.ErrEventsLost) {
			http.Error(w, err.Error(), 500)
			return
		}
	}
	seq := bus.Seq()
	if sub == nil {
		sub, _ = bus.SubscribeFrom(seq, f)
	}
	defer sub.Close()
	sw := s.newSSE(w)
	if reset {
		tasks := s.opts.Gateway.Tasks()
		out := make([]APITask, 0, len(tasks))
		for i := len(tasks) - 1; i >= 0; i-- {
			out = append(out, apiTask(tasks[i]))
		}
		data, _ := json.Marshal(map[string]any{"tasks": out, "health": s.health()})
		if sw.event("reset", strconv.FormatUint(seq, 10), string(data)) != nil {
			return
		}
	}
	s.pump(r.Context(), sw, sub, 0, nil, func(batch []*gateway.Event) error {
		for _, e := range batch {
			var data []byte
			name := string(e.Kind)
			if e.Info != nil {
				data, _ = json.Marshal(apiTask(*e.Info))
			} else if e.RepoState != nil {
				st := e.RepoState
				data, _ = json.Marshal(APIRepo{ID: st.ID, State: st.State, Reason: st.Reason, Channels: nonNil(st.Channels)})
			}
			if err := sw.event(name, strconv.FormatUint(e.Seq, 10), string(data)); err != nil {
				return err
			}
		}
		return nil
	})
}

// transcriptStream follows a task page: "event" fragments of the
// transcript after the byte offset the page rendered up to, and "head"
// when the task's state changes. It ends when the task has finished and
// its events are read.
func (s *Server) transcriptStream(w http.ResponseWriter, r *http.Request, v taskView) {
	s.eventStream(w, r, v, true)
}

// eventStream tails the task's part of events.jsonl: as HTML fragments
// (page) or raw redacted JSON lines (API). The SSE id is the byte offset
// after the event.
func (s *Server) eventStream(w http.ResponseWriter, r *http.Request, v taskView, page bool) {
	release, ok := s.acquireStream(w)
	if !ok {
		return
	}
	defer release()
	if page {
		// The re-rendered head carries the Stop form.
		v.CSRF = CSRFToken(w, r)
	}
	g := s.opts.Gateway
	sub := g.Events().Subscribe(gateway.Filter{Task: v.Info.ID, Kinds: []gateway.EventKind{gateway.EventAgent, gateway.EventTask}})
	defer sub.Close()
	sw := s.newSSE(w)
	if v.Live && v.Info.Started.IsZero() {
		// A queued or pending task: where its events start is known once
		// it starts (the conversation's running task is still writing).
		if !s.waitStarted(r.Context(), sw, sub, v.Info.ID) {
			return
		}
		csrf := v.CSRF
		if v, ok = s.findTask(v.Info.ID); !ok {
			return
		}
		v.CSRF = csrf
	}
	from := v.From
	if after, ok := lastEventID(r); ok && after > from {
		from = after
	}
	if v.To >= 0 && from > v.To {
		from = v.To
	}
	to := v.To
	if to == -2 {
		to = -1
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	wake := make(chan struct{}, 1)
	finished := make(chan struct{})
	// The bus says when to look at the file again and when the task has
	// finished; the file is the record.
	go func() {
		defer close(finished)
		if !v.Live {
			return
		}
		s.watch(ctx, cancel, sw, sub, wake, func(e *gateway.Event) bool {
			if e.Kind != gateway.EventTask || e.Info == nil {
				return true
			}
			if page {
				if nv, ok := s.findTask(v.Info.ID); ok {
					nv.CSRF, nv.Timing = v.CSRF, nv.timing()
					var b bytes.Buffer
					if pageTemplates.ExecuteTemplate(&b, "task-head", nv) == nil {
						_ = sw.event("head", "", b.String())
					}
				}
			}
			return !final(e.Info.State)
		})
	}()
	// The watch writes on w: it must be done before the handler returns.
	defer func() { cancel(); <-finished }()
	done := func() bool {
		select {
		case <-finished:
			return true
		default:
			return false
		}
	}
	var sb strings.Builder
	red := s.opts.Registry.Redact
	_ = tail(ctx, v.Conv.EventsPath(), from, to, v.Live, wake, done, func(line []byte, end int64) error {
		id := strconv.FormatInt(end, 10)
		if !page {
			return sw.event("event", id, string(line))
		}
		sb.Reset()
		renderEvent(&sb, []byte(red(string(line))))
		return sw.event("event", id, sb.String())
	})
	// The end: the client must not reconnect and replay.
	_ = sw.event("end", "", "finished")
}

// watch serves a stream's bus side until ctx ends, the subscription ends
// or onEvent returns false: heartbeats on sw (a failed one cancels the
// stream), and after each event a nudge on wake for the file tail.
func (s *Server) watch(ctx context.Context, cancel func(), sw *sseWriter, sub *gateway.Subscription, wake chan<- struct{},
	onEvent func(*gateway.Event) bool) {
	hb := time.NewTicker(s.opts.Heartbeat)
	defer hb.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hb.C:
			if sw.heartbeat() != nil {
				cancel()
				return
			}
		case e, ok := <-sub.Events():
			if !ok {
				return
			}
			more := onEvent(e)
			select {
			case wake <- struct{}{}:
			default:
			}
			if !more {
				return
			}
		}
	}
}

// waitStarted waits, with heartbeats, until task id has started or
// finished; false when the client left first.
func (s *Server) waitStarted(ctx context.Context, sw *sseWriter, sub *gateway.Subscription, id string) bool {
	hb := time.NewTicker(s.opts.Heartbeat)
	defer hb.Stop()
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	for {
		if ti, ok := s.opts.Gateway.Task(id); !ok || !ti.Started.IsZero() || final(ti.State) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-hb.C:
			if sw.heartbeat() != nil {
				return false
			}
		case _, ok := <-sub.Events():
			if !ok {
				return false
			}
		case <-poll.C:
		}
	}
}

// networkPage shows the log so far, filtered, and follows it live.
func (s *Server) networkPage(w http.ResponseWriter, r *http.Request) {
	v, err := s.opts.Gateway.Conversation(r.PathValue("id"))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	if wantsSSE(r) {
		s.networkStream(w, r, v, true)
		return
	}
	flt := netFilter{verdict: r.URL.Query().Get("verdict"), host: strings.ToLower(r.URL.Query().Get("host"))}
	d := struct {
		ID, Verdict, Host string
		Verdicts          []string
		Lines             []template.HTML
		Offset            int64
	}{ID: v.Record.ID, Verdict: flt.verdict, Host: flt.host, Verdicts: []string{"ALLOWED", "BLOCKED", "STRIPPED", "ERROR", "DNS"}}
	red := s.opts.Registry.Redact
	// The page shows at most the last maxNetLines lines; older ones are in
	// the NDJSON API.
	const maxNetLines = 5000
	_ = tail(r.Context(), v.NetworkLogPath(), 0, -1, false, nil, nil, func(line []byte, end int64) error {
		d.Offset = end
		l := red(string(line))
		if flt.match(l) {
			d.Lines = append(d.Lines, netLineHTML(l))
			if len(d.Lines) > maxNetLines {
				d.Lines = d.Lines[1:]
			}
		}
		return nil
	})
	s.renderPage(w, r, "Network "+v.Record.ID, "network", d)
}

// networkStream tails the network log from the offset in Last-Event-ID
// (or "after"), as HTML lines (page) or JSON (API), until the client
// leaves.
func (s *Server) networkStream(w http.ResponseWriter, r *http.Request, v gateway.ConversationView, page bool) {
	release, ok := s.acquireStream(w)
	if !ok {
		return
	}
	defer release()
	sub := s.opts.Gateway.Events().Subscribe(gateway.Filter{Conversation: v.Record.ID, Kinds: []gateway.EventKind{gateway.EventNetwork}})
	defer sub.Close()
	flt := netFilter{verdict: r.URL.Query().Get("verdict"), host: strings.ToLower(r.URL.Query().Get("host"))}
	sw := s.newSSE(w)
	from, _ := lastEventID(r)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	wake := make(chan struct{}, 1)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		s.watch(ctx, cancel, sw, sub, wake, func(*gateway.Event) bool { return true })
	}()
	// The watch writes heartbeats on w: it must be done before the handler
	// returns and the server finishes the response.
	defer func() { cancel(); <-watched }()
	red := s.opts.Registry.Redact
	_ = tail(ctx, v.NetworkLogPath(), from, -1, true, wake, func() bool { return false }, func(line []byte, end int64) error {
		l := red(string(line))
		if !flt.match(l) {
			return nil
		}
		id := strconv.FormatInt(end, 10)
		if page {
			return sw.event("line", id, string(netLineHTML(l)))
		}
		data, _ := json.Marshal(netLine{Line: l, Verdict: verdict(l), Offset: end})
		return sw.event("line", id, string(data))
	})
}

type netFilter struct{ verdict, host string }

func (f netFilter) match(line string) bool {
	if f.verdict != "" && verdict(line) != f.verdict {
		return false
	}
	if f.host != "" && !strings.Contains(strings.ToLower(lineHost(line)), f.host) {
		return false
	}
	return true
}

// verdict is a network log line's first word.
func verdict(line string) string {
	v, _, _ := strings.Cut(line, " ")
	return v
}

// lineHost is the host a network log line is about.
func lineHost(line string) string {
	f := strings.Fields(line)
	switch {
	case len(f) >= 3 && (f[0] == "ALLOWED" || f[0] == "BLOCKED" || f[0] == "ERROR"):
		if u, err := url.Parse(f[2]); err == nil && u.Host != "" {
			return u.Hostname()
		}
		return f[2]
	case len(f) >= 4 && f[0] == "STRIPPED":
		return f[3]
	case len(f) >= 3 && f[0] == "DNS":
		return f[2]
	}
	return ""
}

func netLineHTML(l string) template.HTML {
	return template.HTML(`<span class="net net-` + cssName(verdict(l)) + `">` + esc(l) + "</span>\n")
}
