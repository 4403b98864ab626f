package dashboard

import (
	"encoding/json"
	"fmt"
	"html"
	"strconv"
	"strings"

	"github.com/airut/airut/internal/markdown"
)

// The transcript is rendered one stream-json event at a time, so a page of
// 50,000 events streams out as it is read and never sits in memory whole.
// Each event becomes a self-contained HTML fragment; the same fragments go
// out over SSE while the task runs.

// Truncation: a tool result longer than this is shown cut, with the whole
// of it (up to fullLimit) behind a <details> expander, which needs no
// JavaScript.
const (
	previewLines = 12
	previewBytes = 2000
	fullLimit    = 256 << 10
)

type streamEvent struct {
	Type            string          `json:"type"`
	Subtype         string          `json:"subtype"`
	ParentToolUseID *string         `json:"parent_tool_use_id"`
	Message         *streamMessage  `json:"message"`
	Model           string          `json:"model"`
	Tools           []string        `json:"tools"`
	SessionID       string          `json:"session_id"`
	Result          string          `json:"result"`
	IsError         bool            `json:"is_error"`
	NumTurns        int             `json:"num_turns"`
	DurationMS      int64           `json:"duration_ms"`
	TotalCostUSD    float64         `json:"total_cost_usd"`
	Errors          []string        `json:"errors"`
	Attempt         int             `json:"attempt"`
	MaxRetries      int             `json:"max_retries"`
	RetryDelayMS    float64         `json:"retry_delay_ms"`
	ErrorStatus     json.RawMessage `json:"error_status"`
	Error           json.RawMessage `json:"error"`
	APIErrorStatus  json.RawMessage `json:"api_error_status"`
	TruncatedBytes  int             `json:"airut_truncated_bytes"`
}

type streamMessage struct {
	Content json.RawMessage `json:"content"`
	Error   string          `json:"error"`
	Model   string          `json:"model"`
}

type contentBlock struct {
	Type      string          `json:"type"`
	Text      string          `json:"text"`
	Thinking  string          `json:"thinking"`
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
	ToolUseID string          `json:"tool_use_id"`
	Content   json.RawMessage `json:"content"`
	IsError   bool            `json:"is_error"`
}

// renderEvent writes the HTML of one stream-json line to b. Lines that
// are not JSON are shown as text: nothing the agent wrote is hidden.
func renderEvent(b *strings.Builder, line []byte) {
	var ev streamEvent
	if err := json.Unmarshal(line, &ev); err != nil {
		b.WriteString(`<div class="ev ev-raw"><pre>`)
		b.WriteString(html.EscapeString(cut(string(line), previewBytes)))
		b.WriteString("</pre></div>\n")
		return
	}
	nested := ev.ParentToolUseID != nil && *ev.ParentToolUseID != ""
	cls := "ev ev-" + cssName(ev.Type)
	if nested {
		cls += " nested" // a subagent's work, inside its Task call
	}
	if ev.TruncatedBytes > 0 {
		// A stub for a line too large to carry (the bus's, or ours).
		fmt.Fprintf(b, `<div class="%s warn">a %s event of %d bytes is not shown (it is in the events API)</div>`+"\n", cls, esc(ev.Type), ev.TruncatedBytes)
		return
	}
	switch ev.Type {
	case "system":
		switch ev.Subtype {
		case "init":
			fmt.Fprintf(b, `<div class="%s meta">Session started · model %s · %d tools</div>`+"\n",
				cls, esc(ev.Model), len(ev.Tools))
		case "api_retry":
			fmt.Fprintf(b, `<div class="%s warn">API retry %d of %d after %s: %s</div>`+"\n", cls, ev.Attempt, ev.MaxRetries,
				esc(fmt.Sprintf("%.1fs", ev.RetryDelayMS/1000)), esc(strings.Trim(string(firstNonEmpty(ev.ErrorStatus, ev.Error)), `"`)))
		default:
			fmt.Fprintf(b, `<div class="%s meta">system: %s</div>`+"\n", cls, esc(ev.Subtype))
		}
	case "assistant", "user":
		if ev.Message == nil {
			return
		}
		if ev.Message.Error != "" {
			fmt.Fprintf(b, `<div class="%s error">API error: %s</div>`+"\n", cls, esc(ev.Message.Error))
		}
		var text string
		if json.Unmarshal(ev.Message.Content, &text) == nil {
			if ev.Type == "user" {
				fmt.Fprintf(b, `<div class="%s prompt">%s</div>`+"\n", cls, truncated(text))
			} else {
				renderText(b, cls, text)
			}
			return
		}
		var blocks []contentBlock
		if json.Unmarshal(ev.Message.Content, &blocks) != nil {
			return
		}
		for _, bl := range blocks {
			switch bl.Type {
			case "text":
				renderText(b, cls, bl.Text)
			case "thinking":
				fmt.Fprintf(b, `<details class="%s thinking"><summary>thinking</summary>%s</details>`+"\n", cls, truncated(bl.Thinking))
			case "tool_use", "server_tool_use":
				renderToolUse(b, cls, bl)
			case "tool_result", "web_search_tool_result":
				renderToolResult(b, cls, bl)
			}
		}
	case "result":
		state := "ok"
		if ev.IsError || ev.Subtype != "success" {
			state = "error"
		}
		fmt.Fprintf(b, `<div class="%s result %s"><div class="result-head">Result: %s · %d turns · %s · $%.4f</div>`, cls, state,
			esc(ev.Subtype), ev.NumTurns, esc(fmtDurationMS(ev.DurationMS)), ev.TotalCostUSD)
		for _, e := range ev.Errors {
			fmt.Fprintf(b, `<div class="error">%s</div>`, esc(e))
		}
		if ev.Result != "" {
			b.WriteString(`<div class="md">`)
			b.WriteString(mdHTML(ev.Result))
			b.WriteString(`</div>`)
		}
		b.WriteString("</div>\n")
	default:
		fmt.Fprintf(b, `<div class="%s meta">%s event</div>`+"\n", cls, esc(ev.Type))
	}
}

