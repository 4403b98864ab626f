package gateway

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/airut/airut/internal/agent"
	"github.com/airut/airut/internal/channel"
)

// job is one task: the first message's task id and every message
// coalesced into it, run together in one conversation.
type job struct {
	id     string
	h      *repoHandler
	conv   string
	items  []*item // guarded by h.mu until the job starts
	ctx    context.Context
	cancel context.CancelCauseFunc
	// reply is the job's reply once composed. A job created with one (a
	// reply journaled before a restart) only sends it.
	reply *pendingReply
	// delivered: reply was sent; guarded by h.mu.
	delivered bool
}

func (h *repoHandler) newJob(conv string, first *item) *job {
	ctx, cancel := context.WithCancelCause(h.workCtx)
	j := &job{id: first.taskID, h: h, conv: conv, items: []*item{first}, ctx: ctx, cancel: cancel}
	h.g.mu.Lock()
	h.g.jobs[j.id] = j
	h.g.mu.Unlock()
	return j
}

// newDeliveryJob makes a job that only sends p, a reply journaled before a
// restart. It is not in g.jobs: there is no task to cancel.
func (h *repoHandler) newDeliveryJob(conv string, first *item, p *pendingReply) *job {
	ctx, cancel := context.WithCancelCause(h.workCtx)
	return &job{id: p.Task, h: h, conv: conv, items: []*item{first}, ctx: ctx, cancel: cancel, reply: p}
}

func (g *Gateway) isStopping() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stopping
}

// startJob runs j in its own goroutine, unless the gateway is stopping:
// then the job is abandoned and its messages stay at their source.
func (g *Gateway) startJob(j *job) {
	g.mu.Lock()
	if g.stopping {
		g.mu.Unlock()
		j.abandon()
		return
	}
	g.running.Add(1)
	g.mu.Unlock()
	go func() {
		defer g.running.Done()
		j.run()
	}()
}

func (j *job) forget() {
	j.h.g.mu.Lock()
	delete(j.h.g.jobs, j.id)
	j.h.g.mu.Unlock()
	j.cancel(nil)
}

// abandon drops a job that will not run before the shutdown; its messages
// run again after the restart.
func (j *job) abandon() {
	j.forget()
	j.h.mu.Lock()
	items := append([]*item(nil), j.items...)
	j.h.mu.Unlock()
	for _, it := range items {
		j.h.g.tracker.update(it.taskID, func(ti *TaskInfo) {
			if ti.State != StateCoalesced {
				ti.State = StateAbandoned
			}
		})
	}
}

func (j *job) run() {
	g, h := j.h.g, j.h
	defer h.jobFinished(j)
	log := h.log.With(logConv, j.conv, logTask, j.id)
	if j.reply != nil {
		// A reply composed before a restart: the task is not run again.
		h.mu.Lock()
		items := append([]*item(nil), j.items...)
		h.mu.Unlock()
		log.Info("sending the reply of a task that finished before the restart")
		j.deliver(items, log)
		return
	}

	// The acknowledgement goes out before the task waits for a worker, so
	// the user knows at once that the message arrived.
	h.mu.Lock()
	items := append([]*item(nil), j.items...)
	h.mu.Unlock()
	for _, it := range items {
		if !it.needAck {
			continue
		}
		if err := it.ch.Acknowledge(h.workCtx, it.msg, j.conv); err != nil {
			log.Warn("acknowledgement not sent", logError, err)
			continue
		}
		if err := h.journal.update(it.ch.Name(), it.msg.SourceID, func(e *journalEntry) { e.Acknowledged = true }); err != nil {
			log.Warn("cannot record the acknowledgement", logError, err)
		}
	}

	acquired := false
	select {
	case g.sem <- struct{}{}:
		acquired = true
	case <-j.ctx.Done():
		// Cancelled while queued: execute sees the cancelled context and
		// the reply says the task was stopped; no container runs.
	case <-g.stopC:
	}
	if g.isStopping() || errors.Is(context.Cause(j.ctx), errShutdown) {
		if acquired {
			<-g.sem
		}
		j.abandon()
		return
	}
	// The worker slot is for the sandbox only: a reply that keeps failing
	// must not hold up other conversations.
	var releaseOnce sync.Once
	release := func() {
		if acquired {
			releaseOnce.Do(func() { <-g.sem })
		}
	}
	defer release()

	// The item list is final: a job is started only once it is its
	// conversation's active job, and later messages form a new follow-up.
	start := g.now()
	g.tracker.update(j.id, func(ti *TaskInfo) { ti.State, ti.Started = StateRunning, start })
	log.Info("task started", "messages", len(items))
	tr := j.execute(items, log)
	// The task is over when the sandbox is: sending the reply is not part
	// of it, and may take long when the channel fails.
	tr.finished = g.now()
	release()
	if errors.Is(context.Cause(j.ctx), errShutdown) && tr.outcome == agent.OutcomeCancelled {
		log.Info("task stopped by the shutdown; its messages stay at the source")
		j.forget()
		g.tracker.update(j.id, func(ti *TaskInfo) { ti.State, ti.Finished = StateAbandoned, g.now() })
		return
	}
	j.forget()
	j.finish(items, tr, log)
}

