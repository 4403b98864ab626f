package email_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/google/go-cmp/cmp"

	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/channel/email"
	"github.com/airut/airut/internal/testkit/mailtest"
)

// waitTimeout only bounds a wait that a broken channel would never end;
// every wait below ends on an event.
const waitTimeout = 20 * time.Second

type harness struct {
	imap     *mailtest.IMAPServer
	smtp     *mailtest.SMTPServer
	cfg      email.Config
	logs     *recorder
	received chan *channel.Message
	known    map[string]bool
}

func newHarness(t *testing.T, imapOpts mailtest.IMAPOptions, smtpOpts mailtest.SMTPOptions) *harness {
	t.Helper()
	h := &harness{
		imap:     mailtest.NewIMAPServer(t, imapOpts),
		smtp:     mailtest.NewSMTPServer(t, smtpOpts),
		logs:     &recorder{},
		received: make(chan *channel.Message, 16),
		known:    map[string]bool{"1a2b3c4d": true},
	}
	h.cfg = email.Config{
		IMAP: email.IMAPConfig{
			Server:                h.imap.Host,
			Port:                  h.imap.Port,
			Username:              h.imap.Username,
			Password:              h.imap.Password,
			TLS:                   email.TLSNone,
			UseIdle:               true,
			PollInterval:          time.Hour, // only IDLE can deliver unless a test says otherwise
			IdleReconnectInterval: time.Hour,
		},
		SMTP: email.SMTPConfig{
			Server: h.smtp.Host,
			Port:   h.smtp.Port,
			TLS:    email.TLSNone,
		},
		From:              "Airut <airut@example.com>",
		AuthorizedSenders: []string{"alice@example.com", "*@example.com"},
		TrustedAuthservID: "mx.example.com",
		DashboardBaseURL:  "http://127.0.0.1:5200/",
		ReconnectMin:      10 * time.Millisecond,
		ReconnectMax:      50 * time.Millisecond,
		SendRetryDelay:    time.Millisecond,
	}
	return h
}

func (h *harness) channel(t *testing.T) *email.Channel {
	t.Helper()
	ch, err := email.New(h.cfg, func(id string) bool { return h.known[id] }, slog.New(h.logs))
	if err != nil {
		t.Fatalf("email.New: %v", err)
	}
	return ch
}

// run starts ch.Run and returns a function that stops it and waits.
func (h *harness) run(t *testing.T, ch *email.Channel) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ch.Run(ctx, func(_ context.Context, m *channel.Message) error { h.received <- m; return nil })
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run returned %v; want nil after cancel", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func (h *harness) next(t *testing.T) *channel.Message {
	t.Helper()
	select {
	case m := <-h.received:
		return m
	case <-time.After(waitTimeout):
		t.Fatalf("no message handed to the handler within %v", waitTimeout)
		return nil
	}
}

func (h *harness) waitSMTP(t *testing.T, n int) mailtest.SMTPMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	m, err := h.smtp.WaitMessage(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return b
}

// simple builds an authenticated text message.
func simple(from, subject, body string) []byte {
	return []byte(fmt.Sprintf("Authentication-Results: mx.example.com; dmarc=pass header.from=%s\r\n"+
		"From: %s\r\nTo: airut@example.com\r\nSubject: %s\r\nMessage-ID: <%s@example.com>\r\n"+
		"Content-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n",
		from[strings.IndexByte(from, '@')+1:], from, subject, strings.ReplaceAll(subject, " ", "-"), body))
}

type parsedMail struct {
	header      mail.Header
	text, html  string
	attachments map[string]string
	types       []string
}

func parseMail(t *testing.T, raw []byte) parsedMail {
	t.Helper()
	mr, err := mail.CreateReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parse sent mail: %v", err)
	}
	p := parsedMail{header: mr.Header, attachments: map[string]string{}}
	ct, _, _ := mr.Header.ContentType()
	p.types = append(p.types, ct)
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read sent mail part: %v", err)
		}
		b, _ := io.ReadAll(part.Body)
		switch h := part.Header.(type) {
		case *mail.InlineHeader:
			ct, _, _ := h.ContentType()
			p.types = append(p.types, ct)
			if ct == "text/html" {
				p.html = string(b)
			} else {
				p.text = string(b)
			}
		case *mail.AttachmentHeader:
			name, _ := h.Filename()
			p.attachments[name] = string(b)
		}
	}
	return p
}

