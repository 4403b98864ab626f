package conversation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Store is the conversations of one repository.
type Store struct {
	// Root is <state>/<repo-id>/conversations.
	Root string
	// Repo is the repository id recorded in new conversations.
	Repo string
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// RemoveAll deletes a trashed conversation; os.RemoveAll when nil.
	// Injectable so a test can hold a deletion and watch what waits on it.
	RemoveAll func(path string) error

	mu      sync.Mutex
	entries map[string]*entry
}

// entry is the in-process state of one conversation.
type entry struct {
	sem    chan struct{} // held by the task that has the conversation lock
	meta   sync.Mutex    // read-modify-write of conversation.json
	events sync.Mutex    // appends to events.jsonl
}

// NewStore opens (creating if needed) the conversation store of repoID under
// stateDir.
func NewStore(stateDir, repoID string) (*Store, error) {
	if repoID == "" || repoID != filepath.Base(repoID) || repoID[0] == '.' {
		return nil, fmt.Errorf("conversation store: invalid repo id %q", repoID)
	}
	root := filepath.Join(stateDir, repoID, "conversations")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("conversation store: %w", err)
	}
	return &Store{Root: root, Repo: repoID}, nil
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func (s *Store) entry(id string) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.entries == nil {
		s.entries = map[string]*entry{}
	}
	e, ok := s.entries[id]
	if !ok {
		e = &entry{sem: make(chan struct{}, 1)}
		s.entries[id] = e
	}
	return e
}

// ValidID reports whether id has the shape of a conversation id: 8
// lowercase hex digits. Ids come from mail headers and Slack metadata, so
// anything else is refused before it touches a path.
func ValidID(id string) bool {
	if len(id) != 8 {
		return false
	}
	for _, c := range id {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func (s *Store) path(id string) string { return filepath.Join(s.Root, id) }

// Exists reports whether conversation id exists.
func (s *Store) Exists(id string) bool {
	if !ValidID(id) {
		return false
	}
	fi, err := os.Stat(s.path(id))
	return err == nil && fi.IsDir()
}

// NewID returns a fresh id that no conversation on disk uses. Create
// reserves it atomically; NewID alone is only a good guess.
func (s *Store) NewID() (string, error) {
	for range 100 {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("new conversation id: %w", err)
		}
		id := hex.EncodeToString(b[:])
		if _, err := os.Lstat(s.path(id)); errors.Is(err, os.ErrNotExist) {
			return id, nil
		}
	}
	return "", errors.New("new conversation id: no free id after 100 tries")
}

// Create makes a new conversation with its folders and conversation.json.
func (s *Store) Create(channel string) (*Dir, *Record, error) {
	for range 100 {
		id, err := s.NewID()
		if err != nil {
			return nil, nil, err
		}
		// Mkdir is the reservation: of two racing creators, one gets
		// EEXIST and draws again.
		if err := os.Mkdir(s.path(id), 0o755); err != nil {
			if errors.Is(err, os.ErrExist) {
				continue
			}
			return nil, nil, fmt.Errorf("create conversation: %w", err)
		}
		d := &Dir{ID: id, Path: s.path(id), store: s}
		for _, sub := range subdirs {
			if err := os.Mkdir(filepath.Join(d.Path, sub), 0o755); err != nil {
				return nil, nil, fmt.Errorf("create conversation %s: %w", id, err)
			}
		}
		now := s.now()
		rec := &Record{ID: id, Repo: s.Repo, Channel: channel, Created: now, Updated: now, Tasks: []Task{}}
		if err := d.write(rec); err != nil {
			return nil, nil, err
		}
		return d, rec, nil
	}
	return nil, nil, errors.New("create conversation: no free id")
}

// Open returns the directory of an existing conversation.
func (s *Store) Open(id string) (*Dir, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("open conversation %q: %w", id, ErrBadID)
	}
	if !s.Exists(id) {
		return nil, fmt.Errorf("open conversation %s: %w", id, ErrNotFound)
	}
	return &Dir{ID: id, Path: s.path(id), store: s}, nil
}

