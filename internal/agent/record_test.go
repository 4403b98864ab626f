package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airut/airut/internal/agent"
	"github.com/airut/airut/internal/testkit"
	"github.com/airut/airut/internal/testkit/fakeapi"
)

// -record runs the pinned real Claude Code against the fake Messages API
// and rewrites testdata/realcli/: what the recorded-output tests read.
var record = flag.Bool("record", false, "record testdata/realcli with the real Claude Code CLI")

// recordKey is the credential the recordings' fake API accepts.
const recordKey = "sk-ant-api03-recording-key-000000000000000000000000000000000000-AAAA"

// recording is one scenario of the real CLI. Scenarios run in order, and
// resume names the scenario whose session the run continues.
type recording struct {
	name   string
	prompt string
	resume string // "" new session; a scenario name; "unknown" for an id the CLI never had
	key    string // the key the CLI holds; default recordKey
}

var recordings = []recording{
	{name: "new", prompt: "Please add a note.\n@@say Working on it…\n@@bash echo first > note.txt\n@@write notes/more.txt second\n@@reply Added **note.txt** and notes/more.txt."},
	{name: "resume", resume: "new", prompt: "And once more.\n@@say Looking again…\n@@bash cat note.txt\n@@write notes/more.txt third\n@@reply Updated notes/more.txt."},
	{name: "resume-unknown", resume: "unknown", prompt: "Hello again."},
	{name: "auth-new", key: "sk-ant-api03-wrong-key-00000000000000000000000000000000000000000-AAAA", prompt: "Hello."},
	{name: "auth-resume", resume: "new", key: "sk-ant-api03-wrong-key-00000000000000000000000000000000000000000-AAAA", prompt: "Hello."},
	{name: "bad-request-resume", resume: "new", prompt: "Go on.\n@@error 400"},
	{name: "prompt-too-long", prompt: "A long one.\n@@error prompt-too-long"},
	{name: "rate-limit", prompt: "Busy?\n@@error 429"},
	{name: "overloaded", prompt: "Busy?\n@@error 529"},
	{name: "todo-tools", prompt: "Plan it.\n" +
		`@@tool TaskCreate {"subject":"Write the tests","description":"Cover every case","activeForm":"Writing the tests"}` + "\n" +
		`@@tool TaskCreate {"subject":"Fix the bug","description":"The one in main.go","activeForm":"Fixing the bug"}` + "\n" +
		`@@tool TaskUpdate {"taskId":"1","status":"in_progress"}` + "\n" +
		`@@tool TaskUpdate {"taskId":"1","status":"completed"}` + "\n" +
		"@@reply Planned and started."},
}

// TestRecordRealCLI writes testdata/realcli/<name>.{jsonl,stderr,exit}
// from the real CLI. It runs on the host against the fake API over
// loopback (ANTHROPIC_BASE_URL), with the sandbox's environment.
func TestRecordRealCLI(t *testing.T) {
	if !*record {
		t.Skip("run with -record to re-record testdata/realcli with the real CLI")
	}
	claude := testkit.RealClaude(t)
	api := fakeapi.New(recordKey)
	srv := httptest.NewServer(api)
	defer srv.Close()
	home := t.TempDir()
	ws := t.TempDir()
	out := filepath.Join("testdata", "realcli")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	sessions := map[string]string{}
	for _, rc := range recordings {
		opts := agent.Options{Model: "opus"}
		switch rc.resume {
		case "":
		case "unknown":
			opts.SessionID = "00000000-0000-4000-8000-000000000000"
		default:
			opts.SessionID = sessions[rc.resume]
		}
		argv := agent.Command(opts)
		argv[0] = claude
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Dir = ws
		key := rc.key
		if key == "" {
			key = recordKey
		}
		// Two retries instead of ten keep an error recording to seconds;
		// the events have the same shape.
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + home, "ANTHROPIC_API_KEY=" + key, "ANTHROPIC_BASE_URL=" + srv.URL,
			"CLAUDE_CODE_MAX_RETRIES=2"}
		for k, v := range agent.Env() {
			if k == "CLAUDE_CONFIG_DIR" {
				v = filepath.Join(home, ".claude")
			}
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		cmd.Stdin = strings.NewReader(rc.prompt)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		api.Reset()
		start := time.Now()
		err := cmd.Run()
		cancel()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%s: %v", rc.name, err)
		}
		t.Logf("%s: exit %d in %v; api:\n%s", rc.name, code, time.Since(start).Round(time.Millisecond), fakeapi.Transcript(api.Requests()))
		for _, line := range bytes.Split(stdout.Bytes(), []byte("\n")) {
			var ev struct {
				SessionID string `json:"session_id"`
			}
			_ = json.Unmarshal(line, &ev)
			if ev.SessionID != "" && rc.resume == "" {
				sessions[rc.name] = ev.SessionID
			}
		}
		norm := func(b []byte) []byte {
			b = bytes.ReplaceAll(b, []byte(ws), []byte("/workspace"))
			b = bytes.ReplaceAll(b, []byte(home+"/.claude"), []byte("/root/.claude"))
			return bytes.ReplaceAll(b, []byte(home), []byte("/root"))
		}
		write := func(ext string, data []byte) {
			if err := os.WriteFile(filepath.Join(out, rc.name+ext), norm(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write(".jsonl", stdout.Bytes())
		write(".stderr", stderr.Bytes())
		write(".exit", []byte(strings.TrimSpace(string(rune('0'+code)))+"\n"))
		if rc.name == "new" {
			for _, r := range api.MessagesRequests() {
				var body struct {
					Tools []struct {
						Name        string          `json:"name"`
						InputSchema json.RawMessage `json:"input_schema"`
					} `json:"tools"`
				}
				_ = json.Unmarshal(r.Body, &body)
				for _, tool := range body.Tools {
					if strings.HasPrefix(tool.Name, "Task") || tool.Name == "TodoWrite" {
						t.Logf("tool %s: %s", tool.Name, tool.InputSchema)
					}
				}
				break
			}
		}
	}
}
