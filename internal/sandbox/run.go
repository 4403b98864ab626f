package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Outcome classifies how a run ended.
type Outcome string

// Outcomes of a run. Infrastructure means the sandbox itself failed and the
// command may never have started.
const (
	OutcomeSuccess        Outcome = "success"
	OutcomeError          Outcome = "error"
	OutcomeTimeout        Outcome = "timeout"
	OutcomeCancelled      Outcome = "cancelled"
	OutcomeInfrastructure Outcome = "infrastructure"
)

// Capabilities is the only set a sandboxed process keeps (S3): enough for
// package managers that chown and switch users, nothing that reaches the host.
var Capabilities = []string{"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"}

// DefaultStopGrace is how long a stopped container gets before SIGKILL.
const DefaultStopGrace = 10 * time.Second

// Mount is a host path bound into the container.
type Mount struct {
	Source   string
	Target   string
	ReadOnly bool
}

// Limits are a task's resource limits. Zero values mean "not limited".
type Limits struct {
	Timeout   time.Duration
	Memory    string // podman syntax: "512m", "8g"
	CPUs      string // "1.5"
	PidsLimit int
}

// NetworkMode says how a container reaches the network.
type NetworkMode string

// Network modes. Sandboxed (the proxy network) is provided by a
// NetworkProvider; Run refuses it without one rather than fall back.
const (
	NetworkNone      NetworkMode = "none"
	NetworkOpen      NetworkMode = "open"
	NetworkSandboxed NetworkMode = "sandboxed"
)

// NetworkProvider sets up the per-task network for NetworkSandboxed. A
// failed Setup leaves nothing behind and returns no TaskNetwork.
type NetworkProvider interface {
	Setup(ctx context.Context, name string) (*TaskNetwork, error)
}

// TaskNetwork is one task's network, set up.
type TaskNetwork struct {
	// Args are the agent container's extra engine arguments (network, DNS,
	// CA mount).
	Args []string
	// Lost, when not nil, is closed if the network sandbox fails while the
	// task runs in a way that cannot be observed any more (the proxy's
	// engine client was killed): Run stops the command and reports
	// infrastructure.
	Lost <-chan struct{}
	// Teardown removes everything Setup created. Run calls it once, on
	// every path, after the container is gone.
	Teardown func(context.Context)
	// Started, when not nil, is called once the container runs (its first
	// output line) or has ended: the warm pool makes the next spare then,
	// not while the engine is busy starting this one.
	Started func()
	// Ready, when not nil, finishes the set-up after the container has
	// been started on Args (a warm spare handed out before its task's
	// allowlist was known is claimed here): the command waits for it, like
	// for Spec.Ready.
	Ready func(ctx context.Context) error
}

// Spec is one command to run in a fresh container.
type Spec struct {
	// Context is an opaque id (conversation id, "cli") that goes into the
	// container name so an operator can tell containers apart.
	Context string
	Image   string
	Command []string
	Env     map[string]string
	Mounts  []Mount
	// Workdir defaults to /workspace.
	Workdir string
	Limits  Limits
	Network NetworkMode
	// Provider is required for NetworkSandboxed.
	Provider NetworkProvider
	// Stdin, when set, is copied to the command's standard input (the
	// agent's prompt); otherwise the command reads an empty input.
	Stdin io.Reader
	// StopGrace is the SIGTERM-to-SIGKILL grace on timeout or cancel.
	StopGrace time.Duration
	// Stdout and Stderr receive each output line (without its newline) as
	// soon as it is written; they may be nil. A line longer than MaxLine
	// is cut there and delivered with TruncatedMarker appended.
	Stdout, Stderr func(line []byte)
	// MaxLine caps the bytes of one output line held in memory; 0 means
	// DefaultMaxLine.
	MaxLine int
	// Ready, when not nil, is what the command still waits for once its
	// container has started: the container's start (most of a task's
	// start) overlaps the caller's last preparations, such as the
	// workspace's clone into a mounted directory. The command runs only
	// once Ready (and the network's TaskNetwork.Ready) have returned nil;
	// on an error it never runs, the container is removed, and the result
	// is infrastructure wrapping ErrNotReady and the error. The image must
	// have the Airut entrypoint (every ImageCache task image has): it holds
	// the command back until the runner lets it go (see GateEnv).
	Ready func(ctx context.Context) error
}

