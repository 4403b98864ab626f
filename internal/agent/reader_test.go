package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const testSession = "3f2b8c1e-6d4a-4b7e-9c2f-1a5e8d7b6c40"

// feedFile feeds a transcript from testdata line by line, as the sandbox's
// stdout callback would.
func feedFile(t *testing.T, r *Reader, name string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		r.Feed(sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

func stderrOf(t *testing.T, name string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", strings.TrimSuffix(name, ".jsonl")+".stderr"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(data), "\n"), "\n")
}

// summary is the part of a Result the transcript tests compare.
type summary struct {
	SessionID     string
	Reply         string
	CostUSD       float64
	NumTurns      int
	DurationMS    int64
	IsError       bool
	WebSearches   int
	WebFetches    int
	Events        int
	UnknownEvents int
	BadLines      int
	InputTokens   int64
	OutputTokens  int64
}

func summarize(res Result) summary {
	return summary{
		SessionID:     res.SessionID,
		Reply:         res.Reply,
		CostUSD:       res.CostUSD,
		NumTurns:      res.NumTurns,
		DurationMS:    res.DurationMS,
		IsError:       res.IsError,
		WebSearches:   res.WebSearches,
		WebFetches:    res.WebFetches,
		Events:        res.Events,
		UnknownEvents: res.UnknownEvents,
		BadLines:      res.BadLines,
		InputTokens:   res.Usage.InputTokens,
		OutputTokens:  res.Usage.OutputTokens,
	}
}

const toolsLong = "I looked into the flaky test. The failure comes from TestWatchReload racing the file watcher: the test writes the config and immediately asserts, while fsnotify may deliver the event a few milliseconds later. I changed the test to wait on the reload channel instead of sleeping, added a regression test for a double write, and opened a pull request with both changes. CI is green on the branch."

func TestTranscripts(t *testing.T) {
	tests := []struct {
		file     string
		exitCode int
		timedOut bool
		resumed  bool
		want     summary
		outcome  Outcome
	}{
		{
			file: "simple.jsonl",
			want: summary{
				SessionID: testSession, Reply: "The build uses Go 1.26 and the tests pass.",
				CostUSD: 0.0734, NumTurns: 1, DurationMS: 4210, Events: 3,
				InputTokens: 3, OutputTokens: 14,
			},
			outcome: OutcomeSuccess,
		},
		{
			// A long answer with a TodoWrite, then a short coda: the reply
			// reaches back to the answer. Tool results that mention error
			// markers must not make a success look like a failure.
			file: "tools.jsonl",
			want: summary{
				SessionID: testSession, Reply: toolsLong + "\n\nPR: #42",
				CostUSD: 1.2871, NumTurns: 9, DurationMS: 98231,
				WebSearches: 2, WebFetches: 1,
				Events: 15, UnknownEvents: 1, BadLines: 1,
				InputTokens: 27, OutputTokens: 2400,
			},
			outcome: OutcomeSuccess,
		},
		{
			file: "multi_result.jsonl",
			want: summary{
				SessionID: testSession,
				Reply:     "Started the benchmark in the background; here is the summary so far.\n\nThe benchmark finished: 12% faster.",
				CostUSD:   0.35, NumTurns: 5, DurationMS: 5000, Events: 5,
				InputTokens: 20, OutputTokens: 32,
			},
			outcome: OutcomeSuccess,
		},
		{
			file:     "prompt_too_long.jsonl",
			exitCode: 1,
			resumed:  true,
			want: summary{
				SessionID: testSession, Reply: "Prompt is too long", IsError: true,
				NumTurns: 1, DurationMS: 1201, Events: 5,
			},
			outcome: OutcomePromptTooLong,
		},
		{
			file:     "api_error_400.jsonl",
			exitCode: 1,
			resumed:  true,
			want: summary{
				SessionID: testSession, IsError: true, NumTurns: 1, DurationMS: 900, Events: 3,
				Reply: `API Error: 400 {"type":"error","error":{"type":"invalid_request_error","message":"messages.12.content.0: unexpected ` + "`tool_use_id` found in `tool_result` blocks: toolu_01Vx. Each `tool_result` block must have a corresponding `tool_use` block in the previous message.\"},\"request_id\":\"req_011CVx\"}",
			},
			outcome: OutcomeSessionLost,
		},
		{
			// The same API error on a fresh session is a plain error: there
			// is no session to give up.
			file:     "api_error_400.jsonl",
			exitCode: 1,
			want: summary{
				SessionID: testSession, IsError: true, NumTurns: 1, DurationMS: 900, Events: 3,
				Reply: `API Error: 400 {"type":"error","error":{"type":"invalid_request_error","message":"messages.12.content.0: unexpected ` + "`tool_use_id` found in `tool_result` blocks: toolu_01Vx. Each `tool_result` block must have a corresponding `tool_use` block in the previous message.\"},\"request_id\":\"req_011CVx\"}",
			},
			outcome: OutcomeError,
		},
		{
			file:     "rate_limit_429.jsonl",
			exitCode: 1,
			resumed:  true,
			want: summary{
				SessionID: testSession, IsError: true, NumTurns: 1, DurationMS: 300, Events: 3,
				Reply: `API Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed the rate limit for your organization of 30,000 input tokens per minute."}}`,
			},
			outcome: OutcomeError,
		},
		{
			// Killed mid-run: the session id from init lets the next
			// message resume; the cut-off last line is counted, not fatal.
			file:     "timeout_partial.jsonl",
			exitCode: 137,
			timedOut: true,
			resumed:  true,
			want: summary{
				SessionID: testSession, Reply: "Running the full test suite now; this takes a while.",
				Events: 2, BadLines: 1,
			},
			outcome: OutcomeTimeout,
		},
		{
			file: "result_only.jsonl",
			want: summary{
				SessionID: testSession, Reply: "Nothing to change.", CostUSD: 0.004,
				NumTurns: 1, DurationMS: 800, Events: 2, InputTokens: 5, OutputTokens: 4,
			},
			outcome: OutcomeSuccess,
		},
		{
			file:     "empty_result.jsonl",
			exitCode: 1,
			want: summary{
				SessionID: testSession, Reply: NoOutputReply, CostUSD: 2.5, IsError: true,
				NumTurns: 50, DurationMS: 800, Events: 2, InputTokens: 5, OutputTokens: 4,
			},
			outcome: OutcomeError,
		},
		{
			file:     "resume_unknown.jsonl",
			exitCode: 1,
			resumed:  true,
			want:     summary{Reply: NoOutputReply},
			outcome:  OutcomeSessionLost,
		},
	}
	for _, tc := range tests {
		name := strings.TrimSuffix(tc.file, ".jsonl")
		if tc.resumed {
			name += "/resumed"
		}
		t.Run(name, func(t *testing.T) {
			r := NewReader(0)
			feedFile(t, r, tc.file)
			got := summarize(r.Result())
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("result mismatch (-want +got):\n%s", diff)
			}
			if o := Classify(tc.timedOut, tc.exitCode, r, stderrOf(t, tc.file), tc.resumed); o != tc.outcome {
				t.Errorf("Classify = %q; want %q", o, tc.outcome)
			}
		})
	}
}

func TestTodoCallback(t *testing.T) {
	r := NewReader(0)
	var got [][]Todo
	r.OnTodo = func(todos []Todo) { got = append(got, todos) }
	feedFile(t, r, "tools.jsonl")
	want := [][]Todo{
		{
			{Content: "Reproduce the flaky test", Status: "in_progress", ActiveForm: "Reproducing the flaky test"},
			{Content: "Fix the race", Status: "pending", ActiveForm: "Fixing the race"},
		},
		{
			{Content: "Reproduce the flaky test", Status: "completed", ActiveForm: "Reproducing the flaky test"},
			{Content: "Fix the race", Status: "completed", ActiveForm: "Fixing the race"},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("todo updates mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want[1], r.Result().Todos); diff != "" {
		t.Errorf("Result().Todos mismatch (-want +got):\n%s", diff)
	}
}

func TestReplySelection(t *testing.T) {
	long := strings.Repeat("x", 40)
	tests := []struct {
		name  string
		texts []string
		want  string
	}{
		{"single", []string{"only"}, "only"},
		{"last when none is long", []string{"aaaa", "bbbb", "cccc"}, "cccc"},
		{"anchor within window", []string{long, "mid", "0123456789"}, long + "\n\nmid\n\n0123456789"},
		{"anchor exactly 4x", []string{strings.Repeat("y", 8), "ab"}, strings.Repeat("y", 8) + "\n\nab"},
		{"just under 4x", []string{strings.Repeat("y", 7), "ab"}, "ab"},
		{"outside window of 4", []string{long, "a", "b", "c", "d", "0123456789"}, "0123456789"},
		{"edge of window", []string{long, "a", "b", "c", "0123456789"}, long + "\n\na\n\nb\n\nc\n\n0123456789"},
		{"latest anchor wins", []string{long, "b", long + "!", "0123456789"}, long + "!\n\n0123456789"},
		{"runes not bytes", []string{"éééééééé", "abc"}, "abc"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(0)
			for _, text := range tc.texts {
				r.Feed(assistantLine(t, text))
			}
			if got := r.Result().Reply; got != tc.want {
				t.Errorf("Reply = %q; want %q", got, tc.want)
			}
		})
	}
}

func assistantLine(t *testing.T, text string) []byte {
	t.Helper()
	ev := Event{Type: TypeAssistant, Message: &Message{Content: Content{{Type: "text", Text: text}}}}
	line, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return line
}

func TestReaderTolerance(t *testing.T) {
	lines := []string{
		"",
		"   ",
		"garbage",
		"{not json",
		`{"type":"brand_new_event","payload":[1,2,3]}`,
		`{"type":"assistant"}`,
		`{"type":"assistant","message":{"content":"a bare string"}}`,
		`{"type":"result","result":{"content":[{"type":"text","text":"from blocks"}]},"session_id":"s2"}`,
		`[1,2]`,
	}
	r := NewReader(3)
	for _, l := range lines {
		r.Feed([]byte(l + "\n"))
	}
	got := r.Result()
	want := summary{SessionID: "s2", Reply: "a bare string", Events: 4, UnknownEvents: 1, BadLines: 3}
	if diff := cmp.Diff(want, summarize(got)); diff != "" {
		t.Errorf("result mismatch (-want +got):\n%s", diff)
	}
	wantTail := []string{
		`{"type":"assistant","message":{"content":"a bare string"}}`,
		`{"type":"result","result":{"content":[{"type":"text","text":"from blocks"}]},"session_id":"s2"}`,
		`[1,2]`,
	}
	if diff := cmp.Diff(wantTail, got.Tail); diff != "" {
		t.Errorf("tail mismatch (-want +got):\n%s", diff)
	}
}

func TestTailCapsLongLines(t *testing.T) {
	r := NewReader(2)
	r.Feed([]byte(strings.Repeat("é", maxTailLineBytes)))
	tail := r.Result().Tail
	if len(tail) != 1 {
		t.Fatalf("got %d tail lines; want 1", len(tail))
	}
	if len(tail[0]) > maxTailLineBytes+len("…") || !strings.HasSuffix(tail[0], "…") {
		t.Errorf("tail line of %d bytes; want at most %d ending in …", len(tail[0]), maxTailLineBytes+len("…"))
	}
	if !strings.HasPrefix(tail[0], "éé") || strings.ContainsRune(tail[0], '\uFFFD') {
		t.Errorf("tail line was cut inside a rune")
	}
}

func TestServerToolUseCounts(t *testing.T) {
	r := NewReader(0)
	r.Feed([]byte(`{"type":"assistant","message":{"content":[{"type":"tool_use","name":"WebSearch","input":{}}]}}`))
	r.Feed([]byte(`{"type":"result","result":"ok","usage":{"input_tokens":1,"output_tokens":1,"server_tool_use":{"web_search_requests":3,"web_fetch_requests":2}}}`))
	got := r.Result()
	if got.WebSearches != 3 || got.WebFetches != 2 {
		t.Errorf("searches, fetches = %d, %d; want 3, 2", got.WebSearches, got.WebFetches)
	}
}

func TestClassifyOrder(t *testing.T) {
	ptl := NewReader(0)
	feedFile(t, ptl, "prompt_too_long.jsonl")
	tests := []struct {
		name     string
		timedOut bool
		exitCode int
		r        *Reader
		stderr   []string
		resumed  bool
		want     Outcome
	}{
		{"timeout wins over exit 0", true, 0, nil, nil, false, OutcomeTimeout},
		{"timeout wins over prompt too long", true, 1, ptl, nil, true, OutcomeTimeout},
		{"exit 0 wins over markers", false, 0, ptl, nil, true, OutcomeSuccess},
		{"prompt too long on a fresh session", false, 1, ptl, nil, false, OutcomePromptTooLong},
		{"prompt too long on stderr", false, 1, nil, []string{"Error: prompt is too long: 210345 tokens > 200000 maximum"}, true, OutcomePromptTooLong},
		{"prompt too long wins over session lost", false, 1, ptl, []string{"API Error: 400 bad request"}, true, OutcomePromptTooLong},
		{"unknown session on stderr", false, 1, nil, []string{"No conversation found with session ID: abc"}, true, OutcomeSessionLost},
		{"api 4xx on stderr", false, 1, nil, []string{"API Error: 404 not found"}, true, OutcomeSessionLost},
		{"api 4xx not resumed", false, 1, nil, []string{"API Error: 404 not found"}, false, OutcomeError},
		{"api 5xx", false, 1, nil, []string{"API Error: 529 overloaded"}, true, OutcomeError},
		{"api 401 on stderr resumed", false, 1, nil, []string{"API Error: 401 invalid x-api-key"}, true, OutcomeAuthFailed},
		{"invalid api key words", false, 1, nil, []string{"Invalid API key · Fix external API key"}, true, OutcomeAuthFailed},
		{"2.1 rate limit words", false, 1, nil, []string{"API Error: Request rejected (429) · slow down"}, true, OutcomeError},
		{"structured 401 beats a 400 in the words", false, 1,
			readerOf(t, `{"type":"result","subtype":"success","is_error":true,"api_error_status":401,"result":"API Error: 400 odd"}`), nil, true, OutcomeAuthFailed},
		{"synthetic authentication_failed", false, 1,
			readerOf(t, `{"type":"assistant","error":"authentication_failed","message":{"model":"<synthetic>","content":[{"type":"text","text":"Please log in"}]}}`), nil, true, OutcomeAuthFailed},
		{"killed while retrying a 401", false, 143,
			readerOf(t, `{"type":"system","subtype":"api_retry","attempt":3,"error_status":401,"error":"authentication_failed"}`), nil, true, OutcomeAuthFailed},
		{"nothing", false, 2, nil, nil, true, OutcomeError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.timedOut, tc.exitCode, tc.r, tc.stderr, tc.resumed); got != tc.want {
				t.Errorf("Classify = %q; want %q", got, tc.want)
			}
		})
	}
}

func TestResultErrorsArray(t *testing.T) {
	r := NewReader(0)
	r.Feed([]byte(`{"type":"result","subtype":"error_during_execution","is_error":true,"errors":["No conversation found with session ID: 11111111-2222-3333-4444-555555555555"],"session_id":"66666666-7777-8888-9999-000000000000"}`))
	if got := Classify(false, 1, r, nil, true); got != OutcomeSessionLost {
		t.Errorf("Classify = %q; want %q", got, OutcomeSessionLost)
	}
}

func TestReaderConcurrentUse(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "tools.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	r := NewReader(5)
	var todos int
	r.OnTodo = func([]Todo) { todos++ }
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
				_ = r.Result()
				_ = Classify(false, 1, r, nil, true)
			}
		}
	})
	for line := range bytes.Lines(data) {
		r.Feed(line)
	}
	close(done)
	wg.Wait()
	if todos != 2 {
		t.Errorf("got %d todo callbacks; want 2", todos)
	}
}

func readerOf(t *testing.T, lines ...string) *Reader {
	t.Helper()
	r := NewReader(0)
	for _, l := range lines {
		r.Feed([]byte(l))
	}
	return r
}
