// Command fakeclaude stands in for Claude Code in fast tests, where no
// model is reachable. It accepts the command line the gateway uses, reads
// the prompt on standard input, and writes stream-json shaped as the real
// CLI (2.1) writes it — recorded in internal/agent/testdata/realcli: one
// assistant event per content block (the blocks of one message share its
// id), session-wide running totals in total_cost_usd and modelUsage with
// the run's own share in model_usage_since_last_result, API failures as a
// <synthetic> assistant message with an error kind beside an is_error
// result carrying api_error_status and terminal_reason, and an unknown
// --resume id as a result with an errors list (no system/init) and the
// same words on stderr. "-p -" takes "-" as prompt text, as the real one
// does.
//
// Sessions are kept in $CLAUDE_CONFIG_DIR (else $HOME/.claude)/
// fakeclaude-sessions/<id>.json, so a mounted /root/.claude carries them
// from one task to the next.
//
// The prompt may carry a script: lines that start with @@, run in order.
//
//	@@say <text>                a text block in the same message as the next
//	                            tool call (narration before a tool)
//	@@run <shell command>       run with /bin/sh -c; output becomes a tool_result
//	@@write <path> <text...>    write text to path (\n in text is a newline)
//	@@sleep <seconds>           sleep (fractions allowed)
//	@@reply <text...>           an assistant text; the last one is the reply
//	@@fail <exit code> <msg>    report msg as an error and exit with the code
//	@@api-error <kind>          fail as the CLI does on an API error after its
//	                            retries: 400, 401, 403, 429, 500 or 529
//	@@prompt-too-long           fail the way Claude Code does on a full context
//	@@todo <item>|<item>...     a TodoWrite call (older CLIs); "[x] " marks an
//	                            item completed, "[>] " in progress
//	@@task <subject>            a TaskCreate call (current CLIs)
//	@@task-update <id> <status> a TaskUpdate call
//	@@echo-prompt               an assistant text that is the whole prompt
//
// Without a script it answers with a short greeting.
//
// Build it static (CGO_ENABLED=0) so it runs in any test image.
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// version is what --version prints; the suffix tells a human which binary
// answered.
const version = "2.1.332 (Claude Code; fakeclaude)"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

type options struct {
	argv          []string
	resume        string
	model         string
	effort        string
	print         bool
	skipPerms     bool
	outputFormat  string
	verbose       bool
	prompt        string
	promptFromArg bool
}

// usageError is printed like commander.js, which Claude Code uses, so that
// a test of a wrong command line sees what the real one would print.
type usageError string

func (e usageError) Error() string { return string(e) }

