// Package agent knows how Claude Code is invoked inside a sandbox and how its
// stream-json output is read: the command line and environment, the prompt
// with its preamble, the reply, usage and session id extracted from the
// event stream, and the classification of a finished run into an outcome.
//
// It knows nothing of Podman, channels or conversations on disk; the gateway
// glues those together.
package agent

// BinaryPath is where the sandbox mounts the Claude Code executable.
const BinaryPath = "/opt/claude/claude"

// DefaultModel is used when Options.Model is empty, matching the server
// config's default for repos.*.model.
const DefaultModel = "opus"

// Options are the per-task choices that end up on Claude Code's command line.
type Options struct {
	// Model is a model alias (opus, sonnet, haiku) or a full model name;
	// default DefaultModel.
	Model string
	// Effort is passed as --effort when non-empty.
	Effort string
	// SessionID resumes an earlier session (--resume) when non-empty.
	SessionID string
}

// Command returns the argv that runs Claude Code headless with the prompt
// read from standard input and stream-json on standard output.
//
// Plain -p reads the prompt from stdin; "-p -" would make the real CLI
// take "-" as prompt text and put "-\n" before ours. --verbose is not
// optional: Claude Code refuses stream-json output in print mode without
// it.
func Command(opts Options) []string {
	model := opts.Model
	if model == "" {
		model = DefaultModel
	}
	argv := []string{BinaryPath}
	if opts.SessionID != "" {
		argv = append(argv, "--resume", opts.SessionID)
	}
	argv = append(argv, "--model", model)
	if opts.Effort != "" {
		argv = append(argv, "--effort", opts.Effort)
	}
	return append(argv,
		"-p",
		"--dangerously-skip-permissions",
		"--output-format", "stream-json",
		"--verbose",
	)
}

// ConfigDir is where the agent's Claude Code keeps its state: the mounted
// /root/.claude. Without CLAUDE_CONFIG_DIR the CLI writes .claude.json
// beside it in $HOME, which is not mounted and is lost between tasks.
const ConfigDir = "/root/.claude"

// Env returns the variables the agent container always gets on top of the
// task's own:
//   - IS_SANDBOX=1: the real CLI refuses --dangerously-skip-permissions as
//     root without it (the entrypoint sets it too);
//   - CLAUDE_CONFIG_DIR: see ConfigDir;
//   - CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 and DISABLE_AUTOUPDATER=1:
//     no telemetry, feature-flag or update traffic carrying the key;
//   - CLAUDE_CODE_ENABLE_TODO_TOOLS=1: current CLIs track the todo list
//     with TaskCreate/TaskUpdate only when asked to;
//   - CLAUDE_CODE_DISABLE_BACKGROUND_TASKS=1: the container is torn down as
//     soon as Claude Code exits, so a background shell would be killed
//     mid-work and its output would never reach the reply.
func Env() map[string]string {
	return map[string]string{
		"IS_SANDBOX":        "1",
		"CLAUDE_CONFIG_DIR": ConfigDir,
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
		"DISABLE_AUTOUPDATER":                      "1",
		"CLAUDE_CODE_ENABLE_TODO_TOOLS":            "1",
		"CLAUDE_CODE_DISABLE_BACKGROUND_TASKS":     "1",
	}
}
