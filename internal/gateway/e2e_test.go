package gateway_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/airut/airut/internal/agent"
	"github.com/airut/airut/internal/gateway"
)

// TestEmailRoundTrip follows one conversation: a new message is
// acknowledged and answered in its thread with the outbox attached; a
// reply to that answer resumes the session in the same workspace, with the
// model named by sub-addressing; and no secret reaches a reply or a log.
func TestEmailRoundTrip(t *testing.T) {
	h := newHarness(t)
	h.start(harnessOpts{})

	first := outMail{Subject: "Fix the README", MessageID: "<first@example.com>", Body: "Please fix it.\n" +
		"@@write /workspace/notes.txt first task was here\n" +
		"@@run echo report-body > /outbox/report.txt\n" +
		"@@run tkhttp https://blocked.example.test/upload || true\n" +
		"@@reply Done: **fixed** the README.\n"}
	h.send(first)

	ack := h.waitMail(1)
	reply := h.waitMail(2)
	h.waitInboxEmpty()
	conv := h.taskOf("Fix the README").Conversation
	wantSubject := "Re: [ID:" + conv + "] Fix the README"
	for name, m := range map[string]sentMail{"ack": ack, "reply": reply} {
		if m.Subject != wantSubject {
			t.Errorf("%s subject: got %q; want %q", name, m.Subject, wantSubject)
		}
		if m.InReplyTo != first.MessageID {
			t.Errorf("%s In-Reply-To: got %q; want %q", name, m.InReplyTo, first.MessageID)
		}
		if !strings.Contains(m.References, first.MessageID) {
			t.Errorf("%s References: got %q; want it to contain %q", name, m.References, first.MessageID)
		}
		if !strings.Contains(m.To, "alice@example.com") {
			t.Errorf("%s To: got %q; want alice", name, m.To)
		}
	}
	if !strings.Contains(ack.Text, "working on") {
		t.Errorf("ack text: got %q; want an acknowledgement", ack.Text)
	}
	if !strings.Contains(reply.Text, "Done: fixed the README.") {
		t.Errorf("reply text: got %q; want the agent's reply", reply.Text)
	}
	if strings.Contains(reply.Text, "Cost:") {
		t.Errorf("reply text: got %q; want no cost footer (fakeclaude reports a subscription login)", reply.Text)
	}
	if !strings.Contains(reply.HTML, "<strong>fixed</strong>") {
		t.Errorf("reply HTML: got %q; want rendered Markdown", reply.HTML)
	}
	if got := strings.TrimSpace(reply.Attachments["report.txt"]); got != "report-body" {
		t.Errorf("attachment report.txt: got %q; want %q (all: %v)", got, "report-body", reply.Attachments)
	}
	if files, _ := os.ReadDir(filepath.Join(h.convDir(conv), "outbox")); len(files) != 0 {
		t.Errorf("outbox after a sent reply: got %d files; want none", len(files))
	}

	// A reply to the reply: same conversation, resumed, same workspace,
	// model from +haiku. The body carries the secret, which the agent
	// echoes back: the reply must not.
	second := outMail{To: "airut+haiku@example.com", Subject: "Re: " + reply.Subject, MessageID: "<second@example.com>",
		InReplyTo: reply.MessageID, References: first.MessageID + " " + reply.MessageID,
		Body: "Is the token " + h.secret + " right?\n" +
			"@@run cp /workspace/notes.txt /outbox/notes-again.txt\n" +
			"@@echo-prompt\n"}
	h.send(second)
	reply2 := h.waitMail(3)
	h.waitInboxEmpty()
	if reply2.Subject != wantSubject {
		t.Errorf("second reply subject: got %q; want %q (no ack for a continued conversation)", reply2.Subject, wantSubject)
	}
	if reply2.InReplyTo != second.MessageID {
		t.Errorf("second reply In-Reply-To: got %q; want %q", reply2.InReplyTo, second.MessageID)
	}
	if got := strings.TrimSpace(reply2.Attachments["notes-again.txt"]); got != "first task was here" {
		t.Errorf("workspace file from the first task: got %q; want %q", got, "first task was here")
	}
	if strings.Contains(reply2.Text+reply2.HTML, h.secret) {
		t.Errorf("second reply contains the secret:\n%s", reply2.Text)
	}
	if !strings.Contains(reply2.Text, "[REDACTED]") {
		t.Errorf("second reply: got %q; want the echoed secret masked", reply2.Text)
	}

	sess := h.sessions(conv)
	if len(sess) != 1 || len(sess[0].Runs) != 2 {
		t.Fatalf("sessions: got %d (runs %v); want 1 session with 2 runs", len(sess), sess)
	}
	r1, r2 := sess[0].Runs[0], sess[0].Runs[1]
	if r1.Resumed || r1.Model != "opus" {
		t.Errorf("first run: resumed=%v model=%q; want a new session on opus", r1.Resumed, r1.Model)
	}
	if !r2.Resumed || !slices.Contains(r2.Argv, "--resume") || !slices.Contains(r2.Argv, sess[0].ID) {
		t.Errorf("second run argv: got %q; want --resume %s", r2.Argv, sess[0].ID)
	}
	if i := slices.Index(r2.Argv, "--model"); i < 0 || r2.Argv[i+1] != "haiku" {
		t.Errorf("second run argv: got %q; want --model haiku", r2.Argv)
	}
	if r2.Cwd != "/workspace" {
		t.Errorf("cwd: got %q; want /workspace", r2.Cwd)
	}

	tasks := h.gw.Tasks()
	if len(tasks) != 2 {
		t.Fatalf("tasks: got %d; want 2", len(tasks))
	}
	for _, ti := range tasks {
		if ti.State != gateway.StateDone || ti.Outcome != agent.OutcomeSuccess || ti.Conversation != conv {
			t.Errorf("task %s: state %s outcome %s conv %s; want done/success/%s", ti.ID, ti.State, ti.Outcome, ti.Conversation, conv)
		}
		if ti.Started.IsZero() || ti.Finished.Before(ti.Started) || ti.Started.Before(ti.Queued) {
			t.Errorf("task %s timings: queued %v started %v finished %v", ti.ID, ti.Queued, ti.Started, ti.Finished)
		}
	}
	if tasks[1].Model != "haiku" {
		t.Errorf("second task model: got %q; want haiku", tasks[1].Model)
	}
	netLog, _ := os.ReadFile(filepath.Join(h.convDir(conv), "network-sandbox.log"))
	if !strings.Contains(string(netLog), "BLOCKED GET https://blocked.example.test/upload") {
		t.Errorf("network-sandbox.log: got %q; want the blocked request", netLog)
	}
	events, _ := os.ReadFile(filepath.Join(h.convDir(conv), "events.jsonl"))
	if !strings.Contains(string(events), `"type":"result"`) {
		t.Errorf("events.jsonl: got %d bytes without a result event", len(events))
	}

	h.stop()
	logs := h.logs.String()
	for _, s := range []string{h.secret, h.imap.Password} {
		if strings.Contains(logs, s) {
			t.Errorf("log contains a secret %q", s)
		}
	}
	for _, m := range h.smtp.Messages() {
		if strings.Contains(string(m.Data), h.secret) {
			t.Errorf("a sent mail contains the secret")
		}
	}
}

