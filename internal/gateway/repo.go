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

// repoHandler is one repository: mirror, conversations, channels and the
// per-conversation queues.
type repoHandler struct {
	g        *Gateway
	id       string
	rc       *config.Repo
	mirror   *gitmirror.Mirror
	store    *conversation.Store
	journal  *journal
	channels []channel.Channel
	log      *slog.Logger
	workCtx  context.Context

	// gcMu keeps garbage collection from removing a conversation between
	// a message being mapped to it and its job being queued: onMessage
	// holds it for reading, the collector for writing.
	gcMu sync.RWMutex

	mu sync.Mutex
	// inflight holds the messages handed to a job and not yet done at
	// their source: the dedupe set.
	inflight map[string]bool
	convs    map[string]*convQueue
	// deliveries are the jobs sending replies journaled before a restart,
	// by task id, kept after they are done so that a late message of the
	// same reply is only acknowledged.
	deliveries map[string]*job
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
	taskID  string
	ch      channel.Channel
	msg     *channel.Message
	needAck bool
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
	return &repoHandler{
		g:          g,
		id:         id,
		rc:         rc,
		mirror:     &gitmirror.Mirror{Dir: filepath.Join(root, "git-mirror"), URL: rc.RepoURL},
		store:      store,
		journal:    j,
		log:        g.log.With(logRepo, id),
		workCtx:    workCtx,
		inflight:   map[string]bool{},
		convs:      map[string]*convQueue{},
		deliveries: map[string]*job{},
	}, nil
}

// receive starts every channel's receive loop; they end with ctx.
func (h *repoHandler) receive(ctx context.Context, wg *sync.WaitGroup) {
	for _, ch := range h.channels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := ch.Run(ctx, func(_ context.Context, msg *channel.Message) { h.onMessage(ch, msg) })
			if err != nil {
				h.log.Error("channel stopped", "channel", ch.Name(), logError, err)
			}
		}()
	}
}

func inflightKey(ch channel.Channel, sourceID string) string { return ch.Name() + "\x00" + sourceID }

func (h *repoHandler) release(ch channel.Channel, sourceID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.inflight, inflightKey(ch, sourceID))
}

// onMessage dedupes msg, maps it to a conversation and queues it. It does
// not block for the duration of a task.
func (h *repoHandler) onMessage(ch channel.Channel, msg *channel.Message) {
	log := h.log.With("channel", ch.Name(), logSource, msg.SourceID)
	key := inflightKey(ch, msg.SourceID)
	h.mu.Lock()
	if h.inflight[key] {
		h.mu.Unlock()
		log.Info("message already in progress; ignoring the repeat")
		return
	}
	if h.g.isStopping() {
		h.mu.Unlock()
		return
	}
	h.inflight[key] = true
	h.mu.Unlock()

	entry, err := h.journal.get(ch.Name(), msg.SourceID)
	if err != nil {
		// Without the journal a repeat cannot be told from a new message;
		// leaving the message at its source is the safe side.
		log.Error("message journal unreadable; leaving the message for later", logError, err)
		return
	}
	if entry != nil && entry.Replied {
		log.Info("message was answered before a restart; acknowledging it at the source only", logConv, entry.Conversation)
		go h.finishSource(ch, msg, log)
		return
	}
	if entry != nil && entry.Reply != nil {
		h.queueDelivery(ch, msg, entry, log)
		return
	}

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
			return
		}
		conv = dir.ID
	}
	if entry == nil || entry.Conversation != conv {
		if entry == nil {
			entry = &journalEntry{SourceID: msg.SourceID, Channel: ch.Name(), Received: h.g.now().UTC()}
		}
		entry.Conversation, entry.Acknowledged = conv, false
		acked = false
		if err := h.journal.put(entry); err != nil {
			log.Error("cannot record the message; leaving it for later", logError, err)
			return
		}
	}

	it := &item{taskID: newTaskID(), ch: ch, msg: msg, needAck: msg.ConversationID == "" && !acked}
	h.g.tracker.add(TaskInfo{
		ID: it.taskID, Repo: h.id, Conversation: conv, Channel: ch.Name(), State: StateQueued,
		Sender: msg.SenderAddress, Subject: msg.Subject, Model: msg.Model, Queued: h.g.now(), Messages: 1,
	})
	log = log.With(logConv, conv, logTask, it.taskID)

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
		h.g.startJob(j)
		return
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
}

// queueDelivery queues the sending of a reply that was composed before a
// restart but not sent; the task does not run again.
func (h *repoHandler) queueDelivery(ch channel.Channel, msg *channel.Message, entry *journalEntry, log *slog.Logger) {
	p, conv := entry.Reply, entry.Conversation
	log = log.With(logConv, conv, logTask, p.Task)
	it := &item{taskID: p.Task, ch: ch, msg: msg}
	h.gcMu.RLock()
	defer h.gcMu.RUnlock()
	h.mu.Lock()
	if d := h.deliveries[p.Task]; d != nil {
		if d.delivered {
			// The journal read above predates the send.
			h.mu.Unlock()
			log.Info("reply already sent; acknowledging the message at the source only")
			go h.finishSource(ch, msg, log)
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
		Sender: msg.SenderAddress, Subject: msg.Subject, Queued: h.g.now(), Messages: len(p.Messages),
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
		h.g.startJob(j)
		return
	}
	q.deliveries = append(q.deliveries, j)
	h.mu.Unlock()
	log.Info("message was answered before a restart; its reply waits for the conversation's running task")
}

// jobFinished starts the conversation's next job, if any.
func (h *repoHandler) jobFinished(j *job) {
	h.mu.Lock()
	q := h.convs[j.conv]
	var next *job
	if q != nil && q.active == j {
		if len(q.deliveries) > 0 {
			q.active, q.deliveries = q.deliveries[0], q.deliveries[1:]
		} else {
			q.active, q.next = q.next, nil
		}
		next = q.active
		if next == nil {
			delete(h.convs, j.conv)
		}
	}
	h.mu.Unlock()
	if next != nil {
		if next.reply == nil {
			h.g.tracker.update(next.id, func(ti *TaskInfo) { ti.State = StateQueued })
		}
		h.g.startJob(next)
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

// finishSource acknowledges a message at its source and forgets it.
func (h *repoHandler) finishSource(ch channel.Channel, msg *channel.Message, log *slog.Logger) {
	if err := ch.Done(h.workCtx, msg); err != nil {
		// The journal says "replied", so after a restart only Done is
		// repeated; the message is not answered twice.
		log.Error("cannot acknowledge the message at its source", logError, err)
		return
	}
	if err := h.journal.remove(ch.Name(), msg.SourceID); err != nil {
		log.Warn("cannot remove the message from the journal", logError, err)
	}
	h.release(ch, msg.SourceID)
}

func newTaskID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
