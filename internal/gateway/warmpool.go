package gateway

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/airut/airut/internal/sandbox"
)

// warmState is the gateway's pool of warm network sandboxes: spares made
// ahead of need (execution.warm_sandboxes, by default max_concurrent), so a
// task's network sandbox costs a claim instead of a network and a proxy
// start. The pool follows the config: a reload resizes it, 0 stops it, a
// size above 0 starts it again, and a backend change (container_* keys)
// remakes it on the new backend. A task on another backend than the pool's
// starts cold.
type warmState struct {
	pool    WarmPool
	backend *Backend
	release func() // the proxy image's lease
	// ready is closed when the pending start (the proxy image build) has
	// finished; nil before the first.
	ready    chan struct{}
	starting bool
	// retired counts the pools being drained in the background after a
	// reload stopped or replaced them.
	retired sync.WaitGroup
}

// warmPoolCloseTimeout bounds the drain of the pool at shutdown.
const warmPoolCloseTimeout = time.Minute

// warmCountLocked is how many spares the pool keeps under the config in force
// and the worker pool's size (SetMaxConcurrent may have changed it).
func (g *Gateway) warmCountLocked() int {
	e := g.cfg.Execution
	e.MaxConcurrent = g.pool.max
	return e.WarmSandboxCount()
}

// syncWarmPool brings the pool in line with the config in force: Run calls
// it at start, and every reload (ApplyConfig, SetMaxConcurrent) after.
// Growing, shrinking and stopping happen in the background; a start builds
// the proxy image first, and nobody waits for it.
func (g *Gateway) syncWarmPool() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.started || g.closing {
		return
	}
	w := &g.warm
	size, b := g.warmCountLocked(), g.backend
	if w.pool != nil && (size == 0 || w.backend != b) {
		g.retireWarmPoolLocked()
	}
	switch {
	case size == 0 || b.WarmPool == nil:
	case w.pool != nil:
		if w.pool.Stats().Size != size {
			w.pool.Resize(size)
			g.log.Info("warm network sandboxes resized", "size", size)
		}
	case !w.starting:
		g.startWarmPoolLocked(b)
	}
	// A start under way reads the size in force when its image is ready.
}

// retireWarmPoolLocked takes the pool out of use and drains it in the
// background: its spares are torn down, claimed sandboxes stay their
// tasks' until their teardowns (which the drain waits for).
func (g *Gateway) retireWarmPoolLocked() {
	w := &g.warm
	pool, release := w.pool, w.release
	w.pool, w.backend, w.release = nil, nil, nil
	w.retired.Add(1)
	go func() {
		defer w.retired.Done()
		ctx, cancel := context.WithTimeout(context.Background(), warmPoolCloseTimeout)
		defer cancel()
		pool.Close(ctx)
		release()
	}()
	g.log.Info("warm network sandboxes stopped")
}

// startWarmPoolLocked starts a pool on b in the background: the proxy
// image is built first, and Run must not wait for it.
func (g *Gateway) startWarmPoolLocked(b *Backend) {
	w := &g.warm
	w.starting = true
	ready := make(chan struct{})
	w.ready = ready
	ctx := g.workCtx
	go func() {
		defer close(ready)
		image, release, err := g.warmImage(ctx, b)
		g.mu.Lock()
		w.starting = false
		size := g.warmCountLocked()
		stale := g.closing || g.backend != b || size == 0
		if err == nil && !stale {
			w.pool, w.backend, w.release = b.WarmPool(image, size), b, release
			g.log.Info("warm network sandboxes", "size", size)
		}
		g.mu.Unlock()
		switch {
		case err != nil:
			g.log.Warn("no warm network sandboxes: tasks start cold", logError, err)
		case stale:
			release()
			// The config changed while the image was made (a new
			// backend, say): start again on what is in force now.
			g.syncWarmPool()
		}
	}()
}

func (g *Gateway) warmImage(ctx context.Context, b *Backend) (image string, release func(), err error) {
	bin, err := g.proxyBinary()
	if err != nil {
		return "", nil, err
	}
	return b.Images.EnsureProxy(ctx, bin)
}

