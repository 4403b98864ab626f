package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCommand(t *testing.T) {
	// Plain -p: the prompt comes on stdin ("-p -" would be the prompt "-").
	tail := []string{"-p", "--dangerously-skip-permissions", "--output-format", "stream-json", "--verbose"}
	tests := []struct {
		name string
		opts Options
		want []string
	}{
		{"new session", Options{Model: "sonnet"}, append([]string{BinaryPath, "--model", "sonnet"}, tail...)},
		{"default model", Options{}, append([]string{BinaryPath, "--model", "opus"}, tail...)},
		{"resume with effort", Options{Model: "haiku", Effort: "high", SessionID: "abc-123"},
			append([]string{BinaryPath, "--resume", "abc-123", "--model", "haiku", "--effort", "high"}, tail...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Command(tc.opts)); diff != "" {
				t.Errorf("Command mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEnv(t *testing.T) {
	want := map[string]string{
		"IS_SANDBOX":        "1",
		"CLAUDE_CONFIG_DIR": "/root/.claude",
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
		"DISABLE_AUTOUPDATER":                      "1",
		"CLAUDE_CODE_ENABLE_TODO_TOOLS":            "1",
		"CLAUDE_CODE_DISABLE_BACKGROUND_TASKS":     "1",
	}
	if diff := cmp.Diff(want, Env()); diff != "" {
		t.Errorf("Env mismatch (-want +got):\n%s", diff)
	}
}

var alice = PromptMessage{
	SenderName: "Alice", SenderAddress: "alice@example.com",
	Time: time.Date(2026, 11, 22, 12, 31, 5, 0, time.FixedZone("EET", 2*3600)),
	Body: "Please fix the login bug.",
}

func TestPrompt(t *testing.T) {
	bob := PromptMessage{SenderAddress: "U123ABC", Time: time.Date(2026, 11, 22, 10, 32, 0, 0, time.UTC), Body: "Also the logout one."}
	tests := []struct {
		name    string
		in      PromptInput
		want    []string // substrings, in order
		notWant []string
	}{
		{
			name: "new email conversation",
			in:   PromptInput{Channel: ChannelEmail, Subject: "Login\n bug", Attachments: []string{"trace.log", "shot-1.png"}, Messages: []PromptMessage{alice}},
			want: []string{"email", "last message", "/workspace", "/inbox", "/storage", "Markdown",
				"/outbox", "ask in your", "subject is: Login bug", "/inbox/trace.log", "/inbox/shot-1.png",
				"## Message\n\nPlease fix the login bug.\n"},
			notWant: []string{"[Alice", "no tables"},
		},
		{
			name:    "slack follow-up",
			in:      PromptInput{Channel: ChannelSlack, Messages: []PromptMessage{alice}},
			want:    []string{"Slack", "no", "tables", "Please fix the login bug."},
			notWant: []string{"subject", "/inbox/"},
		},
		{
			name: "coalesced",
			in:   PromptInput{Channel: ChannelSlack, Messages: []PromptMessage{alice, bob}},
			want: []string{
				"[Alice <alice@example.com> 2026-11-22 10:31:05 UTC]\nPlease fix the login bug.\n",
				"[U123ABC 2026-11-22 10:32:00 UTC]\nAlso the logout one.\n",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Prompt(tc.in)
			rest := got
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("prompt lacks %q (in order); prompt:\n%s", w, got)
				}
				rest = rest[i+len(w):]
			}
			for _, nw := range tc.notWant {
				if strings.Contains(got, nw) {
					t.Errorf("prompt contains %q; prompt:\n%s", nw, got)
				}
			}
			if strings.Contains(got, "\n@@") {
				t.Errorf("preamble has a line starting with @@, which fakeclaude would run")
			}
		})
	}
}

func TestRecoveryPrompt(t *testing.T) {
	in := PromptInput{Channel: ChannelEmail, Messages: []PromptMessage{alice}}
	last := "I opened PR #7.\nIt renames the flag.\n" + strings.Repeat("z", 3*recoveryQuoteRunes)
	got := RecoveryPrompt(in, last)
	for _, w := range []string{"could not be resumed", "> I opened PR #7.\n> It renames the flag.\n", "> […]", "workspace", "Please fix the login bug."} {
		if !strings.Contains(got, w) {
			t.Errorf("recovery prompt lacks %q; prompt:\n%s", w, got)
		}
	}
	if n := strings.Count(got, "z"); n != recoveryQuoteRunes-len("I opened PR #7.\nIt renames the flag.\n") {
		t.Errorf("quoted %d z; want the quote cut at %d runes", n, recoveryQuoteRunes)
	}
	if noReply := RecoveryPrompt(in, ""); strings.Contains(noReply, "last reply") {
		t.Errorf("recovery prompt without a last reply mentions one:\n%s", noReply)
	}
}

func TestFooter(t *testing.T) {
	tests := []struct {
		name         string
		res          Result
		subscription bool
		want         string
	}{
		{"cost only", Result{CostUSD: 1.2871}, false, "_Cost: $1.29_"},
		{"tiny cost", Result{CostUSD: 0.004}, false, "_Cost: <$0.01_"},
		{"all", Result{CostUSD: 0.5, WebSearches: 2, WebFetches: 1}, false, "_Cost: $0.50 · 2 web searches · 1 web fetch_"},
		{"subscription hides cost", Result{CostUSD: 0.5, WebSearches: 1, WebFetches: 3}, true, "_1 web search · 3 web fetches_"},
		{"subscription, nothing", Result{CostUSD: 0.5}, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Footer(tc.res, tc.subscription); got != tc.want {
				t.Errorf("Footer = %q; want %q", got, tc.want)
			}
		})
	}
}
