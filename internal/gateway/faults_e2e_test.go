package gateway_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/airut/airut/internal/agent"
	"github.com/airut/airut/internal/gateway"
)

// mailsAbout counts the sent mails whose text contains s.
func (h *harness) mailsAbout(s string) int {
	n := 0
	for _, m := range h.smtp.Messages() {
		if strings.Contains(parseMail(h.t, m.Data).Text, s) {
			n++
		}
	}
	return n
}

func convID(subject string) string {
	i := strings.Index(subject, "[ID:")
	if i < 0 {
		return ""
	}
	return subject[i+4 : i+12]
}

// TestSMTPFaults, against the real SMTP client and server: a reply the
// server refuses with a 5xx is recorded on the task, not retried, and
// does not block the conversation (its next message is answered, 2xx); a
// 4xx is retried until it goes through. Every message is answered exactly
// once and deleted from the inbox.
func TestSMTPFaults(t *testing.T) {
	h := newHarness(t)
	h.start(harnessOpts{})

	h.send(outMail{Subject: "refused", MessageID: "<refused@example.com>", Body: blockScript("refused reply")})
	ack := h.waitMail(1)
	conv := convID(ack.Subject)
	h.waitStarted(conv)
	h.smtp.FailNextWith(1, 554)
	h.release(conv)
	refused := h.taskOf("refused")
	waitFor(t, "the refusal to be recorded", func() bool {
		ti, _ := h.gw.Task(refused.ID)
		return ti.State == gateway.StateDone
	})
	if ti, _ := h.gw.Task(refused.ID); !ti.ReplyFailed || !strings.Contains(ti.ReplyError, "554") {
		t.Errorf("refused task: ReplyFailed %v, ReplyError %q; want the 554 recorded", ti.ReplyFailed, ti.ReplyError)
	}
	h.waitInboxEmpty()
	if h.smtp.Rejected() != 1 {
		t.Errorf("DATA refusals: %d; want 1 (a 5xx is not retried)", h.smtp.Rejected())
	}

	// The conversation goes on: the next message is answered (2xx).
	h.send(outMail{Subject: "Re: " + ack.Subject, InReplyTo: ack.MessageID, Body: "@@reply after the refusal"})
	h.waitMail(2)
	h.waitInboxEmpty()

	// A 4xx: retried, then sent.
	h.send(outMail{Subject: "later", Body: blockScript("sent after 451s")})
	ack2 := h.waitMail(3)
	h.waitStarted(convID(ack2.Subject))
	h.smtp.FailNext(2)
	h.release(convID(ack2.Subject))
	h.waitMail(4)
	h.waitInboxEmpty()
	if h.smtp.Rejected() != 3 {
		t.Errorf("DATA refusals: %d; want 3", h.smtp.Rejected())
	}
	for text, want := range map[string]int{"refused reply": 0, "after the refusal": 1, "sent after 451s": 1, "working on": 2} {
		if n := h.mailsAbout(text); n != want {
			t.Errorf("mails with %q: %d; want %d", text, n, want)
		}
	}
}

// TestRedeliveredEmail: the same message appended to the inbox twice (two
// UIDs, as a server-side move or a re-delivery makes) runs once, in one
// conversation, gets one acknowledgement and one reply, and both copies
// are deleted.
func TestRedeliveredEmail(t *testing.T) {
	h := newHarness(t)
	h.start(harnessOpts{})
	m := outMail{Subject: "twice", MessageID: "<twice@example.com>", Body: "@@reply answered once"}
	raw := m.raw()
	h.imap.Append(t, raw)
	h.imap.Append(t, raw)
	h.waitMail(2)
	h.waitInboxEmpty()
	time.Sleep(time.Second) // a second reply would have been sent by now
	if n := len(h.smtp.Messages()); n != 2 {
		t.Errorf("mails: %d; want an acknowledgement and one reply", n)
	}
	if n := len(h.gw.Tasks()); n != 1 {
		t.Errorf("tasks: %d; want 1", n)
	}
	convs, _ := os.ReadDir(filepath.Join(h.state, "app", "conversations"))
	if len(convs) != 1 {
		t.Errorf("conversations: %d; want 1", len(convs))
	}
}

