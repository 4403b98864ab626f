package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Pool keeps warm network sandboxes: spares whose task network is created
// and whose proxy runs, waiting for a task's configuration (proxy.Claim).
// A task claims one spare, which is its own from then on: the claim writes
// the task's allowlist, replacement map and upstream settings, the proxy
// generates the task's CA and binds its listeners, and the spare is torn
// down with the task, never handed to another. What a task can observe is
// what a cold start gives it: its own network, its own proxy, its own CA.
//
// A spare whose proxy dies is replaced; Close tears every spare down and
// waits for the teardowns of claimed ones.
type Pool struct {
	tmpl   ProxyNetwork
	size   int
	logger *slog.Logger

	mu       sync.Mutex
	ready    []*spare
	starting int
	claimed  int
	replaced int
	warm     int
	cold     int
	closed   bool
	kick     chan struct{}
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// PoolStats is the pool's state for the dashboard.
type PoolStats struct {
	Size     int `json:"size"`     // spares the pool keeps
	Ready    int `json:"ready"`    // spares waiting for a task
	Starting int `json:"starting"` // spares being created
	Claimed  int `json:"claimed"`  // network sandboxes of running tasks (claimed spares and cold starts), until torn down
	Replaced int `json:"replaced"` // spares whose proxy died and that were replaced, since start
	Warm     int `json:"warm"`     // tasks that claimed a spare, since start
	Cold     int `json:"cold"`     // tasks that found no spare ready and started cold, since start
}

// refillDelayMax bounds how long a claim's replacement waits for the
// claiming task's container to start.
const refillDelayMax = 3 * time.Second

// spareRetry bounds the back-off after a spare fails to start.
const (
	spareRetryFirst = time.Second
	spareRetryMax   = 30 * time.Second
)

// NewPool starts a pool of size spares made from tmpl (its Runner,
// ProxyImage and limits; its task fields are ignored). size 0 keeps no
// spares: every task starts cold, as without a pool. Spares are created in
// the background, one at a time.
func NewPool(tmpl ProxyNetwork, size int) *Pool {
	tmpl.Allowlist, tmpl.Secrets, tmpl.Resolve, tmpl.UpstreamCA, tmpl.UpstreamDNS, tmpl.NetworkLog = nil, nil, nil, nil, "", nil
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{tmpl: tmpl, size: max(size, 0), logger: tmpl.Runner.rt.Logger, kick: make(chan struct{}, 1), ctx: ctx, cancel: cancel}
	p.wg.Add(1)
	go p.fill()
	p.refill()
	return p
}

// Provider is the NetworkProvider of one task: its Setup claims a ready
// spare that matches task's proxy image and limits, or starts cold when
// none is ready. task.Runner is the pool's.
func (p *Pool) Provider(task ProxyNetwork) NetworkProvider {
	task.Runner = p.tmpl.Runner
	return &pooledNetwork{pool: p, task: task}
}

// DetachedProvider is Provider with the teardown off the caller's path: a
// TaskNetwork's Teardown returns at once (Run returns as soon as the
// container is gone) and tears down in the background; after is called
// once that teardown has finished, the last network log line delivered
// (once per successful Setup). Close waits for these teardowns.
func (p *Pool) DetachedProvider(task ProxyNetwork, after func()) NetworkProvider {
	task.Runner = p.tmpl.Runner
	return &pooledNetwork{pool: p, task: task, after: after}
}

// Stats is a snapshot of the pool.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PoolStats{Size: p.size, Ready: len(p.ready), Starting: p.starting, Claimed: p.claimed, Replaced: p.replaced,
		Warm: p.warm, Cold: p.cold}
}

