package gateway_test

import (
	"strings"
	"testing"

	"github.com/airut/airut/internal/agent"
	"github.com/airut/airut/internal/gateway"
)

// TestFailureReplies: every outcome produces a reply that explains it.
func TestFailureReplies(t *testing.T) {
	h := newHarness(t)
	h.start(harnessOpts{timeout: 10})

	// Three at once: a run past its timeout, an agent error, and a task
	// stopped by a user.
	h.send(outMail{Subject: "slow", Body: "@@run echo partial > /outbox/partial.txt\n@@sleep 120\n@@reply never"})
	h.send(outMail{Subject: "broken", Body: "@@run echo compiling\n@@fail 3 the build is broken"})
	h.send(outMail{Subject: "stop me", Body: blockScript("never")})
	stop := h.taskOf("stop me")
	h.waitStarted(stop.Conversation)
	if err := h.gw.Cancel(stop.ID); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	replies := map[string]sentMail{}
	waitFor(t, "three replies", func() bool {
		for _, m := range h.smtp.Messages() {
			s := parseMail(t, m.Data)
			if !strings.Contains(s.Text, "working on this") {
				replies[s.Subject[strings.Index(s.Subject, "] ")+2:]] = s
			}
		}
		return len(replies) == 3
	})

	tests := []struct {
		subject string
		outcome agent.Outcome
		want    []string
		attach  bool
	}{
		{subject: "slow", outcome: agent.OutcomeTimeout, want: []string{"time limit of 10s", "saved", "Reply"}},
		{subject: "broken", outcome: agent.OutcomeError, want: []string{"exit code 3", "the build is broken"}},
		{subject: "stop me", outcome: agent.OutcomeCancelled, want: []string{"stopped"}},
	}
	for _, tt := range tests {
		t.Run(tt.subject, func(t *testing.T) {
			r := replies[tt.subject]
			for _, w := range tt.want {
				if !strings.Contains(r.Text, w) {
					t.Errorf("reply: got %q; want it to contain %q", r.Text, w)
				}
			}
			if ti := h.taskOf(tt.subject); ti.Outcome != tt.outcome {
				t.Errorf("outcome: got %s; want %s", ti.Outcome, tt.outcome)
			}
		})
	}
	if n := len(replies["slow"].Attachments); n != 0 {
		t.Errorf("timeout reply: got %d attachments; want the outbox kept for the next reply", n)
	}

	// The repo's own config is read from the mirror's default branch at
	// each task: a Dockerfile that does not build, then a broken allowlist.
	infra := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{name: "image build", files: map[string]string{".airut/container/Dockerfile": "FROM " + h.base + "\nRUN exit 7\n"},
			want: []string{"not with the agent", "image", "Reply to this message"}},
		{name: "allowlist", files: map[string]string{
			".airut/container/Dockerfile":   "FROM " + h.base + "\n",
			".airut/network-allowlist.yaml": "domains: \"*.example.test\"\n"},
			want: []string{"network-allowlist.yaml", ":1", "domains"}},
	}
	for i, tt := range infra {
		t.Run(tt.name, func(t *testing.T) {
			h.commit(tt.files)
			n := len(h.smtp.Messages())
			h.send(outMail{Subject: tt.name, Body: "@@reply should not run"})
			_ = h.waitMail(n + 1) // ack
			r := h.waitMail(n + 2)
			for _, w := range tt.want {
				if !strings.Contains(r.Text, w) {
					t.Errorf("reply %d: got %q; want it to contain %q", i, r.Text, w)
				}
			}
			if ti := h.taskOf(tt.name); ti.Outcome != agent.OutcomeInfrastructure {
				t.Errorf("outcome: got %s; want infrastructure", ti.Outcome)
			}
		})
	}
	h.waitInboxEmpty()
}

// TestShutdownLeavesMessage: a task still running when shutdown_timeout
// ends is cancelled without a reply, and its message stays in the inbox
// to be processed after the restart.
func TestShutdownLeavesMessage(t *testing.T) {
	h := newHarness(t)
	h.start(harnessOpts{shutdown: 1})
	h.send(outMail{Subject: "long", Body: blockScript("never")})
	task := h.taskOf("long")
	h.waitStarted(task.Conversation)
	_ = h.waitMail(1) // ack
	h.stop()
	if n := len(h.imap.Inbox(t)); n != 1 {
		t.Errorf("inbox after shutdown: got %d messages; want the unanswered one kept", n)
	}
	if n := len(h.smtp.Messages()); n != 1 {
		t.Errorf("mails: got %d; want only the acknowledgement", n)
	}
	if ti, _ := h.gw.Task(task.ID); ti.State != gateway.StateAbandoned {
		t.Errorf("task state: got %s; want %s", ti.State, gateway.StateAbandoned)
	}
}
