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
// Jobs wait for a worker in a queue, not in goroutines, and their
// attachments wait on disk (the spool), so a long queue costs little memory.
//
// A task fetches the mirror, clones the workspace on a conversation's first
// task, reads .airut/ from the mirror's default branch (never from the
// workspace), builds the image, starts the per-task proxy network, runs
// Claude Code in a container, classifies the outcome and replies. Every
// outcome produces a reply, and every reply text goes through the redactor.
// The container runtime is a boundary (Backend): the real one drives
// Podman, tests may give a fake.
//
// No message is lost and none is answered twice, even across a crash.
// A message is acknowledged at its source (channel Done: IMAP delete) only
// after its reply was sent or refused for good. Between receipt and Done,
// a per-repo journal (<state>/<repo>/messages/, one small file per message,
// written atomically) records the message's conversation and whether the
// acknowledgement and the reply were sent. Entries are keyed by the
// message's identity (its MessageID and a hash of its content), not by
// where the source keeps it, so a message handed over again under a new
// source id is recognised. When a message is handed over again, the
// journal decides:
//
//   - replied: the reply went out (or was refused permanently) but Done
//     did not; only Done is repeated.
//   - reply pending: the task finished but the channel did not take its
//     reply; the journaled reply (text and outbox file names) is sent,
//     the task is not run again.
//   - accepted but not replied: the task is run again in the same
//     conversation (same workspace), without a second acknowledgement.
//   - unknown: a new message.
//
// A reply the channel refuses for a transient reason is retried with
// capped backoff while the process runs, holding its conversation (not a
// worker slot); one it refuses permanently (channel.ErrPermanent, an SMTP
// 5xx) is recorded on the task and in the journal, the outbox is kept, and
// the conversation moves on. The outbox is cleared only after "replied" is
// journaled. A failed Done is retried with backoff.
//
// A crash between sending a reply and writing "replied" can still repeat
// that one reply; that window is one atomic rename wide.
//
// Each repository runs under its own lifecycle: it can be started,
// drained and stopped, or restarted alone (StartRepo, StopRepo,
// RestartRepo, ApplyConfig). Draining stops the repo's channels, lets its
// running tasks finish and leaves its queued messages at their source, to
// run after the restart; Submit messages, which have no source to wait
// at, are replayed from the journal. Shutdown drains every repo for up to
// execution.shutdown_timeout and then cancels what still runs: tasks
// stopped that way send no reply and run again after the restart.
//
// Everything that happens is published on the event bus (Events): task
// state changes, the agent's stream-json events and the network log.
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

// Retry timing: the wait doubles from the first to the cap.
const (
	replyRetryFirst   = 10 * time.Second
	replyRetryCap     = 10 * time.Minute
	doneRetryFirst    = 5 * time.Second
	doneRetryCap      = 5 * time.Minute
	probeTimeout      = time.Minute
	reprobeFirst      = 30 * time.Second
	reprobeCap        = 10 * time.Minute
	repoRestartFirst  = 10 * time.Second
	repoRestartCap    = 10 * time.Minute
	progressCallLimit = 30 * time.Second
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
	logChannel = "channel"
)

// ChannelEnv is what a channel factory gets to build one repository's
// channel.
type ChannelEnv struct {
	RepoID string
	Repo   *config.Repo
	// Config is the whole config the repo starts with (dashboard base URL
	// and other global keys).
	Config *config.Config
	// StateDir is the channel's own directory,
	// <state>/<repo>/channels/<name>/ (Slack keeps its thread map there);
	// it exists, mode 0700.
	StateDir string
	// Exists reports whether a conversation id exists on disk, for
	// channels that map threads to conversations themselves.
	Exists func(id string) bool
	Logger *slog.Logger
}

// ChannelFactory builds one kind of channel for a repository, or returns
// nil, nil when the repository does not configure that kind.
type ChannelFactory func(env ChannelEnv) (channel.Channel, error)

