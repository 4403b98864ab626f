package config

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airut/airut/internal/redact"
)

// watchYAML is a valid config with one repo, app, of the given model,
// whose password is !env MAIL_PW.
func watchYAML(model string) string {
	return `config_version: 5
repos:
  app:
    repo_url: https://example.com/app.git
    model: ` + model + `
    email:
      account: {username: bot@example.com, from: "Bot <bot@example.com>", password: !env MAIL_PW}
      imap: {server: imap.example.com}
      smtp: {server: smtp.example.com}
      auth: {authorized_senders: [alice@example.com], trusted_authserv_id: mx.example.com}
`
}

// applied records what a Reloader applies.
type applied struct {
	mu   sync.Mutex
	cfgs []*Config
	ch   chan *Config
}

func (a *applied) apply(c *Config) error {
	a.mu.Lock()
	a.cfgs = append(a.cfgs, c)
	a.mu.Unlock()
	a.ch <- c
	return nil
}

func (a *applied) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.cfgs)
}

func (a *applied) next(t *testing.T, what string) *Config {
	t.Helper()
	select {
	case c := <-a.ch:
		return c
	case <-time.After(30 * time.Second):
		t.Fatalf("no reload after %s", what)
		return nil
	}
}

type watchFixture struct {
	path string
	r    *Reloader
	a    *applied
	reg  *redact.Registry
}

func newWatchFixture(t *testing.T, yaml, dotenv string, env map[string]string) *watchFixture {
	t.Helper()
	dir := t.TempDir()
	f := &watchFixture{path: filepath.Join(dir, FileName), a: &applied{ch: make(chan *Config, 16)}, reg: redact.NewRegistry()}
	if yaml != "" {
		writeTest(t, f.path, yaml)
	}
	if dotenv != "" {
		writeTest(t, filepath.Join(dir, DotEnvName), dotenv)
	}
	f.r = NewReloader(ReloaderOptions{Path: f.path, Env: MapEnv(env), Registry: f.reg, Apply: f.a.apply, Debounce: 50 * time.Millisecond})
	if _, err := f.r.Load(); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *watchFixture) watch(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.r.Watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	// fsnotify's watch is in place once Add returned; give the goroutine
	// that moment.
	time.Sleep(100 * time.Millisecond)
}

// settled is the status once the reload that Apply was called for has
// recorded itself: Apply runs before the generation is counted, so a test
// woken by Apply would otherwise read the status a moment early.
func (f *watchFixture) settled(t *testing.T, gen uint64) ReloadStatus {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for f.r.Status().Generation < gen && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return f.r.Status()
}

func writeTest(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestFirstRunDefaults: no file, or an empty one, is the defaults with no
// repos (SPEC S9 first run).
func TestFirstRunDefaults(t *testing.T) {
	for _, tt := range []struct{ name, data string }{{"missing", ""}, {"empty", "\n"}, {"comment only", "# nothing yet\n"}} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			if tt.data != "" {
				writeTest(t, path, tt.data)
			}
			r := NewReloader(ReloaderOptions{Path: path})
			cfg, err := r.Load()
			if err != nil {
				t.Fatal(err)
			}
			if !cfg.Dashboard.Enabled || cfg.Dashboard.Port != 5200 || cfg.Dashboard.Host != "127.0.0.1" || len(cfg.Repos) != 0 {
				t.Errorf("first run config: %+v", cfg)
			}
			if st := r.Status(); st.Generation != 1 || st.LastError != "" {
				t.Errorf("status after boot: %+v", st)
			}
		})
	}
}

// TestReloadSaveStyles: the two ways editors save both reload, once.
func TestReloadSaveStyles(t *testing.T) {
	env := map[string]string{"MAIL_PW": "pw-1"}
	t.Run("rename (vim, most IDEs)", func(t *testing.T) {
		f := newWatchFixture(t, watchYAML("opus"), "", env)
		f.watch(t)
		tmp := filepath.Join(filepath.Dir(f.path), ".airut.yaml.swp")
		writeTest(t, tmp, watchYAML("sonnet"))
		if err := os.Rename(tmp, f.path); err != nil {
			t.Fatal(err)
		}
		if got := f.a.next(t, "a rename").Repos["app"].Model; got != "sonnet" {
			t.Errorf("model after the rename: %q", got)
		}
		// The rename must keep being watched (the directory is, not the inode).
		writeTest(t, tmp, watchYAML("haiku"))
		if err := os.Rename(tmp, f.path); err != nil {
			t.Fatal(err)
		}
		if got := f.a.next(t, "a second rename").Repos["app"].Model; got != "haiku" {
			t.Errorf("model after the second rename: %q", got)
		}
		if st := f.settled(t, 3); st.Generation != 3 || st.LastError != "" {
			t.Errorf("status: %+v; want generation 3", st)
		}
	})
	t.Run("truncate then write (nano, echo >)", func(t *testing.T) {
		f := newWatchFixture(t, watchYAML("opus"), "", env)
		f.watch(t)
		fh, err := os.OpenFile(f.path, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		// The empty file in between would drain every repo: the debounce
		// must not load it.
		time.Sleep(10 * time.Millisecond)
		data := watchYAML("sonnet")
		for i := 0; i < len(data); i += 64 {
			if _, err := fh.WriteString(data[i:min(i+64, len(data))]); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Millisecond)
		}
		if err := fh.Close(); err != nil {
			t.Fatal(err)
		}
		if got := f.a.next(t, "a truncating save"); got.Repos["app"] == nil || got.Repos["app"].Model != "sonnet" {
			t.Errorf("after a truncating save: %+v", got.Repos)
		}
		time.Sleep(200 * time.Millisecond)
		if n := f.a.count(); n != 1 {
			t.Errorf("applies: %d; want 1 (debounced)", n)
		}
	})
}

