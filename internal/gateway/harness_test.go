package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/airut/airut/internal/cli"
	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/gateway"
	"github.com/airut/airut/internal/redact"
	"github.com/airut/airut/internal/sandbox"
	"github.com/airut/airut/internal/testkit"
	"github.com/airut/airut/internal/testkit/mailtest"
)

// waitTimeout bounds every wait of the end-to-end tests: a hang fails the
// test instead of eating the CI budget.
const waitTimeout = 3 * time.Minute

const testAllowlist = "domains:\n  - api.example.test\n"

// harness is one gateway with real Podman, a real git origin and
// in-process IMAP/SMTP servers on loopback.
type harness struct {
	t      testing.TB
	engine string
	base   string
	bins   string
	origin string
	imap   *mailtest.IMAPServer
	smtp   *mailtest.SMTPServer
	state  string
	prefix string
	secret string
	reg    *redact.Registry
	logs   *testkit.SyncBuffer
	gw     *gateway.Gateway
	cancel context.CancelFunc
	done   chan error
}

type harnessOpts struct {
	imagePrune    bool
	maxConcurrent int
	timeout       int // resource_limits.timeout, seconds; 0 = 300
	shutdown      int // execution.shutdown_timeout, seconds; 0 = 20
}

func testPrefix(t testing.TB) string {
	p := "airut-gwt-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(p) > 40 {
		p = p[:40]
	}
	return p
}

var configTemplate = template.Must(template.New("airut.yaml").Parse(`config_version: 5
execution:
  max_concurrent: {{.Max}}
  shutdown_timeout: {{.Shutdown}}
  claude_binary: {{.Claude}}
  image_prune: {{.Prune}}
repos:
{{- range .Repos}}
  {{.ID}}:
    repo_url: {{$.Origin}}
    resource_limits:
      timeout: {{$.Timeout}}
    secrets:
      PLAIN_TOKEN: !env GW_PLAIN_TOKEN
    email:
      account:
        username: airut@example.com
        from: "Airut <airut@example.com>"
        password: !env GW_IMAP_PASSWORD
      imap:
        server: {{.Host}}
        port: {{$.IMAPPort}}
        tls: false
        use_idle: true
      smtp:
        server: 127.0.0.1
        port: {{$.SMTPPort}}
        require_auth: false
        starttls: false
      auth:
        authorized_senders: [alice@example.com, bob@example.com]
        trusted_authserv_id: mx.example.com
{{- end}}
`))

type tmplRepo struct{ ID, Host string }

