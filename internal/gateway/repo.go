package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/airut/airut/internal/agent"
	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/conversation"
	"github.com/airut/airut/internal/gitmirror"
)

// Cancellation causes: a user's stop gets a reply, a shutdown does not.
var (
	errUserCancel = errors.New("stopped by a user")
	errShutdown   = errors.New("gateway shutting down")
)

// errNotTaken is what the handler tells a channel about a message it did
// not take: the channel hands it over again later.
var errNotTaken = errors.New("gateway: message not taken now; hand it over again later")

// repoHandler is one started repository: mirror, conversations, channels
// and the per-conversation queues. A restart makes a new one.
type repoHandler struct {
	g        *Gateway
	id       string
	mirror   *gitmirror.Mirror
	store    *conversation.Store
	journal  *journal
	spool    *spool
	channels []channel.Channel
	log      *slog.Logger

	// jobCtx parents every job; cancelJobs ends them (a drain that ran
	// out of time).
	jobCtx     context.Context
	cancelJobs context.CancelCauseFunc
	// lastImage is the task image the repo's last task started with: the
	// next task's container starts on it while its sandbox is prepared
	// (startEarly), and runs only if the preparation names it too.
	lastImage atomic.Pointer[string]
	// lastRead is what the last task read from .airut/ (readRepoConfig).
	lastRead atomic.Pointer[repoRead]
	// ws is the spare workspace for the next new conversation.
	ws workspaces
	// draining is set once the repo stops taking work; drainC is closed
	// then, which ends reply and Done retries (they resume after the
	// restart, from the journal).
	draining atomic.Bool
	drainC   chan struct{}
	// bg counts the handler's goroutines: jobs, acknowledgements, Done
	// retries.
	bg sync.WaitGroup

	// gcMu keeps garbage collection from removing a conversation between
	// a message being mapped to it and its job being queued: intake holds
	// it for reading, the collector for writing (briefly: it renames).
	gcMu sync.RWMutex

	mu sync.Mutex
	rc *config.Repo
	// inflight holds the messages taken and not yet done at their
	// source, by message key: the dedupe set. A message handed over again
	// under another source id while in flight is added to its sources, so
	// every copy is done at the source at the end.
	inflight map[string]*inflightMsg
	convs    map[string]*convQueue
	// deliveries are the jobs sending replies journaled before a restart,
	// by task id, kept after they are done so that a late message of the
	// same reply is only acknowledged.
	deliveries map[string]*job
	// changed is closed and replaced when a conversation queue goes away:
	// drain waits on it.
	changed chan struct{}
}

type inflightMsg struct {
	ch      channel.Channel
	sources []*channel.Message
}

// convQueue serialises one conversation: at most one job active (queued
// for a worker, running or sending its reply) and at most one pending
// follow-up, into which every later message is coalesced. Replies
// journaled before a restart are sent before the follow-up runs.
type convQueue struct {
	active     *job
	deliveries []*job
	next       *job
}

// item is one inbound message inside a job.
type item struct {
	taskID string
	ch     channel.Channel
	// msg is the message without its attachments: those are in atts, on
	// disk.
	msg     *channel.Message
	key     string
	atts    []spooled
	needAck bool
	// sub is set for a Submit message.
	sub *submitted
}

func newRepoHandler(g *Gateway, workCtx context.Context, id string, rc *config.Repo) (*repoHandler, error) {
	root := filepath.Join(g.opts.StateDir, id)
	store, err := conversation.NewStore(g.opts.StateDir, id)
	if err != nil {
		return nil, fmt.Errorf("conversation store: %w", err)
	}
	store.Now = g.now
	j, err := openJournal(filepath.Join(root, "messages"))
	if err != nil {
		return nil, err
	}
	jobCtx, cancel := context.WithCancelCause(workCtx)
	return &repoHandler{
		g:          g,
		id:         id,
		rc:         rc,
		mirror:     &gitmirror.Mirror{Dir: filepath.Join(root, "git-mirror"), URL: rc.RepoURL},
		store:      store,
		journal:    j,
		spool:      &spool{dir: filepath.Join(root, "spool")},
		log:        g.log.With(logRepo, id),
		jobCtx:     jobCtx,
		cancelJobs: cancel,
		drainC:     make(chan struct{}),
		inflight:   map[string]*inflightMsg{},
		convs:      map[string]*convQueue{},
		deliveries: map[string]*job{},
		changed:    make(chan struct{}),
	}, nil
}

func (h *repoHandler) repoConfig() *config.Repo {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rc
}

func (h *repoHandler) setRepoConfig(rc *config.Repo) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rc = rc
}

