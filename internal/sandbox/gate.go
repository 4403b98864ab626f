package sandbox

import (
	"context"
	"io"
	"maps"
	"os"
	"sync"
)

// outcomeNotReady is the run's internal ending when a Ready failed; the
// result says infrastructure.
const outcomeNotReady Outcome = "not-ready"

// gate holds a started container's command back until every Ready has
// returned (Spec.Ready): the command's input is a pipe whose first line,
// "go", the entrypoint waits for (GateEnv). A pipe of its own rather than
// a reader the engine client's exec copies: a client that exits before the
// gate opens must not wait for it.
type gate struct {
	r, w   *os.File
	stdin  io.Reader
	failed chan error
	done   chan struct{}
	once   sync.Once
}

// newGate makes spec's command wait: GateEnv in its environment, the
// gate's pipe as its input (the engine keeps it open, -i).
func newGate(spec *Spec) (*gate, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	g := &gate{r: r, w: w, stdin: spec.Stdin, failed: make(chan error, 1), done: make(chan struct{})}
	env := maps.Clone(spec.Env)
	if env == nil {
		env = map[string]string{}
	}
	env[GateEnv] = "1"
	spec.Env, spec.Stdin = env, r
	return g, nil
}

// open waits for readies in the background, all at once, and then lets
// the command go with its input, or closes the input on the first error
// (sent on failed). The engine client has its copy of the read end: ours
// is closed now.
func (g *gate) open(ctx context.Context, readies []func(context.Context) error) {
	g.r.Close()
	go func() {
		if err := allReady(ctx, readies); err != nil {
			g.failed <- err
			g.close()
			close(g.done)
			return
		}
		_, err := io.WriteString(g.w, "go\n")
		// done says the readies are over; the input's copy is not waited
		// for: an input that never ends (a pipe no one closes, which a
		// command that does not read leaves open) must not hold the run.
		// The run's close ends the copy's next write.
		close(g.done)
		if err != nil || g.stdin == nil {
			g.close()
			return
		}
		_, _ = io.Copy(g.w, g.stdin)
		g.close()
	}()
}

// close ends the command's input; a write blocked on a client that no
// longer reads returns.
func (g *gate) close() {
	g.once.Do(func() {
		g.w.Close()
		g.r.Close() // already closed once the gate is open
	})
}

// allReady runs every ready at once and returns the first error, once
// all have returned (the others are cancelled by it).
func allReady(ctx context.Context, readies []func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(readies))
	for _, ready := range readies {
		go func() { errs <- ready(ctx) }()
	}
	var first error
	for range readies {
		if err := <-errs; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}
