package slack

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRewriteMentions(t *testing.T) {
	users := []candidate{{name: "alice smith", repl: "<@U2>"}, {name: "alice", repl: "<@U1>"}, {name: "bob", repl: "<@U3>"}}
	chans := []candidate{{name: "general", repl: "<#C1>"}}
	tests := []struct{ in, want string }{
		{"thanks @alice!", "thanks <@U1>!"},
		{"@Alice Smith reviewed it", "<@U2> reviewed it"},
		{"mail alice@example.com or bob@alice", "mail alice@example.com or bob@alice"},
		{"@alicex is not alice", "@alicex is not alice"},
		{"see #general and #generalist", "see <#C1> and #generalist"},
		{"`@alice` in code", "`@alice` in code"},
		{"```\n@bob in a block\n```\n@bob outside", "```\n@bob in a block\n```\n<@U3> outside"},
		{"<https://x.test/@alice|@alice>", "<https://x.test/@alice|@alice>"},
		{"@carol is unknown", "@carol is unknown"},
	}
	for _, tt := range tests {
		if got := rewriteMentions(tt.in, users, chans); got != tt.want {
			t.Errorf("rewriteMentions(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestCorruptThreadStoreRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, threadsFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(Config{BotToken: "xoxb-1", AppToken: "xapp-1", Authorized: []Rule{{UserID: "U1"}}, StateDir: dir}, nil)
	if err == nil || !strings.Contains(err.Error(), threadsFile) {
		t.Errorf("New with a corrupt thread store: %v; want an error naming the file", err)
	}
}

func TestTitle(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Fix the bug\nmore detail", "Fix the bug"},
		{"", "Task"},
		{strings.Repeat("long ", 30), strings.TrimSpace(strings.Repeat("long ", 12)[:59]) + "…"},
	}
	for _, tt := range tests {
		if got := title(tt.in); got != tt.want {
			t.Errorf("title(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}
