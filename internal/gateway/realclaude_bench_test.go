package gateway_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/airut/airut/internal/agent"
	"github.com/airut/airut/internal/sandbox"
	"github.com/airut/airut/internal/secrets"
	"github.com/airut/airut/internal/testkit"
	"github.com/airut/airut/internal/testkit/fakeapi"
)

// BenchmarkRealClaudeFirstRequest measures, with the real CLI, from a new
// message in the IMAP inbox until the fake Messages API sees the agent's
// first /v1/messages request (IDLE wake-up, authentication, conversation
// and clone, acknowledgement, repo config, cached image, proxy network,
// container start, the CLI's own start-up and its settings lookups), and,
// interleaved in the same run, the bare sandbox start: the same image,
// network sandbox, credential and command started directly with the
// sandbox package, until the same first request. The difference is what
// the gateway adds.
func BenchmarkRealClaudeFirstRequest(b *testing.B) {
	h := newRealHarness(b, realOpts{maxConcurrent: 1})
	first := make(chan time.Time, 16)
	h.api.API.OnMessages(func(fakeapi.Request) {
		select {
		case first <- time.Now():
		default:
		}
	})
	drain := func() {
		for {
			select {
			case <-first:
			default:
				return
			}
		}
	}
	await := func(what string) time.Time {
		select {
		case ts := <-first:
			return ts
		case <-time.After(waitTimeout):
			b.Fatalf("no API request for %s", what)
			return time.Time{}
		}
	}

	mails := 0
	viaGateway := func(i int) time.Duration {
		drain()
		start := time.Now()
		h.send(outMail{Subject: fmt.Sprintf("bench %d", i), Body: "@@reply ok"})
		d := await("the gateway's task").Sub(start)
		mails += 2 // the acknowledgement and the reply
		h.waitMail(mails)
		return d
	}

	bare := newBareClaude(b, h)
	bareStart := func() time.Duration {
		drain()
		start := time.Now()
		done := make(chan sandbox.Result, 1)
		go func() { done <- bare.run(context.Background()) }()
		d := await("the bare sandbox").Sub(start)
		if res := <-done; res.Outcome != sandbox.OutcomeSuccess {
			b.Fatalf("bare run: %s %s", res.Outcome, res.Reason)
		}
		return d
	}

	viaGateway(-1) // builds the images, installs nothing: the CLI is cached
	bareStart()
	var gw, sbx time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		gw += viaGateway(i)
		sbx += bareStart()
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(gw.Milliseconds())/n, "gateway-ms/first-request")
	b.ReportMetric(float64(sbx.Milliseconds())/n, "bare-ms/first-request")
	b.ReportMetric(float64(gw-sbx)/n/1e6, "added-ms")
	b.ReportMetric(float64(gw)/float64(sbx), "ratio")
}

// bareClaude runs the real CLI straight through the sandbox package, as
// the gateway would, minus the gateway.
type bareClaude struct {
	runner   *sandbox.Runner
	image    string
	provider *sandbox.ProxyNetwork
	env      map[string]string
	mounts   []sandbox.Mount
}

func newBareClaude(b *testing.B, h *realHarness) *bareClaude {
	b.Helper()
	rt, err := sandbox.NewRuntime(h.engine, nil)
	if err != nil {
		b.Fatal(err)
	}
	runner := sandbox.NewRunner(rt, h.prefix)
	runner.StateDir = b.TempDir()
	cache := sandbox.NewImageCache(rt, h.prefix)
	ctx := context.Background()
	img := testkit.ClaudeImage(b, h.engine, h.claude)
	image, release, err := cache.Ensure(ctx, fstest.MapFS{"Dockerfile": {Data: []byte("FROM " + img + "\n")}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(release)
	proxyImage, releaseProxy, err := cache.EnsureProxy(ctx, filepath.Join(h.bins, "airut-proxy"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(releaseProxy)
	smap, err := secrets.NewMap(map[string]secrets.Masked{"ANTHROPIC_API_KEY": {
		Value: h.real, Scopes: []string{testkit.AnthropicHost}, Headers: []string{"x-api-key"}}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	caPEM, err := os.ReadFile(h.caFile)
	if err != nil {
		b.Fatal(err)
	}
	env := agent.Env()
	for k, v := range smap.Env() {
		env[k] = v
	}
	ws, state := filepath.Join(dir, "workspace"), filepath.Join(dir, "claude")
	for _, d := range []string{ws, state} {
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	return &bareClaude{
		runner: runner, image: image, env: env,
		provider: &sandbox.ProxyNetwork{Runner: runner, ProxyImage: proxyImage, Allowlist: []byte(recommendedAllowlist(b)),
			Secrets: smap, Resolve: map[string]string{testkit.AnthropicHost: h.api.Addr}, UpstreamCA: caPEM},
		mounts: []sandbox.Mount{
			{Source: ws, Target: "/workspace"},
			{Source: state, Target: agent.ConfigDir},
			{Source: h.claude, Target: agent.BinaryPath, ReadOnly: true},
		},
	}
}

func (c *bareClaude) run(ctx context.Context) sandbox.Result {
	return c.runner.Run(ctx, sandbox.Spec{
		Context: "bench", Image: c.image, Network: sandbox.NetworkSandboxed, Provider: c.provider,
		Command: agent.Command(agent.Options{}), Env: c.env, Mounts: c.mounts, Workdir: "/workspace",
		Stdin: strings.NewReader("@@reply ok"),
	})
}