// Resize makes the pool keep n spares from now on (0: none, every task
// starts cold). Growing creates the new spares in the background; shrinking
// tears the surplus ready spares down at once, in the background (Close
// waits for them), and a spare still starting beyond n is torn down as soon
// as it is ready. Claimed sandboxes are the tasks' and are not touched.
func (p *Pool) Resize(n int) {
	n = max(n, 0)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.size = n
	var surplus []*spare
	if len(p.ready) > n {
		// The oldest spares stay: they are the likeliest to be ready.
		surplus = slices.Clone(p.ready[n:])
		p.ready = slices.Delete(p.ready, n, len(p.ready))
		for _, sp := range surplus {
			close(sp.taken)
		}
		p.wg.Add(len(surplus))
	}
	p.mu.Unlock()
	for _, sp := range surplus {
		go func() {
			defer p.wg.Done()
			sp.undo.unwind(p.ctx)
		}()
	}
	if len(surplus) > 0 {
		p.logger.Info("warm network sandboxes shrunk", "size", n, "torn_down", len(surplus))
	}
	p.refill()
}

// Close stops refilling, tears down every spare, and waits until the
// teardowns of claimed sandboxes have finished too (or ctx ends).
func (p *Pool) Close(ctx context.Context) {
	p.mu.Lock()
	p.closed = true
	spares := p.ready
	p.ready = nil
	p.mu.Unlock()
	p.cancel()
	var wg sync.WaitGroup
	for _, sp := range spares {
		close(sp.taken)
		wg.Add(1)
		go func() {
			defer wg.Done()
			sp.undo.unwind(ctx)
		}()
	}
	wg.Wait()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

func (p *Pool) refill() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// fill creates spares while fewer than size are ready or starting.
func (p *Pool) fill() {
	defer p.wg.Done()
	failures := 0
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-p.kick:
		}
		for {
			p.mu.Lock()
			if p.closed || len(p.ready)+p.starting >= p.size {
				p.mu.Unlock()
				break
			}
			p.starting++
			p.mu.Unlock()
			err := p.startSpare()
			p.mu.Lock()
			p.starting--
			p.mu.Unlock()
			if err == nil {
				failures = 0
				continue
			}
			if p.ctx.Err() != nil {
				return
			}
			failures++
			wait := min(spareRetryFirst<<min(failures-1, 5), spareRetryMax)
			p.logger.Warn("warm network sandbox failed to start; retrying", "err", err, "in", wait)
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
}

// startSpare creates one spare and, once its proxy waits for a claim,
// adds it to the ready list under a watch that replaces it if its proxy
// dies.
func (p *Pool) startSpare() error {
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := p.tmpl.Runner.Prefix + "-spare-" + hex.EncodeToString(b[:])
	// A spare being started when Close (or a shrink) runs is finished
	// first and torn down from there, never half-way: cancelled, its
	// teardown (network rm -f) ran while its own engine calls were still
	// in flight, the proxy's `podman run` among them, racing the engine's
	// creation of the container. Close waits for it (fill is in wg); the
	// start is bounded by ProxyReadyTimeout.
	ctx := context.WithoutCancel(p.ctx)
	sp, err := p.tmpl.newSpare(ctx, name, nil)
	if err != nil {
		return err
	}
	if err := waitReady(ctx, sp.proc, filepath.Join(sp.outDir, "waiting"), 10*time.Millisecond); err != nil {
		sp.undo.unwind(ctx)
		return fmt.Errorf("spare %s: %w", name, err)
	}
	p.mu.Lock()
	if p.closed || len(p.ready) >= p.size {
		// Closed or shrunk while it started: not wanted any more.
		p.mu.Unlock()
		sp.undo.unwind(p.ctx)
		return nil
	}
	p.ready = append(p.ready, sp)
	p.wg.Add(1)
	p.mu.Unlock()
	go p.watch(sp)
	return nil
}

// watch replaces a ready spare whose proxy or network holder exits before
// it is claimed.
func (p *Pool) watch(sp *spare) {
	defer p.wg.Done()
	what := []any{"spare", sp.name}
	select {
	case <-sp.taken:
		return
	case <-sp.proc.exited:
		// proc.err is the client's, set before exited is closed.
		what = append(what, "died", "proxy", "err", sp.proc.err, "stderr", engineMessage(sp.proc.stderr.lines()))
	case <-sp.holderGone:
		what = append(what, "died", "network holder")
	}
	p.mu.Lock()
	found := false
	for i, r := range p.ready {
		if r == sp {
			p.ready = append(p.ready[:i], p.ready[i+1:]...)
			found = true
			break
		}
	}
	if found {
		p.replaced++
		close(sp.taken)
	}
	p.mu.Unlock()
	if !found {
		return // claimed or closed meanwhile: theirs to tear down
	}
	p.logger.Warn("a warm network sandbox's proxy or network holder died; replacing it", what...)
	sp.undo.unwind(p.ctx)
	p.refill()
}

// take removes a ready spare matching key from the pool; nil when none.
func (p *Pool) take(key spareKey) *spare {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	for i, sp := range p.ready {
		if sp.key != key {
			continue
		}
		select {
		case <-sp.proc.exited:
			continue // the watch replaces it
		default:
		}
		if sp.gone() {
			continue
		}
		p.ready = append(p.ready[:i], p.ready[i+1:]...)
		close(sp.taken)
		p.claimed++
		p.warm++
		return sp
	}
	return nil
}

// pooledNetwork is one task's provider on a pool.
type pooledNetwork struct {
	pool  *Pool
	task  ProxyNetwork
	after func() // DetachedProvider's
}

func (n *pooledNetwork) Setup(ctx context.Context, name string) (*TaskNetwork, error) {
	p, task := n.pool, &n.task
	sp := p.take(task.spareKey())
	var tn *TaskNetwork
	var err error
	if sp == nil && task.Pending != nil {
		// A cold start needs the claim before its proxy starts.
		if task, err = task.resolved(ctx); err != nil {
			return nil, err
		}
	}
	switch {
	case sp != nil && task.Pending != nil:
		tn = sp.claimLater(task)
	case sp != nil:
		tn, err = sp.claim(ctx, task)
		if err != nil && ctx.Err() == nil {
			// The spare is gone with its failure; a cold start gets the
			// task its own sandbox all the same.
			p.logger.Warn("claiming a warm network sandbox failed; starting cold", "spare", sp.name, "err", err)
			p.mu.Lock()
			p.cold++
			p.mu.Unlock()
			tn, err = task.setup(ctx, name)
		}
	default:
		p.mu.Lock()
		p.claimed++
		p.cold++
		p.mu.Unlock()
		tn, err = task.setup(ctx, name)
	}
	if err != nil {
		p.release()
		return nil, fmt.Errorf("network sandbox: %w: %w", err, ErrInfrastructure)
	}
	// The spare that replaces this one is made once the task's container
	// runs, or at teardown: made now, its three engine calls would slow
	// the container's start, the path the pool is for. A caller that
	// never runs a container on the sandbox (or one that prints nothing
	// for long) holds the refill back only refillDelayMax.
	var refillOnce sync.Once
	refill := func() { refillOnce.Do(p.refill) }
	timer := time.AfterFunc(refillDelayMax, refill)
	tn.Started = func() {
		timer.Stop()
		refill()
	}
	teardown := tn.Teardown
	p.mu.Lock()
	// Close waits for the teardowns it knows of. A task set up after it
	// (its provider taken from a pool a reload then stopped) is torn down
	// by its Run, on the Run's path: nobody would wait for it detached.
	tracked := !p.closed
	if tracked {
		p.wg.Add(1)
	}
	p.mu.Unlock()
	var once sync.Once
	down := func(ctx context.Context) {
		if tracked {
			defer p.wg.Done()
		}
		defer p.release()
		teardown(ctx)
		if n.after != nil {
			n.after()
		}
	}
	tn.Teardown = func(ctx context.Context) {
		once.Do(func() {
			if n.after == nil || !tracked {
				down(ctx)
				return
			}
			// The caller's context ends when it returns; the undo
			// stack bounds the teardown with its own timeout.
			go down(context.WithoutCancel(ctx))
		})
	}
	return tn, nil
}

func (p *Pool) release() {
	p.mu.Lock()
	p.claimed--
	p.mu.Unlock()
	p.refill()
}