func parseArgs(args []string) (*options, bool, error) {
	o := &options{argv: append([]string(nil), args...), outputFormat: "text"}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		name, value, hasValue := strings.Cut(arg, "=")
		if !strings.HasPrefix(arg, "-") || arg == "-" {
			// "-" is prompt text to the real CLI, not "read stdin".
			if o.promptFromArg {
				return nil, false, usageError(fmt.Sprintf("error: too many arguments. Expected 1 argument but got %q too.", arg))
			}
			o.promptFromArg = true
			o.prompt = arg
			continue
		}
		takeValue := func() (string, error) {
			if hasValue {
				return value, nil
			}
			if i+1 >= len(args) {
				return "", usageError(fmt.Sprintf("error: option '%s <value>' argument missing", name))
			}
			i++
			return args[i], nil
		}
		var err error
		switch name {
		case "-v", "--version":
			return o, true, nil
		case "-r", "--resume":
			o.resume, err = takeValue()
		case "--model":
			o.model, err = takeValue()
		case "--effort":
			o.effort, err = takeValue()
		case "--output-format":
			o.outputFormat, err = takeValue()
			if err == nil && o.outputFormat != "text" && o.outputFormat != "json" && o.outputFormat != "stream-json" {
				err = usageError(fmt.Sprintf("error: option '--output-format <format>' argument '%s' is invalid. Allowed choices are text, json, stream-json.", o.outputFormat))
			}
		case "-p", "--print":
			o.print = true
		case "--dangerously-skip-permissions":
			o.skipPerms = true
		case "--verbose":
			o.verbose = true
		default:
			err = usageError(fmt.Sprintf("error: unknown option '%s'", name))
		}
		if err != nil {
			return nil, false, err
		}
		if hasValue && (name == "-p" || name == "--print" || name == "--verbose" || name == "--dangerously-skip-permissions") {
			return nil, false, usageError(fmt.Sprintf("error: option '%s' does not take an argument", name))
		}
	}
	return o, false, nil
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o, showVersion, err := parseArgs(args)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if showVersion {
		fmt.Fprintln(stdout, version)
		return 0
	}
	if !o.print {
		fmt.Fprintln(stderr, "fakeclaude: only print mode (-p) is supported")
		return 1
	}
	if o.outputFormat == "stream-json" && !o.verbose {
		fmt.Fprintln(stderr, "Error: When using --print, --output-format=stream-json requires --verbose")
		return 1
	}
	// Like the real CLI, piped stdin is read whether or not a prompt
	// argument was given, and an argument comes first.
	data, err := io.ReadAll(stdin)
	if err != nil {
		fmt.Fprintf(stderr, "Error: read prompt from stdin: %v\n", err)
		return 1
	}
	switch {
	case !o.promptFromArg:
		o.prompt = string(data)
	case len(data) > 0:
		o.prompt += "\n" + string(data)
	}
	if strings.TrimSpace(o.prompt) == "" {
		fmt.Fprintln(stderr, "Error: Input must be provided either through stdin or as a prompt argument when using --print")
		return 1
	}
	steps, err := parseScript(o.prompt)
	if err != nil {
		fmt.Fprintf(stderr, "fakeclaude: %v\n", err)
		return 2
	}

	store, err := sessionDir()
	if err != nil {
		fmt.Fprintf(stderr, "fakeclaude: %v\n", err)
		return 1
	}
	var sess *session
	if o.resume != "" {
		sess, err = loadSession(store, o.resume)
		if err != nil {
			// Claude Code's own words and shape (no system/init), so the
			// gateway's detection is tested against what the real binary
			// prints.
			msg := "No conversation found with session ID: " + o.resume
			e := &emitter{w: stdout, format: o.outputFormat, session: o.resume, start: time.Now()}
			e.emit(map[string]any{
				"type": "result", "subtype": "error_during_execution", "is_error": true,
				"duration_ms": 0, "duration_api_ms": 0, "num_turns": 0, "session_id": o.resume,
				"total_cost_usd": 0, "usage": usage(0, 0), "modelUsage": map[string]any{},
				"model_usage_since_last_result": map[string]any{}, "permission_denials": []any{},
				"errors": []string{msg}, "uuid": newUUID(),
			})
			fmt.Fprintln(stderr, msg)
			return 1
		}
	} else {
		sess = &session{ID: newUUID(), Created: time.Now().UTC()}
	}
	model := o.model
	if model == "" {
		model = "sonnet"
	}
	cwd, _ := os.Getwd()
	sess.Model = model
	sess.Runs = append(sess.Runs, runRecord{
		Argv:    o.argv,
		Model:   model,
		Effort:  o.effort,
		Resumed: o.resume != "",
		Cwd:     cwd,
		Prompt:  o.prompt,
		Env:     recordedEnv(),
		Started: time.Now().UTC(),
	})
	// Saved before any work, as Claude Code writes its transcript as it
	// goes: a run killed by a timeout can still be resumed.
	if err := saveSession(store, sess); err != nil {
		fmt.Fprintf(stderr, "fakeclaude: %v\n", err)
		return 1
	}

	e := &emitter{w: stdout, format: o.outputFormat, session: sess.ID, model: fullModel(model), start: time.Now(),
		prompt: o.prompt, prevCost: sess.TotalCost}
	tools := []string{"Task", "Bash", "Edit", "Read", "WebFetch", "WebSearch", "Write"}
	if os.Getenv("CLAUDE_CODE_ENABLE_TODO_TOOLS") == "1" {
		tools = append(tools, "TaskCreate", "TaskGet", "TaskList", "TaskUpdate")
	}
	// The real CLI names where its key came from, and "none" on a
	// subscription (OAuth) login.
	keySource := "none"
	if os.Getenv("ANTHROPIC_API_KEY") != "" {
		keySource = "ANTHROPIC_API_KEY"
	}
	e.emit(map[string]any{
		"type": "system", "subtype": "init",
		"cwd": cwd, "session_id": sess.ID, "model": e.model,
		"tools":               tools,
		"mcp_servers":         []any{},
		"permissionMode":      permissionMode(o.skipPerms),
		"apiKeySource":        keySource,
		"claude_code_version": strings.Fields(version)[0],
		"slash_commands":      []string{"compact", "cost", "review"},
		"output_style":        "default",
		"uuid":                newUUID(),
	})

	code := e.runSteps(steps, stderr)
	sess.TotalCost = e.prevCost + e.cost()

	last := &sess.Runs[len(sess.Runs)-1]
	last.Finished = time.Now().UTC()
	last.Reply = e.lastText
	last.ExitCode = code
	if err := saveSession(store, sess); err != nil {
		fmt.Fprintf(stderr, "fakeclaude: %v\n", err)
		return 1
	}
	return code
}