func TestReceiveReplyDone(t *testing.T) {
	h := newHarness(t, mailtest.IMAPOptions{}, mailtest.SMTPOptions{})
	ch := h.channel(t)
	raw := fixture(t, "rfc2047.eml")
	raw = append([]byte("Message-ID: <orig-1@example.com>\r\nReferences: <first@example.com>\r\n"), raw...)
	h.imap.Append(t, raw)
	h.run(t, ch)

	msg := h.next(t)
	want := &channel.Message{
		SourceID:      msg.SourceID,
		MessageID:     "orig-1@example.com",
		SenderAddress: "juergen@example.com",
		SenderName:    "Jürgen Müller",
		Time:          msg.Time,
		Subject:       "Änderung am Bericht – blitz",
		Body:          "Siehe Anhang.",
		Attachments: []channel.Attachment{
			{Name: "Bericht über 2026.pdf", Data: []byte("%PDF-1.4\n%äüöß\n")},
			{Name: "été notes.txt", Data: []byte("summer notes\n")},
		},
		Model:  "haiku",
		Thread: msg.Thread,
	}
	if diff := cmp.Diff(want, msg); diff != "" {
		t.Errorf("handed message mismatch (-want +got):\n%s", diff)
	}

	err := ch.Reply(context.Background(), msg, channel.Reply{
		ConversationID: "1a2b3c4d",
		Markdown:       "Fixed in **PR 7**.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
		Attachments:    []channel.Attachment{{Name: "result.pdf", Data: []byte("%PDF-result")}},
	})
	if err != nil {
		t.Fatalf("Reply: %v", err)
	}
	sent := h.waitSMTP(t, 1)
	if diff := cmp.Diff([]string{"juergen@example.com"}, sent.To); diff != "" {
		t.Errorf("SMTP recipients mismatch (-want +got):\n%s", diff)
	}
	if sent.From != "airut@example.com" {
		t.Errorf("got MAIL FROM %q; want airut@example.com", sent.From)
	}
	p := parseMail(t, sent.Data)
	if got, _ := p.header.Subject(); got != "Re: [ID:1a2b3c4d] Änderung am Bericht – blitz" {
		t.Errorf("got subject %q; want Re: [ID:1a2b3c4d] Änderung am Bericht – blitz", got)
	}
	if irt, _ := p.header.MsgIDList("In-Reply-To"); !cmp.Equal(irt, []string{"orig-1@example.com"}) {
		t.Errorf("got In-Reply-To %v; want [orig-1@example.com]", irt)
	}
	if refs, _ := p.header.MsgIDList("References"); !cmp.Equal(refs, []string{"first@example.com", "orig-1@example.com"}) {
		t.Errorf("got References %v; want [first@example.com orig-1@example.com]", refs)
	}
	if id, _ := p.header.MessageID(); !strings.HasPrefix(id, "airut.1a2b3c4d.") || !strings.HasSuffix(id, "@example.com") {
		t.Errorf("got Message-ID %q; want airut.1a2b3c4d.*@example.com", id)
	}
	if diff := cmp.Diff([]string{"multipart/mixed", "text/plain", "text/html"}, p.types); diff != "" {
		t.Errorf("MIME structure mismatch (-want +got):\n%s", diff)
	}
	if !strings.Contains(p.html, "<strong>PR 7</strong>") || !strings.Contains(p.html, "<table>") {
		t.Errorf("got html %q; want rendered Markdown", p.html)
	}
	if !strings.Contains(p.text, "Fixed in PR 7.") {
		t.Errorf("got text %q; want plain rendering", p.text)
	}
	if diff := cmp.Diff(map[string]string{"result.pdf": "%PDF-result"}, p.attachments); diff != "" {
		t.Errorf("attachments mismatch (-want +got):\n%s", diff)
	}

	if got := len(h.imap.Inbox(t)); got != 1 {
		t.Fatalf("got %d messages in INBOX before Done; want 1", got)
	}
	if err := ch.Done(context.Background(), msg, channel.OutcomeSuccess); err != nil {
		t.Fatalf("Done: %v", err)
	}
	if got := h.imap.Inbox(t); len(got) != 0 {
		t.Errorf("got %d messages in INBOX after Done; want 0", len(got))
	}
}

