package gateway

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/sandbox"
)

// Runner is what the gateway needs from the container runtime to run
// tasks: one container per spec, and a sweep of what a crashed run left.
// *sandbox.Runner is the real one.
type Runner interface {
	Run(ctx context.Context, spec sandbox.Spec) sandbox.Result
	Sweep(ctx context.Context) ([]string, error)
}

// Images is what the gateway needs from the image cache. *sandbox.ImageCache
// is the real one. Every image handed out is leased until release is
// called (once the task's last container has exited): Prune keeps it.
type Images interface {
	Ensure(ctx context.Context, buildCtx fs.FS) (tag string, release func(), err error)
	EnsureProxy(ctx context.Context, binary string) (tag string, release func(), err error)
	Prune(ctx context.Context, keep ...string) ([]string, error)
	// Forget drops what the cache knows of tag: its container failed to
	// start with sandbox.ErrImageMissing.
	Forget(tag string)
}

var (
	_ Runner   = (*sandbox.Runner)(nil)
	_ Images   = (*sandbox.ImageCache)(nil)
	_ WarmPool = (*sandbox.Pool)(nil)
)

// Backend is the container runtime as the gateway drives it: the boundary
// to Podman. Tests give the gateway a fake one, so that the journal, retry,
// queue and lifecycle logic runs on a machine without Podman.
type Backend struct {
	Runner Runner
	Images Images
	// ProxyNetwork turns a task's network sandbox settings into the
	// provider its container is run with. The real one binds p to the
	// backend's *sandbox.Runner.
	ProxyNetwork func(p sandbox.ProxyNetwork) sandbox.NetworkProvider
	// WarmPool, when set, starts a pool of size warm network sandboxes
	// whose proxies run proxyImage (warmpool.go). nil: every task's network
	// sandbox starts cold.
	WarmPool func(proxyImage string, size int) WarmPool
}

// WarmPool is the pool of ready network sandboxes. *sandbox.Pool is the
// real one.
type WarmPool interface {
	DetachedProvider(task sandbox.ProxyNetwork, after func()) sandbox.NetworkProvider
	Stats() sandbox.PoolStats
	Resize(n int)
	Close(ctx context.Context)
}

// NewBackend is the real backend: cfg's container engine (podman unless
// container_command says docker), with its OCI runtime and ulimits, naming
// everything it creates after prefix. Per-task private files (the secrets
// for the proxy) live under stateDir, and the images it prunes are only
// those of this state directory's gateway.
func NewBackend(cfg *config.Config, prefix, stateDir string, logger *slog.Logger, clock func() time.Time) (*Backend, error) {
	rt, err := sandbox.NewRuntime(cfg.ContainerCommand, logger)
	if err != nil {
		return nil, err
	}
	rt.OCIRuntime = cfg.ContainerRuntime
	rt.Ulimits = cfg.ContainerUlimits
	run := sandbox.NewRunner(rt, prefix)
	run.StateDir = filepath.Join(stateDir, "sandbox")
	cache := sandbox.NewImageCache(rt, prefix)
	cache.Instance = sandbox.InstanceID(stateDir)
	if clock != nil {
		cache.Now = clock
	}
	return &Backend{
		Runner: run,
		Images: cache,
		ProxyNetwork: func(p sandbox.ProxyNetwork) sandbox.NetworkProvider {
			p.Runner = run
			return &p
		},
		WarmPool: func(proxyImage string, size int) WarmPool {
			return sandbox.NewPool(sandbox.ProxyNetwork{Runner: run, ProxyImage: proxyImage}, size)
		},
	}, nil
}

func (b *Backend) check() error {
	if b.Runner == nil || b.Images == nil || b.ProxyNetwork == nil {
		return fmt.Errorf("gateway: backend needs a Runner, Images and ProxyNetwork")
	}
	return nil
}
