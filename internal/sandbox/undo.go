package sandbox

import (
	"context"
	"time"
)

// teardownTimeout bounds every teardown: the caller's context may already
// be cancelled, and a teardown that cannot finish must still return.
const teardownTimeout = 60 * time.Second

// undoStack is set-up that can fail half-way (STYLE rule 20): each step
// that creates something pushes its undo; a failure runs the stack in
// reverse, and a set-up that completes hands the stack over as its
// teardown. Nothing is ever called through a result that may be nil.
type undoStack struct {
	steps []func(context.Context)
}

// push records the undo of a step that has just succeeded.
func (u *undoStack) push(undo func(context.Context)) { u.steps = append(u.steps, undo) }

// unwind runs every undo, last first, each with a context of its own:
// the set-up's context is often the reason it failed, and a step that
// uses up its budget on a stalled engine (a network removal) must not
// leave the steps after it an expired context (the proxy's removal).
func (u *undoStack) unwind(ctx context.Context) {
	steps := u.steps
	u.steps = nil
	for i := len(steps) - 1; i >= 0; i-- {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), teardownTimeout)
		steps[i](c)
		cancel()
	}
}

// release empties the stack into a teardown that runs it once, however
// often it is called.
func (u *undoStack) release() func(context.Context) {
	rest := &undoStack{steps: u.steps}
	u.steps = nil
	return func(ctx context.Context) { rest.unwind(ctx) }
}
