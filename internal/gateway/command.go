package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/conversation"
	"github.com/airut/airut/internal/gitmirror"
	"github.com/airut/airut/internal/repoconfig"
	"github.com/airut/airut/internal/sandbox"
	"github.com/airut/airut/internal/secrets"
)

// preparedSandbox is what a container of a conversation runs with: the
// repo's image, the container's credentials (surrogates for masked ones)
// and its network.
type preparedSandbox struct {
	image    string
	env      map[string]string
	mode     sandbox.NetworkMode
	provider sandbox.NetworkProvider
	// reimage ensures the image again after its container found it
	// missing (removed outside Airut); the new lease ends with cleanup.
	reimage func(ctx context.Context) (string, error)
}

// sandboxPrep is a task's sandbox being prepared. What a container is
// started with, but for its image, is known at once (env, mode,
// provider): the mirror fetch, the workspace clone, the .airut/ reads and
// the image run in the background, so that a container can start while
// they do (Spec.Ready waits for them). The allowlist reaches the provider
// when read (sandbox.ProxyNetwork.Pending).
type sandboxPrep struct {
	env      map[string]string
	mode     sandbox.NetworkMode
	provider sandbox.NetworkProvider

	done  chan struct{}
	image string
	err   error
	// reimage is set with image.
	reimage func(ctx context.Context) (string, error)

	mu   sync.Mutex
	undo []func()
}

func (p *sandboxPrep) push(undo func()) {
	p.mu.Lock()
	p.undo = append(p.undo, undo)
	p.mu.Unlock()
}

// wait returns the prepared sandbox once the background work is done; the
// error is a reply's sentence.
func (p *sandboxPrep) wait(ctx context.Context) (preparedSandbox, error) {
	select {
	case <-p.done:
	case <-ctx.Done():
		return preparedSandbox{}, context.Cause(ctx)
	}
	if p.err != nil {
		return preparedSandbox{}, p.err
	}
	return preparedSandbox{image: p.image, env: p.env, mode: p.mode, provider: p.provider, reimage: p.reimage}, nil
}

// cleanup waits for the background work and undoes what the preparation
// holds (the image leases, the network's log), last first.
func (p *sandboxPrep) cleanup() {
	<-p.done
	p.mu.Lock()
	undo := p.undo
	p.undo = nil
	p.mu.Unlock()
	for i := len(undo) - 1; i >= 0; i-- {
		undo[i]()
	}
}

// prepareSandbox is beginSandbox waited for: for a container that starts
// once everything is ready. cleanup is never nil.
func (j *job) prepareSandbox(ctx context.Context, dir *conversation.Dir, log *slog.Logger, path *startPath) (preparedSandbox, func(), error) {
	if err := ensureMountable(dir); err != nil {
		return preparedSandbox{}, func() {}, fmt.Errorf("workspace: %v", err)
	}
	p, err := j.beginSandbox(ctx, dir, log, path, nil)
	if err != nil {
		return preparedSandbox{}, func() {}, err
	}
	sb, err := p.wait(ctx)
	if err != nil {
		p.cleanup()
		return preparedSandbox{}, func() {}, err
	}
	return sb, p.cleanup, nil
}

