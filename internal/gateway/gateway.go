// Package gateway turns inbound channel messages into sandboxed Claude Code
// runs and threaded replies.
//
// One repo handler per configured repository owns a bare git mirror, the
// conversation store and the repository's channels. A message is mapped to
// a conversation (an existing one named by its thread, or a new one), queued
// behind that conversation's running task if there is one, and run in a
// global pool of execution.max_concurrent workers. Tasks of one conversation
// never run at once: messages that arrive while a conversation is busy are
// coalesced into a single follow-up task that sees all of them in order.
//
// A task fetches the mirror, clones the workspace on a conversation's first
// task, reads .airut/ from the mirror's default branch (never from the
// workspace), builds the image, starts the per-task proxy network, runs
// Claude Code in a container, classifies the outcome and replies. Every
// outcome produces a reply, and every reply text goes through the redactor.
//
// No message is lost and none is answered twice, even across a crash.
// A message is acknowledged at its source (channel Done: IMAP delete) only
// after its reply was sent. Between receipt and Done, a per-repo journal
// (<state>/<repo>/messages/, one small file per message, written atomically)
// records the message's conversation and whether the acknowledgement and the
// reply were sent. When the source hands over a message again after a
// restart, the journal decides:
//
//   - replied: the reply went out but Done did not; only Done is repeated.
//   - reply pending: the task finished but the channel did not take its
//     reply; the journaled reply (text and outbox file names) is sent,
//     the task is not run again.
//   - accepted but not replied: the task is run again in the same
//     conversation (same workspace), without a second acknowledgement.
//   - unknown: a new message.
//
// A reply the channel refuses is retried with capped backoff while the
// process runs, holding its conversation (not a worker slot); the outbox is
// cleared only once it is sent.
//
// A crash between sending a reply and writing "replied" can still repeat
// that one reply; that window is one atomic rename wide.
//
// Shutdown stops the channels first, lets running tasks finish for up to
// execution.shutdown_timeout and then cancels them. Tasks stopped by a
// shutdown send no reply and leave their messages at the source, so they
// run again after the restart.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/channel/email"
	"github.com/airut/airut/internal/claudecli"
	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/redact"
	"github.com/airut/airut/internal/sandbox"
)

// DefaultPrefix names the gateway's containers, networks and images.
const DefaultPrefix = "airut"

// ClaudeBinariesDir holds, under the state directory, the Claude Code
// versions installed for claude_version.
const ClaudeBinariesDir = "claude-binaries"

// gcInterval is how often old conversations and unused images are removed.
const gcInterval = time.Hour

// Retry timing of failed replies and of channels that cannot connect:
// the wait doubles from the first to the cap.
const (
	replyRetryFirst = 10 * time.Second
	replyRetryCap   = 10 * time.Minute
	probeTimeout    = time.Minute
	reprobeFirst    = 30 * time.Second
	reprobeCap      = 10 * time.Minute
)

// Log keys.
const (
	logRepo    = "repo"
	logConv    = "conversation"
	logTask    = "task"
	logSource  = "source_id"
	logError   = "error"
	logOutcome = "outcome"
	logReason  = "reason"
)

// ChannelFactory builds the channels of one repository. exists reports
// whether a conversation id exists on disk, for channels that map threads
// to conversations themselves.
type ChannelFactory func(repoID string, repo *config.Repo, exists func(id string) bool, logger *slog.Logger) ([]channel.Channel, error)

// Options are the gateway's runtime settings that are not in airut.yaml.
type Options struct {
	// StateDir is the state root ($XDG_STATE_HOME/airut). Required.
	StateDir string
	// Logger should already redact secrets (redact.NewHandler). Default:
	// discard.
	Logger *slog.Logger
	// Registry holds every secret value; reply texts are redacted with it.
	// Default: an empty registry.
	Registry *redact.Registry
	// Clock is the time source; time.Now when nil.
	Clock func() time.Time
	// ChannelFactory builds each repo's channels; default: the email
	// channel from repos.<id>.email (Slack is not built in yet).
	ChannelFactory ChannelFactory
	// Prefix names containers, networks and images; default "airut".
	// Tests use their own so they can run beside a real gateway.
	Prefix string
	// ProxyBinary is the static airut-proxy binary; default
	// sandbox.FindProxyBinary().
	ProxyBinary string
	// StopGrace is the SIGTERM-to-SIGKILL grace for stopped containers;
	// default sandbox.DefaultStopGrace.
	StopGrace time.Duration
}

