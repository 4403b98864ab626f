package fakeapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const key = "sk-ant-api03-test"

func post(t *testing.T, srv *httptest.Server, path string, hdr map[string]string, body any) *http.Response {
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, srv.URL+path, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

var goodHeaders = map[string]string{"x-api-key": key, "anthropic-version": "2023-06-01"}

func request(stream bool, msgs ...map[string]any) map[string]any {
	return map[string]any{"model": "claude-opus-5-5", "max_tokens": 1024, "stream": stream, "messages": msgs,
		"tools": []map[string]any{{"name": "Bash", "input_schema": map[string]any{"type": "object"}}}}
}

func user(text string) map[string]any { return map[string]any{"role": "user", "content": text} }

// sse is one Server-Sent Event.
type sse struct {
	name string
	data map[string]any
}

func readSSE(t *testing.T, r io.Reader) []sse {
	t.Helper()
	var out []sse
	sc := bufio.NewScanner(r)
	var cur sse
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &cur.data); err != nil {
				t.Fatalf("data is not JSON: %q", line)
			}
		case line == "":
			if cur.name == "" || cur.data == nil {
				t.Fatalf("an event without a name or data")
			}
			if cur.data["type"] != cur.name {
				t.Errorf("event %q carries data of type %v; the two must agree", cur.name, cur.data["type"])
			}
			out = append(out, cur)
			cur = sse{}
		}
	}
	return out
}

// TestStreamShape: the documented flow — message_start with empty content,
// per block start/deltas/stop in index order, message_delta with the stop
// reason and usage, message_stop — and a tool call's input rebuilt from
// its input_json_delta pieces.
func TestStreamShape(t *testing.T) {
	srv := httptest.NewServer(New(key))
	defer srv.Close()
	resp := post(t, srv, "/v1/messages?beta=true", goodHeaders,
		request(true, user("Do it.\n@@say Looking…\n@@bash echo \"hi there\" > out.txt")))
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := readSSE(t, resp.Body)
	var names []string
	for _, e := range events {
		if len(names) == 0 || names[len(names)-1] != e.name {
			names = append(names, e.name) // runs of deltas count once
		}
	}
	want := []string{"message_start", "ping", "content_block_start", "content_block_delta", "content_block_stop",
		"content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Fatalf("event flow (-want +got):\n%s", diff)
	}
	start := events[0].data["message"].(map[string]any)
	if c := start["content"].([]any); len(c) != 0 || start["stop_reason"] != nil || start["role"] != "assistant" {
		t.Errorf("message_start: %v; want empty content, null stop_reason", start)
	}
	var text, input strings.Builder
	for _, e := range events {
		if e.name != "content_block_delta" {
			continue
		}
		d := e.data["delta"].(map[string]any)
		switch d["type"] {
		case "text_delta":
			text.WriteString(d["text"].(string))
		case "input_json_delta":
			input.WriteString(d["partial_json"].(string))
		}
	}
	if text.String() != "Looking…" {
		t.Errorf("text = %q", text.String())
	}
	var in map[string]any
	if err := json.Unmarshal([]byte(input.String()), &in); err != nil || in["command"] != `echo "hi there" > out.txt` {
		t.Errorf("tool input %q: %v", input.String(), err)
	}
	md := events[len(events)-2].data
	if md["delta"].(map[string]any)["stop_reason"] != "tool_use" || md["usage"].(map[string]any)["output_tokens"] != float64(OutputTokensPerCall) {
		t.Errorf("message_delta: %v; want stop_reason tool_use and the output usage", md)
	}
}

