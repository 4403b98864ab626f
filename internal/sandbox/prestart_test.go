package sandbox_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airut/airut/internal/sandbox"
)

// TestPrestartRefused: a prestarted sandbox whose proxy never becomes
// ready (it refuses the allowlist) runs nothing, although the agent's
// container started beside the proxy's: the result is ErrNotReady with
// the proxy's reason, and the run leaves nothing behind.
func TestPrestartRefused(t *testing.T) {
	ne := newNetEnv(t)
	bad := *ne.provider
	bad.Allowlist = []byte("domains: [\"*\"]\nbogus: {\n")
	pre := bad.Prestart(context.Background(), "refused", nil)
	defer pre.Discard(context.Background())
	ws := t.TempDir()
	res, out, _ := ne.run(t, sandbox.Spec{Context: "refused", Network: sandbox.NetworkSandboxed, Provider: pre,
		Mounts:  []sandbox.Mount{{Source: ws, Target: "/workspace"}},
		Command: []string{"sh", "-c", "touch /workspace/ran; echo ran"}})
	if res.Outcome != sandbox.OutcomeInfrastructure || !errors.Is(res.Err, sandbox.ErrNotReady) ||
		!strings.Contains(res.Reason, "proxy exited before it was ready") {
		t.Fatalf("result %s %q (%v); want infrastructure, ErrNotReady, the proxy's reason", res.Outcome, res.Reason, res.Err)
	}
	if _, err := os.Stat(filepath.Join(ws, "ran")); err == nil || len(out) > 0 {
		t.Fatalf("the command ran although its proxy was never ready: %q", out)
	}
	ne.assertNoLeftovers(t)
	if left := privateFiles(t, ne.runner.StateDir); len(left) > 0 {
		t.Errorf("private files left: %q", left)
	}
}
