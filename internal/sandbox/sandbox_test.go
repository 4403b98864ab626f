package sandbox_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/airut/airut/internal/sandbox"
	"github.com/airut/airut/internal/testkit"
)

// env is what every container test needs: a runner whose prefix is unique
// to the test, so leftovers are attributable, and the base image.
type env struct {
	engine string
	runner *sandbox.Runner
	cache  *sandbox.ImageCache
	base   string
	prefix string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	engine := testkit.RequireEngine(t)
	rt, err := sandbox.NewRuntime(engine, nil)
	if err != nil {
		t.Fatal(err)
	}
	prefix := "airut-test-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(prefix) > 50 {
		prefix = prefix[:50]
	}
	e := &env{engine: engine, runner: sandbox.NewRunner(rt, prefix), cache: sandbox.NewImageCache(rt, prefix),
		base: testkit.BaseImage(t, engine), prefix: prefix}
	e.runner.StateDir = t.TempDir()
	t.Cleanup(func() { e.assertNoLeftovers(t) })
	return e
}

// assertNoLeftovers fails the test if any container or network of its
// prefix that this process created still exists: teardown must run on
// every path. (The same test may run in another checkout on this host.)
func (e *env) assertNoLeftovers(t testing.TB) {
	t.Helper()
	mine := "label=io.airut.owner=" + sandbox.OwnerToken()
	out, err := exec.Command(e.engine, "ps", "-a", "--filter", "name=^"+e.prefix+"-", "--filter", mine, "--format", "{{.Names}}").CombinedOutput()
	if err != nil {
		t.Fatalf("ps: %v %s", err, out)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("containers left behind: %s", s)
	}
	out, err = exec.Command(e.engine, "network", "ls", "--filter", "name=^"+e.prefix+"-", "--filter", mine, "--format", "{{.Name}}").CombinedOutput()
	if err != nil {
		t.Fatalf("network ls: %v %s", err, out)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("networks left behind: %s", s)
	}
}

func (e *env) run(t *testing.T, spec sandbox.Spec) (sandbox.Result, []string, []string) {
	t.Helper()
	var mu sync.Mutex
	var stdout, stderr []string
	if spec.Image == "" {
		spec.Image = e.base
	}
	if spec.Network == "" {
		spec.Network = sandbox.NetworkNone
	}
	if spec.Context == "" {
		spec.Context = "t"
	}
	spec.Stdout = func(l []byte) { mu.Lock(); stdout = append(stdout, string(l)); mu.Unlock() }
	spec.Stderr = func(l []byte) { mu.Lock(); stderr = append(stderr, string(l)); mu.Unlock() }
	res := e.runner.Run(context.Background(), spec)
	return res, stdout, stderr
}

func TestSecurityFlags(t *testing.T) {
	e := newEnv(t)
	res, out, errOut := e.run(t, sandbox.Spec{Command: []string{"sh", "-c", "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs):' /proc/self/status"}})
	if res.Outcome != sandbox.OutcomeSuccess {
		t.Fatalf("outcome %s (%s); stderr %q", res.Outcome, res.Reason, errOut)
	}
	// CHOWN(0) DAC_OVERRIDE(1) FOWNER(3) SETGID(6) SETUID(7) = 0xcb.
	want := map[string]string{"CapEff": "00000000000000cb", "CapPrm": "00000000000000cb", "CapBnd": "00000000000000cb", "NoNewPrivs": "1"}
	got := map[string]string{}
	for _, l := range out {
		k, v, _ := strings.Cut(l, ":")
		got[k] = strings.TrimSpace(v)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q; want %q", k, got[k], v)
		}
	}
}

func TestExitCodePassthrough(t *testing.T) {
	e := newEnv(t)
	for _, code := range []string{"0", "1", "42", "126"} {
		res, _, _ := e.run(t, sandbox.Spec{Command: []string{"sh", "-c", "exit " + code}})
		if got := res.ExitCode; code != strconv.Itoa(got) {
			t.Errorf("exit %s: got %d (%s)", code, got, res.Reason)
		}
		wantOutcome := sandbox.OutcomeError
		if code == "0" {
			wantOutcome = sandbox.OutcomeSuccess
		}
		if res.Outcome != wantOutcome {
			t.Errorf("exit %s: outcome %s; want %s", code, res.Outcome, wantOutcome)
		}
	}
}

