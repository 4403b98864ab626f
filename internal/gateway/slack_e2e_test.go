package gateway_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airut/airut/internal/cli"
	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/gateway"
	"github.com/airut/airut/internal/redact"
	"github.com/airut/airut/internal/testkit"
	"github.com/airut/airut/internal/testkit/hostsandbox"
	"github.com/airut/airut/internal/testkit/slacktest"
)

// TestSlackThroughGateway runs the Slack channel, as cli registers it,
// against the Slack fake through the gateway (on the host sandbox, with
// fakeclaude): a mention in a channel gets :eyes:, the agent's todo list
// as the thread's plan message, the reply in the thread and :eyes:
// swapped for :white_check_mark:; a failing task ends with :x:; the
// thread map is kept in the channel's state directory.
func TestSlackThroughGateway(t *testing.T) {
	bins, err := testkit.BuildBinaries()
	if err != nil {
		t.Fatal(err)
	}
	fake := slacktest.New(t)
	fake.SeedWorkspace()
	origin := testkit.GitRepo(t, map[string]string{
		".airut/container/Dockerfile":   "FROM scratch\n",
		".airut/network-allowlist.yaml": testAllowlist,
	})
	yaml := fmt.Sprintf(`config_version: 5
execution:
  max_concurrent: 2
  shutdown_timeout: 10
repos:
  app:
    repo_url: %s
    claude_binary: %s
    slack:
      bot_token: %s
      app_token: %s
      api_url: %s
      authorized:
        - workspace_members: true
`, origin, filepath.Join(bins, "fakeclaude"), slacktest.BotToken, slacktest.AppToken, fake.APIURL)
	reg := redact.NewRegistry()
	cfg, err := config.Parse("airut.yaml", []byte(yaml), config.MapEnv(nil), reg)
	if err != nil || cfg.Err() != nil {
		t.Fatalf("config: %v %v", err, cfg.Err())
	}
	sb := hostsandbox.New()
	logs := &testkit.SyncBuffer{}
	state := t.TempDir()
	g, err := gateway.New(cfg, gateway.Options{
		StateDir: state, Registry: reg, Channels: cli.ChannelFactories(),
		Logger:      slog.New(redact.NewHandler(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}), reg)),
		ProxyBinary: filepath.Join(bins, "airut-proxy"),
		Backend:     &gateway.Backend{Runner: sb, Images: sb, ProxyNetwork: sb.ProxyNetwork},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		if running, nets := sb.Leftovers(); running+nets != 0 {
			t.Errorf("left behind: %d processes, %d networks", running, nets)
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	}()
	wctx, wcancel := context.WithTimeout(context.Background(), waitTimeout)
	defer wcancel()
	if err := fake.WaitConnected(wctx, 1); err != nil {
		t.Fatal(err)
	}

	ok, bad := fake.NewTS(), fake.NewTS()
	if err := fake.Event(wctx, slacktest.Mention(slacktest.General, slacktest.Alice,
		"please do it\n@@todo [x] read the code|[>] write the fix\n@@reply Fixed it in *Slack*.", ok, "")); err != nil {
		t.Fatal(err)
	}
	if err := fake.Event(wctx, slacktest.Mention(slacktest.General, slacktest.Bob, "@@fail 2 broken", bad, "")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both tasks to be done", func() bool {
		n := 0
		for _, ti := range g.Tasks() {
			if ti.State == gateway.StateDone {
				n++
			}
		}
		return n == 2
	})
	waitFor(t, "the final reactions", func() bool {
		return slices.Equal(fake.Reactions(slacktest.General, ok), []string{"white_check_mark"}) &&
			slices.Equal(fake.Reactions(slacktest.General, bad), []string{"x"})
	})
	var reply, plan bool
	for _, m := range fake.BotMessages(slacktest.General, ok) {
		if strings.Contains(m.Text, "Fixed it in _Slack_") { // Markdown italics as mrkdwn
			reply = true
		}
		if strings.Contains(m.Text+m.Blocks, "write the fix") {
			plan = true
		}
	}
	if !reply || !plan {
		t.Errorf("thread of the first post: reply %v, plan %v; want both: %+v", reply, plan, fake.BotMessages(slacktest.General, ok))
	}
	threads, err := os.ReadFile(filepath.Join(state, "app", "channels", "slack", "slack_threads.json"))
	if err != nil || !strings.Contains(string(threads), ok) {
		t.Errorf("thread map in the channel's state directory: %s, %v", threads, err)
	}
	time.Sleep(200 * time.Millisecond) // nothing more is sent
	for _, ti := range g.Tasks() {
		if ti.Channel != "slack" {
			t.Errorf("task %s on channel %q", ti.ID, ti.Channel)
		}
	}
}
