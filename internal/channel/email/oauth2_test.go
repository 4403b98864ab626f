package email_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/channel/email"
	"github.com/airut/airut/internal/testkit/mailtest"
)

const (
	oauthClientID = "11111111-2222-3333-4444-555555555555"
	oauthSecret   = "cl1ent-s3cret~value"
	mailbox       = "airut@example.com"
)

// newOAuth2Harness is a harness whose servers accept only XOAUTH2 with
// serverTokens (IMAP also keeps password login, which Inbox uses) and whose
// channel gets its tokens from the returned endpoint.
func newOAuth2Harness(t *testing.T, tokenOpts mailtest.TokenOptions, serverTokens ...string) (*harness, *mailtest.TokenServer) {
	t.Helper()
	tokenOpts.ClientID = oauthClientID
	if tokenOpts.ClientSecret == "" {
		tokenOpts.ClientSecret = oauthSecret
	}
	tokens := mailtest.NewTokenServer(t, tokenOpts)
	h := newHarness(t,
		mailtest.IMAPOptions{OAuth2Tokens: serverTokens},
		mailtest.SMTPOptions{Username: mailbox, OAuth2Tokens: serverTokens})
	h.cfg.IMAP.Password = ""
	h.cfg.SMTP.Username = mailbox
	h.cfg.SMTP.RequireAuth = true
	h.cfg.OAuth2 = &email.OAuth2Config{
		TenantID:     "contoso.onmicrosoft.com",
		ClientID:     oauthClientID,
		ClientSecret: oauthSecret,
		TokenURL:     tokens.URL,
	}
	return h, tokens
}

func (h *harness) waitTokenRequests(t *testing.T, tokens *mailtest.TokenServer, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := tokens.WaitRequests(ctx, n); err != nil {
		t.Fatal(err)
	}
}

// assertNoSecret fails if any log record carries the client secret.
func (h *harness) assertNoSecret(t *testing.T) {
	t.Helper()
	h.logs.mu.Lock()
	defer h.logs.mu.Unlock()
	for _, rec := range h.logs.recs {
		for k, v := range rec {
			if strings.Contains(v, oauthSecret) {
				t.Errorf("log record %q has the client secret in %s: %q", rec["msg"], k, v)
			}
		}
	}
}

