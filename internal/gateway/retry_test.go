package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/airut/airut/internal/agent"
	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/conversation"
	"github.com/airut/airut/internal/redact"
	"github.com/airut/airut/internal/testkit"
)

// testWait bounds every wait of these tests.
const testWait = time.Minute

// flakyChannel fails the first failReplies replies, can fail its probe,
// and records what the gateway did.
type flakyChannel struct {
	msgs        []*channel.Message
	failReplies int
	// onReply, when set, runs at each Reply before it fails or succeeds.
	onReply func(attempt int, m *channel.Message, r channel.Reply)

	mu       sync.Mutex
	attempts int
	sent     []channel.Reply
	done     []string
	probeErr error
	probes   int
	running  chan struct{} // closed when Run starts
	doneC    chan string
}

func newFlaky(msgs ...*channel.Message) *flakyChannel {
	return &flakyChannel{msgs: msgs, running: make(chan struct{}), doneC: make(chan string, 16)}
}

func (f *flakyChannel) Name() string { return "fake" }
func (f *flakyChannel) Run(ctx context.Context, h channel.Handler) error {
	close(f.running)
	for _, m := range f.msgs {
		h(ctx, m)
	}
	<-ctx.Done()
	return nil
}
func (f *flakyChannel) Acknowledge(context.Context, *channel.Message, string) error { return nil }
func (f *flakyChannel) Reply(_ context.Context, m *channel.Message, r channel.Reply) error {
	f.mu.Lock()
	f.attempts++
	n := f.attempts
	f.mu.Unlock()
	if f.onReply != nil {
		f.onReply(n, m, r)
	}
	if n <= f.failReplies {
		return fmt.Errorf("smtp: 451 try again later (attempt %d)", n)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, r)
	return nil
}
func (f *flakyChannel) Done(_ context.Context, m *channel.Message) error {
	f.mu.Lock()
	f.done = append(f.done, m.SourceID)
	f.mu.Unlock()
	f.doneC <- m.SourceID
	return nil
}
func (f *flakyChannel) Probe(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probes++
	return f.probeErr
}
func (f *flakyChannel) setProbeErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probeErr = err
}

// waitDone waits until the channel has acknowledged n messages.
func (f *flakyChannel) waitDone(t *testing.T, n int) []string {
	t.Helper()
	var got []string
	for len(got) < n {
		select {
		case id := <-f.doneC:
			got = append(got, id)
		case <-time.After(testWait):
			t.Fatalf("got %d messages done at the source; want %d", len(got), n)
		}
	}
	return got
}

