package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"regexp"
	"strconv"
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

	// assistant: a <synthetic> message the CLI writes for an API failure
	// carries the failure's kind ("authentication_failed", "rate_limit",
	// "invalid_request", "server_error", "unknown") in Error.
	Error string `json:"error,omitempty"`

	// system/api_retry: the status that made the CLI retry.
	ErrorStatus int `json:"error_status,omitempty"`

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
	APIErrorType   string          `json:"api_error_type,omitempty"`
	// ModelUsage is the session's running total per model (on --resume it
	// includes earlier runs); ModelUsageSinceLastResult is what was used
	// since the previous result, so this run's share. nil when absent
	// (older CLIs), empty when nothing was used.
	ModelUsage                map[string]ModelUsage `json:"modelUsage,omitempty"`
	ModelUsageSinceLastResult map[string]ModelUsage `json:"model_usage_since_last_result,omitempty"`
}

// ModelUsage is one model's entry in a result's modelUsage.
type ModelUsage struct {
	InputTokens  int64   `json:"inputTokens"`
	OutputTokens int64   `json:"outputTokens"`
	CostUSD      float64 `json:"costUSD"`
}

// Message is the message of an assistant or user event.
type Message struct {
	// ID is the API message id. The real CLI writes one assistant event per
	// content block; the events of one message share its id.
	ID      string  `json:"id,omitempty"`
	Model   string  `json:"model,omitempty"`
	Content Content `json:"content,omitempty"`
}

// SyntheticModel is the model name of the messages the CLI makes up itself
// (API errors), which are not the agent's words.
const SyntheticModel = "<synthetic>"

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

// Todo is one item of the agent's todo list: a TodoWrite entry (older
// CLIs) or a task of TaskCreate/TaskUpdate (current CLIs, with
// CLAUDE_CODE_ENABLE_TODO_TOOLS=1).
type Todo struct {
	// ID is the CLI's task number for TaskCreate tasks; "" for TodoWrite.
	ID         string `json:"id,omitempty"`
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

	SubtypeInit     = "init"
	SubtypeAPIRetry = "api_retry"

	toolTodoWrite  = "TodoWrite"
	toolTaskCreate = "TaskCreate"
	toolTaskUpdate = "TaskUpdate"
	toolWebSearch  = "WebSearch"
	toolWebFetch   = "WebFetch"
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
	SessionID string
	Model     string // from system/init
	Reply     string
	Usage     Usage
	// CostUSD is what this run cost: the sum of the results'
	// model_usage_since_last_result when the CLI reports it, else the last
	// total_cost_usd less Reader.PrevTotalCostUSD.
	CostUSD float64
	// TotalCostUSD is the session's running total as the CLI last
	// reported it (on --resume it includes earlier runs).
	TotalCostUSD float64
	NumTurns     int
	DurationMS   int64
	IsError      bool

	// What the CLI said about a failure, from its structured fields: the
	// API's HTTP status, the result's terminal_reason, the <synthetic>
	// message's error kind, the result's errors list, and how many times
	// it retried an API call (system/api_retry).
	APIErrorStatus int
	TerminalReason string
	ErrorKind      string
	Errors         []string
	Retries        int

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
	// OnTodo, when set, gets the whole todo list each time the agent
	// changes it (TodoWrite, TaskCreate, TaskUpdate). It runs on the
	// feeding goroutine and must not block.
	OnTodo func([]Todo)
	// PrevTotalCostUSD is the session's running total after the previous
	// run, for CLIs that report only running totals; set it before
	// feeding. Default 0 (a new session).
	PrevTotalCostUSD float64

	mu           sync.Mutex
	tailMax      int
	tail         []string
	initSession  string
	model        string
	results      []resultData
	texts        []message // assistant messages that had text, in order
	toolSearches int
	toolFetches  int
	todos        []Todo
	pendingTasks map[string]int // TaskCreate tool_use id → index in todos
	taskCreates  int
	events       int
	unknown      int
	bad          int
	retries      int
	retryStatus  int    // the last api_retry's status
	retryKind    string // and its error kind
	errorKind    string // the last <synthetic> message's error
	errorStatus  int    // and its api_error_status
	markers      markers
}

// message is one assistant message's text, its blocks joined.
type message struct {
	id   string
	text string
}

