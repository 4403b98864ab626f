// Package channel defines what the gateway needs from a messaging channel
// (email, Slack, the dashboard's web channel): inbound messages already
// authenticated and authorized, replies back into the same thread, and
// acknowledgement at the source.
//
// A channel knows nothing of containers or conversations on disk; it maps a
// thread to a conversation id and back, and nothing more.
//
// The contract in one place:
//
//   - Run hands every authorized message to the Handler. A nil return
//     means the gateway took the message: it stays "in flight" at the
//     channel until Done. An error means the gateway did not take it (its
//     journal was unreadable, the repo is draining): the channel forgets
//     that it handed it over and hands it over again on a later pass.
//   - Acknowledge, Reply and Done may be called after Run returned: a repo
//     that is drained for a restart finishes its running tasks with its
//     channels stopped.
//   - Reply and Done learn how the task ended (Outcome), so a channel can
//     show it (Slack swaps its 👀 reaction for ✅ or ❌).
//   - An error wrapping ErrPermanent says "asking again will not help"
//     (an SMTP 5xx, a message that no longer exists): the gateway records
//     it and stops retrying. Any other error is transient and retried.
//   - Optional interfaces add what only some channels can do: Prober,
//     Progresser, Starter, AttachmentLimiter.
package channel

import (
	"context"
	"errors"
	"time"
)

// Attachment is a file that arrived with a message or goes out with a reply.
type Attachment struct {
	Name string // base name, already decoded (RFC 2047 etc.)
	Data []byte
}

// Message is one inbound message that passed authentication and
// authorization. Channels drop everything else themselves.
type Message struct {
	// SourceID identifies the message at its source (IMAP UID, Slack ts) so
	// it can be acknowledged once its reply has been sent. It may change
	// when the source hands the same message over again (a new IMAP UID
	// after a server-side move, a re-delivery).
	SourceID string
	// MessageID is the message's stable identity, the same however often
	// and under whatever SourceID it is handed over: the email Message-ID
	// header, Slack's "channel:ts". The gateway keys its journal by it
	// (with a hash of the content), so a message seen again never runs
	// twice. "" when the source has none: SourceID is used instead.
	MessageID string
	// ConversationID is the conversation the thread maps to, or "" when the
	// message starts a new one.
	ConversationID string
	SenderAddress  string // alice@example.com, U123ABC
	SenderName     string // Alice
	Time           time.Time
	Subject        string // email only; "" elsewhere
	Body           string // text, quotes stripped
	Attachments    []Attachment
	// Model is a model hint from the message itself (email sub-addressing);
	// "" means the repository default.
	Model string
	// Thread carries channel-specific threading state (Message-ID,
	// References, Slack thread ts) that Reply needs; opaque to the gateway.
	Thread map[string]string
}

// Outcome is how a task ended, as the gateway's task record names it
// ("success", "error", "timeout", "cancelled", "infrastructure",
// "prompt_too_long", "session_lost", "auth_failed", …). Channels need only
// tell success from the rest; the name is for display.
type Outcome string

// OutcomeSuccess is the outcome of a task that finished its work.
const OutcomeSuccess Outcome = "success"

// Success reports whether the task finished its work.
func (o Outcome) Success() bool { return o == OutcomeSuccess }

// Reply is what goes back into a thread.
type Reply struct {
	ConversationID string
	// TaskID is the gateway's task that produced the reply (for links).
	TaskID      string
	Outcome     Outcome
	Markdown    string
	Attachments []Attachment
}

// Handler receives every authorized message. It is called from the channel's
// receive loop and returns quickly (it never waits for a task). A non-nil
// error means the message was not taken and must be handed over again
// later (see the package doc).
type Handler func(ctx context.Context, msg *Message) error

// Channel is one protocol's connection for one repository.
type Channel interface {
	// Name is the channel kind: "email", "slack" or "web".
	Name() string
	// Run receives messages until ctx ends, reconnecting on its own.
	Run(ctx context.Context, h Handler) error
	// Acknowledge tells the sender that work has started on a new
	// conversation (email: a short reply; Slack: a reaction).
	Acknowledge(ctx context.Context, msg *Message, conversationID string) error
	// Reply sends the final reply into msg's thread.
	Reply(ctx context.Context, msg *Message, r Reply) error
	// Done acknowledges msg at its source (IMAP delete+expunge, Slack
	// reaction swap to the outcome). Called only after Reply succeeded or
	// its failure was recorded, so a crash before it leaves the message to
	// be redone.
	Done(ctx context.Context, msg *Message, outcome Outcome) error
}

// ErrPermanent marks a channel error that retrying cannot cure: an SMTP 5xx
// reply, a thread that was deleted. Channels wrap it (Permanent); the
// gateway checks it with errors.Is.
var ErrPermanent = errors.New("permanent channel error")

// Permanent wraps err so that errors.Is(err, ErrPermanent) holds, keeping
// err's text and its own chain. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() []error {
	return []error{e.err, ErrPermanent}
}

// IsPermanent reports whether err says that retrying will not help.
func IsPermanent(err error) bool { return errors.Is(err, ErrPermanent) }

// Prober is implemented by channels that can check, on their own, that
// they reach their service and that its credentials are accepted.
type Prober interface {
	// Probe connects and logs in once (email: IMAP login, SMTP
	// connection and authentication) and returns why that failed, or nil
	// when the channel could receive and reply now. It must honour ctx and
	// must not disturb a Run in progress.
	Probe(ctx context.Context) error
}

// Phase is where a task stands, for channels that show it (Slack's
// assistant status is shown only while a task is being prepared).
type Phase string

// Phases of a task, in order.
const (
	// PhasePreparing: mirror fetch, workspace, image, network sandbox.
	PhasePreparing Phase = "preparing"
	// PhaseRunning: the agent runs.
	PhaseRunning Phase = "running"
)

// TodoStatus values of a Todo.
const (
	TodoPending    = "pending"
	TodoInProgress = "in_progress"
	TodoCompleted  = "completed"
)

// Todo is one item of the agent's todo list.
type Todo struct {
	Content string
	// Status is TodoPending, TodoInProgress or TodoCompleted.
	Status string
	// ActiveForm is the item in the present continuous ("Running the
	// tests"), shown while it is in progress; may be "".
	ActiveForm string
}

// Progress is a running task's state as a channel may show it.
type Progress struct {
	ConversationID string
	TaskID         string
	Phase          Phase
	// Todos is the agent's whole current todo list (not a delta).
	Todos []Todo
}

// Progresser is implemented by channels that show a task's progress in
// the thread (Slack: the plan message updated in place). The gateway calls
// it from one goroutine per task, with the latest state only: updates that
// arrive while a call is in progress are merged into the next call, so a
// slow channel never holds up the task. Rate limits (Slack: at most once a
// second) are the channel's own.
type Progresser interface {
	Progress(ctx context.Context, msg *Message, p Progress) error
}

// Starter is implemented by channels that can start a new thread, for
// results that answer no inbound message (scheduled tasks, S10). The new
// thread must carry conversationID so that a reply in it continues the
// conversation through the normal flow (email: Message-ID and the
// "[ID:…]" subject tag).
type Starter interface {
	Send(ctx context.Context, to []string, subject, conversationID string, r Reply) error
}

// AttachmentLimiter is implemented by channels whose replies can carry
// only so many bytes of attachments. Without it the gateway's default cap
// applies.
type AttachmentLimiter interface {
	// MaxAttachmentBytes is the total size of attachments one reply may
	// carry.
	MaxAttachmentBytes() int64
}
