package conversation

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// clock is a settable fake clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func newStore(t *testing.T) (*Store, *clock) {
	t.Helper()
	s, err := NewStore(t.TempDir(), "app")
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{now: t0}
	s.Now = c.Now
	return s, c
}

func create(t *testing.T, s *Store) *Dir {
	t.Helper()
	d, _, err := s.Create("email")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestNewStoreRejectsBadRepoID(t *testing.T) {
	for _, id := range []string{"", "..", "a/b", ".hidden"} {
		if _, err := NewStore(t.TempDir(), id); err == nil {
			t.Errorf("NewStore(%q) succeeded; want an error", id)
		}
	}
}

func TestCreateLayout(t *testing.T) {
	s, _ := newStore(t)
	d, rec, err := s.Create("slack")
	if err != nil {
		t.Fatal(err)
	}
	if !ValidID(d.ID) || d.Path != filepath.Join(s.Root, d.ID) {
		t.Errorf("id %q at %q; want 8 hex digits under %s", d.ID, d.Path, s.Root)
	}
	if want := filepath.Join("app", "conversations", d.ID); !strings.HasSuffix(d.Path, want) {
		t.Errorf("path %q; want it to end in %s", d.Path, want)
	}
	for _, p := range []string{d.Workspace(), d.Claude(), d.Inbox(), d.Outbox(), d.Storage()} {
		if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
			t.Errorf("%s: not a directory (%v)", p, err)
		}
	}
	want := &Record{ID: d.ID, Repo: "app", Channel: "slack", Created: t0, Updated: t0, Tasks: []Task{}}
	if diff := cmp.Diff(want, rec); diff != "" {
		t.Errorf("record mismatch (-want +got):\n%s", diff)
	}
	loaded, err := d.Load()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, loaded); diff != "" {
		t.Errorf("loaded record mismatch (-want +got):\n%s", diff)
	}
	if !s.Exists(d.ID) {
		t.Errorf("Exists(%s) = false; want true", d.ID)
	}
	if _, err := s.Open(d.ID); err != nil {
		t.Errorf("Open(%s): %v", d.ID, err)
	}
}

func TestOpenErrors(t *testing.T) {
	s, _ := newStore(t)
	tests := []struct {
		id   string
		want error
	}{
		{"0123abcd", ErrNotFound},
		{"../../x", ErrBadID},
		{"0123ABCD", ErrBadID},
		{"0123abc", ErrBadID},
	}
	for _, tc := range tests {
		if _, err := s.Open(tc.id); !errors.Is(err, tc.want) {
			t.Errorf("Open(%q) = %v; want %v", tc.id, err, tc.want)
		}
		if s.Exists(tc.id) {
			t.Errorf("Exists(%q) = true; want false", tc.id)
		}
	}
}

