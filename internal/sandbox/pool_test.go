package sandbox_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airut/airut/internal/sandbox"
	"github.com/airut/airut/internal/secrets"
	"github.com/airut/airut/internal/testkit"
)

// providerMode makes providerFor hand out other providers than the
// ProxyNetwork itself: the escape tests run unchanged with a warm spare
// claimed for every task (pooled), or with the sandbox started ahead of
// its run the way airut-sandbox does (prestarted).
var providerMode struct {
	sync.Mutex
	mode string
}

// runPooled runs test with every network sandbox claimed from a pool.
func runPooled(t *testing.T, test func(*testing.T)) { runWithProvider(t, "pooled", test) }

// runPrestarted runs test with every network sandbox prestarted.
func runPrestarted(t *testing.T, test func(*testing.T)) { runWithProvider(t, "prestarted", test) }

func runWithProvider(t *testing.T, mode string, test func(*testing.T)) {
	providerMode.Lock()
	providerMode.mode = mode
	providerMode.Unlock()
	t.Cleanup(func() {
		providerMode.Lock()
		providerMode.mode = ""
		providerMode.Unlock()
	})
	test(t)
}

// providerFor is p itself, or under runPooled a provider claiming from a
// pool of p's spares that has one ready, the way the gateway claims: the
// allowlist is delivered late (Pending), so the agent's container starts
// on the spare before its proxy is claimed, and its command waits for the
// claim. At the end of the test the pool must have served the task warm,
// and it is closed. Under runPrestarted it is p prestarted, as
// airut-sandbox does: the agent's container starts beside the proxy's,
// and its command waits for the proxy's readiness.
func providerFor(t *testing.T, p *sandbox.ProxyNetwork) sandbox.NetworkProvider {
	t.Helper()
	providerMode.Lock()
	mode := providerMode.mode
	providerMode.Unlock()
	switch mode {
	case "pooled":
	case "prestarted":
		pre := p.Prestart(context.Background(), "", nil)
		t.Cleanup(func() { pre.Discard(context.Background()) })
		return pre
	default:
		return p
	}
	pool := newReadyPool(t, *p, 1)
	t.Cleanup(func() {
		if st := pool.Stats(); st.Warm < 1 || st.Cold > 0 {
			t.Errorf("pool stats %+v: the task did not claim a warm spare", st)
		}
	})
	late := *p
	allow := p.Allowlist
	late.Allowlist = nil
	late.Pending = func(ctx context.Context) ([]byte, error) {
		// As the gateway's .airut/ reads, which end while the
		// container starts.
		select {
		case <-time.After(200 * time.Millisecond):
			return allow, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return pool.Provider(late)
}

// newReadyPool starts a pool and waits until size spares are ready; it is
// closed (drained) at the end of the test, before the leftover check.
func newReadyPool(t *testing.T, tmpl sandbox.ProxyNetwork, size int) *sandbox.Pool {
	t.Helper()
	pool := sandbox.NewPool(tmpl, size)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		pool.Close(ctx)
	})
	waitFor(t, "spares ready", func() bool { return pool.Stats().Ready == size })
	return pool
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestNetworkSandboxPooled(t *testing.T) { runPooled(t, TestNetworkSandbox) }

func TestProxyHardeningPooled(t *testing.T) { runPooled(t, TestProxyHardening) }

// TestNetworkSandboxPrestarted: the escape tests pass unchanged with the
// agent's container started beside its proxy's (airut-sandbox's path).
func TestNetworkSandboxPrestarted(t *testing.T) { runPrestarted(t, TestNetworkSandbox) }

// TestPoolTasksIsolated: two tasks run at once on spares of one pool. Each
// task's proxy enforces its own allowlist and only that, swaps only its own
// credentials, and has its own CA and network; the other task's proxy is
// unreachable.
func TestPoolTasksIsolated(t *testing.T) {
	ne := newNetEnv(t)
	pool := newReadyPool(t, *ne.provider, 2)

	type task struct {
		name, allowed, denied, real string
		smap                        *secrets.Map
		out                         map[string]string
		res                         sandbox.Result
	}
	tasks := []*task{
		{name: "a", allowed: "api.example.test", denied: "other.example.test"},
		{name: "b", allowed: "other.example.test", denied: "api.example.test"},
	}
	for _, tk := range tasks {
		tk.real = "ghp_" + testkit.RandomHex(18)
		var err error
		tk.smap, err = secrets.NewMap(map[string]secrets.Masked{
			"GH_TOKEN": {Value: tk.real, Scopes: []string{tk.allowed}, Headers: []string{"Authorization"}},
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
	}
	ws := t.TempDir()
	var wg sync.WaitGroup
	for i, tk := range tasks {
		other := tasks[1-i]
		p := *ne.provider
		p.Allowlist = []byte("domains:\n  - " + tk.allowed + "\n")
		p.Secrets = tk.smap
		p.NetworkLog = nil
		// Both tasks wait for each other before they probe, so the two
		// sandboxes certainly exist at once.
		script := `touch /workspace/up-` + tk.name + `; while [ ! -f /workspace/up-` + other.name + ` ]; do sleep 0.05; done
echo '=== allowed'; tkhttp -H "Authorization: Bearer $GH_TOKEN" https://` + tk.allowed + `/echo/` + tk.name + `
echo '=== denied'; tkhttp https://` + tk.denied + `/echo/` + tk.name + `
echo '=== foreign'; tkhttp -H "Authorization: Bearer $OTHER" https://` + tk.allowed + `/echo/foreign
echo '=== ca'; cat /etc/airut/proxy-ca.pem
echo '=== dns'; grep nameserver /etc/resolv.conf
echo '=== done'; touch /workspace/done-` + tk.name + `; while [ ! -f /workspace/done-` + other.name + ` ]; do sleep 0.05; done
echo '=== other-proxy'; tkhttp tcp "$(cat /workspace/dns-` + other.name + ` 2>/dev/null || echo 10.0.0.9)":443`
		env := tk.smap.Env()
		env["OTHER"] = other.smap.Env()["GH_TOKEN"]
		provider := pool.Provider(p)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mu sync.Mutex
			cur := ""
			tk.out = map[string]string{}
			spec := sandbox.Spec{Image: ne.base, Network: sandbox.NetworkSandboxed, Provider: provider, Context: "iso-" + tk.name,
				Env: env, Mounts: []sandbox.Mount{{Source: ws, Target: "/workspace"}},
				Command: []string{"sh", "-c", script}, Limits: sandbox.Limits{Timeout: 3 * time.Minute}}
			spec.Stdout = func(l []byte) {
				mu.Lock()
				defer mu.Unlock()
				if name, ok := strings.CutPrefix(string(l), "=== "); ok {
					if cur == "dns" {
						_ = os.WriteFile(ws+"/dns-"+tk.name, []byte(strings.TrimPrefix(strings.TrimSpace(tk.out["dns"]), "nameserver ")), 0o644)
					}
					cur = name
					return
				}
				tk.out[cur] += string(l) + "\n"
			}
			tk.res = ne.runner.Run(context.Background(), spec)
		}()
	}
	wg.Wait()
	if st := pool.Stats(); st.Warm != 2 || st.Cold != 0 {
		t.Errorf("pool stats %+v; want both tasks on warm spares", st)
	}
	a, b := tasks[0], tasks[1]
	for _, tk := range tasks {
		if tk.res.Outcome != sandbox.OutcomeSuccess && tk.res.Outcome != sandbox.OutcomeError {
			t.Fatalf("task %s: %s (%s)", tk.name, tk.res.Outcome, tk.res.Reason)
		}
		e := echoOf(t, tk.out["allowed"])
		if len(e.Authorization) != 1 || e.Authorization[0] != testkit.HashValue("Bearer "+tk.real) {
			t.Errorf("task %s: upstream saw Authorization %v; want its own real token", tk.name, e.Authorization)
		}
		if !strings.HasPrefix(tk.out["denied"], "STATUS 403") {
			t.Errorf("task %s reached %s, allowed only for the other task: %q", tk.name, tk.denied, tk.out["denied"])
		}
		other := b
		if tk == b {
			other = a
		}
		// The other task's surrogate is a foreign credential here: stripped,
		// never swapped for the other task's real token.
		if f := echoOf(t, tk.out["foreign"]); len(f.Authorization) != 0 {
			swapped := slices.Contains(f.Authorization, testkit.HashValue("Bearer "+other.real))
			t.Errorf("task %s: the other task's surrogate reached upstream (swapped for its real token: %v): %v", tk.name, swapped, f.Authorization)
		}
		if !strings.Contains(tk.out["other-proxy"], "CONNECT FAILED") {
			t.Errorf("task %s reached the other task's proxy: %q", tk.name, tk.out["other-proxy"])
		}
		if !strings.Contains(tk.out["ca"], "BEGIN CERTIFICATE") {
			t.Errorf("task %s: no CA: %q", tk.name, tk.out["ca"])
		}
	}
	if a.out["ca"] == b.out["ca"] {
		t.Error("two tasks share one proxy CA")
	}
	if a.out["dns"] == b.out["dns"] {
		t.Errorf("two tasks share one proxy address: %q", a.out["dns"])
	}
}

// TestPoolReplacesKilledSpare: a spare whose proxy is killed while it
// waits is torn down and replaced, and the next task claims the new one.
func TestPoolReplacesKilledSpare(t *testing.T) {
	// The proxy's death is seen through its attached engine client, the
	// network holder's through a pidfd: either makes the spare useless.
	for _, part := range []string{"proxy", "net"} {
		t.Run(part, func(t *testing.T) {
			ne := newNetEnv(t)
			pool := newReadyPool(t, *ne.provider, 1)
			names := spareContainers(t, ne.env, part)
			if len(names) != 1 {
				t.Fatalf("spare %s containers %q; want one", part, names)
			}
			if out, err := exec.Command(ne.engine, "kill", names[0]).CombinedOutput(); err != nil {
				t.Fatalf("kill %s: %v %s", names[0], err, out)
			}
			waitFor(t, "the killed spare replaced", func() bool {
				st := pool.Stats()
				return st.Replaced == 1 && st.Ready == 1
			})
			if now := spareContainers(t, ne.env, part); len(now) != 1 || now[0] == names[0] {
				t.Fatalf("spare %s containers after the kill %q (killed %s)", part, now, names[0])
			}
			res, out, _ := ne.run(t, sandbox.Spec{Network: sandbox.NetworkSandboxed, Provider: pool.Provider(*ne.provider),
				Command: []string{"tkhttp", "https://api.example.test/echo/after-kill"}, Limits: sandbox.Limits{Timeout: 3 * time.Minute}})
			if res.Outcome != sandbox.OutcomeSuccess || len(out) == 0 || !strings.HasPrefix(out[0], "STATUS 200") {
				t.Fatalf("task after the replacement: %s (%s) %q", res.Outcome, res.Reason, out)
			}
			if st := pool.Stats(); st.Warm != 1 {
				t.Errorf("pool stats %+v; want the task on the replacement spare", st)
			}
		})
	}
}

// TestPoolDrainsOnShutdown: Close tears down every spare and waits for a
// claimed sandbox's teardown; nothing is left: no container, no network,
// no private file.
func TestPoolDrainsOnShutdown(t *testing.T) {
	ne := newNetEnv(t)
	pool := sandbox.NewPool(*ne.provider, 2)
	// A failure below must not leave the pool filling (Close twice is
	// harmless).
	t.Cleanup(func() { pool.Close(context.Background()) })
	waitFor(t, "spares ready", func() bool { return pool.Stats().Ready == 2 })
	tn, err := pool.Provider(*ne.provider).Setup(context.Background(), ne.prefix+"-drain")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the pool refilled", func() bool { st := pool.Stats(); return st.Ready == 2 && st.Claimed == 1 })
	done := make(chan struct{})
	go func() {
		pool.Close(context.Background())
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("Close returned before the claimed sandbox was torn down")
	case <-time.After(200 * time.Millisecond):
	}
	tn.Teardown(context.Background())
	<-done
	if st := pool.Stats(); st.Ready != 0 || st.Starting != 0 || st.Claimed != 0 {
		t.Errorf("stats after Close: %+v", st)
	}
	ne.assertNoLeftovers(t)
	err = fsWalkFiles(ne.runner.StateDir, func(path string) { t.Errorf("private file left behind: %s", path) })
	if err != nil {
		t.Fatal(err)
	}
}

// spareContainers lists the running containers of spares whose name ends
// in -part ("proxy", "net").
func spareContainers(t *testing.T, e *env, part string) []string {
	t.Helper()
	out, err := exec.Command(e.engine, "ps", "--filter", "name=^"+e.prefix+"-spare-.*-"+part+"$", "--format", "{{.Names}}").Output()
	if err != nil {
		t.Fatalf("ps: %v", err)
	}
	return strings.Fields(string(out))
}

// fsWalkFiles calls found for every regular file under root.
func fsWalkFiles(root string, found func(string)) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			found(path)
		}
		return nil
	})
}

