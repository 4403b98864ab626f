package gateway

import (
	"context"
	"log/slog"
	"sync"

	"github.com/airut/airut/internal/agent"
	"github.com/airut/airut/internal/channel"
)

// progress hands a running task's phase and todo list to the channel of
// its reply thread, when that channel is a channel.Progresser. One
// goroutine per task makes the calls, always with the latest state: what
// changes during a slow call is merged into the next, so the task never
// waits for the channel.
type progress struct {
	mu      sync.Mutex
	state   channel.Progress
	dirty   bool
	wake    chan struct{}
	done    chan struct{}
	stopped bool
}

// startProgress starts the progress pump of j; its methods are no-ops
// when the reply's channel shows no progress.
func (j *job) startProgress(items []*item, log *slog.Logger) *progress {
	last := items[len(items)-1]
	pr, ok := last.ch.(channel.Progresser)
	if !ok {
		return nil
	}
	p := &progress{
		state: channel.Progress{ConversationID: j.conv, TaskID: j.id, Phase: channel.PhasePreparing},
		dirty: true, wake: make(chan struct{}, 1), done: make(chan struct{}),
	}
	p.wake <- struct{}{}
	msg := last.msg
	ctx := j.h.jobCtx
	go func() {
		defer close(p.done)
		for range p.wake {
			p.mu.Lock()
			st, dirty, stopped := p.state, p.dirty, p.stopped
			st.Todos = append([]channel.Todo(nil), st.Todos...)
			p.dirty = false
			p.mu.Unlock()
			if dirty {
				cctx, cancel := context.WithTimeout(ctx, progressCallLimit)
				if err := pr.Progress(cctx, msg, st); err != nil {
					log.Warn("progress not shown in the thread", logError, err)
				}
				cancel()
			}
			if stopped {
				return
			}
		}
	}()
	return p
}

func (p *progress) update(fn func(*channel.Progress)) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	fn(&p.state)
	p.dirty = true
	select {
	case p.wake <- struct{}{}:
	default: // a wake-up is pending: it takes this state too
	}
}

func (p *progress) phase(ph channel.Phase) {
	p.update(func(s *channel.Progress) { s.Phase = ph })
}

func (p *progress) todos(todos []agent.Todo) {
	p.update(func(s *channel.Progress) {
		s.Todos = s.Todos[:0]
		for _, t := range todos {
			s.Todos = append(s.Todos, channel.Todo{Content: t.Content, Status: t.Status, ActiveForm: t.ActiveForm})
		}
	})
}

// stop sends the last state, if it was not sent yet, and waits for the
// pump: the thread shows the final list before the reply.
func (p *progress) stop() {
	if p == nil {
		return
	}
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	<-p.done
}