func permissionMode(skip bool) string {
	if skip {
		return "bypassPermissions"
	}
	return "default"
}

// fullModel turns an alias into a model name of the shape Claude Code
// reports in system/init.
func fullModel(m string) string {
	switch m {
	case "opus":
		return "claude-opus-5-5"
	case "sonnet":
		return "claude-sonnet-4-5-20250929"
	case "haiku":
		return "claude-haiku-4-5-20251001"
	}
	return m
}

// recordedEnv keeps the variables tests assert on, not the whole
// environment, which may hold surrogate credentials.
func recordedEnv() map[string]string {
	env := map[string]string{}
	for _, k := range []string{"CLAUDE_CODE_DISABLE_BACKGROUND_TASKS", "IS_SANDBOX", "HOME", "CLAUDE_CONFIG_DIR",
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "DISABLE_AUTOUPDATER", "CLAUDE_CODE_ENABLE_TODO_TOOLS"} {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	return env
}

// step is one @@ line of the script.
type step struct {
	cmd  string
	args string
}

var knownSteps = map[string]bool{
	"say": true, "run": true, "write": true, "sleep": true, "reply": true, "fail": true, "api-error": true,
	"prompt-too-long": true, "todo": true, "task": true, "task-update": true, "echo-prompt": true,
}

func parseScript(prompt string) ([]step, error) {
	var steps []step
	for line := range strings.SplitSeq(prompt, "\n") {
		line = strings.TrimRight(strings.TrimLeft(line, " \t"), "\r")
		if !strings.HasPrefix(line, "@@") {
			continue
		}
		cmd, args, _ := strings.Cut(line[2:], " ")
		if !knownSteps[cmd] {
			return nil, fmt.Errorf("unknown script command @@%s", cmd)
		}
		steps = append(steps, step{cmd: cmd, args: strings.TrimSpace(args)})
	}
	return steps, nil
}

// emitter writes events and keeps the tallies that go into the result.
type emitter struct {
	w        io.Writer
	format   string
	session  string
	model    string
	start    time.Time
	prompt   string
	turns    int
	outChars int
	lastText string
	// prevCost is the session's running total before this run.
	prevCost float64
	// narration is @@say text waiting to go out with the next message.
	narration []string
	tasks     int
}

func (e *emitter) emit(ev map[string]any) {
	if e.format != "stream-json" {
		return
	}
	line, err := marshalTypeFirst(ev)
	if err != nil {
		return
	}
	// One write per line: the reader on the other side streams line by
	// line and must never see half an event unless the process is killed.
	_, _ = e.w.Write(append(line, '\n'))
}

// assistant writes one message, one event per content block as the real
// CLI does, pending narration first.
func (e *emitter) assistant(model string, blocks ...map[string]any) {
	e.turns++
	if model != "<synthetic>" {
		for _, n := range e.narration {
			blocks = append([]map[string]any{{"type": "text", "text": n}}, blocks...)
		}
		e.narration = nil
	}
	id := "msg_" + randHex(24)
	for _, b := range blocks {
		if t, ok := b["text"].(string); ok {
			e.outChars += len(t)
		}
		e.emit(map[string]any{
			"type": "assistant",
			"message": map[string]any{
				"model": model, "id": id, "type": "message", "role": "assistant",
				"content": []map[string]any{b}, "stop_reason": nil, "stop_sequence": nil,
				"usage": map[string]any{"input_tokens": 3, "output_tokens": 10},
			},
			"parent_tool_use_id": nil, "session_id": e.session, "uuid": newUUID(),
		})
	}
}

func (e *emitter) text(s string) {
	e.lastText = s
	e.assistant(e.model, map[string]any{"type": "text", "text": s})
}

// tool emits a tool_use and its tool_result.
func (e *emitter) tool(name string, input map[string]any, do func() (string, bool)) {
	id := "toolu_" + randHex(24)
	e.assistant(e.model, map[string]any{"type": "tool_use", "id": id, "name": name, "input": input})
	out, isErr := do()
	e.emit(map[string]any{
		"type": "user",
		"message": map[string]any{"role": "user", "content": []map[string]any{
			{"tool_use_id": id, "type": "tool_result", "content": out, "is_error": isErr},
		}},
		"parent_tool_use_id": nil, "session_id": e.session, "uuid": newUUID(),
	})
}

func (e *emitter) tokens() (in, out int) { return len(e.prompt)/4 + 1, e.outChars/4 + 1 }

// cost is what this run used, priced like a Sonnet-class model.
func (e *emitter) cost() float64 {
	in, out := e.tokens()
	return float64(in)*3e-6 + float64(out)*15e-6
}

func usage(in, out int) map[string]any {
	return map[string]any{
		"input_tokens": in, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
		"output_tokens":   out,
		"server_tool_use": map[string]any{"web_search_requests": 0, "web_fetch_requests": 0},
		"service_tier":    "standard",
	}
}

func (e *emitter) result(subtype string, isErr bool, text string, extra map[string]any) {
	elapsed := time.Since(e.start).Milliseconds()
	in, out := e.tokens()
	run := e.cost()
	if isErr {
		in, out, run = 0, 0, 0 // an API failure uses nothing
	}
	modelUsage := func(inTok, outTok int, cost float64) map[string]any {
		return map[string]any{e.model: map[string]any{"inputTokens": inTok, "outputTokens": outTok, "costUSD": cost}}
	}
	// total_cost_usd and modelUsage are the session's running totals, as
	// the real CLI reports them on --resume; the run's own share is in
	// model_usage_since_last_result.
	total := e.prevCost + run
	ev := map[string]any{
		"type": "result", "subtype": subtype, "is_error": isErr,
		"duration_ms": elapsed, "duration_api_ms": elapsed,
		"num_turns": max(e.turns, 1), "result": text, "session_id": e.session,
		"total_cost_usd": total, "usage": usage(in, out),
		"modelUsage":                    modelUsage(in, out, total),
		"model_usage_since_last_result": modelUsage(in, out, run),
		"terminal_reason":               "completed", "api_error_status": nil,
		"permission_denials": []any{}, "uuid": newUUID(),
	}
	if run == 0 {
		ev["model_usage_since_last_result"] = map[string]any{}
	}
	for k, v := range extra {
		ev[k] = v
	}
	switch e.format {
	case "stream-json":
		e.emit(ev)
	case "json":
		line, _ := marshalTypeFirst(ev)
		_, _ = e.w.Write(append(line, '\n'))
	default:
		fmt.Fprintln(e.w, text)
	}
}

// apiFailure ends the run the way the real CLI does after its retries
// on an API error: a <synthetic> assistant message with the error's kind,
// then a result of subtype success with is_error, the HTTP status and
// terminal_reason. The texts are the real CLI's.
func (e *emitter) apiFailure(status int, kind, apiType, text, terminal string) int {
	e.lastText = text
	e.emit(map[string]any{
		"type": "assistant",
		"message": map[string]any{
			"model": "<synthetic>", "id": newUUID(), "type": "message", "role": "assistant",
			"content": []map[string]any{{"type": "text", "text": text}}, "stop_reason": "stop_sequence",
		},
		"parent_tool_use_id": nil, "session_id": e.session, "uuid": newUUID(),
		"error": kind, "is_api_error_message": true, "api_error_status": status, "api_error_type": apiType,
	})
	e.result("success", true, text, map[string]any{
		"api_error_status": status, "api_error_type": apiType, "terminal_reason": terminal, "stop_reason": "stop_sequence",
	})
	return 1
}

// apiErrors are the real CLI's words for each status (2.1.332).
var apiErrors = map[string]struct {
	status         int
	kind, apiType  string
	text, terminal string
}{
	"400": {400, "unknown", "invalid_request_error", "API Error: 400 messages.1.content.0: unexpected tool_use_id found in tool_result blocks", "api_error"},
	"401": {401, "authentication_failed", "authentication_error", "Invalid API key · Fix external API key", "api_error"},
	"403": {403, "authentication_failed", "permission_error", "API Error: 403 Your API key does not have permission to use the specified resource.", "api_error"},
	"429": {429, "rate_limit", "rate_limit_error", "API Error: Request rejected (429) · Number of request tokens has exceeded your per-minute rate limit", "api_error"},
	"500": {500, "server_error", "api_error", "API Error: 500 Internal server error", "api_error"},
	"529": {529, "server_error", "overloaded_error", "API Error: 529 Overloaded. This is a server-side issue, usually temporary — try again in a moment.", "api_error"},
}

// runSteps performs the script and returns the exit code.
func (e *emitter) runSteps(steps []step, stderr io.Writer) int {
	replied := false
	for _, s := range steps {
		switch s.cmd {
		case "run":
			e.tool("Bash", map[string]any{"command": s.args, "description": "fakeclaude @@run"}, func() (string, bool) {
				cmd := exec.Command("/bin/sh", "-c", s.args)
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				err := cmd.Run()
				text := strings.TrimRight(out.String(), "\n")
				if err != nil {
					var ee *exec.ExitError
					if errors.As(err, &ee) {
						return fmt.Sprintf("%s\nExit code %d", text, ee.ExitCode()), true
					}
					return fmt.Sprintf("%s\n%v", text, err), true
				}
				return text, false
			})
		case "write":
			path, text, _ := strings.Cut(s.args, " ")
			text = unescape(text)
			e.tool("Write", map[string]any{"file_path": path, "content": text}, func() (string, bool) {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					return err.Error(), true
				}
				if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
					return err.Error(), true
				}
				return "File created successfully at: " + path, false
			})
		case "sleep":
			secs, err := strconv.ParseFloat(s.args, 64)
			if err != nil || secs < 0 {
				fmt.Fprintf(stderr, "fakeclaude: @@sleep %q: not a number of seconds\n", s.args)
				return 2
			}
			e.tool("Bash", map[string]any{"command": "sleep " + s.args}, func() (string, bool) {
				time.Sleep(time.Duration(secs * float64(time.Second)))
				return "", false
			})
		case "say":
			e.narration = append(e.narration, unescape(s.args))
		case "reply":
			e.text(unescape(s.args))
			replied = true
		case "task":
			e.tasks++
			n := e.tasks
			e.tool("TaskCreate", map[string]any{"subject": s.args, "description": s.args, "activeForm": s.args}, func() (string, bool) {
				return fmt.Sprintf("Task #%d created successfully: %s", n, s.args), false
			})
		case "task-update":
			id, status, _ := strings.Cut(s.args, " ")
			e.tool("TaskUpdate", map[string]any{"taskId": id, "status": status}, func() (string, bool) {
				return "Updated task #" + id + " status", false
			})
		case "api-error":
			ae, ok := apiErrors[s.args]
			if !ok {
				fmt.Fprintf(stderr, "fakeclaude: @@api-error %q: want 400, 401, 403, 429, 500 or 529\n", s.args)
				return 2
			}
			return e.apiFailure(ae.status, ae.kind, ae.apiType, ae.text, ae.terminal)
		case "echo-prompt":
			e.text(e.prompt)
			replied = true
		case "todo":
			var todos []map[string]any
			for item := range strings.SplitSeq(s.args, "|") {
				item = strings.TrimSpace(item)
				status := "pending"
				switch {
				case strings.HasPrefix(item, "[x] "):
					status, item = "completed", item[4:]
				case strings.HasPrefix(item, "[>] "):
					status, item = "in_progress", item[4:]
				}
				todos = append(todos, map[string]any{"content": item, "status": status, "activeForm": item})
			}
			e.tool("TodoWrite", map[string]any{"todos": todos}, func() (string, bool) {
				return "Todos have been modified successfully. Ensure that you continue to use the todo list to track your progress. Please proceed with the current tasks if applicable", false
			})
		case "fail":
			codeStr, msg, _ := strings.Cut(s.args, " ")
			code, err := strconv.Atoi(codeStr)
			if err != nil {
				fmt.Fprintf(stderr, "fakeclaude: @@fail %q: exit code is not a number\n", codeStr)
				return 2
			}
			msg = unescape(msg)
			e.lastText = msg
			e.result("error_during_execution", true, msg, map[string]any{"errors": []string{msg}, "terminal_reason": nil})
			fmt.Fprintln(stderr, msg)
			return code
		case "prompt-too-long":
			return e.apiFailure(400, "invalid_request", "invalid_request_error",
				"Prompt is too long · the request is ~212345 tokens (limit 200000)", "prompt_too_long")
		}
	}
	if !replied {
		if len(steps) > 0 {
			e.text("Done.")
		} else {
			e.text("Hello from fakeclaude. I read your message; add @@ lines to script me.")
		}
	}
	e.result("success", false, e.lastText, nil)
	return 0
}

