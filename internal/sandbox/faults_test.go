package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/airut/airut/internal/sandbox"
	"github.com/airut/airut/internal/testkit"
)

// shimRuntime returns a runtime whose engine is testkit's fault-injecting
// shim in front of the real engine.
func shimRuntime(t *testing.T, e *env, faults ...testkit.Fault) *sandbox.Runtime {
	t.Helper()
	rt, err := sandbox.NewRuntime(testkit.EngineShim(t, e.engine, faults...), nil)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// privateFiles lists what is left under a runner's state directory besides
// the run markers themselves.
func privateFiles(t *testing.T, stateDir string) []string {
	t.Helper()
	var left []string
	runs := filepath.Join(stateDir, "runs")
	owners, _ := os.ReadDir(runs)
	for _, o := range owners {
		tasks, _ := os.ReadDir(filepath.Join(runs, o.Name()))
		for _, task := range tasks {
			left = append(left, filepath.Join(o.Name(), task.Name()))
		}
	}
	return left
}

// TestSetupFailuresLeaveNothing: every way the network sandbox's set-up can
// fail half-way ends in an infrastructure result (the process goes on:
// before the undo stack, a nil teardown panicked it), with no container,
// network or private file left.
func TestSetupFailuresLeaveNothing(t *testing.T) {
	ne := newNetEnv(t)
	// An image whose proxy binary exits at once, saying why.
	brokenProxy := ensureOnce(t, ne.cache, buildContext(ne.env.base, map[string]string{"Dockerfile+": "RUN printf '#!/bin/sh\\necho proxy refuses to start >&2\\nexit 3\\n' > /airut-proxy && chmod 755 /airut-proxy\n"}))
	// One that never becomes ready.
	mute := ensureOnce(t, ne.cache, buildContext(ne.env.base, map[string]string{"Dockerfile+": "RUN printf '#!/bin/sh\\nexec sleep 1000\\n' > /airut-proxy && chmod 755 /airut-proxy\n"}))
	cases := []struct {
		name    string
		image   string
		faults  []testkit.Fault
		timeout time.Duration
		want    sandbox.Outcome
		reason  string
	}{
		{name: "proxy exits at once", image: brokenProxy, want: sandbox.OutcomeInfrastructure, reason: "proxy refuses to start"},
		{name: "proxy image missing", image: "localhost/airut-test-no-such-proxy:x", want: sandbox.OutcomeInfrastructure, reason: "image not known"},
		{name: "task network create fails", faults: []testkit.Fault{{Match: "network create --internal", Times: -1}},
			want: sandbox.OutcomeInfrastructure, reason: "injected failure"},
		{name: "egress network create fails", faults: []testkit.Fault{{Match: "network exists", Times: -1}, {Match: "network create --label io.airut.egress", Times: -1}},
			want: sandbox.OutcomeInfrastructure, reason: "create egress network"},
		{name: "proxy start fails in the engine", faults: []testkit.Fault{{Match: "run --rm --name", Times: -1}},
			want: sandbox.OutcomeInfrastructure, reason: "injected failure"},
		{name: "cancelled while waiting for the proxy", image: mute, timeout: 3 * time.Second, want: sandbox.OutcomeCancelled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rt := ne.runner.Runtime()
			if len(tc.faults) > 0 {
				rt = shimRuntime(t, ne.env, tc.faults...)
			}
			runner := sandbox.NewRunner(rt, ne.prefix)
			runner.StateDir = t.TempDir()
			p := *ne.provider
			p.Runner = runner
			if tc.image != "" {
				p.ProxyImage = tc.image
			}
			ctx := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			res := runner.Run(ctx, sandbox.Spec{Image: ne.base, Network: sandbox.NetworkSandboxed, Provider: &p,
				Context: "setupfail", Command: []string{"echo", "must not run"}})
			if res.Outcome != tc.want || !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("outcome %s reason %q; want %s with %q", res.Outcome, res.Reason, tc.want, tc.reason)
			}
			ne.assertNoLeftovers(t)
			if left := privateFiles(t, runner.StateDir); len(left) > 0 {
				t.Errorf("private files left: %q", left)
			}
		})
	}
}

