package agent

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The files in testdata/realcli are the real Claude Code CLI's output
// (stdout, stderr, exit code), recorded against the fake Messages API by
// TestRecordRealCLI -record. These tests hold the reader to them.

type realRun struct {
	stdout []byte
	stderr []string
	exit   int
}

func loadRealRun(t *testing.T, name string) realRun {
	t.Helper()
	dir := filepath.Join("testdata", "realcli")
	stdout, err := os.ReadFile(filepath.Join(dir, name+".jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := os.ReadFile(filepath.Join(dir, name+".stderr"))
	if err != nil {
		t.Fatal(err)
	}
	exit, err := os.ReadFile(filepath.Join(dir, name+".exit"))
	if err != nil {
		t.Fatal(err)
	}
	code, err := strconv.Atoi(strings.TrimSpace(string(exit)))
	if err != nil {
		t.Fatalf("%s.exit: %v", name, err)
	}
	var lines []string
	if s := strings.TrimRight(string(stderr), "\n"); s != "" {
		lines = strings.Split(s, "\n")
	}
	return realRun{stdout: stdout, stderr: lines, exit: code}
}

func (rr realRun) feed(r *Reader) {
	for line := range bytes.Lines(rr.stdout) {
		r.Feed(line)
	}
}

// realSummary is what the real-CLI tests compare.
type realSummary struct {
	Outcome        Outcome
	Unavailable    bool
	Reply          string
	CostUSD        float64
	TotalCostUSD   float64
	APIErrorStatus int
	TerminalReason string
	ErrorKind      string
	Retries        int
	HasSession     bool
}

func TestRealCLIRecordings(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		resumed bool
		prev    float64 // the previous run's running total
		want    realSummary
	}{
		{
			name: "new session", file: "new",
			want: realSummary{Outcome: OutcomeSuccess, Reply: "Added **note.txt** and notes/more.txt.",
				CostUSD: 0.018, TotalCostUSD: 0.018, TerminalReason: "completed", HasSession: true},
		},
		{
			// total_cost_usd and modelUsage are the session's running
			// totals: the task's cost is model_usage_since_last_result.
			name: "resumed: cost of this run only", file: "resume", resumed: true, prev: 0.018,
			want: realSummary{Outcome: OutcomeSuccess, Reply: "Updated notes/more.txt.",
				CostUSD: 0.018, TotalCostUSD: 0.036, TerminalReason: "completed", HasSession: true},
		},
		{
			// No system/init, a result with only an errors list, and the
			// same words on stderr: the reply quotes them.
			name: "unknown resume id", file: "resume-unknown", resumed: true,
			want: realSummary{Outcome: OutcomeSessionLost,
				Reply: "No conversation found with session ID: 00000000-0000-4000-8000-000000000000", HasSession: true},
		},
		{
			name: "401 on a new session", file: "auth-new",
			want: realSummary{Outcome: OutcomeAuthFailed, Reply: "Invalid API key · Fix external API key",
				APIErrorStatus: 401, TerminalReason: "api_error", ErrorKind: "authentication_failed", Retries: 2, HasSession: true},
		},
		{
			// The bug this replaces: a 401 on resume counted as a lost
			// session and was retried fresh, losing the context.
			name: "401 on a resumed session is not a lost session", file: "auth-resume", resumed: true, prev: 0.036,
			want: realSummary{Outcome: OutcomeAuthFailed, Reply: "Invalid API key · Fix external API key",
				TotalCostUSD: 0.036, APIErrorStatus: 401, TerminalReason: "api_error", ErrorKind: "authentication_failed",
				Retries: 2, HasSession: true},
		},
		{
			name: "400 on a resumed session", file: "bad-request-resume", resumed: true, prev: 0.036,
			want: realSummary{Outcome: OutcomeSessionLost,
				Reply:        "API Error: 400 messages.1.content.0: unexpected tool_use_id found in tool_result blocks",
				TotalCostUSD: 0.036, APIErrorStatus: 400, TerminalReason: "api_error", ErrorKind: "unknown", HasSession: true},
		},
		{
			name: "400 on a new session", file: "bad-request-resume",
			want: realSummary{Outcome: OutcomeError,
				Reply:   "API Error: 400 messages.1.content.0: unexpected tool_use_id found in tool_result blocks",
				CostUSD: 0, TotalCostUSD: 0.036, APIErrorStatus: 400, TerminalReason: "api_error", ErrorKind: "unknown", HasSession: true},
		},
		{
			name: "prompt too long", file: "prompt-too-long", resumed: true,
			want: realSummary{Outcome: OutcomePromptTooLong,
				Reply:          loadResultText(t, "prompt-too-long"),
				APIErrorStatus: 400, TerminalReason: "prompt_too_long", ErrorKind: "invalid_request", HasSession: true},
		},
		{
			name: "rate limited after retries", file: "rate-limit", resumed: true,
			want: realSummary{Outcome: OutcomeError, Unavailable: true,
				Reply:          "API Error: Request rejected (429) · Number of request tokens has exceeded your per-minute rate limit",
				APIErrorStatus: 429, TerminalReason: "api_error", ErrorKind: "rate_limit", Retries: 2, HasSession: true},
		},
		{
			name: "overloaded after retries", file: "overloaded",
			want: realSummary{Outcome: OutcomeError, Unavailable: true, Reply: loadResultText(t, "overloaded"),
				APIErrorStatus: 529, TerminalReason: "api_error", ErrorKind: "server_error", Retries: 2, HasSession: true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rr := loadRealRun(t, tc.file)
			r := NewReader(0)
			r.PrevTotalCostUSD = tc.prev
			rr.feed(r)
			res := r.Result()
			got := realSummary{
				Outcome:     Classify(false, rr.exit, r, rr.stderr, tc.resumed),
				Unavailable: Unavailable(r, rr.stderr), Reply: res.Reply,
				CostUSD: round(res.CostUSD), TotalCostUSD: round(res.TotalCostUSD),
				APIErrorStatus: res.APIErrorStatus, TerminalReason: res.TerminalReason, ErrorKind: res.ErrorKind,
				Retries: res.Retries, HasSession: res.SessionID != "",
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func round(f float64) float64 { return float64(int64(f*1e6+0.5)) / 1e6 }

func loadResultText(t *testing.T, name string) string {
	t.Helper()
	for line := range bytes.Lines(loadRealRun(t, name).stdout) {
		var ev struct {
			Type   string `json:"type"`
			Result string `json:"result"`
		}
		if json.Unmarshal(line, &ev) == nil && ev.Type == TypeResult {
			return ev.Result
		}
	}
	t.Fatalf("%s: no result", name)
	return ""
}

// TestRealCLICostWithoutSinceField: a CLI that reports only running totals
// (no model_usage_since_last_result) gets its per-task cost from the
// growth of total_cost_usd since the previous task.
func TestRealCLICostWithoutSinceField(t *testing.T) {
	rr := loadRealRun(t, "resume")
	var stripped bytes.Buffer
	for line := range bytes.Lines(rr.stdout) {
		var ev map[string]any
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatal(err)
		}
		delete(ev, "model_usage_since_last_result")
		b, _ := json.Marshal(ev)
		stripped.Write(append(b, '\n'))
	}
	tests := []struct {
		name string
		prev float64
		want float64
	}{
		{"difference from the previous total", 0.018, 0.018},
		{"no previous task", 0, 0.036},
		{"total below the previous one: a new session", 0.05, 0.036},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(0)
			r.PrevTotalCostUSD = tc.prev
			realRun{stdout: stripped.Bytes()}.feed(r)
			if got := round(r.Result().CostUSD); got != tc.want {
				t.Errorf("CostUSD = %v; want %v", got, tc.want)
			}
		})
	}
}

// TestRealCLITaskTools follows TaskCreate/TaskUpdate, the todo tools of
// current CLIs, with the task numbers the CLI assigns in its results.
func TestRealCLITaskTools(t *testing.T) {
	rr := loadRealRun(t, "todo-tools")
	r := NewReader(0)
	var updates [][]Todo
	r.OnTodo = func(todos []Todo) { updates = append(updates, todos) }
	rr.feed(r)
	want := []Todo{
		{ID: "1", Content: "Write the tests", Status: "completed", ActiveForm: "Writing the tests"},
		{ID: "2", Content: "Fix the bug", Status: "pending", ActiveForm: "Fixing the bug"},
	}
	if diff := cmp.Diff(want, r.Result().Todos); diff != "" {
		t.Errorf("todos mismatch (-want +got):\n%s", diff)
	}
	if len(updates) != 4 {
		t.Errorf("got %d todo updates; want 4 (two creates, two updates)", len(updates))
	}
	if o := Classify(false, rr.exit, r, rr.stderr, false); o != OutcomeSuccess {
		t.Errorf("Classify = %s; want success", o)
	}
}

// TestRealCLIEventsPerBlock: the real CLI writes one assistant event per
// content block; the blocks of one message share message.id.
func TestRealCLIEventsPerBlock(t *testing.T) {
	rr := loadRealRun(t, "new")
	ids := map[string]int{}
	for line := range bytes.Lines(rr.stdout) {
		ev, err := ParseEvent(line)
		if err != nil || ev.Type != TypeAssistant {
			continue
		}
		if len(ev.Message.Content) != 1 {
			t.Errorf("assistant event with %d blocks; want one per event", len(ev.Message.Content))
		}
		ids[ev.Message.ID]++
	}
	shared := 0
	for _, n := range ids {
		if n > 1 {
			shared++
		}
	}
	if shared == 0 {
		t.Errorf("no message split over several events: %v", ids)
	}
}

// TestReplyGroupsBlocksByMessage: the reply rule counts messages, not
// blocks. A message whose text comes in four blocks must not push the
// substantive answer before it out of the look-back window, and both
// text blocks of the final message belong to the reply.
func TestReplyGroupsBlocksByMessage(t *testing.T) {
	long := strings.Repeat("The answer in detail. ", 10)
	ev := func(id string, blocks ...string) []byte {
		var c Content
		for _, b := range blocks {
			if b == "TOOL" {
				c = append(c, Block{Type: "tool_use", ID: "toolu_" + id, Name: "Bash", Input: json.RawMessage(`{}`)})
			} else {
				c = append(c, Block{Type: "text", Text: b})
			}
		}
		line, err := json.Marshal(Event{Type: TypeAssistant, Message: &Message{ID: id, Content: c}})
		if err != nil {
			t.Fatal(err)
		}
		return line
	}
	tests := []struct {
		name   string
		events [][]byte
		want   string
	}{
		{"blocks of the last message joined",
			[][]byte{ev("m1", "Working on it…"), ev("m1", "TOOL"), ev("m2", "Part one."), ev("m2", "Part two.")},
			"Part one.\n\nPart two."},
		{"a split message counts once in the window",
			[][]byte{ev("m1", long), ev("m2", "a"), ev("m2", "b"), ev("m2", "c"), ev("m2", "d"), ev("m2", "TOOL"), ev("m3", "Done.")},
			long + "\n\na\n\nb\n\nc\n\nd\n\nDone."},
		{"narration of an earlier message stays out",
			[][]byte{ev("m1", "Working on it…"), ev("m1", "TOOL"), ev("m2", "Fixed the bug in main.go.")},
			"Fixed the bug in main.go."},
		{"events without ids stay apart (older CLIs)",
			[][]byte{ev("", "first"), ev("", "second")},
			"second"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(0)
			for _, l := range tc.events {
				r.Feed(l)
			}
			if got := r.Result().Reply; got != tc.want {
				t.Errorf("Reply = %q; want %q", got, tc.want)
			}
		})
	}
}
