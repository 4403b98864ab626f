package gateway

// pool is the global worker pool: at most max tasks in their sandbox at
// once, across every repository. Jobs wait in queue, first in first out;
// no goroutine exists for a waiting job. Guarded by Gateway.mu.
type pool struct {
	max   int
	busy  int
	queue []*job
}

// remove takes j out of the queue; it reports whether j was there.
func (p *pool) remove(j *job) bool {
	for i, q := range p.queue {
		if q == j {
			p.queue = append(p.queue[:i], p.queue[i+1:]...)
			return true
		}
	}
	return false
}

// enqueue puts j in line for a worker, unless its repository is draining:
// then j is abandoned and its messages stay at their source.
func (g *Gateway) enqueue(j *job) {
	if j.h.draining.Load() {
		j.abandonAndFinish()
		return
	}
	g.mu.Lock()
	g.pool.queue = append(g.pool.queue, j)
	g.dispatchLocked()
	g.mu.Unlock()
}

// dispatchLocked starts queued jobs while workers are free; g.mu is held.
func (g *Gateway) dispatchLocked() {
	for g.pool.busy < g.pool.max && len(g.pool.queue) > 0 {
		j := g.pool.queue[0]
		g.pool.queue[0] = nil
		g.pool.queue = g.pool.queue[1:]
		g.pool.busy++
		j.h.bg.Add(1)
		go func() {
			defer j.h.bg.Done()
			j.run(true)
		}()
	}
}

// releaseSlot gives a worker back and starts the next queued job.
func (g *Gateway) releaseSlot() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pool.busy--
	g.dispatchLocked()
}

// dropQueued takes every queued job of h out of the queue and returns
// them; the caller abandons them.
func (g *Gateway) dropQueued(h *repoHandler) []*job {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*job
	keep := g.pool.queue[:0]
	for _, j := range g.pool.queue {
		if j.h == h {
			out = append(out, j)
			continue
		}
		keep = append(keep, j)
	}
	clear(g.pool.queue[len(keep):])
	g.pool.queue = keep
	return out
}

// SetMaxConcurrent resizes the worker pool (execution.max_concurrent) at
// once. Growing starts queued jobs; shrinking lets running tasks finish and
// starts no new one until fewer than n run. The warm network sandboxes
// follow (by default as many as n).
func (g *Gateway) SetMaxConcurrent(n int) {
	g.mu.Lock()
	g.pool.max = max(n, 1)
	g.dispatchLocked()
	g.mu.Unlock()
	g.syncWarmPool()
}

// QueueLength is how many tasks wait for a worker, across every repo.
func (g *Gateway) QueueLength() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.pool.queue)
}
