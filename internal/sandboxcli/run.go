package sandboxcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/airut/airut/internal/repoconfig"
	"github.com/airut/airut/internal/sandbox"
)

// Prefix names every resource airut-sandbox creates, so it can share a host
// with a gateway without either sweeping the other's.
var Prefix = "airut-cli"

// StateDir is where airut-sandbox keeps each run's private files (the
// proxy's configuration with the real secret values) and its run markers;
// "" means sandbox.DefaultStateDir(), $XDG_STATE_HOME/airut-sandbox.
var StateDir = ""

type runOpts struct {
	config           string
	dockerfile       string
	contextDir       string
	allowlist        string
	timeout          int
	containerCommand string
	mounts           []string
	maxImageAge      float64
	networkLog       string
	networkLogLive   bool
	verbose          bool
	resolve          []string
	upstreamCA       string
	configRef        string
}

func newRunCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	var o runOpts
	cmd := &cobra.Command{
		Use:   "run [flags] -- COMMAND [ARGS...]",
		Short: "Run a command in the sandbox, with the current directory at /workspace",
		Long: `Run a command in the sandbox: the container built from .airut/container/,
the network allowlist of .airut/network-allowlist.yaml, masked secrets and
limits from .airut/sandbox.yaml. The current directory is mounted at
/workspace (its .git read-only), and standard input is passed to the
command unless it is a terminal. The command's exit code is passed
through; 124 means it timed out, 125 means the sandbox itself failed (a
one-line reason is printed).

The rules (.airut/) are read from a trusted ref, never from the checkout
under test: --config-ref REF, else origin/$GITHUB_BASE_REF when that is
set (a GitHub pull request), else origin/HEAD (the default branch). HEAD
is used only with --config-ref HEAD or in a repository without a remote,
with a warning. Relative --config, --allowlist, --dockerfile and
--context-dir paths are read from that ref too; absolute ones from disk.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if dash < 0 {
				return fail(ExitUsage, "missing -- before the command (usage: airut-sandbox run [flags] -- COMMAND [ARGS...])")
			}
			if dash > 0 {
				return fail(ExitUsage, "unexpected argument %q before -- (flags go before --, the command after)", args[0])
			}
			if len(args) == 0 {
				return fail(ExitUsage, "no command after --")
			}
			return runCommand(cmd.Context(), &o, args, forwardedStdin(stdin), stdout, stderr)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return fail(ExitUsage, "%s", err) })
	f := cmd.Flags()
	addRulesFlags(f, &o)
	f.StringVar(&o.config, "config", "", "sandbox config (default .airut/sandbox.yaml at the config ref)")
	f.StringVar(&o.allowlist, "allowlist", "", "network allowlist (default .airut/network-allowlist.yaml at the config ref)")
	f.IntVar(&o.timeout, "timeout", 0, "timeout in seconds (overrides resource_limits.timeout)")
	f.StringVar(&o.containerCommand, "container-command", "podman", "container engine: podman or docker")
	f.StringArrayVar(&o.mounts, "mount", nil, "extra mount SRC:DST[:ro] (repeatable)")
	f.Float64Var(&o.maxImageAge, "max-image-age", sandbox.DefaultMaxImageAge.Hours(), "rebuild images older than this many hours")
	f.StringVar(&o.networkLog, "network-log", "", "append the network log to FILE")
	f.BoolVar(&o.networkLogLive, "network-log-live", false, "print network log lines to stderr as they happen")
	f.BoolVar(&o.verbose, "verbose", false, "show progress and the container engine commands")
	f.StringArrayVar(&o.resolve, "resolve", nil, "pin HOST=ADDR in the proxy (repeatable)")
	f.StringVar(&o.upstreamCA, "upstream-ca", "", "extra PEM CA file trusted for upstream TLS")
	return cmd
}

// addRulesFlags adds the flags that choose where the rules come from,
// shared by run and image.
func addRulesFlags(f *pflag.FlagSet, o *runOpts) {
	f.StringVar(&o.configRef, "config-ref", "", "git ref to read .airut/ from (default origin/$GITHUB_BASE_REF, else origin/HEAD; HEAD = the code under test)")
	f.StringVar(&o.dockerfile, "dockerfile", "", "Dockerfile (default .airut/container/Dockerfile at the config ref)")
	f.StringVar(&o.contextDir, "context-dir", "", "build context directory (default: the Dockerfile's directory)")
}

// forwardedStdin is what the command reads: the caller's standard input,
// except a terminal, which the sandbox (no tty) cannot use and must not
// wait on.
func forwardedStdin(in io.Reader) io.Reader {
	if f, ok := in.(*os.File); ok && (f == nil || isTerminal(f)) {
		return nil
	}
	return in
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// openRules resolves the rules' source for the working directory, logs it
// (--verbose) and prints the warning when it is the code under test.
func openRules(ctx context.Context, o *runOpts, cwd string, stderr io.Writer) (*rules, error) {
	r, err := resolveRules(ctx, cwd, o.configRef, os.Getenv)
	if err != nil {
		return nil, fail(ExitUsage, "%s", oneLine(err))
	}
	r.stderr = stderr
	newLogger(stderr, o.verbose).Info("sandbox rules", "from", r.describe(), "trusted", r.trusted)
	if !r.trusted {
		fmt.Fprintf(stderr, "airut-sandbox: WARNING: the sandbox rules (.airut/) come from %s, the code under test (%s): "+
			"a change to them in this checkout takes effect, and network_sandbox: false is refused\n", r.describe(), r.why)
	}
	return r, nil
}

func runCommand(ctx context.Context, o *runOpts, command []string, stdin io.Reader, stdout, stderr io.Writer) error {
	logger := newLogger(stderr, o.verbose)
	cwd, err := os.Getwd()
	if err != nil {
		return fail(ExitInfra, "working directory: %v", err)
	}
	r, err := openRules(ctx, o, cwd, stderr)
	if err != nil {
		return err
	}

	cfg, err := loadSandboxConfig(ctx, o, r)
	if err != nil {
		return fail(ExitUsage, "%v", err)
	}
	mounts := []sandbox.Mount{{Source: cwd, Target: "/workspace"}}
	if m, ok := gitMount(r); ok {
		mounts = append(mounts, m)
	}
	for _, m := range o.mounts {
		mt, err := parseMount(m)
		if err != nil {
			return fail(ExitUsage, "%v", err)
		}
		mounts = append(mounts, mt)
	}
	bctx, err := buildContext(ctx, o, r)
	if err != nil {
		return fail(ExitUsage, "%v", err)
	}
	env, err := commandEnv(cfg)
	if err != nil {
		return fail(ExitUsage, "%v", err)
	}
	limits := sandbox.Limits{Memory: cfg.Limits.Memory, CPUs: cfg.Limits.CPUs, PidsLimit: cfg.Limits.PidsLimit,
		Timeout: time.Duration(cfg.Limits.TimeoutSeconds) * time.Second}
	if o.timeout > 0 {
		limits.Timeout = time.Duration(o.timeout) * time.Second
	}

	spec := sandbox.Spec{
		Context: "run",
		Command: command,
		Env:     env,
		Mounts:  mounts,
		Limits:  limits,
		Stdin:   stdin,
		Stdout:  lineWriter(stdout),
		Stderr:  lineWriter(stderr),
	}

	rt, err := sandbox.NewRuntime(o.containerCommand, logger)
	if err != nil {
		return fail(ExitInfra, "%v", err)
	}
	if o.verbose {
		rt.Verbose = stderr
	}
	runner := sandbox.NewRunner(rt, Prefix)
	runner.StateDir = StateDir
	// Leftovers exist only if an earlier run died (its marker is still
	// there); they are swept alongside this run rather than before it, since
	// they belong to dead processes and cannot collide. The sweep removes
	// the dead run's private files (secrets) first.
	defer runner.MarkRunning()()
	var sweep sync.WaitGroup
	if runner.NeedsSweep() {
		sweep.Go(func() {
			if _, err := runner.Sweep(context.WithoutCancel(ctx)); err != nil {
				logger.Warn("sweep of leftovers failed", "err", err)
			}
		})
	}
	defer sweep.Wait()
	cache := sandbox.NewImageCache(rt, Prefix)
	proxy, netCleanup, err := configureNetwork(ctx, o, cfg, r, &spec, runner, stderr)
	if err != nil {
		return fail(ExitUsage, "%v", oneLine(err))
	}
	defer netCleanup()
	cache.MaxAge = time.Duration(o.maxImageAge * float64(time.Hour))
	// The network sandbox starts at once, beside the task image's check
	// or build: its networks are created while the proxy image is looked
	// up (each costs an engine call even when cached), and its proxy
	// starts as soon as that image is known (prestart.go). A failure there
	// is Run's, as an infrastructure failure of the network sandbox.
	if proxy != nil {
		pre := proxy.Prestart(ctx, spec.Context, func(ctx context.Context) (string, error) {
			tag, release, err := cache.EnsureProxy(ctx, proxy.ProxyBinary)
			release() // airut-sandbox never prunes: the lease need not outlast the look-up
			return tag, err
		})
		spec.Provider = pre
		defer pre.Discard(context.WithoutCancel(ctx))
	}
	var release func()
	spec.Image, release, err = cache.Ensure(ctx, bctx)
	defer release()
	if err != nil {
		if ctx.Err() != nil {
			return cancelled(ctx)
		}
		return fail(ExitInfra, "%v", oneLine(err))
	}

	res := runner.Run(ctx, spec)
	for _, l := range res.LimitsNotEnforced {
		fmt.Fprintf(stderr, "airut-sandbox: WARNING: limit %s is NOT enforced on this host (see airut check)\n", l)
	}
	switch res.Outcome {
	case sandbox.OutcomeSuccess:
		return nil
	case sandbox.OutcomeError:
		if res.ExitCode >= 124 && res.ExitCode <= 127 || res.ExitCode == 137 {
			// Codes the sandbox also uses: say whose they are.
			return fail(res.ExitCode, "command %s", res.Reason)
		}
		return &exitError{code: res.ExitCode}
	case sandbox.OutcomeTimeout:
		return fail(ExitTimeout, "%s; the sandbox was torn down", res.Reason)
	case sandbox.OutcomeCancelled:
		return cancelled(ctx)
	default:
		return fail(ExitInfra, "%s", oneLine(errors.New(res.Reason)))
	}
}

func cancelled(ctx context.Context) error {
	var se signalError
	if errors.As(context.Cause(ctx), &se) {
		return fail(128+int(se.sig), "%s: the sandbox was torn down", se)
	}
	return fail(128+int(syscall.SIGTERM), "cancelled: the sandbox was torn down")
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", " | ")), " ")
}

// loadSandboxConfig reads sandbox.yaml and refuses network_sandbox: false
// unless the file came from the trusted ref: the pull request under test
// must not be able to switch the network sandbox off.
func loadSandboxConfig(ctx context.Context, o *runOpts, r *rules) (*repoconfig.Sandbox, error) {
	var cfg *repoconfig.Sandbox
	var err error
	trusted, from := r.trusted, repoconfig.SandboxPath+" of "+r.describe()
	if o.config == "" {
		cfg, err = repoconfig.LoadSandbox(ctx, r.src, os.LookupEnv)
	} else {
		var data []byte
		var name string
		if data, name, trusted, err = r.readFile(ctx, "--config", o.config); err == nil {
			cfg, err = repoconfig.ParseSandbox(data, name, os.LookupEnv)
			from = "--config " + o.config
		}
	}
	if err != nil {
		return nil, err
	}
	if !cfg.NetworkSandbox && !trusted {
		return nil, fmt.Errorf("network_sandbox: false in %s is refused: it comes from the code under test, "+
			"and an open network is taken only from the trusted ref (the default branch, or --config-ref)", from)
	}
	return cfg, nil
}

// buildContext is the container build context: .airut/container/ at the
// rules' ref, or what --context-dir and --dockerfile name.
func buildContext(ctx context.Context, o *runOpts, r *rules) (fs.FS, error) {
	if o.dockerfile == "" && o.contextDir == "" {
		return repoconfig.ContainerContext(ctx, r.src, repoconfig.DefaultContainerPath)
	}
	flag, dir := "--context-dir", o.contextDir
	if dir == "" {
		flag, dir = "--dockerfile", filepath.Dir(o.dockerfile)
	}
	tree, err := r.tree(ctx, flag, dir)
	if err != nil {
		return nil, err
	}
	if o.dockerfile != "" {
		data, _, _, err := r.readFile(ctx, "--dockerfile", o.dockerfile)
		if err != nil {
			return nil, err
		}
		return repoconfig.WithFile(tree, "Dockerfile", data)
	}
	if _, err := fs.Stat(tree, "Dockerfile"); err != nil {
		return nil, fmt.Errorf("--context-dir %s: no Dockerfile", dir)
	}
	return tree, nil
}

// gitMount mounts the repository's .git read-only over the workspace's:
// the command must not be able to move the trusted ref (or plant a
// replace ref, a hook, a config) that the next airut-sandbox run on this
// checkout reads its rules from.
func gitMount(r *rules) (sandbox.Mount, bool) {
	if r.commit == "" || r.rel != "." {
		return sandbox.Mount{}, false
	}
	p := filepath.Join(r.top, ".git")
	if _, err := os.Lstat(p); err != nil {
		return sandbox.Mount{}, false
	}
	return sandbox.Mount{Source: p, Target: "/workspace/.git", ReadOnly: true}, true
}

// commandEnv is the container environment: fixed env, then pass_env; the
// surrogates of masked secrets and signing credentials are added by
// configureNetwork, and win.
func commandEnv(cfg *repoconfig.Sandbox) (map[string]string, error) {
	env := map[string]string{}
	for k, v := range cfg.Env {
		env[k] = v
	}
	for _, name := range cfg.PassEnv {
		if v, ok := os.LookupEnv(name); ok {
			env[name] = v
		}
	}
	return env, nil
}

func parseMount(s string) (sandbox.Mount, error) {
	parts := strings.Split(s, ":")
	var m sandbox.Mount
	switch {
	case len(parts) == 2:
	case len(parts) == 3 && parts[2] == "ro":
		m.ReadOnly = true
	default:
		return m, fmt.Errorf("--mount %q: expected SRC:DST or SRC:DST:ro", s)
	}
	src, err := filepath.Abs(parts[0])
	if err != nil {
		return m, err
	}
	if _, err := os.Stat(src); err != nil {
		return m, fmt.Errorf("--mount %q: %w", s, err)
	}
	if !strings.HasPrefix(parts[1], "/") {
		return m, fmt.Errorf("--mount %q: destination must be an absolute path", s)
	}
	m.Source, m.Target = src, parts[1]
	return m, nil
}

// lineWriter passes each line through to w with its newline restored;
// writes are serialised so lines from stdout and stderr never interleave.
func lineWriter(w io.Writer) func([]byte) {
	var mu sync.Mutex
	return func(line []byte) {
		mu.Lock()
		defer mu.Unlock()
		_, _ = w.Write(append(line, '\n'))
	}
}
