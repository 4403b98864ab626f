package sandboxcli_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/airut/airut/internal/sandbox"
	"github.com/airut/airut/internal/sandboxcli"
	"github.com/airut/airut/internal/testkit"
)

const okAllowlist = "domains:\n  - example.com\n"

// repo makes what a CI runner has: a bare origin whose main holds an
// .airut/ folder (files override the defaults), and a clone of it as the
// working directory, whose origin/HEAD is main.
func repo(t *testing.T, base string, files map[string]string) string {
	t.Helper()
	all := map[string]string{
		".airut/container/Dockerfile":   "FROM " + base + "\n",
		".airut/network-allowlist.yaml": okAllowlist,
	}
	for k, v := range files {
		if v == "" {
			delete(all, k)
			continue
		}
		all[k] = v
	}
	clone := ciClone(t, all)
	// The suite may itself run in a pull request's CI.
	t.Setenv("GITHUB_BASE_REF", "")
	t.Chdir(clone)
	return clone
}

// ciClone commits files on main of a bare origin and returns a clone of
// it, whose origin/HEAD is main.
func ciClone(tb testing.TB, files map[string]string) string {
	tb.Helper()
	src := testkit.GitRepo(tb, files)
	origin := filepath.Join(tb.TempDir(), "origin.git")
	testkit.Git(tb, src, "clone", "-q", "--bare", src, origin)
	clone := tb.TempDir()
	testkit.Git(tb, clone, "clone", "-q", origin, ".")
	return clone
}

// merge commits files in the clone and pushes them to origin's main: a
// change to the rules that was reviewed and merged.
func merge(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	testkit.WriteFiles(t, dir, files)
	testkit.Commit(t, dir, "merged change")
	testkit.Git(t, dir, "push", "-q", "origin", "HEAD:main")
}

// setup gives the test its own resource prefix and the proxy binary.
func setup(t *testing.T) (engine, base string) {
	t.Helper()
	engine = testkit.RequireEngine(t)
	base = testkit.BaseImage(t, engine)
	bins, err := testkit.BuildBinaries()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("AIRUT_PROXY_BINARY", filepath.Join(bins, "airut-proxy"))
	old := sandboxcli.Prefix
	sandboxcli.Prefix = "airut-clitest-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	if len(sandboxcli.Prefix) > 40 {
		sandboxcli.Prefix = sandboxcli.Prefix[:40]
	}
	prefix := sandboxcli.Prefix
	oldState := sandboxcli.StateDir
	sandboxcli.StateDir = t.TempDir()
	t.Cleanup(func() {
		sandboxcli.Prefix, sandboxcli.StateDir = old, oldState
		assertNothingLeft(t, engine, prefix)
		_ = exec.Command(engine, "network", "rm", "-f", prefix+"-egress").Run()
	})
	return engine, base
}

// assertNothingLeft fails the test if a container or task network of
// prefix that this process created is still there. (The same test may run
// in another checkout on this host at the same time.)
func assertNothingLeft(t *testing.T, engine, prefix string) {
	t.Helper()
	assertNothingLeftBy(t, engine, prefix, sandbox.OwnerToken())
}

