package gateway

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"sync"
	"time"

	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/config"
)

// RepoStatus is one repository's state for the dashboard.
type RepoStatus struct {
	ID string
	// State is RepoStarting, RepoLive, RepoFailed, RepoReloading or
	// RepoStopped.
	State string
	// Reason says why a repo failed, in one line.
	Reason string
	// Channels names the repo's channels once it started.
	Channels []string
}

// Repo states (SPEC S9, plus starting).
const (
	// RepoStarting: the mirror is being fetched and the channels built.
	RepoStarting = "starting"
	// RepoLive: the channels run and their probes pass.
	RepoLive = "live"
	// RepoFailed: the repo could not start (retried with backoff), a
	// channel cannot log in (probed again with backoff), or its config is
	// invalid (until a reload fixes it); Reason says which.
	RepoFailed = "failed"
	// RepoReloading: the repo's config changed; it restarts once its
	// running tasks finish.
	RepoReloading = "reloading"
	// RepoStopped: stopped by StopRepo.
	RepoStopped = "stopped"
)

// Lifecycle errors.
var (
	ErrUnknownRepo = errors.New("no such repository")
	// ErrRepoNotLive: the repo is not running (failed, stopped or
	// restarting); Submit cannot take work for it now.
	ErrRepoNotLive = errors.New("repository is not running")
	ErrClosing     = errors.New("gateway is shutting down")
)

// repoSlot is one repository's lifecycle. A single goroutine (manage)
// owns the repo handler and serves the slot's commands one at a time, so
// a start, a drain and a restart never overlap.
type repoSlot struct {
	g    *Gateway
	id   string
	cmds chan slotCmd
	done chan struct{} // closed when manage returns

	// Guarded by g.mu.
	status RepoStatus
	h      *repoHandler
}

type cmdKind int

const (
	// cmdConfigure applies the repo's section of the config in force
	// (read when the command is served, so that of two reloads in a row
	// the later always wins).
	cmdConfigure cmdKind = iota
	cmdStart
	cmdStop
	cmdRestart
	cmdRemove // drain, stop and forget the slot
)

type slotCmd struct {
	kind cmdKind
	// ctx bounds a drain; when it ends, the tasks still running are
	// cancelled and their messages stay at the source.
	ctx   context.Context
	reply chan error
}

