package agent

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"unicode/utf8"
)

// Event is one line of Claude Code's stream-json output, decoded only as far
// as the gateway needs. Fields that a type does not carry are zero.
type Event struct {
	Type      string `json:"type"`
	Subtype   string `json:"subtype,omitempty"`
	SessionID string `json:"session_id,omitempty"`

	// system/init
	Model string   `json:"model,omitempty"`
	Tools []string `json:"tools,omitempty"`
	Cwd   string   `json:"cwd,omitempty"`

	// assistant and user
	Message *Message `json:"message,omitempty"`

	// result
	Result         json.RawMessage `json:"result,omitempty"`
	IsError        bool            `json:"is_error,omitempty"`
	DurationMS     int64           `json:"duration_ms,omitempty"`
	NumTurns       int             `json:"num_turns,omitempty"`
	TotalCostUSD   float64         `json:"total_cost_usd,omitempty"`
	Usage          *Usage          `json:"usage,omitempty"`
	Errors         []string        `json:"errors,omitempty"`
	TerminalReason string          `json:"terminal_reason,omitempty"`
	APIErrorStatus int             `json:"api_error_status,omitempty"`
}

// Message is the message of an assistant or user event.
type Message struct {
	Model   string  `json:"model,omitempty"`
	Content Content `json:"content,omitempty"`
}

// Content is a message's content blocks. Claude Code writes a user prompt
// as a bare string; that is decoded as a single text block.
type Content []Block

// UnmarshalJSON accepts both a block list and a bare string.
func (c *Content) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		*c = Content{{Type: "text", Text: s}}
		return nil
	}
	var blocks []Block
	if err := json.Unmarshal(data, &blocks); err != nil {
		return err
	}
	*c = blocks
	return nil
}

// Block is one content block: text, tool_use or tool_result.
type Block struct {
	Type  string          `json:"type"`
	Text  string          `json:"text,omitempty"`
	ID    string          `json:"id,omitempty"`
	Name  string          `json:"name,omitempty"`
	Input json.RawMessage `json:"input,omitempty"`
	// tool_result
	ToolUseID string          `json:"tool_use_id,omitempty"`
	Content   json.RawMessage `json:"content,omitempty"`
	IsError   bool            `json:"is_error,omitempty"`
}

