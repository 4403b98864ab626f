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
// --verbose is not optional: Claude Code refuses stream-json output in
// print mode without it.
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
		"-p", "-",
		"--dangerously-skip-permissions",
		"--output-format", "stream-json",
		"--verbose",
	)
}

// Env returns the variables the agent container always gets on top of the
// task's own. Background tasks are disabled because the container is torn
// down as soon as Claude Code exits: a background shell would be killed
// mid-work and its output would never reach the reply.
func Env() map[string]string {
	return map[string]string{
		"CLAUDE_CODE_DISABLE_BACKGROUND_TASKS": "1",
	}
}