func (h *harness) configYAML(o harnessOpts, repos []tmplRepo) []byte {
	h.t.Helper()
	if o.maxConcurrent == 0 {
		o.maxConcurrent = 3
	}
	if o.timeout == 0 {
		o.timeout = 300
	}
	if o.shutdown == 0 {
		o.shutdown = 20
	}
	var b bytes.Buffer
	err := configTemplate.Execute(&b, map[string]any{
		"Max": o.maxConcurrent, "Claude": filepath.Join(h.bins, "fakeclaude"), "Origin": h.origin,
		"Timeout": o.timeout, "Shutdown": o.shutdown, "IMAPPort": h.imap.Port, "SMTPPort": h.smtp.Port, "Repos": repos,
		"Prune": o.imagePrune,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return b.Bytes()
}

func (h *harness) env() map[string]string {
	return map[string]string{"GW_PLAIN_TOKEN": h.secret, "GW_IMAP_PASSWORD": h.imap.Password}
}

// newHarness prepares everything but the gateway itself.
func newHarness(t testing.TB) *harness {
	t.Helper()
	engine := testkit.RequireEngine(t)
	bins, err := testkit.BuildBinaries()
	if err != nil {
		t.Fatal(err)
	}
	base := testkit.BaseImage(t, engine)
	h := &harness{
		t: t, engine: engine, base: base, bins: bins,
		origin: testkit.GitRepo(t, map[string]string{
			".airut/container/Dockerfile":   testkit.DefaultDockerfile(base),
			".airut/network-allowlist.yaml": testAllowlist,
			"README.md":                     "# app\n",
		}),
		imap:   mailtest.NewIMAPServer(t, mailtest.IMAPOptions{}),
		smtp:   mailtest.NewSMTPServer(t, mailtest.SMTPOptions{}),
		state:  t.TempDir(),
		prefix: testPrefix(t),
		secret: "plain-" + testkit.RandomHex(12),
		reg:    redact.NewRegistry(),
		logs:   &testkit.SyncBuffer{},
	}
	testkit.RemoveImages(t, engine, h.prefix+"-"+sandbox.InstanceID(h.state))
	t.Cleanup(func() { h.assertNoLeftovers() })
	return h
}

// start runs an in-process gateway on the harness.
func (h *harness) start(o harnessOpts) {
	h.t.Helper()
	cfg, err := config.Parse("airut.yaml", h.configYAML(o, []tmplRepo{{ID: "app", Host: "127.0.0.1"}}), config.MapEnv(h.env()), h.reg)
	if err != nil {
		h.t.Fatalf("config: %v", err)
	}
	if cfg.Err() != nil {
		h.t.Fatalf("config: %v", cfg.Err())
	}
	logger := slog.New(redact.NewHandler(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}), h.reg))
	gw, err := gateway.New(cfg, gateway.Options{
		StateDir: h.state, Logger: logger, Registry: h.reg, Prefix: h.prefix, Channels: cli.ChannelFactories(),
		ProxyBinary: filepath.Join(h.bins, "airut-proxy"), StopGrace: 2 * time.Second,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.gw, h.cancel, h.done = gw, cancel, make(chan error, 1)
	go func() { h.done <- gw.Run(ctx) }()
	h.t.Cleanup(h.stop)
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("gateway Run: %v", err)
		}
	case <-time.After(waitTimeout):
		h.t.Errorf("gateway did not stop")
	}
	if h.t.Failed() {
		h.t.Logf("gateway log:\n%s", h.logs.String())
	}
}

func (h *harness) assertNoLeftovers() {
	h.t.Helper()
	if left := testkit.Leftovers(h.engine, h.prefix); len(left) > 0 {
		h.t.Errorf("left behind: %s", strings.Join(left, ", "))
	}
	_ = exec.Command(h.engine, "network", "rm", "-f", h.prefix+"-egress").Run()
}

// waitFor polls cond until it holds: the conditions are on files and
// mailboxes that the code under test changes, with no event to wait on.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (h *harness) waitMail(n int) sentMail {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	m, err := h.smtp.WaitMessage(ctx, n)
	if err != nil {
		h.t.Fatalf("waiting for mail #%d: %v\nlog:\n%s", n, err, h.logs.String())
	}
	return parseMail(h.t, m.Data)
}

func (h *harness) waitInboxEmpty() {
	h.t.Helper()
	waitFor(h.t, "the inbox to be empty", func() bool { return len(h.imap.Inbox(h.t)) == 0 })
}

func (h *harness) convDir(conv string) string {
	return filepath.Join(h.state, "app", "conversations", conv)
}

// taskOf waits for the task whose subject is subject and returns it.
func (h *harness) taskOf(subject string) gateway.TaskInfo {
	h.t.Helper()
	var got gateway.TaskInfo
	waitFor(h.t, "a task for "+subject, func() bool {
		for _, ti := range h.gw.Tasks() {
			if ti.Subject == subject {
				got = ti
				return true
			}
		}
		return false
	})
	return got
}

// outMail is an inbound message for the IMAP inbox.
type outMail struct {
	From, To, Subject, MessageID, InReplyTo, References string
	Body                                                string
	Attachments                                         [][2]string // name, content
	// Headers replace the default authentication headers when set.
	Headers []string
}

