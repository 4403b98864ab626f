package email_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/testkit/mailtest"
)

// quiet fails if the handler gets a message within d. It can only miss a
// late extra message, never fail a correct channel.
func (h *harness) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case m := <-h.received:
		t.Fatalf("got %q handed over; want nothing (in-flight limit or duplicate)", m.Subject)
	case <-time.After(d):
	}
}

func subjects(t *testing.T, h *harness, n int) map[string]*channel.Message {
	t.Helper()
	got := map[string]*channel.Message{}
	for i := 0; i < n; i++ {
		m := h.next(t)
		if got[m.Subject] != nil {
			t.Fatalf("%q handed over twice", m.Subject)
		}
		got[m.Subject] = m
	}
	return got
}

// TestInflightLimit: the inbox is the queue, so the channel fetches only
// what the in-flight limit has room for, and Done or Release makes room.
func TestInflightLimit(t *testing.T) {
	h := newHarness(t, mailtest.IMAPOptions{}, mailtest.SMTPOptions{})
	h.cfg.MaxInflight = 2
	for i := 1; i <= 5; i++ {
		h.imap.Append(t, simple("alice@example.com", fmt.Sprintf("m%d", i), "x"))
	}
	ch := h.channel(t)
	h.run(t, ch)
	first := subjects(t, h, 2)
	if first["m1"] == nil || first["m2"] == nil {
		t.Fatalf("got %v; want the oldest two, m1 and m2", first)
	}
	h.quiet(t, 200*time.Millisecond)

	if err := ch.Done(context.Background(), first["m1"], channel.OutcomeSuccess); err != nil {
		t.Fatal(err)
	}
	if got := h.next(t).Subject; got != "m3" {
		t.Fatalf("after Done got %q; want m3", got)
	}
	h.quiet(t, 200*time.Millisecond)

	// Released: left for later by the handler, so handed over again.
	ch.Release(first["m2"])
	if got := h.next(t).Subject; got != "m2" {
		t.Fatalf("after Release got %q; want m2 again", got)
	}
}

// TestRejectsDoNotTakeRoom: rejected mail is deleted in the same pass and
// the pass goes on, so a burst of spam cannot hold real mail back.
func TestRejectsDoNotTakeRoom(t *testing.T) {
	h := newHarness(t, mailtest.IMAPOptions{}, mailtest.SMTPOptions{})
	h.cfg.MaxInflight = 2
	for i := 0; i < 5; i++ {
		h.imap.Append(t, simple("mallory@evil.example", fmt.Sprintf("spam%d", i), "x"))
	}
	h.imap.Append(t, simple("alice@example.com", "real", "x"))
	h.run(t, h.channel(t))
	if got := h.next(t).Subject; got != "real" {
		t.Fatalf("got %q; want real", got)
	}
	waitFor(t, "the spam to be deleted", func() bool { return len(h.imap.Inbox(t)) == 1 })
}

// TestDropMidFetch: the server drops the connection while the channel
// waits for FETCH data. The channel reconnects; what it had handed over
// is not handed again, what it had not is.
func TestDropMidFetch(t *testing.T) {
	h := newHarness(t, mailtest.IMAPOptions{}, mailtest.SMTPOptions{})
	h.cfg.MaxInflight = 2
	for i := 1; i <= 3; i++ {
		h.imap.Append(t, simple("alice@example.com", fmt.Sprintf("m%d", i), "x"))
	}
	ch := h.channel(t)
	h.run(t, ch)
	first := subjects(t, h, 2)
	// The pass after Done fetches m3: that FETCH breaks the connection.
	h.imap.DropOnFetch(1)
	if err := ch.Done(context.Background(), first["m1"], channel.OutcomeSuccess); err != nil {
		t.Fatal(err)
	}
	if got := h.next(t).Subject; got != "m3" {
		t.Fatalf("got %q; want m3 after the reconnect", got)
	}
	h.quiet(t, 200*time.Millisecond)
	if len(h.logs.find("imap connection lost; reconnecting")) == 0 {
		t.Error("the fetch did not fail: no reconnect logged")
	}
	for _, m := range []*channel.Message{first["m2"]} {
		if err := ch.Done(context.Background(), m, channel.OutcomeSuccess); err != nil {
			t.Fatalf("Done after the drop: %v", err)
		}
	}
}

// TestByeRedialsAtOnce: a server that says BYE is shutting down and
// coming back; the channel redials without a backoff step, which here is
// an hour long so only an immediate redial can deliver the next message.
// A connection that just breaks waits for the backoff.
func TestByeRedialsAtOnce(t *testing.T) {
	h := newHarness(t, mailtest.IMAPOptions{}, mailtest.SMTPOptions{})
	h.cfg.ReconnectMin, h.cfg.ReconnectMax = time.Hour, time.Hour
	h.run(t, h.channel(t))
	h.imap.Append(t, simple("alice@example.com", "before", "x"))
	h.next(t)
	if n := h.imap.Bye("Server shutting down."); n == 0 {
		t.Fatal("no connection to say BYE to")
	}
	h.imap.Append(t, simple("alice@example.com", "after", "x"))
	if got := h.next(t).Subject; got != "after" {
		t.Fatalf("got %q; want after", got)
	}
	lost := h.logs.find("imap connection lost; reconnecting")
	if len(lost) == 0 || lost[0]["retry_in"] != "0s" {
		t.Errorf("reconnect log %v; want retry_in 0s after BYE", lost)
	}

	h.imap.DropConnections()
	waitFor(t, "the drop to be logged", func() bool { return len(h.logs.find("imap connection lost; reconnecting")) == 2 })
	if got := h.logs.find("imap connection lost; reconnecting")[1]["retry_in"]; got != "1h0m0s" {
		t.Errorf("retry_in after a plain drop = %s; want the backoff, 1h0m0s", got)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
