package email_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/channel/email"
	"github.com/airut/airut/internal/testkit/mailtest"
)

var realAccounts = map[string]string{"airut@example.com": "airut-pw-1", "alice@example.org": "alice-pw-2"}

// realChannel is the email channel on Debian's Dovecot and Postfix with
// the production TLS modes: IMAPS with IDLE, submission with STARTTLS and
// AUTH, the servers' private CA given by ca_file.
func realChannel(t *testing.T, m *mailtest.RealMail, mutate func(*email.Config)) (*email.Channel, chan *channel.Message, *recorder) {
	t.Helper()
	cfg := email.Config{
		IMAP: email.IMAPConfig{Server: m.Host, Port: m.IMAPSPort, Username: "airut@example.com", Password: "airut-pw-1",
			TLS: email.TLSImplicit, CAFile: m.CAFile, UseIdle: true, IdleReconnectInterval: time.Hour},
		SMTP: email.SMTPConfig{Server: m.Host, Port: m.SubmissionPort, Username: "airut@example.com", Password: "airut-pw-1",
			RequireAuth: true, TLS: email.TLSStartTLS, CAFile: m.CAFile},
		From:              "Airut <airut@example.com>",
		AuthorizedSenders: []string{"alice@example.org"},
		TrustedAuthservID: m.AuthservID,
		ReconnectMin:      50 * time.Millisecond,
		ReconnectMax:      time.Second,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	logs := &recorder{}
	ch, err := email.New(cfg, func(string) bool { return false }, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *channel.Message, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ch.Run(ctx, func(_ context.Context, msg *channel.Message) error { got <- msg; return nil })
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return ch, got, logs
}

func signed(t *testing.T, m *mailtest.RealMail, subject string) []byte {
	t.Helper()
	raw := []byte(fmt.Sprintf("From: Alice <alice@example.org>\r\nTo: airut@example.com\r\nSubject: %s\r\nMessage-ID: <%d@example.org>\r\n"+
		"Date: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplease\r\n",
		subject, time.Now().UnixNano(), time.Now().Format(time.RFC1123Z)))
	out, err := m.DomainKey("example.org").Sign(raw)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func receive(t *testing.T, got chan *channel.Message) *channel.Message {
	t.Helper()
	select {
	case msg := <-got:
		return msg
	case <-time.After(time.Minute):
		t.Fatal("no message from Dovecot within a minute")
		return nil
	}
}

// TestDovecotDoneDeletesFollowUps is the duplicate-reply bug on the real
// server: Dovecot answers OK to UID STORE/UID EXPUNGE for a UID it has not
// announced to the session, and changes nothing. The old Done deleted on
// a kept connection that had not heard of later messages, so every
// follow-up stayed in the inbox with FLAGS () and was answered again.
func TestDovecotDoneDeletesFollowUps(t *testing.T) {
	m := mailtest.StartRealMail(t, realAccounts)
	ch, got, _ := realChannel(t, m, nil)
	for i := 1; i <= 3; i++ {
		subject := fmt.Sprintf("message %d", i)
		m.Deliver(t, "alice@example.org", "airut@example.com", signed(t, m, subject))
		msg := receive(t, got)
		if msg.Subject != subject {
			t.Fatalf("got %q; want %q", msg.Subject, subject)
		}
		if err := ch.Done(context.Background(), msg, channel.OutcomeSuccess); err != nil {
			t.Fatalf("Done of %q: %v", subject, err)
		}
		if left := m.Mailbox(t, "airut@example.com"); len(left) != 0 {
			t.Fatalf("after Done of %q Dovecot still holds %d message(s), flags %v: the delete did not happen", subject, len(left), left[0].Flags)
		}
	}
}

// TestDovecotRestartMidIdle: Dovecot restarts (as systemd does it) under
// the idling channel, which reconnects and sees mail delivered meanwhile,
// without handing the in-flight message over again; Done then works on
// the new server process. Whether the client sees Dovecot's "* BYE Server
// shutting down." is a race here: over IMAPS the login process holds the
// TLS session and dies by the same SIGTERM as the IMAP process, so the
// BYE is often lost, and the channel must not depend on it (the BYE path
// itself is TestByeRedialsAtOnce).
func TestDovecotRestartMidIdle(t *testing.T) {
	m := mailtest.StartRealMail(t, realAccounts)
	ch, got, logs := realChannel(t, m, func(c *email.Config) { c.ReconnectMin, c.ReconnectMax = 200*time.Millisecond, 2*time.Second })
	m.Deliver(t, "alice@example.org", "airut@example.com", signed(t, m, "before"))
	first := receive(t, got)
	m.RestartDovecot(t)
	m.Deliver(t, "alice@example.org", "airut@example.com", signed(t, m, "after"))
	if msg := receive(t, got); msg.Subject != "after" {
		t.Fatalf("got %q; want after (and not the in-flight one again)", msg.Subject)
	}
	lost := logs.find("imap connection lost; reconnecting")
	if len(lost) == 0 {
		t.Fatal("no reconnect logged: the restart did not reach the channel")
	}
	t.Logf("first reconnect after the restart: %v", lost[0])
	if err := ch.Done(context.Background(), first, channel.OutcomeSuccess); err != nil {
		t.Fatalf("Done after the restart: %v", err)
	}
	if left := m.Mailbox(t, "airut@example.com"); len(left) != 1 {
		t.Errorf("%d message(s) left; want only the second", len(left))
	}
}

// TestDovecotProbe: the probe logs in over IMAPS and authenticates over
// submission with the private CA; without ca_file it names the
// certificate, with a wrong password the login.
func TestDovecotProbe(t *testing.T) {
	m := mailtest.StartRealMail(t, realAccounts)
	tests := []struct {
		name   string
		mutate func(*email.Config)
		want   []email.Problem
	}{
		{"ok", nil, nil},
		{"no ca_file", func(c *email.Config) { c.IMAP.CAFile, c.SMTP.CAFile = "", "" }, []email.Problem{email.ProblemCertificate, email.ProblemCertificate}},
		{"wrong password", func(c *email.Config) { c.IMAP.Password, c.SMTP.Password = "nope", "nope" }, []email.Problem{email.ProblemLogin, email.ProblemLogin}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch, _, _ := realChannel(t, m, func(c *email.Config) {
				c.ReconnectMin, c.ReconnectMax = time.Hour, time.Hour
				if tt.mutate != nil {
					tt.mutate(c)
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if got := problems(ch.Probe(ctx)); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("problems %v; want %v", got, tt.want)
			}
		})
	}
}