// beginSandbox readies what any container of the task needs: the secrets
// and the network sandbox now; the mirror fetched, the conversation's
// workspace, .airut/ from the default branch and the image (leased until
// cleanup) in the background. The error is a reply's sentence; on error
// nothing is held.
//
// path, when not nil, is told as each phase ends (the task's start-path
// timings).
func (j *job) beginSandbox(ctx context.Context, dir *conversation.Dir, log *slog.Logger, path *startPath, placed *spareWorkspace) (*sandboxPrep, error) {
	if path == nil {
		path = newStartPath(log)
	}
	rc := j.rc
	masked := map[string]secrets.Masked{}
	for name, m := range rc.MaskedSecrets {
		masked[name] = secrets.Masked{Value: m.Value.Reveal(), Scopes: m.Scopes, Headers: m.Headers,
			AllowForeignCredentials: m.AllowForeignCredentials}
	}
	plain := map[string]string{}
	for name, v := range rc.Secrets {
		plain[name] = v.Reveal()
	}
	signing := map[string]secrets.AWS{}
	for name, c := range rc.SigningCredentials {
		a := secrets.AWS{AccessKeyID: c.AccessKeyID.Value.Reveal(), SecretAccessKey: c.SecretAccessKey.Value.Reveal(), Scopes: c.Scopes,
			AccessKeyIDEnv: c.AccessKeyID.Name, SecretAccessKeyEnv: c.SecretAccessKey.Name}
		if c.SessionToken != nil {
			a.SessionToken, a.SessionTokenEnv = c.SessionToken.Value.Reveal(), c.SessionToken.Name
		}
		signing[name] = a
	}
	apps := map[string]secrets.GitHubApp{}
	for name, a := range rc.GitHubAppCredentials {
		apps[name] = secrets.GitHubApp{AppID: a.AppID, PrivateKey: a.PrivateKey.Reveal(), InstallationID: a.InstallationID,
			Scopes: a.Scopes, BaseURL: a.BaseURL, Permissions: a.Permissions, Repositories: a.Repositories,
			AllowForeignCredentials: a.AllowForeignCredentials}
	}
	if !rc.Network.SandboxEnabled && len(masked)+len(signing)+len(apps) > 0 {
		return nil, errors.New("masked_secrets, signing_credentials and github_app_credentials need the network sandbox, which is disabled for this repo")
	}
	smap, err := secrets.NewMapFrom(secrets.Pools{Plain: plain, Masked: masked, AWS: signing, GitHubApps: apps})
	if err != nil {
		return nil, fmt.Errorf("secrets: %v", err)
	}
	p := &sandboxPrep{env: smap.Env(), mode: sandbox.NetworkSandboxed, done: make(chan struct{})}
	// The allowlist is read below; the provider is handed it when it is.
	allowDone := make(chan struct{})
	var allowData []byte
	var allowErr error
	if rc.Network.SandboxEnabled {
		pending := func(ctx context.Context) ([]byte, error) {
			select {
			case <-allowDone:
				return allowData, allowErr
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			}
		}
		prov, closeNet, err := j.proxyNetwork(dir, pending, smap)
		if err != nil {
			return nil, fmt.Errorf("network sandbox: %v", err)
		}
		p.push(closeNet)
		p.provider = prov
	} else {
		log.Warn("NETWORK SANDBOX DISABLED for this repo: the container runs on an OPEN network, with no allowlist")
		p.mode = sandbox.NetworkOpen
	}
	var allowOnce sync.Once
	deliver := func(data []byte, err error) {
		allowOnce.Do(func() {
			allowData, allowErr = data, err
			close(allowDone)
		})
	}
	go func() {
		defer close(p.done)
		p.image, p.reimage, p.err = j.prepareRepo(ctx, dir, placed, path, p.push, deliver)
		if p.err != nil {
			deliver(nil, p.err) // when it failed before the allowlist was read
		}
	}()
	return p, nil
}

// prepareRepo fetches the mirror and, at once, clones the workspace, reads
// .airut/ from the default branch (the allowlist goes to allow as soon as
// it is read) and ensures the image. hold keeps what must outlive it until
// the task's cleanup. The error is a reply's sentence.
func (j *job) prepareRepo(ctx context.Context, dir *conversation.Dir, placed *spareWorkspace, path *startPath, hold func(func()),
	allow func([]byte, error)) (image string, reimage func(context.Context) (string, error), err error) {
	h, rc := j.h, j.rc
	// .airut/ comes from the mirror's default branch, never the workspace:
	// the agent changes it only by a merged PR. The branch is pinned to one
	// commit, so another task's fetch cannot mix two commits' files.
	src, err := h.mirror.Update(ctx)
	if errors.Is(err, gitmirror.ErrDefaultBranch) {
		return "", nil, fmt.Errorf("repository default branch: %v", err)
	}
	if err != nil {
		return "", nil, fmt.Errorf("fetching the repository failed: %v", err)
	}
	path.mark("mirror")
	// The workspace is cloned from the mirror while .airut/ is read and
	// the image checked: neither needs the other. Every return below
	// waits for the clone (the conversation's lock covers it).
	wsCtx, cancelWS := context.WithCancel(ctx)
	wsDone := make(chan error, 1)
	go func() {
		start := time.Now()
		err := ensureWorkspace(wsCtx, h, dir, src, placed)
		path.span("workspace", time.Since(start))
		wsDone <- err
	}()
	waitWorkspace := sync.OnceValue(func() error {
		defer cancelWS()
		return <-wsDone
	})
	defer func() {
		if err != nil {
			cancelWS()
			_ = waitWorkspace()
		}
	}()
	read, err := h.readRepoConfig(ctx, src, rc)
	allow(read.allowlist, err)
	if err != nil {
		return "", nil, err
	}
	buildCtx := read.buildCtx
	path.mark("repo_config")
	// The image is leased until the task's last container has exited: a
	// prune meanwhile keeps it.
	image, releaseImage, err := j.backend.Images.Ensure(ctx, buildCtx)
	if err != nil {
		return "", nil, fmt.Errorf("building the container image failed: %v", err)
	}
	hold(releaseImage)
	path.mark("image")
	if err := waitWorkspace(); err != nil {
		return "", nil, fmt.Errorf("cloning the workspace failed: %v", err)
	}
	path.mark("workspace_wait")
	reimage = func(ctx context.Context) (string, error) {
		j.backend.Images.Forget(image)
		tag, release, err := j.backend.Images.Ensure(ctx, buildCtx)
		if err != nil {
			return "", err
		}
		hold(release)
		return tag, nil
	}
	return image, reimage, nil
}