// stopWarmPool drains the pool: every spare torn down, and the claimed
// ones' teardowns waited for. Run calls it once every task has ended
// (closing is set: no start or reload changes the pool any more).
func (g *Gateway) stopWarmPool() {
	g.mu.Lock()
	ready := g.warm.ready
	g.mu.Unlock()
	if ready != nil {
		<-ready
	}
	g.mu.Lock()
	w := &g.warm
	pool, release := w.pool, w.release
	w.pool, w.backend, w.release = nil, nil, nil
	g.mu.Unlock()
	if pool != nil {
		ctx, cancel := context.WithTimeout(context.Background(), warmPoolCloseTimeout)
		defer cancel()
		pool.Close(ctx)
		release()
	}
	w.retired.Wait()
}

// networkProvider is a task's network sandbox: claimed from the pool when
// the pool was made on the task's backend, else started cold. closeLog
// closes the task's network log and releases the proxy image; it runs from
// cleanup when the task is done with the provider, or, with the pool, once
// the last background teardown has finished (the reply need not wait for
// it).
func (g *Gateway) networkProvider(b *Backend, closeLog func(), p sandbox.ProxyNetwork) (_ sandbox.NetworkProvider, cleanup func()) {
	g.mu.Lock()
	pool, poolBackend := g.warm.pool, g.warm.backend
	g.mu.Unlock()
	if pool == nil || poolBackend != b {
		return b.ProxyNetwork(p), closeLog
	}
	r := &holders{n: 1, last: closeLog}
	return heldProvider{pool.DetachedProvider(p, r.done), r}, r.done
}

// holders runs last when the task and every background teardown of its
// network sandboxes have let go (a retried task sets up twice).
type holders struct {
	mu   sync.Mutex
	n    int
	last func()
}

func (h *holders) add() {
	h.mu.Lock()
	h.n++
	h.mu.Unlock()
}

func (h *holders) done() {
	h.mu.Lock()
	h.n--
	zero := h.n == 0
	h.mu.Unlock()
	if zero {
		h.last()
	}
}

// heldProvider holds the task's log for every Setup that succeeds, until
// its teardown calls done.
type heldProvider struct {
	sandbox.NetworkProvider
	h *holders
}

func (p heldProvider) Setup(ctx context.Context, name string) (*sandbox.TaskNetwork, error) {
	p.h.add()
	tn, err := p.NetworkProvider.Setup(ctx, name)
	if err != nil {
		p.h.done()
	}
	return tn, err
}

// WarmPool is the state of the warm network sandboxes, for the dashboard;
// ok is false when there is no pool (disabled, not started yet, or
// stopped).
func (g *Gateway) WarmPool() (stats sandbox.PoolStats, ok bool) {
	g.mu.Lock()
	pool := g.warm.pool
	g.mu.Unlock()
	if pool == nil {
		return sandbox.PoolStats{}, false
	}
	return pool.Stats(), true
}

// startPath records where a task's time goes from execute to the start of
// its container (the critical path the warm pool shortens): one log line
// per task with each phase's milliseconds.
type startPath struct {
	log         *slog.Logger
	start, last time.Time
	once        sync.Once
	mu          sync.Mutex
	attrs       []any
}

func newStartPath(log *slog.Logger) *startPath {
	now := time.Now()
	return &startPath{log: log, start: now, last: now}
}

// mark ends the phase called name.
func (s *startPath) mark(name string) {
	now := time.Now()
	s.mu.Lock()
	s.attrs = append(s.attrs, name+"_ms", now.Sub(s.last).Milliseconds())
	s.last = now
	s.mu.Unlock()
}

// span records a phase that ran beside the others, off the sequence
// mark measures.
func (s *startPath) span(name string, d time.Duration) {
	s.mu.Lock()
	s.attrs = append(s.attrs, name+"_ms", d.Milliseconds())
	s.mu.Unlock()
}

// timedProvider records the network sandbox's Setup as the last phase
// and logs the path.
type timedProvider struct {
	sandbox.NetworkProvider
	path *startPath
}

func (t timedProvider) Setup(ctx context.Context, name string) (*sandbox.TaskNetwork, error) {
	t.path.mark("before_network")
	tn, err := t.NetworkProvider.Setup(ctx, name)
	t.path.finish("network")
	return tn, err
}

// finish ends the last phase, called name, and logs the path (once): the
// container's command can run from here.
func (s *startPath) finish(name string) {
	s.once.Do(func() {
		s.mark(name)
		s.mu.Lock()
		attrs := append(s.attrs, "total_ms", time.Since(s.start).Milliseconds())
		s.mu.Unlock()
		s.log.Info("task start path", attrs...)
	})
}
