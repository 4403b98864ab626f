package scheduler_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/airut/airut/internal/cli"
	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/gateway"
	"github.com/airut/airut/internal/redact"
	"github.com/airut/airut/internal/sandbox"
	"github.com/airut/airut/internal/scheduler"
	"github.com/airut/airut/internal/testkit"
	"github.com/airut/airut/internal/testkit/mailtest"
	"github.com/airut/airut/internal/testkit/slacktest"
)

// waitTimeout bounds every wait: a hang fails the test. It is long
// because a loaded CI host can take minutes to build the repo's image.
const waitTimeout = 10 * time.Minute

const testAllowlist = "domains:\n  - api.example.test\n"

// harness is one real gateway (Podman, the proxy, fakeclaude, in-process
// IMAP and SMTP on loopback, optionally the Slack fake) with a scheduler
// on a fake clock.
type harness struct {
	t      *testing.T
	engine string
	bins   string
	origin string
	imap   *mailtest.IMAPServer
	smtp   *mailtest.SMTPServer
	slack  *slacktest.Server
	state  string
	prefix string
	reg    *redact.Registry
	logs   *testkit.SyncBuffer
	clock  *scheduler.FakeClock
	gw     *gateway.Gateway
	sched  *scheduler.Scheduler
	cancel context.CancelFunc
	done   chan error
}

var configTemplate = template.Must(template.New("airut.yaml").Parse(`config_version: 5
execution:
  max_concurrent: 3
  shutdown_timeout: 20
  claude_binary: {{.Claude}}
  image_prune: false
repos:
  app:
    repo_url: {{.Origin}}
    resource_limits:
      timeout: 300
    email:
      account:
        username: airut@example.com
        from: "Airut <airut@example.com>"
        password: !env SCHED_IMAP_PASSWORD
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
{{- if .SlackAPI}}
    slack:
      bot_token: {{.BotToken}}
      app_token: {{.AppToken}}
      api_url: {{.SlackAPI}}
      authorized:
        - workspace_members: true
{{- end}}
    schedules:
{{.Schedules}}
`))

type harnessOpts struct {
	slack bool
	now   time.Time // the fake clock's start
}

func testPrefix(t testing.TB) string {
	p := "airut-sct-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(p) > 40 {
		p = p[:40]
	}
	return p
}

func newHarness(t *testing.T, o harnessOpts) *harness {
	t.Helper()
	engine := testkit.RequireEngine(t)
	bins, err := testkit.BuildBinaries()
	if err != nil {
		t.Fatal(err)
	}
	base := testkit.BaseImage(t, engine)
	h := &harness{
		t: t, engine: engine, bins: bins,
		origin: testkit.GitRepo(t, map[string]string{
			".airut/container/Dockerfile":   testkit.DefaultDockerfile(base),
			".airut/network-allowlist.yaml": testAllowlist,
			"README.md":                     "# app\n",
		}),
		imap:   mailtest.NewIMAPServer(t, mailtest.IMAPOptions{}),
		smtp:   mailtest.NewSMTPServer(t, mailtest.SMTPOptions{}),
		state:  t.TempDir(),
		prefix: testPrefix(t),
		reg:    redact.NewRegistry(),
		logs:   &testkit.SyncBuffer{},
		clock:  scheduler.NewFakeClock(o.now),
	}
	if o.slack {
		h.slack = slacktest.New(t)
		h.slack.SeedWorkspace()
	}
	testkit.RemoveImages(t, h.engine, h.prefix+"-"+sandbox.InstanceID(h.state))
	t.Cleanup(func() {
		if left := testkit.Leftovers(h.engine, h.prefix); len(left) > 0 {
			t.Errorf("left behind: %s", strings.Join(left, ", "))
		}
		_ = exec.Command(h.engine, "network", "rm", "-f", h.prefix+"-egress").Run()
	})
	return h
}

// config parses the harness's airut.yaml with the given schedules:
// block (indented under schedules:).
func (h *harness) config(schedules string) *config.Config {
	h.t.Helper()
	data := map[string]any{
		"Claude": filepath.Join(h.bins, "fakeclaude"), "Origin": h.origin,
		"IMAPPort": h.imap.Port, "SMTPPort": h.smtp.Port, "Schedules": schedules,
	}
	if h.slack != nil {
		data["SlackAPI"], data["BotToken"], data["AppToken"] = h.slack.APIURL, slacktest.BotToken, slacktest.AppToken
	}
	var b bytes.Buffer
	if err := configTemplate.Execute(&b, data); err != nil {
		h.t.Fatal(err)
	}
	cfg, err := config.Parse("airut.yaml", b.Bytes(), config.MapEnv(map[string]string{"SCHED_IMAP_PASSWORD": h.imap.Password}), h.reg)
	if err != nil {
		h.t.Fatalf("config: %v", err)
	}
	if cfg.Err() != nil {
		h.t.Fatalf("config: %v\n%s", cfg.Err(), b.Bytes())
	}
	return cfg
}

