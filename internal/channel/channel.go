// Package channel defines what the gateway needs from a messaging channel
// (email, Slack): inbound messages already authenticated and authorized,
// replies back into the same thread, and acknowledgement at the source.
//
// A channel knows nothing of containers or conversations on disk; it maps a
// thread to a conversation id and back, and nothing more.
package channel

import (
	"context"
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
	// it can be acknowledged once its reply has been sent.
	SourceID string
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

// Reply is what goes back into a thread.
type Reply struct {
	ConversationID string
	Markdown       string
	Attachments    []Attachment
}

// Handler receives every authorized message. It is called from the channel's
// receive loop; it must not block for the duration of a task.
type Handler func(ctx context.Context, msg *Message)

// Channel is one protocol's connection for one repository.
type Channel interface {
	// Name is the channel kind: "email" or "slack".
	Name() string
	// Run receives messages until ctx ends, reconnecting on its own.
	Run(ctx context.Context, h Handler) error
	// Acknowledge tells the sender that work has started on a new
	// conversation (email: a short reply; Slack: a reaction).
	Acknowledge(ctx context.Context, msg *Message, conversationID string) error
	// Reply sends the final reply into msg's thread.
	Reply(ctx context.Context, msg *Message, r Reply) error
	// Done acknowledges msg at its source (IMAP delete+expunge, Slack
	// reaction swap). Called only after Reply succeeded or the failure was
	// reported, so a crash before it leaves the message to be redone.
	Done(ctx context.Context, msg *Message) error
}

// Prober is implemented by channels that can check, on their own, that
// they reach their service and that its credentials are accepted. It is
// optional: Channel stays as it is, and the gateway probes only channels
// that implement it.
type Prober interface {
	// Probe connects and logs in once (email: IMAP login, SMTP
	// connection and authentication) and returns why that failed, or nil
	// when the channel could receive and reply now. It must honour ctx and
	// must not disturb a Run in progress.
	Probe(ctx context.Context) error
}
