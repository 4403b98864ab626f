// Package fakeapi is a local stand-in for Anthropic's Messages API, for
// tests that run the real Claude Code CLI where no model is reachable.
//
// It speaks the wire protocol as Anthropic documents it: POST /v1/messages
// answers either one JSON Message or, with "stream": true, Server-Sent
// Events (message_start, content_block_start/delta/stop with text_delta and
// input_json_delta, message_delta with usage, message_stop, and ping);
// errors are Anthropic's error JSON ({"type":"error","error":{"type",
// "message"},"request_id"}) with the status the real service uses. It
// verifies what the real service verifies before answering: the
// credential (x-api-key, or Authorization: Bearer for an OAuth token), the
// anthropic-version header and the request body's shape.
//
// Every request is recorded with its headers, so tests can prove which
// credential arrived (the real one, swapped in by the proxy) and what the
// CLI asks for besides completions. Paths it does not implement get the
// real service's 404 error body.
//
// # Scripts
//
// The model's behaviour is scripted in the prompt, like fakeclaude's: the
// current prompt (the last user message that is not tool results) may hold
// lines starting with @@, read in order. Each line is one content block or
// one event; a tool call ends the assistant turn, and the next request
// (carrying the tool result) gets the next turn.
//
//	@@say <text>               a text block in the current turn
//	@@bash <command>           a Bash tool call (ends the turn)
//	@@write <path> <text>      a Write tool call (\n in text is a newline)
//	@@tool <Name> <json>       any tool call with that input
//	@@reply <text>             the final text (ends the script)
//	@@error <kind>             answer this turn with an API error: 400,
//	                           401, 403, 429, 500, 529 or prompt-too-long
//
// A prompt without a script gets a one-line greeting. Requests that are
// not the agent's main loop (no tools offered: title and topic helpers)
// get a short fixed answer, unless an @@error is due.
package fakeapi

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Usage per response: fixed, so a test can compute what each request costs.
const (
	InputTokensPerCall  = 1000
	OutputTokensPerCall = 100
)

// Request is one request the fake received, as it arrived.
type Request struct {
	Time   time.Time
	Method string
	Path   string // with query
	Header http.Header
	Body   []byte
	// Status is what the fake answered.
	Status int
}

// APIKey is the credential the request carried: x-api-key, else the
// Bearer token of Authorization.
func (r Request) APIKey() string {
	if k := r.Header.Get("X-Api-Key"); k != "" {
		return k
	}
	if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
		return strings.TrimPrefix(a, "Bearer ")
	}
	return ""
}

// Server is the fake API. The zero value is not usable: call New.
type Server struct {
	// keys are the accepted credentials; a request with any other is
	// refused with 401, as the real service does.
	keys []string

	mu   sync.Mutex
	reqs []Request
	// onMessages, when set, is called with each /v1/messages request
	// before it is answered (benchmarks wait on it).
	onMessages func(Request)
}

// New returns a fake that accepts the given credentials.
func New(keys ...string) *Server {
	return &Server{keys: append([]string(nil), keys...)}
}

// SetKeys replaces the accepted credentials: a key revoked mid-test.
func (s *Server) SetKeys(keys ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append([]string(nil), keys...)
}

// OnMessages sets a hook called at each /v1/messages request, before the
// answer is written. It must not block.
func (s *Server) OnMessages(f func(Request)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onMessages = f
}

// Requests returns every request received so far, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// MessagesRequests returns the /v1/messages requests received so far.
func (s *Server) MessagesRequests() []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Method == http.MethodPost && strings.HasPrefix(r.Path, "/v1/messages") && !strings.HasPrefix(r.Path, "/v1/messages/") {
			out = append(out, r)
		}
	}
	return out
}

// Reset forgets the requests received so far.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = nil
}

func (s *Server) record(r *http.Request, body []byte, status int) Request {
	rec := Request{Time: time.Now(), Method: r.Method, Path: r.URL.RequestURI(), Header: r.Header.Clone(), Body: body, Status: status}
	s.mu.Lock()
	s.reqs = append(s.reqs, rec)
	hook := s.onMessages
	s.mu.Unlock()
	if hook != nil && r.Method == http.MethodPost && r.URL.Path == "/v1/messages" {
		hook(rec)
	}
	return rec
}

