package cli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/airut/airut/internal/cli"
	"github.com/airut/airut/internal/testkit"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRunWithoutReposSaysWhatToDo: `make run` on the starter config (no
// repos) must not just sit idle after one log line.
func TestRunWithoutReposSaysWhatToDo(t *testing.T) {
	testkit.RequireEngine(t) // gateway.New looks for the container engine
	tests := []struct{ name, yaml, want string }{
		{"no file (first run)", "", "No repository is configured yet, so this gateway is waiting for one"},
		{"empty file", " \n", "No repository is configured yet, so this gateway is waiting for one"},
		{"no repos", "config_version: 5\n", "No repository is configured yet, so this gateway is waiting for one"},
		{"only an invalid repo", "config_version: 5\nrepos:\n  broken:\n    modle: x\n", "No repository can run (1 failed validation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t)
			path := filepath.Join(t.TempDir(), "airut.yaml")
			if tt.yaml != "" {
				writeFile(t, path, tt.yaml, 0o600)
			}
			ctx, cancel := context.WithCancel(context.Background())
			var stdout, stderr lockedBuffer
			done := make(chan int, 1)
			go func() {
				done <- cli.Run(ctx, []string{"run", "--config", path, "--prefix", "airut-cli-idle-test"}, &stdout, &stderr)
			}()
			deadline := time.Now().Add(time.Minute)
			for !strings.Contains(stderr.String(), tt.want) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			cancel()
			<-done
			out := stderr.String()
			for _, w := range []string{tt.want, "Set it up in the browser: http://127.0.0.1:5200/",
				"add a repository under `repos:` in " + path, "airut check --config " + path} {
				if !strings.Contains(out, w) {
					t.Errorf("stderr lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestRunHotReload: `airut run` reloads on SIGHUP and on a change to
// .env, whose new value reaches the environment children see, while a
// variable set before airut started keeps its value.
func TestRunHotReload(t *testing.T) {
	testkit.RequireEngine(t)
	isolate(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "airut.yaml")
	writeFile(t, path, "config_version: 5\n", 0o600)
	writeFile(t, filepath.Join(dir, ".env"), "AIRUT_TEST_FROM_DOTENV=one\nAIRUT_TEST_PINNED=from-dotenv\n", 0o600)
	t.Setenv("AIRUT_TEST_PINNED", "from-process")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, []string{"run", "--config", path, "--prefix", "airut-cli-reload-test"}, &stdout, &stderr)
	}()
	defer func() { cancel(); <-done }()
	wait := func(what string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for !strings.Contains(stderr.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in:\n%s", what, stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait("hot reload on")
	if v := os.Getenv("AIRUT_TEST_FROM_DOTENV"); v != "one" {
		t.Errorf(".env at boot: %q", v)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	wait("generation=2")
	if !strings.Contains(stderr.String(), "SIGHUP: reloading the config") {
		t.Errorf("log:\n%s", stderr.String())
	}
	writeFile(t, filepath.Join(dir, ".env"), "AIRUT_TEST_FROM_DOTENV=dotenv-two-7f3a\nAIRUT_TEST_PINNED=changed\n", 0o600)
	wait("generation=3")
	if v := os.Getenv("AIRUT_TEST_FROM_DOTENV"); v != "dotenv-two-7f3a" {
		t.Errorf(".env after the change: %q; want dotenv-two-7f3a", v)
	}
	if v := os.Getenv("AIRUT_TEST_PINNED"); v != "from-process" {
		t.Errorf("a variable set before airut started: %q; want it kept", v)
	}
	if strings.Contains(stderr.String(), "dotenv-two-7f3a") {
		t.Errorf(".env values belong to the redactor, not the log:\n%s", stderr.String())
	}
}