// TestSessionLost: when the conversation's session cannot be resumed, the
// task is retried once at once in a fresh session, and the reply says the
// earlier context was lost.
func TestSessionLost(t *testing.T) {
	h := newHarness(t)
	h.start(harnessOpts{})
	h.send(outMail{Subject: "remember", MessageID: "<r1@example.com>", Body: "@@reply first answer"})
	_ = h.waitMail(1)
	reply := h.waitMail(2)
	conv := h.taskOf("remember").Conversation
	if err := os.RemoveAll(filepath.Join(h.convDir(conv), "claude", "fakeclaude-sessions")); err != nil {
		t.Fatal(err)
	}
	h.send(outMail{Subject: "Re: " + reply.Subject, InReplyTo: reply.MessageID, Body: "@@reply second answer"})
	r2 := h.waitMail(3)
	if !strings.Contains(r2.Text, "could not be resumed") || !strings.Contains(r2.Text, "second answer") {
		t.Errorf("reply after a lost session: got %q; want the answer and a note that the context was lost", r2.Text)
	}
	sess := h.sessions(conv)
	if len(sess) != 1 || len(sess[0].Runs) != 1 || sess[0].Runs[0].Resumed {
		t.Fatalf("sessions after the retry: got %+v; want one fresh session", sess)
	}
	if p := sess[0].Runs[0].Prompt; !strings.Contains(p, "could not be resumed") || !strings.Contains(p, "first answer") {
		t.Errorf("recovery prompt: got %q; want the notice and the last reply quoted", p)
	}
	tasks := h.gw.Tasks()
	if got := tasks[len(tasks)-1].Outcome; got != agent.OutcomeSuccess {
		t.Errorf("outcome: got %s; want success after the retry", got)
	}
}
