package gateway

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/airut/airut/internal/atomicfile"
	"github.com/airut/airut/internal/channel"
)

// journalEntry is what the gateway remembers of one message between its
// receipt and its acknowledgement at the source (see the package doc).
type journalEntry struct {
	// Key is the message's identity (messageKey): its channel, its
	// MessageID and a hash of its content, or its SourceID when the
	// channel gives no MessageID.
	Key       string `json:"key"`
	Channel   string `json:"channel"`
	MessageID string `json:"message_id,omitempty"`
	// SourceID is the source id the message was last handed over with.
	SourceID     string    `json:"source_id"`
	Conversation string    `json:"conversation"`
	Received     time.Time `json:"received"`
	// Acknowledged: the "working on it" note was sent.
	Acknowledged bool `json:"acknowledged,omitempty"`
	// Replied: the final reply was sent, or refused for good
	// (ReplyFailed); only Done remains.
	Replied bool `json:"replied,omitempty"`
	// Outcome is the outcome of the task that answered the message, for
	// a Done repeated after a restart.
	Outcome string `json:"outcome,omitempty"`
	// ReplyFailed is why the channel refused the reply permanently; the
	// reply is not retried, the outbox is kept.
	ReplyFailed string `json:"reply_failed,omitempty"`
	// Reply is the task's reply while it has not been sent: the task is
	// over, and after a restart only this reply is sent again.
	Reply *pendingReply `json:"reply,omitempty"`
	// Submitted is set for a message that came through Submit rather than
	// from a channel's source: nothing would hand it over again after a
	// restart, so the journal keeps the message itself and the gateway
	// replays it when the repo starts.
	Submitted *submitted `json:"submitted,omitempty"`
}

// submitted is a Submit message as the journal keeps it. Its attachments
// are in the spool, under the same key.
type submitted struct {
	Message channel.Message `json:"message"`
	Deliver *Delivery       `json:"deliver,omitempty"`
	Effort  string          `json:"effort,omitempty"`
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
	To channel.Message `json:"to"`
	// Deliver, when set, sends the reply as a new thread (Submit).
	Deliver  *Delivery `json:"deliver,omitempty"`
	Markdown string    `json:"markdown"`
	// Outbox names the files in the conversation's outbox to attach; they
	// are cleared only once the reply is sent.
	Outbox []string `json:"outbox,omitempty"`
	// Messages are every message the reply answers.
	Messages []messageRef `json:"messages"`
}

// messageRef names one message in the journal.
type messageRef struct {
	Key      string `json:"key"`
	Channel  string `json:"channel"`
	SourceID string `json:"source_id"`
}

// messageKey is a message's identity. Keying by the channel's MessageID
// recognises a message handed over again under a new SourceID; the content
// hash beside it keeps a different message that reuses a Message-ID (a
// broken client, or a sender trying to suppress a message) from passing
// for the first.
func messageKey(chName string, m *channel.Message) string {
	if m.MessageID == "" {
		return "src\x00" + chName + "\x00" + m.SourceID
	}
	h := sha256.New()
	field := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field(strings.ToLower(m.SenderAddress))
	field(m.Subject)
	field(m.Body)
	for _, a := range m.Attachments {
		field(a.Name)
		sum := sha256.Sum256(a.Data)
		field(string(sum[:]))
	}
	return "msg\x00" + chName + "\x00" + m.MessageID + "\x00" + hex.EncodeToString(h.Sum(nil)[:16])
}

// fileKey is a key as a file name: fixed length, any key.
func fileKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:20])
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

func (j *journal) path(key string) string {
	return filepath.Join(j.dir, fileKey(key)+".json")
}

// legacyPath is where journals before message identities kept the entry
// of a source id (hex of channel NUL source id).
func (j *journal) legacyPath(chName, sourceID string) string {
	return filepath.Join(j.dir, hex.EncodeToString([]byte(chName+"\x00"+sourceID))+".json")
}

func readEntry(path string) (*journalEntry, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("message journal: %w", err)
	}
	var e journalEntry
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("message journal %s: %w", path, err)
	}
	return &e, nil
}

func (j *journal) get(key string) (*journalEntry, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return readEntry(j.path(key))
}

// lookup finds the entry of a message handed over now: by its key, else
// under its source id in a journal written before keys existed (the entry
// is then moved to its key, so an upgrade never runs a message twice).
func (j *journal) lookup(key, chName, sourceID string) (*journalEntry, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	e, err := readEntry(j.path(key))
	if e != nil || err != nil {
		return e, err
	}
	old := j.legacyPath(chName, sourceID)
	e, err = readEntry(old)
	if e == nil || err != nil {
		return e, err
	}
	e.Key = key
	if e.Reply != nil {
		// Entries of that time named their messages by source id only:
		// the other messages of the reply are found by the same move.
		for i := range e.Reply.Messages {
			if e.Reply.Messages[i].Key == "" && e.Reply.Messages[i].SourceID == sourceID {
				e.Reply.Messages[i].Key = key
			}
		}
	}
	if err := j.write(e); err != nil {
		return nil, err
	}
	if err := os.Remove(old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("message journal: %w", err)
	}
	return e, nil
}

func (j *journal) put(e *journalEntry) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.write(e)
}

func (j *journal) write(e *journalEntry) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(j.path(e.Key), data, 0o600); err != nil {
		return fmt.Errorf("message journal: %w", err)
	}
	return nil
}

// update applies fn to the entry of key, if there is one, and saves it.
func (j *journal) update(key string, fn func(*journalEntry)) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	e, err := readEntry(j.path(key))
	if err != nil || e == nil {
		return err
	}
	fn(e)
	return j.write(e)
}

func (j *journal) remove(key string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := os.Remove(j.path(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("message journal: %w", err)
	}
	return nil
}

// entries returns every readable entry; unreadable ones are reported.
func (j *journal) entries() ([]*journalEntry, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	files, err := os.ReadDir(j.dir)
	if err != nil {
		return nil, fmt.Errorf("message journal: %w", err)
	}
	var out []*journalEntry
	var errs []error
	for _, f := range files {
		if !strings.HasSuffix(f.Name(), ".json") {
			continue
		}
		e, err := readEntry(filepath.Join(j.dir, f.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if e != nil {
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b *journalEntry) int { return a.Received.Compare(b.Received) })
	return out, errors.Join(errs...)
}

// submittedEntries returns the entries of Submit messages, oldest first,
// for replay at start. Unreadable entries are reported, not skipped
// silently.
func (j *journal) submittedEntries() ([]*journalEntry, error) {
	all, err := j.entries()
	var out []*journalEntry
	for _, e := range all {
		if e.Submitted != nil {
			out = append(out, e)
		}
	}
	return out, err
}