// GateEnv is set in a container whose command waits (Spec.Ready): the
// Airut entrypoint then reads one line from standard input, and runs the
// command only when it is "go". The runner writes it once everything is
// ready, followed by the command's own input; it closes the input instead
// when something failed, and the entrypoint exits without running the
// command.
const GateEnv = "AIRUT_GATE"

// ErrNotReady is wrapped by the result of a run whose Ready failed: the
// container was started but its command never ran.
var ErrNotReady = errors.New("the sandbox was not ready: the command did not run")

// DefaultMaxLine is the longest output line delivered whole. Stream-json
// events carry whole tool results and can be megabytes long; a line past
// this is a runaway command, and holding it whole would let it exhaust the
// host's memory.
const DefaultMaxLine = 4 << 20

// TruncatedMarker ends a line that was cut at MaxLine; the rest of it, up
// to the next newline, is dropped.
const TruncatedMarker = " [airut: line truncated]"

// Result is how a run ended.
type Result struct {
	Outcome  Outcome
	ExitCode int
	// Reason explains non-success outcomes in one line.
	Reason   string
	Err      error
	Duration time.Duration
	// LimitsNotEnforced lists configured limits the host cannot enforce
	// (rootless Podman on cgroup v1); callers must surface it.
	LimitsNotEnforced []string
}

// Runner runs Specs with one Runtime; Prefix names containers so that the
// gateway ("airut") and airut-sandbox ("airut-cli") never sweep each other.
type Runner struct {
	rt     *Runtime
	Prefix string
	// StateDir holds the private files of running tasks (the proxy's
	// configuration, with the real secret values) and the run markers,
	// 0700; "" means DefaultStateDir(). See Sweep.
	StateDir string
	host     *HostInfo
	hostMu   sync.Mutex
}

// NewRunner returns a Runner whose containers are named prefix-….
func NewRunner(rt *Runtime, prefix string) *Runner {
	return &Runner{rt: rt, Prefix: prefix}
}

// Runtime returns the runner's engine.
func (r *Runner) Runtime() *Runtime { return r.rt }

var nameUnsafe = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// ContainerName returns a unique name prefix-context-random.
func (r *Runner) ContainerName(contextID string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	c := nameUnsafe.ReplaceAllString(contextID, "-")
	if c == "" {
		c = "task"
	}
	return fmt.Sprintf("%s-%s-%s", r.Prefix, c, hex.EncodeToString(b[:]))
}

// hostInfo is probed once per Runner, from the kernel's files rather than
// `podman info` (which costs more than a container start); it decides
// whether limits can be enforced, which must never be silently assumed.
func (r *Runner) hostInfo() *HostInfo {
	r.hostMu.Lock()
	defer r.hostMu.Unlock()
	if r.host == nil {
		hi := LocalHostInfo(r.rt)
		r.host = &hi
	}
	return r.host
}

