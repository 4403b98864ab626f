package gateway

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/redact"
	"github.com/airut/airut/internal/testkit"
)

// fakeChannel hands over fixed messages and records what the gateway did.
type fakeChannel struct {
	msgs  []*channel.Message
	mu    sync.Mutex
	acks  []string
	sent  []string
	done  []string
	doneC chan string
}

func (f *fakeChannel) Name() string { return "fake" }
func (f *fakeChannel) Run(ctx context.Context, h channel.Handler) error {
	for _, m := range f.msgs {
		h(ctx, m)
	}
	<-ctx.Done()
	return nil
}
func (f *fakeChannel) Acknowledge(_ context.Context, m *channel.Message, conv string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acks = append(f.acks, m.SourceID)
	return nil
}
func (f *fakeChannel) Reply(_ context.Context, m *channel.Message, r channel.Reply) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, m.SourceID)
	return nil
}
func (f *fakeChannel) Done(_ context.Context, m *channel.Message) error {
	f.mu.Lock()
	f.done = append(f.done, m.SourceID)
	f.mu.Unlock()
	f.doneC <- m.SourceID
	return nil
}

// TestJournalAndPartialBoot: a message whose reply went out before a
// crash is only acknowledged at its source, never run or answered again;
// and a repo whose mirror cannot be cloned is reported as failed without
// stopping the others.
func TestJournalAndPartialBoot(t *testing.T) {
	testkit.RequireEngine(t) // start-up sweeps containers
	origin := testkit.GitRepo(t, map[string]string{"README.md": "x\n"})
	state := t.TempDir()
	cfg := &config.Config{
		Execution: config.Execution{MaxConcurrent: 1, ShutdownTimeout: 5},
		Repos: map[string]*config.Repo{
			"good": {RepoURL: origin, Model: "opus"},
			"bad":  {RepoURL: filepath.Join(t.TempDir(), "missing"), Model: "opus"},
		},
		RepoErrors: map[string]error{"invalid": errString("airut.yaml:9: repos.invalid.repo_url: required")},
	}
	j, err := openJournal(filepath.Join(state, "good", "messages"))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.put(&journalEntry{SourceID: "1:7", Channel: "fake", Conversation: "0badc0de", Acknowledged: true, Replied: true}); err != nil {
		t.Fatal(err)
	}
	fc := &fakeChannel{doneC: make(chan string, 1), msgs: []*channel.Message{{SourceID: "1:7", SenderAddress: "alice@example.com", Body: "hi"}}}
	g, err := New(cfg, Options{
		StateDir: state, Registry: redact.NewRegistry(), Prefix: "airut-gwt-journal",
		ChannelFactory: func(string, *config.Repo, func(string) bool, *slog.Logger) ([]channel.Channel, error) {
			return []channel.Channel{fc}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	select {
	case <-fc.doneC:
	case <-time.After(time.Minute):
		t.Fatal("message not acknowledged at its source")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(fc.acks)+len(fc.sent) != 0 || len(g.Tasks()) != 0 {
		t.Errorf("answered message: got %d acks, %d replies, %d tasks; want none", len(fc.acks), len(fc.sent), len(g.Tasks()))
	}
	if e, _ := j.get("fake", "1:7"); e != nil {
		t.Errorf("journal entry kept after Done: %+v", e)
	}

	got := map[string]string{}
	for _, s := range g.Repos() {
		got[s.ID] = s.State
		if s.State == RepoFailed && s.Reason == "" {
			t.Errorf("repo %s failed without a reason", s.ID)
		}
		if s.ID == "bad" && !strings.Contains(s.Reason, "git mirror") {
			t.Errorf("bad repo reason: got %q; want the mirror failure", s.Reason)
		}
	}
	want := map[string]string{"good": RepoRunning, "bad": RepoFailed, "invalid": RepoFailed}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("repo states (-want +got):\n%s", diff)
	}
}

type errString string

func (e errString) Error() string { return string(e) }