// Options are the gateway's runtime settings that are not in airut.yaml.
type Options struct {
	// StateDir is the state root ($XDG_STATE_HOME/airut). Required.
	StateDir string
	// Logger should already redact secrets (redact.NewHandler). Default:
	// discard.
	Logger *slog.Logger
	// Registry holds every secret value; reply texts and the events on the
	// bus are redacted with it. Default: an empty registry.
	Registry *redact.Registry
	// Clock is the time source; time.Now when nil.
	Clock func() time.Time
	// Channels are the channel kinds a repository may have, by name
	// ("email", "slack", "web"); cli registers them, so that the gateway
	// imports no channel. A repo for which no factory builds a channel
	// fails to start.
	Channels map[string]ChannelFactory
	// Prefix names containers, networks and images; default "airut".
	// Tests use their own so they can run beside a real gateway.
	Prefix string
	// ProxyBinary is the static airut-proxy binary; default
	// sandbox.FindProxyBinary().
	ProxyBinary string
	// StopGrace is the SIGTERM-to-SIGKILL grace for stopped containers;
	// default sandbox.DefaultStopGrace.
	StopGrace time.Duration
	// Backend is the container runtime; default NewBackend (the engine of
	// container_command, which must be on PATH).
	Backend *Backend
}

// timing is every retry delay, shortened by tests.
type timing struct {
	replyMin, replyMax     time.Duration
	doneMin, doneMax       time.Duration
	probe                  time.Duration
	reprobeMin, reprobeMax time.Duration
	restartMin, restartMax time.Duration
}

// Gateway runs every configured repository.
type Gateway struct {
	opts Options
	log  *slog.Logger
	now  func() time.Time
	bus  *Bus
	// claude installs claude_version releases under <state>/claude-binaries.
	claude  *claudecli.Installer
	tracker *tracker
	timing  timing

	// resolveMu keeps the Claude version GC from removing a binary a task
	// has resolved: a task holds it for reading from before it resolves
	// its binary until its container is gone; the GC takes it for writing
	// without waiting, and skips its turn when a task holds it. (Images
	// are leased by the image cache instead.)
	resolveMu sync.RWMutex

	mu sync.Mutex
	// cfg is the config in force; tasks take a snapshot when they start.
	cfg *config.Config
	// backend is the container runtime in force (replaced when the
	// container_* keys change); tasks take a snapshot when they start.
	backend *Backend
	// ownBackend: backend was built by the gateway from cfg, not given.
	ownBackend bool
	slots      map[string]*repoSlot
	// invalid holds, per repo id, why its section of the config is
	// invalid.
	invalid map[string]string
	jobs    map[string]*job // by task id, while queued or running
	pool    pool
	started bool
	closing bool
	runCtx  context.Context
	workCtx context.Context
	// drainCtx ends when the shutdown timeout is over: drains in progress
	// then cancel the tasks they were waiting for.
	drainCtx context.Context
	slotsWG  sync.WaitGroup
	warm     warmState // the warm network sandboxes (warmpool.go)
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
	if opts.StopGrace == 0 {
		opts.StopGrace = sandbox.DefaultStopGrace
	}
	backend, own := opts.Backend, false
	if backend == nil {
		b, err := NewBackend(cfg, opts.Prefix, opts.StateDir, opts.Logger, opts.Clock)
		if err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
		backend, own = b, true
	}
	if err := backend.check(); err != nil {
		return nil, err
	}
	g := &Gateway{
		opts:       opts,
		log:        opts.Logger,
		now:        opts.Clock,
		bus:        NewBus(opts.Clock),
		cfg:        cfg,
		backend:    backend,
		ownBackend: own,
		claude: &claudecli.Installer{Dir: filepath.Join(opts.StateDir, ClaudeBinariesDir),
			Registry: cfg.Execution.ClaudeRegistry, Now: opts.Clock, Logger: opts.Logger},
		slots:   map[string]*repoSlot{},
		invalid: map[string]string{},
		jobs:    map[string]*job{},
		pool:    pool{max: max(cfg.Execution.MaxConcurrent, 1)},
		timing: timing{
			replyMin: replyRetryFirst, replyMax: replyRetryCap,
			doneMin: doneRetryFirst, doneMax: doneRetryCap,
			probe: probeTimeout, reprobeMin: reprobeFirst, reprobeMax: reprobeCap,
			restartMin: repoRestartFirst, restartMax: repoRestartCap,
		},
	}
	g.tracker = newTracker(g.bus)
	return g, nil
}