// A run's last removals are handed to a process of their own (the
// internal-teardown command), which may still be at them when the run has
// returned: what it does not remove within a minute is left behind.
func assertNothingLeftBy(t *testing.T, engine, prefix, owner string) {
	t.Helper()
	mine := "label=io.airut.owner=" + owner
	var left []string
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		left = nil
		for _, args := range [][]string{
			{"ps", "-a", "--filter", "name=^" + prefix + "-", "--filter", mine, "--format", "{{.Names}}"},
			{"network", "ls", "--filter", "name=^" + prefix + "-conv", "--filter", mine, "--format", "{{.Name}}"},
		} {
			out, err := exec.Command(engine, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %v %s", args, err, out)
			}
			left = append(left, strings.Fields(string(out))...)
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(left) > 0 {
		t.Errorf("left behind: %s", strings.Join(left, " "))
	}
}

// TestMain runs the internal-teardown command when a run in this test
// process hands its teardown off: the process it starts is this binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == sandboxcli.TeardownCommand {
		os.Exit(sandboxcli.Run(context.Background(), os.Args[1:], nil, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func run(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := sandboxcli.Run(context.Background(), args, nil, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing dash", []string{"run", "true"}, "missing -- before the command"},
		{"no command", []string{"run", "--"}, "no command after --"},
		{"unknown flag", []string{"run", "--bogus", "--", "true"}, "unknown flag: --bogus"},
		{"bad mount", []string{"run", "--mount", "/nonexistent-airut:/x", "--", "true"}, "--mount"},
		{"unknown subcommand", []string{"frobnicate"}, "unknown command"},
	}
	engine, base := setup(t)
	_ = engine
	repo(t, base, nil)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := run(tc.args...)
			if code != sandboxcli.ExitUsage {
				t.Errorf("exit %d; want %d", code, sandboxcli.ExitUsage)
			}
			if !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("stderr %q; want one line containing %q", stderr, tc.want)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	engine, base := setup(t)
	_ = engine
	cases := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"missing dockerfile", map[string]string{".airut/container/Dockerfile": "", ".airut/container/x": "y"}, "no .airut/container/Dockerfile"},
		{"no container dir", map[string]string{".airut/container/Dockerfile": "", "README": "x"}, "no .airut/container/Dockerfile"},
		{"failing build", map[string]string{".airut/container/Dockerfile": "FROM " + base + "\nRUN exit 3\n"}, "build repository image from .airut/container/Dockerfile"},
		{"sandbox.yaml unknown key", map[string]string{".airut/sandbox.yaml": "env:\n  A: b\nbogus: 1\n"}, ".airut/sandbox.yaml:3: bogus: unknown key"},
		{"sandbox.yaml bad type", map[string]string{".airut/sandbox.yaml": "pass_env: HOME\n"}, ".airut/sandbox.yaml:1: pass_env: must be a list"},
		{"sandbox.yaml unset env", map[string]string{".airut/sandbox.yaml": "env:\n  A: !env AIRUT_TEST_SURELY_UNSET\n"}, "environment variable AIRUT_TEST_SURELY_UNSET is not set"},
		{"allowlist yaml error", map[string]string{".airut/network-allowlist.yaml": "domains: [\n"}, "network-allowlist.yaml:1"},
		{"allowlist unknown key", map[string]string{".airut/network-allowlist.yaml": "domains: [a.com]\nhosts: [b.com]\n"}, "network-allowlist.yaml:2: hosts: unknown key"},
		{"allowlist bad method", map[string]string{".airut/network-allowlist.yaml": "url_prefixes:\n  - host: a.com\n    methods: [FETCH]\n"}, `network-allowlist.yaml:3: url_prefixes[0].methods[0]: unknown HTTP method "FETCH"`},
		{"allowlist missing", map[string]string{".airut/network-allowlist.yaml": ""}, "network-allowlist.yaml is missing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			repo(t, base, tc.files)
			code, stdout, stderr := run("run", "--", "sh", "-c", "echo ran")
			if code != sandboxcli.ExitInfra {
				t.Errorf("exit %d; want %d (stderr %q)", code, sandboxcli.ExitInfra, stderr)
			}
			if strings.Contains(stdout, "ran") {
				t.Errorf("the command ran despite the bad input")
			}
			if !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("stderr %q; want one line containing %q", stderr, tc.want)
			}
		})
	}
}

func TestExitCodesAndOutput(t *testing.T) {
	_, base := setup(t)
	repo(t, base, map[string]string{".airut/sandbox.yaml": "env:\n  GREETING: hello\n"})
	cases := []struct {
		name     string
		args     []string
		code     int
		stdout   string
		stderrIn string
	}{
		{"success", []string{"--", "sh", "-c", "echo $GREETING from $(pwd); test -f .airut/sandbox.yaml"}, 0, "hello from /workspace\n", ""},
		{"exit code", []string{"--", "sh", "-c", "echo out; echo err >&2; exit 42"}, 42, "out\n", "err\n"},
		{"timeout", []string{"--timeout", "2", "--", "sleep", "1000"}, sandboxcli.ExitTimeout, "", "timed out after 2s"},
		{"reserved code", []string{"--", "sh", "-c", "exit 126"}, 126, "", "command exited with status 126"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := run(append([]string{"run"}, tc.args...)...)
			if code != tc.code || stdout != tc.stdout || !strings.Contains(stderr, tc.stderrIn) {
				t.Errorf("got exit %d stdout %q stderr %q; want %d %q and stderr containing %q",
					code, stdout, stderr, tc.code, tc.stdout, tc.stderrIn)
			}
		})
	}
}