// repoRead is what a task reads from .airut/ at one commit: the
// allowlist (when the sandbox is on) and the container context.
type repoRead struct {
	commit, containerPath string
	sandbox               bool
	allowlist             []byte
	buildCtx              fs.FS
}

// readRepoConfig reads .airut/ at src, or hands out what the repo's last
// task read at the same commit with the same settings (a commit's files
// never change; most tasks start on the commit the last one had). The
// allowlist and the container context are read at once. The error is a
// reply's sentence.
func (h *repoHandler) readRepoConfig(ctx context.Context, src *gitmirror.Revision, rc *config.Repo) (*repoRead, error) {
	if last := h.lastRead.Load(); last != nil && last.commit == src.Commit &&
		last.containerPath == rc.ContainerPath && last.sandbox == rc.Network.SandboxEnabled {
		return last, nil
	}
	read := &repoRead{commit: src.Commit, containerPath: rc.ContainerPath, sandbox: rc.Network.SandboxEnabled}
	allowErr := make(chan error, 1)
	go func() {
		var err error
		if rc.Network.SandboxEnabled {
			read.allowlist, _, err = repoconfig.LoadAllowlist(ctx, src)
		}
		allowErr <- err
	}()
	buildCtx, err := repoconfig.ContainerContext(ctx, src, rc.ContainerPath)
	aerr := <-allowErr
	if err != nil {
		return &repoRead{}, fmt.Errorf("repository container config: %v", err)
	}
	if aerr != nil {
		return &repoRead{}, fmt.Errorf("network allowlist: %v", aerr)
	}
	read.buildCtx = buildCtx
	h.lastRead.Store(read)
	return read, nil
}

// Command is a command run in a repository's sandbox outside any agent
// task: a schedule's trigger (S10).
type Command struct {
	// Repo is the repository id. Required.
	Repo string
	// Channel is the channel the conversation will answer on, if it is
	// continued (its conversation.json's channel). Default "command".
	Channel string
	// Argv is the command and its arguments, run without a shell.
	// Required.
	Argv []string
	// Timeout bounds the command; 0 means the repo's
	// resource_limits.timeout (and none when that is unset too).
	Timeout time.Duration
	// OutputLimit caps the bytes of output kept; 0 means
	// DefaultCommandOutputLimit.
	OutputLimit int
}

// DefaultCommandOutputLimit is Command.OutputLimit's default, the
// schedules' output_limit default.
const DefaultCommandOutputLimit = 100 << 10

// CommandResult is how a command ended.
type CommandResult struct {
	// Conversation is the conversation the command ran in: its workspace
	// is a fresh clone, its network log records the command's requests.
	// Continue it with Submit, or DiscardConversation it.
	Conversation string
	// ExitCode is the command's exit status (-1 when it did not exit on
	// its own: timeout, cancel, sandbox failure).
	ExitCode int
	// Output is stdout and stderr, line by line as they came, cut at the
	// output limit.
	Output string
	// Truncated: output past the limit was dropped.
	Truncated bool
	// TimedOut: the command ran past its timeout and was killed.
	TimedOut bool
	Duration time.Duration
}