func TestInFlightNotHandedTwice(t *testing.T) {
	h := newHarness(t, mailtest.IMAPOptions{}, mailtest.SMTPOptions{})
	ch := h.channel(t)
	h.run(t, ch)
	h.imap.Append(t, simple("alice@example.com", "first", "one"))
	if got := h.next(t).Subject; got != "first" {
		t.Fatalf("got %q; want first", got)
	}
	// Each append wakes IDLE and starts a new pass over the whole inbox,
	// where "first" is still present but in flight.
	for _, s := range []string{"second", "third"} {
		h.imap.Append(t, simple("alice@example.com", s, s))
		if got := h.next(t).Subject; got != s {
			t.Errorf("got %q; want %q (an in-flight message was handed again?)", got, s)
		}
	}
}

func TestThreading(t *testing.T) {
	tests := []struct {
		name     string
		known    bool
		wantConv string
	}{
		{name: "known conversation", known: true, wantConv: "1a2b3c4d"},
		{name: "unknown on disk starts new", known: false, wantConv: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, mailtest.IMAPOptions{}, mailtest.SMTPOptions{})
			h.known["1a2b3c4d"] = tt.known
			ch := h.channel(t)
			h.imap.Append(t, fixture(t, "gmail_reply.eml"))
			h.run(t, ch)
			msg := h.next(t)
			if msg.ConversationID != tt.wantConv {
				t.Errorf("got conversation %q; want %q", msg.ConversationID, tt.wantConv)
			}
			if want := "Thanks, now also add a **test**.\n\n[quoted text removed]"; msg.Body != want {
				t.Errorf("got body %q; want %q", msg.Body, want)
			}
		})
	}
}

func TestRejectedMailDeletedWithoutReply(t *testing.T) {
	tests := []struct {
		name       string
		raw        []byte
		wantReason string
	}{
		{name: "forged results below real ones", raw: nil, wantReason: "no dmarc=pass"},
		{name: "two From headers", raw: nil, wantReason: "exactly one From"},
		{name: "unauthorized sender", raw: simple("mallory@example.org", "hi", "let me in"), wantReason: "not authorized"},
		{name: "wrong authserv-id", raw: nil, wantReason: "authserv-id"},
	}
	fixtures := map[string]string{
		"forged results below real ones": "auth_forged_below.eml",
		"two From headers":               "auth_two_from.eml",
		"wrong authserv-id":              "auth_wrong_authserv.eml",
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, mailtest.IMAPOptions{}, mailtest.SMTPOptions{})
			raw := tt.raw
			if raw == nil {
				raw = fixture(t, fixtures[tt.name])
			}
			h.imap.Append(t, raw)
			// A good message after the bad one: once it arrives, the bad
			// one (lower UID, handled first) has been dealt with.
			h.imap.Append(t, simple("alice@example.com", "good", "ok"))
			h.run(t, h.channel(t))
			if got := h.next(t).Subject; got != "good" {
				t.Fatalf("got %q handed over; want only the good message", got)
			}
			inbox := h.imap.Inbox(t)
			if len(inbox) != 1 || !bytes.Contains(inbox[0].Raw, []byte("Subject: good")) {
				t.Errorf("got %d messages left in INBOX; want only the good one", len(inbox))
			}
			if got := len(h.smtp.Messages()); got != 0 {
				t.Errorf("got %d SMTP messages; want none (no backscatter)", got)
			}
			recs := h.logs.find("email rejected")
			if len(recs) != 1 {
				t.Fatalf("got %d rejection log lines; want 1", len(recs))
			}
			if reason := recs[0]["reason"]; !strings.Contains(reason, tt.wantReason) {
				t.Errorf("got reason %q; want it to contain %q", reason, tt.wantReason)
			}
			if recs[0]["sender"] == "" {
				t.Error("rejection log line has no sender")
			}
		})
	}
}

