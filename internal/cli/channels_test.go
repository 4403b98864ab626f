package cli

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/gateway"
	"github.com/airut/airut/internal/redact"
)

// The email factory maps airut.yaml's email section onto the email
// channel; with microsoft_oauth2 the channel logs in with XOAUTH2, and the
// password (which email.New refuses beside OAuth2) is not passed on. A repo
// without an email section gets no email channel.
func TestEmailChannelConfigMapping(t *testing.T) {
	base := `config_version: 5
repos:
  app:
    repo_url: https://example.org/app.git
    email:
      account: {username: airut@example.org, from: airut@example.org%s}
      imap: {server: imap.example.org}
      smtp: {server: smtp.example.org}
      auth: {authorized_senders: [boss@example.org], trusted_authserv_id: ""}
%s`
	oauth := `      microsoft_oauth2:
        tenant_id: 11111111-2222-3333-4444-555555555555
        client_id: client-1
        client_secret: s3cret-client
`
	tests := []struct {
		name     string
		password string
		oauth    string
	}{
		{"password", ", password: pw-12345", ""},
		{"oauth2", "", oauth},
		{"oauth2 beside a password", ", password: pw-12345", oauth},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			yaml := []byte(fmt.Sprintf(base, tc.password, tc.oauth))
			cfg, err := config.Parse("airut.yaml", yaml, config.MapEnv(nil), redact.NewRegistry())
			if err != nil || cfg.Err() != nil {
				t.Fatalf("config: %v %v", err, cfg.Err())
			}
			env := gateway.ChannelEnv{RepoID: "app", Repo: cfg.Repos["app"], Config: cfg, StateDir: t.TempDir(),
				Exists: func(string) bool { return false }, Logger: slog.New(slog.DiscardHandler)}
			ch, err := ChannelFactories()["email"](env)
			if err != nil || ch == nil || ch.Name() != "email" {
				t.Fatalf("got %v, %v; want the email channel", ch, err)
			}
			env.Repo = &config.Repo{RepoURL: "x"}
			if ch, err := ChannelFactories()["email"](env); ch != nil || err != nil {
				t.Errorf("repo without email: got %v, %v; want no channel", ch, err)
			}
		})
	}
}

// The Slack factory maps repos.<id>.slack onto the Slack channel, its
// state (thread map, inbox) in the channel's state directory.
func TestSlackChannelConfigMapping(t *testing.T) {
	yaml := []byte(`config_version: 5
repos:
  app:
    repo_url: https://example.org/app.git
    slack:
      bot_token: xoxb-1111-2222-abcdef
      app_token: xapp-1-A111-2222-abcdef
      authorized:
        - user_group: engineers
        - user_id: U123
      allowed_channels: [C1]
`)
	cfg, err := config.Parse("airut.yaml", yaml, config.MapEnv(nil), redact.NewRegistry())
	if err != nil || cfg.Err() != nil {
		t.Fatalf("config: %v %v", err, cfg.Err())
	}
	env := gateway.ChannelEnv{RepoID: "app", Repo: cfg.Repos["app"], Config: cfg, StateDir: t.TempDir(),
		Exists: func(string) bool { return false }, Logger: slog.New(slog.DiscardHandler)}
	ch, err := ChannelFactories()["slack"](env)
	if err != nil || ch == nil || ch.Name() != "slack" {
		t.Fatalf("got %v, %v; want the Slack channel", ch, err)
	}
	if ch, err := ChannelFactories()["email"](env); ch != nil || err != nil {
		t.Errorf("email factory for a Slack-only repo: %v, %v; want none", ch, err)
	}
	env.Repo = &config.Repo{RepoURL: "x"}
	if ch, err := ChannelFactories()["slack"](env); ch != nil || err != nil {
		t.Errorf("repo without slack: got %v, %v; want no channel", ch, err)
	}
}
