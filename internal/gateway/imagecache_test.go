package gateway_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImageRemovedBehindCache: the gateway hands a known task image out
// without asking the engine; when something else removed it, the task's
// container fails to start for want of it, and the gateway rebuilds it and
// starts the task again: the sender gets an answer, not an error.
func TestImageRemovedBehindCache(t *testing.T) {
	h := newHarness(t)
	h.start(harnessOpts{})
	h.send(outMail{Subject: "first", Body: "@@reply one"})
	if reply := h.waitMail(2); !strings.Contains(reply.Text, "one") {
		t.Fatalf("first reply %q", reply.Text)
	}
	image := taskImage(t, h)
	if out, err := exec.Command(h.engine, "rmi", "-f", image).CombinedOutput(); err != nil {
		t.Fatalf("rmi %s: %v %s", image, err, out)
	}
	h.send(outMail{Subject: "second", Body: "@@reply two"})
	if reply := h.waitMail(4); !strings.Contains(reply.Text, "two") {
		t.Fatalf("second reply %q", reply.Text)
	}
	if !strings.Contains(h.logs.String(), "the task image was removed outside Airut") {
		t.Errorf("the second task did not find the image missing (was it inspected after all?)")
	}
	h.stop()
	h.assertNoLeftovers()
}
