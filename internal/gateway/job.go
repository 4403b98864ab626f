package gateway

import (
	"context"
	"errors"
	"log/slog"

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
}

func (h *repoHandler) newJob(conv string, first *item) *job {
	ctx, cancel := context.WithCancelCause(h.workCtx)
	j := &job{id: first.taskID, h: h, conv: conv, items: []*item{first}, ctx: ctx, cancel: cancel}
	h.g.mu.Lock()
	h.g.jobs[j.id] = j
	h.g.mu.Unlock()
	return j
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
	if acquired {
		defer func() { <-g.sem }()
	}

	// The item list is final: a job is started only once it is its
	// conversation's active job, and later messages form a new follow-up.
	start := g.now()
	g.tracker.update(j.id, func(ti *TaskInfo) { ti.State, ti.Started = StateRunning, start })
	log.Info("task started", "messages", len(items))
	tr := j.execute(items, log)
	if errors.Is(context.Cause(j.ctx), errShutdown) && tr.outcome == agent.OutcomeCancelled {
		log.Info("task stopped by the shutdown; its messages stay at the source")
		j.forget()
		g.tracker.update(j.id, func(ti *TaskInfo) { ti.State, ti.Finished = StateAbandoned, g.now() })
		return
	}
	j.forget()
	j.finish(items, tr, log)
}

// finish records the task, replies, and acknowledges the messages at their
// source once the reply is out.
func (j *job) finish(items []*item, tr taskResult, log *slog.Logger) {
	g, h := j.h.g, j.h
	last := items[len(items)-1]
	text := g.opts.Registry.Redact(replyText(tr))
	var atts []channel.Attachment
	var sent []string
	if tr.outcome != agent.OutcomeTimeout && tr.dir != nil {
		atts, sent = outboxAttachments(tr.dir, log)
	}
	j.record(items, tr, text)
	g.tracker.update(j.id, func(ti *TaskInfo) {
		ti.State, ti.Finished, ti.Outcome, ti.Reason = StateDone, g.now(), tr.outcome, tr.reason
		ti.Model, ti.Usage, ti.Cost = tr.model, tr.res.Usage, tr.res.CostUSD
	})
	log = log.With(logOutcome, string(tr.outcome))
	if tr.reason != "" {
		log = log.With(logReason, tr.reason)
	}
	log.Info("task finished", "cost_usd", tr.res.CostUSD, "attachments", len(atts))

	err := last.ch.Reply(h.workCtx, last.msg, channel.Reply{ConversationID: j.conv, Markdown: text, Attachments: atts})
	if err != nil {
		// The messages stay at their source and in the journal as not
		// replied: after a restart the task runs again.
		log.Error("reply not sent", logError, err)
		return
	}
	if tr.dir != nil && len(sent) > 0 {
		if err := tr.dir.ClearOutbox(sent); err != nil {
			log.Warn("outbox not cleared", logError, err)
		}
	}
	for _, it := range items {
		if err := h.journal.update(it.ch.Name(), it.msg.SourceID, func(e *journalEntry) { e.Replied = true }); err != nil {
			log.Warn("cannot record the reply", logError, err)
		}
	}
	for _, it := range items {
		h.finishSource(it.ch, it.msg, log.With(logSource, it.msg.SourceID))
	}
}
