package dashboard_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/airut/airut/internal/cli"
	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/dashboard"
	"github.com/airut/airut/internal/gateway"
	"github.com/airut/airut/internal/redact"
	"github.com/airut/airut/internal/sandbox"
	"github.com/airut/airut/internal/testkit"
)

// waitTimeout bounds every wait: a hang fails the test (benchmarks
// lengthen it).
var waitTimeout = 6 * time.Minute

// env is one real gateway (real Podman, the real proxy, fakeclaude as the
// agent) with the dashboard in front of it, served on loopback. Its only
// channel is the web channel: tasks come from the dashboard.
type env struct {
	t      testing.TB
	engine string
	prefix string
	state  string
	secret string
	reg    *redact.Registry
	logs   *testkit.SyncBuffer
	gw     *gateway.Gateway
	srv    *dashboard.Server
	http   *httptest.Server
	base   string
	// shutdown stops the gateway (once) and fails the test if it leaves
	// a container or network behind; cleanup calls it too.
	shutdown func()
}

var configTemplate = template.Must(template.New("airut.yaml").Parse(`config_version: 5
execution:
  max_concurrent: 3
  # The dashboard's tests count a task's containers; the warm pool has its
  # own suites (sandbox, gateway), and one test here (envOpts.warm).
  warm_sandboxes: {{.Warm}}
  shutdown_timeout: 10
  claude_binary: {{.Claude}}
repos:
  app:
    repo_url: {{.Origin}}
    resource_limits:
      timeout: 300
    secrets:
      PLAIN_TOKEN: !env DASH_PLAIN_TOKEN
`))

type envOpts struct {
	maxStreams int
	// warm is execution.warm_sandboxes; 0 (no pool) unless a test is
	// about the pool.
	warm int
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	engine := testkit.RequireEngine(t)
	bins, err := testkit.BuildBinaries()
	if err != nil {
		t.Fatal(err)
	}
	base := testkit.BaseImage(t, engine)
	origin := testkit.GitRepo(t, map[string]string{
		".airut/container/Dockerfile":   testkit.DefaultDockerfile(base),
		".airut/network-allowlist.yaml": "domains:\n  - api.example.test\n",
		"README.md":                     "# app\n",
	})
	p := "airut-dbt-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(p) > 36 {
		p = p[:36]
	}
	e := &env{t: t, engine: engine, prefix: p, state: t.TempDir(), secret: "dash-secret-" + testkit.RandomHex(12),
		reg: redact.NewRegistry(), logs: &testkit.SyncBuffer{}}
	testkit.RemoveImages(t, engine, e.prefix+"-"+sandbox.InstanceID(e.state))
	var b bytes.Buffer
	if err := configTemplate.Execute(&b, map[string]any{"Claude": filepath.Join(bins, "fakeclaude"), "Origin": origin, "Warm": o.warm}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("airut.yaml", b.Bytes(), config.MapEnv(map[string]string{"DASH_PLAIN_TOKEN": e.secret}), e.reg)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if cfg.Err() != nil {
		t.Fatalf("config: %v", cfg.Err())
	}
	logger := slog.New(redact.NewHandler(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}), e.reg))
	gw, err := gateway.New(cfg, gateway.Options{
		StateDir: e.state, Logger: logger, Registry: e.reg, Prefix: e.prefix, Channels: cli.ChannelFactories(),
		ProxyBinary: filepath.Join(bins, "airut-proxy"), StopGrace: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.gw = gw
	srv, err := dashboard.New(dashboard.Options{Gateway: gw, Config: func() *config.Config { return cfg }, StateDir: e.state,
		Registry: e.reg, Logger: logger, Version: "test", MaxStreams: o.maxStreams, Heartbeat: time.Second,
		Checks: func(context.Context) []dashboard.Finding {
			return []dashboard.Finding{{Title: "Podman", OK: true, Detail: "found"}, {Title: "Claude credential", Detail: "none configured", Fix: "add ANTHROPIC_API_KEY"}}
		},
		Nav: []dashboard.NavLink{{Title: "Config", Path: "/config"}}})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.http = httptest.NewServer(srv)
	e.base = e.http.URL
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	var once sync.Once
	e.shutdown = func() {
		once.Do(func() {
			e.http.CloseClientConnections()
			e.http.Close()
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("gateway Run: %v", err)
				}
			case <-time.After(waitTimeout):
				t.Errorf("gateway did not stop")
			}
			if left := testkit.Leftovers(engine, e.prefix); len(left) > 0 {
				t.Errorf("left behind: %s", strings.Join(left, ", "))
			}
		})
	}
	t.Cleanup(func() {
		e.shutdown()
		if t.Failed() {
			t.Logf("gateway log:\n%s", e.logs.String())
		}
		_ = exec.Command(engine, "network", "rm", "-f", e.prefix+"-egress").Run()
	})
	e.waitFor("repo app live", func() bool {
		for _, r := range gw.Repos() {
			if r.ID == "app" && r.State == gateway.RepoLive {
				return true
			}
		}
		return false
	})
	return e
}