// TestPoolDetachedTeardown: with DetachedProvider, Run returns once the
// container is gone and the network sandbox is torn down afterwards; after
// runs once that is done, with the last network log line delivered, and
// Close waits for it.
func TestPoolDetachedTeardown(t *testing.T) {
	ne := newNetEnv(t)
	pool := newReadyPool(t, *ne.provider, 1)
	var mu sync.Mutex
	var lines []string
	afterCalled := make(chan []string, 1)
	p := *ne.provider
	p.NetworkLog = func(l string) { mu.Lock(); lines = append(lines, l); mu.Unlock() }
	provider := pool.DetachedProvider(p, func() {
		mu.Lock()
		defer mu.Unlock()
		afterCalled <- append([]string(nil), lines...)
	})
	res, _, _ := ne.run(t, sandbox.Spec{Network: sandbox.NetworkSandboxed, Provider: provider, Context: "detached",
		Command: []string{"tkhttp", "https://api.example.test/echo/detached-last"}, Limits: sandbox.Limits{Timeout: 3 * time.Minute}})
	if res.Outcome != sandbox.OutcomeSuccess {
		t.Fatalf("outcome %s (%s)", res.Outcome, res.Reason)
	}
	select {
	case <-afterCalled:
		t.Fatal("Run waited for the teardown")
	default:
	}
	if st := pool.Stats(); st.Claimed != 1 {
		t.Errorf("stats right after Run %+v; want the sandbox still claimed while it is torn down", st)
	}
	var got []string
	select {
	case got = <-afterCalled:
	case <-time.After(2 * time.Minute):
		t.Fatal("after never called")
	}
	if !slices.ContainsFunc(got, func(l string) bool {
		return strings.Contains(l, "ALLOWED GET https://api.example.test/echo/detached-last")
	}) {
		t.Errorf("the last network log line was not delivered before after: %q", got)
	}
	waitFor(t, "the claim released", func() bool { return pool.Stats().Claimed == 0 })
}

