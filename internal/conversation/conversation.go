// Package conversation keeps each conversation's directory: its metadata in
// conversation.json, its event log, the folders mounted into the agent's
// container, and a lock that keeps two tasks of one conversation — in this
// process or another — from running at once.
//
// Layout, under <state>/<repo-id>/conversations/<id>/:
//
//	conversation.json     metadata, replaced atomically
//	events.jsonl          every stream-json event, append-only
//	network-sandbox.log   the proxy's log for this conversation
//	workspace/            the git clone the agent works in
//	claude/               Claude Code's session state (/root/.claude)
//	inbox/ outbox/ storage/
//	conversation.lock     flock target; never mounted
package conversation

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"
)

// File and folder names inside a conversation directory.
const (
	MetaFile       = "conversation.json"
	EventsFile     = "events.jsonl"
	NetworkLogFile = "network-sandbox.log"
	WorkspaceDir   = "workspace"
	ClaudeDir      = "claude"
	InboxDir       = "inbox"
	OutboxDir      = "outbox"
	StorageDir     = "storage"
	lockFile       = "conversation.lock"
)

var subdirs = []string{WorkspaceDir, ClaudeDir, InboxDir, OutboxDir, StorageDir}

// Sentinel errors.
var (
	ErrNotFound = errors.New("conversation not found")
	ErrLocked   = errors.New("conversation is locked by a running task")
	ErrBadID    = errors.New("invalid conversation id")
)

// Record is the content of conversation.json.
type Record struct {
	ID      string `json:"id"`
	Repo    string `json:"repo"`
	Channel string `json:"channel"`
	// ThreadKeys are the channel's ways to find this conversation again
	// (Message-IDs, Slack channel and thread ts).
	ThreadKeys map[string]string `json:"thread_keys,omitempty"`
	// SessionID is Claude's session to --resume; "" before the first run
	// or after a session was given up.
	SessionID string    `json:"session_id,omitempty"`
	Model     string    `json:"model,omitempty"`
	Created   time.Time `json:"created"`
	Updated   time.Time `json:"updated"`
	Tasks     []Task    `json:"tasks"`
}

// Task is one inbound message's run, or a message merged into another's.
type Task struct {
	ID       string    `json:"id"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	// Outcome is one of agent's outcomes, or "coalesced".
	Outcome  string  `json:"outcome,omitempty"`
	Model    string  `json:"model,omitempty"`
	Usage    Usage   `json:"usage,omitzero"`
	Cost     float64 `json:"cost"` // USD
	NumTurns int     `json:"num_turns"`
	Sender   string  `json:"sender,omitempty"`
	// CoalescedInto is the task that ran this task's message.
	CoalescedInto string `json:"coalesced_into,omitempty"`
	// Reply is the reply text as sent (the gateway may shorten it), kept
	// so a fresh session can be told where the conversation was.
	Reply string `json:"reply,omitempty"`
	// Stderr is the last lines the agent wrote to its standard error,
	// redacted, for diagnosing a failed run after the fact.
	Stderr []string `json:"stderr,omitempty"`
	// Message is the inbound message's text, redacted (the dashboard's
	// conversation page shows it).
	Message string `json:"message,omitempty"`
	// EventsFrom and EventsTo are the byte range of events.jsonl that the
	// task's runs wrote, so its transcript can be read on its own.
	EventsFrom int64 `json:"events_from,omitempty"`
	EventsTo   int64 `json:"events_to,omitempty"`
}

// Usage is a run's token usage.
type Usage struct {
	InputTokens              int64 `json:"input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
}

// LastReply returns the most recent non-empty task reply, or "".
func (r *Record) LastReply() string {
	for i := len(r.Tasks) - 1; i >= 0; i-- {
		if r.Tasks[i].Reply != "" {
			return r.Tasks[i].Reply
		}
	}
	return ""
}

func readRecord(path string) (*Record, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("read %s: %w", path, ErrNotFound)
		}
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return &r, nil
}