func TestIdleWakeUp(t *testing.T) {
	h := newHarness(t, mailtest.IMAPOptions{}, mailtest.SMTPOptions{})
	h.imap.Append(t, simple("alice@example.com", "before", "x"))
	h.run(t, h.channel(t))
	h.next(t) // the first pass is over; the loop now waits in IDLE
	// PollInterval and IdleReconnectInterval are an hour: only the IDLE
	// notification can deliver this within the test.
	h.imap.Append(t, simple("alice@example.com", "during idle", "y"))
	if got := h.next(t).Subject; got != "during idle" {
		t.Errorf("got %q; want %q", got, "during idle")
	}
}

func TestPolling(t *testing.T) {
	tests := []struct {
		name    string
		opts    mailtest.IMAPOptions
		useIdle bool
	}{
		{name: "use_idle off", useIdle: false},
		{name: "server without IDLE", opts: mailtest.IMAPOptions{NoIdle: true}, useIdle: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.opts, mailtest.SMTPOptions{})
			h.cfg.IMAP.UseIdle = tt.useIdle
			h.cfg.IMAP.PollInterval = 20 * time.Millisecond
			h.imap.Append(t, simple("alice@example.com", "before", "x"))
			ch := h.channel(t)
			h.run(t, ch)
			msg := h.next(t)
			h.imap.Append(t, simple("alice@example.com", "polled", "y"))
			if got := h.next(t).Subject; got != "polled" {
				t.Errorf("got %q; want polled", got)
			}
			// Done works without UIDPLUS too (plain EXPUNGE).
			if err := ch.Done(context.Background(), msg, channel.OutcomeSuccess); err != nil {
				t.Fatalf("Done: %v", err)
			}
			if got := len(h.imap.Inbox(t)); got != 1 {
				t.Errorf("got %d messages in INBOX after Done; want 1", got)
			}
			// The expunge from Done's connection must not hold back news
			// of later messages on the polling connection.
			h.imap.Append(t, simple("alice@example.com", "after done", "z"))
			if got := h.next(t).Subject; got != "after done" {
				t.Errorf("got %q; want %q", got, "after done")
			}
		})
	}
}

func TestReconnectAfterDrop(t *testing.T) {
	h := newHarness(t, mailtest.IMAPOptions{}, mailtest.SMTPOptions{})
	h.imap.Append(t, simple("alice@example.com", "one", "x"))
	ch := h.channel(t)
	h.run(t, ch)
	first := h.next(t)
	if n := h.imap.DropConnections(); n == 0 {
		t.Fatal("no connection to drop")
	}
	h.imap.Append(t, simple("alice@example.com", "two", "y"))
	if got := h.next(t).Subject; got != "two" {
		t.Errorf("got %q; want two (and not the in-flight one again)", got)
	}
	if got := h.imap.Connections(); got < 2 {
		t.Errorf("got %d IMAP connections; want a reconnect", got)
	}
	if len(h.logs.find("imap connection lost; reconnecting")) == 0 {
		t.Error("no reconnect log line")
	}
	// Done's own connection survives a drop too.
	h.imap.DropConnections()
	if err := ch.Done(context.Background(), first, channel.OutcomeSuccess); err != nil {
		t.Fatalf("Done after drop: %v", err)
	}
}

func TestRestartHandsUnfinishedMessageAgain(t *testing.T) {
	h := newHarness(t, mailtest.IMAPOptions{}, mailtest.SMTPOptions{})
	h.imap.Append(t, simple("alice@example.com", "crashy", "x"))
	stop := h.run(t, h.channel(t))
	h.next(t)
	stop() // the process "crashes" before Done

	h.run(t, h.channel(t))
	if got := h.next(t).Subject; got != "crashy" {
		t.Errorf("got %q after restart; want the unfinished message again", got)
	}
}