type resultData struct {
	sessionID      string
	text           string
	usage          Usage
	total          float64
	since          map[string]ModelUsage // nil: not reported
	numTurns       int
	durationMS     int64
	isError        bool
	errors         []string
	apiStatus      int
	apiType        string
	terminalReason string
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
		r.markers.scan(string(trimmed))
	default:
		ev, err := ParseEvent(trimmed)
		if err != nil {
			r.bad++
			r.markers.scan(string(trimmed))
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
// event changed it.
func (r *Reader) apply(ev *Event) []Todo {
	switch ev.Type {
	case TypeSystem:
		switch ev.Subtype {
		case SubtypeInit:
			if ev.SessionID != "" {
				r.initSession = ev.SessionID
			}
			r.model = ev.Model
		case SubtypeAPIRetry:
			r.retries++
			r.retryStatus, r.retryKind = ev.ErrorStatus, ev.Error
		}
	case TypeAssistant:
		if ev.Message == nil {
			return nil
		}
		if ev.Message.Model == SyntheticModel {
			// The CLI's own words about an API failure: a diagnosis, not
			// the agent's reply.
			r.errorKind, r.errorStatus = ev.Error, ev.APIErrorStatus
			for _, b := range ev.Message.Content {
				r.markers.scan(b.Text)
			}
			return nil
		}
		return r.assistant(ev.Message)
	case TypeUser:
		// Tool results carry file contents and command output: never scan
		// them for error markers, or reading a log would misclassify a run.
		if ev.Message != nil {
			return r.toolResults(ev.Message.Content)
		}
	case TypeResult:
		rd := resultData{
			sessionID:      ev.SessionID,
			text:           resultText(ev.Result),
			total:          ev.TotalCostUSD,
			since:          ev.ModelUsageSinceLastResult,
			numTurns:       ev.NumTurns,
			durationMS:     ev.DurationMS,
			isError:        ev.IsError,
			errors:         ev.Errors,
			apiStatus:      ev.APIErrorStatus,
			apiType:        ev.APIErrorType,
			terminalReason: ev.TerminalReason,
		}
		if ev.Usage != nil {
			rd.usage = *ev.Usage
		}
		r.results = append(r.results, rd)
		if ev.IsError {
			r.markers.scan(rd.text)
			for _, e := range ev.Errors {
				r.markers.scan(e)
			}
		}
	default:
		r.unknown++
	}
	return nil
}

// assistant folds one assistant event (one content block, or a whole
// message from older CLIs) into the texts and the tool tallies.
func (r *Reader) assistant(m *Message) []Todo {
	var todos []Todo
	var parts []string
	for _, b := range m.Content {
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
					todos = r.todoList()
				}
			case toolTaskCreate:
				if t, ok := r.taskCreate(b); ok {
					todos = t
				}
			case toolTaskUpdate:
				if t, ok := r.taskUpdate(b.Input); ok {
					todos = t
				}
			}
		}
	}
	if len(parts) == 0 {
		return todos
	}
	text := strings.Join(parts, "\n\n")
	// Blocks of one message arrive as separate events with the same id:
	// the reply rule counts messages, not blocks.
	if n := len(r.texts); n > 0 && m.ID != "" && r.texts[n-1].id == m.ID {
		r.texts[n-1].text += "\n\n" + text
	} else {
		r.texts = append(r.texts, message{id: m.ID, text: text})
	}
	return todos
}

func (r *Reader) todoList() []Todo { return append([]Todo(nil), r.todos...) }

// taskCreate adds a pending task; its number comes with the tool result
// ("Task #3 created successfully: …").
func (r *Reader) taskCreate(b Block) ([]Todo, bool) {
	var in struct {
		Subject    string `json:"subject"`
		ActiveForm string `json:"activeForm"`
	}
	if err := json.Unmarshal(b.Input, &in); err != nil || in.Subject == "" {
		return nil, false
	}
	r.taskCreates++
	if r.pendingTasks == nil {
		r.pendingTasks = map[string]int{}
	}
	r.pendingTasks[b.ID] = len(r.todos)
	r.todos = append(r.todos, Todo{ID: strconv.Itoa(r.taskCreates), Content: in.Subject, Status: "pending", ActiveForm: in.ActiveForm})
	return r.todoList(), true
}

func (r *Reader) taskUpdate(input json.RawMessage) ([]Todo, bool) {
	var in struct {
		TaskID     string `json:"taskId"`
		Status     string `json:"status"`
		Subject    string `json:"subject"`
		ActiveForm string `json:"activeForm"`
	}
	if err := json.Unmarshal(input, &in); err != nil || in.TaskID == "" {
		return nil, false
	}
	for i := range r.todos {
		t := &r.todos[i]
		if t.ID != in.TaskID {
			continue
		}
		if in.Status == "deleted" {
			r.todos = append(r.todos[:i], r.todos[i+1:]...)
			return r.todoList(), true
		}
		if in.Status != "" {
			t.Status = in.Status
		}
		if in.Subject != "" {
			t.Content = in.Subject
		}
		if in.ActiveForm != "" {
			t.ActiveForm = in.ActiveForm
		}
		return r.todoList(), true
	}
	return nil, false // a task of an earlier run: not on this run's list
}

