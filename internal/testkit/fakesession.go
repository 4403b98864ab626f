package testkit

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// FakeSession is one of fakeclaude's session files: every run of the
// session with its command line and prompt.
type FakeSession struct {
	ID   string `json:"id"`
	Runs []struct {
		Argv    []string `json:"argv"`
		Model   string   `json:"model"`
		Resumed bool     `json:"resumed"`
		Cwd     string   `json:"cwd"`
		Prompt  string   `json:"prompt"`
	} `json:"runs"`
}

// FakeSessions reads every fakeclaude session of the conversation
// directory convDir, the one with the most runs first.
func FakeSessions(t testing.TB, convDir string) []FakeSession {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(convDir, "claude", "fakeclaude-sessions", "*.json"))
	var out []FakeSession
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var s FakeSession
		if err := json.Unmarshal(data, &s); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i].Runs) > len(out[j].Runs) })
	return out
}
