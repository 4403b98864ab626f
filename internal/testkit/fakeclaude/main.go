// Command fakeclaude stands in for Claude Code in tests, where no model is
// reachable. It accepts the command line the gateway uses, reads the prompt
// on standard input, and writes realistic stream-json. Sessions are kept in
// $HOME/.claude/fakeclaude-sessions/<id>.json so that a mounted /root/.claude
// carries them from one task to the next, and --resume of an unknown id
// fails the way Claude Code does.
//
// The prompt may carry a script: lines that start with @@, run in order.
//
//	@@run <shell command>       run with /bin/sh -c; output becomes a tool_result
//	@@write <path> <text...>    write text to path (\n in text is a newline)
//	@@sleep <seconds>           sleep (fractions allowed)
//	@@reply <text...>           an assistant text; the last one is the reply
//	@@fail <exit code> <msg>    report msg as an error and exit with the code
//	@@prompt-too-long           fail the way Claude Code does on a full context
//	@@todo <item>|<item>...     a TodoWrite call; "[x] " marks an item completed,
//	                            "[>] " in progress, anything else is pending
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
const version = "2.0.50 (Claude Code; fakeclaude)"

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
			if o.promptFromArg {
				return nil, false, usageError(fmt.Sprintf("error: too many arguments. Expected 1 argument but got %q too.", arg))
			}
			o.promptFromArg = arg != "-"
			if arg != "-" {
				o.prompt = arg
			}
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
	if !o.promptFromArg {
		data, err := io.ReadAll(stdin)
		if err != nil {
			fmt.Fprintf(stderr, "Error: read prompt from stdin: %v\n", err)
			return 1
		}
		o.prompt = string(data)
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
			// Claude Code's own words, so the gateway's detection is tested
			// against what the real binary prints.
			fmt.Fprintf(stderr, "No conversation found with session ID: %s\n", o.resume)
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

	e := &emitter{w: stdout, format: o.outputFormat, session: sess.ID, model: fullModel(model), start: time.Now(), prompt: o.prompt}
	e.emit(map[string]any{
		"type": "system", "subtype": "init",
		"cwd": cwd, "session_id": sess.ID, "model": e.model,
		"tools":          []string{"Task", "Bash", "Glob", "Grep", "Read", "Edit", "Write", "WebFetch", "TodoWrite", "WebSearch"},
		"mcp_servers":    []any{},
		"permissionMode": permissionMode(o.skipPerms),
		"apiKeySource":   "none",
		"slash_commands": []string{"compact", "cost", "review"},
		"output_style":   "default",
		"uuid":           newUUID(),
	})

	code := e.runSteps(steps, stderr)

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
		return "claude-opus-4-5-20251101"
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
	for _, k := range []string{"CLAUDE_CODE_DISABLE_BACKGROUND_TASKS", "IS_SANDBOX", "HOME"} {
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
	"run": true, "write": true, "sleep": true, "reply": true, "fail": true,
	"prompt-too-long": true, "todo": true, "echo-prompt": true,
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

func (e *emitter) assistant(model string, blocks ...map[string]any) {
	e.turns++
	for _, b := range blocks {
		if t, ok := b["text"].(string); ok {
			e.outChars += len(t)
		}
	}
	e.emit(map[string]any{
		"type": "assistant",
		"message": map[string]any{
			"model": model, "id": "msg_" + randHex(12), "type": "message", "role": "assistant",
			"content": blocks, "stop_reason": nil, "stop_sequence": nil,
			"usage": map[string]any{"input_tokens": 3, "output_tokens": 10},
		},
		"parent_tool_use_id": nil, "session_id": e.session, "uuid": newUUID(),
	})
}

func (e *emitter) text(s string) {
	e.lastText = s
	e.assistant(e.model, map[string]any{"type": "text", "text": s})
}

// tool emits a tool_use and its tool_result.
func (e *emitter) tool(name string, input map[string]any, do func() (string, bool)) {
	id := "toolu_" + randHex(12)
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

func (e *emitter) result(subtype string, isErr bool, text string, extra map[string]any) {
	elapsed := time.Since(e.start).Milliseconds()
	in, out := len(e.prompt)/4+1, e.outChars/4+1
	ev := map[string]any{
		"type": "result", "subtype": subtype, "is_error": isErr,
		"duration_ms": elapsed, "duration_api_ms": elapsed,
		"num_turns": max(e.turns, 1), "result": text, "session_id": e.session,
		"total_cost_usd": float64(in)*3e-6 + float64(out)*15e-6,
		"usage": map[string]any{
			"input_tokens": in, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
			"output_tokens":   out,
			"server_tool_use": map[string]any{"web_search_requests": 0, "web_fetch_requests": 0},
			"service_tier":    "standard",
		},
		"modelUsage": map[string]any{}, "permission_denials": []any{}, "uuid": newUUID(),
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
		case "reply":
			e.text(unescape(s.args))
			replied = true
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
			e.assistant("<synthetic>", map[string]any{"type": "text", "text": msg})
			e.result("error_during_execution", true, msg, nil)
			fmt.Fprintln(stderr, msg)
			return code
		case "prompt-too-long":
			e.lastText = "Prompt is too long"
			e.assistant("<synthetic>", map[string]any{"type": "text", "text": "Prompt is too long"})
			e.result("success", true, "Prompt is too long", map[string]any{
				"terminal_reason": "prompt_too_long", "api_error_status": 400,
			})
			return 1
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
	ID      string      `json:"id"`
	Created time.Time   `json:"created"`
	Model   string      `json:"model"` // of the latest run
	Runs    []runRecord `json:"runs"`
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
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find home for session store: %w", err)
	}
	dir := filepath.Join(home, ".claude", "fakeclaude-sessions")
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
