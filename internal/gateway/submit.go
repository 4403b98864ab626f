package gateway

import (
	"context"
	"errors"
	"fmt"

	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/conversation"
)

// Submission is a task started from outside a channel's receive loop: the
// dashboard's web channel, the scheduler.
type Submission struct {
	// Repo is the repository id. Required.
	Repo string
	// Conversation is the conversation to continue (its session is
	// resumed, its workspace reused); "" starts a new one.
	Conversation string
	// Channel names the repo's channel that answers: it gets the
	// acknowledgement (new conversations), the reply and the progress,
	// as for one of its own messages. Required.
	Channel string
	// Message is the message itself: SenderAddress, SenderName, Subject,
	// Body, Attachments, Model, Thread. The gateway sets SourceID, and
	// MessageID unless given (a caller that may submit the same thing
	// twice, like a form posted again, gives a stable one), Time unless
	// given, and ConversationID from Conversation.
	Message channel.Message
	// Deliver, when set, sends the reply as a new thread (channel.Starter:
	// email to an address for a scheduled run) instead of into the
	// message's thread; no acknowledgement is sent.
	Deliver *Delivery
	// Effort overrides the repo's effort for this task (a schedule's
	// effort); "" keeps the repo's.
	Effort string
}

// Delivery is where a submitted task's reply starts a new thread.
type Delivery struct {
	To      []string `json:"to"`
	Subject string   `json:"subject"`
}

// Submitted names what a submission became.
type Submitted struct {
	Conversation string
	// Task is the submission's own task id. When the conversation was
	// busy it may be pending or coalesced into another task (its
	// TaskInfo.CoalescedInto says which).
	Task string
}

// Submit errors, besides ErrUnknownRepo and ErrRepoNotLive.
var (
	ErrUnknownConversation = errors.New("no such conversation")
	ErrUnknownChannel      = errors.New("the repository has no such channel")
	ErrCannotStartThread   = errors.New("the channel cannot start a new thread")
	ErrNotTaken            = errors.New("the gateway could not take the task now")
)

// Submit starts a task for a repository exactly as if its message had come
// from one of the repository's channels: the same journal, the same
// queueing and coalescing per conversation, the same reply flow. It
// returns once the task is queued. A submitted message has no source that
// would hand it over again after a crash, so the journal keeps it (its
// attachments in the spool) and the gateway replays it when the repo
// starts. While a submission is in progress, another with the same
// MessageID is refused (ErrDuplicate).
func (g *Gateway) Submit(_ context.Context, s Submission) (Submitted, error) {
	h, err := g.liveHandler(s.Repo)
	if err != nil {
		return Submitted{}, err
	}
	ch := h.channel(s.Channel)
	if ch == nil {
		return Submitted{}, fmt.Errorf("%s: channel %q: %w", s.Repo, s.Channel, ErrUnknownChannel)
	}
	if s.Deliver != nil {
		if _, ok := ch.(channel.Starter); !ok {
			return Submitted{}, fmt.Errorf("channel %s: %w", s.Channel, ErrCannotStartThread)
		}
		if len(s.Deliver.To) == 0 {
			return Submitted{}, errors.New("gateway: a delivery needs a recipient")
		}
	}
	if s.Conversation != "" && !h.store.Exists(s.Conversation) {
		if !conversation.ValidID(s.Conversation) {
			return Submitted{}, fmt.Errorf("conversation %q: %w", s.Conversation, conversation.ErrBadID)
		}
		return Submitted{}, fmt.Errorf("%s: %w", s.Conversation, ErrUnknownConversation)
	}
	msg := s.Message
	msg.SourceID = "submit:" + newTaskID()
	if msg.MessageID == "" {
		msg.MessageID = msg.SourceID
	}
	if msg.Time.IsZero() {
		msg.Time = g.now().UTC()
	}
	msg.ConversationID = s.Conversation
	it, err := h.accept(ch, &msg, &submitted{Deliver: s.Deliver, Effort: s.Effort}, "")
	if err != nil {
		return Submitted{}, fmt.Errorf("%w: %w", ErrNotTaken, err)
	}
	if it == nil {
		// The same MessageID was submitted before: nothing new runs.
		return Submitted{}, fmt.Errorf("message %s: %w", msg.MessageID, ErrDuplicate)
	}
	ti, _ := g.tracker.get(it.taskID)
	return Submitted{Conversation: ti.Conversation, Task: it.taskID}, nil
}

// ErrDuplicate: a submission with that MessageID is already in progress
// or was answered.
var ErrDuplicate = errors.New("already submitted")

// replaySubmitted queues the Submit messages the journal holds that are
// not done yet: after a crash or a restart of the repo, nothing else would
// hand them over.
func (h *repoHandler) replaySubmitted() {
	entries, err := h.journal.submittedEntries()
	if err != nil {
		h.log.Error("some submitted messages cannot be read from the journal", logError, err)
	}
	for _, e := range entries {
		ch := h.channel(e.Channel)
		if ch == nil {
			h.log.Warn("submitted message waits for its channel, which the repo no longer has",
				logChannel, e.Channel, logConv, e.Conversation)
			continue
		}
		msg := e.Submitted.Message
		if _, err := h.accept(ch, &msg, e.Submitted, e.Key); err != nil {
			h.log.Warn("submitted message not replayed", logConv, e.Conversation, logError, err)
		}
	}
}