// Usage is the token usage reported in a result event.
type Usage struct {
	InputTokens              int64          `json:"input_tokens"`
	OutputTokens             int64          `json:"output_tokens"`
	CacheCreationInputTokens int64          `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64          `json:"cache_read_input_tokens"`
	ServerToolUse            *ServerToolUse `json:"server_tool_use,omitempty"`
}

// ServerToolUse counts tools the API ran server-side.
type ServerToolUse struct {
	WebSearchRequests int `json:"web_search_requests"`
	WebFetchRequests  int `json:"web_fetch_requests"`
}

// Todo is one item of the agent's TodoWrite list.
type Todo struct {
	Content    string `json:"content"`
	Status     string `json:"status"` // pending, in_progress, completed
	ActiveForm string `json:"activeForm,omitempty"`
}

// Event types and tool names the reader acts on.
const (
	TypeSystem    = "system"
	TypeAssistant = "assistant"
	TypeUser      = "user"
	TypeResult    = "result"

	toolTodoWrite = "TodoWrite"
	toolWebSearch = "WebSearch"
	toolWebFetch  = "WebFetch"
)

// NoOutputReply is the reply when a run produced no text at all.
const NoOutputReply = "The agent finished without producing any output."

// ParseEvent decodes one stream-json line.
func ParseEvent(line []byte) (Event, error) {
	var ev Event
	err := json.Unmarshal(line, &ev)
	return ev, err
}

// Result is what a run's output amounts to.
type Result struct {
	SessionID  string
	Model      string // from system/init
	Reply      string
	Usage      Usage
	CostUSD    float64
	NumTurns   int
	DurationMS int64
	IsError    bool

	WebSearches int
	WebFetches  int
	Todos       []Todo

	Events        int // lines that decoded as events, known or not
	UnknownEvents int // events of a type this package does not know
	BadLines      int // lines that were not JSON objects

	// Tail is the last raw output lines, for replies that quote a failure.
	Tail []string
}

// DefaultTailLines is how many raw lines NewReader keeps when asked for 0.
const DefaultTailLines = 20

// maxTailLineBytes caps each kept raw line: a single tool result can be
// megabytes long and the tail is only for a human-readable error reply.
const maxTailLineBytes = 2000

// Reader accumulates a run's stream-json output line by line. It is safe for
// use by one feeding goroutine and any number of goroutines reading Result.
type Reader struct {
	// OnTodo, when set, gets the whole todo list each time the agent calls
	// TodoWrite. It runs on the feeding goroutine and must not block.
	OnTodo func([]Todo)

	mu            sync.Mutex
	tailMax       int
	tail          []string
	initSession   string
	model         string
	results       []resultData
	texts         []string // joined text of each assistant event that had text
	toolSearches  int
	toolFetches   int
	todos         []Todo
	events        int
	unknown       int
	bad           int
	promptTooLong bool
	sessionLost   bool
}

type resultData struct {
	sessionID  string
	text       string
	usage      Usage
	cost       float64
	numTurns   int
	durationMS int64
	isError    bool
}

// NewReader returns a Reader that keeps the last tailLines raw lines
// (DefaultTailLines when tailLines <= 0).
func NewReader(tailLines int) *Reader {
	if tailLines <= 0 {
		tailLines = DefaultTailLines
	}
	return &Reader{tailMax: tailLines}
}

// Feed processes one line of output. Garbage and unknown event types are
// counted, never fatal: a Claude Code upgrade must not break replies.
func (r *Reader) Feed(line []byte) {
	line = bytes.TrimRight(line, "\r\n")
	var todos []Todo
	r.mu.Lock()
	r.keepTail(line)
	trimmed := bytes.TrimSpace(line)
	switch {
	case len(trimmed) == 0:
	case trimmed[0] != '{':
		r.bad++
		r.scanText(string(trimmed))
	default:
		ev, err := ParseEvent(trimmed)
		if err != nil {
			r.bad++
			r.scanText(string(trimmed))
			break
		}
		r.events++
		todos = r.apply(&ev)
	}
	cb := r.OnTodo
	r.mu.Unlock()
	if todos != nil && cb != nil {
		cb(todos)
	}
}

func (r *Reader) keepTail(line []byte) {
	if len(line) == 0 {
		return
	}
	s := string(line)
	if len(s) > maxTailLineBytes {
		cut := maxTailLineBytes
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	if len(r.tail) == r.tailMax {
		copy(r.tail, r.tail[1:])
		r.tail = r.tail[:len(r.tail)-1]
	}
	r.tail = append(r.tail, s)
}

// apply folds one event into the state and returns a new todo list when the
// event carried one.
func (r *Reader) apply(ev *Event) []Todo {
	var todos []Todo
	switch ev.Type {
	case TypeSystem:
		if ev.Subtype == "init" {
			if ev.SessionID != "" {
				r.initSession = ev.SessionID
			}
			r.model = ev.Model
		}
	case TypeAssistant:
		if ev.Message == nil {
			return nil
		}
		var parts []string
		for _, b := range ev.Message.Content {
			switch b.Type {
			case "text":
				if b.Text != "" {
					parts = append(parts, b.Text)
				}
			case "tool_use":
				switch b.Name {
				case toolWebSearch:
					r.toolSearches++
				case toolWebFetch:
					r.toolFetches++
				case toolTodoWrite:
					if t, ok := parseTodos(b.Input); ok {
						r.todos = t
						todos = t
					}
				}
			}
		}
		if len(parts) > 0 {
			text := strings.Join(parts, "\n\n")
			r.texts = append(r.texts, text)
			// Claude Code reports API failures as a synthetic assistant
			// message before the result; scan it like the result text.
			if ev.Message.Model == "<synthetic>" {
				r.scanText(text)
			}
		}
	case TypeUser:
		// Tool results carry file contents and command output: never scan
		// them for error markers, or reading a log would misclassify a run.
	case TypeResult:
		rd := resultData{
			sessionID:  ev.SessionID,
			text:       resultText(ev.Result),
			cost:       ev.TotalCostUSD,
			numTurns:   ev.NumTurns,
			durationMS: ev.DurationMS,
			isError:    ev.IsError,
		}
		if ev.Usage != nil {
			rd.usage = *ev.Usage
		}
		r.results = append(r.results, rd)
		if ev.TerminalReason == "prompt_too_long" {
			r.promptTooLong = true
		}
		if ev.IsError {
			r.scanText(rd.text)
			for _, e := range ev.Errors {
				r.scanText(e)
			}
			if isSessionAPIStatus(ev.APIErrorStatus) {
				r.sessionLost = true
			}
		}
	default:
		r.unknown++
	}
	return todos
}

// scanText looks for the markers Claude Code prints when a session cannot
// continue.
func (r *Reader) scanText(s string) {
	pt, sl := errorMarkers(s)
	r.promptTooLong = r.promptTooLong || pt
	r.sessionLost = r.sessionLost || sl
}

// Markers Claude Code prints for runs that cannot go on:
//   - "Prompt is too long" is the result text (terminal_reason
//     "prompt_too_long") when the context is exhausted; older versions print
//     the API's own "prompt is too long: N tokens > M maximum".
//   - "No conversation found with session ID: <id>" is printed (stderr, or
//     in a result's errors) when --resume names a session it does not have.
//   - "API Error: 4xx …" is how an API rejection of the request is shown,
//     typically a transcript the API no longer accepts.
const (
	markerPromptTooLong  = "prompt is too long"
	markerNoConversation = "no conversation found with session id"
	markerAPIError       = "api error: 4"
	markerRateLimit      = "api error: 429"
)

func errorMarkers(s string) (promptTooLong, sessionLost bool) {
	l := strings.ToLower(s)
	promptTooLong = strings.Contains(l, markerPromptTooLong)
	sessionLost = strings.Contains(l, markerNoConversation) ||
		(strings.Contains(l, markerAPIError) && !strings.Contains(l, markerRateLimit))
	return promptTooLong, sessionLost
}

// isSessionAPIStatus reports whether an API status says the request itself
// was rejected. 429 is a rate limit, not a broken session: retrying with a
// fresh session would only lose context.
func isSessionAPIStatus(status int) bool {
	return status >= 400 && status < 500 && status != 429
}

func parseTodos(input json.RawMessage) ([]Todo, bool) {
	var in struct {
		Todos []Todo `json:"todos"`
	}
	if err := json.Unmarshal(input, &in); err != nil || in.Todos == nil {
		return nil, false
	}
	return in.Todos, true
}

// resultText reads a result's text, which is normally a string but has been
// seen as a message object with content blocks.
func resultText(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s
	}
	var m Message
	if err := json.Unmarshal(raw, &m); err != nil {
		return ""
	}
	var parts []string
	for _, b := range m.Content {
		if b.Type == "text" && b.Text != "" {
			parts = append(parts, b.Text)
		}
	}
	return strings.Join(parts, "\n\n")
}

// Result returns what was read so far. It may be called while lines are
// still being fed.
func (r *Reader) Result() Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := Result{
		SessionID:     r.initSession,
		Model:         r.model,
		Reply:         r.reply(),
		Todos:         append([]Todo(nil), r.todos...),
		Events:        r.events,
		UnknownEvents: r.unknown,
		BadLines:      r.bad,
		Tail:          append([]string(nil), r.tail...),
		WebSearches:   r.toolSearches,
		WebFetches:    r.toolFetches,
	}
	if n := len(r.results); n > 0 {
		last := r.results[n-1]
		if last.sessionID != "" {
			res.SessionID = last.sessionID
		}
		// Usage and cost are cumulative in each result; turns and duration
		// are per result, and a run has several when background work ends
		// after the main answer.
		res.Usage = last.usage
		res.CostUSD = last.cost
		res.IsError = last.isError
		for _, rd := range r.results {
			res.NumTurns += rd.numTurns
			res.DurationMS += rd.durationMS
		}
		// WebSearch and WebFetch tool calls are themselves served by the
		// API's server tools, so the two counts overlap: take the larger.
		if stu := last.usage.ServerToolUse; stu != nil {
			res.WebSearches = max(res.WebSearches, stu.WebSearchRequests)
			res.WebFetches = max(res.WebFetches, stu.WebFetchRequests)
		}
	}
	return res
}

// Lookback rule for the reply: a substantive answer is often followed by a
// tool call and a one-line closing remark, which alone would be a useless
// reply.
const (
	replyLookback = 4
	replyRatio    = 4
)

func (r *Reader) reply() string {
	if len(r.results) > 1 {
		var texts []string
		for _, rd := range r.results {
			if rd.text != "" {
				texts = append(texts, rd.text)
			}
		}
		if len(texts) > 0 {
			return strings.Join(texts, "\n\n")
		}
	}
	if n := len(r.texts); n > 0 {
		last := r.texts[n-1]
		threshold := replyRatio * utf8.RuneCountInString(last)
		anchor := n - 1
		for i := max(0, n-1-replyLookback); i < n-1; i++ {
			if utf8.RuneCountInString(r.texts[i]) >= threshold {
				anchor = i // the latest one wins: least reach-back into narration
			}
		}
		return strings.Join(r.texts[anchor:], "\n\n")
	}
	if n := len(r.results); n > 0 && r.results[n-1].text != "" {
		return r.results[n-1].text
	}
	return NoOutputReply
}
