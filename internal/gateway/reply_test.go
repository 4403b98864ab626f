package gateway

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/airut/airut/internal/agent"
	"github.com/airut/airut/internal/testkit"
)

// TestCostFooter: the cost is in the footer of a run on an API key and
// not in that of a run on a subscription login, which Claude Code's
// system/init event tells by apiKeySource "none".
func TestCostFooter(t *testing.T) {
	apiKey, err := os.ReadFile("../agent/testdata/simple.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		transcript func(t *testing.T) []byte
		want       bool // a cost in the footer
	}{
		{name: "api key", transcript: func(*testing.T) []byte { return apiKey }, want: true},
		{name: "subscription (fakeclaude)", transcript: fakeclaudeTranscript, want: false},
		{name: "no init event", transcript: func(*testing.T) []byte {
			var out []string
			for _, l := range strings.Split(string(apiKey), "\n") {
				if !strings.Contains(l, `"subtype":"init"`) {
					out = append(out, l)
				}
			}
			return []byte(strings.Join(out, "\n"))
		}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reader := agent.NewReader(0)
			var login loginKind
			for _, line := range strings.Split(string(tt.transcript(t)), "\n") {
				reader.Feed([]byte(line))
				login.feed([]byte(line))
			}
			res := reader.Result()
			if res.Reply == "" {
				t.Fatalf("transcript has no reply")
			}
			text := replyText(taskResult{outcome: agent.OutcomeSuccess, res: res, subscription: login.subscription()})
			if got := strings.Contains(text, "Cost: "); got != tt.want {
				t.Errorf("cost in the reply: got %v; want %v\n%s", got, tt.want, text)
			}
		})
	}
}

// fakeclaudeTranscript runs fakeclaude on the host as the gateway runs
// Claude Code in the container, and returns its stdout.
func fakeclaudeTranscript(t *testing.T) []byte {
	t.Helper()
	bins, err := testkit.BuildBinaries()
	if err != nil {
		t.Fatal(err)
	}
	argv := agent.Command(agent.Options{Model: "opus"})
	cmd := exec.Command(bins+"/fakeclaude", argv[1:]...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	cmd.Stdin = strings.NewReader("@@reply Done.\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("fakeclaude: %v", err)
	}
	return out
}
