package sandbox_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/airut/airut/internal/sandbox"
	"github.com/airut/airut/internal/testkit"
)

// TestMain runs the pool of TestPoolCrashSweep's child process when the
// test binary is started as that child.
func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		crashChild()
		return
	}
	os.Exit(m.Run())
}

const crashChildEnv = "AIRUT_TEST_POOL_CHILD"

// crashChild keeps a pool of three spares on the engine and prefix it is
// given and says READY once two are ready and the third is being started;
// then it waits to be killed.
func crashChild() {
	fail := func(err error) { fmt.Fprintln(os.Stderr, "child:", err); os.Exit(2) }
	rt, err := sandbox.NewRuntime(os.Getenv(crashChildEnv+"_ENGINE"), nil)
	if err != nil {
		fail(err)
	}
	runner := sandbox.NewRunner(rt, os.Getenv(crashChildEnv+"_PREFIX"))
	runner.StateDir = os.Getenv(crashChildEnv + "_STATE")
	pool := sandbox.NewPool(sandbox.ProxyNetwork{Runner: runner, ProxyImage: os.Getenv(crashChildEnv + "_IMAGE")}, 3)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if st := pool.Stats(); st.Ready == 2 && st.Starting == 1 {
			break
		}
		if time.Now().After(deadline) {
			fail(fmt.Errorf("spares not ready: %+v", pool.Stats()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("READY")
	time.Sleep(time.Hour)
}

// TestPoolCrashSweep: a process whose pool has ready spares is SIGKILLed
// (the process alone, not its group, as an OOM kill or `kill -9 PID`
// does) while a third spare's task network is being created. The ready
// spares stay behind (their proxies run on under the engine), and the
// next start's sweep removes every one of them: proxy containers, task
// networks, private directories. The engine client that was creating the
// third network dies with the process (Pdeathsig): without that it went on
// and created the network after the sweep, owned by a dead process and
// removed by nobody until the next restart.
func TestPoolCrashSweep(t *testing.T) {
	ne := newNetEnv(t)
	const delay = 3 * time.Second
	shim := testkit.EngineShim(t, ne.engine, testkit.Fault{Match: "network create --internal", Delay: delay})
	state := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"=1", crashChildEnv+"_ENGINE="+shim, crashChildEnv+"_PREFIX="+ne.prefix,
		crashChildEnv+"_STATE="+state, crashChildEnv+"_IMAGE="+ne.provider.ProxyImage)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- strings.TrimSpace(line)
	}()
	select {
	case line := <-ready:
		if line != "READY" {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("child said %q", line)
		}
	case <-time.After(3 * time.Minute):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal("child's spares never ready")
	}
	time.Sleep(500 * time.Millisecond) // well inside the third network's creation
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // reaped: its owner token is dead

	// Its two ready spares are left: their holders (detached) at least;
	// their proxies too under rootful Podman, while rootless Podman stops
	// an attached container whose client was killed.
	if got := spareContainers(t, ne.env, "net"); len(got) != 2 {
		t.Errorf("spare network holders left by the killed process %q; want its two ready ones", got)
	}
	if left := privateFiles(t, state); len(left) != 3 {
		t.Errorf("private directories left by the killed process %q; want three", left)
	}

	runner := sandbox.NewRunner(ne.runner.Runtime(), ne.prefix)
	runner.StateDir = state
	removed, err := runner.Sweep(context.Background())
	if err != nil {
		t.Fatalf("sweep: %v", err)
	}
	t.Logf("swept %q", removed)
	// Whatever the killed process's engine clients were still doing
	// would have been done by now.
	time.Sleep(delay + time.Second)
	if left := testkit.Leftovers(ne.engine, ne.prefix); len(left) > 0 {
		t.Errorf("left after the sweep: %s", strings.Join(left, ", "))
	}
	if left := privateFiles(t, state); len(left) > 0 {
		t.Errorf("private directories left after the sweep: %q", left)
	}
	if runner.NeedsSweep() {
		t.Error("the dead run's marker is still there after the sweep")
	}
}
