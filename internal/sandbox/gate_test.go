package sandbox_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airut/airut/internal/sandbox"
)

// waitRunning waits until a container of the env's prefix runs: its
// start is over and only the gate holds its command back.
func (e *env) waitRunning(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		out, err := exec.Command(e.engine, "ps", "--filter", "name=^"+e.prefix+"-", "--filter", "status=running",
			"--format", "{{.Names}}").Output()
		if err == nil && strings.TrimSpace(string(out)) != "" {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the container never ran")
}

// TestRunWaitsForReady: a container started with a Ready runs its command
// only once Ready has returned, with its whole input and without the
// gate's variable; a failed Ready runs nothing and leaves nothing.
func TestRunWaitsForReady(t *testing.T) {
	e := newEnv(t)
	image := ensureOnce(t, e.cache, buildContext(e.base, nil))
	// The command says whether Ready had returned when it started (Ready
	// writes the file last), whether it sees the gate's variable, and
	// echoes its input.
	script := `touch /workspace/ran; if [ -f /workspace/released ]; then echo after; else echo before; fi
echo "gate=${AIRUT_GATE:-unset}"; cat`
	for _, tc := range []struct {
		name  string
		fail  error
		stdin string
	}{
		{name: "ready", stdin: "first line of the prompt\nsecond\n"},
		{name: "no input"},
		{name: "failed", fail: errors.New("the workspace clone failed"), stdin: "never read\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := t.TempDir()
			spec := sandbox.Spec{Image: image, Command: []string{"sh", "-c", script},
				Mounts: []sandbox.Mount{{Source: ws, Target: "/workspace"}},
				Ready: func(ctx context.Context) error {
					e.waitRunning(t)
					// Long enough for an ungated command to have run.
					time.Sleep(500 * time.Millisecond)
					if err := os.WriteFile(filepath.Join(ws, "released"), nil, 0o644); err != nil {
						return err
					}
					return tc.fail
				}}
			if tc.stdin != "" {
				spec.Stdin = strings.NewReader(tc.stdin)
			}
			res, out, errOut := e.run(t, spec)
			_, ranErr := os.Stat(filepath.Join(ws, "ran"))
			if tc.fail != nil {
				if res.Outcome != sandbox.OutcomeInfrastructure || !errors.Is(res.Err, sandbox.ErrNotReady) ||
					!strings.Contains(res.Reason, tc.fail.Error()) {
					t.Fatalf("result %s %q (%v); want infrastructure, ErrNotReady, the Ready's error", res.Outcome, res.Reason, res.Err)
				}
				if ranErr == nil || len(out) > 0 {
					t.Fatalf("the command ran although Ready failed: stdout %q", out)
				}
				return
			}
			if res.Outcome != sandbox.OutcomeSuccess {
				t.Fatalf("outcome %s (%s); stderr %q", res.Outcome, res.Reason, errOut)
			}
			want := []string{"after", "gate=unset"}
			if tc.stdin != "" {
				want = append(want, strings.Split(strings.TrimSuffix(tc.stdin, "\n"), "\n")...)
			}
			if strings.Join(out, "\n") != strings.Join(want, "\n") {
				t.Errorf("stdout %q; want %q", out, want)
			}
		})
	}
}
