package cli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/airut/airut/internal/cli"
)

// TestMain lets this test binary stand in for the airut binary: `airut
// check` imports its own executable into a trial image and runs
// `/airut version` in it, and in-process that executable is the test binary.
func TestMain(m *testing.M) {
	if os.Args[0] == "/airut" {
		os.Exit(cli.Run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// result is what one invocation of the airut command produced.
type result struct {
	code           int
	stdout, stderr string
}

// airut runs the command line in-process.
func airut(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := cli.Run(context.Background(), args, &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

func (r result) String() string {
	return "exit " + strconv.Itoa(r.code) + "\n--- stdout:\n" + r.stdout + "--- stderr:\n" + r.stderr
}

// isolate points HOME and XDG_CONFIG_HOME at fresh temporary directories so
// that no test reads or writes the real user's config, and returns the
// default config path under them.
func isolate(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	xdg := filepath.Join(dir, "xdg")
	for _, d := range []string{home, xdg} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", xdg)
	return filepath.Join(xdg, "airut", "airut.yaml")
}

// unsetenv removes name from the environment for the rest of the test and
// restores it afterwards.
func unsetenv(t *testing.T, name string) {
	t.Helper()
	t.Setenv(name, "")
	if err := os.Unsetenv(name); err != nil {
		t.Fatal(err)
	}
}

// lines splits output into lines without the trailing empty one.
func lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func hasLine(out, want string) bool {
	for _, l := range lines(out) {
		if l == want {
			return true
		}
	}
	return false
}

func TestVersion(t *testing.T) {
	isolate(t)
	r := airut(t, "version")
	if r.code != 0 || r.stdout != "airut dev\n" || r.stderr != "" {
		t.Errorf("airut version: got %s; want exit 0, stdout \"airut dev\\n\", empty stderr", r)
	}
}

func TestVersionFromLdflags(t *testing.T) {
	isolate(t)
	old := cli.Version
	t.Cleanup(func() { cli.Version = old })
	cli.Version = "1.2.3"
	r := airut(t, "version")
	if r.stdout != "airut 1.2.3\n" {
		t.Errorf("airut version with Version=1.2.3: got stdout %q; want %q", r.stdout, "airut 1.2.3\n")
	}
}

func TestBadCommandLines(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantStderr string // substring
	}{
		{"unknown subcommand", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"version", "--frobnicate"}, "unknown flag: --frobnicate"},
		{"version takes no arguments", []string{"version", "extra"}, `unknown command "extra"`},
		{"check takes no arguments", []string{"check", "extra"}, `unknown command "extra"`},
		{"validate takes no arguments", []string{"config", "validate", "extra"}, `unknown command "extra"`},
		{"unknown config subcommand", []string{"config", "frobnicate"}, `unknown command "frobnicate"`},
		{"config without subcommand", []string{"config"}, "missing subcommand"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t)
			r := airut(t, tt.args...)
			if r.code == 0 {
				t.Errorf("airut %v: got exit 0; want non-zero\n%s", tt.args, r)
			}
			if !strings.HasPrefix(r.stderr, "airut: ") || !strings.Contains(r.stderr, tt.wantStderr) {
				t.Errorf("airut %v: got stderr %q; want \"airut: ...\" containing %q", tt.args, r.stderr, tt.wantStderr)
			}
		})
	}
}