func TestWorkspaceMountOnly(t *testing.T) {
	e := newEnv(t)
	ws := t.TempDir()
	secretDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(secretDir, "host-secret"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	script := `echo written > /workspace/out.txt &&
test ! -e ` + secretDir + `/host-secret &&
awk '$4 != "/" && $5 !~ /^\/(sys|proc)\// {print $5}' /proc/self/mountinfo`
	res, out, errOut := e.run(t, sandbox.Spec{Command: []string{"sh", "-c", script},
		Mounts: []sandbox.Mount{{Source: ws, Target: "/workspace"}}})
	if res.Outcome != sandbox.OutcomeSuccess {
		t.Fatalf("outcome %s (%s); stderr %q", res.Outcome, res.Reason, errOut)
	}
	data, err := os.ReadFile(filepath.Join(ws, "out.txt"))
	if err != nil || string(data) != "written\n" {
		t.Fatalf("workspace file = %q, %v; want written", data, err)
	}
	// Only the workspace, the engine's own per-container files and (rootless
	// Podman) the standard device nodes are bound from the host.
	allowed := map[string]bool{"/": true, "/workspace": true, "/etc/hostname": true, "/etc/hosts": true,
		"/etc/resolv.conf": true, "/run/.containerenv": true, "/dev/null": true, "/dev/zero": true,
		"/dev/full": true, "/dev/tty": true, "/dev/random": true, "/dev/urandom": true}
	for _, mp := range out {
		if !allowed[mp] {
			t.Errorf("unexpected host bind mount at %s", mp)
		}
	}
	if !contains(out, "/workspace") {
		t.Errorf("mounts %q lack /workspace", out)
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestStreamsBeforeExit(t *testing.T) {
	e := newEnv(t)
	ws := t.TempDir()
	// The command waits for a file that the test creates only after seeing
	// the first line: if output were buffered to the end, this would hang
	// until the timeout.
	var once sync.Once
	spec := sandbox.Spec{
		Image: e.base, Network: sandbox.NetworkNone, Context: "stream",
		Command: []string{"sh", "-c", "echo first; while [ ! -f /workspace/go ]; do sleep 0.1; done; echo second"},
		Mounts:  []sandbox.Mount{{Source: ws, Target: "/workspace"}},
		Limits:  sandbox.Limits{Timeout: 60 * time.Second},
	}
	var lines []string
	var mu sync.Mutex
	spec.Stdout = func(l []byte) {
		mu.Lock()
		lines = append(lines, string(l))
		mu.Unlock()
		if string(l) == "first" {
			once.Do(func() { _ = os.WriteFile(filepath.Join(ws, "go"), nil, 0o644) })
		}
	}
	res := e.runner.Run(context.Background(), spec)
	if res.Outcome != sandbox.OutcomeSuccess {
		t.Fatalf("outcome %s (%s): first line did not arrive while the command ran", res.Outcome, res.Reason)
	}
	if strings.Join(lines, ",") != "first,second" {
		t.Errorf("lines %q; want first,second", lines)
	}
}

func TestTimeout(t *testing.T) {
	e := newEnv(t)
	res, _, _ := e.run(t, sandbox.Spec{Command: []string{"sleep", "1000"},
		Limits: sandbox.Limits{Timeout: 2 * time.Second}, StopGrace: time.Second})
	if res.Outcome != sandbox.OutcomeTimeout {
		t.Fatalf("outcome %s (%s); want timeout", res.Outcome, res.Reason)
	}
}

func TestCancel(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	var once sync.Once
	done := make(chan sandbox.Result)
	go func() {
		done <- e.runner.Run(ctx, sandbox.Spec{Image: e.base, Network: sandbox.NetworkNone, Context: "cancel",
			Command: []string{"sh", "-c", "echo up; sleep 1000"}, StopGrace: time.Second,
			Stdout: func([]byte) { once.Do(func() { close(started) }) }})
	}()
	<-started
	cancel()
	res := <-done
	if res.Outcome != sandbox.OutcomeCancelled {
		t.Fatalf("outcome %s (%s); want cancelled", res.Outcome, res.Reason)
	}
}

func TestMissingImageIsInfrastructure(t *testing.T) {
	e := newEnv(t)
	res, _, _ := e.run(t, sandbox.Spec{Image: "localhost/airut-does-not-exist:nope", Command: []string{"true"}})
	if res.Outcome != sandbox.OutcomeInfrastructure {
		t.Fatalf("outcome %s (%s); want infrastructure", res.Outcome, res.Reason)
	}
	if !strings.Contains(res.Reason, "container failed to start") {
		t.Errorf("reason %q does not explain", res.Reason)
	}
	if !errors.Is(res.Err, sandbox.ErrImageMissing) {
		t.Errorf("error %v is not ErrImageMissing", res.Err)
	}
}

// TestImageCacheForgets: a task image the cache knows is handed out
// without asking the engine; once removed behind its back, the start
// fails with ErrImageMissing, and after Forget the next Ensure rebuilds.
func TestImageCacheForgets(t *testing.T) {
	e := newEnv(t)
	bctx := fstest.MapFS{"Dockerfile": {Data: []byte("FROM " + e.base + "\nRUN echo forget > /forget\n")}}
	tag, release, err := e.cache.Ensure(context.Background(), bctx)
	if err != nil {
		t.Fatal(err)
	}
	release()
	builds := e.cache.Builds()
	if out, err := exec.Command(e.engine, "rmi", "-f", tag).CombinedOutput(); err != nil {
		t.Fatalf("rmi: %v %s", err, out)
	}
	again, release, err := e.cache.Ensure(context.Background(), bctx)
	if err != nil || again != tag {
		t.Fatalf("Ensure after the removal: %q %v", again, err)
	}
	release()
	res, _, _ := e.run(t, sandbox.Spec{Image: tag, Command: []string{"true"}})
	if !errors.Is(res.Err, sandbox.ErrImageMissing) {
		t.Fatalf("start of a removed image: %s (%s) %v; want ErrImageMissing", res.Outcome, res.Reason, res.Err)
	}
	e.cache.Forget(tag)
	if _, release, err = e.cache.Ensure(context.Background(), bctx); err != nil {
		t.Fatal(err)
	}
	release()
	if e.cache.Builds() == builds {
		t.Fatal("Ensure after Forget did not rebuild the removed image")
	}
	if res, _, _ := e.run(t, sandbox.Spec{Image: tag, Command: []string{"cat", "/forget"}}); res.Outcome != sandbox.OutcomeSuccess {
		t.Fatalf("start after the rebuild: %s (%s)", res.Outcome, res.Reason)
	}
}

func TestSandboxedNetworkNeverFallsBack(t *testing.T) {
	e := newEnv(t)
	res, _, _ := e.run(t, sandbox.Spec{Network: sandbox.NetworkSandboxed, Command: []string{"true"}})
	if res.Outcome != sandbox.OutcomeInfrastructure {
		t.Fatalf("outcome %s; want infrastructure when no proxy network is available", res.Outcome)
	}
}

func TestLimits(t *testing.T) {
	e := newEnv(t)
	host := sandbox.ProbeHost(context.Background(), e.runner.Runtime())
	if !host.LimitsEnforceable {
		// Rootless on cgroup v1: the limits cannot work, and every run
		// must say so instead of dropping them silently.
		res, _, _ := e.run(t, sandbox.Spec{Command: []string{"true"},
			Limits: sandbox.Limits{Memory: "32m", PidsLimit: 20}})
		if len(res.LimitsNotEnforced) != 2 {
			t.Fatalf("LimitsNotEnforced = %q on a host that cannot enforce limits (%s)", res.LimitsNotEnforced, host.LimitsReason)
		}
		return
	}
	t.Run("memory", func(t *testing.T) {
		// awk doubles a string until the allocator is killed.
		res, _, _ := e.run(t, sandbox.Spec{Command: []string{"awk", `BEGIN { s = "xxxxxxxx"; while (1) s = s s }`},
			Limits: sandbox.Limits{Memory: "32m", Timeout: 60 * time.Second}})
		if res.Outcome != sandbox.OutcomeError || res.ExitCode != 137 || !strings.Contains(res.Reason, "out of memory") {
			t.Fatalf("outcome %s exit %d reason %q; want error, 137, out of memory", res.Outcome, res.ExitCode, res.Reason)
		}
		if len(res.LimitsNotEnforced) != 0 {
			t.Errorf("LimitsNotEnforced = %q on an enforcing host", res.LimitsNotEnforced)
		}
	})
	t.Run("pids", func(t *testing.T) {
		res, out, errOut := e.run(t, sandbox.Spec{
			Command: []string{"sh", "-c", `n=0; while [ $n -lt 100 ]; do sleep 5 & n=$((n+1)); done; echo started $n`},
			Limits:  sandbox.Limits{PidsLimit: 20, Timeout: 60 * time.Second}})
		all := strings.Join(append(out, errOut...), "\n")
		if !strings.Contains(all, "can't fork") && !strings.Contains(all, "Resource temporarily unavailable") {
			t.Fatalf("fork loop was not stopped (outcome %s): %s", res.Outcome, all)
		}
	})
}

func buildContext(base string, extra map[string]string) fs.FS {
	m := fstest.MapFS{"Dockerfile": {Data: []byte("FROM " + base + "\n" + extra["Dockerfile+"])}}
	for k, v := range extra {
		if k != "Dockerfile+" {
			m[k] = &fstest.MapFile{Data: []byte(v)}
		}
	}
	return m
}

func TestImageCache(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	// A label unique to this run forces a real build even when an earlier
	// run left the same image behind.
	nonce := time.Now().Format(time.RFC3339Nano)
	bctx := buildContext(e.base, map[string]string{"Dockerfile+": "LABEL nonce=\"" + nonce + "\"\nCOPY hello.txt /hello.txt\n", "hello.txt": "hi\n"})

	// Several tasks wanting the same image at once build it once.
	var wg sync.WaitGroup
	tags := make([]string, 4)
	errs := make([]error, 4)
	for i := range tags {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var release func()
			tags[i], release, errs[i] = e.cache.Ensure(ctx, bctx)
			release()
		}()
	}
	wg.Wait()
	for i := range tags {
		if errs[i] != nil {
			t.Fatalf("ensure %d: %v", i, errs[i])
		}
		if tags[i] != tags[0] {
			t.Fatalf("tags differ: %q", tags)
		}
	}
	if got := e.cache.Builds(); got != 2 {
		t.Fatalf("builds = %d after concurrent first use; want 2 (repo + overlay)", got)
	}
	ensureOnce(t, e.cache, bctx)
	if got := e.cache.Builds(); got != 2 {
		t.Fatalf("builds = %d after second use of an unchanged context; want 2", got)
	}
	// The overlay's entrypoint marks the sandbox.
	res, out, errOut := e.run(t, sandbox.Spec{Image: tags[0], Command: []string{"sh", "-c", "cat /hello.txt; echo IS_SANDBOX=$IS_SANDBOX"}})
	if res.Outcome != sandbox.OutcomeSuccess || strings.Join(out, ",") != "hi,IS_SANDBOX=1" {
		t.Fatalf("outcome %s out %q err %q", res.Outcome, out, errOut)
	}

	// Past the max age it is rebuilt.
	e.cache.Now = func() time.Time { return time.Now().Add(48 * time.Hour) }
	ensureOnce(t, e.cache, bctx)
	if got := e.cache.Builds(); got != 4 {
		t.Fatalf("builds = %d after max age; want 4", got)
	}
	e.cache.Now = time.Now

	// A changed context gives a new image.
	changed := buildContext(e.base, map[string]string{"Dockerfile+": "LABEL nonce=\"" + nonce + "\"\nCOPY hello.txt /hello.txt\n", "hello.txt": "changed\n"})
	tag2 := ensureOnce(t, e.cache, changed)
	if tag2 == tags[0] || e.cache.Builds() != 6 {
		t.Fatalf("changed context: tag %s (old %s), builds %d; want a new tag and 6 builds", tag2, tags[0], e.cache.Builds())
	}

	// Prune keeps what tasks still use (leftovers of earlier runs of this
	// test may go), and removes it once unused for longer than the max age.
	removed, err := e.cache.Prune(ctx)
	if err != nil || contains(removed, tags[0]) || contains(removed, tag2) {
		t.Fatalf("prune right after use removed %q (%v); want %s and %s kept", removed, err, tags[0], tag2)
	}
	// tags[0] was last handed out at +48h (the max-age rebuild above).
	e.cache.Now = func() time.Time { return time.Now().Add(96 * time.Hour) }
	removed, err = e.cache.Prune(ctx)
	if err != nil || !contains(removed, tags[0]) || !contains(removed, tag2) {
		t.Fatalf("prune after max age removed %q (%v); want %s and %s", removed, err, tags[0], tag2)
	}
}

// ensureOnce resolves an image and releases its lease at once.
func ensureOnce(t *testing.T, c *sandbox.ImageCache, bctx fs.FS) string {
	t.Helper()
	tag, release, err := c.Ensure(context.Background(), bctx)
	if err != nil {
		t.Fatal(err)
	}
	release()
	return tag
}

func TestImageBuildCannotReachHostFiles(t *testing.T) {
	e := newEnv(t)
	hostDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(hostDir, "secret"), []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, copyLine := range map[string]string{
		"parent":   "COPY ../secret /secret\n",
		"absolute": "COPY " + hostDir + "/secret /secret\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := e.cache.Ensure(context.Background(), buildContext(e.base, map[string]string{"Dockerfile+": copyLine}))
			if err == nil {
				t.Fatal("build that copies a host file succeeded")
			}
			if !strings.Contains(err.Error(), "build repository image from .airut/container/Dockerfile") {
				t.Errorf("error %q does not say which build failed", err)
			}
		})
	}
}

