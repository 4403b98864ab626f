package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/airut/airut/internal/redact"
	"github.com/airut/airut/internal/testkit/golden"
)

// testEnv is the environment every testdata file is loaded with.
var testEnv = map[string]string{
	"TEST_EMAIL_PASSWORD": "mail-password-1234",
	"SLACK_BOT":           "xoxb-slack-bot-token-5678",
	"SLACK_APP":           "xapp-slack-app-token-9012",
	"SLACK_BOT2":          "xoxb-second-bot-token-1111",
	"SLACK_APP2":          "xapp-second-app-token-2222",
	"GH_TOKEN":            "ghp_maskedtokenvalue0000000000000000000",
	"AWS_AKID":            "AKIAIOSFODNN7EXAMPLE",
	"AWS_SECRET":          "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
	"AWS_SESSION":         "FwoGZXIvYXdzEXAMPLESESSIONTOKEN",
	"GH_APP_KEY":          "-----BEGIN RSA PRIVATE KEY-----\nMIIEexampleKEYmaterial\n-----END RSA PRIVATE KEY-----\n",
	"MS_SECRET":           "ms-client-secret-3456",
	"MS_TENANT":           "tenant-id-7890",
	"PLAIN_SECRET":        "plain-secret-value-42",
	"EMPTY_VAR":           "",
	"IMAP_PORT":           "1993",
	"MAIL_HOST":           "mail.example.org",
}

// secretEnv names the testEnv entries that are secrets.
var secretEnv = []string{
	"TEST_EMAIL_PASSWORD", "SLACK_BOT", "SLACK_APP", "SLACK_BOT2", "SLACK_APP2", "GH_TOKEN",
	"AWS_AKID", "AWS_SECRET", "AWS_SESSION", "GH_APP_KEY", "MS_SECRET", "MS_TENANT", "PLAIN_SECRET",
}

func loadTestdata(t *testing.T, path string, reg *redact.Registry) (*Config, error) {
	t.Helper()
	return Load(path, MapEnv(testEnv), reg)
}

// TestValidConfigs loads testdata/valid/*.yaml and compares the result, as
// JSON (secrets masked), with the .json file beside it.
func TestValidConfigs(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.yaml")
	if len(files) == 0 {
		t.Fatal("no testdata/valid files")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			cfg, err := loadTestdata(t, file, nil)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if err := cfg.Err(); err != nil {
				t.Fatalf("repo errors:\n%v", err)
			}
			got, err := json.MarshalIndent(cfg, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, strings.TrimSuffix(file, ".yaml")+".json", append(got, '\n'))
		})
	}
}

// TestInvalidConfigs loads testdata/invalid/*.yaml and compares the errors
// with the .err file beside it. The first line says whether the whole load
// failed or which repos were left out.
func TestInvalidConfigs(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*.yaml")
	if len(files) == 0 {
		t.Fatal("no testdata/invalid files")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			cfg, err := loadTestdata(t, file, nil)
			var b strings.Builder
			switch {
			case err != nil:
				var es Errors
				if !errors.As(err, &es) {
					t.Fatalf("Load error %T is not Errors: %v", err, err)
				}
				fmt.Fprintf(&b, "load failed\n%v\n", err)
			case cfg.Err() == nil:
				t.Fatalf("Load succeeded with no repo errors; want errors")
			default:
				failed := mapKeys(cfg.RepoErrors)
				fmt.Fprintf(&b, "repos failed: %v; running: %v\n%v\n", failed, mapKeys(cfg.Repos), cfg.Err())
			}
			for _, name := range secretEnv {
				if strings.Contains(b.String(), testEnv[name]) {
					t.Errorf("errors contain the value of %s:\n%s", name, b.String())
				}
			}
			golden.Check(t, strings.TrimSuffix(file, ".yaml")+".err", []byte(b.String()))
		})
	}
}

func mapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestFullConfigValues(t *testing.T) {
	cfg, err := loadTestdata(t, "testdata/valid/full.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	app := cfg.Repos["app"]
	if app == nil {
		t.Fatalf("repo app missing; errors: %v", cfg.Err())
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{"password via !var of !env", app.Email.Account.Password.Reveal(), testEnv["TEST_EMAIL_PASSWORD"]},
		{"imap server via !var of !env", app.Email.IMAP.Server, "mail.example.org"},
		{"imap port from env string", app.Email.IMAP.Port, 1993},
		{"use_idle: no", app.Email.IMAP.UseIdle, false},
		{"trusted_authserv_id empty allowed", app.Email.Auth.TrustedAuthservID, ""},
		{"oauth secret", app.Email.MicrosoftOAuth2.ClientSecret.Reveal(), testEnv["MS_SECRET"]},
		{"slack rules", app.Slack.Authorized, []SlackRule{{WorkspaceMembers: true}, {UserGroup: "engineering"}, {UserID: "U12345678"}}},
		{"unset plain secret left out", mapKeys(app.Secrets), []string{"PLAIN"}},
		{"unset masked secret left out", mapKeys(app.MaskedSecrets), []string{"GH_TOKEN"}},
		{"masked value", app.MaskedSecrets["GH_TOKEN"].Value.Reveal(), testEnv["GH_TOKEN"]},
		{"signing field mapping", app.SigningCredentials["AWS_PROD"].SecretAccessKey, SigningField{Name: "AWS_SECRET_ACCESS_KEY", Value: redact.Secret(testEnv["AWS_SECRET"])}},
		{"signing field scalar gets default name", app.SigningCredentials["AWS_SHORT"].AccessKeyID, SigningField{Name: "AWS_ACCESS_KEY_ID", Value: redact.Secret(testEnv["AWS_AKID"])}},
		{"unset session token is nil", app.SigningCredentials["AWS_SHORT"].SessionToken == nil, true},
		{"github app id from int", app.GitHubAppCredentials["GH_APP_TOKEN"].AppID, "123456"},
		{"installation id from quoted string", app.GitHubAppCredentials["GH_APP_TOKEN"].InstallationID, int64(987654)},
		{"github base_url default", app.GitHubAppCredentials["GH_APP_TOKEN"].BaseURL, DefaultGitHubAPI},
		{"trigger alias", app.Schedules["nightly"].TriggerCommand, "./check.sh"},
		{"deliver.to scalar", app.Schedules["daily"].Deliver.To, Recipients{"alice@example.org"}},
		{"deliver.to list", app.Schedules["nightly"].Deliver.To, Recipients{"a@example.org", "b@example.org"}},
		{"schedule enable default", app.Schedules["daily"].Enable, true},
		{"claude_version keeps execution.claude_binary out", app.ClaudeBinary, ""},
		{"claude_binary own", cfg.Repos["docs"].ClaudeBinary, "/usr/local/bin/claude"},
		{"limits via anchor", cfg.Repos["docs"].ResourceLimits, ResourceLimits{Timeout: 3600, Memory: "8g", CPUs: 1.5, PidsLimit: 512}},
		{"docs model default", cfg.Repos["docs"].Model, "opus"},
		{"shutdown duration", cfg.Execution.ShutdownTimeoutDuration().String(), "2m0s"},
		{"poll duration", app.Email.IMAP.PollIntervalDuration().String(), "2.5s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tc.got); diff != "" {
				t.Errorf("got %v; want %v (-want +got):\n%s", tc.got, tc.want, diff)
			}
		})
	}
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestEnvPrecedence(t *testing.T) {
	const yamlText = `
vars:
  url: !env REPO_URL
repos:
  app:
    repo_url: !var url
    model: !env MODEL
    slack:
      bot_token: !env BOT
      app_token: xapp-literal-token
      authorized: [{workspace_members: true}]
`
	tests := []struct {
		name    string
		dotenv  string
		env     map[string]string
		wantURL string
		wantBot string
		wantMod string
	}{
		{
			name:    "dotenv only",
			dotenv:  "REPO_URL=https://dotenv.example/a.git\nexport BOT='xoxb-from-dotenv'\nMODEL=\"son\\\"net\" # comment\n",
			wantURL: "https://dotenv.example/a.git", wantBot: "xoxb-from-dotenv", wantMod: `son"net`,
		},
		{
			name:    "environment wins over dotenv",
			dotenv:  "REPO_URL=https://dotenv.example/a.git\nBOT=xoxb-from-dotenv\nMODEL=haiku\n",
			env:     map[string]string{"REPO_URL": "https://env.example/a.git", "BOT": "xoxb-from-env"},
			wantURL: "https://env.example/a.git", wantBot: "xoxb-from-env", wantMod: "haiku",
		},
		{
			name:    "environment set but empty still wins",
			dotenv:  "REPO_URL=https://dotenv.example/a.git\nBOT=xoxb-from-dotenv\nMODEL=haiku # note\n",
			env:     map[string]string{"MODEL": ""},
			wantURL: "https://dotenv.example/a.git", wantBot: "xoxb-from-dotenv", wantMod: "opus",
		},
		{
			name:    "no dotenv file",
			env:     map[string]string{"REPO_URL": "https://env.example/b.git", "BOT": "xoxb-env-only", "MODEL": "sonnet"},
			wantURL: "https://env.example/b.git", wantBot: "xoxb-env-only", wantMod: "sonnet",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"airut.yaml": yamlText}
			if tc.dotenv != "" {
				files[".env"] = tc.dotenv
			}
			dir := writeFiles(t, files)
			cfg, err := Load(filepath.Join(dir, "airut.yaml"), MapEnv(tc.env), nil)
			if err != nil {
				t.Fatal(err)
			}
			app := cfg.Repos["app"]
			if app == nil {
				t.Fatalf("repo app failed: %v", cfg.Err())
			}
			got := []string{app.RepoURL, app.Slack.BotToken.Reveal(), app.Model}
			want := []string{tc.wantURL, tc.wantBot, tc.wantMod}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("got %q; want %q", got, want)
			}
		})
	}
}