// Args returns the engine arguments for spec, container name included, up
// to and including the image; the command follows.
func (r *Runner) Args(spec *Spec, name string, netArgs []string) ([]string, error) {
	if spec.Image == "" {
		return nil, errors.New("run: no image")
	}
	if len(spec.Command) == 0 {
		return nil, errors.New("run: no command")
	}
	workdir := spec.Workdir
	if workdir == "" {
		workdir = "/workspace"
	}
	args := []string{"run", "--rm", "--name", name,
		"--label", labelKind + "=" + r.Prefix,
		"--label", labelOwner + "=" + ownerToken(),
		"--cap-drop=ALL",
	}
	for _, c := range Capabilities {
		args = append(args, "--cap-add="+c)
	}
	if spec.Stdin != nil {
		args = append(args, "-i")
	}
	// A missing image is an error, never a pull: localhost/airut:… does
	// not exist on any registry, and an image must not come from one.
	args = append(args, pullNever)
	args = append(args, r.rt.runtimeArgs()...)
	args = append(args, "--security-opt", "no-new-privileges", "-w", workdir)
	if spec.Limits.Memory != "" {
		args = append(args, "--memory", spec.Limits.Memory)
		// Without a swap cap the memory limit only moves pages to swap.
		args = append(args, "--memory-swap", spec.Limits.Memory)
	}
	if spec.Limits.CPUs != "" {
		args = append(args, "--cpus", spec.Limits.CPUs)
	}
	if spec.Limits.PidsLimit > 0 {
		args = append(args, "--pids-limit", strconv.Itoa(spec.Limits.PidsLimit))
	}
	switch spec.Network {
	case NetworkNone:
		args = append(args, "--network", "none")
	case NetworkOpen:
		// The engine's default network: outbound access, no proxy.
	case NetworkSandboxed:
		if len(netArgs) == 0 {
			return nil, fmt.Errorf("run: sandboxed network has no provider arguments: %w", ErrInfrastructure)
		}
		args = append(args, netArgs...)
	default:
		return nil, fmt.Errorf("run: unknown network mode %q", spec.Network)
	}
	for _, m := range spec.Mounts {
		if m.Source == "" || m.Target == "" || strings.ContainsAny(m.Source+m.Target, ",") {
			return nil, fmt.Errorf("run: invalid mount %q:%q", m.Source, m.Target)
		}
		opt := "rw"
		if m.ReadOnly {
			opt = "ro"
		}
		args = append(args, "--mount", fmt.Sprintf("type=bind,source=%s,destination=%s,%s", m.Source, m.Target, opt))
	}
	keys := make([]string, 0, len(spec.Env))
	for k := range spec.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		// Values go through the environment of the engine process, not the
		// command line, so they never show up in ps or --verbose output.
		args = append(args, "--env", k)
	}
	args = append(args, spec.Image)
	return args, nil
}

// Run runs spec to completion. It never returns with a container or network
// of its own still present: teardown runs on success, failure, timeout and
// cancellation.
func (r *Runner) Run(ctx context.Context, spec Spec) Result {
	start := time.Now()
	res := r.run(ctx, &spec)
	res.Duration = time.Since(start)
	return res
}

