package cli_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync"
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
