package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/airut/airut/internal/channel"
)

// fakeSessions reads fakeclaude's session files of a conversation: the
// model and whether each run resumed.
func (f *fixture) fakeSessions(conv string) (runs []struct {
	Model   string `json:"model"`
	Resumed bool   `json:"resumed"`
}) {
	f.t.Helper()
	files, _ := filepath.Glob(filepath.Join(f.convDir("app", conv), "claude", "fakeclaude-sessions", "*.json"))
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.t.Fatal(err)
		}
		var s struct {
			Runs []struct {
				Model   string `json:"model"`
				Resumed bool   `json:"resumed"`
			} `json:"runs"`
		}
		if err := json.Unmarshal(data, &s); err != nil {
			f.t.Fatal(err)
		}
		runs = append(runs, s.Runs...)
	}
	return runs
}

// TestSubmit: a task started from outside a channel's receive loop takes
// the same path as a channel message: a new conversation (acknowledged,
// answered in the named channel), a resumed one, a reply delivered as a
// new thread, attachments to the inbox, and the errors a caller can act
// on.
func TestSubmit(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ch := f.chans["app"]
	g := f.start()
	ctx := context.Background()

	sub, err := g.Submit(ctx, Submission{Repo: "app", Channel: "fake", Message: channel.Message{
		SenderAddress: "operator", Subject: "from the dashboard", Body: "@@run ls ../inbox > ../outbox/seen.txt\n@@reply web one",
		Attachments: []channel.Attachment{{Name: "notes.txt", Data: []byte("notes")}}}})
	if err != nil {
		t.Fatal(err)
	}
	if sub.Conversation == "" || sub.Task == "" {
		t.Fatalf("Submit: %+v; want a conversation and a task", sub)
	}
	ch.wait(t, "the reply", func() bool { return len(ch.replies) == 1 })
	r := ch.replies[0]
	if r.R.ConversationID != sub.Conversation || r.R.TaskID != sub.Task || !strings.Contains(r.R.Markdown, "web one") {
		t.Errorf("reply: %+v; want the task's reply in %s", r.R, sub.Conversation)
	}
	if len(r.R.Attachments) != 1 || strings.TrimSpace(string(r.R.Attachments[0].Data)) != "notes.txt" {
		t.Errorf("the agent saw in /inbox: %+v; want notes.txt", r.R.Attachments)
	}
	if len(ch.acks) != 1 {
		t.Errorf("acknowledgements: %d; want one for the new conversation", len(ch.acks))
	}
	if ti := f.waitTask(sub.Task, StateDone); ti.Conversation != sub.Conversation {
		t.Errorf("task: %+v", ti)
	}

	// Resume: the same conversation, the session resumed, no new ack.
	sub2, err := g.Submit(ctx, Submission{Repo: "app", Channel: "fake", Conversation: sub.Conversation,
		Message: channel.Message{SenderAddress: "operator", Body: "@@reply web two", Model: "haiku"}})
	if err != nil {
		t.Fatal(err)
	}
	if sub2.Conversation != sub.Conversation {
		t.Errorf("resume went to %s; want %s", sub2.Conversation, sub.Conversation)
	}
	ch.wait(t, "the second reply", func() bool { return len(ch.replies) == 2 })
	runs := f.fakeSessions(sub.Conversation)
	if len(runs) != 2 || !runs[1].Resumed || runs[1].Model != "haiku" {
		t.Errorf("agent runs: %+v; want the second resumed on haiku", runs)
	}
	if len(ch.acks) != 1 {
		t.Errorf("acknowledgements: %d; want still one", len(ch.acks))
	}

	// Delivery as a new thread (a scheduled run): Send, no ack.
	sub3, err := g.Submit(ctx, Submission{Repo: "app", Channel: "fake",
		Message: channel.Message{SenderAddress: "scheduler", Body: "@@reply nightly report"},
		Deliver: &Delivery{To: []string{"team@example.com"}, Subject: "Nightly"}})
	if err != nil {
		t.Fatal(err)
	}
	ch.wait(t, "the delivery", func() bool { return len(ch.replies) == 3 })
	d := ch.replies[2]
	if d.New == nil || !cmp.Equal(d.New.To, []string{"team@example.com"}) || d.New.Subject != "Nightly" ||
		d.R.ConversationID != sub3.Conversation || !strings.Contains(d.R.Markdown, "nightly report") {
		t.Errorf("delivery: %+v %+v; want a new thread to team@", d.New, d.R)
	}
	if len(ch.acks) != 1 {
		t.Errorf("acknowledgements: %d; want none for a delivery", len(ch.acks))
	}
	if _, dones, _ := ch.snapshot(); len(dones) != 0 {
		t.Errorf("Done calls: %v; want none (a submission has no source)", dones)
	}

	for _, tt := range []struct {
		name string
		s    Submission
		want error
	}{
		{"unknown repo", Submission{Repo: "nope", Channel: "fake"}, ErrUnknownRepo},
		{"unknown channel", Submission{Repo: "app", Channel: "slack"}, ErrUnknownChannel},
		{"unknown conversation", Submission{Repo: "app", Channel: "fake", Conversation: "0badc0de"}, ErrUnknownConversation},
		{"delivery without a recipient", Submission{Repo: "app", Channel: "fake", Deliver: &Delivery{}}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := g.Submit(ctx, tt.s)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("Submit: %v; want %v", err, tt.want)
			}
		})
	}
}

// TestSubmitSurvivesRestart: a submitted task that did not reply before a
// shutdown runs again after the restart, from the journal (nothing else
// would hand it over), in its conversation, and replies once; a second
// submission with the same MessageID while it runs is refused.
func TestSubmitSurvivesRestart(t *testing.T) {
	f := newFixture(t, fixtureOpts{shutdown: 1})
	ch := f.chans["app"]
	g := f.start()
	s := Submission{Repo: "app", Channel: "fake", Message: channel.Message{MessageID: "form-1", SenderAddress: "operator",
		Body:        "@@run echo run >> ../storage/runs\n" + block("survived"),
		Attachments: []channel.Attachment{{Name: "in.txt", Data: []byte("kept")}}}}
	sub, err := g.Submit(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	f.waitStarted("app", sub.Conversation)
	if _, err := g.Submit(context.Background(), s); !errors.Is(err, ErrDuplicate) {
		t.Errorf("second submission of form-1: %v; want ErrDuplicate", err)
	}
	f.restart()
	runs := filepath.Join(f.convDir("app", sub.Conversation), "storage", "runs")
	poll(t, "the replayed run", func() bool {
		data, _ := os.ReadFile(runs)
		return strings.Count(string(data), "run") == 2
	})
	f.release("app", sub.Conversation)
	ch.wait(t, "the reply", func() bool { return len(ch.replies) == 1 })
	if r := ch.replies[0].R; r.ConversationID != sub.Conversation || !strings.Contains(r.Markdown, "survived") {
		t.Errorf("reply: %+v", r)
	}
	inbox, _ := os.ReadDir(filepath.Join(f.convDir("app", sub.Conversation), "inbox"))
	if len(inbox) == 0 {
		t.Errorf("the replayed task has no attachment in its inbox")
	}
	poll(t, "the journal to empty", func() bool {
		files, _ := os.ReadDir(filepath.Join(f.state, "app", "messages"))
		return len(files) == 0
	})
}
