package gateway_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airut/airut/internal/cli"
	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/gateway"
	"github.com/airut/airut/internal/redact"
)

// startWatched runs the gateway from airut.yaml (and .env) in a config
// directory under hot reload, as `airut run` does: config.Reloader
// watching the directory and applying to the gateway.
func (h *harness) startWatched(yaml []byte, dotenv string, env map[string]string) (dir string, rl *config.Reloader) {
	h.t.Helper()
	dir = h.t.TempDir()
	path := filepath.Join(dir, config.FileName)
	if err := os.WriteFile(path, yaml, 0o600); err != nil {
		h.t.Fatal(err)
	}
	if dotenv != "" {
		if err := os.WriteFile(filepath.Join(dir, config.DotEnvName), []byte(dotenv), 0o600); err != nil {
			h.t.Fatal(err)
		}
	}
	logger := slog.New(redact.NewHandler(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}), h.reg))
	var gw *gateway.Gateway
	rl = config.NewReloader(config.ReloaderOptions{Path: path, Env: config.MapEnv(env), Registry: h.reg, Logger: logger,
		Apply: func(c *config.Config) error { return gw.ApplyConfig(c) }, Debounce: 100 * time.Millisecond})
	cfg, err := rl.Load()
	if err != nil {
		h.t.Fatal(err)
	}
	gw, err = gateway.New(cfg, gateway.Options{
		StateDir: h.state, Logger: logger, Registry: h.reg, Prefix: h.prefix, Channels: cli.ChannelFactories(),
		ProxyBinary: filepath.Join(h.bins, "airut-proxy"), StopGrace: 2 * time.Second,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.gw, h.cancel, h.done = gw, cancel, make(chan error, 1)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		if err := rl.Watch(ctx); err != nil {
			h.t.Errorf("Watch: %v", err)
		}
	}()
	go func() { h.done <- gw.Run(ctx) }()
	h.t.Cleanup(func() { h.stop(); <-watchDone })
	return dir, rl
}

func (h *harness) repoState(id string) gateway.RepoStatus {
	for _, s := range h.gw.Repos() {
		if s.ID == id {
			return s
		}
	}
	return gateway.RepoStatus{}
}

func (h *harness) waitRepo(id, state string) {
	h.t.Helper()
	waitFor(h.t, id+" to be "+state, func() bool { return h.repoState(id).State == state })
}

