package gateway

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/airut/airut/internal/agent"
	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/config"
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
	// delivered: reply was sent or refused for good; guarded by h.mu.
	delivered bool

	// The task's snapshot of the config and the runtime, taken when it
	// starts: a reload applies to the next task, never half of this one.
	cfg     *config.Config
	rc      *config.Repo
	backend *Backend
}

func (h *repoHandler) newJob(conv string, first *item) *job {
	ctx, cancel := context.WithCancelCause(h.jobCtx)
	j := &job{id: first.taskID, h: h, conv: conv, items: []*item{first}, ctx: ctx, cancel: cancel}
	h.g.mu.Lock()
	h.g.jobs[j.id] = j
	h.g.mu.Unlock()
	return j
}

// newDeliveryJob makes a job that only sends p, a reply journaled before a
// restart. It is not in g.jobs: there is no task to cancel.
func (h *repoHandler) newDeliveryJob(conv string, first *item, p *pendingReply) *job {
	ctx, cancel := context.WithCancelCause(h.jobCtx)
	return &job{id: p.Task, h: h, conv: conv, items: []*item{first}, ctx: ctx, cancel: cancel, reply: p}
}

func (j *job) forget() {
	j.h.g.mu.Lock()
	delete(j.h.g.jobs, j.id)
	j.h.g.mu.Unlock()
	j.cancel(nil)
}

// abandon drops a job that will not run before the repo stops; its
// messages stay at their source and run again after the restart.
func (j *job) abandon() {
	j.forget()
	j.h.mu.Lock()
	items := append([]*item(nil), j.items...)
	j.h.mu.Unlock()
	for _, it := range items {
		j.h.g.tracker.update(it.taskID, func(ti *TaskInfo) {
			if ti.State != StateCoalesced {
				ti.State, ti.Finished = StateAbandoned, j.h.g.now()
			}
		})
	}
}

// abandonAndFinish abandons j, the active job of its conversation, and
// lets the conversation go.
func (j *job) abandonAndFinish() {
	j.abandon()
	j.h.jobFinished(j)
}

func (j *job) snapshotItems() []*item {
	j.h.mu.Lock()
	defer j.h.mu.Unlock()
	return append([]*item(nil), j.items...)
}

// run runs the job; slot says it holds a worker, which it gives back as
// soon as the sandbox is done.
func (j *job) run(slot bool) {
	g, h := j.h.g, j.h
	defer h.jobFinished(j)
	var releaseOnce sync.Once
	release := func() {
		if slot {
			releaseOnce.Do(g.releaseSlot)
		}
	}
	defer release()
	log := h.log.With(logConv, j.conv, logTask, j.id)
	if j.reply != nil {
		// A reply composed before a restart: the task is not run again.
		log.Info("sending the reply of a task that finished before the restart")
		j.deliver(j.snapshotItems(), log)
		return
	}
	if h.draining.Load() || errors.Is(context.Cause(j.ctx), errShutdown) {
		j.abandon()
		return
	}

	// The item list is final: a job is started only once it is its
	// conversation's active job, and later messages form a new follow-up.
	items := j.snapshotItems()
	j.cfg, j.rc, j.backend = g.config(), h.repoConfig(), g.currentBackend()
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
		j.abandon()
		return
	}
	j.forget()
	j.finish(items, tr, log)
}

