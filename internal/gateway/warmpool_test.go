package gateway_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/conversation"
)

// TestWarmPoolServesTasks: the gateway keeps max_concurrent spares ready;
// a task claims one (its allowlist enforced, its network log in its own
// conversation), the pool refills, and shutdown drains it leaving nothing.
func TestWarmPoolServesTasks(t *testing.T) {
	h := newHarness(t)
	h.start(harnessOpts{maxConcurrent: 2})
	// The pool starts once the proxy image is built, which on a loaded
	// host can take most of waitTimeout by itself.
	waitFor(t, "the warm pool", func() bool { _, ok := h.gw.WarmPool(); return ok })
	waitFor(t, "two warm spares", func() bool { st, ok := h.gw.WarmPool(); return ok && st.Ready == 2 })

	h.send(outMail{Subject: "warm task", Body: "@@run tkhttp https://blocked.example.test/warm || true\n@@reply done warm\n"})
	reply := h.waitMail(2)
	if !strings.Contains(reply.Text, "done warm") {
		t.Fatalf("reply %q", reply.Text)
	}
	st, _ := h.gw.WarmPool()
	if st.Warm != 1 || st.Cold != 0 {
		t.Errorf("pool stats %+v; want the task on a warm spare", st)
	}
	conv := h.taskOf("warm task").Conversation
	log, err := os.ReadFile(filepath.Join(h.convDir(conv), conversation.NetworkLogFile))
	if err != nil || !strings.Contains(string(log), "BLOCKED GET https://blocked.example.test/warm") {
		t.Errorf("the claimed proxy's log did not reach the task's network log: %v %q", err, log)
	}
	waitFor(t, "the pool refilled", func() bool {
		st, ok := h.gw.WarmPool()
		return ok && st.Ready == 2 && st.Claimed == 0
	})
	h.stop()
	if st, ok := h.gw.WarmPool(); ok {
		t.Errorf("pool still up after shutdown: %+v", st)
	}
	h.assertNoLeftovers()
}

// TestWarmPoolFollowsReload: the pool follows hot reloads of airut.yaml:
// max_concurrent up grows it, warm_sandboxes down shrinks it (surplus
// spares torn down), 0 stops it (a task then starts cold and is served),
// a size above 0 starts it again, and SetMaxConcurrent resizes it too.
// Shutdown leaves nothing.
func TestWarmPoolFollowsReload(t *testing.T) {
	h := newHarness(t)
	yaml := func(maxConcurrent int, warm string) []byte {
		y := string(h.configYAML(harnessOpts{maxConcurrent: maxConcurrent}, []tmplRepo{{ID: "app", Host: "127.0.0.1"}}))
		if warm != "" {
			line := fmt.Sprintf("  max_concurrent: %d\n", maxConcurrent)
			if !strings.Contains(y, line) {
				t.Fatalf("no %q in the config template", line)
			}
			y = strings.Replace(y, line, line+"  warm_sandboxes: "+warm+"\n", 1)
		}
		return []byte(y)
	}
	dir, _ := h.startWatched(yaml(1, ""), "", h.env())
	path := filepath.Join(dir, config.FileName)
	spares := func() int {
		// One proxy per spare (each also has its network's holder, -net).
		out, err := exec.Command(h.engine, "ps", "--filter", "name=^"+h.prefix+"-spare-.*-proxy$", "--format", "{{.Names}}").Output()
		if err != nil {
			t.Fatalf("ps: %v", err)
		}
		return len(strings.Fields(string(out)))
	}
	pool := func(size int) func() bool {
		return func() bool {
			st, ok := h.gw.WarmPool()
			return ok && st.Size == size && st.Ready == size && st.Starting == 0 && spares() == size
		}
	}
	waitFor(t, "one warm spare", pool(1))

	saveRenamed(t, path, yaml(3, ""))
	waitFor(t, "the pool grown to max_concurrent 3", pool(3))

	saveRenamed(t, path, yaml(3, "1"))
	waitFor(t, "the pool shrunk to warm_sandboxes 1", pool(1))

	saveRenamed(t, path, yaml(3, "0"))
	waitFor(t, "the pool stopped", func() bool { _, ok := h.gw.WarmPool(); return !ok && spares() == 0 })
	h.send(outMail{Subject: "cold task", Body: "@@reply done cold\n"})
	if reply := h.waitMail(2); !strings.Contains(reply.Text, "done cold") {
		t.Fatalf("reply %q", reply.Text)
	}
	if spares() != 0 {
		t.Error("a spare was made while warm_sandboxes is 0")
	}

	saveRenamed(t, path, yaml(3, "2"))
	waitFor(t, "the pool started again", pool(2))

	h.gw.SetMaxConcurrent(1)
	waitFor(t, "the pool shrunk with SetMaxConcurrent", pool(1))

	h.stop()
	if st, ok := h.gw.WarmPool(); ok {
		t.Errorf("pool still up after shutdown: %+v", st)
	}
	h.assertNoLeftovers()
}