// List returns the ids of all conversations, sorted.
func (s *Store) List() ([]string, error) {
	entries, err := os.ReadDir(s.Root)
	if err != nil {
		return nil, fmt.Errorf("list conversations: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() && ValidID(e.Name()) {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// Lock is held by the one task running a conversation.
type Lock struct {
	e    *entry
	f    *os.File
	once sync.Once
}

// Unlock releases the lock; further calls do nothing.
func (l *Lock) Unlock() {
	l.once.Do(func() {
		_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
		l.f.Close()
		<-l.e.sem
	})
}

// lockPoll is how often Lock retries a lock held by another process; flock
// has no cancellable wait.
const lockPoll = 100 * time.Millisecond

// Lock waits until conversation id is free in this process and in every
// other one, or ctx ends.
func (s *Store) Lock(ctx context.Context, id string) (*Lock, error) {
	return s.lock(ctx, id, true)
}

// TryLock takes the conversation lock or fails at once with ErrLocked.
func (s *Store) TryLock(id string) (*Lock, error) {
	return s.lock(context.Background(), id, false)
}

func (s *Store) lock(ctx context.Context, id string, wait bool) (*Lock, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("lock conversation %q: %w", id, ErrBadID)
	}
	e := s.entry(id)
	if wait {
		select {
		case e.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("lock conversation %s: %w", id, ctx.Err())
		}
	} else {
		select {
		case e.sem <- struct{}{}:
		default:
			return nil, fmt.Errorf("lock conversation %s: %w", id, ErrLocked)
		}
	}
	l, err := s.flock(ctx, id, e, wait)
	if err != nil {
		<-e.sem
		return nil, err
	}
	return l, nil
}

func (s *Store) flock(ctx context.Context, id string, e *entry, wait bool) (*Lock, error) {
	path := filepath.Join(s.path(id), lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("lock conversation %s: %w", id, ErrNotFound)
		}
		return nil, fmt.Errorf("lock conversation %s: %w", id, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock conversation %s: %w", id, err)
		}
		if !wait {
			f.Close()
			return nil, fmt.Errorf("lock conversation %s: %w", id, ErrLocked)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock conversation %s: %w", id, ctx.Err())
		case <-time.After(lockPoll):
		}
	}
	// The holder we waited for may have been garbage collection removing
	// the conversation: then our file is an orphan, not the lock.
	held, err1 := f.Stat()
	onDisk, err2 := os.Stat(path)
	if err1 != nil || err2 != nil || !os.SameFile(held, onDisk) {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
		return nil, fmt.Errorf("lock conversation %s: %w", id, ErrNotFound)
	}
	return &Lock{e: e, f: f}, nil
}

// TrashDir is the store's trash, beside Root: conversations are moved
// there by Trash and deleted by EmptyTrash.
func (s *Store) TrashDir() string { return filepath.Join(filepath.Dir(s.Root), "trash") }

// TrashOlderThan moves into the trash the conversations last active more
// than age before now, except those keep reports and those a task holds
// (in this process or another). keep is asked at the moment of the move,
// one conversation at a time, so the caller can hold a lock that keeps
// new work from being mapped to a conversation while it goes. A rename is
// instant however large the workspace; EmptyTrash, which does the slow
// part, runs afterwards outside that lock. It returns the moved ids.
func (s *Store) TrashOlderThan(age time.Duration, now time.Time, keep func(id string) bool) ([]string, error) {
	ids, err := s.List()
	if err != nil {
		return nil, err
	}
	var moved []string
	var errs []error
	for _, id := range ids {
		updated, err := s.LastActivity(id)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		if now.Sub(updated) <= age || (keep != nil && keep(id)) {
			continue
		}
		switch err := s.Trash(id); {
		case err == nil:
			moved = append(moved, id)
		case errors.Is(err, ErrLocked), errors.Is(err, ErrNotFound):
		default:
			errs = append(errs, err)
		}
	}
	return moved, errors.Join(errs...)
}

// Trash moves conversation id into the trash, unless a task holds it
// (ErrLocked). A task that waited for the lock finds the conversation gone
// (ErrNotFound) rather than working in the trash.
func (s *Store) Trash(id string) error {
	l, err := s.TryLock(id)
	if err != nil {
		return err
	}
	defer l.Unlock()
	if err := os.MkdirAll(s.TrashDir(), 0o700); err != nil {
		return fmt.Errorf("trash conversation %s: %w", id, err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	dst := filepath.Join(s.TrashDir(), id+"-"+hex.EncodeToString(b[:]))
	if err := os.Rename(s.path(id), dst); err != nil {
		return fmt.Errorf("trash conversation %s: %w", id, err)
	}
	return nil
}

// EmptyTrash deletes everything in the trash, including what a crash left
// there.
func (s *Store) EmptyTrash() error {
	entries, err := os.ReadDir(s.TrashDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("empty trash: %w", err)
	}
	remove := s.RemoveAll
	if remove == nil {
		remove = os.RemoveAll
	}
	var errs []error
	for _, e := range entries {
		if err := remove(filepath.Join(s.TrashDir(), e.Name())); err != nil {
			errs = append(errs, fmt.Errorf("empty trash: %w", err))
		}
	}
	return errors.Join(errs...)
}

// LastActivity is the record's updated time, or the directory's mtime when
// the record is missing or unreadable (a crash mid-create).
func (s *Store) LastActivity(id string) (time.Time, error) {
	data, err := os.ReadFile(filepath.Join(s.path(id), MetaFile))
	if err == nil {
		var r Record
		if json.Unmarshal(data, &r) == nil && !r.Updated.IsZero() {
			return r.Updated, nil
		}
	}
	fi, err := os.Stat(s.path(id))
	if err != nil {
		return time.Time{}, fmt.Errorf("conversation %s: %w", id, err)
	}
	return fi.ModTime(), nil
}
