package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/airut/airut/internal/conversation"
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

// prepareSandbox readies what any container of the task needs: the
// mirror fetched, the conversation's workspace, .airut/ from the
// default branch, the image (leased until cleanup), the secrets and the
// network sandbox. The error is a reply's sentence. cleanup is never nil.
//
// path, when not nil, is told as each phase ends (the task's start-path
// timings).
func (j *job) prepareSandbox(ctx context.Context, dir *conversation.Dir, log *slog.Logger, path *startPath) (preparedSandbox, func(), error) {
	if path == nil {
		path = newStartPath(log)
	}
	h, rc := j.h, j.rc
	var undo []func()
	cleanup := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	fail := func(format string, args ...any) (preparedSandbox, func(), error) {
		cleanup()
		return preparedSandbox{}, func() {}, fmt.Errorf(format, args...)
	}
	if err := h.mirror.Ensure(ctx); err != nil {
		return fail("fetching the repository failed: %v", err)
	}
	path.mark("mirror")
	// The workspace is cloned from the mirror while .airut/ is read and
	// the image checked: neither needs the other. Every return below
	// waits for the clone (the conversation's lock covers it).
	wsCtx, cancelWS := context.WithCancel(ctx)
	wsDone := make(chan error, 1)
	go func() {
		start := time.Now()
		err := ensureWorkspace(wsCtx, h, dir)
		path.span("workspace", time.Since(start))
		wsDone <- err
	}()
	waitWorkspace := sync.OnceValue(func() error {
		defer cancelWS()
		return <-wsDone
	})
	undo = append(undo, func() { cancelWS(); _ = waitWorkspace() })
	// .airut/ comes from the mirror's default branch, never the workspace:
	// the agent changes it only by a merged PR. The branch is pinned to one
	// commit, so another task's fetch cannot mix two commits' files.
	src, err := h.mirror.Head(ctx)
	if err != nil {
		return fail("repository default branch: %v", err)
	}
	// The allowlist and the container context are read at once (each is
	// a few git reads).
	var allowData []byte
	allowErr := make(chan error, 1)
	go func() {
		var err error
		if rc.Network.SandboxEnabled {
			allowData, _, err = repoconfig.LoadAllowlist(ctx, src)
		}
		allowErr <- err
	}()
	buildCtx, err := repoconfig.ContainerContext(ctx, src, rc.ContainerPath)
	aerr := <-allowErr
	if err != nil {
		return fail("repository container config: %v", err)
	}
	if aerr != nil {
		return fail("network allowlist: %v", aerr)
	}
	path.mark("repo_config")
	// The image is leased until the task's last container has exited: a
	// prune meanwhile keeps it.
	image, releaseImage, err := j.backend.Images.Ensure(ctx, buildCtx)
	if err != nil {
		return fail("building the container image failed: %v", err)
	}
	undo = append(undo, releaseImage)
	path.mark("image")
	if err := waitWorkspace(); err != nil {
		return fail("cloning the workspace failed: %v", err)
	}
	path.mark("workspace_wait")

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
		return fail("masked_secrets, signing_credentials and github_app_credentials need the network sandbox, which is disabled for this repo")
	}
	smap, err := secrets.NewMapFrom(secrets.Pools{Plain: plain, Masked: masked, AWS: signing, GitHubApps: apps})
	if err != nil {
		return fail("secrets: %v", err)
	}
	sb := preparedSandbox{image: image, env: smap.Env(), mode: sandbox.NetworkSandboxed}
	sb.reimage = func(ctx context.Context) (string, error) {
		j.backend.Images.Forget(image)
		tag, release, err := j.backend.Images.Ensure(ctx, buildCtx)
		if err != nil {
			return "", err
		}
		undo = append(undo, release)
		return tag, nil
	}
	if rc.Network.SandboxEnabled {
		p, closeNet, err := j.proxyNetwork(dir, allowData, smap)
		if err != nil {
			return fail("network sandbox: %v", err)
		}
		undo = append(undo, closeNet)
		sb.provider = p
	} else {
		log.Warn("NETWORK SANDBOX DISABLED for this repo: the container runs on an OPEN network, with no allowlist")
		sb.mode = sandbox.NetworkOpen
	}
	return sb, cleanup, nil
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
