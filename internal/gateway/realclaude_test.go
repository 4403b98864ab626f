package gateway_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"text/template"
	"time"

	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/gateway"
	"github.com/airut/airut/internal/redact"
	"github.com/airut/airut/internal/testkit"
	"github.com/airut/airut/internal/testkit/fakeapi"
)

// The real-CLI tests run the pinned Claude Code release in the real
// sandbox, through the real proxy, against the fake Messages API on the
// host, reached as api.anthropic.com through network.resolve. The CLI
// holds only a surrogate of the API key; the proxy swaps in the real one.

// realAPIKey has the shape of an Anthropic key, so the surrogate keeps its
// sk-ant- prefix.
var realAPIKey = "sk-ant-api03-" + testkit.RandomHex(40) + "-AAAA"

var realConfigTemplate = template.Must(template.New("airut.yaml").Parse(`config_version: 5
execution:
  max_concurrent: 2
  shutdown_timeout: 20
  image_prune: false
network:
  upstream_ca: {{.CA}}
  resolve:
    api.anthropic.com: "{{.API}}"
repos:
  app:
    repo_url: {{.Origin}}
    claude_binary: {{.Claude}}
    model: {{.Model}}
    resource_limits:
      timeout: 300
    masked_secrets:
      ANTHROPIC_API_KEY:
        value: !env GW_ANTHROPIC_API_KEY
        scopes: ["api.anthropic.com"]
        headers: ["x-api-key"]
    email:
      account:
        username: airut@example.com
        from: "Airut <airut@example.com>"
        password: !env GW_IMAP_PASSWORD
      imap:
        server: 127.0.0.1
        port: {{.IMAPPort}}
        tls: false
        use_idle: true
      smtp:
        server: 127.0.0.1
        port: {{.SMTPPort}}
        require_auth: false
        starttls: false
      auth:
        authorized_senders: [alice@example.com]
        trusted_authserv_id: mx.example.com
`))

type realHarness struct {
	*harness
	api    *testkit.AnthropicUpstream
	claude string
}

// newRealHarness starts a gateway whose repo runs the real CLI.
func newRealHarness(t *testing.T, allowlist string) *realHarness {
	t.Helper()
	h := newHarness(t)
	claude := testkit.RealClaude(t)
	img := testkit.ClaudeImage(t, h.engine, claude)
	ca := testkit.NewTestCA(t)
	api := testkit.NewAnthropicUpstream(t, ca, testkit.HostIP(t), realAPIKey)
	caFile := filepath.Join(t.TempDir(), "upstream-ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	h.commit(map[string]string{
		".airut/container/Dockerfile":   "FROM " + img + "\n",
		".airut/network-allowlist.yaml": allowlist,
	})
	var b bytes.Buffer
	if err := realConfigTemplate.Execute(&b, map[string]any{
		"CA": caFile, "API": api.Addr, "Origin": h.origin, "Claude": claude, "Model": "opus",
		"IMAPPort": h.imap.Port, "SMTPPort": h.smtp.Port,
	}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"GW_ANTHROPIC_API_KEY": realAPIKey, "GW_IMAP_PASSWORD": h.imap.Password}
	cfg, err := config.Parse("airut.yaml", b.Bytes(), config.MapEnv(env), h.reg)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if cfg.Err() != nil {
		t.Fatalf("config: %v", cfg.Err())
	}
	logger := slog.New(redact.NewHandler(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}), h.reg))
	gw, err := gateway.New(cfg, gateway.Options{
		StateDir: h.state, Logger: logger, Registry: h.reg, Prefix: h.prefix,
		ProxyBinary: filepath.Join(h.bins, "airut-proxy"), StopGrace: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.gw, h.cancel, h.done = gw, cancel, make(chan error, 1)
	go func() { h.done <- gw.Run(ctx) }()
	t.Cleanup(h.stop)
	return &realHarness{harness: h, api: api, claude: claude}
}

func TestRealClaudeExplore(t *testing.T) {
	h := newRealHarness(t, "domains:\n  - api.anthropic.com\n")
	h.send(outMail{Subject: "explore", Body: "Please do it.\n@@say Working on it…\n@@bash echo hi > /workspace/out.txt\n@@reply All done."})
	_ = h.waitMail(1)
	reply := h.waitMail(2)
	conv := h.taskOf("explore").Conversation
	netLog, _ := os.ReadFile(filepath.Join(h.convDir(conv), "network-sandbox.log"))
	events, _ := os.ReadFile(filepath.Join(h.convDir(conv), "events.jsonl"))
	t.Logf("reply:\n%s\nnetwork log:\n%s\napi:\n%s\nevents:\n%s", reply.Text, netLog, fakeapiTranscript(h), events)
	t.Logf("gateway log:\n%s", h.logs.String())
}

func fakeapiTranscript(h *realHarness) string {
	return fakeapi.Transcript(h.api.API.Requests())
}
