package sandbox

import (
	"context"
	"fmt"
	"sync"
)

// Prestarted is a network sandbox started ahead of its Run, for a caller
// that knows the task's configuration before its image is ready (the
// airut-sandbox CLI): the network is created and the proxy started with
// its claim while the caller checks or builds images, and the agent's
// container starts beside the proxy's.
type Prestarted struct {
	p       *ProxyNetwork
	done    chan struct{}
	sp      *spare
	err     error
	setupMu sync.Mutex
	used    bool
}

var _ NetworkProvider = (*Prestarted)(nil)

// Prestart starts the task's network sandbox in the background. The
// result's Setup (called by Run) finishes it; a caller that never runs it
// must call Discard. contextID names the proxy container like a Run's.
// image, when not nil, looks the proxy image up (ImageCache.EnsureProxy)
// while the networks are created, and sets p.ProxyImage; otherwise
// p.ProxyImage must be set.
func (p *ProxyNetwork) Prestart(ctx context.Context, contextID string, image func(context.Context) (string, error)) *Prestarted {
	s := &Prestarted{p: p, done: make(chan struct{})}
	name := p.Runner.ContainerName(contextID)
	go func() {
		defer close(s.done)
		s.sp, s.err = p.newSpareImage(ctx, name, p, image)
	}()
	return s
}

// Setup waits for the background start (the networks created, the
// proxy's container starting); the TaskNetwork's Ready waits for the
// proxy's readiness, so the image given to Run must have the Airut
// entrypoint (see Spec.Ready). It can be called once; the name Run gives
// is not used (the proxy was named at Prestart).
func (s *Prestarted) Setup(ctx context.Context, _ string) (*TaskNetwork, error) {
	s.setupMu.Lock()
	defer s.setupMu.Unlock()
	if s.used {
		return nil, fmt.Errorf("network sandbox: prestarted sandbox set up twice: %w", ErrInfrastructure)
	}
	s.used = true
	select {
	case <-s.done:
	case <-ctx.Done():
		go s.discard(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("network sandbox: %w: %w", ctx.Err(), ErrInfrastructure)
	}
	if s.err != nil {
		return nil, fmt.Errorf("network sandbox: %w: %w", s.err, ErrInfrastructure)
	}
	// The agent's container starts while the proxy comes up (the two
	// starts are most of a run's set-up): its command waits at the
	// entrypoint's gate until the proxy is ready (the CLI's images are
	// ImageCache's, which have the entrypoint).
	sp := s.sp
	tn := sp.taskNetwork()
	tn.Ready = func(ctx context.Context) error {
		if err := sp.ready(ctx); err != nil {
			return fmt.Errorf("network sandbox: %w", err)
		}
		return nil
	}
	return tn, nil
}

// Discard tears the sandbox down if Setup was never called; after Setup it
// does nothing (the TaskNetwork's teardown is Run's).
func (s *Prestarted) Discard(ctx context.Context) {
	s.setupMu.Lock()
	used := s.used
	s.used = true
	s.setupMu.Unlock()
	if !used {
		s.discard(ctx)
	}
}

func (s *Prestarted) discard(ctx context.Context) {
	<-s.done
	if s.err == nil {
		s.sp.undo.unwind(ctx)
	}
}
