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
// start. The pool is bound to the backend it was made on: after a backend
// change, tasks start cold.
type warmState struct {
	pool    WarmPool
	backend *Backend
	release func() // the proxy image's lease
	ready   chan struct{}
}

// warmPoolCloseTimeout bounds the drain of the pool at shutdown.
const warmPoolCloseTimeout = time.Minute

// startWarmPool starts the pool in the background: the proxy image is
// built first, and Run must not wait for it.
func (g *Gateway) startWarmPool(ctx context.Context) {
	g.mu.Lock()
	size := g.cfg.Execution.WarmSandboxCount()
	b := g.backend
	g.warm.ready = make(chan struct{})
	g.mu.Unlock()
	if size == 0 || b.WarmPool == nil {
		close(g.warm.ready)
		return
	}
	go func() {
		defer close(g.warm.ready)
		bin, err := g.proxyBinary()
		if err != nil {
			g.log.Warn("no warm network sandboxes: tasks start cold", logError, err)
			return
		}
		image, release, err := b.Images.EnsureProxy(ctx, bin)
		if err != nil {
			g.log.Warn("no warm network sandboxes: tasks start cold", logError, err)
			return
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.closing {
			release()
			return
		}
		g.warm.pool, g.warm.backend, g.warm.release = b.WarmPool(image, size), b, release
		g.log.Info("warm network sandboxes", "size", size)
	}()
}

// stopWarmPool drains the pool: every spare torn down, and the claimed
// ones' teardowns waited for. Run calls it once every task has ended.
func (g *Gateway) stopWarmPool() {
	if g.warm.ready == nil {
		return
	}
	<-g.warm.ready
	g.mu.Lock()
	w := g.warm
	g.warm.pool = nil
	g.mu.Unlock()
	if w.pool == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), warmPoolCloseTimeout)
	defer cancel()
	w.pool.Close(ctx)
	w.release()
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
	t.path.once.Do(func() {
		t.path.mark("network")
		t.path.mu.Lock()
		attrs := append(t.path.attrs, "total_ms", time.Since(t.path.start).Milliseconds())
		t.path.mu.Unlock()
		t.path.log.Info("task start path", attrs...)
	})
	return tn, err
}