// Events is the gateway's event bus.
func (g *Gateway) Events() *Bus { return g.bus }

// config returns the config in force.
func (g *Gateway) config() *config.Config {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cfg
}

func (g *Gateway) currentBackend() *Backend {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.backend
}

// Run starts every repository and serves until ctx ends, then shuts down
// gracefully. A repository that fails to start is recorded as failed and
// retried; the others run regardless.
func (g *Gateway) Run(ctx context.Context) error {
	if err := os.MkdirAll(g.opts.StateDir, 0o700); err != nil {
		return fmt.Errorf("gateway: state directory: %w", err)
	}
	// workCtx outlives ctx: running tasks get shutdown_timeout to finish.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	drainCtx, endDrains := context.WithCancel(context.Background())
	defer endDrains()

	if removed, err := g.currentBackend().Runner.Sweep(workCtx); err != nil {
		g.log.Warn("sweep of leftover containers failed", logError, err)
	} else if len(removed) > 0 {
		g.log.Info("removed leftovers of a previous run", "count", len(removed))
	}

	g.mu.Lock()
	if g.started {
		g.mu.Unlock()
		return errors.New("gateway: Run called twice")
	}
	g.started = true
	g.runCtx, g.workCtx, g.drainCtx = ctx, workCtx, drainCtx
	cfg := g.cfg
	g.mu.Unlock()
	g.applyRepos(nil, cfg)
	g.syncWarmPool()

	gcDone := make(chan struct{})
	go func() {
		defer close(gcDone)
		g.gcLoop(ctx)
	}()

	<-ctx.Done()
	timeout := g.config().Execution.ShutdownTimeoutDuration()
	g.log.Info("shutting down: no new messages; waiting for running tasks", "timeout", timeout)
	g.mu.Lock()
	g.closing = true
	slots := make([]*repoSlot, 0, len(g.slots))
	for _, s := range g.slots {
		slots = append(slots, s)
	}
	g.mu.Unlock()
	timer := time.AfterFunc(timeout, func() {
		g.log.Warn("shutdown timeout: cancelling running tasks")
		endDrains()
	})
	defer timer.Stop()
	var wg sync.WaitGroup
	for _, s := range slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = s.send(context.Background(), slotCmd{kind: cmdRemove, ctx: context.Background()})
		}()
	}
	wg.Wait()
	g.slotsWG.Wait()
	g.stopWarmPool()
	<-gcDone
	g.log.Info("gateway stopped")
	return nil
}

// probe runs the probe of every channel that has one.
func (h *repoHandler) probe(ctx context.Context) error {
	var errs []string
	for _, ch := range h.channels {
		p, ok := ch.(channel.Prober)
		if !ok {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, h.g.timing.probe)
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

// sleepCtx waits d, or returns false at once when ctx or stop ends.
func sleepCtx(ctx context.Context, stop <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-stop:
		return false
	}
}

// Repos returns every repository's status, sorted by id.
func (g *Gateway) Repos() []RepoStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]RepoStatus, 0, len(g.slots)+len(g.invalid))
	for id, s := range g.slots {
		st := s.status
		if reason, ok := g.invalid[id]; ok {
			st.Reason = "airut.yaml: this repo's new section is invalid, so it runs its previous config: " + reason
		}
		out = append(out, st)
	}
	for id, reason := range g.invalid {
		if _, ok := g.slots[id]; !ok {
			out = append(out, RepoStatus{ID: id, State: RepoFailed, Reason: reason})
		}
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
// down and the reply says it was stopped. A task waiting for a worker is
// taken out of the queue and answered at once.
func (g *Gateway) Cancel(taskID string) error {
	g.mu.Lock()
	j, ok := g.jobs[taskID]
	if !ok {
		g.mu.Unlock()
		return ErrUnknownTask
	}
	j.cancel(errUserCancel)
	queued := g.pool.remove(j)
	g.mu.Unlock()
	if queued {
		j.h.bg.Add(1)
		go func() {
			defer j.h.bg.Done()
			j.run(false)
		}()
	}
	return nil
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