func renderText(b *strings.Builder, cls, text string) {
	if strings.TrimSpace(text) == "" {
		return
	}
	fmt.Fprintf(b, `<div class="%s text md">%s</div>`+"\n", cls, mdHTML(text))
}

// mdHTML renders the agent's Markdown; raw HTML in it is escaped by the
// markdown package, so it is inert.
func mdHTML(md string) string {
	out, err := markdown.ToHTML(md)
	if err != nil {
		return "<pre>" + esc(md) + "</pre>"
	}
	return out
}

type todoItem struct {
	Content string `json:"content"`
	Status  string `json:"status"`
}

func renderToolUse(b *strings.Builder, cls string, bl contentBlock) {
	var in map[string]json.RawMessage
	_ = json.Unmarshal(bl.Input, &in)
	str := func(k string) string {
		var s string
		_ = json.Unmarshal(in[k], &s)
		return s
	}
	fmt.Fprintf(b, `<div class="%s tool tool-%s" id="tool-%s"><div class="tool-name">%s</div>`, cls, cssName(bl.Name), cssName(bl.ID), esc(bl.Name))
	switch bl.Name {
	case "Bash":
		if d := str("description"); d != "" {
			fmt.Fprintf(b, `<div class="tool-desc">%s</div>`, esc(d))
		}
		fmt.Fprintf(b, `<pre class="cmd">$ %s</pre>`, esc(cut(str("command"), fullLimit)))
	case "Edit", "MultiEdit":
		fmt.Fprintf(b, `<div class="path">%s</div>`, esc(str("file_path")))
		if bl.Name == "Edit" {
			renderDiff(b, str("old_string"), str("new_string"))
		} else {
			var edits []struct {
				Old string `json:"old_string"`
				New string `json:"new_string"`
			}
			_ = json.Unmarshal(in["edits"], &edits)
			for _, e := range edits {
				renderDiff(b, e.Old, e.New)
			}
		}
	case "Write":
		fmt.Fprintf(b, `<div class="path">%s · %s</div>`, esc(str("file_path")), esc(fmtBytes(len(str("content")))))
		b.WriteString(truncated(str("content")))
	case "Read", "NotebookRead":
		fmt.Fprintf(b, `<div class="path">%s</div>`, esc(firstString(str("file_path"), str("notebook_path"))))
	case "Grep", "Glob":
		fmt.Fprintf(b, `<div class="pattern"><code>%s</code>`, esc(str("pattern")))
		if p := str("path"); p != "" {
			fmt.Fprintf(b, ` in %s`, esc(p))
		}
		if g := str("glob"); g != "" {
			fmt.Fprintf(b, ` (%s)`, esc(g))
		}
		b.WriteString(`</div>`)
	case "Task", "Agent":
		fmt.Fprintf(b, `<div class="tool-desc">%s <span class="muted">%s</span></div>`, esc(str("description")), esc(str("subagent_type")))
		b.WriteString(truncated(str("prompt")))
	case "TodoWrite":
		var todos []todoItem
		_ = json.Unmarshal(in["todos"], &todos)
		b.WriteString(`<ul class="todos">`)
		for _, t := range todos {
			fmt.Fprintf(b, `<li class="todo-%s">%s</li>`, cssName(t.Status), esc(t.Content))
		}
		b.WriteString(`</ul>`)
	case "TaskCreate":
		fmt.Fprintf(b, `<ul class="todos"><li class="todo-pending">%s</li></ul>`, esc(firstString(str("subject"), str("description"))))
	case "TaskUpdate":
		fmt.Fprintf(b, `<div>task %s → <span class="todo-%s">%s</span></div>`, esc(firstString(str("taskId"), str("id"))), cssName(str("status")), esc(str("status")))
	case "WebFetch", "WebSearch":
		fmt.Fprintf(b, `<div class="path">%s</div>`, esc(firstString(str("url"), str("query"))))
	default:
		b.WriteString(truncated(prettyJSON(bl.Input)))
	}
	b.WriteString("</div>\n")
}