// start runs the gateway and the scheduler.
func (h *harness) start(schedules string) {
	h.t.Helper()
	cfg := h.config(schedules)
	logger := slog.New(redact.NewHandler(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}), h.reg))
	gw, err := gateway.New(cfg, gateway.Options{
		StateDir: h.state, Logger: logger, Registry: h.reg, Prefix: h.prefix, Channels: cli.ChannelFactories(),
		ProxyBinary: filepath.Join(h.bins, "airut-proxy"), StopGrace: 2 * time.Second,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.gw = gw
	h.sched = scheduler.New(gw, scheduler.Options{Clock: h.clock, Logger: logger})
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 2)
	go func() { h.done <- gw.Run(ctx) }()
	go func() { h.done <- h.sched.Run(ctx) }()
	h.t.Cleanup(h.stop)
	waitFor(h.t, "the repo to be live", func() bool {
		for _, r := range gw.Repos() {
			if r.ID == "app" && r.State == gateway.RepoLive {
				return true
			}
		}
		return false
	})
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	for range 2 {
		select {
		case err := <-h.done:
			if err != nil {
				h.t.Errorf("Run: %v", err)
			}
		case <-time.After(waitTimeout):
			h.t.Errorf("gateway or scheduler did not stop")
		}
	}
	if h.t.Failed() {
		h.t.Logf("log:\n%s", h.logs.String())
	}
}

// waitFor polls cond until it holds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// info returns the schedule's state.
func (h *harness) info(name string) scheduler.Info {
	h.t.Helper()
	in, ok := h.sched.Schedule("app", name)
	if !ok {
		h.t.Fatalf("schedule %s unknown", name)
	}
	return in
}

// waitNext waits until the scheduler has the schedule's next run at at:
// only then may the clock move there.
func (h *harness) waitNext(name string, at time.Time) {
	h.t.Helper()
	waitFor(h.t, fmt.Sprintf("%s to be scheduled at %s", name, at.UTC()), func() bool {
		in, ok := h.sched.Schedule("app", name)
		return ok && in.Next.Equal(at)
	})
}

// waitResult waits until the schedule's last run is over.
func (h *harness) waitResult(name string) scheduler.Result {
	h.t.Helper()
	var res scheduler.Result
	waitFor(h.t, name+"'s run to finish", func() bool {
		in, ok := h.sched.Schedule("app", name)
		if ok && in.Last != nil && in.Last.Status != scheduler.StatusRunning {
			res = *in.Last
			return true
		}
		return false
	})
	return res
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

func (h *harness) convDir(conv string) string {
	return filepath.Join(h.state, "app", "conversations", conv)
}

// conversations lists the conversations on disk.
func (h *harness) conversations() []string {
	entries, _ := os.ReadDir(filepath.Join(h.state, "app", "conversations"))
	var out []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

type sentMail = mailtest.Sent

func parseMail(t testing.TB, data []byte) sentMail { return mailtest.ParseSent(t, data) }

// reply puts alice's answer to m in the inbox, threaded as a mail client
// does.
func (h *harness) reply(m sentMail, body string) {
	h.t.Helper()
	raw := "Authentication-Results: mx.example.com; spf=pass; dkim=pass; dmarc=pass header.from=example.com\r\n" +
		"From: Alice <alice@example.com>\r\nTo: airut@example.com\r\n" +
		"Subject: Re: " + m.Subject + "\r\nMessage-ID: <" + testkit.RandomHex(8) + "@example.com>\r\n" +
		"In-Reply-To: " + m.MessageID + "\r\nReferences: " + m.MessageID + "\r\n" +
		"Date: " + time.Now().UTC().Format(time.RFC1123Z) + "\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\n" + strings.ReplaceAll(body, "\n", "\r\n") + "\r\n"
	h.imap.Append(h.t, []byte(raw))
}

func (h *harness) sessions(conv string) []testkit.FakeSession {
	return testkit.FakeSessions(h.t, h.convDir(conv))
}