// TestPoolSpareFailsHalfWay: a spare whose network holder fails to start
// (the proxy already runs) is undone whole and retried; the pool then
// serves from a spare that started, and nothing of the failed ones stays.
func TestPoolSpareFailsHalfWay(t *testing.T) {
	ne := newNetEnv(t)
	runner := sandbox.NewRunner(shimRuntime(t, ne.env, testkit.Fault{Match: "run -d --rm --name", Times: 2}), ne.prefix)
	runner.StateDir = t.TempDir()
	p := *ne.provider
	p.Runner = runner
	pool := sandbox.NewPool(p, 1)
	waitFor(t, "a spare ready after two failures", func() bool { return pool.Stats().Ready == 1 })
	res := runner.Run(context.Background(), sandbox.Spec{Image: ne.base, Network: sandbox.NetworkSandboxed,
		Provider: pool.Provider(p), Context: "halfway", Command: []string{"true"}})
	if res.Outcome != sandbox.OutcomeSuccess {
		t.Fatalf("task on the spare: %s (%s)", res.Outcome, res.Reason)
	}
	if st := pool.Stats(); st.Warm != 1 {
		t.Errorf("pool stats %+v; want the task on the spare", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool.Close(ctx)
	ne.assertNoLeftovers(t)
	if left := privateFiles(t, runner.StateDir); len(left) > 0 {
		t.Errorf("private files left: %q", left)
	}
}

// TestTeardownRetriesNetworkRemoval: under load `network rm` can fail while
// the engine is still cleaning up a container that was on the network; the
// teardown must retry rather than leave the network behind.
func TestTeardownRetriesNetworkRemoval(t *testing.T) {
	ne := newNetEnv(t)
	rt := shimRuntime(t, ne.env, testkit.Fault{Match: "network rm", Times: 3,
		Message: "Error: container abc is being removed: container state improper"})
	runner := sandbox.NewRunner(rt, ne.prefix)
	runner.StateDir = t.TempDir()
	p := *ne.provider
	p.Runner = runner
	res := runner.Run(context.Background(), sandbox.Spec{Image: ne.base, Network: sandbox.NetworkSandboxed, Provider: &p,
		Context: "rmretry", Command: []string{"true"}})
	if res.Outcome != sandbox.OutcomeSuccess {
		t.Fatalf("outcome %s (%s)", res.Outcome, res.Reason)
	}
	// assertNoLeftovers (cleanup) fails the test if the network stayed.
}

// clientPIDs finds the engine clients this process started whose command
// line holds all of words. (The same test may run as another user or in
// another checkout at the same time.)
func clientPIDs(words ...string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if parentPID(pid) != os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
		if len(args) < 2 || args[1] != "run" {
			continue
		}
		all := true
		for _, w := range words {
			found := false
			for _, a := range args {
				if strings.Contains(a, w) {
					found = true
				}
			}
			all = all && found
		}
		if all {
			pids = append(pids, pid)
		}
	}
	return pids
}

// parentPID reads a process's parent from /proc; 0 if it is gone.
func parentPID(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// TestEngineClientKilled: the podman client of the agent (or of the proxy)
// killed with SIGKILL mid-task. The sandbox notices, stops and removes the
// container and the network, and reports infrastructure; before, the
// agent's client dying was taken for an OOM kill and its container was left
// running.
func TestEngineClientKilled(t *testing.T) {
	ne := newNetEnv(t)
	cases := []struct {
		name    string
		network sandbox.NetworkMode
		victim  func(prefix string) []string
	}{
		{"agent, no network", sandbox.NetworkNone, func(p string) []string { return []string{"--name", p + "-killed-", "sleep"} }},
		{"agent, network sandbox", sandbox.NetworkSandboxed, func(p string) []string { return []string{"--name", p + "-killed-", "sleep"} }},
		{"proxy", sandbox.NetworkSandboxed, func(p string) []string { return []string{"--name", "-proxy", p + "-killed-", "--listen-ip"} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var once sync.Once
			killed := make(chan error, 1)
			spec := sandbox.Spec{Image: ne.base, Network: tc.network, Context: "killed",
				Command: []string{"sh", "-c", "echo up; exec sleep 1000"}, StopGrace: time.Second,
				Limits: sandbox.Limits{Timeout: 3 * time.Minute}}
			if tc.network == sandbox.NetworkSandboxed {
				spec.Provider = ne.provider
			}
			spec.Stdout = func(l []byte) {
				if string(l) != "up" {
					return
				}
				once.Do(func() {
					pids := clientPIDs(tc.victim(ne.prefix)...)
					if len(pids) != 1 {
						killed <- os.ErrNotExist
						return
					}
					killed <- syscall.Kill(pids[0], syscall.SIGKILL)
				})
			}
			res := ne.runner.Run(context.Background(), spec)
			select {
			case err := <-killed:
				if err != nil {
					t.Fatalf("could not kill the engine client: %v", err)
				}
			default:
				t.Fatalf("the command never started: %s %s", res.Outcome, res.Reason)
			}
			if res.Outcome != sandbox.OutcomeInfrastructure {
				t.Errorf("outcome %s (%s); want infrastructure", res.Outcome, res.Reason)
			}
			ne.assertNoLeftovers(t)
		})
	}
}

// TestLongOutputLine: a 10 MB line from a real container is cut at
// DefaultMaxLine and marked; what follows it arrives intact.
func TestLongOutputLine(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	var lens []int
	var tails []string
	spec := sandbox.Spec{Image: e.base, Network: sandbox.NetworkNone, Context: "longline",
		Command: []string{"sh", "-c", "head -c 10485760 /dev/zero | tr '\\0' x; echo; echo after"},
		Stdout: func(l []byte) {
			mu.Lock()
			defer mu.Unlock()
			lens = append(lens, len(l))
			tails = append(tails, string(l[max(0, len(l)-40):]))
		}}
	res := e.runner.Run(context.Background(), spec)
	if res.Outcome != sandbox.OutcomeSuccess {
		t.Fatalf("outcome %s (%s)", res.Outcome, res.Reason)
	}
	want := sandbox.DefaultMaxLine + len(sandbox.TruncatedMarker)
	if len(lens) != 2 || lens[0] != want || !strings.HasSuffix(tails[0], sandbox.TruncatedMarker) || tails[1] != "after" {
		t.Fatalf("lines of %v bytes ending %q; want %d bytes marked truncated, then \"after\"", lens, tails, want)
	}
}

// TestSharedBuildOutlivesCancelledCaller: two tasks wait for the same image
// build; the first is cancelled. The build goes on for the second, which
// gets its image from that one build (before, the build ran under the
// first caller's context and failed for both).
func TestSharedBuildOutlivesCancelledCaller(t *testing.T) {
	e := newEnv(t)
	bctx := buildContext(e.base, map[string]string{"Dockerfile+": "LABEL nonce=" + testkit.RandomHex(8) + "\nRUN sleep 4\n"})
	ctx1, cancel1 := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, release, err := e.cache.Ensure(ctx1, bctx)
		release()
		first <- err
	}()
	// Wait for the build to be under way before the second caller joins.
	for e.cache.Builds() == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	second := make(chan error, 1)
	var tag string
	go func() {
		var release func()
		var err error
		tag, release, err = e.cache.Ensure(context.Background(), bctx)
		release()
		second <- err
	}()
	time.Sleep(300 * time.Millisecond)
	cancel1()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller got %v; want context.Canceled", err)
	}
	if err := <-second; err != nil {
		t.Fatalf("the other caller's build failed: %v", err)
	}
	if got := e.cache.Builds(); got != 2 {
		t.Errorf("builds = %d; want 2 (one repo image and one overlay, shared)", got)
	}
	if err := exec.Command(e.engine, "image", "exists", tag).Run(); err != nil {
		t.Errorf("image %s missing", tag)
	}
	_ = exec.Command(e.engine, "rmi", tag).Run()
}