// finish records the task, stores its reply in the journal and sends it.
func (j *job) finish(items []*item, tr taskResult, log *slog.Logger) {
	g, h := j.h.g, j.h
	last := items[len(items)-1]
	var outbox, tooBig []string
	if tr.outcome != agent.OutcomeTimeout && tr.dir != nil {
		outbox, tooBig = outboxPlan(tr.dir, attachmentLimit(last.ch), log)
	}
	text := g.opts.Registry.Redact(replyText(tr) + tooBigNote(tooBig))
	j.record(items, tr, text)
	g.tracker.update(j.id, func(ti *TaskInfo) {
		ti.State, ti.Finished, ti.Outcome, ti.Reason = StateReplying, tr.finished, tr.outcome, tr.reason
		ti.Model, ti.Usage, ti.Cost = tr.model, tr.res.Usage, tr.res.CostUSD
	})
	log = log.With(logOutcome, string(tr.outcome))
	if tr.reason != "" {
		log = log.With(logReason, tr.reason)
	}
	log.Info("task finished", "cost_usd", tr.res.CostUSD, "attachments", len(outbox), "too_big", len(tooBig))

	p := &pendingReply{Task: j.id, Outcome: string(tr.outcome), Channel: last.ch.Name(), To: replyTarget(last.msg),
		Markdown: text, Outbox: outbox}
	if last.sub != nil {
		p.Deliver = last.sub.Deliver
	}
	for _, it := range items {
		p.Messages = append(p.Messages, messageRef{Key: it.key, Channel: it.ch.Name(), SourceID: it.msg.SourceID})
	}
	for _, it := range items {
		// Should this fail, a restart before the send runs the task again,
		// as it did before replies were journaled: not lost, only redone.
		if err := h.journal.update(it.key, func(e *journalEntry) { e.Reply, e.Outcome = p, p.Outcome }); err != nil {
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

// deliver sends j.reply, retrying transient failures with capped backoff
// until the channel accepts it or the repo drains (the reply is journaled:
// it is sent after the restart). A permanent failure is recorded and not
// retried. Only then are the messages marked replied (first), the outbox
// cleared (after: a crash between the two keeps the files, never sends
// the reply again without them) and the messages acknowledged at their
// source.
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
	dir, err := h.store.Open(j.conv)
	var atts []channel.Attachment
	var sent []string
	if err != nil && len(p.Outbox) > 0 {
		log.Warn("conversation gone; the reply goes without its attachments", logError, err)
	} else if err == nil {
		atts, sent = readOutbox(dir, p.Outbox, attachmentLimit(ch), log)
	}
	r := channel.Reply{ConversationID: j.conv, TaskID: p.Task, Outcome: channel.Outcome(p.Outcome), Markdown: p.Markdown, Attachments: atts}

	var failed error
	for attempt := 1; ; attempt++ {
		err := j.send(ch, to, p, r)
		if err == nil {
			break
		}
		g.tracker.update(p.Task, func(ti *TaskInfo) { ti.ReplyError = oneLine(err.Error()) })
		if channel.IsPermanent(err) {
			log.Error("reply refused permanently; it is not retried and the outbox is kept", logError, err)
			failed = err
			break
		}
		wait := backoff(g.timing.replyMin, g.timing.replyMax, attempt)
		log.Error("reply not sent; retrying", "attempt", attempt, "retry_in", wait, logError, err)
		if !sleepCtx(h.jobCtx, h.drainC, wait) {
			log.Info("repo stopping before the reply was sent; it is sent after the restart")
			return
		}
	}
	r.Attachments, atts = nil, nil // let the data go before the slow part

	recorded := true
	for _, m := range p.Messages {
		err := h.journal.update(m.Key, func(e *journalEntry) {
			e.Replied, e.Reply, e.Outcome = true, nil, p.Outcome
			if failed != nil {
				e.ReplyFailed = oneLine(failed.Error())
			}
		})
		if err != nil {
			recorded = false
			log.Warn("cannot record the reply; the outbox is kept", logSource, m.SourceID, logError, err)
		}
	}
	// Only once every message is durably "replied" may the attachments
	// go: until then a restart sends the journaled reply again, and it
	// must find them.
	if failed == nil && recorded && dir != nil && len(sent) > 0 {
		if err := dir.ClearOutbox(sent); err != nil {
			log.Warn("outbox not cleared", logError, err)
		}
	}
	h.mu.Lock()
	j.delivered = true
	all := append([]*item(nil), j.items...)
	h.mu.Unlock()
	g.tracker.update(p.Task, func(ti *TaskInfo) {
		ti.State = StateDone
		if failed == nil {
			ti.ReplyError = ""
		} else {
			ti.ReplyFailed = true
		}
	})
	if failed == nil {
		log.Info("reply sent", "attachments", len(sent))
	}
	seen := map[string]bool{}
	for _, it := range all {
		if seen[it.key] {
			continue
		}
		seen[it.key] = true
		h.finishSource(it.key, channel.Outcome(p.Outcome), it.sub != nil, log.With(logSource, it.msg.SourceID))
	}
}

// send hands the reply to the channel: into the thread of to, or as a new
// thread when the reply has a delivery (Submit).
func (j *job) send(ch channel.Channel, to *channel.Message, p *pendingReply, r channel.Reply) error {
	if p.Deliver == nil {
		return ch.Reply(j.h.jobCtx, to, r)
	}
	st, ok := ch.(channel.Starter)
	if !ok {
		return channel.Permanent(errors.New("channel " + ch.Name() + " cannot start a thread"))
	}
	return st.Send(j.h.jobCtx, p.Deliver.To, p.Deliver.Subject, j.conv, r)
}