func TestNetworkLogAndOpenNetworkWarning(t *testing.T) {
	_, base := setup(t)
	dir := repo(t, base, nil)
	logFile := filepath.Join(t.TempDir(), "net.log")
	code, _, stderr := run("run", "--network-log", logFile, "--network-log-live", "--", "sh", "-c", "nslookup blocked.example.org; true")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	data, _ := os.ReadFile(logFile)
	if !strings.Contains(string(data), "DNS A blocked.example.org -> ") {
		t.Errorf("network log %q lacks the DNS line", data)
	}
	head := testkit.Git(t, dir, "rev-parse", "HEAD")
	if first, _, _ := strings.Cut(string(data), "\n"); !strings.HasPrefix(first, "# airut-sandbox run ") ||
		!strings.HasSuffix(first, ": rules from origin/main at commit "+head+" of "+dir) {
		t.Errorf("network log header %q; want the ref and commit the rules came from", first)
	}
	if !strings.Contains(stderr, "[network] DNS A blocked.example.org") {
		t.Errorf("live log missing from stderr %q", stderr)
	}

	merge(t, dir, map[string]string{".airut/sandbox.yaml": "network_sandbox: false\n"})
	code, _, stderr = run("run", "--", "true")
	if code != 0 || !strings.Contains(stderr, "WARNING: network_sandbox is false") {
		t.Errorf("exit %d stderr %q; want a loud warning about the open network", code, stderr)
	}
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary builds the airut-sandbox command once per test process.
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "airut-sandbox-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "airut-sandbox")
		build := exec.Command("go", "build", "-o", binPath, "./cmd/airut-sandbox")
		build.Dir = testkit.ModuleRoot()
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("build: %v %s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// ownedBy lists the containers and networks whose owner label names pid.
func ownedBy(engine string, pid int) []string {
	out, _ := exec.Command(engine, "ps", "-a", "--format", `{{.Names}}={{index .Labels "io.airut.owner"}}`).Output()
	nets, _ := exec.Command(engine, "network", "ls", "--format", "{{.Name}}").Output()
	for _, n := range strings.Fields(string(nets)) {
		lbl, _ := exec.Command(engine, "network", "inspect", "--format", `{{index .Labels "io.airut.owner"}}`, n).Output()
		out = append(out, []byte("\n"+n+"="+strings.TrimSpace(string(lbl)))...)
	}
	var mine []string
	for _, l := range strings.Fields(string(out)) {
		if name, owner, _ := strings.Cut(l, "="); strings.HasPrefix(owner, strconv.Itoa(pid)+":") {
			mine = append(mine, name)
		}
	}
	return mine
}

func TestSignalTearsDown(t *testing.T) {
	engine, base := setup(t)
	repo(t, base, nil)
	bin := binary(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(bin, "run", "--", "sh", "-c", "echo started; sleep 1000")
			stdout, _ := cmd.StdoutPipe()
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(stdout)
			if !sc.Scan() || sc.Text() != "started" {
				_ = cmd.Process.Kill()
				t.Fatalf("no start line: %q %s", sc.Text(), stderr.String())
			}
			_ = cmd.Process.Signal(sig)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(2 * time.Minute):
				_ = cmd.Process.Kill()
				t.Fatal("airut-sandbox did not exit after the signal")
			}
			if got, want := cmd.ProcessState.ExitCode(), 128+int(sig); got != want {
				t.Errorf("exit %d; want %d (stderr %q)", got, want, stderr.String())
			}
			// Nothing of this process may remain once its handed-off
			// removals are done: its containers and networks carry its pid.
			waitFor(t, "the signalled run's containers and networks removed", func() bool {
				return len(ownedBy(engine, cmd.Process.Pid)) == 0
			})
		})
	}
}

