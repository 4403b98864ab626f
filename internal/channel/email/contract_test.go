package email_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/testkit/mailtest"
)

// TestMessageIdentity: the channel gives each message its Message-ID as
// its stable identity, beside the UID-based source id.
func TestMessageIdentity(t *testing.T) {
	h := newHarness(t, mailtest.IMAPOptions{}, mailtest.SMTPOptions{})
	h.imap.Append(t, simple("alice@example.com", "identity check", "hello"))
	h.run(t, h.channel(t))
	m := h.next(t)
	if m.MessageID != "identity-check@example.com" {
		t.Errorf("MessageID: got %q; want the Message-ID header without brackets", m.MessageID)
	}
	if m.SourceID == "" || m.SourceID == m.MessageID {
		t.Errorf("SourceID: got %q; want the uidvalidity:uid", m.SourceID)
	}
}

// TestHandlerRefusal: a message the handler does not take (it returns an
// error) is handed over again on the next pass, not kept "in flight" until
// a restart.
func TestHandlerRefusal(t *testing.T) {
	h := newHarness(t, mailtest.IMAPOptions{}, mailtest.SMTPOptions{})
	h.imap.Append(t, simple("alice@example.com", "first", "one"))
	ch := h.channel(t)
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var seen []string
	got := make(chan string, 8)
	done := make(chan error, 1)
	go func() {
		done <- ch.Run(ctx, func(_ context.Context, m *channel.Message) error {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, m.Subject)
			got <- m.Subject
			if len(seen) == 1 {
				return errors.New("journal unreadable")
			}
			return nil
		})
	}()
	defer func() {
		cancel()
		<-done
	}()
	wait := func() string {
		t.Helper()
		select {
		case s := <-got:
			return s
		case <-time.After(waitTimeout):
			t.Fatalf("nothing handed over")
			return ""
		}
	}
	if s := wait(); s != "first" {
		t.Fatalf("first hand-over: %q", s)
	}
	// A new message wakes the loop: the refused one comes again with it.
	h.imap.Append(t, simple("alice@example.com", "second", "two"))
	a, b := wait(), wait()
	if !((a == "first" && b == "second") || (a == "second" && b == "first")) {
		t.Errorf("after the refusal: got %q and %q; want first again and second", a, b)
	}
}

// TestSMTPPermanentFailure: a 5xx from the SMTP server is a permanent
// channel error, not retried by the channel; a 4xx is transient.
func TestSMTPPermanentFailure(t *testing.T) {
	tests := []struct {
		name      string
		code      int
		permanent bool
		tries     int // DATA commands the channel makes
	}{
		{name: "554 refused", code: 554, permanent: true, tries: 1},
		{name: "451 try later", code: 451, permanent: false, tries: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, mailtest.IMAPOptions{}, mailtest.SMTPOptions{})
			h.cfg.SendAttempts = 3
			ch := h.channel(t)
			h.smtp.FailNextWith(10, tt.code)
			msg := &channel.Message{SenderAddress: "alice@example.com", Subject: "x",
				Thread: map[string]string{"message_id": "m@example.com"}}
			err := ch.Reply(context.Background(), msg, channel.Reply{ConversationID: "1a2b3c4d", Markdown: "done"})
			if err == nil {
				t.Fatal("Reply succeeded; want the server's refusal")
			}
			if got := channel.IsPermanent(err); got != tt.permanent {
				t.Errorf("IsPermanent(%v): got %v; want %v", err, got, tt.permanent)
			}
			if got := h.smtp.Rejected(); got != tt.tries {
				t.Errorf("DATA attempts: got %d; want %d", got, tt.tries)
			}
		})
	}
}
