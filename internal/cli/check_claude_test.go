package cli_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airut/airut/internal/claudecli"
	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/gateway"
)

// npmRegistry serves @anthropic-ai/claude-code's dist-tags and one
// platform release whose executable prints its version.
func npmRegistry(t *testing.T, latest string) *httptest.Server {
	t.Helper()
	exe := []byte("#!/bin/sh\necho '" + latest + " (Claude Code)'\n")
	var tgz bytes.Buffer
	zw := gzip.NewWriter(&tgz)
	tw := tar.NewWriter(zw)
	_ = tw.WriteHeader(&tar.Header{Name: "package/claude", Mode: 0o755, Size: int64(len(exe)), Typeflag: tar.TypeReg})
	_, _ = tw.Write(exe)
	_ = tw.Close()
	_ = zw.Close()
	sum := sha512.Sum512(tgz.Bytes())
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case p == "/-/package/@anthropic-ai/claude-code/dist-tags":
			_ = json.NewEncoder(w).Encode(map[string]string{"latest": latest})
		case strings.HasPrefix(p, "/@anthropic-ai/claude-code-linux-") && strings.HasSuffix(p, "/"+latest):
			_ = json.NewEncoder(w).Encode(map[string]any{"version": latest, "dist": map[string]string{
				"integrity": "sha512-" + base64.StdEncoding.EncodeToString(sum[:]), "tarball": srv.URL + "/claude.tgz"}})
		case p == "/claude.tgz":
			_, _ = w.Write(tgz.Bytes())
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestCheckClaude(t *testing.T) {
	bin := t.TempDir()
	script := filepath.Join(bin, "claude")
	writeFile(t, script, "#!/bin/sh\necho '2.1.300 (Claude Code)'\n", 0o755)
	broken := filepath.Join(bin, "not-claude")
	writeFile(t, broken, "#!/bin/sh\nexit 3\n", 0o755)
	reg := npmRegistry(t, "2.1.332")
	repo := func(extra string) string {
		return "config_version: 5\nexecution:\n  claude_registry: " + reg.URL + "\nrepos:\n  app:\n" + extra + strings.ReplaceAll(goodRepo, "%s", "app")
	}
	tests := []struct {
		name    string
		yaml    string
		path    string // PATH; "" is an empty directory
		want    []wantFinding
		install bool // run a task's install first (through the gateway's installer)
	}{
		{"nothing anywhere", repo(""), "", []wantFinding{{
			re:  `\[FAIL\] repo app: Claude Code none: no claude_binary, no claude_version, and no claude on PATH`,
			fix: "claude_version: latest",
		}}, false},
		{"claude on PATH", repo(""), bin, []wantFinding{{re: `\[ok  \] repo app: Claude Code 2\.1\.300 \(Claude Code\) \(claude on PATH: .*/claude\)`}}, false},
		{"claude_binary", repo("    claude_binary: " + script + "\n"), "", []wantFinding{{re: `\[ok  \] repo app: Claude Code 2\.1\.300 \(Claude Code\) \(claude_binary .*/claude\)`}}, false},
		{"claude_binary that does not run", repo("    claude_binary: " + broken + "\n"), "", []wantFinding{{
			re: `\[FAIL\] repo app: Claude Code \(claude_binary .*/not-claude\): .--version. failed: .*`, fix: "use claude_version"}}, false},
		{"claude_version not installed yet", repo("    claude_version: latest\n"), "", []wantFinding{{
			re: `\[ok  \] repo app: Claude Code 2\.1\.332 \(claude_version latest = 2\.1\.332, @anthropic-ai/claude-code-linux-.*\): not installed yet; the first task installs it .*`}}, false},
		{"claude_version pinned", repo("    claude_version: 2.1.331\n"), "", []wantFinding{{
			re: `\[ok  \] repo app: Claude Code 2\.1\.331 \(claude_version 2\.1\.331, .*\): not installed yet.*`}}, false},
		{"claude_version installed", repo("    claude_version: latest\n"), "", []wantFinding{{
			re: `\[ok  \] repo app: Claude Code 2\.1\.332 \(Claude Code\) \(claude_version latest = 2\.1\.332\)`}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			isolate(t)
			t.Setenv("TEST_PW", "pw")
			path := tc.path
			if path == "" {
				path = t.TempDir()
			}
			t.Setenv("PATH", path+":/usr/bin:/bin")
			if tc.path == "" {
				t.Setenv("PATH", path)
			}
			cfg := filepath.Join(t.TempDir(), "airut.yaml")
			writeFile(t, cfg, tc.yaml, 0o600)
			if tc.install {
				state, err := config.StateDir(os.LookupEnv)
				if err != nil {
					t.Fatal(err)
				}
				in := &claudecli.Installer{Dir: filepath.Join(state, gateway.ClaudeBinariesDir), Registry: reg.URL}
				if _, _, err := in.Binary(context.Background(), "latest"); err != nil {
					t.Fatal(err)
				}
			}
			r := airut(t, "check", "--config", cfg, "--container-command", "/nonexistent/bin/podman")
			checkFindings(t, r.stdout, tc.want)
		})
	}
}

// TestCheckClaudeRegistryDown: claude_version with no registry reachable
// and no version remembered is fatal, with what to do about it.
func TestCheckClaudeRegistryDown(t *testing.T) {
	isolate(t)
	t.Setenv("TEST_PW", "pw")
	reg := npmRegistry(t, "2.1.332")
	url := reg.URL
	reg.Close()
	cfg := filepath.Join(t.TempDir(), "airut.yaml")
	writeFile(t, cfg, "config_version: 5\nexecution:\n  claude_registry: "+url+"\nrepos:\n  app:\n    claude_version: stable\n"+
		strings.ReplaceAll(goodRepo, "%s", "app"), 0o600)
	r := airut(t, "check", "--config", cfg, "--container-command", "/nonexistent/bin/podman")
	checkFindings(t, r.stdout, []wantFinding{{re: `\[FAIL\] repo app: Claude Code claude_version stable: .*`, fix: "npm registry"}})
}