func TestDotEnvErrors(t *testing.T) {
	tests := []struct{ name, content, want string }{
		{"no equals", "JUSTANAME\n", ".env:1: want NAME=value"},
		{"bad name", "OK=1\n1BAD=2\n", ".env:2: want NAME=value"},
		{"unterminated", "A='open\n", ".env:1: A: unterminated single quote"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"airut.yaml": "{}\n", ".env": tc.content})
			_, err := Load(filepath.Join(dir, "airut.yaml"), nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v; want error containing %q", err, tc.want)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "airut.yaml"), nil, nil)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v; want an error wrapping os.ErrNotExist", err)
	}
}

func TestEveryKindOfSecretIsRedacted(t *testing.T) {
	reg := redact.NewRegistry()
	cfg, err := loadTestdata(t, "testdata/valid/full.yaml", reg)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	logger := slog.New(redact.NewHandler(slog.NewJSONHandler(&buf, nil), reg))
	app := cfg.Repos["app"]
	// Log each value raw, as careless code would, and the config itself.
	for _, name := range secretEnv {
		logger.Info("value "+testEnv[name], "raw", testEnv[name], "wrapped", fmt.Errorf("login: %s", testEnv[name]))
	}
	logger.Info("config", "cfg", cfg, "app", fmt.Sprintf("%+v %#v", app, app))
	out := buf.String()
	for _, name := range secretEnv {
		if strings.Contains(out, testEnv[name]) {
			t.Errorf("log output contains %s", name)
		}
		if got := reg.Redact(testEnv[name]); got != redact.Mask {
			t.Errorf("Redact(%s) = %q; want %q", name, got, redact.Mask)
		}
	}
	// Non-secret values stay readable.
	for _, plain := range []string{"mail.example.org", "app@example.org"} {
		if reg.Redact(plain) != plain {
			t.Errorf("%q was registered as a secret", plain)
		}
	}
}