func TestMountsVerboseAndPins(t *testing.T) {
	_, base := setup(t)
	repo(t, base, map[string]string{".airut/network-allowlist.yaml": "domains: [api.example.test]\n"})
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, "in.txt"), []byte("from host"), 0o644); err != nil {
		t.Fatal(err)
	}
	ca := testkit.NewTestCA(t)
	echo := testkit.NewEchoServer(t, ca, testkit.HostIP(t), "api.example.test")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := run("run", "--verbose", "--mount", data+":/data:ro",
		"--resolve", "api.example.test="+echo.Addr, "--upstream-ca", caFile, "--",
		"sh", "-c", "cat /data/in.txt; echo; touch /data/x 2>/dev/null && echo writable; tkhttp https://api.example.test/echo | head -1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if want := "from host\nSTATUS 200 HTTP/2.0\n"; stdout != want && stdout != "from host\nSTATUS 200 HTTP/1.1\n" {
		t.Errorf("stdout %q; want the mounted file read, the mount read-only, and the pinned upstream reached", stdout)
	}
	if !strings.Contains(stderr, "+ podman run --rm --name ") || !strings.Contains(stderr, "destination=/data,ro") {
		t.Errorf("--verbose did not show the engine commands: %q", stderr)
	}
	if len(echo.Requests()) != 1 {
		t.Errorf("upstream saw %d requests; want 1", len(echo.Requests()))
	}
}

func TestImageHashSaveLoad(t *testing.T) {
	engine, base := setup(t)
	repo(t, base, map[string]string{".airut/container/Dockerfile": "FROM " + base + "\nLABEL t=" + testkit.RandomHex(4) + "\n"})
	code, hash, stderr := run("image", "hash")
	hash = strings.TrimSpace(hash)
	if code != 0 || len(hash) != 64 {
		t.Fatalf("image hash: exit %d, %q %s", code, hash, stderr)
	}
	if code2, again, _ := run("image", "hash"); code2 != 0 || strings.TrimSpace(again) != hash {
		t.Errorf("hash not stable: %q then %q", hash, again)
	}
	dir := t.TempDir()
	code, out, stderr := run("image", "save", dir)
	if code != 0 || !strings.Contains(out, "saved localhost/"+sandboxcli.Prefix+":") {
		t.Fatalf("image save: exit %d %q %s", code, out, stderr)
	}
	tag := strings.Fields(out)[1]
	if err := exec.Command(engine, "rmi", tag).Run(); err != nil {
		t.Fatalf("rmi %s: %v", tag, err)
	}
	code, out, stderr = run("image", "load", dir)
	if code != 0 || !strings.Contains(out, "loaded ") {
		t.Fatalf("image load: exit %d %q %s", code, out, stderr)
	}
	if err := exec.Command(engine, "image", "exists", tag).Run(); err != nil {
		t.Errorf("%s not present after load", tag)
	}
	_ = exec.Command(engine, "rmi", tag).Run()
	if code, _, stderr := run("image", "load", t.TempDir()); code != sandboxcli.ExitInfra || !strings.Contains(stderr, "no *.tar archive") {
		t.Errorf("load of an empty dir: exit %d %q", code, stderr)
	}
}

// TestConcurrentRunsLeaveNothing: several airut-sandbox runs at once on a
// busy host, ending every way (success, exit code, timeout), leave no
// container or task network behind and log no failed teardown.
func TestConcurrentRunsLeaveNothing(t *testing.T) {
	_, base := setup(t)
	repo(t, base, nil)
	cases := [][]string{
		{"run", "--", "sh", "-c", "echo ok"},
		{"run", "--", "sh", "-c", "exit 3"},
		{"run", "--timeout", "1", "--", "sleep", "100"},
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			args := cases[i%len(cases)]
			code, _, stderr := run(args...)
			if want := []int{0, 3, sandboxcli.ExitTimeout}[i%len(cases)]; code != want {
				t.Errorf("%q: exit %d; want %d (%s)", args, code, want, stderr)
			}
			if strings.Contains(stderr, "level=WARN") {
				t.Errorf("%q: teardown trouble: %s", args, stderr)
			}
		})
	}
	wg.Wait()
	// setup's cleanup fails the test if anything of this process is left.
}