var taskNumberRE = regexp.MustCompile(`Task #(\d+) created`)

// toolResults takes the CLI's task numbers from TaskCreate results, and
// drops a task whose creation failed.
func (r *Reader) toolResults(blocks Content) []Todo {
	var todos []Todo
	for _, b := range blocks {
		i, ok := r.pendingTasks[b.ToolUseID]
		if b.Type != "tool_result" || !ok || i >= len(r.todos) {
			continue
		}
		delete(r.pendingTasks, b.ToolUseID)
		if b.IsError {
			r.todos = append(r.todos[:i], r.todos[i+1:]...)
			for id, j := range r.pendingTasks {
				if j > i {
					r.pendingTasks[id] = j - 1
				}
			}
			todos = r.todoList()
			continue
		}
		if m := taskNumberRE.FindStringSubmatch(blockText(b.Content)); m != nil && r.todos[i].ID != m[1] {
			r.todos[i].ID = m[1]
		}
	}
	return todos
}

// blockText reads a tool_result's content: a string or text blocks.
func blockText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var c Content
	if json.Unmarshal(raw, &c) != nil {
		return ""
	}
	var parts []string
	for _, b := range c {
		parts = append(parts, b.Text)
	}
	return strings.Join(parts, "\n")
}

// markers are what the CLI's words say about a failure: the last resort
// when no structured field (api_error_status, terminal_reason, the
// synthetic message's error) decided it.
type markers struct {
	promptTooLong, noSession, apiRejected, auth, unavailable bool
}

// The CLI's words, lower-cased:
//   - "prompt is too long": the result text when the context is exhausted
//     (the API's own "prompt is too long: N tokens > M maximum" in older
//     versions);
//   - "no conversation found with session id": --resume of a session it
//     does not have (stderr and the result's errors);
//   - "api error: 4…": an API rejection ("API Error: 400 …", and in 2.1
//     "API Error: Request rejected (429) · …");
//   - "invalid api key", "authentication_error", "oauth token has
//     expired": the credential was refused.
const (
	markerPromptTooLong  = "prompt is too long"
	markerNoConversation = "no conversation found with session id"
	markerAPIError       = "api error: "
)

var (
	markerAPIStatusRE = regexp.MustCompile(`api error: (?:request rejected \()?(\d{3})`)
	markerAuth        = []string{"invalid api key", "authentication_error", "oauth token has expired", "invalid bearer token"}
)

func (m *markers) scan(s string) {
	l := strings.ToLower(s)
	if strings.Contains(l, markerPromptTooLong) {
		m.promptTooLong = true
	}
	if strings.Contains(l, markerNoConversation) {
		m.noSession = true
	}
	for _, a := range markerAuth {
		if strings.Contains(l, a) {
			m.auth = true
		}
	}
	if strings.Contains(l, markerAPIError) {
		if sm := markerAPIStatusRE.FindStringSubmatch(l); sm != nil {
			status, _ := strconv.Atoi(sm[1])
			switch {
			case status == 401 || status == 403:
				m.auth = true
			case status == 429 || status >= 500:
				m.unavailable = true
			case status >= 400:
				m.apiRejected = true
			}
		}
	}
}

// Kinds of a <synthetic> message's error and of system/api_retry.
const (
	kindAuthFailed = "authentication_failed"
	kindRateLimit  = "rate_limit"
	kindServer     = "server_error"
	kindOverloaded = "overloaded"
)

// diagnosis is what a run says about why it failed.
type diagnosis struct {
	promptTooLong bool
	noSession     bool // --resume named a session the CLI does not have
	rejected      bool // the API refused the request itself (4xx but auth and rate limits)
	auth          bool // the API refused the credential
	unavailable   bool // rate-limited or the service failed (429, 5xx)
}