func TestSecretsOfFailedReposAreRegistered(t *testing.T) {
	reg := redact.NewRegistry()
	cfg, err := Parse("airut.yaml", []byte(`
repos:
  bad:
    slack:
      bot_token: xoxb-failed-repo-token
      app_token: xapp-failed-repo-token
      authorized: []
`), nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RepoErrors["bad"] == nil {
		t.Fatal("repo bad did not fail")
	}
	for _, s := range []string{"xoxb-failed-repo-token", "xapp-failed-repo-token"} {
		if got := reg.Redact(s); got != redact.Mask {
			t.Errorf("Redact(%q) = %q; want it masked", s, got)
		}
	}
}

func TestStarterConfig(t *testing.T) {
	starter := StarterConfig()
	for _, want := range []string{"!env AIRUT_EMAIL_PASSWORD", "claude_version: latest", "CLAUDE_CODE_OAUTH_TOKEN", "path: /v1/messages*", "execution:", "dashboard:", "network:", "repos:", "masked_secrets:", "signing_credentials:", "github_app_credentials:", "schedules:", "slack:"} {
		if !bytes.Contains(starter, []byte(want)) {
			t.Errorf("starter config lacks %q", want)
		}
	}
	t.Run("loads with its variables set", func(t *testing.T) {
		dir := writeFiles(t, map[string]string{"airut.yaml": string(starter), ".env": "AIRUT_EMAIL_PASSWORD=starter-password\nANTHROPIC_API_KEY=sk-ant-starter\n"})
		reg := redact.NewRegistry()
		cfg, err := Load(filepath.Join(dir, "airut.yaml"), nil, reg)
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Err(); err != nil {
			t.Fatalf("starter config has errors:\n%v", err)
		}
		if got := mapKeys(cfg.Repos); !slices.Equal(got, []string{"my-project"}) {
			t.Errorf("repos = %v; want [my-project]", got)
		}
		if reg.Redact("starter-password") != redact.Mask {
			t.Error("starter password not registered")
		}
		// The Claude credential is offered masked, scoped to the API.
		m, ok := cfg.Repos["my-project"].MaskedSecrets["ANTHROPIC_API_KEY"]
		if cfg.Repos["my-project"].ClaudeVersion != "latest" || !ok || (!slices.Equal(m.Scopes, []string{"api.anthropic.com"}) || !slices.Equal(m.Headers, []string{"x-api-key"})) {
			t.Errorf("claude_version %q, ANTHROPIC_API_KEY %+v; want latest and a masked key on api.anthropic.com x-api-key",
				cfg.Repos["my-project"].ClaudeVersion, m)
		}
	})
	t.Run("names the missing variable", func(t *testing.T) {
		cfg, err := Parse("airut.yaml", starter, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Err(); err == nil || !strings.Contains(err.Error(), "environment variable AIRUT_EMAIL_PASSWORD is not set") {
			t.Errorf("got %v; want the missing AIRUT_EMAIL_PASSWORD named", err)
		}
	})
	t.Run("a fresh copy each call", func(t *testing.T) {
		a := StarterConfig()
		a[0] = 'X'
		if StarterConfig()[0] == 'X' {
			t.Error("StarterConfig returned shared storage")
		}
	})
}

func TestPaths(t *testing.T) {
	tests := []struct {
		name      string
		env       map[string]string
		wantCfg   string
		wantState string
	}{
		{"xdg set", map[string]string{"HOME": "/home/u", "XDG_CONFIG_HOME": "/cfg", "XDG_STATE_HOME": "/state"}, "/cfg/airut/airut.yaml", "/state/airut"},
		{"home only", map[string]string{"HOME": "/home/u"}, "/home/u/.config/airut/airut.yaml", "/home/u/.local/state/airut"},
		{"relative xdg ignored", map[string]string{"HOME": "/home/u", "XDG_CONFIG_HOME": "rel", "XDG_STATE_HOME": "rel"}, "/home/u/.config/airut/airut.yaml", "/home/u/.local/state/airut"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfgPath, err := DefaultPath(MapEnv(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			state, err := StateDir(MapEnv(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if cfgPath != tc.wantCfg || state != tc.wantState {
				t.Errorf("got %q, %q; want %q, %q", cfgPath, state, tc.wantCfg, tc.wantState)
			}
		})
	}
	if _, err := DefaultPath(MapEnv(nil)); err == nil {
		t.Error("DefaultPath without HOME: got nil error; want one")
	}
}

func TestRepoChanged(t *testing.T) {
	base := `
execution: {max_concurrent: %d}
repos:
  a:
    repo_url: https://example.org/a.git
    model: %s
    slack: {bot_token: !env BOT, app_token: xapp-token-1, authorized: [{workspace_members: true}]}
  b:
    repo_url: https://example.org/b.git
    slack: {bot_token: xoxb-token-b, app_token: xapp-token-b, authorized: [{user_id: U1}]}
`
	load := func(maxConc int, model, bot string) *Config {
		t.Helper()
		cfg, err := Parse("airut.yaml", []byte(fmt.Sprintf(base, maxConc, model)), MapEnv(map[string]string{"BOT": bot}), nil)
		if err != nil || cfg.Err() != nil {
			t.Fatalf("load: %v %v", err, cfg.Err())
		}
		return cfg
	}
	old := load(3, "opus", "xoxb-token-1")
	tests := []struct {
		name               string
		next               *Config
		wantA, wantB, glob bool
	}{
		{"same", load(3, "opus", "xoxb-token-1"), false, false, false},
		{"model changed", load(3, "sonnet", "xoxb-token-1"), true, false, false},
		{"secret from env changed", load(3, "opus", "xoxb-token-2"), true, false, false},
		{"global changed", load(4, "opus", "xoxb-token-1"), false, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := []bool{RepoChanged(old.Repos["a"], tc.next.Repos["a"]), RepoChanged(old.Repos["b"], tc.next.Repos["b"]), GlobalChanged(old, tc.next)}
			want := []bool{tc.wantA, tc.wantB, tc.glob}
			if !slices.Equal(got, want) {
				t.Errorf("got a, b, global changed = %v; want %v", got, want)
			}
		})
	}
	if !RepoChanged(old.Repos["a"], nil) {
		t.Error("RepoChanged(repo, nil) = false; want true")
	}
}

func TestSlackAPIURL(t *testing.T) {
	tests := []struct{ name, line, want, wantErr string }{
		{"default", "", "", ""},
		{"set", "api_url: http://127.0.0.1:9/api/", "http://127.0.0.1:9/api/", ""},
		{"not a url", "api_url: slack.example", "", "repos.app.slack.api_url: must be an http(s) URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"airut.yaml": `
repos:
  app:
    repo_url: https://example.org/a.git
    slack:
      bot_token: xoxb-token-a
      app_token: xapp-token-a
      authorized: [{workspace_members: true}]
      ` + tc.line + "\n"})
			cfg, err := Load(filepath.Join(dir, "airut.yaml"), MapEnv(nil), nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" {
				if e := cfg.Err(); e == nil || !strings.Contains(e.Error(), tc.wantErr) {
					t.Fatalf("errors %v; want %q", e, tc.wantErr)
				}
				return
			}
			if got := cfg.Repos["app"].Slack.APIURL; got != tc.want {
				t.Errorf("api_url %q; want %q", got, tc.want)
			}
		})
	}
}

// TestClaudeSource: a repo's Claude Code is its claude_binary, else its
// claude_version, else execution.claude_binary (else PATH, at run time).
func TestClaudeSource(t *testing.T) {
	const repo = `
    repo_url: https://example.org/a.git
    email:
      account: {username: USER, from: "u@example.org", password: pw-123456}
      imap: {server: imap.example.org}
      smtp: {server: smtp.example.org}
      auth: {authorized_senders: ["ok@example.org"], trusted_authserv_id: mx}
`
	r := func(user string) string { return strings.ReplaceAll(repo, "USER", user) }
	yaml := "execution:\n  claude_binary: /opt/global/claude\n  claude_registry: https://npm.example.org\nrepos:\n" +
		"  own:\n    claude_binary: /opt/own/claude" + r("a") +
		"  versioned:\n    claude_version: stable" + r("b") +
		"  plain:" + r("c")
	cfg, err := Parse("airut.yaml", []byte(yaml), MapEnv(nil), redact.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Err(); err != nil {
		t.Fatal(err)
	}
	type src struct{ Binary, Version string }
	got := map[string]src{}
	for id, r := range cfg.Repos {
		got[id] = src{r.ClaudeBinary, r.ClaudeVersion}
	}
	want := map[string]src{
		"own":       {"/opt/own/claude", ""},
		"versioned": {"", "stable"},
		"plain":     {"/opt/global/claude", ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("claude sources (-want +got):\n%s", diff)
	}
	if cfg.Execution.ClaudeRegistry != "https://npm.example.org" {
		t.Errorf("claude_registry = %q", cfg.Execution.ClaudeRegistry)
	}
}