// finish records the task, stores its reply in the journal and sends it.
func (j *job) finish(items []*item, tr taskResult, log *slog.Logger) {
	g, h := j.h.g, j.h
	last := items[len(items)-1]
	text := g.opts.Registry.Redact(replyText(tr))
	var outbox []string
	if tr.outcome != agent.OutcomeTimeout && tr.dir != nil {
		outbox = outboxNames(tr.dir, log)
	}
	j.record(items, tr, text)
	g.tracker.update(j.id, func(ti *TaskInfo) {
		ti.State, ti.Finished, ti.Outcome, ti.Reason = StateReplying, tr.finished, tr.outcome, tr.reason
		ti.Model, ti.Usage, ti.Cost = tr.model, tr.res.Usage, tr.res.CostUSD
	})
	log = log.With(logOutcome, string(tr.outcome))
	if tr.reason != "" {
		log = log.With(logReason, tr.reason)
	}
	log.Info("task finished", "cost_usd", tr.res.CostUSD, "attachments", len(outbox))

	p := &pendingReply{Task: j.id, Outcome: string(tr.outcome), Channel: last.ch.Name(), To: replyTarget(last.msg),
		Markdown: text, Outbox: outbox}
	for _, it := range items {
		p.Messages = append(p.Messages, messageRef{Channel: it.ch.Name(), SourceID: it.msg.SourceID})
	}
	for _, it := range items {
		// Should this fail, a restart before the send runs the task again,
		// as it did before replies were journaled: not lost, only redone.
		if err := h.journal.update(it.ch.Name(), it.msg.SourceID, func(e *journalEntry) { e.Reply = p }); err != nil {
			log.Warn("cannot record the reply before sending it", logError, err)
		}
	}
	j.reply = p
	j.deliver(items, log)
}

// replyTarget keeps what a channel needs to thread a reply to msg.
func replyTarget(msg *channel.Message) channel.Message {
	c := *msg
	c.Body, c.Attachments = "", nil
	return c
}

// deliver sends j.reply, retrying with capped backoff until the channel
// accepts it or the gateway stops; a stopped delivery is resumed from the
// journal after the restart. Only a sent reply clears the outbox, marks the
// messages replied and acknowledges them at their source.
func (j *job) deliver(items []*item, log *slog.Logger) {
	h, g, p := j.h, j.h.g, j.reply
	ch := h.channel(p.Channel)
	if ch == nil {
		ch = items[0].ch
	}
	to := &p.To
	for _, it := range items {
		if it.ch.Name() == p.Channel && it.msg.SourceID == p.To.SourceID {
			to = it.msg // the live message: the source's freshest view
		}
	}
	var atts []channel.Attachment
	var sent []string
	dir, err := h.store.Open(j.conv)
	if err != nil && len(p.Outbox) > 0 {
		log.Warn("conversation gone; the reply goes without its attachments", logError, err)
	} else if err == nil {
		atts, sent = readOutbox(dir, p.Outbox, log)
	}

	for attempt := 1; ; attempt++ {
		err := ch.Reply(h.workCtx, to, channel.Reply{ConversationID: j.conv, Markdown: p.Markdown, Attachments: atts})
		if err == nil {
			break
		}
		wait := backoff(g.replyRetryMin, g.replyRetryMax, attempt)
		log.Error("reply not sent; retrying", "attempt", attempt, "retry_in", wait, logError, err)
		g.tracker.update(p.Task, func(ti *TaskInfo) { ti.ReplyError = err.Error() })
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-g.stopC:
			t.Stop()
			log.Info("shutting down before the reply was sent; it is sent after the restart")
			return
		}
	}

	if dir != nil && len(sent) > 0 {
		if err := dir.ClearOutbox(sent); err != nil {
			log.Warn("outbox not cleared", logError, err)
		}
	}
	for _, m := range p.Messages {
		if err := h.journal.update(m.Channel, m.SourceID, func(e *journalEntry) { e.Replied, e.Reply = true, nil }); err != nil {
			log.Warn("cannot record the reply", logSource, m.SourceID, logError, err)
		}
	}
	h.mu.Lock()
	j.delivered = true
	all := append([]*item(nil), j.items...)
	h.mu.Unlock()
	g.tracker.update(p.Task, func(ti *TaskInfo) { ti.State, ti.ReplyError = StateDone, "" })
	log.Info("reply sent", "attachments", len(atts))
	for _, it := range all {
		h.finishSource(it.ch, it.msg, log.With(logSource, it.msg.SourceID))
	}
}
