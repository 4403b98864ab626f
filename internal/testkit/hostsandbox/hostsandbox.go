// Package hostsandbox is a stand-in for the container runtime that runs a
// task's command as a plain host process, for tests of what drives the
// sandbox on machines without Podman. It lives apart from testkit so that
// testkit does not depend on the sandbox (whose own dependencies' tests use
// testkit).
package hostsandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/airut/airut/internal/sandbox"
)

// Sandbox stands in for the container runtime where Podman is not
// there: it runs a task's command as a plain host process, so that what
// drives the sandbox (the gateway's journal, queues, retries, lifecycle)
// is tested on any machine. It isolates nothing.
//
// The command is the agent binary mounted at the spec's command path (the
// gateway mounts its claude_binary there: fakeclaude in tests), run in the
// host directory mounted at the spec's working directory with HOME set so
// that ~/.claude is the directory mounted at /root/.claude. Scripts that
// use paths relative to the working directory (../outbox/x, ../storage/x)
// behave the same here and in a real container.
//
// Like the real cache and engine, it leases the images it hands out until
// they are released, refuses to run an image it does not have (as Podman
// would try to pull it from a registry), Prune removes every image not
// leased, and it keeps count of the networks set up and not torn down,
// for leak checks.
type Sandbox struct {
	// BeforeRun, when set, is called with each spec before its process
	// starts; an error fails the run as an engine failure would.
	BeforeRun func(ctx context.Context, spec *sandbox.Spec) error
	// LineLimit caps one output line, as the sandbox does; default 16 MiB.
	LineLimit int

	mu       sync.Mutex
	images   map[string]bool
	leases   map[string]int
	pruned   []string
	runs     int
	running  int
	networks int
	procs    map[*os.Process]bool
}

// New returns an empty host sandbox.
func New() *Sandbox {
	return &Sandbox{images: map[string]bool{}, leases: map[string]int{}, procs: map[*os.Process]bool{}}
}

// Ensure "builds" the image of a build context, leased until release: its
// tag is the context's content hash, as the real cache's is.
func (s *Sandbox) Ensure(_ context.Context, buildCtx fs.FS) (string, func(), error) {
	h, err := sandbox.ContextHash(buildCtx)
	if err != nil {
		return "", nil, err
	}
	tag := "localhost/host-sandbox:" + h[:24]
	return tag, s.lease(tag), nil
}

// EnsureProxy "builds" the proxy image, leased until release.
func (s *Sandbox) EnsureProxy(_ context.Context, binary string) (string, func(), error) {
	if _, err := os.Stat(binary); err != nil {
		return "", nil, fmt.Errorf("proxy binary: %w", err)
	}
	const tag = "localhost/host-sandbox-proxy:1"
	return tag, s.lease(tag), nil
}

// lease makes tag exist and holds it against Prune until release.
func (s *Sandbox) lease(tag string) (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.images[tag] = true
	s.leases[tag]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.leases[tag]--
		})
	}
}

// Prune removes every image not leased.
func (s *Sandbox) Prune(_ context.Context, keep ...string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var removed []string
	for tag := range s.images {
		if s.leases[tag] > 0 || slices.Contains(keep, tag) {
			continue
		}
		delete(s.images, tag)
		removed = append(removed, tag)
	}
	sort.Strings(removed)
	s.pruned = append(s.pruned, removed...)
	return removed, nil
}

// Forget does nothing: the host sandbox's images live in its own map,
// which nothing else can change behind its back.
func (s *Sandbox) Forget(string) {}

// Pruned lists every image Prune removed so far.
func (s *Sandbox) Pruned() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.pruned...)
}

// Sweep has nothing to sweep: processes die with their test.
func (s *Sandbox) Sweep(context.Context) ([]string, error) { return nil, nil }

// Runs counts the specs run so far.
func (s *Sandbox) Runs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runs
}