// RunCommand runs c in a new conversation of the repository, in the same
// sandbox an agent task gets: the repo's image, its allowlist and
// credentials, its resource limits, a fresh clone at /workspace. It does
// not take a worker of the pool, and no reply is sent: the caller decides
// what the result becomes. An error means the sandbox could not run the
// command at all; the conversation is then removed.
func (g *Gateway) RunCommand(ctx context.Context, c Command) (CommandResult, error) {
	if len(c.Argv) == 0 {
		return CommandResult{}, errors.New("gateway: a command needs a program")
	}
	h, err := g.liveHandler(c.Repo)
	if err != nil {
		return CommandResult{}, err
	}
	limit := c.OutputLimit
	if limit <= 0 {
		limit = DefaultCommandOutputLimit
	}
	chName := c.Channel
	if chName == "" {
		chName = "command"
	}
	dir, _, err := h.store.Create(chName)
	if err != nil {
		return CommandResult{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(h.jobCtx, cancel) // a drain that ran out of time
	defer stop()
	j := &job{id: "cmd-" + newTaskID(), h: h, conv: dir.ID, ctx: ctx,
		cfg: g.config(), rc: h.repoConfig(), backend: g.currentBackend()}
	log := h.log.With(logConv, dir.ID, logTask, j.id)
	res, err := j.runCommand(ctx, dir, c, limit, log)
	if err != nil {
		if terr := h.store.Trash(dir.ID); terr != nil {
			log.Warn("conversation of a failed command not removed", logError, terr)
		}
		return CommandResult{}, err
	}
	res.Conversation = dir.ID
	return res, nil
}

func (j *job) runCommand(ctx context.Context, dir *conversation.Dir, c Command, limit int, log *slog.Logger) (CommandResult, error) {
	lock, err := j.h.store.Lock(ctx, dir.ID)
	if err != nil {
		return CommandResult{}, fmt.Errorf("conversation lock: %w", err)
	}
	defer lock.Unlock()
	sb, cleanup, err := j.prepareSandbox(ctx, dir, log, nil)
	if err != nil {
		return CommandResult{}, err
	}
	defer cleanup()
	limits := sandbox.Limits{Timeout: j.rc.ResourceLimits.TimeoutDuration(), Memory: j.rc.ResourceLimits.Memory,
		PidsLimit: j.rc.ResourceLimits.PidsLimit}
	if c.Timeout > 0 {
		limits.Timeout = c.Timeout
	}
	if j.rc.ResourceLimits.CPUs > 0 {
		limits.CPUs = strconv.FormatFloat(j.rc.ResourceLimits.CPUs, 'f', -1, 64)
	}
	out := &cappedBuffer{limit: limit}
	env := map[string]string{"IS_SANDBOX": "1"}
	for k, v := range sb.env {
		env[k] = v
	}
	log.Info("command starting", "argv0", c.Argv[0], "timeout", limits.Timeout)
	sres := j.backend.Runner.Run(ctx, sandbox.Spec{
		Context: dir.ID,
		Image:   sb.image,
		Command: c.Argv,
		Env:     env,
		Mounts: []sandbox.Mount{
			{Source: dir.Workspace(), Target: "/workspace"},
			{Source: dir.Outbox(), Target: "/outbox"},
			{Source: dir.Storage(), Target: "/storage"},
		},
		Workdir:   "/workspace",
		Limits:    limits,
		Network:   sb.mode,
		Provider:  sb.provider,
		StopGrace: j.h.g.opts.StopGrace,
		Stdout:    out.line,
		Stderr:    out.line,
		MaxLine:   limit + 1,
	})
	text, cut := out.result()
	res := CommandResult{ExitCode: sres.ExitCode, Output: j.h.g.opts.Registry.Redact(text), Truncated: cut,
		Duration: sres.Duration}
	log.Info("command finished", "outcome", sres.Outcome, "exit_code", sres.ExitCode, "output_bytes", len(text))
	switch sres.Outcome {
	case sandbox.OutcomeTimeout:
		res.TimedOut, res.ExitCode = true, -1
	case sandbox.OutcomeInfrastructure:
		return CommandResult{}, fmt.Errorf("the sandbox could not run the command: %s", sres.Reason)
	case sandbox.OutcomeCancelled:
		return CommandResult{}, fmt.Errorf("the command was stopped: %w", context.Cause(ctx))
	}
	return res, nil
}

// DiscardConversation removes a conversation that nothing will continue
// (a trigger command that found nothing to report). It goes to the trash,
// like garbage-collected conversations.
func (g *Gateway) DiscardConversation(repo, id string) error {
	h, err := g.liveHandler(repo)
	if err != nil {
		return err
	}
	if !h.store.Exists(id) {
		return fmt.Errorf("%s: %w", id, ErrUnknownConversation)
	}
	return h.store.Trash(id)
}

// cappedBuffer collects output lines up to limit bytes.
type cappedBuffer struct {
	limit int

	mu  sync.Mutex
	buf bytes.Buffer
	cut bool
}

func (b *cappedBuffer) line(l []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	room := b.limit - b.buf.Len()
	if room <= 0 {
		b.cut = true
		return
	}
	if len(l)+1 > room {
		b.buf.Write(l[:min(len(l), room)])
		b.cut = true
		return
	}
	b.buf.Write(l)
	b.buf.WriteByte('\n')
}

func (b *cappedBuffer) result() (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String(), b.cut
}
