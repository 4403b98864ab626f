package gateway

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/airut/airut/internal/atomicfile"
	"github.com/airut/airut/internal/channel"
)

// journalEntry is what the gateway remembers of one message between its
// receipt and its acknowledgement at the source (see the package doc).
type journalEntry struct {
	SourceID     string    `json:"source_id"`
	Channel      string    `json:"channel"`
	Conversation string    `json:"conversation"`
	Received     time.Time `json:"received"`
	// Acknowledged: the "working on it" note was sent.
	Acknowledged bool `json:"acknowledged,omitempty"`
	// Replied: the final reply was sent; only Done remains.
	Replied bool `json:"replied,omitempty"`
	// Reply is the task's reply while it has not been sent: the task is
	// over, and after a restart only this reply is sent again.
	Reply *pendingReply `json:"reply,omitempty"`
}

// pendingReply is a composed reply that the channel has not accepted yet.
// Every message the reply answers (more than one when messages were
// coalesced) carries the same copy, so whichever of them the source hands
// over first after a restart can send it.
type pendingReply struct {
	Task    string `json:"task"`
	Outcome string `json:"outcome"`
	Channel string `json:"channel"`
	// To is the message the reply goes to, without body and attachments:
	// what the channel needs to thread the reply.
	To       channel.Message `json:"to"`
	Markdown string          `json:"markdown"`
	// Outbox names the files in the conversation's outbox to attach; they
	// are cleared only once the reply is sent.
	Outbox []string `json:"outbox,omitempty"`
	// Messages are every message the reply answers.
	Messages []messageRef `json:"messages"`
}

// messageRef names one message at its source.
type messageRef struct {
	Channel  string `json:"channel"`
	SourceID string `json:"source_id"`
}

// journal keeps one file per message under dir, replaced atomically, and
// removes it once the source has acknowledged the message.
type journal struct {
	dir string
	mu  sync.Mutex
}

func openJournal(dir string) (*journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("message journal: %w", err)
	}
	return &journal{dir: dir}, nil
}

// path names the file of a source id; hex keeps any id (IMAP
// "validity:uid", Slack "C123/1700000000.0001") a safe file name.
func (j *journal) path(channel, sourceID string) string {
	return filepath.Join(j.dir, hex.EncodeToString([]byte(channel+"\x00"+sourceID))+".json")
}

func (j *journal) get(channel, sourceID string) (*journalEntry, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	data, err := os.ReadFile(j.path(channel, sourceID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("message journal: %w", err)
	}
	var e journalEntry
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("message journal %s: %w", j.path(channel, sourceID), err)
	}
	return &e, nil
}

func (j *journal) put(e *journalEntry) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	p := j.path(e.Channel, e.SourceID)
	if err := atomicfile.Write(p, data, 0o600); err != nil {
		return fmt.Errorf("message journal: %w", err)
	}
	return nil
}

// update applies fn to the entry of sourceID, if there is one, and saves it.
func (j *journal) update(channel, sourceID string, fn func(*journalEntry)) error {
	e, err := j.get(channel, sourceID)
	if err != nil || e == nil {
		return err
	}
	fn(e)
	return j.put(e)
}

func (j *journal) remove(channel, sourceID string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := os.Remove(j.path(channel, sourceID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("message journal: %w", err)
	}
	return nil
}