// ServeHTTP answers like api.anthropic.com.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		s.record(r, body, http.StatusBadRequest)
		writeError(w, http.StatusBadRequest, "invalid_request_error", "could not read the request body")
		return
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/messages":
		s.messages(w, r, body)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/messages/count_tokens":
		if status, typ, msg := s.check(r); status != 0 {
			s.record(r, body, status)
			writeError(w, status, typ, msg)
			return
		}
		s.record(r, body, http.StatusOK)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"input_tokens":%d}`, InputTokensPerCall)
	default:
		// The real service answers unknown paths with its error shape.
		s.record(r, body, http.StatusNotFound)
		writeError(w, http.StatusNotFound, "not_found_error", "Not Found")
	}
}

// check verifies the credential and version header as the real service
// does, returning a non-zero status when the request is refused.
func (s *Server) check(r *http.Request) (status int, typ, msg string) {
	key := r.Header.Get("X-Api-Key")
	bearer := strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ")
	if key == "" && !bearer {
		return http.StatusUnauthorized, "authentication_error", "x-api-key header is required"
	}
	got := Request{Header: r.Header}.APIKey()
	ok := false
	s.mu.Lock()
	keys := s.keys
	s.mu.Unlock()
	for _, k := range keys {
		if subtle.ConstantTimeCompare([]byte(got), []byte(k)) == 1 {
			ok = true
		}
	}
	if !ok {
		if bearer && key == "" {
			return http.StatusUnauthorized, "authentication_error", "Invalid bearer token"
		}
		return http.StatusUnauthorized, "authentication_error", "invalid x-api-key"
	}
	if r.Header.Get("Anthropic-Version") == "" {
		return http.StatusBadRequest, "invalid_request_error", "anthropic-version: header is required"
	}
	return 0, "", ""
}

// messagesRequest is the part of a Messages API request the fake reads.
type messagesRequest struct {
	Model     string          `json:"model"`
	MaxTokens int             `json:"max_tokens"`
	Messages  []inMessage     `json:"messages"`
	Stream    bool            `json:"stream"`
	Tools     json.RawMessage `json:"tools"`
}

type inMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type inBlock struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

func (m inMessage) blocks() []inBlock {
	if len(m.Content) > 0 && m.Content[0] == '"' {
		var s string
		_ = json.Unmarshal(m.Content, &s)
		return []inBlock{{Type: "text", Text: s}}
	}
	var bs []inBlock
	_ = json.Unmarshal(m.Content, &bs)
	return bs
}

func (s *Server) messages(w http.ResponseWriter, r *http.Request, body []byte) {
	if status, typ, msg := s.check(r); status != 0 {
		s.record(r, body, status)
		writeError(w, status, typ, msg)
		return
	}
	var req messagesRequest
	if err := json.Unmarshal(body, &req); err != nil {
		s.record(r, body, http.StatusBadRequest)
		writeError(w, http.StatusBadRequest, "invalid_request_error", "The request body is not valid JSON: "+err.Error())
		return
	}
	switch {
	case req.Model == "":
		s.record(r, body, http.StatusBadRequest)
		writeError(w, http.StatusBadRequest, "invalid_request_error", "model: Field required")
		return
	case req.MaxTokens < 1:
		s.record(r, body, http.StatusBadRequest)
		writeError(w, http.StatusBadRequest, "invalid_request_error", "max_tokens: Field required")
		return
	case len(req.Messages) == 0:
		s.record(r, body, http.StatusBadRequest)
		writeError(w, http.StatusBadRequest, "invalid_request_error", "messages: at least one message is required")
		return
	}
	turn, errKind := plan(req)
	if errKind != "" {
		status, typ, msg := apiError(errKind)
		s.record(r, body, status)
		if status == http.StatusTooManyRequests || status == 529 {
			w.Header().Set("Retry-After", "0")
		}
		writeError(w, status, typ, msg)
		return
	}
	s.record(r, body, http.StatusOK)
	msg := message{ID: "msg_" + randID(24), Model: req.Model, Blocks: turn.blocks, StopReason: turn.stop}
	if req.Stream {
		writeStream(w, msg)
		return
	}
	writeJSON(w, msg)
}

// turn is one assistant message the fake sends.
type turn struct {
	blocks []outBlock
	stop   string // end_turn or tool_use
}

type outBlock struct {
	Type  string         `json:"type"`
	Text  string         `json:"text,omitempty"`
	ID    string         `json:"id,omitempty"`
	Name  string         `json:"name,omitempty"`
	Input map[string]any `json:"input,omitempty"`
}

// plan decides the answer to a request from the script in its prompt.
func plan(req messagesRequest) (turn, string) {
	prompt, after := currentPrompt(req.Messages)
	steps := parseScript(prompt)
	if len(req.Tools) == 0 || string(req.Tools) == "null" || string(req.Tools) == "[]" {
		// A helper request (title, topic, summary): no tools to call. An
		// error due in the script hits it too, as a broken key would.
		for _, st := range steps {
			if st.cmd == "error" {
				return turn{}, st.arg
			}
		}
		return turn{blocks: []outBlock{{Type: "text", Text: "Scripted task"}}, stop: "end_turn"}, ""
	}
	if len(steps) == 0 {
		return turn{blocks: []outBlock{{Type: "text", Text: "Hello from the fake Anthropic API."}}, stop: "end_turn"}, ""
	}
	// Split the script into turns: a tool call ends one.
	var turns []turn
	var cur turn
	for _, st := range steps {
		switch st.cmd {
		case "say", "reply":
			cur.blocks = append(cur.blocks, outBlock{Type: "text", Text: unescape(st.arg)})
		case "error":
			cur.blocks = append(cur.blocks, outBlock{Type: "error", Text: st.arg})
			turns = append(turns, cur)
			cur = turn{}
		default:
			cur.blocks = append(cur.blocks, toolBlock(st))
			cur.stop = "tool_use"
			turns = append(turns, cur)
			cur = turn{}
		}
	}
	if len(cur.blocks) > 0 {
		cur.stop = "end_turn"
		turns = append(turns, cur)
	}
	if after >= len(turns) {
		return turn{blocks: []outBlock{{Type: "text", Text: "Done."}}, stop: "end_turn"}, ""
	}
	t := turns[after]
	if n := len(t.blocks); n > 0 && t.blocks[n-1].Type == "error" {
		return turn{}, t.blocks[n-1].Text
	}
	if t.stop == "" {
		t.stop = "end_turn"
	}
	return t, ""
}

// currentPrompt finds the last user message that is a prompt (has text and
// no tool results) and counts the assistant messages after it: the turn
// the model is on.
func currentPrompt(msgs []inMessage) (string, int) {
	for i := len(msgs) - 1; i >= 0; i-- {
		m := msgs[i]
		if m.Role != "user" {
			continue
		}
		var text []string
		tool := false
		for _, b := range m.blocks() {
			switch b.Type {
			case "text":
				text = append(text, b.Text)
			case "tool_result":
				tool = true
			}
		}
		if tool || len(text) == 0 {
			continue
		}
		after := 0
		for _, later := range msgs[i+1:] {
			if later.Role == "assistant" {
				after++
			}
		}
		return strings.Join(text, "\n"), after
	}
	return "", 0
}

type step struct{ cmd, arg string }

func parseScript(prompt string) []step {
	var steps []step
	for line := range strings.SplitSeq(prompt, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "@@") {
			continue
		}
		cmd, arg, _ := strings.Cut(line[2:], " ")
		switch cmd {
		case "say", "bash", "write", "tool", "reply", "error":
			steps = append(steps, step{cmd: cmd, arg: strings.TrimSpace(arg)})
		}
	}
	return steps
}

func toolBlock(st step) outBlock {
	b := outBlock{Type: "tool_use", ID: "toolu_" + randID(24)}
	switch st.cmd {
	case "bash":
		b.Name, b.Input = "Bash", map[string]any{"command": st.arg, "description": "scripted command"}
	case "write":
		path, text, _ := strings.Cut(st.arg, " ")
		b.Name, b.Input = "Write", map[string]any{"file_path": path, "content": unescape(text)}
	case "tool":
		name, input, _ := strings.Cut(st.arg, " ")
		b.Name, b.Input = name, map[string]any{}
		if input != "" {
			if err := json.Unmarshal([]byte(input), &b.Input); err != nil {
				b.Input = map[string]any{"invalid_script_input": input}
			}
		}
	}
	return b
}

func unescape(s string) string { return strings.ReplaceAll(s, `\n`, "\n") }

// apiError maps a script's error kind to the real service's answer.
func apiError(kind string) (int, string, string) {
	switch kind {
	case "401":
		return http.StatusUnauthorized, "authentication_error", "invalid x-api-key"
	case "403":
		return http.StatusForbidden, "permission_error", "Your API key does not have permission to use the specified resource."
	case "429":
		return http.StatusTooManyRequests, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"
	case "500":
		return http.StatusInternalServerError, "api_error", "Internal server error"
	case "529":
		return 529, "overloaded_error", "Overloaded"
	case "prompt-too-long":
		return http.StatusBadRequest, "invalid_request_error", "prompt is too long: 212345 tokens > 200000 maximum"
	default: // "400" and anything unknown
		return http.StatusBadRequest, "invalid_request_error", "messages.1.content.0: unexpected tool_use_id found in tool_result blocks"
	}
}

func writeError(w http.ResponseWriter, status int, typ, msg string) {
	id := "req_" + randID(24)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Request-Id", id)
	w.WriteHeader(status)
	body, _ := json.Marshal(map[string]any{
		"type":       "error",
		"error":      map[string]string{"type": typ, "message": msg},
		"request_id": id,
	})
	_, _ = w.Write(body)
}

// message is one answer, rendered as JSON or as an event stream.
type message struct {
	ID         string
	Model      string
	Blocks     []outBlock
	StopReason string
}

func usage(out int) map[string]any {
	return map[string]any{
		"input_tokens": InputTokensPerCall, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
		"output_tokens": out, "service_tier": "standard",
	}
}

func writeJSON(w http.ResponseWriter, m message) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Request-Id", "req_"+randID(24))
	_ = json.NewEncoder(w).Encode(map[string]any{
		"id": m.ID, "type": "message", "role": "assistant", "model": m.Model,
		"content": m.Blocks, "stop_reason": m.StopReason, "stop_sequence": nil,
		"usage": usage(OutputTokensPerCall),
	})
}

// writeStream writes the documented event flow: message_start with empty
// content and the input usage; per block a content_block_start, deltas
// and content_block_stop; a message_delta with the stop reason and the
// cumulative output usage; message_stop. A ping goes after message_start,
// as the real service sends one.
func writeStream(w http.ResponseWriter, m message) {
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Request-Id", "req_"+randID(24))
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	event := func(name string, data any) {
		b, _ := json.Marshal(data)
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b)
		if flusher != nil {
			flusher.Flush()
		}
	}
	start := usage(1)
	event("message_start", map[string]any{"type": "message_start", "message": map[string]any{
		"id": m.ID, "type": "message", "role": "assistant", "model": m.Model, "content": []any{},
		"stop_reason": nil, "stop_sequence": nil, "usage": start,
	}})
	event("ping", map[string]any{"type": "ping"})
	for i, b := range m.Blocks {
		switch b.Type {
		case "text":
			event("content_block_start", map[string]any{"type": "content_block_start", "index": i,
				"content_block": map[string]any{"type": "text", "text": ""}})
			for _, chunk := range chunks(b.Text, 16) {
				event("content_block_delta", map[string]any{"type": "content_block_delta", "index": i,
					"delta": map[string]any{"type": "text_delta", "text": chunk}})
			}
		case "tool_use":
			event("content_block_start", map[string]any{"type": "content_block_start", "index": i,
				"content_block": map[string]any{"type": "tool_use", "id": b.ID, "name": b.Name, "input": map[string]any{}}})
			input, _ := json.Marshal(b.Input)
			// The first delta is empty, as the real service sends it.
			parts := append([]string{""}, chunks(string(input), 12)...)
			for _, p := range parts {
				event("content_block_delta", map[string]any{"type": "content_block_delta", "index": i,
					"delta": map[string]any{"type": "input_json_delta", "partial_json": p}})
			}
		}
		event("content_block_stop", map[string]any{"type": "content_block_stop", "index": i})
	}
	event("message_delta", map[string]any{"type": "message_delta",
		"delta": map[string]any{"stop_reason": m.StopReason, "stop_sequence": nil},
		"usage": map[string]any{"output_tokens": OutputTokensPerCall}})
	event("message_stop", map[string]any{"type": "message_stop"})
}

// chunks splits s into pieces of at most n bytes without cutting a UTF-8
// sequence, as a stream of deltas does.
func chunks(s string, n int) []string {
	var out []string
	for len(s) > n {
		cut := n
		for cut > 0 && !utf8Start(s[cut]) {
			cut--
		}
		if cut == 0 {
			cut = n
		}
		out = append(out, s[:cut])
		s = s[cut:]
	}
	if s != "" {
		out = append(out, s)
	}
	return out
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

func randID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return strings.ToUpper(hex.EncodeToString(b))[:n]
}

// Transcript renders the recorded requests one per line (method, path,
// status, and which auth header carried a credential) for logs and
// golden files.
func Transcript(reqs []Request) string {
	var b bytes.Buffer
	for _, r := range reqs {
		auth := "-"
		switch {
		case r.Header.Get("X-Api-Key") != "":
			auth = "x-api-key"
		case r.Header.Get("Authorization") != "":
			auth = "authorization"
		}
		fmt.Fprintf(&b, "%s %s %d %s\n", r.Method, r.Path, r.Status, auth)
	}
	return b.String()
}
