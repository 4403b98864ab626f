package gateway_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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
