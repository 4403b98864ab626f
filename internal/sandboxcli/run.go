package sandboxcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/airut/airut/internal/gitmirror"
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
}

func newRunCmd(stdout, stderr io.Writer) *cobra.Command {
	var o runOpts
	cmd := &cobra.Command{
		Use:   "run [flags] -- COMMAND [ARGS...]",
		Short: "Run a command in the sandbox, with the current directory at /workspace",
		Long: `Run a command in the sandbox: the container built from .airut/container/,
the network allowlist of .airut/network-allowlist.yaml, masked secrets and
limits from .airut/sandbox.yaml. The current directory is mounted at
/workspace. The command's exit code is passed through; 124 means it timed
out, 125 means the sandbox itself failed (a one-line reason is printed).`,
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
			return runCommand(cmd.Context(), &o, args, stdout, stderr)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return fail(ExitUsage, "%s", err) })
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "sandbox config (default .airut/sandbox.yaml at HEAD)")
	f.StringVar(&o.dockerfile, "dockerfile", "", "Dockerfile (default .airut/container/Dockerfile at HEAD)")
	f.StringVar(&o.contextDir, "context-dir", "", "build context directory (default: the Dockerfile's directory)")
	f.StringVar(&o.allowlist, "allowlist", "", "network allowlist (default .airut/network-allowlist.yaml at HEAD)")
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

// workspaceSource decides where .airut/ is read from: explicit files when
// given, otherwise HEAD of the git repository holding the working directory
// (committed content only), otherwise the directory itself.
func workspaceSource(ctx context.Context, cwd string) (repoconfig.Source, string) {
	out, err := exec.CommandContext(ctx, "git", "-C", cwd, "rev-parse", "--show-toplevel").Output()
	if err == nil {
		top := strings.TrimSpace(string(out))
		// One commit for every read, like the gateway's tasks.
		if rev, err := gitmirror.Resolve(ctx, top, "HEAD"); err == nil {
			return rev, top
		}
	}
	return repoconfig.DirSource{Dir: cwd}, cwd
}

func runCommand(ctx context.Context, o *runOpts, command []string, stdout, stderr io.Writer) error {
	logger := newLogger(stderr, o.verbose)
	cwd, err := os.Getwd()
	if err != nil {
		return fail(ExitInfra, "working directory: %v", err)
	}
	src, _ := workspaceSource(ctx, cwd)

	cfg, err := loadSandboxConfig(ctx, o, src)
	if err != nil {
		return fail(ExitUsage, "%v", err)
	}
	mounts := []sandbox.Mount{{Source: cwd, Target: "/workspace"}}
	for _, m := range o.mounts {
		mt, err := parseMount(m)
		if err != nil {
			return fail(ExitUsage, "%v", err)
		}
		mounts = append(mounts, mt)
	}
	bctx, err := buildContext(ctx, o, src)
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
	proxy, netCleanup, err := configureNetwork(ctx, o, cfg, src, &spec, runner, stderr)
	if err != nil {
		return fail(ExitUsage, "%v", oneLine(err))
	}
	defer netCleanup()
	cache.MaxAge = time.Duration(o.maxImageAge * float64(time.Hour))
	// The proxy image is checked alongside the task image (each costs an
	// engine call even when cached), and the network sandbox starts as soon
	// as the proxy image is known, while the task image is still checked or
	// built (prestart.go).
	var proxyErr error
	var images sync.WaitGroup
	var pre *sandbox.Prestarted
	if proxy != nil {
		images.Go(func() {
			var release func()
			proxy.ProxyImage, release, proxyErr = cache.EnsureProxy(ctx, proxy.ProxyBinary)
			release() // airut-sandbox never prunes: the lease need not outlast the look-up
			if proxyErr == nil {
				pre = proxy.Prestart(ctx, spec.Context)
			}
		})
	}
	var release func()
	spec.Image, release, err = cache.Ensure(ctx, bctx)
	defer release()
	images.Wait()
	if pre != nil {
		spec.Provider = pre
		defer pre.Discard(context.WithoutCancel(ctx))
	}
	if err == nil {
		err = proxyErr
	}
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

func loadSandboxConfig(ctx context.Context, o *runOpts, src repoconfig.Source) (*repoconfig.Sandbox, error) {
	if o.config == "" {
		return repoconfig.LoadSandbox(ctx, src, os.LookupEnv)
	}
	data, err := os.ReadFile(o.config)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	return repoconfig.ParseSandbox(data, o.config, os.LookupEnv)
}

func buildContext(ctx context.Context, o *runOpts, src repoconfig.Source) (fs.FS, error) {
	if o.dockerfile == "" && o.contextDir == "" {
		return repoconfig.ContainerContext(ctx, src, repoconfig.DefaultContainerPath)
	}
	dir := o.contextDir
	if dir == "" {
		dir = filepath.Dir(o.dockerfile)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	tree, err := repoconfig.DirSource{Dir: abs}.Tree(ctx, abs)
	if err != nil {
		return nil, fmt.Errorf("--context-dir %s: %w", dir, err)
	}
	if o.dockerfile != "" {
		data, err := os.ReadFile(o.dockerfile)
		if err != nil {
			return nil, fmt.Errorf("--dockerfile: %w", err)
		}
		return repoconfig.WithFile(tree, "Dockerfile", data)
	}
	if _, err := fs.Stat(tree, "Dockerfile"); err != nil {
		return nil, fmt.Errorf("--context-dir %s: no Dockerfile", dir)
	}
	return tree, nil
}

// commandEnv is the container environment: fixed env, then pass_env, then
// masked secrets (as surrogates), later entries winning.
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
	if len(cfg.SigningCredentials) > 0 {
		// Fail closed: without re-signing in the proxy the real keys would
		// have to enter the container.
		return nil, errors.New("sandbox.yaml: signing_credentials are not supported by this version of airut-sandbox")
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