// poll waits for cond; used only for state the gateway exposes by polling
// (repo status), with no event to wait on.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// unitGateway is a gateway that is not Run: its repo handler is built by
// hand, for tests that need no container.
func unitGateway(t *testing.T, cfg *config.Config, clock func() time.Time) (*Gateway, *repoHandler) {
	t.Helper()
	if cfg == nil {
		cfg = &config.Config{Execution: config.Execution{MaxConcurrent: 1, ShutdownTimeout: 5}}
	}
	rc := &config.Repo{RepoURL: "unused", Model: "opus"}
	cfg.Repos = map[string]*config.Repo{"app": rc}
	g, err := New(cfg, Options{StateDir: t.TempDir(), Registry: redact.NewRegistry(), Prefix: "airut-gwt-unit", Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	g.replyRetryMin, g.replyRetryMax = time.Millisecond, 4*time.Millisecond
	h, err := newRepoHandler(g, context.Background(), "app", rc)
	if err != nil {
		t.Fatal(err)
	}
	g.repos["app"] = h
	return g, h
}

// TestReplyRetried: a reply the channel refuses is kept in the journal
// (text and outbox files) and retried with backoff in the running process;
// only the send that succeeds clears the outbox, marks the messages
// replied and acknowledges every one of them at the source.
func TestReplyRetried(t *testing.T) {
	g, h := unitGateway(t, nil, nil)
	dir, _, err := h.store.Create("fake")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir.Outbox(), "report.txt"), []byte("report"), 0o600); err != nil {
		t.Fatal(err)
	}
	msgs := []*channel.Message{
		{SourceID: "1:1", SenderAddress: "alice@example.com", Subject: "first", Body: "one", Thread: map[string]string{"message-id": "<a@x>"}},
		{SourceID: "1:2", SenderAddress: "bob@example.com", Subject: "Re: first", Body: "two", Thread: map[string]string{"message-id": "<b@x>"}},
	}
	fc := newFlaky()
	fc.failReplies = 3
	h.channels = []channel.Channel{fc}
	var items []*item
	for _, m := range msgs {
		if err := h.journal.put(&journalEntry{SourceID: m.SourceID, Channel: "fake", Conversation: dir.ID}); err != nil {
			t.Fatal(err)
		}
		items = append(items, &item{taskID: newTaskID(), ch: fc, msg: m})
	}
	var problems []string
	fc.onReply = func(attempt int, m *channel.Message, r channel.Reply) {
		// Every attempt sends the same reply to the last message, with the
		// outbox still there; the journal holds it for a restart.
		if m.SourceID != "1:2" {
			problems = append(problems, fmt.Sprintf("attempt %d: replied to %s; want 1:2", attempt, m.SourceID))
		}
		if len(r.Attachments) != 1 || string(r.Attachments[0].Data) != "report" {
			problems = append(problems, fmt.Sprintf("attempt %d: attachments %v; want report.txt", attempt, r.Attachments))
		}
		for _, sid := range []string{"1:1", "1:2"} {
			e, err := h.journal.get("fake", sid)
			switch {
			case err != nil || e == nil:
				problems = append(problems, fmt.Sprintf("attempt %d: journal %s: %v %v", attempt, sid, e, err))
			case e.Reply == nil || e.Reply.Markdown != r.Markdown || !cmp.Equal(e.Reply.Outbox, []string{"report.txt"}) || e.Replied:
				problems = append(problems, fmt.Sprintf("attempt %d: journal %s: %+v; want the pending reply", attempt, sid, e))
			}
		}
	}
	j := h.newJob(dir.ID, items[0])
	j.items = items
	g.tracker.add(TaskInfo{ID: j.id, Repo: "app", Conversation: dir.ID, State: StateRunning})
	for _, it := range items {
		h.inflight[inflightKey(fc, it.msg.SourceID)] = true
	}
	j.forget()
	j.finish(items, taskResult{outcome: agent.OutcomeSuccess, res: agent.Result{Reply: "All done."}, dir: dir},
		slog.New(slog.DiscardHandler))

	for _, p := range problems {
		t.Error(p)
	}
	if got, want := fc.attempts, 4; got != want {
		t.Errorf("reply attempts: got %d; want %d", got, want)
	}
	if len(fc.sent) != 1 || !strings.Contains(fc.sent[0].Markdown, "All done.") {
		t.Errorf("sent replies: got %+v; want one with the agent's reply", fc.sent)
	}
	if diff := cmp.Diff([]string{"1:1", "1:2"}, fc.done); diff != "" {
		t.Errorf("done at the source (-want +got):\n%s", diff)
	}
	if files, _ := dir.OutboxFiles(); len(files) != 0 {
		t.Errorf("outbox after the sent reply: got %v; want empty", files)
	}
	for _, sid := range []string{"1:1", "1:2"} {
		if e, _ := h.journal.get("fake", sid); e != nil {
			t.Errorf("journal %s after Done: got %+v; want removed", sid, e)
		}
	}
	if ti, _ := g.Task(j.id); ti.State != StateDone || ti.ReplyError != "" {
		t.Errorf("task: got state %s, reply error %q; want done and none", ti.State, ti.ReplyError)
	}
}