// marshalTypeFirst encodes an event with "type" as its first key, as Claude
// Code writes it, so that a human reading events.jsonl sees the same shape.
func marshalTypeFirst(ev map[string]any) ([]byte, error) {
	typ, err := json.Marshal(ev["type"])
	if err != nil {
		return nil, err
	}
	rest := make(map[string]any, len(ev))
	for k, v := range ev {
		if k != "type" {
			rest[k] = v
		}
	}
	body, err := json.Marshal(rest)
	if err != nil {
		return nil, err
	}
	out := append([]byte(`{"type":`), typ...)
	if len(body) > 2 {
		out = append(out, ',')
	}
	return append(out, body[1:]...), nil
}

func unescape(s string) string {
	return strings.ReplaceAll(s, `\n`, "\n")
}

// session is what fakeclaude keeps per session id, for itself and for tests.
type session struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Model   string    `json:"model"` // of the latest run
	// TotalCost is the session's running total, what total_cost_usd
	// reports.
	TotalCost float64     `json:"total_cost"`
	Runs      []runRecord `json:"runs"`
}

type runRecord struct {
	Argv     []string          `json:"argv"`
	Model    string            `json:"model"`
	Effort   string            `json:"effort,omitempty"`
	Resumed  bool              `json:"resumed"`
	Cwd      string            `json:"cwd"`
	Prompt   string            `json:"prompt"`
	Env      map[string]string `json:"env"`
	Started  time.Time         `json:"started"`
	Finished time.Time         `json:"finished,omitzero"`
	ExitCode int               `json:"exit_code"`
	Reply    string            `json:"reply,omitempty"`
}

func sessionDir() (string, error) {
	conf := os.Getenv("CLAUDE_CONFIG_DIR")
	if conf == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find home for session store: %w", err)
		}
		conf = filepath.Join(home, ".claude")
	}
	dir := filepath.Join(conf, "fakeclaude-sessions")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create session store: %w", err)
	}
	return dir, nil
}

func loadSession(dir, id string) (*session, error) {
	if id == "" || strings.ContainsAny(id, `/\`) || strings.HasPrefix(id, ".") {
		return nil, fmt.Errorf("invalid session id %q", id)
	}
	data, err := os.ReadFile(filepath.Join(dir, id+".json"))
	if err != nil {
		return nil, err
	}
	var s session
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("session %s: %w", id, err)
	}
	return &s, nil
}

func saveSession(dir string, s *session) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".session-*")
	if err != nil {
		return fmt.Errorf("save session %s: %w", s.ID, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("save session %s: %w", s.ID, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save session %s: %w", s.ID, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, s.ID+".json")); err != nil {
		return fmt.Errorf("save session %s: %w", s.ID, err)
	}
	return nil
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func randHex(n int) string {
	b := make([]byte, n/2+1)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}