func (m outMail) raw() []byte {
	if m.From == "" {
		m.From = "Alice <alice@example.com>"
	}
	if m.To == "" {
		m.To = "airut@example.com"
	}
	if m.MessageID == "" {
		m.MessageID = "<" + testkit.RandomHex(8) + "@example.com>"
	}
	var b strings.Builder
	hdrs := m.Headers
	if hdrs == nil {
		hdrs = []string{"Authentication-Results: mx.example.com; spf=pass; dkim=pass; dmarc=pass header.from=example.com"}
	}
	for _, l := range hdrs {
		b.WriteString(l + "\r\n")
	}
	if !strings.Contains(strings.Join(hdrs, "\n"), "From:") {
		b.WriteString("From: " + m.From + "\r\n")
	}
	b.WriteString("To: " + m.To + "\r\n")
	b.WriteString("Subject: " + m.Subject + "\r\n")
	b.WriteString("Message-ID: " + m.MessageID + "\r\n")
	b.WriteString("Date: " + time.Now().UTC().Format(time.RFC1123Z) + "\r\n")
	if m.InReplyTo != "" {
		b.WriteString("In-Reply-To: " + m.InReplyTo + "\r\n")
	}
	if m.References != "" {
		b.WriteString("References: " + m.References + "\r\n")
	}
	b.WriteString("MIME-Version: 1.0\r\n")
	body := strings.ReplaceAll(m.Body, "\n", "\r\n")
	if len(m.Attachments) == 0 {
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\n\r\n" + body + "\r\n")
		return []byte(b.String())
	}
	const bnd = "gwtestboundary"
	b.WriteString("Content-Type: multipart/mixed; boundary=" + bnd + "\r\n\r\n")
	b.WriteString("--" + bnd + "\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body + "\r\n")
	for _, a := range m.Attachments {
		b.WriteString("--" + bnd + "\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=\"" + a[0] + "\"\r\n\r\n" + a[1] + "\r\n")
	}
	b.WriteString("--" + bnd + "--\r\n")
	return []byte(b.String())
}

func (h *harness) send(m outMail) {
	h.t.Helper()
	h.imap.Append(h.t, m.raw())
}

// sentMail is a message the gateway sent, parsed.
// sentMail is a message the SMTP server received, parsed.
type sentMail = mailtest.Sent

func parseMail(t testing.TB, data []byte) sentMail {
	t.Helper()
	return mailtest.ParseSent(t, data)
}

// fakeSession is fakeclaude's session file.
type fakeSession struct {
	ID   string `json:"id"`
	Runs []struct {
		Argv    []string `json:"argv"`
		Model   string   `json:"model"`
		Resumed bool     `json:"resumed"`
		Cwd     string   `json:"cwd"`
		Prompt  string   `json:"prompt"`
	} `json:"runs"`
}

// sessions reads every fakeclaude session of a conversation.
func (h *harness) sessions(conv string) []fakeSession {
	h.t.Helper()
	files, _ := filepath.Glob(filepath.Join(h.convDir(conv), "claude", "fakeclaude-sessions", "*.json"))
	var out []fakeSession
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			h.t.Fatal(err)
		}
		var s fakeSession
		if err := json.Unmarshal(data, &s); err != nil {
			h.t.Fatalf("%s: %v", f, err)
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i].Runs) > len(out[j].Runs) })
	return out
}

// blockScript makes the agent mark that it started and wait until the
// test creates /storage/go in the conversation.
func blockScript(reply string) string {
	return "@@run date +%s%N >> /storage/started; while [ ! -e /storage/go ]; do sleep 0.1; done\n@@reply " + reply + "\n"
}

func (h *harness) waitStarted(conv string) {
	h.t.Helper()
	waitFor(h.t, "the agent of "+conv+" to start", func() bool {
		_, err := os.Stat(filepath.Join(h.convDir(conv), "storage", "started"))
		return err == nil
	})
}

func (h *harness) release(conv string) {
	h.t.Helper()
	if err := os.WriteFile(filepath.Join(h.convDir(conv), "storage", "go"), nil, 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) commit(files map[string]string) {
	h.t.Helper()
	testkit.WriteFiles(h.t, h.origin, files)
	testkit.Commit(h.t, h.origin, fmt.Sprintf("change %d files", len(files)))
}