// Leftovers reports what is still up: processes and networks.
func (s *Sandbox) Leftovers() (running, networks int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running, s.networks
}

// KillAll kills every running task process, as the death of the
// container engine would.
func (s *Sandbox) KillAll() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range s.procs {
		_ = p.Kill()
	}
	return len(s.procs)
}

// ProxyNetwork is the network sandbox of the host sandbox: no network at
// all, only the bookkeeping, and one network log line at set-up
// ("DNS A host-sandbox.test -> 127.0.0.1") so that log plumbing is seen.
func (s *Sandbox) ProxyNetwork(p sandbox.ProxyNetwork) sandbox.NetworkProvider {
	return hostNetwork{s: s, log: p.NetworkLog, image: p.ProxyImage, pending: p.Pending}
}

type hostNetwork struct {
	s       *Sandbox
	log     func(string)
	image   string
	pending func(context.Context) ([]byte, error)
}

func (n hostNetwork) Setup(ctx context.Context, name string) (*sandbox.TaskNetwork, error) {
	n.s.mu.Lock()
	ok := n.s.images[n.image]
	if ok {
		n.s.networks++
	}
	n.s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("start proxy: image %s not known (trying to pull it): %w", n.image, sandbox.ErrInfrastructure)
	}
	if n.log != nil {
		n.log("DNS A host-sandbox.test -> 127.0.0.1")
	}
	var once sync.Once
	tn := &sandbox.TaskNetwork{Teardown: func(context.Context) {
		once.Do(func() {
			n.s.mu.Lock()
			n.s.networks--
			n.s.mu.Unlock()
		})
	}}
	if n.pending != nil {
		// As a warm spare's claim: the allowlist arrives once read.
		tn.Ready = func(ctx context.Context) error {
			_, err := n.pending(ctx)
			return err
		}
	}
	return tn, nil
}

func mountOf(spec *sandbox.Spec, target string) string {
	for _, m := range spec.Mounts {
		if m.Target == target {
			return m.Source
		}
	}
	return ""
}