// RepoStatus is one repository's state for the dashboard.
type RepoStatus struct {
	ID string
	// State is "running" or "failed".
	State  string
	Reason string
}

// Repo states.
const (
	RepoRunning = "running"
	RepoFailed  = "failed"
)

// Gateway runs every configured repository.
type Gateway struct {
	cfg   *config.Config
	opts  Options
	log   *slog.Logger
	now   func() time.Time
	rt    *sandbox.Runtime
	run   *sandbox.Runner
	cache *sandbox.ImageCache
	// claude installs claude_version releases under <state>/claude-binaries.
	claude *claudecli.Installer

	sem     chan struct{}
	tracker *tracker

	mu       sync.Mutex
	repos    map[string]*repoHandler
	status   map[string]RepoStatus
	stopping bool
	stopC    chan struct{}   // closed when stopping is set
	running  sync.WaitGroup  // jobs
	jobs     map[string]*job // by task id, while queued or running

	// Retry timing; tests shorten it.
	replyRetryMin, replyRetryMax time.Duration
	probeTimeout                 time.Duration
	reprobeMin, reprobeMax       time.Duration
}

// New checks the options and prepares a gateway; nothing starts before Run.
func New(cfg *config.Config, opts Options) (*Gateway, error) {
	if cfg == nil {
		return nil, errors.New("gateway: nil config")
	}
	if opts.StateDir == "" {
		return nil, errors.New("gateway: no state directory")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = redact.NewRegistry()
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.ChannelFactory == nil {
		opts.ChannelFactory = EmailChannels(cfg.Dashboard.BaseURL)
	}
	if opts.StopGrace == 0 {
		opts.StopGrace = sandbox.DefaultStopGrace
	}
	rt, err := sandbox.NewRuntime(cfg.ContainerCommand, opts.Logger)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	rt.OCIRuntime = cfg.ContainerRuntime
	rt.Ulimits = cfg.ContainerUlimits
	maxConc := cfg.Execution.MaxConcurrent
	if maxConc < 1 {
		maxConc = 1
	}
	g := &Gateway{
		cfg:   cfg,
		opts:  opts,
		log:   opts.Logger,
		now:   opts.Clock,
		rt:    rt,
		run:   sandbox.NewRunner(rt, opts.Prefix),
		cache: sandbox.NewImageCache(rt, opts.Prefix),
		claude: &claudecli.Installer{Dir: filepath.Join(opts.StateDir, ClaudeBinariesDir),
			Registry: cfg.Execution.ClaudeRegistry, Now: opts.Clock, Logger: opts.Logger},
		sem:     make(chan struct{}, maxConc),
		tracker: newTracker(),
		repos:   map[string]*repoHandler{},
		status:  map[string]RepoStatus{},
		jobs:    map[string]*job{},
		stopC:   make(chan struct{}),

		replyRetryMin: replyRetryFirst, replyRetryMax: replyRetryCap,
		probeTimeout: probeTimeout, reprobeMin: reprobeFirst, reprobeMax: reprobeCap,
	}
	g.cache.Now = opts.Clock
	// Per-task private files (secrets for the proxy) live in the state
	// directory, and images are scoped to this gateway's state directory.
	g.run.StateDir = filepath.Join(opts.StateDir, "sandbox")
	g.cache.Instance = sandbox.InstanceID(opts.StateDir)
	return g, nil
}

// Run starts every repository and serves until ctx ends, then shuts down
// gracefully. A repository that fails to start is recorded as failed and
// the others run regardless.
func (g *Gateway) Run(ctx context.Context) error {
	if err := os.MkdirAll(g.opts.StateDir, 0o700); err != nil {
		return fmt.Errorf("gateway: state directory: %w", err)
	}
	// workCtx outlives ctx: running tasks get shutdown_timeout to finish.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()

	if removed, err := g.run.Sweep(workCtx); err != nil {
		g.log.Warn("sweep of leftover containers failed", logError, err)
	} else if len(removed) > 0 {
		g.log.Info("removed leftovers of a previous run", "count", len(removed))
	}

	for id, err := range g.cfg.RepoErrors {
		g.setStatus(RepoStatus{ID: id, State: RepoFailed, Reason: err.Error()})
		g.log.Error("repo not started: invalid config", logRepo, id, logError, err)
	}
	ids := make([]string, 0, len(g.cfg.Repos))
	for id := range g.cfg.Repos {
		ids = append(ids, id)
	}
	sort.Strings(ids)

	var recv sync.WaitGroup
	var startWG sync.WaitGroup
	for _, id := range ids {
		startWG.Add(1)
		go func() {
			defer startWG.Done()
			h, err := g.startRepo(ctx, workCtx, id, g.cfg.Repos[id])
			if err != nil {
				g.setStatus(RepoStatus{ID: id, State: RepoFailed, Reason: err.Error()})
				g.log.Error("repo failed to start", logRepo, id, logError, err)
				return
			}
			g.mu.Lock()
			g.repos[id] = h
			g.mu.Unlock()
			g.probeRepo(ctx, h, &recv)
			h.receive(ctx, &recv)
		}()
	}
	startWG.Wait()

	gcDone := make(chan struct{})
	go func() {
		defer close(gcDone)
		g.gcLoop(ctx)
	}()

	<-ctx.Done()
	g.log.Info("shutting down: no new messages; waiting for running tasks",
		"timeout", g.cfg.Execution.ShutdownTimeoutDuration())
	g.mu.Lock()
	g.stopping = true
	close(g.stopC)
	g.mu.Unlock()
	recv.Wait()
	<-gcDone

	done := make(chan struct{})
	go func() { g.running.Wait(); close(done) }()
	timer := time.NewTimer(g.cfg.Execution.ShutdownTimeoutDuration())
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		g.log.Warn("shutdown timeout: cancelling running tasks")
		g.mu.Lock()
		for _, j := range g.jobs {
			j.cancel(errShutdown)
		}
		g.mu.Unlock()
		<-done
	}
	g.log.Info("gateway stopped")
	return nil
}