// TestCrashLeavesNoSecret: airut-sandbox SIGKILLed (with its process
// group) while the proxy starts, the moment the real secret value is on
// disk. It is only ever in the private state directory (0700/0600), never
// under TMPDIR; the next run's sweep removes it with the dead run's
// network. Once the proxy is up, the value is on disk nowhere.
func TestCrashLeavesNoSecret(t *testing.T) {
	engine, base := setup(t)
	real := "ghp_" + testkit.RandomHex(18)
	t.Setenv("AIRUT_TEST_CRASH_TOKEN", real)
	awsSecret := testkit.RandomHex(20)
	t.Setenv("AIRUT_TEST_CRASH_AWS_SECRET", awsSecret)
	repo(t, base, map[string]string{".airut/sandbox.yaml": "masked_secrets:\n  GH_TOKEN:\n    value: !env AIRUT_TEST_CRASH_TOKEN\n" +
		"    scopes: [api.example.test]\n    headers: [Authorization]\n" +
		"signing_credentials:\n  AWS:\n    type: aws-sigv4\n    access_key_id: AKIAEXAMPLEEXAMPLE12\n" +
		"    secret_access_key: !env AIRUT_TEST_CRASH_AWS_SECRET\n    scopes: [\"*.amazonaws.com\"]\n"})
	bin := binary(t)
	state, tmp := t.TempDir(), t.TempDir()
	env := append(os.Environ(), "XDG_STATE_HOME="+state, "TMPDIR="+tmp)

	t.Run("running", func(t *testing.T) {
		cmd := exec.Command(bin, "run", "--", "sh", "-c", "echo started; exec sleep 1000")
		cmd.Env = env
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
		sc := bufio.NewScanner(stdout)
		if !sc.Scan() || sc.Text() != "started" {
			t.Fatalf("no start line: %q", sc.Text())
		}
		for _, secret := range []string{real, awsSecret} {
			if left := append(filesContaining(t, state, secret), filesContaining(t, tmp, secret)...); len(left) > 0 {
				t.Errorf("secret on disk while the command runs: %q", left)
			}
		}
	})

	// The proxy's start is held up so the crash comes while the
	// replacement map is on disk.
	shim := testkit.EngineShim(t, engine, testkit.Fault{Match: "run --rm --name", Delay: time.Minute})
	cmd := exec.Command(bin, "run", "--container-command", shim, "--", "true")
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Killed once the secret is on disk and the task network exists (the
	// proxy's start is what the shim holds up).
	var holding []string
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		// The files are looked at after the network is seen: the map's
		// atomic write is long done by then, while a look before the
		// (slow) engine listing could catch its temporary file.
		if len(ownedBy(engine, cmd.Process.Pid)) > 0 {
			if holding = filesContaining(t, state, real); len(holding) > 0 {
				break
			}
		}
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
	if len(holding) != 1 || !strings.HasSuffix(holding[0], "replacements.json") {
		t.Fatalf("files holding the secret while the proxy starts: %q; want the one replacement map", holding)
	}
	assertPrivate(t, state, holding)
	if aws := filesContaining(t, state, awsSecret); len(aws) != 1 || aws[0] != holding[0] {
		t.Errorf("files holding the AWS secret: %q; want the replacement map alone", aws)
	}
	if leaked := filesContaining(t, tmp, real); len(leaked) > 0 {
		t.Errorf("secret written under TMPDIR: %q", leaked)
	}
	if len(ownedBy(engine, cmd.Process.Pid)) == 0 {
		t.Fatal("the killed run left no network: this test cannot show the sweep")
	}

	next := exec.Command(bin, "run", "--", "true")
	next.Env = env
	if out, err := next.CombinedOutput(); err != nil {
		t.Fatalf("next run: %v %s", err, out)
	}
	if left := append(filesContaining(t, state, real), filesContaining(t, state, awsSecret)...); len(left) > 0 {
		t.Errorf("secret still on disk after the restart's sweep: %q", left)
	}
	if left := ownedBy(engine, cmd.Process.Pid); len(left) > 0 {
		t.Errorf("the crashed run's containers or networks were not swept: %q", left)
	}
}

// filesContaining lists the files under root whose content holds s.
func filesContaining(t *testing.T, root, s string) []string {
	t.Helper()
	var found []string
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(s)) {
			found = append(found, p)
		}
		return nil
	})
	return found
}