func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	e.waitForWithin(what, waitTimeout, cond)
}

func (e *env) waitForWithin(what string, limit time.Duration, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitDone waits for task id to finish and returns it.
func (e *env) waitDone(id string) gateway.TaskInfo {
	e.t.Helper()
	return e.waitDoneWithin(id, waitTimeout)
}

// waitDoneWithin is waitDone with its own limit (a first task builds the
// images).
func (e *env) waitDoneWithin(id string, limit time.Duration) gateway.TaskInfo {
	e.t.Helper()
	var ti gateway.TaskInfo
	e.waitForWithin("task "+id+" done", limit, func() bool {
		var ok bool
		ti, ok = e.gw.Task(id)
		return ok && ti.State == gateway.StateDone
	})
	return ti
}

// request does one request against the dashboard with the headers a
// same-origin script would send.
func (e *env) request(method, path string, body any, hdr ...string) *http.Response {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if method != http.MethodGet {
		req.Header.Set("X-Requested-With", "test")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

func readAll(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (e *env) getJSON(path string, v any) {
	e.t.Helper()
	resp := e.request("GET", path, nil)
	body := readAll(e.t, resp)
	if resp.StatusCode != 200 {
		e.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		e.t.Fatalf("GET %s: %v\n%s", path, err, body)
	}
}

// startTask starts a conversation through the API.
func (e *env) startTask(prompt string) (conv, task string) {
	e.t.Helper()
	resp := e.request("POST", "/api/conversations", map[string]string{"repo": "app", "prompt": prompt})
	body := readAll(e.t, resp)
	if resp.StatusCode != 201 {
		e.t.Fatalf("POST /api/conversations: %d %s", resp.StatusCode, body)
	}
	var out struct{ Conversation, Task string }
	if err := json.Unmarshal([]byte(body), &out); err != nil || out.Conversation == "" || out.Task == "" {
		e.t.Fatalf("POST /api/conversations: %q (%v)", body, err)
	}
	return out.Conversation, out.Task
}

// sseEvent is one Server-Sent Event as read.
type sseEvent struct{ ID, Name, Data string }

// readSSE reads events from an open stream until stop says so or it ends.
func readSSE(r io.Reader, stop func(sseEvent) bool) []sseEvent {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4<<10), 16<<20)
	var out []sseEvent
	var cur sseEvent
	var data []string
	for sc.Scan() {
		l := sc.Text()
		switch {
		case l == "":
			if cur.Name == "" && len(data) == 0 && cur.ID == "" {
				continue
			}
			cur.Data = strings.Join(data, "\n")
			out = append(out, cur)
			if stop(cur) {
				return out
			}
			cur, data = sseEvent{}, nil
		case strings.HasPrefix(l, ":"):
		case strings.HasPrefix(l, "id: "):
			cur.ID = l[4:]
		case strings.HasPrefix(l, "event: "):
			cur.Name = l[7:]
		case strings.HasPrefix(l, "data: "):
			data = append(data, l[6:])
		}
	}
	return out
}

// taskLeftovers are the containers and networks of tasks. The warm pool's
// ready spares are not a task's; a claimed spare keeps its spare name, so
// it is counted by the pool's Claimed until it is torn down.
func (e *env) taskLeftovers() []string {
	var left []string
	for _, l := range testkit.Leftovers(e.engine, e.prefix) {
		if !strings.Contains(l, "-spare-") {
			left = append(left, l)
		}
	}
	if st, ok := e.gw.WarmPool(); ok && st.Claimed > 0 {
		left = append(left, fmt.Sprintf("%d claimed network sandbox(es)", st.Claimed))
	}
	return left
}

func (e *env) dump() string { return fmt.Sprintf("log:\n%s", e.logs.String()) }
