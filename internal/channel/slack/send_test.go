package slack_test

import (
	"context"
	"strings"
	"testing"

	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/testkit/slacktest"
)

// TestSendStartsThreads: Send posts a new message in a channel and in the
// app's DM with a user, the reply and its attachments in each one's
// thread; an answer in either thread, without a mention, continues the
// conversation.
func TestSendStartsThreads(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	r := channel.Reply{Outcome: channel.OutcomeSuccess, Markdown: "All **green** tonight.",
		Attachments: []channel.Attachment{{Name: "report.txt", Data: []byte("report-body")}}}
	if err := h.ch.Send(ctx, []string{general, alice}, "Nightly check", "c0ffee01", r); err != nil {
		t.Fatal(err)
	}
	dm := slacktest.DMChannel(alice)
	for _, ch := range []string{general, dm} {
		var root *slacktest.Message
		for _, m := range h.fake.BotMessages(ch, "") {
			if m.ThreadTS == "" {
				root = &m
				break
			}
		}
		if root == nil || root.Text != "*Nightly check*" {
			t.Fatalf("%s: no new top-level message with the subject: %+v", ch, h.fake.BotMessages(ch, ""))
		}
		var reply bool
		for _, m := range h.fake.BotMessages(ch, root.TS) {
			if m.ThreadTS == root.TS && strings.Contains(m.Text, "All *green* tonight.") {
				reply = true
			}
		}
		if !reply {
			t.Errorf("%s: reply not in the new thread: %+v", ch, h.fake.BotMessages(ch, root.TS))
		}
		var uploaded bool
		for _, u := range h.fake.Uploads() {
			if u.Channel == ch && u.ThreadTS == root.TS && u.Name == "report.txt" && string(u.Data) == "report-body" {
				uploaded = true
			}
		}
		if !uploaded {
			t.Errorf("%s: attachment not in the thread: %+v", ch, h.fake.Uploads())
		}
		if got := h.threads()[ch+":"+root.TS]; got != "c0ffee01" {
			t.Errorf("%s: thread map: %q; want the conversation", ch, got)
		}

		// Bob answers in the thread with no mention.
		ts := h.fake.NewTS()
		if ch == dm {
			h.event(slacktest.DM(dm, alice, "and tomorrow?", ts, root.TS))
		} else {
			h.event(channelMessage(general, bob, "and tomorrow?", ts, root.TS))
		}
		m := h.next()
		if m.ConversationID != "c0ffee01" || m.Body != "and tomorrow?" {
			t.Errorf("%s: answer handed over as %q in conversation %q; want the scheduled conversation", ch, m.Body, m.ConversationID)
		}
	}
}

// TestSendRetryPostsNothingTwice: a Send that failed after its first
// message is retried by the gateway; the retry goes on in the same
// thread. A destination that cannot be written to is a permanent error.
func TestSendRetryPostsNothingTwice(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	r := channel.Reply{Outcome: channel.OutcomeSuccess, Markdown: "done"}
	h.fake.Fail("chat.postMessage", "", "internal_error") // the root goes out, the reply fails
	err := h.ch.Send(ctx, []string{general}, "Weekly", "c0ffee02", r)
	if err == nil || channel.IsPermanent(err) {
		t.Fatalf("first Send: %v; want a transient error", err)
	}
	if err := h.ch.Send(ctx, []string{general}, "Weekly", "c0ffee02", r); err != nil {
		t.Fatalf("retried Send: %v", err)
	}
	var roots, replies int
	for _, m := range h.fake.BotMessages(general, "") {
		switch {
		case m.ThreadTS == "" && m.Text == "*Weekly*":
			roots++
		case m.Text == "done":
			replies++
		}
	}
	if roots != 1 || replies != 1 {
		t.Errorf("after a retry: %d root messages, %d replies; want 1 and 1", roots, replies)
	}

	err = h.ch.Send(ctx, []string{slacktest.Gone}, "Weekly", "c0ffee03", r)
	if !channel.IsPermanent(err) || !strings.Contains(err.Error(), "user_disabled") {
		t.Errorf("Send to a deactivated user: %v; want a permanent error", err)
	}
	if err := h.ch.Send(ctx, nil, "Weekly", "c0ffee03", r); !channel.IsPermanent(err) {
		t.Errorf("Send to nobody: %v; want a permanent error", err)
	}
}
