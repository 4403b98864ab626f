package cli_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/airut/airut/internal/config"
)

// starterEnv are the variables internal/config/starter.yaml reads with
// !env; only AIRUT_EMAIL_PASSWORD is required there.
var starterEnv = []string{"AIRUT_EMAIL_PASSWORD", "ANTHROPIC_API_KEY", "GH_TOKEN"}

func writeFile(t *testing.T, path, content string, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	// WriteFile keeps an existing file's mode; tests need the one asked for.
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestConfigInitWritesStarter(t *testing.T) {
	tests := []struct {
		name string
		// setup adjusts the isolated environment; it returns the args and
		// the path the file should land at.
		setup func(t *testing.T, defaultPath string) (args []string, path string)
	}{
		{
			name: "default path under XDG_CONFIG_HOME",
			setup: func(t *testing.T, def string) ([]string, string) {
				return []string{"config", "init"}, def
			},
		},
		{
			name: "XDG_CONFIG_HOME unset falls back to HOME/.config",
			setup: func(t *testing.T, _ string) ([]string, string) {
				unsetenv(t, "XDG_CONFIG_HOME")
				return []string{"config", "init"}, filepath.Join(os.Getenv("HOME"), ".config", "airut", "airut.yaml")
			},
		},
		{
			name: "relative XDG_CONFIG_HOME is ignored",
			setup: func(t *testing.T, _ string) ([]string, string) {
				t.Setenv("XDG_CONFIG_HOME", "relative/dir")
				return []string{"config", "init"}, filepath.Join(os.Getenv("HOME"), ".config", "airut", "airut.yaml")
			},
		},
		{
			name: "--config path, creating missing directories",
			setup: func(t *testing.T, _ string) ([]string, string) {
				p := filepath.Join(t.TempDir(), "deep", "er", "server.yaml")
				return []string{"config", "init", "--config", p}, p
			},
		},
		{
			name: "--config before the subcommand",
			setup: func(t *testing.T, _ string) ([]string, string) {
				p := filepath.Join(t.TempDir(), "airut.yaml")
				return []string{"--config", p, "config", "init"}, p
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			def := isolate(t)
			args, path := tt.setup(t, def)
			r := airut(t, args...)
			if r.code != 0 {
				t.Fatalf("airut %v: got %s; want exit 0", args, r)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("airut %v: want a file at %s: %v\n%s", args, path, err, r)
			}
			if !bytes.Equal(got, config.StarterConfig()) {
				t.Errorf("%s: got %d bytes that differ from config.StarterConfig(); want the starter config", path, len(got))
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if m := st.Mode().Perm(); m != 0o600 {
				t.Errorf("%s: got mode %v; want -rw-------", path, m)
			}
			wantOut := "wrote " + path + "\nedit it, put secrets in " +
				filepath.Join(filepath.Dir(path), ".env") + " beside it, then run: airut config validate\n"
			if r.stdout != wantOut {
				t.Errorf("stdout: got %q; want %q", r.stdout, wantOut)
			}
		})
	}
}

func TestConfigInitExisting(t *testing.T) {
	const old = "# mine, hand-edited\nrepos: {}\n"
	tests := []struct {
		name       string
		force      bool
		wantCode   int
		wantFile   string
		wantStderr string
	}{
		{name: "refuses without --force", wantCode: 1, wantFile: old,
			wantStderr: "exists; not overwriting it (use --force)"},
		{name: "overwrites with --force", force: true, wantCode: 0, wantFile: string(config.StarterConfig())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t)
			path := filepath.Join(t.TempDir(), "airut.yaml")
			writeFile(t, path, old, 0o644)
			args := []string{"config", "init", "--config", path}
			if tt.force {
				args = append(args, "--force")
			}
			r := airut(t, args...)
			if r.code != tt.wantCode {
				t.Errorf("airut %v: got %s; want exit %d", args, r, tt.wantCode)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.wantFile {
				t.Errorf("file after airut %v: got %.60q…; want %.60q…", args, got, tt.wantFile)
			}
			if info, err := os.Stat(path); err == nil && tt.force && info.Mode().Perm() != 0o600 {
				t.Errorf("mode after --force: got %o; want 600 (the file will hold secrets)", info.Mode().Perm())
			}
			if tt.wantStderr != "" && !strings.Contains(r.stderr, path+" "+tt.wantStderr) {
				t.Errorf("stderr: got %q; want it to contain %q", r.stderr, path+" "+tt.wantStderr)
			}
		})
	}
}

// TestStarterConfigValidates runs init then validate, as an operator would.
func TestStarterConfigValidates(t *testing.T) {
	tests := []struct {
		name       string
		env        map[string]string // set; the other starterEnv names are unset
		dotenv     string            // written beside the config when non-empty
		wantCode   int
		wantStdout string // %s is the config path
		wantStderr string // substring
	}{
		{
			name:       "all variables set",
			env:        map[string]string{"AIRUT_EMAIL_PASSWORD": "pw", "ANTHROPIC_API_KEY": "sk-ant-x", "GH_TOKEN": "ghp_x"},
			wantStdout: "repo my-project: ok\n%s: valid\n",
		},
		{
			name:       "only the required variable set",
			env:        map[string]string{"AIRUT_EMAIL_PASSWORD": "pw"},
			wantStdout: "repo my-project: ok\n%s: valid\n",
		},
		{
			name:       "required variable in .env beside the config",
			dotenv:     "AIRUT_EMAIL_PASSWORD=from-dotenv\n",
			wantStdout: "repo my-project: ok\n%s: valid\n",
		},
		{
			name:     "required variable unset",
			env:      map[string]string{"ANTHROPIC_API_KEY": "sk-ant-x", "GH_TOKEN": "ghp_x"},
			wantCode: 1,
			wantStderr: "airut.yaml:102: repos.my-project.email.account.password: required " +
				"(environment variable AIRUT_EMAIL_PASSWORD is not set)",
		},
		{
			name:     "required variable empty",
			env:      map[string]string{"AIRUT_EMAIL_PASSWORD": ""},
			wantCode: 1,
			wantStderr: "airut.yaml:102: repos.my-project.email.account.password: required " +
				"(environment variable AIRUT_EMAIL_PASSWORD is empty)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := isolate(t)
			for _, name := range starterEnv {
				unsetenv(t, name)
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			if r := airut(t, "config", "init"); r.code != 0 {
				t.Fatalf("airut config init: got %s; want exit 0", r)
			}
			if tt.dotenv != "" {
				writeFile(t, filepath.Join(filepath.Dir(path), ".env"), tt.dotenv, 0o600)
			}
			r := airut(t, "config", "validate")
			if r.code != tt.wantCode {
				t.Errorf("airut config validate: got %s; want exit %d", r, tt.wantCode)
			}
			if tt.wantStdout != "" {
				if want := strings.ReplaceAll(tt.wantStdout, "%s", path); r.stdout != want {
					t.Errorf("stdout: got %q; want %q", r.stdout, want)
				}
			}
			if tt.wantStderr != "" && !strings.Contains(r.stderr, tt.wantStderr) {
				t.Errorf("stderr: got %q; want it to contain %q", r.stderr, tt.wantStderr)
			}
			if tt.wantCode != 0 && strings.Contains(r.stdout, "valid") {
				t.Errorf("stdout: got %q; want no \"valid\" line for a failing config", r.stdout)
			}
		})
	}
}

// A repo block that validates, with its password taken from TEST_PW.
const goodRepo = `    repo_url: https://example.org/%s.git
    email:
      account:
        username: %s
        from: %s@example.org
        password: !env TEST_PW
      imap: {server: imap.example.org}
      smtp: {server: smtp.example.org}
      auth:
        authorized_senders: [boss@example.org]
        trusted_authserv_id: mx.example.org
`

func repoBlock(id string) string {
	return "  " + id + ":\n" + strings.ReplaceAll(goodRepo, "%s", id)
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name       string
		yaml       string // "" means no file at all
		wantCode   int
		wantStdout []string // exact lines; %s is the config path
		// wantErrs are lines each of which must appear in stderr.
		wantErrs []string
	}{
		{
			name:     "missing file",
			wantCode: 1,
			wantErrs: []string{"airut: %s: not found (create one with: airut config init)"},
		},
		{
			name:       "valid, two repos",
			yaml:       "config_version: 5\nrepos:\n" + repoBlock("beta") + repoBlock("alpha"),
			wantStdout: []string{"repo alpha: ok", "repo beta: ok", "%s: valid"},
		},
		{
			name:       "empty file is a valid config with no repos",
			yaml:       "\n",
			wantStdout: []string{"%s: valid"},
		},
		{
			// A global error makes the whole load fail; every problem in
			// the file is still reported, repos included.
			name: "unknown key, wrong type and missing required field",
			yaml: "config_version: 5\n" + // 1
				"execution:\n" + // 2
				"  max_concurrent: many\n" + // 3
				"dashbord:\n" + // 4
				"  port: 1\n" + // 5
				"repos:\n" + // 6
				"  app:\n" + // 7
				"    email:\n" + // 8
				"      account: {username: a, from: a@example.org, password: x}\n" + // 9
				"      imap: {server: imap.example.org}\n" + // 10
				"      smtp: {server: smtp.example.org}\n" + // 11
				"      auth: {authorized_senders: [b@example.org], trusted_authserv_id: mx}\n", // 12
			wantCode: 1,
			wantErrs: []string{
				`airut.yaml:3: execution.max_concurrent: must be an integer, not "many"`,
				"airut.yaml:4: dashbord: unknown key",
				"airut.yaml:7: repos.app.repo_url: required",
			},
		},
		{
			name: "problems only inside repos",
			yaml: "repos:\n" + // 1
				"  app:\n" + // 2
				"    repo_url: https://example.org/app.git\n" + // 3
				"    modle: opus\n" + // 4
				"    resource_limits: {timeout: soon}\n" + // 5
				"    email:\n" + // 6
				"      account: {username: a, from: a@example.org, password: x}\n" + // 7
				"      imap: {port: 993}\n" + // 8
				"      smtp: {server: smtp.example.org}\n" + // 9
				"      auth: {authorized_senders: [b@example.org], trusted_authserv_id: mx}\n", // 10
			wantCode: 1,
			wantErrs: []string{
				"airut.yaml:4: repos.app.modle: unknown key",
				`airut.yaml:5: repos.app.resource_limits.timeout: must be an integer, not "soon"`,
				"airut.yaml:8: repos.app.email.imap.server: required",
			},
		},
		{
			// Partial boot: the good repo is still listed, the bad one
			// is reported, and the exit status says not everything is
			// fine.
			name: "one repo invalid",
			yaml: "repos:\n" + repoBlock("good") + // 1-13
				"  bad:\n" + // 14
				"    repo_url: https://example.org/bad.git\n" + // 15
				"    slack:\n" + // 16
				"      bot_token: !env UNSET_BOT_TOKEN\n" + // 17
				"      app_token: xapp-1\n" + // 18
				"      authorized: [{workspace_members: true}]\n", // 19
			wantCode:   1,
			wantStdout: []string{"repo good: ok"},
			wantErrs: []string{
				"airut.yaml:17: repos.bad.slack.bot_token: required (environment variable UNSET_BOT_TOKEN is not set)",
			},
		},
		{
			name:     "yaml syntax error",
			yaml:     "repos:\n  app: [\n",
			wantCode: 1,
			wantErrs: []string{"airut.yaml:"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t)
			t.Setenv("TEST_PW", "pw")
			unsetenv(t, "UNSET_BOT_TOKEN")
			path := filepath.Join(t.TempDir(), "airut.yaml")
			if tt.yaml != "" {
				writeFile(t, path, tt.yaml, 0o600)
			}
			r := airut(t, "config", "validate", "--config", path)
			if r.code != tt.wantCode {
				t.Errorf("airut config validate: got %s; want exit %d", r, tt.wantCode)
			}
			var want []string
			for _, l := range tt.wantStdout {
				want = append(want, strings.ReplaceAll(l, "%s", path))
			}
			if diff := cmp.Diff(want, lines(r.stdout)); diff != "" {
				t.Errorf("stdout lines (-want +got):\n%s", diff)
			}
			for _, l := range tt.wantErrs {
				l = strings.ReplaceAll(l, "%s", path)
				if !strings.Contains(r.stderr, l) {
					t.Errorf("stderr: got %q; want a line containing %q", r.stderr, l)
				}
			}
		})
	}
}

// TestConfigValidateDefaultPath checks the message for a missing default
// config names the XDG path and the command that creates it.
func TestConfigValidateDefaultPath(t *testing.T) {
	path := isolate(t)
	r := airut(t, "config", "validate")
	want := "airut: " + path + ": not found (create one with: airut config init)\n"
	if r.code != 1 || r.stderr != want {
		t.Errorf("airut config validate without a config: got %s; want exit 1 and stderr %q", r, want)
	}
}