// TestPoolResize: the pool follows Resize: growing adds spares, shrinking
// tears the surplus ready spares down at once and leaves a claimed
// sandbox alone, a spare still starting beyond the new size is dropped
// once ready, 0 keeps none (tasks start cold), and growing again refills.
// Nothing is left behind.
func TestPoolResize(t *testing.T) {
	ne := newNetEnv(t)
	pool := newReadyPool(t, *ne.provider, 1)
	claimedName := spareContainers(t, ne.env, "proxy")
	tn, err := pool.Provider(*ne.provider).Setup(context.Background(), ne.prefix+"-claimed")
	if err != nil {
		t.Fatal(err)
	}
	defer tn.Teardown(context.Background())
	alive := func() bool {
		return slices.Contains(spareContainers(t, ne.env, "proxy"), claimedName[0])
	}
	ready := func(want int) func() bool {
		return func() bool {
			st := pool.Stats()
			return st.Ready == want && st.Starting == 0 && len(spareContainers(t, ne.env, "proxy")) == want+1
		}
	}

	pool.Resize(3)
	if st := pool.Stats(); st.Size != 3 {
		t.Errorf("Size after Resize(3) = %d", st.Size)
	}
	waitFor(t, "three spares", ready(3))

	pool.Resize(1)
	if st := pool.Stats(); st.Size != 1 || st.Ready != 1 {
		t.Errorf("stats right after Resize(1) %+v; want the surplus out of the pool at once", st)
	}
	waitFor(t, "the surplus torn down", ready(1))
	if !alive() {
		t.Fatal("shrinking tore down the claimed sandbox")
	}

	// Grow and shrink back before the new spares are ready: they are
	// dropped as they come up.
	pool.Resize(3)
	waitFor(t, "spares starting", func() bool { return pool.Stats().Starting > 0 })
	pool.Resize(1)
	waitFor(t, "the spares started for nothing torn down", ready(1))

	pool.Resize(0)
	if st := pool.Stats(); st.Size != 0 || st.Ready != 0 {
		t.Errorf("stats right after Resize(0) %+v", st)
	}
	waitFor(t, "every spare torn down", ready(0))
	cold, err := pool.Provider(*ne.provider).Setup(context.Background(), ne.prefix+"-cold")
	if err != nil {
		t.Fatal(err)
	}
	cold.Teardown(context.Background())
	if st := pool.Stats(); st.Cold != 1 || st.Warm != 1 || st.Ready != 0 {
		t.Errorf("stats after a task on the empty pool %+v; want it cold", st)
	}
	if !alive() {
		t.Fatal("Resize(0) tore down the claimed sandbox")
	}

	pool.Resize(2)
	waitFor(t, "the pool refilled", ready(2))
	tn.Teardown(context.Background())
	waitFor(t, "the claim released", func() bool { return pool.Stats().Claimed == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool.Close(ctx)
	if left := privateFiles(t, ne.runner.StateDir); len(left) > 0 {
		t.Errorf("private files left: %q", left)
	}
}

// TestPoolCloseWhileStarting: Close while a spare is being started, its
// task network still being created by an engine that finishes what it was
// asked even when its client is killed (the shim runs the real `network
// create` out of the client's reach, 2 s late). Close leaves nothing
// behind, however long after, and no spare reaches the ready list.
func TestPoolCloseWhileStarting(t *testing.T) {
	ne := newNetEnv(t)
	const delay = 2 * time.Second
	rt := shimRuntime(t, ne.env, testkit.Fault{Match: "network create --internal", Delay: delay, Detach: true})
	runner := sandbox.NewRunner(rt, ne.prefix)
	runner.StateDir = t.TempDir()
	tmpl := *ne.provider
	tmpl.Runner = runner
	pool := sandbox.NewPool(tmpl, 1)
	waitFor(t, "a spare starting", func() bool { return pool.Stats().Starting == 1 })
	time.Sleep(300 * time.Millisecond) // in the network's creation
	start := time.Now()
	pool.Close(context.Background())
	if st := pool.Stats(); st.Ready != 0 || st.Starting != 0 || st.Claimed != 0 {
		t.Errorf("stats after Close: %+v", st)
	}
	// Whatever the engine was still doing for the spare is done by now.
	time.Sleep(time.Until(start.Add(delay + time.Second)))
	ne.assertNoLeftovers(t)
	if left := privateFiles(t, runner.StateDir); len(left) > 0 {
		t.Errorf("private files left: %q", left)
	}
}

// TestPoolLateClaimFails: a spare handed out before its allowlist (the
// gateway's early start) whose claim then fails (the allowlist could not
// be read, or the proxy refuses it) runs nothing: the result is
// ErrNotReady, the spare is torn down with the run, and the pool makes a
// new one.
func TestPoolLateClaimFails(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pending func(context.Context) ([]byte, error)
		want    string
	}{
		{"unread", func(context.Context) ([]byte, error) {
			return nil, errors.New(".airut/network-allowlist.yaml: unreadable")
		}, "unreadable"},
		{"refused", func(context.Context) ([]byte, error) {
			return []byte("domains: [\"*\"]\nbogus: {\n"), nil
		}, "proxy exited before it was ready"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ne := newNetEnv(t)
			pool := newReadyPool(t, *ne.provider, 1)
			late := *ne.provider
			late.Allowlist, late.Pending = nil, tc.pending
			ws := t.TempDir()
			res, out, _ := ne.run(t, sandbox.Spec{Network: sandbox.NetworkSandboxed, Provider: pool.Provider(late),
				Mounts:  []sandbox.Mount{{Source: ws, Target: "/workspace"}},
				Command: []string{"sh", "-c", "touch /workspace/ran; tkhttp https://api.example.test/echo/late"}})
			if res.Outcome != sandbox.OutcomeInfrastructure || !errors.Is(res.Err, sandbox.ErrNotReady) ||
				!strings.Contains(res.Reason, tc.want) {
				t.Fatalf("result %s %q (%v); want infrastructure, ErrNotReady, %q", res.Outcome, res.Reason, res.Err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(ws, "ran")); err == nil || len(out) > 0 {
				t.Fatalf("the command ran although its claim failed: %q", out)
			}
			waitFor(t, "the spare torn down and a new one ready", func() bool {
				st := pool.Stats()
				return st.Claimed == 0 && st.Ready == 1 && st.Warm == 1
			})
		})
	}
}
