// Package sandbox runs commands in hardened containers through the podman
// CLI: image cache keyed by content hash, per-task containers with a fixed
// set of security flags and limits, line-by-line output streaming, timeouts,
// cancellation, and teardown of everything it created on every path.
//
// It knows nothing of email, Slack or conversations: callers pass an opaque
// context id, paths to mount, limits and a network mode.
package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrInfrastructure marks failures of the sandbox itself (podman missing,
// image build failed, container could not start) as opposed to failures of
// the command run inside it.
var ErrInfrastructure = errors.New("sandbox infrastructure failure")

// ErrImageMissing marks a container that could not start because its
// image is gone (removed outside the ImageCache that handed it out); the
// caller can Forget the tag, ensure the image again and retry, since
// nothing ran.
var ErrImageMissing = errors.New("the container's image is missing")

// Runtime drives a container engine through its CLI.
type Runtime struct {
	// Command is the engine binary: "podman" (default) or "docker".
	Command string
	// Verbose, when set, receives every engine command line before it runs.
	Verbose io.Writer
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// OCIRuntime, when set, is passed as --runtime (e.g. "runc") for hosts
	// where the engine's default runtime cannot start containers.
	OCIRuntime string
	// Ulimits are passed as --ulimit (e.g. "nofile=20000:20000") for hosts
	// where inheriting the engine's defaults fails.
	Ulimits []string

	verboseMu sync.Mutex
}

// NewRuntime returns a Runtime for command ("" means podman).
func NewRuntime(command string, logger *slog.Logger) (*Runtime, error) {
	if command == "" {
		command = "podman"
	}
	switch base := baseName(command); base {
	case "podman", "docker":
	default:
		return nil, fmt.Errorf("container_command %q: must be podman or docker", command)
	}
	if _, err := exec.LookPath(command); err != nil {
		return nil, fmt.Errorf("container_command %q: %w: %w", command, err, ErrInfrastructure)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Runtime{Command: command, Logger: logger}, nil
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// IsPodman reports whether the engine is podman (docker lacks some flags).
func (r *Runtime) IsPodman() bool { return baseName(r.Command) == "podman" }

func (r *Runtime) logCommand(args []string) {
	if r.Verbose == nil {
		return
	}
	r.verboseMu.Lock()
	defer r.verboseMu.Unlock()
	fmt.Fprintf(r.Verbose, "+ %s %s\n", r.Command, shellQuote(args))
}

// command builds an engine invocation. Callers set stdio themselves.
func (r *Runtime) command(ctx context.Context, args ...string) *exec.Cmd {
	r.logCommand(args)
	cmd := exec.CommandContext(ctx, r.Command, args...)
	cmd.Env = os.Environ()
	dieWithParent(cmd)
	return cmd
}

// output runs an engine command and returns its stdout; on failure the
// error carries the engine's stderr, which is where podman explains itself.
func (r *Runtime) output(ctx context.Context, args ...string) ([]byte, error) {
	cmd := r.command(ctx, args...)
	// A cancelled engine command (an image build nobody waits for) gets
	// SIGTERM, so it removes its working containers, and is killed only if
	// it does not exit.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return stdout.Bytes(), fmt.Errorf("%s %s: %s", baseName(r.Command), firstArgs(args), lastLines(msg, 6))
	}
	return stdout.Bytes(), nil
}

func firstArgs(args []string) string {
	if len(args) > 2 {
		args = args[:2]
	}
	return strings.Join(args, " ")
}

// lastLines keeps the tail of a long engine message: build logs put the
// reason at the end.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func shellQuote(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a != "" && strings.IndexFunc(a, func(c rune) bool {
			return !(c == '-' || c == '_' || c == '.' || c == '/' || c == ':' || c == '=' || c == ',' ||
				c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9')
		}) < 0 {
			b.WriteString(a)
			continue
		}
		b.WriteByte('\'')
		b.WriteString(strings.ReplaceAll(a, "'", `'\''`))
		b.WriteByte('\'')
	}
	return b.String()
}

// runtimeArgs are the operator's runtime knobs for run and build.
func (r *Runtime) runtimeArgs() []string {
	var args []string
	if r.OCIRuntime != "" {
		args = append(args, "--runtime", r.OCIRuntime)
	}
	for _, u := range r.Ulimits {
		args = append(args, "--ulimit", u)
	}
	return args
}

// StartHint says which knob fixes a known container start failure, or "".
func StartHint(msg string) string {
	m := strings.ToLower(msg)
	switch {
	case strings.Contains(m, "setrlimit") || strings.Contains(m, "error setting rlimit"),
		strings.Contains(m, "cgroups in hybrid mode"):
		return "this host needs runc and explicit ulimits: export CONTAINERS_CONF=<airut>/contrib/containers.conf " +
			"(or set container_runtime: runc and container_ulimits in airut.yaml)"
	case strings.Contains(m, "/dev/net/tun"):
		return "rootless networking needs /dev/net/tun: sudo chmod 666 /dev/net/tun"
	case strings.Contains(m, "newuidmap") || strings.Contains(m, "subuid") || strings.Contains(m, "uid map"):
		return "rootless Podman needs subordinate ids: sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $USER"
	}
	return ""
}