// renderDiff shows an Edit as removed and added lines.
func renderDiff(b *strings.Builder, old, new string) {
	b.WriteString(`<pre class="diff">`)
	n := 0
	for _, l := range strings.Split(old, "\n") {
		if n++; n > 400 {
			break
		}
		fmt.Fprintf(b, "<span class=\"del\">-%s</span>\n", esc(l))
	}
	for _, l := range strings.Split(new, "\n") {
		if n++; n > 800 {
			b.WriteString("<span class=\"muted\">… (cut)</span>\n")
			break
		}
		fmt.Fprintf(b, "<span class=\"add\">+%s</span>\n", esc(l))
	}
	b.WriteString(`</pre>`)
}

func renderToolResult(b *strings.Builder, cls string, bl contentBlock) {
	text := resultText(bl.Content)
	state := ""
	if bl.IsError {
		state = " error"
	}
	body := truncated(text)
	if body == "" {
		body = `<span class="muted">(no output)</span>`
	}
	fmt.Fprintf(b, `<div class="%s tool-result%s">%s</div>`+"\n", cls, state, body)
}

// resultText flattens a tool_result's content (a string or text blocks).
func resultText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var blocks []contentBlock
	if json.Unmarshal(raw, &blocks) == nil {
		var parts []string
		for _, bl := range blocks {
			if bl.Type == "text" {
				parts = append(parts, bl.Text)
			} else {
				parts = append(parts, "["+bl.Type+"]")
			}
		}
		return strings.Join(parts, "\n")
	}
	return string(raw)
}

// truncated is text in a <pre>, cut to a preview with the rest behind an
// expander when it is long.
func truncated(text string) string {
	if text == "" {
		return ""
	}
	lines := strings.Count(text, "\n") + 1
	if lines <= previewLines && len(text) <= previewBytes {
		return "<pre>" + esc(text) + "</pre>"
	}
	preview := text
	if i := nthIndex(preview, '\n', previewLines); i >= 0 {
		preview = preview[:i]
	}
	preview = cut(preview, previewBytes)
	full := text
	note := ""
	if len(full) > fullLimit {
		full = cut(full, fullLimit)
		note = `<div class="muted">cut at ` + fmtBytes(fullLimit) + `; the whole output is in the events API</div>`
	}
	return `<details class="trunc"><summary><pre>` + esc(preview) + `</pre><span class="more">show all ` +
		strconv.Itoa(lines) + ` lines (` + fmtBytes(len(text)) + `)</span></summary><pre>` + esc(full) + `</pre>` + note + `</details>`
}

func nthIndex(s string, c byte, n int) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			if n--; n == 0 {
				return i
			}
		}
	}
	return -1
}

// cut shortens s to at most n bytes on a rune boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

func prettyJSON(raw json.RawMessage) string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return string(raw)
	}
	out, _ := json.MarshalIndent(v, "", "  ")
	return string(out)
}

func esc(s string) string { return html.EscapeString(s) }

func cssName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, s)
}

func firstString(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func firstNonEmpty(rs ...json.RawMessage) json.RawMessage {
	for _, r := range rs {
		if len(r) > 0 && string(r) != "null" {
			return r
		}
	}
	return nil
}

func fmtBytes(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func fmtDurationMS(ms int64) string {
	return fmtDuration(float64(ms) / 1000)
}

func fmtDuration(sec float64) string {
	switch {
	case sec < 60:
		return fmt.Sprintf("%.1fs", sec)
	case sec < 3600:
		return fmt.Sprintf("%dm%02ds", int(sec)/60, int(sec)%60)
	}
	return fmt.Sprintf("%dh%02dm", int(sec)/3600, int(sec)%3600/60)
}
