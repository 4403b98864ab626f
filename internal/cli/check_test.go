package cli_test

import (
	"crypto/tls"
	"debug/elf"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/airut/airut/internal/testkit"
	"github.com/airut/airut/internal/testkit/mailtest"
)

// trialImage is the repository of the images `airut check` imports for its
// trial container (one tag per run).
const trialImage = "localhost/airut-check"

// findingLines returns the "[mark] what" lines of check output with the
// "fix:" line that follows each, if any.
func findingLines(out string) (marks []string, fixes map[string]string) {
	fixes = map[string]string{}
	last := ""
	for _, l := range lines(out) {
		switch {
		case strings.HasPrefix(l, "["):
			marks = append(marks, l)
			last = l
		case strings.HasPrefix(strings.TrimSpace(l), "fix: "):
			fixes[last] = strings.TrimPrefix(strings.TrimSpace(l), "fix: ")
		}
	}
	return marks, fixes
}

// wantFinding is one expected line of `airut check`.
type wantFinding struct {
	re  string // matches the whole "[mark] what" line
	fix string // substring of its fix: line; "" means no fix line is required
}

func checkFindings(t *testing.T, out string, want []wantFinding) {
	t.Helper()
	marks, fixes := findingLines(out)
	for _, w := range want {
		re := regexp.MustCompile("^" + w.re + "$")
		found := ""
		for _, m := range marks {
			if re.MatchString(m) {
				found = m
				break
			}
		}
		if found == "" {
			t.Errorf("check output: got no line matching %q; want one\n%s", w.re, out)
			continue
		}
		if w.fix != "" && !strings.Contains(fixes[found], w.fix) {
			t.Errorf("fix for %q: got %q; want it to contain %q", found, fixes[found], w.fix)
		}
	}
}

// These cases stop before the engine is used (the engine named does not
// exist), so they need no podman.
func TestCheckWithoutEngine(t *testing.T) {
	validYAML := "config_version: 5\nrepos:\n" + repoBlock("alpha") + repoBlock("beta")
	tests := []struct {
		name    string
		yaml    string // "" means no config file
		engine  string // --container-command; "" leaves it to the config
		want    []wantFinding
		wantNot []string // substrings that must not appear in stdout
	}{
		{
			name:   "missing engine binary",
			engine: "/nonexistent/bin/podman",
			want: []wantFinding{
				{re: `\[FAIL\] container_command "/nonexistent/bin/podman": .*`, fix: "sudo apt-get install podman"},
			},
		},
		{
			name:   "engine that is neither podman nor docker",
			engine: "nerdctl",
			want: []wantFinding{
				{re: `\[FAIL\] container_command "nerdctl": must be podman or docker`},
			},
		},
		{
			name: "engine from the config when the flag is absent",
			yaml: "container_command: /nonexistent/docker\n",
			want: []wantFinding{
				{re: `\[ok  \] config .*airut\.yaml: valid, 0 repo\(s\)`},
				{re: `\[FAIL\] container_command "/nonexistent/docker": .*`, fix: "sudo apt-get install podman"},
			},
		},
		{
			name:   "flag wins over the config",
			yaml:   "container_command: /nonexistent/docker\n",
			engine: "/nonexistent/bin/podman",
			want: []wantFinding{
				{re: `\[FAIL\] container_command "/nonexistent/bin/podman": .*`},
			},
			wantNot: []string{"/nonexistent/docker"},
		},
		{
			name:   "no config is a warning pointing at config init",
			engine: "/nonexistent/bin/podman",
			want: []wantFinding{
				{re: `\[WARN\] config .*airut\.yaml: not found`, fix: "airut config init"},
				{re: `\[ok  \] git: found`},
			},
		},
		{
			name:   "valid config",
			yaml:   validYAML,
			engine: "/nonexistent/bin/podman",
			want:   []wantFinding{{re: `\[ok  \] config .*airut\.yaml: valid, 2 repo\(s\)`}},
		},
		{
			name:   "invalid config is fatal and says how to see every problem",
			yaml:   "dashbord: {}\n",
			engine: "/nonexistent/bin/podman",
			want: []wantFinding{
				{re: `\[FAIL\] config .*airut\.yaml:`, fix: "airut config validate"},
			},
		},
		{
			name:   "one invalid repo is a warning",
			yaml:   validYAML + "  broken:\n    modle: x\n",
			engine: "/nonexistent/bin/podman",
			want: []wantFinding{
				{re: `\[WARN\] config .*airut\.yaml: some repos are invalid:`, fix: "airut config validate"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t)
			t.Setenv("TEST_PW", "pw")
			path := filepath.Join(t.TempDir(), "airut.yaml")
			if tt.yaml != "" {
				writeFile(t, path, tt.yaml, 0o600)
			}
			args := []string{"check", "--config", path}
			if tt.engine != "" {
				args = append(args, "--container-command", tt.engine)
			}
			r := airut(t, args...)
			if r.code != 1 {
				t.Errorf("airut %v: got %s; want exit 1", args, r)
			}
			checkFindings(t, r.stdout, tt.want)
			for _, s := range tt.wantNot {
				if strings.Contains(r.stdout, s) {
					t.Errorf("stdout: got %q; want no %q", r.stdout, s)
				}
			}
			if !strings.Contains(r.stderr, "problem(s) stop the sandbox from working") {
				t.Errorf("stderr: got %q; want the count of fatal problems", r.stderr)
			}
		})
	}
}