// TestScriptedTurns: each request gets the turn after the assistant
// messages already in its history; a tool result continues the script.
func TestScriptedTurns(t *testing.T) {
	srv := httptest.NewServer(New(key))
	defer srv.Close()
	prompt := user("@@write a.txt one\n@@bash cat a.txt\n@@reply All done.")
	toolResult := map[string]any{"role": "user", "content": []map[string]any{{"type": "tool_result", "tool_use_id": "x", "content": "ok"}}}
	assistant := map[string]any{"role": "assistant", "content": []map[string]any{{"type": "tool_use", "id": "x", "name": "Write", "input": map[string]any{}}}}
	tests := []struct {
		name     string
		msgs     []map[string]any
		wantStop string
		wantTool string
		wantText string
	}{
		{"first turn", []map[string]any{prompt}, "tool_use", "Write", ""},
		{"second turn", []map[string]any{prompt, assistant, toolResult}, "tool_use", "Bash", ""},
		{"last turn", []map[string]any{prompt, assistant, toolResult, assistant, toolResult}, "end_turn", "", "All done."},
		{"past the end", []map[string]any{prompt, assistant, toolResult, assistant, toolResult, assistant, toolResult}, "end_turn", "", "Done."},
		{"a later prompt starts over", []map[string]any{prompt, assistant, toolResult, user("@@reply Next.")}, "end_turn", "", "Next."},
		{"no script", []map[string]any{user("hello")}, "end_turn", "", "Hello from the fake Anthropic API."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := post(t, srv, "/v1/messages", goodHeaders, request(false, tc.msgs...))
			var m struct {
				StopReason string `json:"stop_reason"`
				Content    []struct {
					Type, Name, Text string
				} `json:"content"`
				Usage map[string]any `json:"usage"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
				t.Fatal(err)
			}
			last := m.Content[len(m.Content)-1]
			if m.StopReason != tc.wantStop || last.Name != tc.wantTool || last.Text != tc.wantText {
				t.Errorf("got stop %q, tool %q, text %q; want %q, %q, %q", m.StopReason, last.Name, last.Text, tc.wantStop, tc.wantTool, tc.wantText)
			}
			if m.Usage["input_tokens"] != float64(InputTokensPerCall) {
				t.Errorf("usage %v", m.Usage)
			}
		})
	}
}

// errorBody is Anthropic's error shape.
type errorBody struct {
	Type  string `json:"type"`
	Error struct {
		Type, Message string
	} `json:"error"`
	RequestID string `json:"request_id"`
}

func TestErrors(t *testing.T) {
	srv := httptest.NewServer(New(key))
	defer srv.Close()
	tests := []struct {
		name     string
		path     string
		hdr      map[string]string
		body     any
		status   int
		errType  string
		inMsg    string
		retryHdr bool
	}{
		{"no credential", "/v1/messages", map[string]string{"anthropic-version": "2023-06-01"}, request(false, user("x")), 401, "authentication_error", "x-api-key header is required", false},
		{"wrong key", "/v1/messages", map[string]string{"x-api-key": "sk-ant-other", "anthropic-version": "2023-06-01"}, request(false, user("x")), 401, "authentication_error", "invalid x-api-key", false},
		{"wrong bearer", "/v1/messages", map[string]string{"Authorization": "Bearer sk-ant-oat01-other", "anthropic-version": "2023-06-01"}, request(false, user("x")), 401, "authentication_error", "Invalid bearer token", false},
		{"no version", "/v1/messages", map[string]string{"x-api-key": key}, request(false, user("x")), 400, "invalid_request_error", "anthropic-version", false},
		{"no model", "/v1/messages", goodHeaders, map[string]any{"max_tokens": 1, "messages": []any{user("x")}}, 400, "invalid_request_error", "model", false},
		{"no messages", "/v1/messages", goodHeaders, map[string]any{"model": "m", "max_tokens": 1}, 400, "invalid_request_error", "messages", false},
		{"scripted 400", "/v1/messages", goodHeaders, request(false, user("@@error 400")), 400, "invalid_request_error", "tool_use_id", false},
		{"scripted 401", "/v1/messages", goodHeaders, request(true, user("@@error 401")), 401, "authentication_error", "invalid x-api-key", false},
		{"scripted 403", "/v1/messages", goodHeaders, request(true, user("@@error 403")), 403, "permission_error", "permission", false},
		{"scripted 429", "/v1/messages", goodHeaders, request(true, user("@@error 429")), 429, "rate_limit_error", "rate limit", true},
		{"scripted 500", "/v1/messages", goodHeaders, request(true, user("@@error 500")), 500, "api_error", "Internal", false},
		{"scripted 529", "/v1/messages", goodHeaders, request(true, user("@@error 529")), 529, "overloaded_error", "Overloaded", true},
		{"prompt too long", "/v1/messages", goodHeaders, request(true, user("@@error prompt-too-long")), 400, "invalid_request_error", "prompt is too long", false},
		{"unknown path", "/api/claude_code/settings", goodHeaders, map[string]any{}, 404, "not_found_error", "Not Found", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := post(t, srv, tc.path, tc.hdr, tc.body)
			var e errorBody
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status || e.Type != "error" || e.Error.Type != tc.errType || !strings.Contains(e.Error.Message, tc.inMsg) {
				t.Errorf("got %d %+v; want %d %s containing %q", resp.StatusCode, e, tc.status, tc.errType, tc.inMsg)
			}
			if !strings.HasPrefix(e.RequestID, "req_") || resp.Header.Get("Request-Id") != e.RequestID {
				t.Errorf("request id %q / header %q", e.RequestID, resp.Header.Get("Request-Id"))
			}
			if got := resp.Header.Get("Retry-After") != ""; got != tc.retryHdr {
				t.Errorf("Retry-After present: %v; want %v", got, tc.retryHdr)
			}
		})
	}
}

// TestRecordsRequests: every request is kept with its headers, so tests
// can tell which credential arrived and what was asked besides messages.
func TestRecordsRequests(t *testing.T) {
	s := New(key)
	srv := httptest.NewServer(s)
	defer srv.Close()
	var hooked int
	s.OnMessages(func(Request) { hooked++ })
	post(t, srv, "/v1/messages?beta=true", goodHeaders, request(false, user("hi")))
	post(t, srv, "/v1/messages/count_tokens", goodHeaders, request(false, user("hi")))
	post(t, srv, "/v1/messages", map[string]string{"Authorization": "Bearer " + key, "anthropic-version": "2023-06-01"}, request(false, user("hi")))
	post(t, srv, "/api/hello", nil, map[string]any{})
	reqs := s.Requests()
	if got := Transcript(reqs); got != "POST /v1/messages?beta=true 200 x-api-key\nPOST /v1/messages/count_tokens 200 x-api-key\n"+
		"POST /v1/messages 200 authorization\nPOST /api/hello 404 -\n" {
		t.Errorf("transcript:\n%s", got)
	}
	if reqs[0].APIKey() != key || reqs[2].APIKey() != key || reqs[3].APIKey() != "" {
		t.Errorf("APIKey: %q %q %q", reqs[0].APIKey(), reqs[2].APIKey(), reqs[3].APIKey())
	}
	if n := len(s.MessagesRequests()); n != 2 || hooked != 2 {
		t.Errorf("messages requests %d, hook calls %d; want 2 and 2", n, hooked)
	}
	s.SetKeys("sk-ant-rotated")
	if resp := post(t, srv, "/v1/messages", goodHeaders, request(false, user("hi"))); resp.StatusCode != 401 {
		t.Errorf("after SetKeys the old key got %d; want 401", resp.StatusCode)
	}
}

// TestHelperRequests: a request offering no tools (a title or topic
// helper) gets a short text, and a due @@error hits it too.
func TestHelperRequests(t *testing.T) {
	srv := httptest.NewServer(New(key))
	defer srv.Close()
	body := map[string]any{"model": "claude-haiku", "max_tokens": 10, "messages": []any{user("@@bash rm -rf /")}}
	var m struct {
		StopReason string `json:"stop_reason"`
		Content    []struct{ Type, Text string }
	}
	if err := json.NewDecoder(post(t, srv, "/v1/messages", goodHeaders, body).Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	if m.StopReason != "end_turn" || len(m.Content) != 1 || m.Content[0].Type != "text" {
		t.Errorf("helper answer %+v; want one text block", m)
	}
	body["messages"] = []any{user("@@error 529")}
	if resp := post(t, srv, "/v1/messages", goodHeaders, body); resp.StatusCode != 529 {
		t.Errorf("helper with a due error: %d; want 529", resp.StatusCode)
	}
}

func TestChunksKeepRunes(t *testing.T) {
	s := strings.Repeat("é…", 20)
	var got strings.Builder
	for _, c := range chunks(s, 5) {
		if !utf8Valid(c) {
			t.Fatalf("chunk %q cuts a rune", c)
		}
		got.WriteString(c)
	}
	if got.String() != s {
		t.Errorf("rejoined %q", got.String())
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }
