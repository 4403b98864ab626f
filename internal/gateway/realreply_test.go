package gateway

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airut/airut/internal/agent"
	"github.com/airut/airut/internal/config"
)

// replyOfRecording classifies a recorded real-CLI run and renders its
// reply, as runAgent and replyText do.
func replyOfRecording(t *testing.T, name string, resumed bool, rc *config.Repo) (agent.Outcome, string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "agent", "testdata", "realcli", name+".jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	r := agent.NewReader(0)
	for line := range bytes.Lines(data) {
		r.Feed(line)
	}
	tr := taskResult{res: r.Result(), exitCode: 1, unavailable: agent.Unavailable(r, nil), credential: claudeCredential(rc)}
	tr.outcome = agent.Classify(false, 1, r, nil, resumed)
	return tr.outcome, replyText(tr)
}

// TestRealCLIErrorReplies: what the user reads for the real CLI's failures.
func TestRealCLIErrorReplies(t *testing.T) {
	masked := &config.Repo{MaskedSecrets: map[string]config.MaskedSecret{"ANTHROPIC_API_KEY": {}}}
	oauth := &config.Repo{MaskedSecrets: map[string]config.MaskedSecret{"CLAUDE_CODE_OAUTH_TOKEN": {}}}
	tests := []struct {
		name, file string
		resumed    bool
		rc         *config.Repo
		outcome    agent.Outcome
		want       []string
		notWant    []string
	}{
		{"401 names the masked key", "auth-resume", true, masked, agent.OutcomeAuthFailed,
			[]string{"refused the agent's credential (HTTP 401)", "masked_secrets.ANTHROPIC_API_KEY", "api.anthropic.com", "reply to this message",
				"```\nInvalid API key · Fix external API key\n```"},
			[]string{"could not be resumed", "fresh session", `{"type"`}},
		{"401 names the OAuth token", "auth-new", false, oauth, agent.OutcomeAuthFailed,
			[]string{"masked_secrets.CLAUDE_CODE_OAUTH_TOKEN"}, nil},
		{"401 without a credential says to add one", "auth-new", false, &config.Repo{}, agent.OutcomeAuthFailed,
			[]string{"no ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN"}, nil},
		{"429 says the service is unavailable", "rate-limit", false, masked, agent.OutcomeError,
			[]string{"unavailable or rate-limited (HTTP 429)", "reply to this message later", "Request rejected (429)"}, []string{"exit code", `{"type"`}},
		{"prompt too long quotes the CLI's words, not its JSON", "prompt-too-long", true, masked, agent.OutcomePromptTooLong,
			[]string{"too long for the model's context", "Prompt is too long · the request is ~212345 tokens"}, []string{`{"type"`}},
		{"529 says the service is unavailable", "overloaded", true, masked, agent.OutcomeError,
			[]string{"unavailable or rate-limited (HTTP 529)"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			outcome, text := replyOfRecording(t, tc.file, tc.resumed, tc.rc)
			if outcome != tc.outcome {
				t.Errorf("outcome = %s; want %s", outcome, tc.outcome)
			}
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("reply lacks %q:\n%s", w, text)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(text, w) {
					t.Errorf("reply has %q:\n%s", w, text)
				}
			}
		})
	}
}
