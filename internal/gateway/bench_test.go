package gateway_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/airut/airut/internal/sandbox"
	"github.com/airut/airut/internal/secrets"
	"github.com/airut/airut/internal/testkit"
)

// pollFast waits for cond with a fine grain, for latency measurements.
func pollFast(b *testing.B, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkMessageToAgentStart measures from the append of a new message
// to the IMAP inbox until Claude Code (fakeclaude) writes its first
// stream-json line inside the sandbox: IMAP IDLE wake-up, authentication,
// conversation and workspace clone, acknowledgement, repo config from the
// mirror, cached image, proxy network, container start.
func BenchmarkMessageToAgentStart(b *testing.B) {
	h := newHarness(b)
	h.start(harnessOpts{maxConcurrent: 1})
	mails := 0
	one := func(i int) time.Duration { return messageToAgentStart(b, h, fmt.Sprintf("bench %d", i), &mails) }
	one(-1) // builds the images
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		total += one(i)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/agent-start")
}

// messageToAgentStart appends one message to the inbox and returns the
// time until its task's first event; it then waits for the task's
// acknowledgement and reply (mails counts the mails sent so far).
func messageToAgentStart(b *testing.B, h *harness, subject string, mails *int) time.Duration {
	b.Helper()
	start := time.Now()
	h.send(outMail{Subject: subject, Body: "@@reply ok"})
	var conv string
	pollFast(b, "the task", func() bool {
		for _, ti := range h.gw.Tasks() {
			if ti.Subject == subject {
				conv = ti.Conversation
				return true
			}
		}
		return false
	})
	events := filepath.Join(h.convDir(conv), "events.jsonl")
	pollFast(b, "the first event", func() bool {
		st, err := os.Stat(events)
		return err == nil && st.Size() > 0
	})
	d := time.Since(start)
	*mails += 2
	h.waitMail(*mails)
	return d
}

// BenchmarkBareSandboxStart is the floor for the benchmark above: the same
// image and the same network sandbox, started directly with the sandbox
// package, until the agent's first output line.
func BenchmarkBareSandboxStart(b *testing.B) {
	h := newHarness(b)
	rt, err := sandbox.NewRuntime(h.engine, nil)
	if err != nil {
		b.Fatal(err)
	}
	runner := sandbox.NewRunner(rt, h.prefix)
	runner.StateDir = b.TempDir()
	cache := sandbox.NewImageCache(rt, h.prefix)
	ctx := context.Background()
	image, release, err := cache.Ensure(ctx, fstest.MapFS{"Dockerfile": {Data: []byte(testkit.DefaultDockerfile(h.base))}})
	if err != nil {
		b.Fatal(err)
	}
	defer release()
	proxyImage, releaseProxy, err := cache.EnsureProxy(ctx, filepath.Join(h.bins, "airut-proxy"))
	if err != nil {
		b.Fatal(err)
	}
	defer releaseProxy()
	smap, err := secrets.NewMap(nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	provider := &sandbox.ProxyNetwork{Runner: runner, ProxyImage: proxyImage, Allowlist: []byte(testAllowlist), Secrets: smap}
	one := func() time.Duration {
		var once sync.Once
		first := make(chan time.Duration, 1)
		start := time.Now()
		res := runner.Run(ctx, sandbox.Spec{
			Context: "bench", Image: image, Network: sandbox.NetworkSandboxed, Provider: provider,
			Command: []string{"fakeclaude", "-p", "--output-format", "stream-json", "--verbose"},
			Stdin:   strings.NewReader("@@reply ok"),
			Stdout:  func([]byte) { once.Do(func() { first <- time.Since(start) }) },
		})
		if res.Outcome != sandbox.OutcomeSuccess {
			b.Fatalf("run: %s %s", res.Outcome, res.Reason)
		}
		return <-first
	}
	one()
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		total += one()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/agent-start")
}
