package gateway_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airut/airut/internal/agent"
	"github.com/airut/airut/internal/gateway"
)

// TestQueueing: conversations run in parallel up to max_concurrent and no
// further; messages to a busy conversation coalesce into exactly one
// follow-up that sees all of them, in order, with their attachments.
func TestQueueing(t *testing.T) {
	h := newHarness(t)
	h.start(harnessOpts{maxConcurrent: 2})

	h.send(outMail{Subject: "A", MessageID: "<a@example.com>", Body: blockScript("A done")})
	a := h.taskOf("A")
	h.waitStarted(a.Conversation)
	h.send(outMail{Subject: "B", Body: blockScript("B done")})
	b := h.taskOf("B")
	h.waitStarted(b.Conversation)
	// Both agents are inside their containers at once: parallel.
	h.send(outMail{Subject: "C", Body: blockScript("C done")})
	c := h.taskOf("C")
	// Two slots, both taken: C waits in the queue after its acknowledgement.
	waitFor(t, "three acknowledgements", func() bool { return len(h.smtp.Messages()) == 3 })
	if ti, _ := h.gw.Task(c.ID); ti.State != gateway.StateQueued || !ti.Started.IsZero() {
		t.Errorf("C with two tasks running: got state %s started %v; want queued", ti.State, ti.Started)
	}
	if _, err := os.Stat(filepath.Join(h.convDir(c.Conversation), "storage", "started")); err == nil {
		t.Errorf("C's agent started while two tasks ran; max_concurrent is 2")
	}

	// Three follow-ups to A while it runs, from two senders, with files.
	stamp := []time.Time{}
	for i := 1; i <= 3; i++ {
		from := "Alice <alice@example.com>"
		if i == 2 {
			from = "Bob <bob@example.com>"
		}
		h.send(outMail{From: from, Subject: "Re: [ID:" + a.Conversation + "] A", InReplyTo: "<a@example.com>",
			Body:        fmt.Sprintf("follow-up %d\n@@write /storage/followup-%d seen\n", i, i),
			Attachments: [][2]string{{"data.txt", fmt.Sprintf("file %d", i)}}})
		stamp = append(stamp, time.Now())
	}
	waitFor(t, "the follow-ups to be queued", func() bool {
		n := 0
		for _, ti := range h.gw.Tasks() {
			if ti.Conversation == a.Conversation && (ti.State == gateway.StatePending || ti.State == gateway.StateCoalesced) {
				n++
			}
		}
		return n == 3
	})
	var pending gateway.TaskInfo
	coalesced := 0
	for _, ti := range h.gw.Tasks() {
		switch {
		case ti.Conversation != a.Conversation:
		case ti.State == gateway.StatePending:
			pending = ti
		case ti.State == gateway.StateCoalesced:
			coalesced++
		}
	}
	for _, ti := range h.gw.Tasks() {
		if ti.State == gateway.StateCoalesced && ti.CoalescedInto != pending.ID {
			t.Errorf("coalesced task %s points at %q; want %q", ti.ID, ti.CoalescedInto, pending.ID)
		}
	}
	if coalesced != 2 || pending.Messages != 3 {
		t.Errorf("follow-ups: got %d coalesced, pending with %d messages; want 2 and 3", coalesced, pending.Messages)
	}

	h.release(a.Conversation)
	h.waitStarted(c.Conversation) // A's slot goes to C, queued first
	h.release(b.Conversation)
	h.release(c.Conversation)
	waitFor(t, "every task to finish", func() bool {
		for _, ti := range h.gw.Tasks() {
			if ti.State != gateway.StateDone && ti.State != gateway.StateCoalesced {
				return false
			}
		}
		return true
	})
	h.waitInboxEmpty()

	// At no moment did more than two tasks run.
	tasks := h.gw.Tasks()
	for _, x := range tasks {
		if x.State != gateway.StateDone {
			continue
		}
		if x.Outcome != agent.OutcomeSuccess {
			t.Errorf("task %s (%s): outcome %s; want success", x.ID, x.Subject, x.Outcome)
		}
		n := 0
		for _, y := range tasks {
			if y.State == gateway.StateDone && !y.Started.After(x.Started) && y.Finished.After(x.Started) {
				n++
			}
		}
		if n > 2 {
			t.Errorf("%d tasks running when %s started; want at most 2", n, x.ID)
		}
	}

	sess := h.sessions(a.Conversation)
	if len(sess) != 1 || len(sess[0].Runs) != 2 {
		t.Fatalf("A's runs: got %v; want one session with exactly 2 runs (one follow-up)", sess)
	}
	prompt := sess[0].Runs[1].Prompt
	last := -1
	for i, sender := range []string{"Alice <alice@example.com>", "Bob <bob@example.com>", "Alice <alice@example.com>"} {
		hdr := "[" + sender + " " + stamp[i].UTC().Format("2006-01-02 ")
		at := strings.Index(prompt[last+1:], hdr)
		body := strings.Index(prompt, fmt.Sprintf("follow-up %d", i+1))
		if at < 0 || body < last+1+at {
			t.Errorf("follow-up %d: header %q then body not found in order in the prompt:\n%s", i+1, hdr, prompt)
			continue
		}
		last = body
		if _, err := os.Stat(filepath.Join(h.convDir(a.Conversation), "storage", fmt.Sprintf("followup-%d", i+1))); err != nil {
			t.Errorf("follow-up %d's script did not run: %v", i+1, err)
		}
	}
	inbox, _ := os.ReadDir(filepath.Join(h.convDir(a.Conversation), "inbox"))
	var names []string
	for _, e := range inbox {
		data, _ := os.ReadFile(filepath.Join(h.convDir(a.Conversation), "inbox", e.Name()))
		names = append(names, e.Name()+"="+string(data))
		if !strings.Contains(prompt, "/inbox/"+e.Name()) {
			t.Errorf("prompt does not name /inbox/%s", e.Name())
		}
	}
	if want := "data-1.txt=file 2,data-2.txt=file 3,data.txt=file 1"; strings.Join(names, ",") != want {
		t.Errorf("inbox: got %v; want %s", names, want)
	}
	// A: ack, reply, one follow-up reply; B and C: ack and reply.
	if n := len(h.smtp.Messages()); n != 7 {
		t.Errorf("mails sent: got %d; want 7", n)
	}
}