// Run runs spec's command as a host process.
func (s *Sandbox) Run(ctx context.Context, spec sandbox.Spec) (res sandbox.Result) {
	start := time.Now()
	defer func() { res.Duration = time.Since(start) }()
	infra := func(format string, args ...any) sandbox.Result {
		err := fmt.Errorf(format, args...)
		return sandbox.Result{Outcome: sandbox.OutcomeInfrastructure, ExitCode: -1, Reason: err.Error(),
			Err: fmt.Errorf("%w: %w", err, sandbox.ErrInfrastructure)}
	}
	s.mu.Lock()
	s.runs++
	s.mu.Unlock()
	var readies []func(context.Context) error
	if spec.Ready != nil {
		readies = append(readies, spec.Ready)
	}
	if spec.Network == sandbox.NetworkSandboxed {
		if spec.Provider == nil {
			return infra("network sandbox requested but not available")
		}
		tn, err := spec.Provider.Setup(ctx, spec.Context)
		if err != nil {
			return infra("network sandbox: %v", err)
		}
		defer tn.Teardown(context.WithoutCancel(ctx))
		if tn.Ready != nil {
			readies = append(readies, tn.Ready)
		}
	}
	if s.BeforeRun != nil {
		if err := s.BeforeRun(ctx, &spec); err != nil {
			return infra("container failed to start: %v", err)
		}
	}
	s.mu.Lock()
	if !s.images[spec.Image] {
		s.mu.Unlock()
		return infra("container failed to start: %s: image not known, pinging container registry localhost", spec.Image)
	}
	s.running++
	s.mu.Unlock()
	// What the real sandbox's entrypoint waits for before the command runs.
	for _, ready := range readies {
		if err := ready(ctx); err != nil {
			s.mu.Lock()
			s.running--
			s.mu.Unlock()
			return sandbox.Result{Outcome: sandbox.OutcomeInfrastructure, ExitCode: -1, Reason: err.Error(),
				Err: fmt.Errorf("%w: %w: %w", sandbox.ErrNotReady, err, sandbox.ErrInfrastructure)}
		}
	}
	defer func() {
		s.mu.Lock()
		s.running--
		s.mu.Unlock()
	}()
	if len(spec.Command) == 0 {
		return infra("no command")
	}
	bin := mountOf(&spec, spec.Command[0])
	if bin == "" {
		bin = spec.Command[0]
	}
	workdir := spec.Workdir
	if workdir == "" {
		workdir = "/workspace"
	}
	home, err := os.MkdirTemp("", "airut-hostsandbox-home-")
	if err != nil {
		return infra("%v", err)
	}
	defer os.RemoveAll(home)
	if c := mountOf(&spec, "/root/.claude"); c != "" {
		if err := os.Symlink(c, filepath.Join(home, ".claude")); err != nil {
			return infra("%v", err)
		}
	}

	runCtx := ctx
	var cancel context.CancelFunc = func() {}
	if spec.Limits.Timeout > 0 {
		runCtx, cancel = context.WithTimeout(ctx, spec.Limits.Timeout)
	}
	defer cancel()
	cmd := exec.Command(bin, spec.Command[1:]...)
	cmd.Dir = mountOf(&spec, workdir)
	cmd.Env = []string{"HOME=" + home, "PATH=/usr/local/bin:/usr/bin:/bin"}
	for k, v := range spec.Env {
		if k != "HOME" && k != "CLAUDE_CONFIG_DIR" {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	cmd.Stdin = spec.Stdin
	if cmd.Stdin == nil {
		cmd.Stdin = strings.NewReader("")
	}
	// Its own process group, so a timeout kills what the script started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return infra("%v", err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return infra("%v", err)
	}
	if err := cmd.Start(); err != nil {
		return infra("start %s: %v", bin, err)
	}
	s.mu.Lock()
	s.procs[cmd.Process] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.procs, cmd.Process)
		s.mu.Unlock()
	}()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.lines(stdout, spec.Stdout) }()
	go func() { defer wg.Done(); s.lines(stderr, spec.Stderr) }()
	stopped := make(chan struct{})
	go func() {
		select {
		case <-runCtx.Done():
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		case <-stopped:
		}
	}()
	wg.Wait()
	werr := cmd.Wait()
	close(stopped)

	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return sandbox.Result{Outcome: sandbox.OutcomeCancelled, ExitCode: -1, Reason: "cancelled"}
	case runCtx.Err() != nil:
		return sandbox.Result{Outcome: sandbox.OutcomeTimeout, ExitCode: -1, Reason: fmt.Sprintf("timed out after %s", spec.Limits.Timeout)}
	case werr == nil:
		return sandbox.Result{Outcome: sandbox.OutcomeSuccess}
	case errors.As(werr, &exitErr) && exitErr.ExitCode() >= 0:
		return sandbox.Result{Outcome: sandbox.OutcomeError, ExitCode: exitErr.ExitCode(),
			Reason: fmt.Sprintf("exited with status %d", exitErr.ExitCode())}
	default:
		return sandbox.Result{Outcome: sandbox.OutcomeInfrastructure, ExitCode: -1, Reason: "container engine: " + werr.Error(), Err: werr}
	}
}

// lines streams r line by line to fn, cutting lines at LineLimit.
func (s *Sandbox) lines(r io.Reader, fn func([]byte)) {
	limit := s.LineLimit
	if limit <= 0 {
		limit = 16 << 20
	}
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	for {
		chunk, isPrefix, err := br.ReadLine()
		if len(line) < limit {
			line = append(line, chunk[:min(len(chunk), limit-len(line))]...)
		}
		if err != nil {
			if len(line) > 0 && fn != nil {
				fn(line)
			}
			return
		}
		if isPrefix {
			continue
		}
		if fn != nil {
			fn(line)
		}
		line = nil
	}
}