func TestOAuth2ReceiveReplyDone(t *testing.T) {
	h, tokens := newOAuth2Harness(t, mailtest.TokenOptions{Tokens: []string{"m365-token"}}, "m365-token")
	ch := h.channel(t)
	h.imap.Append(t, simple("alice@example.com", "Run the tests", "please"))
	h.run(t, ch)

	msg := h.next(t)
	ctx := context.Background()
	if err := ch.Acknowledge(ctx, msg, "1a2b3c4d"); err != nil {
		t.Fatalf("Acknowledge: %v", err)
	}
	if err := ch.Reply(ctx, msg, channel.Reply{ConversationID: "1a2b3c4d", Markdown: "All green."}); err != nil {
		t.Fatalf("Reply: %v", err)
	}
	if err := ch.Done(ctx, msg, channel.OutcomeSuccess); err != nil {
		t.Fatalf("Done: %v", err)
	}

	// Two IMAP connections (receive loop, Done) and two SMTP sessions
	// shared one token.
	xo := mailtest.Login{Mechanism: "XOAUTH2", Username: mailbox}
	if diff := cmp.Diff([]mailtest.Login{xo, xo}, h.imap.Logins()); diff != "" {
		t.Errorf("imap logins mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]mailtest.Login{xo, xo}, h.smtp.Logins()); diff != "" {
		t.Errorf("smtp logins mismatch (-want +got):\n%s", diff)
	}
	if got := len(tokens.Requests()); got != 1 {
		t.Errorf("got %d token requests for four logins; want 1", got)
	}
	if got := len(h.smtp.Messages()); got != 2 {
		t.Errorf("got %d messages sent; want 2 (acknowledgement and reply)", got)
	}
	if got := h.imap.Inbox(t); len(got) != 0 {
		t.Errorf("inbox holds %d messages after Done; want 0", len(got))
	}
	h.assertNoSecret(t)
}

func TestOAuth2TokenEndpointFailure(t *testing.T) {
	// The endpoint knows another secret, so every request gets 401.
	h, tokens := newOAuth2Harness(t, mailtest.TokenOptions{ClientSecret: "the-real-secret"}, "m365-token")
	ch := h.channel(t)
	h.run(t, ch)
	// The second request comes from the reconnect, after the first
	// failure was logged.
	h.waitTokenRequests(t, tokens, 2)
	lost := h.logs.find("imap connection lost; reconnecting")
	if len(lost) == 0 {
		t.Fatal("no \"imap connection lost\" log record after a failed token request")
	}
	for _, want := range []string{tokens.URL, "401 Unauthorized", "invalid_client"} {
		if got := lost[0]["error"]; !strings.Contains(got, want) {
			t.Errorf("got logged error %q; want it to contain %q", got, want)
		}
	}

	msg := &channel.Message{SenderAddress: "alice@example.com", Subject: "x", Thread: map[string]string{}}
	err := ch.Reply(context.Background(), msg, channel.Reply{ConversationID: "1a2b3c4d", Markdown: "done"})
	if err == nil {
		t.Fatal("Reply: got nil error with a failing token endpoint")
	}
	for _, want := range []string{tokens.URL, "401 Unauthorized"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("got Reply error %q; want it to contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), oauthSecret) {
		t.Errorf("Reply error %q contains the client secret", err)
	}
	if got := len(h.smtp.Messages()); got != 0 {
		t.Errorf("got %d messages sent; want 0", got)
	}
	if got := h.imap.Logins(); len(got) != 0 {
		t.Errorf("got imap logins %v; want none", got)
	}
	h.assertNoSecret(t)
}

func TestOAuth2IMAPRejectedTokenIsReplaced(t *testing.T) {
	// The first token is refused (revoked); the channel drops it and the
	// reconnect logs in with a fresh one.
	h, tokens := newOAuth2Harness(t, mailtest.TokenOptions{Tokens: []string{"revoked", "fresh"}}, "fresh")
	ch := h.channel(t)
	h.imap.Append(t, simple("alice@example.com", "Hello", "hi"))
	h.run(t, ch)
	h.next(t)

	lost := h.logs.find("imap connection lost; reconnecting")
	if len(lost) == 0 {
		t.Fatal("no \"imap connection lost\" log record for the refused token")
	}
	for _, want := range []string{"imap login as " + mailbox + " with xoauth2", "AUTHENTICATE failed"} {
		if got := lost[0]["error"]; !strings.Contains(got, want) {
			t.Errorf("got logged error %q; want it to contain %q", got, want)
		}
	}
	if got := len(tokens.Requests()); got != 2 {
		t.Errorf("got %d token requests; want 2", got)
	}
	want := []mailtest.Login{{Mechanism: "XOAUTH2", Username: mailbox}}
	if diff := cmp.Diff(want, h.imap.Logins()); diff != "" {
		t.Errorf("imap logins mismatch (-want +got):\n%s", diff)
	}
}

func TestOAuth2SMTPRejectedToken(t *testing.T) {
	h, tokens := newOAuth2Harness(t, mailtest.TokenOptions{Tokens: []string{"revoked", "fresh"}}, "fresh")
	ch := h.channel(t)
	msg := &channel.Message{SenderAddress: "alice@example.com", Subject: "x", Thread: map[string]string{}}
	reply := func() error {
		return ch.Reply(context.Background(), msg, channel.Reply{ConversationID: "1a2b3c4d", Markdown: "done"})
	}

	err := reply()
	if err == nil {
		t.Fatal("Reply: got nil error with a refused token")
	}
	for _, want := range []string{"smtp auth as " + mailbox + " with xoauth2", "535"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("got Reply error %q; want it to contain %q", err, want)
		}
	}
	if got := len(h.smtp.Messages()); got != 0 {
		t.Errorf("got %d messages sent with a refused token; want 0", got)
	}

	// The refused token was dropped: the next reply fetches another.
	if err := reply(); err != nil {
		t.Fatalf("second Reply: %v", err)
	}
	if got := len(tokens.Requests()); got != 2 {
		t.Errorf("got %d token requests; want 2", got)
	}
	if got := len(h.smtp.Messages()); got != 1 {
		t.Errorf("got %d messages sent; want 1", got)
	}
}

func TestNewValidatesOAuth2(t *testing.T) {
	base := func(mut func(*email.Config)) email.Config {
		c := email.Config{
			IMAP:              email.IMAPConfig{Server: "outlook.office365.com", Username: mailbox},
			SMTP:              email.SMTPConfig{Server: "smtp.office365.com", Username: mailbox, RequireAuth: true},
			From:              mailbox,
			AuthorizedSenders: []string{"*@example.com"},
			OAuth2: &email.OAuth2Config{
				TenantID: "contoso.onmicrosoft.com", ClientID: oauthClientID, ClientSecret: oauthSecret,
			},
		}
		if mut != nil {
			mut(&c)
		}
		return c
	}
	tests := []struct {
		name    string
		cfg     email.Config
		wantErr []string // nil means valid
	}{
		{name: "valid", cfg: base(nil)},
		{name: "token url override without tenant", cfg: base(func(c *email.Config) {
			c.OAuth2.TenantID, c.OAuth2.TokenURL = "", "https://login.example.net/token"
		})},
		{name: "missing fields", cfg: base(func(c *email.Config) { c.OAuth2 = &email.OAuth2Config{} }),
			wantErr: []string{"microsoft_oauth2.tenant_id: required", "microsoft_oauth2.client_id: required", "microsoft_oauth2.client_secret: required"}},
		{name: "password as well", cfg: base(func(c *email.Config) { c.IMAP.Password, c.SMTP.Password = "pw", "pw" }),
			wantErr: []string{"imap.password: must be empty", "smtp.password: must be empty"}},
		{name: "neither password nor oauth2", cfg: base(func(c *email.Config) { c.OAuth2 = nil }),
			wantErr: []string{"imap.password: required", "smtp.password: required"}},
		{name: "tenant with a path", cfg: base(func(c *email.Config) { c.OAuth2.TenantID = "evil/../x" }),
			wantErr: []string{"microsoft_oauth2.tenant_id: must be"}},
		{name: "plain http token url", cfg: base(func(c *email.Config) { c.OAuth2.TokenURL = "http://login.example.net/token" }),
			wantErr: []string{"microsoft_oauth2.token_url", "loopback"}},
		{name: "token url not http", cfg: base(func(c *email.Config) { c.OAuth2.TokenURL = "file:///etc/passwd" }),
			wantErr: []string{"microsoft_oauth2.token_url", "https"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := email.New(tt.cfg, func(string) bool { return false }, nil)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("New: %v; want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("New: got nil error; want validation errors")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q; want it to mention %q", err, w)
				}
			}
			if tt.cfg.OAuth2 != nil && tt.cfg.OAuth2.TenantID != "" && strings.Contains(err.Error(), tt.cfg.OAuth2.TenantID) {
				t.Errorf("error %q repeats the tenant id", err)
			}
			if strings.Contains(err.Error(), oauthSecret) {
				t.Errorf("error %q contains the client secret", err)
			}
		})
	}
}

func TestConfigLogValueHidesOAuth2Secret(t *testing.T) {
	cfg := email.Config{
		IMAP: email.IMAPConfig{Server: "outlook.office365.com", Port: 993},
		OAuth2: &email.OAuth2Config{
			TenantID: "contoso.onmicrosoft.com", ClientID: oauthClientID, ClientSecret: oauthSecret,
		},
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "email", cfg)
	if strings.Contains(buf.String(), oauthSecret) {
		t.Errorf("log line %q contains the client secret", buf.String())
	}
	if !strings.Contains(buf.String(), "login=xoauth2") {
		t.Errorf("log line %q does not say the login is xoauth2", buf.String())
	}
}