// diagnose reads the structured fields first — the last result's
// terminal_reason and api_error_status, the synthetic message's error,
// the retries' status — and falls back to the words (result text,
// errors, stderr) only when none of them says anything.
func (r *Reader) diagnose(stderr []string) diagnosis {
	var d diagnosis
	structured := false
	status := 0
	if n := len(r.results); n > 0 {
		last := r.results[n-1]
		if last.terminalReason == "prompt_too_long" {
			d.promptTooLong, structured = true, true
		}
		status = last.apiStatus
	}
	if status == 0 {
		status = r.errorStatus
	}
	switch kind := r.errorKind; {
	case kind == kindAuthFailed:
		d.auth, structured = true, true
	case kind == kindRateLimit || kind == kindServer || kind == kindOverloaded:
		d.unavailable, structured = true, true
	}
	if status == 0 && r.retryStatus != 0 && r.errorKind == "" && len(r.results) == 0 {
		// Killed or crashed while retrying: the retries are all there is.
		status = r.retryStatus
	}
	if status != 0 {
		structured = true
		switch {
		case status == 401 || status == 403:
			d.auth = true
		case status == 429 || status >= 500:
			d.unavailable = true
		case status >= 400 && !d.promptTooLong:
			d.rejected = true
		}
	}
	m := r.markers
	for _, line := range stderr {
		m.scan(line)
	}
	// An unknown session has no structured field: its result has only an
	// errors list (and no system/init).
	d.noSession = m.noSession
	if !structured {
		d.promptTooLong = m.promptTooLong
		d.auth = m.auth
		d.unavailable = m.unavailable
		d.rejected = m.apiRejected
	}
	return d
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
		Todos:         r.todoList(),
		Events:        r.events,
		UnknownEvents: r.unknown,
		BadLines:      r.bad,
		Tail:          append([]string(nil), r.tail...),
		WebSearches:   r.toolSearches,
		WebFetches:    r.toolFetches,
		Retries:       r.retries,
		ErrorKind:     r.errorKind,
	}
	if r.errorKind == "" && r.retryKind != "" && len(r.results) == 0 {
		res.ErrorKind = r.retryKind
	}
	if n := len(r.results); n > 0 {
		last := r.results[n-1]
		if last.sessionID != "" {
			res.SessionID = last.sessionID
		}
		res.Usage = last.usage
		res.TotalCostUSD = last.total
		res.CostUSD = r.runCost()
		res.IsError = last.isError
		res.APIErrorStatus = last.apiStatus
		res.TerminalReason = last.terminalReason
		res.Errors = append([]string(nil), last.errors...)
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
	if res.APIErrorStatus == 0 {
		res.APIErrorStatus = r.errorStatus
	}
	if res.APIErrorStatus == 0 && len(r.results) == 0 {
		res.APIErrorStatus = r.retryStatus
	}
	return res
}

// runCost is what this run cost. total_cost_usd is the session's running
// total (on --resume it includes every earlier run, and a run with
// several results repeats it), so the run's share is either the sum of
// model_usage_since_last_result, when the CLI reports it, or the growth
// of the total since the previous run.
func (r *Reader) runCost() float64 {
	reported := false
	var sum float64
	for _, rd := range r.results {
		if rd.since == nil {
			continue
		}
		reported = true
		for _, mu := range rd.since {
			sum += mu.CostUSD
		}
	}
	if reported {
		return sum
	}
	last := r.results[len(r.results)-1].total
	if d := last - r.PrevTotalCostUSD; d >= 0 {
		return d
	}
	return last // the total went down: a different session
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
		last := r.texts[n-1].text
		threshold := replyRatio * utf8.RuneCountInString(last)
		anchor := n - 1
		for i := max(0, n-1-replyLookback); i < n-1; i++ {
			if utf8.RuneCountInString(r.texts[i].text) >= threshold {
				anchor = i // the latest one wins: least reach-back into narration
			}
		}
		parts := make([]string, 0, n-anchor)
		for _, m := range r.texts[anchor:] {
			parts = append(parts, m.text)
		}
		return strings.Join(parts, "\n\n")
	}
	if n := len(r.results); n > 0 {
		last := r.results[n-1]
		if last.text != "" {
			return last.text
		}
		// An unknown --resume id: the result has no text, only errors.
		if len(last.errors) > 0 {
			return strings.Join(last.errors, "\n")
		}
	}
	return NoOutputReply
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

// LastTotalCost returns the total_cost_usd of the last result event of
// session in a stream of events (a conversation's events.jsonl): the
// running total a resumed run starts from.
func LastTotalCost(events io.Reader, session string) (float64, error) {
	sc := bufio.NewScanner(events)
	sc.Buffer(nil, 64<<20)
	marker := []byte(`"result"`)
	var total float64
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, marker) {
			continue // cheap: most events are not results
		}
		var ev struct {
			Type         string  `json:"type"`
			SessionID    string  `json:"session_id"`
			TotalCostUSD float64 `json:"total_cost_usd"`
		}
		if json.Unmarshal(line, &ev) == nil && ev.Type == TypeResult && ev.SessionID == session {
			total = ev.TotalCostUSD
		}
	}
	return total, sc.Err()
}