// The invalid config's individual errors are shown, indented, under the
// finding.
func TestCheckShowsConfigErrors(t *testing.T) {
	isolate(t)
	path := filepath.Join(t.TempDir(), "airut.yaml")
	writeFile(t, path, "execution:\n  max_concurrent: many\ndashbord: {}\n", 0o600)
	r := airut(t, "check", "--config", path, "--container-command", "/nonexistent/bin/podman")
	for _, want := range []string{
		`       airut.yaml:2: execution.max_concurrent: must be an integer, not "many"`,
		"       airut.yaml:3: dashbord: unknown key",
	} {
		if !hasLine(r.stdout, want) {
			t.Errorf("check output: got\n%s\nwant the line %q", r.stdout, want)
		}
	}
}

// staticSelf reports whether this test binary can run alone in the trial
// image: `airut check` copies its own executable into an empty image, so a
// dynamically linked one (cgo) cannot start there.
func staticSelf(t *testing.T) bool {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

func imageExists(t *testing.T, engine, tag string) bool {
	t.Helper()
	out, err := exec.Command(engine, "images", "--format", "{{.Repository}}", tag).Output()
	if err != nil {
		t.Fatalf("%s images %s: %v", engine, tag, err)
	}
	return strings.TrimSpace(string(out)) != ""
}

func TestCheckWithEngine(t *testing.T) {
	engine := testkit.RequireEngine(t)
	repoConf := filepath.Join(testkit.ModuleRoot(), "contrib", "containers.conf")
	tests := []struct {
		name string
		// containersConf is the CONTAINERS_CONF for the run; "empty"
		// means an empty file (the engine's built-in defaults).
		containersConf string
		yaml           string
		// needStatic is set where the trial container must really run
		// this binary.
		needStatic bool
		wantCode   int
		want       []wantFinding
		wantNot    []string
	}{
		{
			name:           "repo containers.conf",
			containersConf: repoConf,
			yaml:           "config_version: 5\n",
			needStatic:     true,
			want: []wantFinding{
				{re: `\[ok  \] config .*airut\.yaml: valid, 0 repo\(s\)`},
				{re: `\[ok  \] git: found`},
				{re: `\[ok  \] ` + regexp.QuoteMeta(filepath.Base(engine)) + ` \S+, (rootful|rootless), cgroup v[12], OCI runtime \S+`},
				{re: `\[ok  \] a trivial container starts \(OCI runtime \S+\)`},
			},
			wantNot: []string{"[FAIL]"},
		},
		{
			// On hosts that need contrib/containers.conf, the same knobs
			// in airut.yaml must do; elsewhere they are harmless.
			name:           "runtime knobs from airut.yaml",
			containersConf: "empty",
			yaml: "container_runtime: runc\n" +
				"container_ulimits: [\"nofile=20000:20000\", \"nproc=4096:4096\"]\n",
			needStatic: true,
			want: []wantFinding{
				{re: `\[ok  \] a trivial container starts \(OCI runtime \S+\)`},
			},
			wantNot: []string{"[FAIL]"},
		},
		{
			name:           "nonexistent OCI runtime",
			containersConf: repoConf,
			yaml:           "container_runtime: /nonexistent/runtime\n",
			needStatic:     true,
			wantCode:       1,
			want: []wantFinding{
				{re: `\[ok  \] git: found`},
				{re: `\[FAIL\] a trivial container does not start:$`, fix: "podman run --rm"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needStatic && !staticSelf(t) {
				if os.Getenv("CI") == "true" {
					t.Fatal("test binary is dynamically linked and CI=true: build tests with CGO_ENABLED=0 (make test does)")
				}
				t.Skip("test binary is dynamically linked (cgo) and cannot run in the trial image; run with CGO_ENABLED=0")
			}
			isolate(t)
			conf := tt.containersConf
			if conf == "empty" {
				conf = filepath.Join(t.TempDir(), "containers.conf")
				writeFile(t, conf, "", 0o644)
			}
			t.Setenv("CONTAINERS_CONF", conf)
			path := filepath.Join(t.TempDir(), "airut.yaml")
			writeFile(t, path, tt.yaml, 0o600)

			args := []string{"check", "--config", path, "--container-command", engine}
			r := airut(t, args...)
			if r.code != tt.wantCode {
				t.Errorf("airut %v: got %s; want exit %d", args, r, tt.wantCode)
			}
			checkFindings(t, r.stdout, tt.want)
			for _, s := range tt.wantNot {
				if strings.Contains(r.stdout, s) {
					t.Errorf("stdout: got\n%s\nwant no %q", r.stdout, s)
				}
			}
			if imageExists(t, engine, trialImage) {
				t.Errorf("after airut check: %s exists; want the trial image removed", trialImage)
			}
		})
	}
}

// On hosts where the engine's defaults cannot start a container (cgroup v1,
// nested containers: setrlimit refused), check must point at the knobs that
// fix it. Hosts whose defaults work have nothing to show here.
func TestCheckSuggestsRuntimeKnobs(t *testing.T) {
	engine := testkit.RequireEngine(t)
	if !staticSelf(t) {
		t.Skip("test binary is dynamically linked (cgo) and cannot run in the trial image; run with CGO_ENABLED=0")
	}
	isolate(t)
	conf := filepath.Join(t.TempDir(), "containers.conf")
	writeFile(t, conf, "", 0o644)
	t.Setenv("CONTAINERS_CONF", conf)
	path := filepath.Join(t.TempDir(), "airut.yaml")
	writeFile(t, path, "config_version: 5\n", 0o600)

	r := airut(t, "check", "--config", path, "--container-command", engine)
	if r.code == 0 {
		t.Skip("this host's engine defaults start containers; no knobs to suggest")
	}
	checkFindings(t, r.stdout, []wantFinding{
		{re: `\[FAIL\] a trivial container does not start:$`, fix: "contrib/containers.conf"},
	})
	if _, fixes := findingLines(r.stdout); !strings.Contains(fmtFixes(fixes), "container_runtime: runc and container_ulimits") {
		t.Errorf("fixes: got %q; want the airut.yaml alternative (container_runtime, container_ulimits) too", fixes)
	}
	if imageExists(t, engine, trialImage) {
		t.Errorf("after airut check: %s exists; want the trial image removed", trialImage)
	}
}

func fmtFixes(fixes map[string]string) string {
	var b strings.Builder
	for _, f := range fixes {
		b.WriteString(f)
		b.WriteByte('\n')
	}
	return b.String()
}

// TestCheckMailServers: `airut check` logs in to IMAP and authenticates
// to SMTP with the channel's own probe, over TLS with the configured CA,
// and names the fix for each kind of failure. The old check only opened
// TCP, so a wrong password and an untrusted certificate both passed.
func TestCheckMailServers(t *testing.T) {
	ca := testkit.NewTestCA(t)
	srvTLS := &tls.Config{Certificates: []tls.Certificate{ca.Leaf(t, "localhost")}}
	caFile := filepath.Join(t.TempDir(), "mail-ca.pem")
	writeFile(t, caFile, string(ca.CertPEM), 0o644)
	imapSrv := mailtest.NewIMAPServer(t, mailtest.IMAPOptions{TLS: srvTLS})
	smtpSrv := mailtest.NewSMTPServer(t, mailtest.SMTPOptions{TLS: srvTLS, Username: imapSrv.Username, Password: imapSrv.Password})
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()

	tests := []struct {
		name               string
		password, caLine   string
		imapPort, smtpPort int
		want               []wantFinding
	}{
		{name: "login and auth work", password: imapSrv.Password, caLine: "ca_file: " + caFile,
			want: []wantFinding{
				{re: `\[ok  \] repo mail: IMAP server localhost:\d+: login works`},
				{re: `\[ok  \] repo mail: SMTP server localhost:\d+: authentication works`},
			}},
		{name: "wrong password", password: "wrong-pass-99", caLine: "ca_file: " + caFile,
			want: []wantFinding{
				{re: `\[FAIL\] repo mail: IMAP server localhost:\d+: login refused \(imap login as airut@example.com: .*\)`,
					fix: "check repos.mail.email.account.username and repos.mail.email.account.password"},
				{re: `\[FAIL\] repo mail: SMTP server localhost:\d+: login refused \(smtp auth as airut@example.com: .*\)`,
					fix: "repos.mail.email.account.password"},
			}},
		{name: "untrusted certificate", password: imapSrv.Password,
			want: []wantFinding{
				{re: `\[FAIL\] repo mail: IMAP server localhost:\d+: certificate not trusted \(.*x509: certificate signed by unknown authority\)`,
					fix: "set repos.mail.email.imap.ca_file to that CA's PEM file"},
				{re: `\[FAIL\] repo mail: SMTP server localhost:\d+: certificate not trusted \(.*unknown authority\)`,
					fix: "set repos.mail.email.smtp.ca_file"},
			}},
		{name: "unreachable", password: imapSrv.Password, caLine: "ca_file: " + caFile, imapPort: closedPort, smtpPort: closedPort,
			want: []wantFinding{
				{re: `\[FAIL\] repo mail: IMAP server localhost:\d+: unreachable \(.*connection refused\)`,
					fix: "check repos.mail.email.imap.server and .port"},
				{re: `\[FAIL\] repo mail: SMTP server localhost:\d+: unreachable \(.*connection refused\)`,
					fix: "check repos.mail.email.smtp.server and .port"},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t)
			if tt.imapPort == 0 {
				tt.imapPort, tt.smtpPort = imapSrv.Port, smtpSrv.Port
			}
			t.Setenv("TEST_MAIL_PW", tt.password)
			yaml := fmt.Sprintf(`config_version: 5
repos:
  mail:
    repo_url: https://example.org/m.git
    email:
      account: {username: airut@example.com, from: airut@example.com, password: !env TEST_MAIL_PW}
      imap: {server: localhost, port: %d, %s}
      smtp: {server: localhost, port: %d, require_auth: true, starttls: true, %s}
      auth: {authorized_senders: [boss@example.org], trusted_authserv_id: mx.example.org}
`, tt.imapPort, tt.caLine, tt.smtpPort, strings.ReplaceAll(tt.caLine, "imap", "smtp"))
			path := filepath.Join(t.TempDir(), "airut.yaml")
			writeFile(t, path, yaml, 0o600)
			r := airut(t, "check", "--config", path, "--container-command", "/nonexistent/bin/podman")
			checkFindings(t, r.stdout, tt.want)
			if strings.Contains(r.stdout, "wrong-pass-99") {
				t.Errorf("check output shows the password:\n%s", r.stdout)
			}
		})
	}
}