// receive starts every channel's receive loop; they end with ctx.
func (h *repoHandler) receive(ctx context.Context, wg *sync.WaitGroup) {
	for _, ch := range h.channels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := ch.Run(ctx, func(_ context.Context, msg *channel.Message) error {
				_, err := h.accept(ch, msg, nil, "")
				return err
			})
			if err != nil {
				h.log.Error("channel stopped", logChannel, ch.Name(), logError, err)
			}
		}()
	}
}

// drain stops taking work, abandons what waits for a worker (its messages
// stay at their source), and waits until the running tasks and their
// replies are done, or until ctx ends: then they are cancelled too.
func (h *repoHandler) drain(ctx context.Context) {
	if h.draining.Swap(true) {
		return
	}
	close(h.drainC)
	for _, j := range h.g.dropQueued(h) {
		j.abandonAndFinish()
	}
	if err := h.waitIdle(ctx); err != nil {
		h.log.Warn("drain timeout: cancelling the repo's running tasks")
		h.cancelJobs(errShutdown)
		_ = h.waitIdle(context.Background())
	}
	h.bg.Wait()
	h.removeSpareWorkspace()
	h.cancelJobs(nil)
}

// waitIdle waits until no conversation has a job.
func (h *repoHandler) waitIdle(ctx context.Context) error {
	for {
		h.mu.Lock()
		if len(h.convs) == 0 {
			h.mu.Unlock()
			return nil
		}
		c := h.changed
		h.mu.Unlock()
		select {
		case <-c:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// notifyLocked wakes waitIdle; h.mu is held.
func (h *repoHandler) notifyLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// release forgets an in-flight message that was not taken after all.
func (h *repoHandler) release(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.inflight, key)
}

// accept takes one message: dedupe by its identity, the journal's say on
// it, its conversation, the spool for its attachments, and its queue. It
// does not block for the duration of a task. A nil error means the
// message is taken until it is done at its source; otherwise it is not,
// and must be handed over again later. sub is set for Submit messages;
// key is the message's identity when known (a replay), else "".
func (h *repoHandler) accept(ch channel.Channel, msg *channel.Message, sub *submitted, key string) (*item, error) {
	if key == "" {
		key = messageKey(ch.Name(), msg)
	}
	log := h.log.With(logChannel, ch.Name(), logSource, msg.SourceID)
	h.mu.Lock()
	if h.draining.Load() {
		h.mu.Unlock()
		return nil, errNotTaken
	}
	if f := h.inflight[key]; f != nil {
		if !hasSource(f.sources, msg.SourceID) {
			// The same message under a new source id (a re-delivery): it
			// is done at the source with the first.
			f.sources = append(f.sources, stripped(msg))
			log.Info("message handed over again under another source id; it runs once")
		} else {
			log.Info("message already in progress; ignoring the repeat")
		}
		h.mu.Unlock()
		return nil, nil
	}
	h.inflight[key] = &inflightMsg{ch: ch, sources: []*channel.Message{stripped(msg)}}
	h.mu.Unlock()
	taken := false
	defer func() {
		if !taken {
			h.release(key)
		}
	}()

	entry, err := h.journal.lookup(key, ch.Name(), msg.SourceID)
	if err != nil {
		// Without the journal a repeat cannot be told from a new message;
		// leaving the message at its source is the safe side.
		log.Error("message journal unreadable; leaving the message for later", logError, err)
		return nil, errNotTaken
	}
	if entry != nil && entry.Replied {
		log.Info("message was answered before; acknowledging it at the source only", logConv, entry.Conversation)
		taken = true
		h.finishSource(key, channel.Outcome(entry.Outcome), entry.Submitted != nil, log)
		return nil, nil
	}
	if entry != nil && entry.Reply != nil {
		taken = true
		h.queueDelivery(ch, msg, key, entry, log)
		return nil, nil
	}

	atts, err := h.spool.put(key, msg.Attachments)
	if err != nil {
		log.Error("cannot keep the attachments; leaving the message for later", logError, err)
		return nil, errNotTaken
	}
	light := stripped(msg)

	// From the existence check to the queue, the collector must not remove
	// the conversation; once queued, it skips it.
	h.gcMu.RLock()
	defer h.gcMu.RUnlock()

	conv, acked := "", false
	switch {
	case entry != nil && h.store.Exists(entry.Conversation):
		conv, acked = entry.Conversation, entry.Acknowledged
		log.Info("message was accepted before a restart; running it again", logConv, conv)
	case msg.ConversationID != "" && h.store.Exists(msg.ConversationID):
		conv = msg.ConversationID
	}
	if conv == "" {
		dir, _, err := h.store.Create(ch.Name())
		if err != nil {
			log.Error("cannot create a conversation; leaving the message for later", logError, err)
			return nil, errNotTaken
		}
		conv = dir.ID
	}
	if entry == nil || entry.Conversation != conv || entry.SourceID != msg.SourceID {
		if entry == nil {
			entry = &journalEntry{Key: key, Channel: ch.Name(), MessageID: msg.MessageID, Received: h.g.now().UTC()}
			if sub != nil {
				s := *sub
				s.Message = *light
				entry.Submitted = &s
			}
		}
		if entry.Conversation != conv {
			entry.Conversation, entry.Acknowledged = conv, false
			acked = false
		}
		entry.SourceID = msg.SourceID
		if err := h.journal.put(entry); err != nil {
			log.Error("cannot record the message; leaving it for later", logError, err)
			return nil, errNotTaken
		}
	}
	if sub == nil && entry.Submitted != nil {
		sub = entry.Submitted
	}

	it := &item{taskID: newTaskID(), ch: ch, msg: light, key: key, atts: atts, sub: sub,
		needAck: msg.ConversationID == "" && !acked && (sub == nil || sub.Deliver == nil)}
	h.g.tracker.add(TaskInfo{
		ID: it.taskID, Repo: h.id, Conversation: conv, Channel: ch.Name(), State: StateQueued,
		Sender: msg.SenderAddress, SenderName: msg.SenderName, Subject: msg.Subject, Model: msg.Model, Queued: h.g.now(), Messages: 1,
	})
	log = log.With(logConv, conv, logTask, it.taskID)
	taken = true

	h.mu.Lock()
	q := h.convs[conv]
	if q == nil {
		q = &convQueue{}
		h.convs[conv] = q
	}
	switch {
	case q.active == nil:
		j := h.newJob(conv, it)
		q.active = j
		h.mu.Unlock()
		log.Info("task queued")
		h.activate(j)
		return it, nil
	case q.next == nil:
		q.next = h.newJob(conv, it)
		h.g.tracker.update(it.taskID, func(ti *TaskInfo) { ti.State = StatePending })
		log.Info("conversation busy; message waits as a follow-up")
	default:
		surv := q.next
		surv.items = append(surv.items, it)
		h.g.tracker.update(it.taskID, func(ti *TaskInfo) { ti.State, ti.CoalescedInto = StateCoalesced, surv.id })
		h.g.tracker.update(surv.id, func(ti *TaskInfo) { ti.Messages = len(surv.items) })
		log.Info("conversation busy; message coalesced into the pending follow-up", "into", surv.id)
	}
	h.mu.Unlock()
	return it, nil
}

// stripped is msg without its attachments (they are in the spool).
func stripped(msg *channel.Message) *channel.Message {
	c := *msg
	c.Attachments = nil
	return &c
}

func hasSource(ms []*channel.Message, sourceID string) bool {
	for _, m := range ms {
		if m.SourceID == sourceID {
			return true
		}
	}
	return false
}

// queueDelivery queues the sending of a reply that was composed before a
// restart but not sent; the task does not run again.
func (h *repoHandler) queueDelivery(ch channel.Channel, msg *channel.Message, key string, entry *journalEntry, log *slog.Logger) {
	p, conv := entry.Reply, entry.Conversation
	log = log.With(logConv, conv, logTask, p.Task)
	it := &item{taskID: p.Task, ch: ch, msg: stripped(msg), key: key, sub: entry.Submitted}
	h.gcMu.RLock()
	defer h.gcMu.RUnlock()
	h.mu.Lock()
	if d := h.deliveries[p.Task]; d != nil {
		if d.delivered {
			// The journal read above predates the send.
			h.mu.Unlock()
			log.Info("reply already sent; acknowledging the message at the source only")
			h.finishSource(key, channel.Outcome(p.Outcome), entry.Submitted != nil, log)
			return
		}
		d.items = append(d.items, it)
		h.mu.Unlock()
		log.Info("message waits for the reply that answers it")
		return
	}
	j := h.newDeliveryJob(conv, it, p)
	h.deliveries[p.Task] = j
	h.g.tracker.add(TaskInfo{
		ID: p.Task, Repo: h.id, Conversation: conv, Channel: ch.Name(), State: StateReplying,
		Sender: msg.SenderAddress, SenderName: msg.SenderName, Subject: msg.Subject, Queued: h.g.now(), Messages: len(p.Messages),
		Outcome: agent.Outcome(p.Outcome),
	})
	q := h.convs[conv]
	if q == nil {
		q = &convQueue{}
		h.convs[conv] = q
	}
	if q.active == nil {
		q.active = j
		h.mu.Unlock()
		log.Info("message was answered before a restart but the reply was not sent; sending it")
		h.activate(j)
		return
	}
	q.deliveries = append(q.deliveries, j)
	h.mu.Unlock()
	log.Info("message was answered before a restart; its reply waits for the conversation's running task")
}

// activate starts j, the active job of its conversation: a delivery is
// sent at once (it needs no worker); a task sends its acknowledgements
// and then waits in the pool's queue.
func (h *repoHandler) activate(j *job) {
	if j.reply != nil {
		h.bg.Add(1)
		go func() {
			defer h.bg.Done()
			j.run(false)
		}()
		return
	}
	h.mu.Lock()
	var acks []*item
	for _, it := range j.items {
		if it.needAck {
			acks = append(acks, it)
		}
	}
	h.mu.Unlock()
	if len(acks) == 0 {
		h.g.enqueue(j)
		return
	}
	// The acknowledgement goes out before the task waits for a worker, so
	// the user knows at once that the message arrived.
	h.bg.Add(1)
	go func() {
		defer h.bg.Done()
		log := h.log.With(logConv, j.conv, logTask, j.id)
		for _, it := range acks {
			if err := it.ch.Acknowledge(h.jobCtx, it.msg, j.conv); err != nil {
				log.Warn("acknowledgement not sent", logError, err)
				continue
			}
			if err := h.journal.update(it.key, func(e *journalEntry) { e.Acknowledged = true }); err != nil {
				log.Warn("cannot record the acknowledgement", logError, err)
			}
		}
		h.g.enqueue(j)
	}()
}

// jobFinished starts the conversation's next job, if any. While the repo
// drains, the next jobs are abandoned instead: their messages stay at
// their source and run after the restart, in order.
func (h *repoHandler) jobFinished(j *job) {
	h.mu.Lock()
	q := h.convs[j.conv]
	var next *job
	var drop []*job
	if q != nil && q.active == j {
		if h.draining.Load() {
			drop = append(drop, q.deliveries...)
			if q.next != nil {
				drop = append(drop, q.next)
			}
			q.active = nil
		} else if len(q.deliveries) > 0 {
			q.active, q.deliveries = q.deliveries[0], q.deliveries[1:]
		} else {
			q.active, q.next = q.next, nil
		}
		next = q.active
		if next == nil {
			delete(h.convs, j.conv)
			h.notifyLocked()
		}
	}
	h.mu.Unlock()
	for _, d := range drop {
		d.abandon()
	}
	if next != nil {
		if next.reply == nil {
			h.g.tracker.update(next.id, func(ti *TaskInfo) { ti.State = StateQueued })
		}
		h.activate(next)
	}
}

// channel returns the repo's channel called name, or nil.
func (h *repoHandler) channel(name string) channel.Channel {
	for _, ch := range h.channels {
		if ch.Name() == name {
			return ch
		}
	}
	return nil
}

// busy reports whether conv has a job queued, running or replying.
func (h *repoHandler) busy(conv string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.convs[conv] != nil
}

// finishSource acknowledges a message at its source (every source id it
// was handed over with), then forgets it: journal entry and spool. A Done
// that fails is retried with backoff until the repo drains (the journal
// says "replied", so after a restart only Done is repeated); one that
// fails permanently is logged and the message let go, so that the next
// hand-over tries again. A Submit message has no source: it is only
// forgotten.
func (h *repoHandler) finishSource(key string, outcome channel.Outcome, isSubmit bool, log *slog.Logger) {
	h.mu.Lock()
	f := h.inflight[key]
	h.mu.Unlock()
	forget := func() {
		if err := h.journal.remove(key); err != nil {
			log.Warn("cannot remove the message from the journal", logError, err)
		}
		if err := h.spool.remove(key); err != nil {
			log.Warn("cannot remove the message's attachments", logError, err)
		}
		h.release(key)
	}
	if f == nil || isSubmit {
		forget()
		return
	}
	pending := append([]*channel.Message(nil), f.sources...)
	try := func() (permanent error) {
		var left []*channel.Message
		for _, m := range pending {
			err := f.ch.Done(h.jobCtx, m, outcome)
			switch {
			case err == nil:
			case channel.IsPermanent(err):
				log.Error("message cannot be acknowledged at its source; giving up on it", logSource, m.SourceID, logError, err)
				permanent = err
			default:
				log.Warn("cannot acknowledge the message at its source; retrying", logSource, m.SourceID, logError, err)
				left = append(left, m)
			}
		}
		pending = left
		return permanent
	}
	if perm := try(); len(pending) == 0 {
		if perm != nil {
			h.release(key) // replied; the next hand-over only retries Done
			return
		}
		forget()
		return
	}
	h.bg.Add(1)
	go func() {
		defer h.bg.Done()
		for attempt := 1; len(pending) > 0; attempt++ {
			if !sleepCtx(h.jobCtx, h.drainC, backoff(h.g.timing.doneMin, h.g.timing.doneMax, attempt)) {
				return // the restart hands it over again; the journal says replied
			}
			if perm := try(); perm != nil && len(pending) == 0 {
				h.release(key)
				return
			}
		}
		forget()
	}()
}

func newTaskID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
