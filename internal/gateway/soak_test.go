package gateway_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airut/airut/internal/agent"
	"github.com/airut/airut/internal/gateway"
)

// BenchmarkSoak sends 200 messages over 20 conversations through the real
// gateway (real IMAP and SMTP on loopback, real Podman, the network
// sandbox, fakeclaude) with max_concurrent 3: 20 new threads, then nine
// follow-ups to each, sent while the threads are busy so that they
// coalesce. It checks that every message was answered exactly once (each
// ran in one task, coalesced or not; one reply per task; one
// acknowledgement per thread; the inbox empty), that nothing is left
// behind (containers, networks, journal, spool), and reports the peak RSS
// and goroutines of the test process, which holds the gateway and the
// mail servers. Run it alone, once: make bench does
// (-bench BenchmarkSoak -benchtime 1x). The follow-ups are sent grouped by
// thread, since the email channel hands over a bounded window of messages
// at a time and coalescing happens within it.
func BenchmarkSoak(b *testing.B) {
	const threads, followUps, maxConcurrent = 20, 9, 3
	h := newHarness(b)
	h.start(harnessOpts{maxConcurrent: maxConcurrent})
	// Warm: the images exist before the clock starts.
	h.send(outMail{Subject: "warm", Body: "@@reply warm"})
	h.waitMail(2)
	h.waitInboxEmpty()
	base := len(h.smtp.Messages())

	var peakG int
	var mu sync.Mutex
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			n := runtime.NumGoroutine()
			mu.Lock()
			peakG = max(peakG, n)
			mu.Unlock()
			select {
			case <-stopSampling:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	b.ResetTimer()
	start := time.Now()

	for i := 0; i < threads; i++ {
		h.send(outMail{Subject: fmt.Sprintf("soak %02d", i), MessageID: fmt.Sprintf("<soak-%02d@example.com>", i),
			Body: fmt.Sprintf("@@sleep 1\n@@reply thread %02d first", i)})
	}
	acks := map[string]sentMail{} // subject → ack
	waitFor(b, "an acknowledgement per thread", func() bool {
		for _, m := range h.smtp.Messages()[base:] {
			s := parseMail(b, m.Data)
			if strings.Contains(s.Text, "working on") {
				acks[s.Subject] = s
			}
		}
		return len(acks) == threads
	})
	var subjects []string
	for s := range acks {
		subjects = append(subjects, s)
	}
	// Grouped by thread: the email channel hands over at most 20
	// messages at a time (its in-flight limit), so follow-ups coalesce
	// within that window.
	for _, s := range subjects {
		for k := 1; k <= followUps; k++ {
			a := acks[s]
			h.send(outMail{Subject: "Re: " + s, InReplyTo: a.MessageID,
				Body: fmt.Sprintf("@@reply %s follow-up %d", convID(s), k)})
		}
	}
	total := threads * (1 + followUps)
	waitLong(b, "every task to finish", func() bool {
		n, open := 0, 0
		for _, ti := range h.gw.Tasks() {
			if ti.Subject == "warm" {
				continue
			}
			n++
			if ti.State != gateway.StateDone && ti.State != gateway.StateCoalesced {
				open++
			}
		}
		return n == total && open == 0
	})
	h.waitInboxEmpty()
	elapsed := time.Since(start)
	b.StopTimer()
	close(stopSampling)
	<-sampled

	var ran, coalesced int
	perConv := map[string]int{}
	for _, ti := range h.gw.Tasks() {
		if ti.Subject == "warm" {
			continue
		}
		switch ti.State {
		case gateway.StateDone:
			ran++
			perConv[ti.Conversation]++
			if ti.Outcome != agent.OutcomeSuccess || ti.ReplyError != "" {
				b.Errorf("task %s (%s): %s %q", ti.ID, ti.Subject, ti.Outcome, ti.ReplyError)
			}
		case gateway.StateCoalesced:
			coalesced++
		}
	}
	replies := 0
	repliesPerConv := map[string]int{}
	for _, m := range h.smtp.Messages()[base:] {
		s := parseMail(b, m.Data)
		if !strings.Contains(s.Text, "working on") {
			replies++
			repliesPerConv[convID(s.Subject)]++
		}
	}
	if replies != ran {
		b.Errorf("replies: %d; want one per task that ran (%d)", replies, ran)
	}
	for conv, n := range perConv {
		if repliesPerConv[conv] != n {
			b.Errorf("conversation %s: %d replies for %d tasks", conv, repliesPerConv[conv], n)
		}
	}
	if len(perConv) != threads {
		b.Errorf("conversations with tasks: %d; want %d", len(perConv), threads)
	}
	if coalesced == 0 {
		b.Errorf("no message was coalesced; the follow-ups were sent to busy threads")
	}
	for _, dir := range []string{"messages", "spool"} {
		if left, _ := os.ReadDir(filepath.Join(h.state, "app", dir)); len(left) != 0 {
			b.Errorf("%s left behind: %d entries", dir, len(left))
		}
	}
	rss := vmHWM(b)
	mu.Lock()
	g := peakG
	mu.Unlock()
	b.ReportMetric(float64(total), "messages")
	b.ReportMetric(float64(ran), "tasks")
	b.ReportMetric(float64(coalesced), "coalesced")
	b.ReportMetric(elapsed.Seconds(), "s/soak")
	b.ReportMetric(float64(rss>>20), "MiB-peak-RSS")
	b.ReportMetric(float64(g), "peak-goroutines")
	b.Logf("soak: %d messages in %d conversations → %d tasks (%d coalesced) in %s; peak RSS %d MiB, peak goroutines %d",
		total, threads, ran, coalesced, elapsed.Round(time.Millisecond), rss>>20, g)
}

// waitLong is waitFor with room for a few hundred tasks on a busy host.
func waitLong(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// vmHWM is the process's peak resident set size.
func vmHWM(t testing.TB) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
	return 0
}