// send hands c to the slot's goroutine and waits for its answer when it
// has a reply channel.
func (s *repoSlot) send(ctx context.Context, c slotCmd) error {
	if c.reply == nil {
		c.reply = make(chan error, 1)
	}
	select {
	case s.cmds <- c:
	case <-s.done:
		return ErrUnknownRepo
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-c.reply:
		return err
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// setStatus records st for the slot (only while h is the slot's current
// handler, when h is given) and publishes it.
func (g *Gateway) setStatus(s *repoSlot, h *repoHandler, state, reason string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if h != nil && s.h != h {
		return // a drained handler's late probe
	}
	s.status.State, s.status.Reason = state, reason
	s.status.Channels = nil
	if s.h != nil {
		for _, ch := range s.h.channels {
			s.status.Channels = append(s.status.Channels, ch.Name())
		}
	}
	st := s.status
	g.bus.Publish(Event{Kind: EventRepo, Repo: s.id, RepoState: &st})
}

// newSlot creates and starts the slot of repo id; g.mu is held.
func (g *Gateway) newSlotLocked(id string, rc *config.Repo) *repoSlot {
	s := &repoSlot{g: g, id: id, cmds: make(chan slotCmd), done: make(chan struct{}),
		status: RepoStatus{ID: id, State: RepoStarting}}
	g.slots[id] = s
	g.slotsWG.Add(1)
	go func() {
		defer g.slotsWG.Done()
		defer close(s.done)
		s.manage(rc)
	}()
	return s
}

// running is one started repo handler and what stops it.
type running struct {
	h      *repoHandler
	cancel context.CancelFunc // stops its channels and probes
	done   chan struct{}      // closed when they have stopped
}

// manage is the slot's goroutine: it starts the repo (retrying a failed
// start with backoff) and serves commands until the slot is removed.
func (s *repoSlot) manage(rc *config.Repo) {
	g := s.g
	g.mu.Lock()
	runCtx := g.runCtx
	g.mu.Unlock()
	var cur *running
	var retry <-chan time.Time
	attempt := 0
	start := func() error {
		retry = nil
		if runCtx.Err() != nil {
			return ErrClosing
		}
		r, err := g.startRepo(runCtx, s, rc)
		if err != nil {
			if runCtx.Err() != nil {
				return ErrClosing
			}
			attempt++
			wait := backoff(g.timing.restartMin, g.timing.restartMax, attempt)
			g.setStatus(s, nil, RepoFailed, oneLine(err.Error()))
			g.log.Error("repo failed to start; retrying", logRepo, s.id, "attempt", attempt, "retry_in", wait, logError, err)
			retry = time.After(wait)
			return err
		}
		attempt = 0
		cur = r
		return nil
	}
	stop := func(ctx context.Context) {
		if cur != nil {
			s.drain(ctx, cur)
			cur = nil
		}
	}
	latest := func() {
		if next, ok := g.config().Repos[s.id]; ok {
			rc = next
		}
	}
	_ = start()
	for {
		select {
		case <-retry:
			if cur == nil {
				_ = start()
			}
		case c := <-s.cmds:
			var err error
			switch c.kind {
			case cmdConfigure:
				old := rc
				next, ok := g.config().Repos[s.id]
				if !ok {
					break // removed meanwhile: a cmdRemove follows
				}
				rc = next
				switch {
				case cur == nil:
					if retry != nil || s.state() == RepoFailed {
						// Failed: a reload retries at once.
						attempt = 0
						err = start()
					}
				case repoScopeChanged(old, rc) || s.state() == RepoFailed:
					g.setStatus(s, nil, RepoReloading, "")
					g.log.Info("repo config changed; restarting it once its running tasks finish", logRepo, s.id)
					stop(c.ctx)
					err = start()
				default:
					// Task-scope keys only: the next task takes them.
					cur.h.setRepoConfig(rc)
				}
			case cmdStart:
				if cur == nil {
					latest()
					attempt = 0
					err = start()
				}
			case cmdRestart:
				if cur != nil {
					g.setStatus(s, nil, RepoReloading, "")
				}
				stop(c.ctx)
				latest()
				attempt = 0
				err = start()
			case cmdStop, cmdRemove:
				retry = nil
				stop(c.ctx)
				if c.kind == cmdRemove {
					g.mu.Lock()
					next, back := g.cfg.Repos[s.id]
					back = back && !g.closing
					if !back && g.slots[s.id] == s {
						delete(g.slots, s.id)
					}
					g.mu.Unlock()
					if !back {
						c.reply <- nil
						return
					}
					// Added back while it drained: it runs again.
					rc = next
					attempt = 0
					err = start()
					break
				}
				g.setStatus(s, nil, RepoStopped, "")
			}
			c.reply <- err
		}
	}
}

func (s *repoSlot) state() string {
	s.g.mu.Lock()
	defer s.g.mu.Unlock()
	return s.status.State
}

// startRepo prepares one repository (directories, mirror, store, journal,
// channels), then runs its channels and probes them until the returned
// running is cancelled. The mirror is cloned or fetched here, so a wrong
// repo_url shows as a failed repo at once rather than in every reply.
func (g *Gateway) startRepo(ctx context.Context, s *repoSlot, rc *config.Repo) (*running, error) {
	g.setStatus(s, nil, RepoStarting, "")
	g.mu.Lock()
	cfg, workCtx := g.cfg, g.workCtx
	g.mu.Unlock()
	h, err := newRepoHandler(g, workCtx, s.id, rc)
	if err != nil {
		return nil, err
	}
	if err := h.mirror.Ensure(ctx); err != nil {
		return nil, fmt.Errorf("git mirror: %w", err)
	}
	chans, err := g.buildChannels(s.id, rc, cfg, h)
	if err != nil {
		return nil, err
	}
	h.channels = chans
	g.mu.Lock()
	s.h = h
	g.mu.Unlock()

	rctx, cancel := context.WithCancel(ctx)
	r := &running{h: h, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		g.serveRepo(rctx, s, h)
	}()
	return r, nil
}

// buildChannels asks every registered factory for the repo's channel.
func (g *Gateway) buildChannels(id string, rc *config.Repo, cfg *config.Config, h *repoHandler) ([]channel.Channel, error) {
	names := make([]string, 0, len(g.opts.Channels))
	for name := range g.opts.Channels {
		names = append(names, name)
	}
	sort.Strings(names)
	var chans []channel.Channel
	for _, name := range names {
		dir := filepath.Join(g.opts.StateDir, id, "channels", name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("channel %s: state directory: %w", name, err)
		}
		ch, err := g.opts.Channels[name](ChannelEnv{
			RepoID: id, Repo: rc, Config: cfg, StateDir: dir, Exists: h.store.Exists,
			Logger: g.log.With(logRepo, id),
		})
		if err != nil {
			return nil, fmt.Errorf("channel %s: %w", name, err)
		}
		if ch != nil {
			chans = append(chans, ch)
		}
	}
	if len(chans) == 0 {
		return nil, errors.New("no channel could be started")
	}
	return chans, nil
}

// serveRepo runs the channels of h until ctx ends: a probe first (the
// repo shows live, or failed with the channel's reason), the receive loops,
// the replay of Submit messages from the journal, and probes again with
// backoff while a channel cannot log in.
func (g *Gateway) serveRepo(ctx context.Context, s *repoSlot, h *repoHandler) {
	var recv sync.WaitGroup
	defer recv.Wait()
	err := h.probe(ctx)
	if ctx.Err() != nil {
		return
	}
	if err == nil {
		g.setStatus(s, h, RepoLive, "")
		g.log.Info("repo started", logRepo, h.id, "channels", len(h.channels))
	} else {
		g.setStatus(s, h, RepoFailed, err.Error())
		g.log.Error("repo started, but a channel cannot connect; retrying in the background", logRepo, h.id, logError, err)
	}
	h.receive(ctx, &recv)
	h.replaySubmitted()
	for attempt := 1; err != nil; attempt++ {
		if !sleepCtx(ctx, nil, backoff(g.timing.reprobeMin, g.timing.reprobeMax, attempt)) {
			return
		}
		err = h.probe(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			g.setStatus(s, h, RepoLive, "")
			g.log.Info("repo channels connected; repo live", logRepo, h.id)
			return
		}
		g.setStatus(s, h, RepoFailed, err.Error())
		g.log.Warn("repo channel still cannot connect", logRepo, h.id, "attempt", attempt, logError, err)
	}
	<-ctx.Done()
}

// drain stops r's channels, lets its running tasks and their replies
// finish, and leaves everything not started at its source. When ctx (or
// the shutdown timeout) ends first, the running tasks are cancelled.
func (s *repoSlot) drain(ctx context.Context, r *running) {
	g := s.g
	r.cancel()
	<-r.done
	g.mu.Lock()
	dctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(g.drainCtx, cancel)
	g.mu.Unlock()
	defer stop()
	defer cancel()
	r.h.drain(dctx)
	g.mu.Lock()
	if s.h == r.h {
		s.h = nil
	}
	g.mu.Unlock()
}

// repoScopeChanged reports a change that needs the repo restarted: its
// channels or its git URL. Everything else (model, effort, limits,
// credential pools, network, claude binary) is read by each task when it
// starts.
func repoScopeChanged(old, new *config.Repo) bool {
	return old.RepoURL != new.RepoURL || !reflect.DeepEqual(old.Email, new.Email) || !reflect.DeepEqual(old.Slack, new.Slack)
}

// applyRepos brings the slots in line with cfg: new repos start, removed
// ones drain and stop, changed ones are reconfigured (restarted when
// idle if a repo-scope key changed), failed ones are retried.
func (g *Gateway) applyRepos(old, cfg *config.Config) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.started || g.closing {
		return
	}
	restartAll := old != nil && old.Dashboard.BaseURL != cfg.Dashboard.BaseURL
	g.invalid = map[string]string{}
	for id, err := range cfg.RepoErrors {
		g.invalid[id] = oneLine(err.Error())
		if s := g.slots[id]; s != nil && s.h == nil {
			// Not running anyway: show why it cannot.
			go func() { _ = s.send(context.Background(), slotCmd{kind: cmdRemove, ctx: context.Background()}) }()
		} else if s == nil {
			g.log.Error("repo not started: invalid config", logRepo, id, logError, err)
		}
	}
	for id, s := range g.slots {
		if _, ok := cfg.Repos[id]; ok {
			continue
		}
		if _, bad := cfg.RepoErrors[id]; bad {
			continue
		}
		g.log.Info("repo removed from the config; draining it", logRepo, id)
		go func() { _ = s.send(context.Background(), slotCmd{kind: cmdRemove, ctx: context.Background()}) }()
	}
	for id, rc := range cfg.Repos {
		s := g.slots[id]
		if s == nil {
			g.newSlotLocked(id, rc)
			continue
		}
		var prev *config.Repo
		if old != nil {
			prev = old.Repos[id]
		}
		if prev != nil && !config.RepoChanged(prev, rc) && !restartAll && s.status.State != RepoFailed {
			continue
		}
		kind := cmdConfigure
		if restartAll {
			kind = cmdRestart
		}
		go func() { _ = s.send(context.Background(), slotCmd{kind: kind, ctx: context.Background()}) }()
	}
}

// ApplyConfig makes cfg the config in force, as a hot reload does: global
// keys apply at once (max_concurrent resizes the pool; container_* keys
// replace the container runtime for the next tasks; the warm network
// sandboxes follow warm_sandboxes and max_concurrent), task-scope keys
// apply to the next task, repos whose channels or repo_url changed are
// restarted once their running tasks finish, added repos start, removed
// ones drain and stop, failed ones are retried. A repo whose new section
// is invalid keeps running on its previous config (its status says so).
// It returns before the repos have restarted; Repos shows their states.
func (g *Gateway) ApplyConfig(cfg *config.Config) error {
	if cfg == nil {
		return errors.New("gateway: nil config")
	}
	g.mu.Lock()
	old := g.cfg
	if g.ownBackend && containerChanged(old, cfg) {
		b, err := NewBackend(cfg, g.opts.Prefix, g.opts.StateDir, g.log, g.now)
		if err != nil {
			g.mu.Unlock()
			return fmt.Errorf("gateway: %w", err)
		}
		g.backend = b
	}
	g.cfg = cfg
	g.pool.max = max(cfg.Execution.MaxConcurrent, 1)
	g.dispatchLocked()
	g.mu.Unlock()
	g.syncWarmPool()
	g.applyRepos(old, cfg)
	g.bus.Publish(Event{Kind: EventConfig})
	return nil
}

func containerChanged(a, b *config.Config) bool {
	return a.ContainerCommand != b.ContainerCommand || a.ContainerRuntime != b.ContainerRuntime ||
		!reflect.DeepEqual(a.ContainerUlimits, b.ContainerUlimits)
}

func (g *Gateway) slot(id string) (*repoSlot, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return nil, ErrClosing
	}
	if !g.started {
		return nil, errors.New("gateway: not running")
	}
	s := g.slots[id]
	if s == nil {
		return nil, fmt.Errorf("%s: %w", id, ErrUnknownRepo)
	}
	return s, nil
}