// TestBuildFinishesWhenNobodyWaits: the only waiter giving up does not
// cancel the build (podman would leave its RUN processes and working
// container behind); the build finishes, and the next caller gets its
// image without a second build.
func TestBuildFinishesWhenNobodyWaits(t *testing.T) {
	e := newEnv(t)
	bctx := buildContext(e.base, map[string]string{"Dockerfile+": "LABEL nonce=" + testkit.RandomHex(8) + "\nRUN sleep 3\n"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, release, err := e.cache.Ensure(ctx, bctx)
		release()
		done <- err
	}()
	for e.cache.Builds() == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v; want context.Canceled", err)
	}
	tag := ensureOnce(t, e.cache, bctx)
	if got := e.cache.Builds(); got != 2 {
		t.Errorf("builds = %d; want 2: the abandoned build finished and was used", got)
	}
	_ = exec.Command(e.engine, "rmi", tag).Run()
}

// TestPruneScopedAndLeased: two gateways (instances) share one image store
// and prefix; each prunes only its own images, and never one a task holds.
func TestPruneScopedAndLeased(t *testing.T) {
	e := newEnv(t)
	rt := e.runner.Runtime()
	a, b := sandbox.NewImageCache(rt, e.prefix), sandbox.NewImageCache(rt, e.prefix)
	a.Instance, b.Instance = sandbox.InstanceID(t.TempDir()), sandbox.InstanceID(t.TempDir())
	bctx := buildContext(e.base, map[string]string{"Dockerfile+": "LABEL nonce=" + testkit.RandomHex(8) + "\n"})
	tagA := ensureOnce(t, a, bctx)
	tagB, releaseB, err := b.Ensure(context.Background(), bctx)
	if err != nil {
		t.Fatal(err)
	}
	if tagA == tagB {
		t.Fatalf("both gateways got %s; want images of their own", tagA)
	}
	later := func() time.Time { return time.Now().Add(96 * time.Hour) }
	a.Now, b.Now = later, later

	removed, err := a.Prune(context.Background())
	if err != nil || !contains(removed, tagA) {
		t.Fatalf("a pruned %q (%v); want its own %s", removed, err, tagA)
	}
	for _, r := range removed {
		if !strings.Contains(r, a.Instance) {
			t.Errorf("a pruned %s, which is not its own", r)
		}
	}
	if err := exec.Command(e.engine, "image", "exists", tagB).Run(); err != nil {
		t.Fatalf("b's image %s gone after a's prune", tagB)
	}
	// b's task holds its image: a prune long after keeps it.
	if removed, err := b.Prune(context.Background()); err != nil || contains(removed, tagB) {
		t.Fatalf("b pruned %q (%v) while a task held %s", removed, err, tagB)
	}
	releaseB()
	b.Now = func() time.Time { return time.Now().Add(192 * time.Hour) }
	if removed, err := b.Prune(context.Background()); err != nil || !contains(removed, tagB) {
		t.Fatalf("b pruned %q (%v) after release; want %s", removed, err, tagB)
	}
}

// TestBuildRetriesLayerRace: a build whose layer-cache look-up keeps
// racing removals in the store (another gateway's prune, an operator's
// image prune) is built once more without the cache, which nothing can
// race, instead of failing the task.
func TestBuildRetriesLayerRace(t *testing.T) {
	e := newEnv(t)
	rt := shimRuntime(t, e, testkit.Fault{Match: "build --label", Times: -1,
		Message: "Error: checking if cached image exists from a previous build: getting top layer info: layer not known"})
	cache := sandbox.NewImageCache(rt, e.prefix+"-race")
	tag, release, err := cache.Ensure(context.Background(),
		fstest.MapFS{"Dockerfile": {Data: []byte("FROM " + e.base + "\nRUN echo race > /race\n")}})
	if err != nil {
		t.Fatalf("Ensure with every cached build racing a removal: %v", err)
	}
	release()
	t.Cleanup(func() { _ = exec.Command(e.engine, "rmi", "-f", tag).Run() })
	if res, _, _ := e.run(t, sandbox.Spec{Image: tag, Command: []string{"cat", "/race"}}); res.Outcome != sandbox.OutcomeSuccess {
		t.Fatalf("the image built without the cache does not run: %s (%s)", res.Outcome, res.Reason)
	}
}