func TestBadBuildContext(t *testing.T) {
	e := newEnv(t)
	cases := map[string]struct {
		fsys fs.FS
		want string
	}{
		"no dockerfile": {fstest.MapFS{"x": {Data: []byte("y")}}, "no Dockerfile"},
		"failing step":  {buildContext(e.base, map[string]string{"Dockerfile+": "RUN exit 3\n"}), "exit status 3"},
		"symlink":       {fstest.MapFS{"Dockerfile": {Data: []byte("FROM x")}, "l": {Mode: fs.ModeSymlink, Data: []byte("/etc/passwd")}}, "not a regular file"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, _, err := e.cache.Ensure(context.Background(), tc.fsys)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestSweep(t *testing.T) {
	e := newEnv(t)
	// A container whose owner process is gone (pid 1's start time never
	// matches "1:1") is swept; one owned by this process is kept.
	dead := e.prefix + "-dead"
	live := e.prefix + "-live"
	for name, owner := range map[string]string{dead: "999999999:1", live: ownerOfSelf(t)} {
		out, err := exec.Command(e.engine, "run", "-d", "--name", name, "--label", "io.airut.prefix="+e.prefix,
			"--label", "io.airut.owner="+owner, e.base, "sleep", "1000").CombinedOutput()
		if err != nil {
			t.Fatalf("run %s: %v %s", name, err, out)
		}
	}
	defer exec.Command(e.engine, "rm", "-f", "-t", "0", live).Run()
	removed, err := e.runner.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != dead {
		t.Fatalf("swept %q; want only %s", removed, dead)
	}
	if err := exec.Command(e.engine, "container", "exists", live).Run(); err != nil {
		t.Fatalf("live container was swept")
	}
}

func ownerOfSelf(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return strconv.Itoa(os.Getpid()) + ":" + f[19]
}

func TestRunMarkers(t *testing.T) {
	r := sandbox.NewRunner(nil, "airut-markertest")
	r.StateDir = t.TempDir()
	if r.NeedsSweep() {
		t.Fatal("NeedsSweep with no markers at all")
	}
	done := r.MarkRunning()
	if r.NeedsSweep() {
		t.Fatal("NeedsSweep while only this live process has a marker")
	}
	runs := filepath.Join(r.StateDir, "runs")
	if fi, err := os.Stat(runs); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("runs directory: %v %v; want mode 0700", fi.Mode(), err)
	}
	// A marker of a process that is gone is a crashed run.
	if err := os.Mkdir(filepath.Join(runs, "999999999-1"), 0o700); err != nil {
		t.Fatal(err)
	}
	if !r.NeedsSweep() {
		t.Fatal("NeedsSweep false with a dead process's marker")
	}
	r.ClearDeadMarkers()
	if r.NeedsSweep() {
		t.Fatal("NeedsSweep after clearing dead markers")
	}
	done()
	if entries, _ := os.ReadDir(runs); len(entries) != 0 {
		t.Errorf("markers left after a clean exit: %v", entries)
	}
}
