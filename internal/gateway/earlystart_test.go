package gateway_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airut/airut/internal/testkit"
)

// TestEarlyStartFollowsTheRepo: from the second task on, a task's
// container starts on the last task's image and a spare workspace while
// the mirror is fetched. A push between two tasks that changes the image
// and the code must still give the next task the new image and the new
// commit: the early start is dropped, and the spare workspace cloned
// again. Without a change, the next task starts early and sees the same.
func TestEarlyStartFollowsTheRepo(t *testing.T) {
	h := newHarness(t)
	h.start(harnessOpts{})
	probe := "@@run cat /image-mark; cat /workspace/NOTE.md\n@@reply done"
	mails := 0
	task := func(subject string) string {
		t.Helper()
		h.send(outMail{Subject: subject, Body: probe})
		mails += 2
		if reply := h.waitMail(mails); !strings.Contains(reply.Text, "done") {
			t.Fatalf("%s: reply %q", subject, reply.Text)
		}
		data, err := os.ReadFile(filepath.Join(h.convDir(h.taskOf(subject).Conversation), "events.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	notUsed := func() int { return strings.Count(h.logs.String(), "the task's early start was not used") }

	// The first task has no image to start early on.
	h.commit(map[string]string{
		".airut/container/Dockerfile": testkit.DefaultDockerfile(h.base) + "RUN echo image-v1 > /image-mark\n",
		"NOTE.md":                     "code-v1\n"})
	if ev := task("first"); !strings.Contains(ev, "image-v1") || !strings.Contains(ev, "code-v1") {
		t.Fatalf("first task saw %q; want image-v1 and code-v1", ev)
	}

	h.commit(map[string]string{
		".airut/container/Dockerfile": testkit.DefaultDockerfile(h.base) + "RUN echo image-v2 > /image-mark\n",
		"NOTE.md":                     "code-v2\n"})
	if ev := task("second"); !strings.Contains(ev, "image-v2") || !strings.Contains(ev, "code-v2") {
		t.Errorf("second task saw %q; want the pushed image-v2 and code-v2", ev)
	}
	if n := notUsed(); n != 1 {
		t.Errorf("early starts dropped: %d; want the second task's (its image changed)", n)
	}

	h.commit(map[string]string{"NOTE.md": "code-v3\n"})
	if ev := task("third"); !strings.Contains(ev, "image-v2") || !strings.Contains(ev, "code-v3") {
		t.Errorf("third task saw %q; want image-v2 and the pushed code-v3", ev)
	}
	if ev := task("fourth"); !strings.Contains(ev, "image-v2") || !strings.Contains(ev, "code-v3") {
		t.Errorf("fourth task saw %q; want image-v2 and code-v3", ev)
	}
	if n := notUsed(); n != 1 {
		t.Errorf("early starts dropped: %d; want only the second task's (the image stayed from then on)", n)
	}
	h.stop()
	h.assertNoLeftovers()
}
