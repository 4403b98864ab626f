package slack

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// threadsFile is the thread-to-conversation map in the state directory.
const threadsFile = "slack_threads.json"

// threadEntry is one thread's conversation.
type threadEntry struct {
	Conversation string    `json:"conversation"`
	Created      time.Time `json:"created"`
	Updated      time.Time `json:"updated"`
}

type threadsJSON struct {
	Threads map[string]threadEntry `json:"threads"`
}

// threadStore maps "channel:thread_ts" to a conversation, persisted on
// every change.
type threadStore struct {
	path string

	mu      sync.Mutex
	threads map[string]threadEntry
}

func openThreadStore(dir string) (*threadStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("slack thread store: %w", err)
	}
	s := &threadStore{path: filepath.Join(dir, threadsFile), threads: map[string]threadEntry{}}
	var f threadsJSON
	// An unreadable map is an error, not an empty one: that would fork
	// every thread into a new conversation without a word.
	if err := loadJSON(s.path, &f); err != nil {
		return nil, fmt.Errorf("slack thread store: %w", err)
	}
	if f.Threads != nil {
		s.threads = f.Threads
	}
	return s, nil
}

func (s *threadStore) get(key string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.threads[key]
	return e.Conversation, ok
}

// put records key → conv and writes the file before returning.
func (s *threadStore) put(key, conv string, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.threads[key]
	if ok && old.Conversation == conv {
		return nil
	}
	e := threadEntry{Conversation: conv, Created: now.UTC(), Updated: now.UTC()}
	if ok {
		e.Created = old.Created
	}
	s.threads[key] = e
	if err := saveJSON(s.path, threadsJSON{s.threads}); err != nil {
		if ok {
			s.threads[key] = old
		} else {
			delete(s.threads, key)
		}
		return fmt.Errorf("slack thread store: %w", err)
	}
	return nil
}

// loadJSON reads path into v; a missing file leaves v as it is.
func loadJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err == nil {
		err = json.Unmarshal(data, v)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// saveJSON replaces path with v as indented JSON.
func saveJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err == nil {
		err = writeFileAtomic(path, append(data, '\n'), 0o600)
	}
	return err
}

// writeFileAtomic replaces path with data through a temporary file and a
// rename, so a crash leaves the old map or the new one. (The same as
// internal/atomicfile, which DESIGN.md's import table does not open to
// channels.)
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(perm)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return err
}