func (r *Runner) run(ctx context.Context, spec *Spec) Result {
	var res Result
	if spec.Network == "" {
		return Result{Outcome: OutcomeInfrastructure, ExitCode: -1, Reason: "no network mode given",
			Err: fmt.Errorf("run: network mode not set: %w", ErrInfrastructure)}
	}
	if spec.Network == NetworkSandboxed && spec.Provider == nil {
		return Result{Outcome: OutcomeInfrastructure, ExitCode: -1,
			Reason: "network sandbox requested but not available",
			Err:    fmt.Errorf("run: sandboxed network without provider: %w", ErrInfrastructure)}
	}
	res.LimitsNotEnforced = r.hostInfo().UnenforcedLimits(spec.Limits)
	if len(res.LimitsNotEnforced) > 0 {
		r.rt.Logger.Warn("resource limits are NOT enforced on this host",
			"limits", strings.Join(res.LimitsNotEnforced, ","), "reason", r.hostInfo().LimitsReason)
	}

	name := r.ContainerName(spec.Context)
	// Teardown uses its own context: the caller's may already be cancelled.
	cleanupCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), teardownTimeout)
	}

	var netArgs []string
	var lost <-chan struct{}
	var readies []func(context.Context) error
	if spec.Ready != nil {
		readies = append(readies, spec.Ready)
	}
	if spec.Network == NetworkSandboxed {
		tn, err := spec.Provider.Setup(ctx, name)
		if err != nil {
			res.Outcome, res.ExitCode, res.Err = OutcomeInfrastructure, -1, err
			res.Reason = err.Error()
			if ctx.Err() != nil {
				res.Outcome, res.Reason = OutcomeCancelled, "cancelled"
			}
			return res
		}
		defer func() {
			c, cancel := cleanupCtx()
			defer cancel()
			tn.Teardown(c)
		}()
		netArgs, lost = tn.Args, tn.Lost
		if tn.Ready != nil {
			readies = append(readies, tn.Ready)
		}
		if tn.Started != nil {
			var once sync.Once
			started := func() { once.Do(tn.Started) }
			defer started()
			spec.Stdout, spec.Stderr = firstLine(spec.Stdout, started), firstLine(spec.Stderr, started)
		}
	}

	var g *gate
	if len(readies) > 0 {
		var err error
		if g, err = newGate(spec); err != nil {
			return infraResult(err)
		}
		defer g.close()
	}
	args, err := r.Args(spec, name, netArgs)
	if err != nil {
		res.Outcome, res.ExitCode, res.Err, res.Reason = OutcomeInfrastructure, -1, err, err.Error()
		return res
	}
	args = append(args, spec.Command...)

	// The engine process is not tied to ctx: killing the podman client
	// would leave the container running. Stop goes through the engine.
	cmd := r.rt.command(context.WithoutCancel(ctx), args...)
	for k, v := range spec.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin = spec.Stdin
	// `run --rm` removes the container when the engine client returns
	// normally; every other ending (stop, kill, engine failure, a client
	// that died) removes it explicitly, before the network goes.
	removed := false
	defer func() {
		if removed {
			return
		}
		c, cancel := cleanupCtx()
		defer cancel()
		r.remove(c, name)
	}()
	errTail := newTail(8)
	proc, err := startStreaming(cmd, spec.Stdout, spec.Stderr, errTail, spec.MaxLine)
	if err != nil {
		return infraResult(fmt.Errorf("start %s: %w", r.rt.Command, err))
	}
	var gateFailed <-chan error
	if g != nil {
		// Runs before the container's removal and the teardown: no
		// Ready (a claim) is still under way when the network goes.
		readyCtx, cancelReady := context.WithCancel(ctx)
		defer func() {
			cancelReady()
			g.close()
			<-g.done
		}()
		g.open(readyCtx, readies)
		gateFailed = g.failed
	}

	var timeout <-chan time.Time
	if spec.Limits.Timeout > 0 {
		t := time.NewTimer(spec.Limits.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	grace := spec.StopGrace
	if grace <= 0 {
		grace = DefaultStopGrace
	}

	var stopped Outcome
	var readyErr error
	select {
	case <-proc.exited:
		// A failed Ready closed the command's input: the entrypoint
		// exited without running it.
		select {
		case readyErr = <-gateFailed:
			stopped = outcomeNotReady
		default:
		}
	case <-timeout:
		stopped = OutcomeTimeout
	case <-ctx.Done():
		stopped = OutcomeCancelled
	case <-lost:
		stopped = OutcomeInfrastructure
	case readyErr = <-gateFailed:
		stopped = outcomeNotReady
		// Nothing ran: no grace to give.
		c, cancel := cleanupCtx()
		r.remove(c, name)
		removed = true
		cancel()
		select {
		case <-proc.exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-proc.exited
		}
	}
	if stopped != "" && stopped != outcomeNotReady {
		c, cancel := cleanupCtx()
		r.stop(c, name, grace)
		cancel()
		select {
		case <-proc.exited:
		case <-time.After(grace + 30*time.Second):
			// The engine client hangs on: kill it, the container is
			// removed by the deferred teardown.
			_ = cmd.Process.Kill()
			<-proc.exited
		}
	}
	werr := proc.err

	if clientKilled(werr) && stopped == "" {
		// The engine client died (SIGKILL, OOM killer), not the command:
		// the container may still run, and its status is unknown. It is
		// removed now, which also ends output a re-executed (rootless)
		// client still holds.
		c, cancel := cleanupCtx()
		r.remove(c, name)
		removed = true
		proc.drain(c, 10*time.Second)
		cancel()
		res.Outcome, res.ExitCode, res.Err = OutcomeInfrastructure, -1, fmt.Errorf("container engine client: %w: %w", werr, ErrInfrastructure)
		res.Reason = "the container engine client was killed (" + werr.Error() + "); the container was removed"
		return res
	}
	// Every line written before the client returned is delivered.
	proc.drain(context.WithoutCancel(ctx), 30*time.Second)
	res.ExitCode = exitCode(werr)
	removed = stopped == "" && res.ExitCode >= 0 && !(res.ExitCode >= 125 && res.ExitCode <= 127)
	switch {
	case stopped == outcomeNotReady:
		res.Outcome, res.ExitCode = OutcomeInfrastructure, -1
		res.Reason = readyErr.Error()
		res.Err = fmt.Errorf("%w: %w: %w", ErrNotReady, readyErr, ErrInfrastructure)
	case stopped == OutcomeInfrastructure:
		res.Outcome, res.ExitCode = OutcomeInfrastructure, -1
		res.Reason = "network sandbox lost while the command ran: the proxy's engine client died; the command was stopped"
		res.Err = fmt.Errorf("%s: %w", res.Reason, ErrInfrastructure)
	case stopped == OutcomeTimeout:
		res.Outcome = OutcomeTimeout
		res.Reason = fmt.Sprintf("timed out after %s", spec.Limits.Timeout)
	case stopped == OutcomeCancelled:
		res.Outcome, res.Reason = OutcomeCancelled, "cancelled"
	case res.ExitCode == 0:
		res.Outcome = OutcomeSuccess
	case res.ExitCode < 0:
		res.Outcome, res.Err = OutcomeInfrastructure, werr
		res.Reason = "container engine: " + werr.Error()
	case res.ExitCode >= 125 && res.ExitCode <= 127 && engineFailed(errTail.lines()):
		res.Outcome = OutcomeInfrastructure
		engineErr := strings.TrimPrefix(lastEngineError(errTail.lines()), "Error: ")
		res.Reason = "container failed to start: " + engineErr
		if hint := StartHint(res.Reason); hint != "" {
			res.Reason += " (" + hint + ")"
		}
		res.Err = fmt.Errorf("%s: %w", res.Reason, ErrInfrastructure)
		if isNoSuchImage(errors.New(engineErr)) && strings.Contains(engineErr, spec.Image) {
			res.Err = fmt.Errorf("%s: %w: %w", res.Reason, ErrImageMissing, ErrInfrastructure)
		}
	default:
		res.Outcome = OutcomeError
		res.Reason = fmt.Sprintf("exited with status %d", res.ExitCode)
		if res.ExitCode == 137 && spec.Limits.Memory != "" {
			res.Reason = fmt.Sprintf("killed (SIGKILL, status 137): most likely out of memory (memory limit %s)", spec.Limits.Memory)
		}
	}
	return res
}

func infraResult(err error) Result {
	return Result{Outcome: OutcomeInfrastructure, ExitCode: -1, Err: fmt.Errorf("%w: %w", err, ErrInfrastructure), Reason: err.Error()}
}

// clientKilled reports an engine client ended by a signal rather than by
// returning the container's status.
func clientKilled(err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee) && ee.ExitCode() < 0
}