// TestReplyAfterRestart: a journaled reply that was never sent is sent
// after a restart without running the task again, once for all the
// messages it answers, and then they are done at the source.
func TestReplyAfterRestart(t *testing.T) {
	testkit.RequireEngine(t) // start-up sweeps containers
	origin := testkit.GitRepo(t, map[string]string{"README.md": "x\n"})
	state := t.TempDir()
	cfg := &config.Config{
		Execution: config.Execution{MaxConcurrent: 1, ShutdownTimeout: 5},
		Repos:     map[string]*config.Repo{"app": {RepoURL: origin, Model: "opus"}},
	}
	store, err := conversation.NewStore(state, "app")
	if err != nil {
		t.Fatal(err)
	}
	dir, _, err := store.Create("fake")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir.Outbox(), "chart.txt"), []byte("chart"), 0o600); err != nil {
		t.Fatal(err)
	}
	msgs := []*channel.Message{
		{SourceID: "9:1", SenderAddress: "alice@example.com", Subject: "first", Thread: map[string]string{"message-id": "<a@x>"}},
		{SourceID: "9:2", SenderAddress: "alice@example.com", Subject: "Re: first", Thread: map[string]string{"message-id": "<b@x>"}},
	}
	p := &pendingReply{Task: "feedfacecafe", Outcome: string(agent.OutcomeSuccess), Channel: "fake", To: replyTarget(msgs[1]),
		Markdown: "The journaled reply.", Outbox: []string{"chart.txt"},
		Messages: []messageRef{{Channel: "fake", SourceID: "9:1"}, {Channel: "fake", SourceID: "9:2"}}}
	jr, err := openJournal(filepath.Join(state, "app", "messages"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if err := jr.put(&journalEntry{SourceID: m.SourceID, Channel: "fake", Conversation: dir.ID, Acknowledged: true, Reply: p}); err != nil {
			t.Fatal(err)
		}
	}

	fc := newFlaky(msgs...)
	fc.failReplies = 2
	g, err := New(cfg, Options{
		StateDir: state, Registry: redact.NewRegistry(), Prefix: "airut-gwt-restart",
		ChannelFactory: func(string, *config.Repo, func(string) bool, *slog.Logger) ([]channel.Channel, error) {
			return []channel.Channel{fc}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	g.replyRetryMin, g.replyRetryMax = time.Millisecond, 4*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	got := fc.waitDone(t, 2)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	if diff := cmp.Diff([]string{"9:1", "9:2"}, got); diff != "" {
		t.Errorf("done at the source (-want +got):\n%s", diff)
	}
	want := []channel.Reply{{ConversationID: dir.ID, Markdown: "The journaled reply.",
		Attachments: []channel.Attachment{{Name: "chart.txt", Data: []byte("chart")}}}}
	if diff := cmp.Diff(want, fc.sent); diff != "" {
		t.Errorf("sent replies (-want +got):\n%s", diff)
	}
	if fc.attempts != 3 {
		t.Errorf("reply attempts: got %d; want 3", fc.attempts)
	}
	if files, _ := dir.OutboxFiles(); len(files) != 0 {
		t.Errorf("outbox after the sent reply: got %v; want empty", files)
	}
	if rec, err := dir.Load(); err != nil || len(rec.Tasks) != 0 {
		t.Errorf("conversation record: got %+v (%v); want no task run", rec, err)
	}
	tasks := g.Tasks()
	if len(tasks) != 1 || tasks[0].ID != p.Task || tasks[0].State != StateDone {
		t.Errorf("tasks: got %+v; want only %s, done", tasks, p.Task)
	}
	for _, m := range msgs {
		if e, _ := jr.get("fake", m.SourceID); e != nil {
			t.Errorf("journal %s after Done: got %+v; want removed", m.SourceID, e)
		}
	}
}

// TestChannelProbe: a repo whose channel cannot log in shows as failed
// with the reason while the channel runs and retries; once the probe
// passes, the repo is running again.
func TestChannelProbe(t *testing.T) {
	testkit.RequireEngine(t) // start-up sweeps containers
	origin := testkit.GitRepo(t, map[string]string{"README.md": "x\n"})
	cfg := &config.Config{
		Execution: config.Execution{MaxConcurrent: 1, ShutdownTimeout: 5},
		Repos:     map[string]*config.Repo{"app": {RepoURL: origin, Model: "opus"}},
	}
	fc := newFlaky()
	fc.setProbeErr(errors.New("imap login: [AUTHENTICATIONFAILED] invalid credentials"))
	g, err := New(cfg, Options{
		StateDir: t.TempDir(), Registry: redact.NewRegistry(), Prefix: "airut-gwt-probe",
		ChannelFactory: func(string, *config.Repo, func(string) bool, *slog.Logger) ([]channel.Channel, error) {
			return []channel.Channel{fc}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	g.reprobeMin, g.reprobeMax = time.Millisecond, 5*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	select {
	case <-fc.running:
	case <-time.After(testWait):
		t.Fatal("channel not run while its probe fails")
	}
	poll(t, "a failed status", func() bool {
		s := g.Repos()
		return len(s) == 1 && s[0].State == RepoFailed
	})
	if s := g.Repos()[0]; !strings.Contains(s.Reason, "channel fake: imap login: [AUTHENTICATIONFAILED]") {
		t.Errorf("reason: got %q; want the channel and its login error", s.Reason)
	}
	poll(t, "re-probes", func() bool {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		return fc.probes >= 3
	})
	fc.setProbeErr(nil)
	poll(t, "a running status", func() bool {
		s := g.Repos()
		return len(s) == 1 && s[0].State == RepoRunning
	})
	if s := g.Repos()[0]; s.Reason != "" {
		t.Errorf("reason once running: got %q; want none", s.Reason)
	}
}