func TestAcknowledge(t *testing.T) {
	h := newHarness(t, mailtest.IMAPOptions{}, mailtest.SMTPOptions{})
	ch := h.channel(t)
	h.imap.Append(t, simple("alice@example.com", "Fix the build", "please"))
	h.run(t, ch)
	msg := h.next(t)
	if err := ch.Acknowledge(context.Background(), msg, "0badcafe"); err != nil {
		t.Fatalf("Acknowledge: %v", err)
	}
	p := parseMail(t, h.waitSMTP(t, 1).Data)
	if got, _ := p.header.Subject(); got != "Re: [ID:0badcafe] Fix the build" {
		t.Errorf("got subject %q; want Re: [ID:0badcafe] Fix the build", got)
	}
	if irt, _ := p.header.MsgIDList("In-Reply-To"); !cmp.Equal(irt, []string{"Fix-the-build@example.com"}) {
		t.Errorf("got In-Reply-To %v; want [Fix-the-build@example.com]", irt)
	}
	link := "http://127.0.0.1:5200/conversations/0badcafe"
	if !strings.Contains(p.text, link) || !strings.Contains(p.html, `href="`+link+`"`) {
		t.Errorf("got text %q and html %q; want the dashboard link %s", p.text, p.html, link)
	}
}

func TestReplyLinksTheTaskPage(t *testing.T) {
	h := newHarness(t, mailtest.IMAPOptions{}, mailtest.SMTPOptions{})
	ch := h.channel(t)
	h.imap.Append(t, simple("alice@example.com", "Fix the build", "please"))
	h.run(t, ch)
	msg := h.next(t)
	if err := ch.Reply(context.Background(), msg, channel.Reply{ConversationID: "0badcafe", TaskID: "5b2e8d10aa41",
		Outcome: channel.OutcomeSuccess, Markdown: "Done."}); err != nil {
		t.Fatalf("Reply: %v", err)
	}
	p := parseMail(t, h.waitSMTP(t, 1).Data)
	link := "http://127.0.0.1:5200/tasks/5b2e8d10aa41"
	if !strings.Contains(p.text, link) || !strings.Contains(p.html, `href="`+link+`"`) {
		t.Errorf("got text %q and html %q; want the task link %s", p.text, p.html, link)
	}
}

func TestSMTPDelivery(t *testing.T) {
	tests := []struct {
		name     string
		smtp     mailtest.SMTPOptions
		mutate   func(*email.Config)
		failNext int
		wantErr  string // "" means delivered
	}{
		{name: "retried after temporary failures", failNext: 4},
		{name: "fails after five tries", failNext: 5, wantErr: "try again later"},
		{name: "auth", smtp: mailtest.SMTPOptions{Username: "bot", Password: "s3cret"},
			mutate: func(c *email.Config) { c.SMTP.RequireAuth, c.SMTP.Username, c.SMTP.Password = true, "bot", "s3cret" }},
		{name: "auth wrong password", smtp: mailtest.SMTPOptions{Username: "bot", Password: "s3cret"},
			mutate: func(c *email.Config) {
				c.SMTP.RequireAuth, c.SMTP.Username, c.SMTP.Password = true, "bot", "hunter2-wrong"
			},
			wantErr: "auth"},
		{name: "starttls required but not offered",
			mutate:  func(c *email.Config) { c.SMTP.TLS = email.TLSStartTLS },
			wantErr: "starttls"},
		{name: "opportunistic without starttls is plain",
			mutate: func(c *email.Config) { c.SMTP.TLS = email.TLSOpportunistic }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, mailtest.IMAPOptions{}, tt.smtp)
			if tt.mutate != nil {
				tt.mutate(&h.cfg)
			}
			ch := h.channel(t)
			h.smtp.FailNext(tt.failNext)
			msg := &channel.Message{
				SenderAddress: "alice@example.com",
				Subject:       "x",
				Thread:        map[string]string{"message_id": "m@example.com"},
			}
			err := ch.Reply(context.Background(), msg, channel.Reply{ConversationID: "1a2b3c4d", Markdown: "done"})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tt.wantErr)) {
					t.Fatalf("Reply error = %v; want one containing %q", err, tt.wantErr)
				}
				if got := len(h.smtp.Messages()); got != 0 {
					t.Errorf("got %d delivered; want 0", got)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error %q leaks the password", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Reply: %v", err)
			}
			if got := len(h.smtp.Messages()); got != 1 {
				t.Errorf("got %d delivered; want exactly 1", got)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name    string
		cfg     email.Config
		wantErr []string
	}{
		{name: "empty", cfg: email.Config{}, wantErr: []string{"imap.server: required", "smtp.server: required", "from: required", "auth.authorized_senders"}},
		{name: "bad tls mode", cfg: email.Config{
			IMAP: email.IMAPConfig{Server: "imap", Username: "u", TLS: "maybe"},
			SMTP: email.SMTPConfig{Server: "smtp"}, From: "a@example.com", AuthorizedSenders: []string{"*@example.com"},
		}, wantErr: []string{"imap.tls"}},
		{name: "bad sender pattern", cfg: email.Config{
			IMAP: email.IMAPConfig{Server: "imap", Username: "u"},
			SMTP: email.SMTPConfig{Server: "smtp"}, From: "a@example.com", AuthorizedSenders: []string{"*"},
		}, wantErr: []string{"auth.authorized_senders[0]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := email.New(tt.cfg, func(string) bool { return false }, nil)
			if err == nil {
				t.Fatal("New: got nil error; want validation errors")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q; want it to mention %q", err, w)
				}
			}
		})
	}
}