// saveRenamed writes a file as vim does: a temp file renamed over it.
func saveRenamed(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestReloadFixesFailedBoot: a boot where every repo failed (a wrong
// repo_url, then a wrong mailbox password in .env) is mended by editing
// the files, without a restart: each reload retries the failed repo, a
// changed .env value takes effect, and the repo then answers mail.
func TestReloadFixesFailedBoot(t *testing.T) {
	h := newHarness(t)
	good := h.configYAML(harnessOpts{}, []tmplRepo{{ID: "app", Host: "127.0.0.1"}})
	broken := []byte(strings.Replace(string(good), h.origin, filepath.Join(t.TempDir(), "missing.git"), 1))
	env := map[string]string{"GW_PLAIN_TOKEN": h.secret}
	dir, rl := h.startWatched(broken, "GW_IMAP_PASSWORD=wrong-password\n", env)
	h.waitRepo("app", gateway.RepoFailed)
	if st := h.repoState("app"); !strings.Contains(st.Reason, "git mirror") {
		t.Errorf("boot failure: %+v; want the mirror's error", st)
	}

	saveRenamed(t, filepath.Join(dir, config.FileName), good)
	waitFor(t, "the repo_url fix to apply", func() bool { return rl.Status().Generation == 2 })
	waitFor(t, "the channel's login failure", func() bool {
		st := h.repoState("app")
		return st.State == gateway.RepoFailed && !strings.Contains(st.Reason, "git mirror")
	})

	if err := os.WriteFile(filepath.Join(dir, config.DotEnvName), []byte("GW_IMAP_PASSWORD="+h.imap.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.waitRepo("app", gateway.RepoLive)
	if st := rl.Status(); st.Generation != 3 || st.LastError != "" {
		t.Errorf("reload status: %+v; want generation 3, no error", st)
	}
	h.send(outMail{Subject: "after the fix", Body: "@@reply fixed without a restart\n"})
	h.waitMail(1)
	if reply := h.waitMail(2); !strings.Contains(reply.Text, "fixed without a restart") {
		t.Errorf("reply: %q", reply.Text)
	}
	if strings.Contains(h.logs.String(), h.imap.Password) {
		t.Error("the .env password is in the log")
	}
}

// TestReloadRemovedRepoDrains: a repo taken out of airut.yaml stops
// taking mail at once, but its running task finishes and replies before
// the repo goes; an invalid edit meanwhile is kept out.
func TestReloadRemovedRepoDrains(t *testing.T) {
	h := newHarness(t)
	yaml := h.configYAML(harnessOpts{}, []tmplRepo{{ID: "app", Host: "127.0.0.1"}})
	dir, rl := h.startWatched(yaml, "", h.env())
	h.waitRepo("app", gateway.RepoLive)
	h.send(outMail{Subject: "long one", Body: blockScript("finished after removal")})
	conv := h.taskOf("long one").Conversation
	h.waitStarted(conv)

	path := filepath.Join(dir, config.FileName)
	// Invalid first: nothing changes, the error is recorded.
	if err := os.WriteFile(path, append(yaml, []byte("execution_typo: 1\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the invalid edit to be reported", func() bool { return rl.Status().LastError != "" })
	if st := rl.Status(); !strings.Contains(st.LastError, "execution_typo: unknown key") || st.Generation != 1 {
		t.Errorf("status after an invalid edit: %+v", st)
	}
	if st := h.repoState("app"); st.State != gateway.RepoLive {
		t.Errorf("app after an invalid edit: %+v; want live", st)
	}

	saveRenamed(t, path, []byte("config_version: 5\nexecution:\n  shutdown_timeout: 20\n"))
	waitFor(t, "the removal to apply", func() bool { return rl.Status().Generation == 2 })
	time.Sleep(500 * time.Millisecond) // the drain has begun; the task must still be running
	if ti := h.taskOf("long one"); ti.State != gateway.StateRunning {
		t.Errorf("the running task after its repo was removed: %s; want still running", ti.State)
	}
	h.release(conv)
	h.waitMail(1)
	if reply := h.waitMail(2); !strings.Contains(reply.Text, "finished after removal") {
		t.Errorf("reply: %q", reply.Text)
	}
	waitFor(t, "app to be gone", func() bool { return h.repoState("app").State == "" })
}

// TestReloadScopes: edits of airut.yaml on a live gateway, by scope. A
// task-scope key (model) applies to the next task with no restart; a
// repo-scope key (the email channel's poll_interval) restarts the repo,
// but only once its running task has finished and replied.
func TestReloadScopes(t *testing.T) {
	h := newHarness(t)
	yaml := string(h.configYAML(harnessOpts{}, []tmplRepo{{ID: "app", Host: "127.0.0.1"}}))
	dir, rl := h.startWatched([]byte(yaml), "", h.env())
	path := filepath.Join(dir, config.FileName)
	h.waitRepo("app", gateway.RepoLive)
	started := func() int { return strings.Count(h.logs.String(), `msg="repo started"`) }

	// Task scope.
	yaml = strings.Replace(yaml, "    resource_limits:", "    model: sonnet\n    resource_limits:", 1)
	saveRenamed(t, path, []byte(yaml))
	waitFor(t, "the model change to apply", func() bool { return rl.Status().Generation == 2 })
	h.send(outMail{Subject: "on sonnet", Body: "@@reply ok\n"})
	h.waitMail(1)
	h.waitMail(2)
	conv := h.taskOf("on sonnet").Conversation
	if s := h.sessions(conv); len(s) != 1 || len(s[0].Runs) != 1 || s[0].Runs[0].Model != "sonnet" {
		t.Errorf("sessions: %+v; want one run on sonnet", s)
	}
	if n := started(); n != 1 {
		t.Errorf("repo started %d times after a task-scope edit; want 1 (no restart)", n)
	}

	// Repo scope, while a task runs.
	h.send(outMail{Subject: "long", Body: blockScript("finished before the restart")})
	long := h.taskOf("long").Conversation
	h.waitStarted(long)
	yaml = strings.Replace(yaml, "        use_idle: true", "        use_idle: true\n        poll_interval: 30", 1)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil { // truncate-style save
		t.Fatal(err)
	}
	h.waitRepo("app", gateway.RepoReloading)
	time.Sleep(500 * time.Millisecond)
	if st := h.repoState("app"); st.State != gateway.RepoReloading || started() != 1 {
		t.Errorf("app restarted under its running task: %+v, started %d times", st, started())
	}
	h.release(long)
	h.waitMail(3)
	if reply := h.waitMail(4); !strings.Contains(reply.Text, "finished before the restart") {
		t.Errorf("reply: %q", reply.Text)
	}
	h.waitRepo("app", gateway.RepoLive)
	if n := started(); n != 2 {
		t.Errorf("repo started %d times; want 2 (one restart)", n)
	}
	if st := rl.Status(); st.Generation != 3 || st.LastError != "" {
		t.Errorf("reload status: %+v", st)
	}
}