// pullNever is the engine's "never pull" flag: every image the sandbox runs
// is built locally.
const pullNever = "--pull=never"

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if code := ee.ExitCode(); code >= 0 {
			return code
		}
		// Killed by a signal: report it the shell's way.
		return 128 + 9
	}
	return -1
}

// engineFailed tells podman's own "Error: …" apart from a command that
// happened to exit 125.
func engineFailed(lines []string) bool { return lastEngineError(lines) != "" }

func lastEngineError(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "Error: ") {
			return lines[i]
		}
	}
	return ""
}

func (r *Runner) stop(ctx context.Context, name string, grace time.Duration) {
	secs := int((grace + time.Second - 1) / time.Second)
	if _, err := r.rt.output(ctx, "stop", "-t", strconv.Itoa(secs), name); err != nil && !isNoSuchContainer(err) {
		r.rt.Logger.Warn("stop container", "name", name, "err", err)
	}
}

func (r *Runner) remove(ctx context.Context, name string) {
	if _, err := r.rt.output(ctx, "rm", "-f", "-t", "0", name); err != nil && !isNoSuchContainer(err) {
		// docker rm has no -t; retry without it.
		if _, err2 := r.rt.output(ctx, "rm", "-f", name); err2 != nil && !isNoSuchContainer(err2) {
			r.rt.Logger.Warn("remove container", "name", name, "err", err2)
		}
	}
}