func TestIDsUnique(t *testing.T) {
	s, _ := newStore(t)
	seen := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 25 {
				d, _, err := s.Create("email")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[d.ID] {
					t.Errorf("id %s handed out twice", d.ID)
				}
				seen[d.ID] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	ids, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 200 || len(seen) != 200 {
		t.Errorf("listed %d, created %d; want 200 each", len(ids), len(seen))
	}
	id, err := s.NewID()
	if err != nil || !ValidID(id) || seen[id] {
		t.Errorf("NewID = %q, %v; want a fresh valid id", id, err)
	}
}

func TestSaveSchemaAndClock(t *testing.T) {
	s, c := newStore(t)
	d := create(t, s)
	rec, err := d.Load()
	if err != nil {
		t.Fatal(err)
	}
	c.Set(t0.Add(time.Hour))
	rec.SessionID = "3f2b8c1e-6d4a-4b7e-9c2f-1a5e8d7b6c40"
	rec.Model = "opus"
	rec.ThreadKeys = map[string]string{"message_id": "<a@example.com>"}
	rec.Tasks = append(rec.Tasks,
		Task{ID: "t1", Started: t0, Finished: t0.Add(time.Minute), Outcome: "success", Model: "opus",
			Usage: Usage{InputTokens: 10, OutputTokens: 20, CacheCreationInputTokens: 30, CacheReadInputTokens: 40},
			Cost:  0.42, NumTurns: 3, Sender: "alice@example.com", Reply: "Done."},
		Task{ID: "t2", Started: t0, Outcome: "coalesced", CoalescedInto: "t3"},
	)
	if err := d.Save(rec); err != nil {
		t.Fatal(err)
	}
	got, err := d.Load()
	if err != nil {
		t.Fatal(err)
	}
	if !got.Updated.Equal(t0.Add(time.Hour)) {
		t.Errorf("updated = %v; want the clock's %v", got.Updated, t0.Add(time.Hour))
	}
	if diff := cmp.Diff(rec, got); diff != "" {
		t.Errorf("round trip mismatch (-want +got):\n%s", diff)
	}
	if got.LastReply() != "Done." {
		t.Errorf("LastReply = %q; want Done.", got.LastReply())
	}

	// The file's keys are an interface for operators and tools.
	data, err := os.ReadFile(d.MetaPath())
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	wantKeys := []string{"channel", "created", "id", "model", "repo", "session_id", "tasks", "thread_keys", "updated"}
	if diff := cmp.Diff(wantKeys, keys); diff != "" {
		t.Errorf("conversation.json keys (-want +got):\n%s", diff)
	}
	task := raw["tasks"].([]any)[0].(map[string]any)
	for _, k := range []string{"id", "started", "finished", "outcome", "usage", "cost", "num_turns", "sender"} {
		if _, ok := task[k]; !ok {
			t.Errorf("task lacks key %q: %v", k, task)
		}
	}
	if _, ok := raw["tasks"].([]any)[1].(map[string]any)["coalesced_into"]; !ok {
		t.Errorf("coalesced task lacks coalesced_into")
	}
	if entries, _ := filepath.Glob(filepath.Join(d.Path, ".conversation.json.*")); len(entries) != 0 {
		t.Errorf("temp files left behind: %v", entries)
	}
}

func TestLoadErrors(t *testing.T) {
	s, _ := newStore(t)
	d := create(t, s)
	if err := os.WriteFile(d.MetaPath(), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Load(); err == nil || !strings.Contains(err.Error(), MetaFile) {
		t.Errorf("Load of corrupt file = %v; want an error naming %s", err, MetaFile)
	}
	if _, err := d.Update(func(*Record) error { return nil }); err == nil {
		t.Errorf("Update of corrupt file succeeded; want an error")
	}
	os.Remove(d.MetaPath())
	if _, err := d.Load(); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load of missing file = %v; want ErrNotFound", err)
	}
}

func TestConcurrentUpdates(t *testing.T) {
	s, _ := newStore(t)
	d := create(t, s)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			_, err := d.Update(func(r *Record) error {
				r.Tasks = append(r.Tasks, Task{ID: fmt.Sprint(i)})
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	rec, err := d.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Tasks) != 20 {
		t.Errorf("got %d tasks; want 20 (an update was lost)", len(rec.Tasks))
	}
	failed := errors.New("nope")
	if _, err := d.Update(func(r *Record) error { r.Tasks = nil; return failed }); !errors.Is(err, failed) {
		t.Errorf("Update = %v; want fn's error", err)
	}
	if rec, _ := d.Load(); len(rec.Tasks) != 20 {
		t.Errorf("failed update was written")
	}
}

func TestAppendEvent(t *testing.T) {
	s, _ := newStore(t)
	d := create(t, s)
	if err := d.AppendEvent([]byte("{\"type\":\"a\",\"x\":\"one\nline\"}")); err == nil {
		t.Errorf("event with a line break accepted")
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				line := fmt.Sprintf(`{"type":"assistant","g":%d,"i":%d,"pad":%q}`, g, i, strings.Repeat("x", 5000))
				if i%2 == 0 {
					line += "\r\n"
				}
				if err := d.AppendEvent([]byte(line)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := d.AppendEvent([]byte("  \n")); err != nil {
		t.Errorf("blank line: %v", err)
	}
	f, err := os.Open(d.EventsPath())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		var v map[string]any
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("line %d is not one event: %v", n+1, err)
		}
		n++
	}
	if n != 200 {
		t.Errorf("got %d lines; want 200", n)
	}
}

func TestSanitizeName(t *testing.T) {
	long := strings.Repeat("é", 150) + ".pdf"
	tests := []struct{ in, want string }{
		{"report.pdf", "report.pdf"},
		{"../../etc/passwd", "passwd"},
		{`..\..\Windows\win.ini`, "win.ini"},
		{".bashrc", "bashrc"},
		{"...", "attachment"},
		{"..", "attachment"},
		{"", "attachment"},
		{"dir/", "attachment"},
		{"re\x00po\nrt\t.txt", "report.txt"},
		{"  spaced name.txt  ", "spaced name.txt"},
		{"Ünïcödé ✓.md", "Ünïcödé ✓.md"},
		{long, strings.Repeat("é", 98) + ".pdf"},
	}
	for _, tc := range tests {
		got := SanitizeName(tc.in)
		if got != tc.want {
			t.Errorf("SanitizeName(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

func TestSaveAttachment(t *testing.T) {
	s, _ := newStore(t)
	d := create(t, s)
	if err := os.WriteFile(filepath.Join(d.Inbox(), "notes.txt"), []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	inputs := []struct{ name, data string }{
		{"report.pdf", "1"},
		{"report.pdf", "2"},
		{"../report.pdf", "3"},
		{"notes.txt", "4"},
		{"archive.tar.gz", "5"},
		{"archive.tar.gz", "6"},
		{"README", "7"},
		{"README", "8"},
	}
	var got []string
	for _, in := range inputs {
		name, err := d.SaveAttachment(in.name, []byte(in.data))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, name)
		data, err := os.ReadFile(filepath.Join(d.Inbox(), name))
		if err != nil || string(data) != in.data {
			t.Errorf("%s holds %q, %v; want %q", name, data, err, in.data)
		}
	}
	want := []string{"report.pdf", "report-1.pdf", "report-2.pdf", "notes-1.txt", "archive.tar.gz", "archive.tar-1.gz", "README", "README-1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("saved names (-want +got):\n%s", diff)
	}
	if data, _ := os.ReadFile(filepath.Join(d.Inbox(), "notes.txt")); string(data) != "keep me" {
		t.Errorf("existing file overwritten: %q", data)
	}
	if entries, _ := os.ReadDir(d.Path); len(entries) != 6 {
		t.Errorf("attachment escaped inbox: %d entries in the conversation dir", len(entries))
	}
}

func TestOutbox(t *testing.T) {
	s, _ := newStore(t)
	d := create(t, s)
	out := d.Outbox()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(out, "report.txt"), []byte("hello"), 0o644))
	must(os.WriteFile(filepath.Join(out, "b.png"), []byte("png"), 0o644))
	must(os.Mkdir(filepath.Join(out, "sub"), 0o755))
	must(os.WriteFile(filepath.Join(out, "sub", "deep.txt"), []byte("deep"), 0o644))
	must(os.Symlink("/etc/passwd", filepath.Join(out, "passwd")))
	must(os.Symlink("report.txt", filepath.Join(out, "alias.txt")))

	files, err := d.OutboxFiles()
	must(err)
	if diff := cmp.Diff([]string{"b.png", "report.txt"}, files); diff != "" {
		t.Errorf("outbox files (-want +got):\n%s", diff)
	}
	if data, err := d.ReadOutboxFile("report.txt", -1); err != nil || string(data) != "hello" {
		t.Errorf("ReadOutboxFile(report.txt) = %q, %v; want hello", data, err)
	}
	for _, name := range []string{"passwd", "alias.txt", "sub", "../conversation.json", "sub/deep.txt"} {
		if _, err := d.ReadOutboxFile(name, -1); err == nil {
			t.Errorf("ReadOutboxFile(%q) succeeded; want refusal", name)
		}
	}
	// Size limit: at the limit is read, over it is refused and kept.
	if data, err := d.ReadOutboxFile("report.txt", 5); err != nil || string(data) != "hello" {
		t.Errorf("ReadOutboxFile(report.txt, 5) = %q, %v; want hello", data, err)
	}
	if data, err := d.ReadOutboxFile("report.txt", 0); !errors.Is(err, ErrTooLarge) {
		t.Errorf("ReadOutboxFile(report.txt, 0) = %q, %v; want ErrTooLarge", data, err)
	}
	if _, err := d.ReadOutboxFile("report.txt", 4); !errors.Is(err, ErrTooLarge) {
		t.Errorf("ReadOutboxFile(report.txt, 4): %v; want ErrTooLarge", err)
	}
	stat, err := d.StatOutbox()
	must(err)
	if diff := cmp.Diff([]OutboxFile{{Name: "b.png", Size: 3}, {Name: "report.txt", Size: 5}}, stat); diff != "" {
		t.Errorf("StatOutbox (-want +got):\n%s", diff)
	}
	must(d.ClearOutbox(append(files, "already-gone.txt")))
	left, err := d.OutboxFiles()
	must(err)
	if len(left) != 0 {
		t.Errorf("outbox after clear = %v; want none", left)
	}
	if _, err := os.Lstat(filepath.Join(out, "passwd")); err != nil {
		t.Errorf("ClearOutbox removed an unlisted entry: %v", err)
	}
	if err := d.ClearOutbox([]string{"../conversation.json"}); err == nil {
		t.Errorf("ClearOutbox with a path succeeded; want an error")
	}
	if _, err := os.Stat(d.MetaPath()); err != nil {
		t.Errorf("conversation.json gone: %v", err)
	}
}

func TestLockInProcess(t *testing.T) {
	s, _ := newStore(t)
	d := create(t, s)
	l, err := s.TryLock(d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.TryLock(d.ID); !errors.Is(err, ErrLocked) {
		t.Errorf("second TryLock = %v; want ErrLocked", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Lock(ctx, d.ID); !errors.Is(err, context.Canceled) {
		t.Errorf("Lock with cancelled ctx = %v; want context.Canceled", err)
	}
	acquired := make(chan *Lock)
	go func() {
		l2, err := s.Lock(context.Background(), d.ID)
		if err != nil {
			t.Error(err)
		}
		acquired <- l2
	}()
	l.Unlock()
	l.Unlock() // idempotent
	l2 := <-acquired
	if l2 == nil {
		t.Fatal("waiting Lock failed")
	}
	l2.Unlock()
	if _, err := s.TryLock("nothex!!"); !errors.Is(err, ErrBadID) {
		t.Errorf("TryLock(bad id) = %v; want ErrBadID", err)
	}
}

// A second Store on the same root stands in for another process: its
// in-process state is separate, so only flock can stop it.
func TestLockAcrossProcesses(t *testing.T) {
	s, _ := newStore(t)
	other := &Store{Root: s.Root, Repo: s.Repo}
	d := create(t, s)
	l, err := s.TryLock(d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.TryLock(d.ID); !errors.Is(err, ErrLocked) {
		t.Errorf("other store's TryLock = %v; want ErrLocked", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() {
		_, err := other.Lock(ctx, d.ID)
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("other store's Lock after cancel = %v; want context.Canceled", err)
	}
	got := make(chan *Lock)
	go func() {
		l2, err := other.Lock(context.Background(), d.ID)
		if err != nil {
			t.Error(err)
		}
		got <- l2
	}()
	l.Unlock()
	if l2 := <-got; l2 != nil {
		l2.Unlock()
	}
}

func TestTrashOlderThan(t *testing.T) {
	s, c := newStore(t)
	old := create(t, s)
	busy := create(t, s)
	kept := create(t, s) // old, but the caller has work queued for it
	c.Set(t0.Add(6 * 24 * time.Hour))
	recent := create(t, s)
	crashed := filepath.Join(s.Root, "0000dead")
	if err := os.Mkdir(crashed, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(crashed, t0, t0); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(s.Root, "not-a-conversation"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old.Workspace(), "big.bin"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}

	l, err := s.TryLock(busy.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()

	var asked []string
	now := t0.Add(8 * 24 * time.Hour)
	moved, err := s.TrashOlderThan(7*24*time.Hour, now, func(id string) bool {
		asked = append(asked, id)
		return id == kept.ID
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(moved)
	want := []string{"0000dead", old.ID}
	sort.Strings(want)
	if diff := cmp.Diff(want, moved); diff != "" {
		t.Errorf("moved (-want +got):\n%s", diff)
	}
	if slices.Contains(asked, recent.ID) {
		t.Errorf("keep asked about a recent conversation: %v", asked)
	}
	for id, exists := range map[string]bool{old.ID: false, "0000dead": false, busy.ID: true, kept.ID: true, recent.ID: true} {
		if s.Exists(id) != exists {
			t.Errorf("Exists(%s) = %v; want %v", id, !exists, exists)
		}
	}
	if _, err := os.Stat(filepath.Join(s.Root, "not-a-conversation")); err != nil {
		t.Errorf("GC touched a folder that is not a conversation: %v", err)
	}
	if _, err := s.TryLock(old.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("TryLock of trashed conversation = %v; want ErrNotFound", err)
	}

	// The data is in the trash until EmptyTrash, which deletes with the
	// store's RemoveAll.
	trashed, _ := os.ReadDir(s.TrashDir())
	if len(trashed) != 2 {
		t.Fatalf("trash holds %d entries; want 2", len(trashed))
	}
	var removed []string
	s.RemoveAll = func(p string) error {
		removed = append(removed, p)
		return os.RemoveAll(p)
	}
	if err := s.EmptyTrash(); err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 {
		t.Errorf("EmptyTrash removed %v; want both entries", removed)
	}
	if left, _ := os.ReadDir(s.TrashDir()); len(left) != 0 {
		t.Errorf("trash after EmptyTrash: %d entries; want none", len(left))
	}
}

// TestTrashWhileWaiting: a task waiting for the lock of a conversation
// that another process trashes meanwhile (holding the lock, as Trash does)
// gets ErrNotFound, not the lock of a directory in the trash.
func TestTrashWhileWaiting(t *testing.T) {
	s, _ := newStore(t)
	d := create(t, s)
	// The other process: its own descriptor of the lock file, locked.
	f, err := os.OpenFile(filepath.Join(d.Path, lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		l, err := s.Lock(context.Background(), d.ID)
		if l != nil {
			l.Unlock()
		}
		got <- err
	}()
	// The waiter has opened the lock file before the move: give it the
	// time of a few polls.
	time.Sleep(3 * lockPoll)
	if err := os.MkdirAll(s.TrashDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(d.Path, filepath.Join(s.TrashDir(), d.ID+"-x")); err != nil {
		t.Fatal(err)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	if err := <-got; !errors.Is(err, ErrNotFound) {
		t.Fatalf("Lock after the conversation was trashed: %v; want ErrNotFound", err)
	}
}