// startRepo prepares one repository: its directories, mirror, store,
// journal and channels. The mirror is cloned or fetched here, so a wrong
// repo_url shows as a failed repo at once rather than in every reply.
func (g *Gateway) startRepo(ctx, workCtx context.Context, id string, rc *config.Repo) (*repoHandler, error) {
	h, err := newRepoHandler(g, workCtx, id, rc)
	if err != nil {
		return nil, err
	}
	if err := h.mirror.Ensure(ctx); err != nil {
		return nil, fmt.Errorf("git mirror: %w", err)
	}
	chans, err := g.opts.ChannelFactory(id, rc, h.store.Exists, g.log.With(logRepo, id))
	if err != nil {
		return nil, fmt.Errorf("channel: %w", err)
	}
	if len(chans) == 0 {
		return nil, errors.New("no channel could be started")
	}
	h.channels = chans
	if n := len(rc.GitHubAppCredentials); n > 0 {
		g.log.Warn("github_app_credentials are not supported by this build; "+
			"the agent does not get them", logRepo, id, "count", n)
	}
	return h, nil
}

// probeRepo checks that the repo's channels can connect and sets its
// status. A repo whose channel cannot connect is shown as failed; its
// channels run regardless (they retry on their own), and the probe is
// repeated with backoff until it passes and the repo shows as running.
func (g *Gateway) probeRepo(ctx context.Context, h *repoHandler, wg *sync.WaitGroup) {
	err := h.probe(ctx)
	if err == nil {
		g.setStatus(RepoStatus{ID: h.id, State: RepoRunning})
		g.log.Info("repo started", logRepo, h.id, "channels", len(h.channels))
		return
	}
	if ctx.Err() != nil {
		return
	}
	g.setStatus(RepoStatus{ID: h.id, State: RepoFailed, Reason: err.Error()})
	g.log.Error("repo started, but a channel cannot connect; retrying in the background", logRepo, h.id, logError, err)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for attempt := 1; ; attempt++ {
			t := time.NewTimer(backoff(g.reprobeMin, g.reprobeMax, attempt))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			err := h.probe(ctx)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				g.setStatus(RepoStatus{ID: h.id, State: RepoRunning})
				g.log.Info("repo channels connected; repo running", logRepo, h.id)
				return
			}
			g.setStatus(RepoStatus{ID: h.id, State: RepoFailed, Reason: err.Error()})
			g.log.Warn("repo channel still cannot connect", logRepo, h.id, "attempt", attempt, logError, err)
		}
	}()
}

// probe runs the probe of every channel that has one.
func (h *repoHandler) probe(ctx context.Context) error {
	var errs []string
	for _, ch := range h.channels {
		p, ok := ch.(channel.Prober)
		if !ok {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, h.g.probeTimeout)
		err := p.Probe(pctx)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Sprintf("channel %s: %s", ch.Name(), oneLine(err.Error())))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	// One line: it is the repo's status reason on the dashboard.
	return errors.New(strings.Join(errs, "; "))
}