// TestReloadInvalidKeptOut: a file that does not load is reported with
// its line and key, and the running config stays.
func TestReloadInvalidKeptOut(t *testing.T) {
	f := newWatchFixture(t, watchYAML("opus"), "", map[string]string{"MAIL_PW": "pw-1"})
	before := f.r.Current()
	f.watch(t)
	writeTest(t, f.path, watchYAML("opus")+"execution:\n  max_concurrent: 0\n")
	deadline := time.Now().Add(30 * time.Second)
	for f.r.Status().LastError == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st := f.r.Status()
	if !strings.Contains(st.LastError, "airut.yaml:12: execution.max_concurrent: must be at least 1") {
		t.Errorf("LastError: %q; want the line and key", st.LastError)
	}
	if st.Generation != 1 || f.r.Current() != before || f.a.count() != 0 {
		t.Errorf("an invalid file was applied: %+v, applies %d", st, f.a.count())
	}
	// Fixing it applies, and clears the error.
	writeTest(t, f.path, watchYAML("sonnet"))
	if got := f.a.next(t, "the fix").Repos["app"].Model; got != "sonnet" {
		t.Errorf("model: %q", got)
	}
	if st := f.settled(t, 2); st.Generation != 2 || st.LastError != "" {
		t.Errorf("status after the fix: %+v", st)
	}

	// A file removed (or half-renamed) is not "no repos".
	if err := os.Remove(f.path); err != nil {
		t.Fatal(err)
	}
	if err := f.r.Reload(); err == nil || !strings.Contains(f.r.Status().LastError, "no such file") {
		t.Errorf("reload of a removed file: %v, status %+v", err, f.r.Status())
	}
	if f.r.Current().Repos["app"] == nil {
		t.Error("a removed file dropped the repos")
	}
}

// TestReloadRepoErrorsApplied: an invalid repo is left out, the rest
// applies, and the error is shown.
func TestReloadRepoErrorsApplied(t *testing.T) {
	f := newWatchFixture(t, watchYAML("opus"), "", map[string]string{"MAIL_PW": "pw-1"})
	writeTest(t, f.path, watchYAML("opus")+"  broken:\n    modle: x\n")
	if err := f.r.Reload(); err != nil {
		t.Fatal(err)
	}
	cfg := f.a.next(t, "Reload")
	if cfg.Repos["app"] == nil || cfg.RepoErrors["broken"] == nil {
		t.Errorf("repos %v, errors %v", cfg.Repos, cfg.RepoErrors)
	}
	if st := f.r.Status(); st.Generation != 2 || !strings.Contains(st.LastError, "repos.broken.modle: unknown key") {
		t.Errorf("status: %+v", st)
	}
}

// TestReloadDotEnv: a changed .env value takes effect on reload (the
// reference needs a restart); a variable set before airut started still
// wins over .env.
func TestReloadDotEnv(t *testing.T) {
	f := newWatchFixture(t, watchYAML("opus"), "MAIL_PW=first-pw\n", map[string]string{})
	if got := f.r.Current().Repos["app"].Email.Account.Password.Reveal(); got != "first-pw" {
		t.Fatalf("boot password: %q", got)
	}
	f.watch(t)
	writeTest(t, filepath.Join(filepath.Dir(f.path), DotEnvName), "# rotated\nMAIL_PW=second-pw\n")
	if got := f.a.next(t, "a .env change").Repos["app"].Email.Account.Password.Reveal(); got != "second-pw" {
		t.Errorf("password after the .env change: %q", got)
	}
	if got := f.reg.Redact("log: second-pw"); strings.Contains(got, "second-pw") {
		t.Errorf("the new .env value is not redacted: %q", got)
	}

	pinned := newWatchFixture(t, watchYAML("opus"), "MAIL_PW=from-dotenv\n", map[string]string{"MAIL_PW": "from-process"})
	writeTest(t, filepath.Join(filepath.Dir(pinned.path), DotEnvName), "MAIL_PW=changed-dotenv\n")
	if err := pinned.r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := pinned.r.Current().Repos["app"].Email.Account.Password.Reveal(); got != "from-process" {
		t.Errorf("password: %q; want the process environment's", got)
	}
}

// TestReloadSkipsUnchanged: a watch event with the same bytes (touch,
// chmod, an editor's backup file) does not reapply; Reload (SIGHUP) always
// does, so failed repos are retried.
func TestReloadSkipsUnchanged(t *testing.T) {
	f := newWatchFixture(t, watchYAML("opus"), "", map[string]string{"MAIL_PW": "pw-1"})
	f.watch(t)
	writeTest(t, f.path, watchYAML("opus"))
	writeTest(t, filepath.Join(filepath.Dir(f.path), "airut.yaml~"), "garbage: [")
	time.Sleep(300 * time.Millisecond)
	if n := f.a.count(); n != 0 {
		t.Errorf("applies after rewriting the same bytes: %d", n)
	}
	if err := f.r.Reload(); err != nil {
		t.Fatal(err)
	}
	f.a.next(t, "Reload")
	if st := f.r.Status(); st.Generation != 2 {
		t.Errorf("generation after a forced reload: %d", st.Generation)
	}
}