// assertPrivate checks that files and every directory above them up to
// root/airut-sandbox are the owner's only.
func assertPrivate(t *testing.T, root string, files []string) {
	t.Helper()
	top := filepath.Join(root, "airut-sandbox")
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (%v); want 0600", f, fi.Mode(), err)
		}
		for d := filepath.Dir(f); strings.HasPrefix(d, top+"/"); d = filepath.Dir(d) {
			if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("%s: mode %v (%v); want 0700", d, fi.Mode(), err)
			}
		}
	}
}

// TestTeardownHandedOff: a run returns once its command's result and its
// whole network log are in, with the proxy stopped; the removal of the
// stopped proxy's container and of the task network is left to a process
// of its own, which removes them and the run's marker after the run has
// exited. When that process dies first, the next run sweeps what it left.
func TestTeardownHandedOff(t *testing.T) {
	engine, base := setup(t)
	repo(t, base, nil)
	bin := binary(t)
	state := t.TempDir()
	env := append(os.Environ(), "XDG_STATE_HOME="+state)
	runs := filepath.Join(state, "airut-sandbox", "runs")
	markers := func() []string {
		entries, _ := os.ReadDir(runs)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}

	t.Run("finished", func(t *testing.T) {
		logFile := filepath.Join(t.TempDir(), "net.log")
		cmd := exec.Command(bin, "run", "--network-log", logFile, "--", "sh", "-c", "nslookup blocked.example.org; true")
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("run: %v %s", err, out)
		}
		pid := cmd.Process.Pid
		// The log was whole when the run returned, and the proxy's own
		// end line is not part of it.
		data, _ := os.ReadFile(logFile)
		if !strings.Contains(string(data), "DNS A blocked.example.org -> ") || strings.Contains(string(data), "end of network log") {
			t.Errorf("network log at the run's return: %q", data)
		}
		out, err := exec.Command(engine, "ps", "--format", `{{.Names}}={{index .Labels "io.airut.owner"}}`).Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Fields(string(out)) {
			if _, owner, _ := strings.Cut(l, "="); strings.HasPrefix(owner, strconv.Itoa(pid)+":") {
				t.Errorf("still running after the run returned: %s", l)
			}
		}
		waitFor(t, "the handed-off teardown", func() bool { return len(ownedBy(engine, pid)) == 0 && len(markers()) == 0 })
	})

	t.Run("helper killed", func(t *testing.T) {
		// The network's removal is held up, and the process doing it is
		// killed meanwhile.
		shim := testkit.EngineShim(t, engine, testkit.Fault{Match: "network rm", Delay: time.Minute})
		cmd := exec.Command(bin, "run", "--container-command", shim, "--", "true")
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("run: %v %s", err, out)
		}
		pid := cmd.Process.Pid
		var helper []byte
		waitFor(t, "the teardown process", func() bool {
			helper, _ = exec.Command("pgrep", "-f", sandboxcli.TeardownCommand+" --container-command "+shim).Output()
			return len(strings.Fields(string(helper))) > 0
		})
		for _, p := range strings.Fields(string(helper)) {
			if n, err := strconv.Atoi(p); err == nil {
				// Its session: the shim's delayed engine call too.
				_ = syscall.Kill(-n, syscall.SIGKILL)
			}
		}
		if len(ownedBy(engine, pid)) == 0 {
			t.Fatal("the killed teardown left nothing: this test cannot show the sweep")
		}
		if len(markers()) == 0 {
			t.Fatal("the run's marker is gone: no sweep would find what it left")
		}
		next := exec.Command(bin, "run", "--", "true")
		next.Env = env
		if out, err := next.CombinedOutput(); err != nil {
			t.Fatalf("next run: %v %s", err, out)
		}
		if left := ownedBy(engine, pid); len(left) > 0 {
			t.Errorf("the killed teardown's network was not swept: %q", left)
		}
		waitFor(t, "the next run's own teardown", func() bool { return len(ownedBy(engine, next.Process.Pid)) == 0 && len(markers()) == 0 })
	})
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !ok(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