// StopRepo drains repo id and leaves it stopped: its channels stop at
// once, its running tasks finish and reply, queued messages stay at their
// source. When ctx ends first the running tasks are cancelled (no reply;
// they run again once the repo starts). It returns when the repo is
// stopped.
func (g *Gateway) StopRepo(ctx context.Context, id string) error {
	s, err := g.slot(id)
	if err != nil {
		return err
	}
	return s.send(context.Background(), slotCmd{kind: cmdStop, ctx: ctx})
}

// StartRepo starts a stopped (or failed) repo with the config in force.
func (g *Gateway) StartRepo(ctx context.Context, id string) error {
	s, err := g.slot(id)
	if err != nil {
		return err
	}
	return s.send(ctx, slotCmd{kind: cmdStart, ctx: ctx})
}

// RestartRepo drains repo id as StopRepo does and starts it again with the
// config in force; the state is reloading meanwhile.
func (g *Gateway) RestartRepo(ctx context.Context, id string) error {
	s, err := g.slot(id)
	if err != nil {
		return err
	}
	return s.send(context.Background(), slotCmd{kind: cmdRestart, ctx: ctx})
}

// liveHandler returns the running handler of repo id for new work.
func (g *Gateway) liveHandler(id string) (*repoHandler, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return nil, ErrClosing
	}
	s := g.slots[id]
	if s == nil {
		if _, ok := g.invalid[id]; ok {
			return nil, fmt.Errorf("%s: %w", id, ErrRepoNotLive)
		}
		return nil, fmt.Errorf("%s: %w", id, ErrUnknownRepo)
	}
	if s.h == nil || s.h.draining.Load() {
		return nil, fmt.Errorf("%s (%s): %w", id, s.status.State, ErrRepoNotLive)
	}
	return s.h, nil
}