// removeNetworkOnce removes a network with every container still on it,
// stopped with grace seconds before they are killed. It reports whether the
// network is gone.
func (r *Runner) removeNetworkOnce(ctx context.Context, name string, grace int) bool {
	_, err := r.rt.output(ctx, "network", "rm", "-f", "-t", strconv.Itoa(grace), name)
	return err == nil || isNoSuchNetwork(err)
}

// removeNetwork removes a network, retrying with backoff. Under load
// `network rm` races the engine's own clean-up of a container that was on
// it (the exit command that `run --rm` leaves to conmon), and a teardown
// that gave up at the first error left the network behind. It reports
// whether the network is gone.
func (r *Runner) removeNetwork(ctx context.Context, name string) bool {
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		_, err := r.rt.output(ctx, "network", "rm", "-f", "-t", "0", name)
		if err == nil || isNoSuchNetwork(err) {
			return true
		}
		if attempt == networkRemoveAttempts || ctx.Err() != nil {
			r.rt.Logger.Warn("remove task network", "network", name, "attempts", attempt, "err", err)
			return false
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// networkRemoveAttempts bounds removeNetwork: about 3 s of backoff.
const networkRemoveAttempts = 6

func isNoSuchNetwork(err error) bool {
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "network not found") || strings.Contains(s, "no such network")
}

func isNoSuchContainer(err error) bool {
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "no such container") || strings.Contains(s, "no container with name")
}

// OwnerToken identifies this process across PID reuse: pid and kernel
// start time. Every container and network the sandbox creates carries it
// as the io.airut.owner label; sweeps remove only resources whose owner is
// gone.
func OwnerToken() string { return ownerToken() }

func ownerToken() string {
	pid := os.Getpid()
	return fmt.Sprintf("%d:%s", pid, processStart(pid))
}

func processStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "0"
	}
	// Field 22 (starttime) follows the parenthesised command name, which
	// may itself contain spaces.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		f := strings.Fields(s[i+1:])
		if len(f) > 19 {
			return f[19]
		}
	}
	return "0"
}

// ownerAlive reports whether the process named by an owner token runs.
func ownerAlive(token string) bool {
	pid, start, ok := ownerProcess(token)
	return ok && processStart(pid) == start && start != "0"
}

// ownerProcess splits an owner token into its pid and start time.
func ownerProcess(token string) (pid int, start string, ok bool) {
	pidStr, start, ok := strings.Cut(token, ":")
	if !ok {
		return 0, "", false
	}
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 {
		return 0, "", false
	}
	return pid, start, true
}

// firstLine wraps a line callback to call started before the first line.
func firstLine(fn func([]byte), started func()) func([]byte) {
	return func(line []byte) {
		started()
		if fn != nil {
			fn(line)
		}
	}
}