// TestEngineKilledMidTask: the container engine process of a running task
// dies (SIGKILL of its `podman run`). The task ends with one reply saying
// it did not finish, its container and network are removed, and the
// gateway goes on answering. (The sandbox cannot tell a killed engine
// client from a killed container: both end with status 137.)
func TestEngineKilledMidTask(t *testing.T) {
	h := newHarness(t)
	h.start(harnessOpts{})
	h.send(outMail{Subject: "doomed", Body: blockScript("never")})
	conv := convID(h.waitMail(1).Subject)
	h.waitStarted(conv)
	out, err := exec.Command("pgrep", "-f", "run .*--name "+h.prefix+"-"+conv+"-").Output()
	pids := strings.Fields(string(out))
	if err != nil || len(pids) == 0 {
		t.Fatalf("no podman run process for %s: %v", conv, err)
	}
	for _, p := range pids {
		pid, _ := strconv.Atoi(p)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	r := h.waitMail(2)
	if !strings.Contains(r.Text, "before finishing") && !strings.Contains(r.Text, "not with the agent") {
		t.Errorf("reply: %q; want it to say the task did not finish", r.Text)
	}
	if ti := h.taskOf("doomed"); ti.Outcome == agent.OutcomeSuccess || ti.Outcome == "" {
		t.Errorf("outcome: %q; want a failure", ti.Outcome)
	}
	h.waitInboxEmpty()
	h.send(outMail{Subject: "after", Body: "@@reply still alive"})
	if m := h.waitMail(4); !strings.Contains(m.Text, "still alive") {
		t.Errorf("mail after the kill: %q", m.Text)
	}
	h.waitInboxEmpty()
}

// TestWaitingMessageWithImagePrune: a message already in the inbox when
// the gateway starts with image_prune on is answered: the start-up prune
// does not remove the images its task resolved (which would make Podman
// try to pull them from a registry).
func TestWaitingMessageWithImagePrune(t *testing.T) {
	h := newHarness(t)
	h.start(harnessOpts{imagePrune: true})
	h.send(outMail{Subject: "build", Body: "@@reply images built"})
	h.waitMail(2)
	h.waitInboxEmpty()
	h.stop()

	for i := 0; i < 3; i++ {
		h.send(outMail{Subject: "waiting " + strconv.Itoa(i), Body: "@@reply answered after the restart"})
	}
	h.start(harnessOpts{imagePrune: true})
	waitFor(t, "three more tasks to finish", func() bool {
		n := 0
		for _, ti := range h.gw.Tasks() {
			if ti.State == gateway.StateDone {
				n++
			}
		}
		return n == 3
	})
	h.waitInboxEmpty()
	if n := len(h.smtp.Messages()); n != 2+3+3 {
		t.Errorf("mails: %d; want an acknowledgement and a reply for each message, once", n)
	}
	for _, ti := range h.gw.Tasks() {
		switch {
		case ti.Outcome == agent.OutcomeSuccess:
		case ti.Outcome == agent.OutcomeInfrastructure && strings.Contains(ti.Reason, "layer not known"):
			// Podman's build cache stumbling over layers that another
			// process on this shared store removed: not a pruned image.
			t.Logf("task %s: %s", ti.Subject, ti.Reason)
		default:
			t.Errorf("task %s: %s (%s); want success", ti.Subject, ti.Outcome, ti.Reason)
		}
	}
	if strings.Contains(h.logs.String(), "registry") {
		t.Errorf("the engine tried to reach a registry:\n%s", h.logs.String())
	}
}

// TestLargeOutboxFile: a 50 MiB file in the outbox does not go by email;
// the reply carries the files that fit, names the one left, and the file
// stays in the outbox.
func TestLargeOutboxFile(t *testing.T) {
	h := newHarness(t)
	h.start(harnessOpts{})
	h.send(outMail{Subject: "big", Body: "@@run head -c 52428800 /dev/zero > /outbox/big.bin\n" +
		"@@run echo summary > /outbox/summary.txt\n@@reply here you go"})
	h.waitMail(1)
	r := h.waitMail(2)
	h.waitInboxEmpty()
	if _, ok := r.Attachments["summary.txt"]; !ok || len(r.Attachments) != 1 {
		t.Errorf("attachments: %v; want only summary.txt", keys(r.Attachments))
	}
	if !strings.Contains(r.Text, "big.bin (50.0 MiB)") {
		t.Errorf("reply: %q; want big.bin named as left in the outbox", r.Text)
	}
	conv := convID(r.Subject)
	fi, err := os.Stat(filepath.Join(h.convDir(conv), "outbox", "big.bin"))
	if err != nil || fi.Size() != 50<<20 {
		t.Errorf("big.bin after the reply: %v; want it kept in the outbox", err)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// heapPeak samples the heap until stop is called and returns its peak.
func heapPeak() (stop func() uint64) {
	var mu sync.Mutex
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			mu.Lock()
			peak = max(peak, ms.HeapInuse)
			mu.Unlock()
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak
	}
}

// TestHugeOutputLine: a 10 MB single stream-json line from the agent (one
// tool result) reaches the gateway cut at the sandbox's line limit; the
// gateway's memory stays bounded (the bus carries a stub, not copies), the
// transcript records that a line was cut, and the task still replies.
func TestHugeOutputLine(t *testing.T) {
	h := newHarness(t)
	h.start(harnessOpts{})
	h.send(outMail{Subject: "warm", Body: "@@reply warm"})
	h.waitMail(2)
	sub := h.gw.Events().Subscribe(gateway.Filter{Kinds: []gateway.EventKind{gateway.EventAgent}})
	defer sub.Close()
	var biggest int
	var mu sync.Mutex
	go func() {
		for e := range sub.Events() {
			mu.Lock()
			biggest = max(biggest, len(e.Data))
			mu.Unlock()
		}
	}()

	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	stop := heapPeak()
	h.send(outMail{Subject: "huge", Body: "@@run head -c 10000000 /dev/zero | tr '\\0' a\n@@reply survived"})
	h.waitMail(4)
	peak := stop()
	h.waitInboxEmpty()
	growth := int64(peak) - int64(base.HeapInuse)
	t.Logf("10 MB output line: heap in use %d MiB before, peak %d MiB (%+d MiB)", base.HeapInuse>>20, peak>>20, growth>>20)
	if growth > 256<<20 {
		t.Errorf("heap grew by %d MiB for one 10 MB line; want it bounded", growth>>20)
	}
	mu.Lock()
	if biggest > 1<<20 {
		t.Errorf("largest agent event on the bus: %d bytes; want big lines stubbed", biggest)
	}
	mu.Unlock()
	conv := h.taskOf("huge").Conversation
	events, err := os.ReadFile(filepath.Join(h.convDir(conv), "events.jsonl"))
	if err != nil || !strings.Contains(string(events), `{"type":"airut_truncated","kept_bytes":`) {
		t.Errorf("events.jsonl (%v): want the cut line recorded as airut_truncated", err)
	}
	if ti := h.taskOf("huge"); ti.Outcome != agent.OutcomeSuccess {
		t.Errorf("outcome: %s (%s)", ti.Outcome, ti.Reason)
	}
}