// recorder is a slog.Handler that keeps records for assertions.
type recorder struct {
	mu   sync.Mutex
	recs []map[string]string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	m := map[string]string{"msg": rec.Message}
	rec.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.String()
		return true
	})
	r.mu.Lock()
	r.recs = append(r.recs, m)
	r.mu.Unlock()
	return nil
}

func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) find(msg string) []map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []map[string]string
	for _, m := range r.recs {
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func TestSendNewThread(t *testing.T) {
	h := newHarness(t, mailtest.IMAPOptions{}, mailtest.SMTPOptions{})
	ch := h.channel(t)
	err := ch.Send(context.Background(), []string{"Alice <alice@example.com>", "bob@example.com"},
		"Nightly report", "1a2b3c4d", channel.Reply{Markdown: "All green."})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	sent := h.waitSMTP(t, 1)
	if diff := cmp.Diff([]string{"alice@example.com", "bob@example.com"}, sent.To); diff != "" {
		t.Errorf("recipients mismatch (-want +got):\n%s", diff)
	}
	p := parseMail(t, sent.Data)
	if got, _ := p.header.Subject(); got != "[ID:1a2b3c4d] Nightly report" {
		t.Errorf("got subject %q; want [ID:1a2b3c4d] Nightly report", got)
	}

	// A reply to it lands in the same conversation.
	id, _ := p.header.MessageID()
	reply := simple("alice@example.com", "Re: Nightly report", "why?")
	reply = append([]byte("In-Reply-To: <"+id+">\r\n"), reply...)
	h.imap.Append(t, reply)
	h.run(t, ch)
	if got := h.next(t).ConversationID; got != "1a2b3c4d" {
		t.Errorf("got conversation %q for a reply; want 1a2b3c4d", got)
	}
}

// TestDoneDeletesFollowUps is the duplicate-reply bug: Done deleted on a
// kept connection that the server had not told about later messages, and
// an RFC 3501 server (Dovecot, and mailtest like it) answers OK to a UID
// STORE for a UID the session does not know, doing nothing. Every
// follow-up stayed in the inbox and was answered again after a restart.
func TestDoneDeletesFollowUps(t *testing.T) {
	h := newHarness(t, mailtest.IMAPOptions{}, mailtest.SMTPOptions{})
	ch := h.channel(t)
	h.run(t, ch)
	for i, subject := range []string{"first", "second", "third"} {
		h.imap.Append(t, simple("alice@example.com", subject, "x"))
		msg := h.next(t)
		if msg.Subject != subject {
			t.Fatalf("got %q; want %q", msg.Subject, subject)
		}
		if err := ch.Done(context.Background(), msg, channel.OutcomeSuccess); err != nil {
			t.Fatalf("Done #%d: %v", i+1, err)
		}
		if got := h.imap.Inbox(t); len(got) != 0 {
			t.Fatalf("after Done of %q the inbox still holds %d message(s) (flags %v): the delete did not happen", subject, len(got), got[0].Flags)
		}
	}
}