// backoff is the wait before the attempt after the given failed one:
// doubling from first, capped at limit.
func backoff(first, limit time.Duration, attempt int) time.Duration {
	d := first
	for i := 1; i < attempt && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

func (g *Gateway) setStatus(s RepoStatus) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.status[s.ID] = s
}

// Repos returns every repository's status, sorted by id.
func (g *Gateway) Repos() []RepoStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]RepoStatus, 0, len(g.status))
	for _, s := range g.status {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Tasks returns a snapshot of every task the gateway knows of, oldest first.
func (g *Gateway) Tasks() []TaskInfo { return g.tracker.snapshot() }

// Task returns one task's snapshot.
func (g *Gateway) Task(id string) (TaskInfo, bool) { return g.tracker.get(id) }

// ErrUnknownTask is returned by Cancel for a task that is not queued or
// running.
var ErrUnknownTask = errors.New("no such queued or running task")

// Cancel stops a queued or running task. Its container and proxy are torn
// down and the reply says it was stopped.
func (g *Gateway) Cancel(taskID string) error {
	g.mu.Lock()
	j, ok := g.jobs[taskID]
	g.mu.Unlock()
	if !ok {
		return ErrUnknownTask
	}
	j.cancel(errUserCancel)
	return nil
}

// EmailChannels is the default ChannelFactory: the email channel of
// repos.<id>.email. Repos with only a Slack channel fail to start until the
// Slack channel exists.
func EmailChannels(dashboardBaseURL string) ChannelFactory {
	return func(repoID string, rc *config.Repo, exists func(string) bool, logger *slog.Logger) ([]channel.Channel, error) {
		var out []channel.Channel
		if rc.Slack != nil {
			logger.Warn("slack channel is not available in this build; ignoring it")
		}
		if rc.Email == nil {
			return out, nil
		}
		e := rc.Email
		pw := e.Account.Password.Reveal()
		var oauth *email.OAuth2Config
		if o := e.MicrosoftOAuth2; o != nil {
			// XOAUTH2 replaces the password; the token endpoint and scope
			// default to Microsoft 365's.
			oauth = &email.OAuth2Config{TenantID: o.TenantID.Reveal(), ClientID: o.ClientID, ClientSecret: o.ClientSecret.Reveal()}
			if pw != "" {
				logger.Warn("email: microsoft_oauth2 is set, so account.password is not used")
			}
			pw = ""
		}
		imapTLS, smtpTLS := email.TLSImplicit, email.TLSStartTLS
		if !e.IMAP.TLS {
			imapTLS = email.TLSNone
		}
		if !e.SMTP.StartTLS {
			smtpTLS = email.TLSOpportunistic
		}
		ch, err := email.New(email.Config{
			IMAP: email.IMAPConfig{
				Server: e.IMAP.Server, Port: e.IMAP.Port,
				Username: e.Account.Username, Password: pw,
				TLS: imapTLS, CAFile: e.IMAP.CAFile, UseIdle: e.IMAP.UseIdle,
				PollInterval:          e.IMAP.PollIntervalDuration(),
				IdleReconnectInterval: e.IMAP.IdleReconnectDuration(),
			},
			SMTP: email.SMTPConfig{
				Server: e.SMTP.Server, Port: e.SMTP.Port,
				Username: e.Account.Username, Password: pw,
				RequireAuth: e.SMTP.RequireAuth, TLS: smtpTLS, CAFile: e.SMTP.CAFile,
			},
			OAuth2:                    oauth,
			From:                      e.Account.From,
			AuthorizedSenders:         e.Auth.AuthorizedSenders,
			TrustedAuthservID:         e.Auth.TrustedAuthservID,
			MicrosoftInternalFallback: e.Auth.MicrosoftInternalFallback,
			DashboardBaseURL:          dashboardBaseURL,
		}, exists, logger)
		if err != nil {
			return nil, err
		}
		return append(out, ch), nil
	}
}

// claudeBinary resolves the host path of a repo's Claude Code executable:
// its claude_binary, else its claude_version (installed on first use),
// else `claude` on PATH.
func (g *Gateway) claudeBinary(ctx context.Context, rc *config.Repo) (string, error) {
	loc, err := g.claude.Locate(ctx, rc.ClaudeBinary, rc.ClaudeVersion)
	if err != nil {
		return "", fmt.Errorf("claude binary: %w", err)
	}
	return loc.Path, nil
}

func (g *Gateway) proxyBinary() (string, error) {
	if g.opts.ProxyBinary != "" {
		return g.opts.ProxyBinary, nil
	}
	return sandbox.FindProxyBinary()
}
