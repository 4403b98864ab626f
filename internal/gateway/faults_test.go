package gateway

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/airut/airut/internal/agent"
	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/sandbox"
)

func (f *fixture) handler(id string) *repoHandler {
	f.t.Helper()
	f.g.mu.Lock()
	defer f.g.mu.Unlock()
	s := f.g.slots[id]
	if s == nil || s.h == nil {
		f.t.Fatalf("repo %s has no handler", id)
	}
	return s.h
}

// TestNotTakenIsReleased: a message that the gateway could not take
// (journal unreadable, attachments not storable, no conversation could be
// created) is handed back to the channel as not taken and forgotten, so
// that the next hand-over is taken and answered; it used to stay "in
// flight" until a restart.
func TestNotTakenIsReleased(t *testing.T) {
	tests := []struct {
		name     string
		sabotage func(t *testing.T, h *repoHandler, key string) (undo func())
	}{
		{name: "journal unreadable", sabotage: func(t *testing.T, h *repoHandler, key string) func() {
			p := h.journal.path(key)
			mustWrite(t, p, "{not json")
			return func() { os.Remove(p) }
		}},
		{name: "spool unwritable", sabotage: func(t *testing.T, h *repoHandler, key string) func() {
			mustWrite(t, h.spool.dir, "a file where the spool directory goes")
			return func() { os.Remove(h.spool.dir) }
		}},
		{name: "conversation not creatable", sabotage: func(t *testing.T, h *repoHandler, key string) func() {
			root := h.store.Root
			if err := os.Rename(root, root+".away"); err != nil {
				t.Fatal(err)
			}
			mustWrite(t, root, "a file where the conversations go")
			return func() {
				os.Remove(root)
				if err := os.Rename(root+".away", root); err != nil {
					t.Fatal(err)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{})
			f.start()
			h, ch := f.handler("app"), f.chans["app"]
			m := msg("1:1", "@@reply answered")
			m.Attachments = []channel.Attachment{{Name: "a.txt", Data: []byte("data")}}
			undo := tt.sabotage(t, h, messageKey("fake", m))
			if err := ch.hand(t, m); !errors.Is(err, errNotTaken) {
				t.Fatalf("hand-over with the %s: %v; want errNotTaken", tt.name, err)
			}
			h.mu.Lock()
			n := len(h.inflight)
			h.mu.Unlock()
			if n != 0 {
				t.Errorf("in flight after a message was not taken: %d; want 0", n)
			}
			undo()
			if err := ch.hand(t, m); err != nil {
				t.Fatalf("second hand-over: %v", err)
			}
			ch.wait(t, "the reply and Done", func() bool { return len(ch.replies) == 1 && len(ch.dones) == 1 })
			if r := ch.replies[0]; !strings.Contains(r.R.Markdown, "answered") {
				t.Errorf("reply: got %q", r.R.Markdown)
			}
		})
	}
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestReplyFailures: a transient reply failure is retried until it goes
// through; a permanent one (an SMTP 5xx) is tried once, recorded on the
// task and in the journal (so a restart does not retry it), keeps the
// outbox, acknowledges the message at the source, and does not block the
// conversation's next message. Every Reply and Done carries the outcome.
func TestReplyFailures(t *testing.T) {
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) { testReplyFailures(t, backend == "podman") })
	}
}

func testReplyFailures(t *testing.T, podman bool) {
	f := newFixture(t, fixtureOpts{podman: podman})
	ch := f.chans["app"]
	refused := errors.New("554 5.7.1 message refused")
	ch.replyErr = func(n int, m *channel.Message, r channel.Reply) error {
		switch {
		case m.SourceID == "1:1" && n <= 3:
			return fmt.Errorf("smtp: 451 try again later (attempt %d)", n)
		case m.SourceID == "1:2":
			return fmt.Errorf("send mail: %w", channel.Permanent(refused))
		}
		return nil
	}
	// Done of the refused message fails until the restart, so that the
	// restart sees its journal entry.
	var mu sync.Mutex
	afterRestart := false
	ch.doneErr = func(n int, m *channel.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if m.SourceID == "1:2" && !afterRestart {
			return errors.New("imap: connection reset")
		}
		return nil
	}
	f.start()

	// Transient: retried, sent once, outbox cleared.
	if err := ch.hand(t, msg("1:1", "@@run echo report > ../outbox/report.txt\n@@reply first")); err != nil {
		t.Fatal(err)
	}
	ch.wait(t, "the first reply and Done", func() bool { return len(ch.replies) == 1 && len(ch.dones) == 1 })
	first := f.taskFor("1:1")
	r, _ := replyOf(ch.replies, "1:1")
	if len(r.R.Attachments) != 1 || strings.TrimSpace(string(r.R.Attachments[0].Data)) != "report" {
		t.Errorf("first reply attachments: %+v; want report.txt", r.R.Attachments)
	}
	if r.R.Outcome != channel.OutcomeSuccess || ch.dones[0].Outcome != channel.OutcomeSuccess {
		t.Errorf("outcome on Reply/Done: %q/%q; want success", r.R.Outcome, ch.dones[0].Outcome)
	}
	if ti := f.waitTask(first.ID, StateDone); ti.ReplyFailed || ti.ReplyError != "" {
		t.Errorf("first task: %+v; want done with no reply error", ti)
	}
	if n, _ := ch.counts(); n != 4 {
		t.Errorf("reply attempts: got %d; want 4 (three transient failures)", n)
	}

	// Permanent, in the same conversation.
	conv := first.Conversation
	m2 := msg("1:2", "@@run echo chart > ../outbox/chart.txt\n@@reply second")
	m2.ConversationID = conv
	if err := ch.hand(t, m2); err != nil {
		t.Fatal(err)
	}
	second := f.taskFor("1:2")
	ti := f.waitTask(second.ID, StateDone)
	if !ti.ReplyFailed || !strings.Contains(ti.ReplyError, "554") {
		t.Errorf("second task: ReplyFailed %v ReplyError %q; want the permanent failure recorded", ti.ReplyFailed, ti.ReplyError)
	}
	attempts, _ := ch.counts()
	if attempts != 5 {
		t.Errorf("reply attempts after the permanent failure: got %d; want 5 (tried once)", attempts)
	}
	if _, err := os.Stat(filepath.Join(f.convDir("app", conv), "outbox", "chart.txt")); err != nil {
		t.Errorf("outbox after a refused reply: %v; want chart.txt kept", err)
	}
	e, err := f.handler("app").journal.get(messageKey("fake", m2))
	if err != nil || e == nil || !e.Replied || !strings.Contains(e.ReplyFailed, "554") {
		t.Errorf("journal of the refused message: %+v, %v; want replied with the failure", e, err)
	}

	// The conversation is not blocked: a third message runs and replies.
	m3 := msg("1:3", "@@reply third")
	m3.ConversationID = conv
	if err := ch.hand(t, m3); err != nil {
		t.Fatal(err)
	}
	ch.wait(t, "the third reply", func() bool { _, n := replyOf(ch.replies, "1:3"); return n == 1 })

	// After a restart, the refused message handed over again is only
	// acknowledged: no second attempt at its reply, no second run.
	f.stop()
	mu.Lock()
	afterRestart = true
	mu.Unlock()
	g := f.start()
	if err := ch.hand(t, m2); err != nil {
		t.Fatal(err)
	}
	ch.wait(t, "Done of the refused message", func() bool {
		for _, d := range ch.dones {
			if d.SourceID == "1:2" {
				return true
			}
		}
		return false
	})
	if n, _ := ch.counts(); n != attempts+1 {
		t.Errorf("reply attempts after the restart: got %d; want %d (only the third message's)", n, attempts+1)
	}
	for _, ti := range g.Tasks() {
		t.Errorf("task after the restart: %+v; want none run", ti)
	}
}

// TestDoneRetried: a Done that fails is retried with backoff in the
// running process, not left until a restart; the message is forgotten
// only once its source acknowledged it.
func TestDoneRetried(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ch := f.chans["app"]
	ch.doneErr = func(n int, m *channel.Message) error {
		if n <= 3 {
			return fmt.Errorf("imap expunge: connection reset (attempt %d)", n)
		}
		return nil
	}
	f.start()
	m := msg("2:1", "@@reply hello")
	if err := ch.hand(t, m); err != nil {
		t.Fatal(err)
	}
	ch.wait(t, "Done", func() bool { return len(ch.dones) == 1 })
	replies, _, _ := ch.snapshot()
	if _, n := ch.counts(); n != 4 || len(replies) != 1 {
		t.Errorf("Done attempts %d, replies %d; want 4 and 1", n, len(replies))
	}
	h := f.handler("app")
	poll(t, "the journal entry to go", func() bool {
		e, _ := h.journal.get(messageKey("fake", m))
		return e == nil
	})
	poll(t, "the message to leave the in-flight set", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.inflight) == 0
	})
}

// TestOutboxKeptUntilReplied: the outbox is cleared only after "replied"
// is in the journal. When that record cannot be written (here: the entry
// became unwritable while the reply was on its way), the attachments stay,
// so the journaled reply that a restart sends again still has them.
func TestOutboxKeptUntilReplied(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ch := f.chans["app"]
	m := msg("3:1", "@@run echo data > ../outbox/data.txt\n@@reply with data")
	var h *repoHandler
	ch.replyErr = func(n int, _ *channel.Message, r channel.Reply) error {
		// The reply goes out; then the journal entry cannot be replaced.
		p := h.journal.path(messageKey("fake", m))
		if err := os.Remove(p); err != nil {
			t.Error(err)
		}
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Error(err)
		}
		mustWrite(t, filepath.Join(p, "keep"), "x")
		return nil
	}
	f.start()
	h = f.handler("app")
	if err := ch.hand(t, m); err != nil {
		t.Fatal(err)
	}
	ch.wait(t, "the reply", func() bool { return len(ch.replies) == 1 })
	ti := f.taskFor("3:1")
	f.waitTask(ti.ID, StateDone)
	if _, err := os.Stat(filepath.Join(f.convDir("app", ti.Conversation), "outbox", "data.txt")); err != nil {
		t.Errorf("outbox after a reply whose record failed: %v; want data.txt kept", err)
	}
	os.RemoveAll(h.journal.path(messageKey("fake", m)))
}

// TestQueueHoldsNoGoroutines: messages waiting for a worker cost neither
// a goroutine each nor their attachments in memory (those wait in the
// spool on disk).
func TestQueueHoldsNoGoroutines(t *testing.T) {
	f := newFixture(t, fixtureOpts{maxConcurrent: 1})
	ch := f.chans["app"]
	g := f.start()
	if err := ch.hand(t, msg("4:0", block("first"))); err != nil {
		t.Fatal(err)
	}
	first := f.taskFor("4:0")
	f.waitStarted("app", first.Conversation)

	const n, size = 60, 512 << 10
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	goBefore := runtime.NumGoroutine()
	for i := 1; i <= n; i++ {
		m := msg(fmt.Sprintf("4:%d", i), "@@reply queued")
		m.Attachments = []channel.Attachment{{Name: "blob.bin", Data: make([]byte, size)}}
		m.Attachments[0].Data[0] = byte(i) // each its own content
		if err := ch.hand(t, m); err != nil {
			t.Fatal(err)
		}
	}
	poll(t, "every message queued", func() bool { return g.QueueLength() == n })
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	goAfter := runtime.NumGoroutine()
	heapGrowth := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("%d queued messages with %d KiB each: %+d goroutines, heap %+d KiB", n, size>>10, goAfter-goBefore, heapGrowth>>10)
	if goAfter-goBefore > n/4 {
		t.Errorf("goroutines grew by %d for %d queued jobs; want no goroutine per job", goAfter-goBefore, n)
	}
	if heapGrowth > n*size/4 {
		t.Errorf("heap grew by %d KiB for %d KiB of queued attachments; want them on disk", heapGrowth>>10, n*size>>10)
	}
	f.release("app", first.Conversation)
	ch.wait(t, "every reply", func() bool { return len(ch.replies) == n+1 })
	ch.wait(t, "every Done", func() bool { return len(ch.dones) == n+1 })
	for i := 1; i <= 3; i++ {
		ti := f.taskFor(fmt.Sprintf("4:%d", i))
		data, err := os.ReadFile(filepath.Join(f.convDir("app", ti.Conversation), "inbox", "blob.bin"))
		if err != nil || len(data) != size || data[0] != byte(i) {
			t.Errorf("attachment of message %d in its inbox: %d bytes, %v", i, len(data), err)
		}
	}
}

// TestOutboxLimit: an outbox file larger than the reply can carry is left
// in the outbox and named in the reply; the files that fit are attached
// and cleared. Nothing is lost, and the big file is never read whole.
func TestOutboxLimit(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ch := f.chans["app"]
	f.start()
	script := "@@run head -c 52428800 /dev/zero > ../outbox/big.bin\n@@run echo small > ../outbox/small.txt\n@@reply made files"
	if err := ch.hand(t, msg("5:1", script)); err != nil {
		t.Fatal(err)
	}
	ch.wait(t, "the reply and Done", func() bool { return len(ch.replies) == 1 && len(ch.dones) == 1 })
	r := ch.replies[0].R
	var names []string
	for _, a := range r.Attachments {
		names = append(names, a.Name)
	}
	if diff := cmp.Diff([]string{"small.txt"}, names); diff != "" {
		t.Errorf("attachments (-want +got):\n%s", diff)
	}
	if !strings.Contains(r.Markdown, "big.bin (50.0 MiB)") || !strings.Contains(r.Markdown, "still in the outbox") {
		t.Errorf("reply text: %q; want it to name big.bin as left in the outbox", r.Markdown)
	}
	conv := f.taskFor("5:1").Conversation
	left, _ := os.ReadDir(filepath.Join(f.convDir("app", conv), "outbox"))
	if len(left) != 1 || left[0].Name() != "big.bin" {
		t.Errorf("outbox after the reply: %v; want only big.bin", left)
	}
}

// TestGCDoesNotStallIntake: while garbage collection deletes an old
// workspace, messages are still taken: the collector holds the intake
// lock only to rename the conversation into the trash.
func TestGCDoesNotStallIntake(t *testing.T) {
	clock := newTestClock()
	f := newFixture(t, fixtureOpts{maxAgeDays: 7, clock: clock.Now})
	ch := f.chans["app"]
	g := f.start()
	h := f.handler("app")
	old, _, err := h.store.Create("fake")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(old.Workspace(), "big", "file"), "x")
	clock.Add(30 * 24 * time.Hour)

	entered, unblock := make(chan struct{}), make(chan struct{})
	h.store.RemoveAll = func(p string) error {
		close(entered)
		<-unblock
		return os.RemoveAll(p)
	}
	gcDone := make(chan struct{})
	go func() {
		defer close(gcDone)
		g.collectGarbage(context.Background())
	}()
	<-entered
	taken := make(chan error, 1)
	go func() { taken <- ch.hand(t, msg("6:1", "@@reply taken")) }()
	select {
	case err := <-taken:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("intake waited for the garbage collector's deletion")
	}
	ch.wait(t, "the reply while the GC deletes", func() bool { return len(ch.replies) == 1 })
	close(unblock)
	<-gcDone
	if h.store.Exists(old.ID) {
		t.Errorf("old conversation %s still there", old.ID)
	}
	if left, _ := os.ReadDir(h.store.TrashDir()); len(left) != 0 {
		t.Errorf("trash after the GC: %d entries; want none", len(left))
	}
}

// TestGCForgetsStaleJournal: a journal entry (and its spool) of a message
// that its source never handed over again is forgotten once it is older
// than the conversations; one in progress is kept.
func TestGCForgetsStaleJournal(t *testing.T) {
	clock := newTestClock()
	f := newFixture(t, fixtureOpts{maxAgeDays: 7, clock: clock.Now})
	ch := f.chans["app"]
	g := f.start()
	h := f.handler("app")
	stale := &journalEntry{Key: "src\x00fake\x00gone", Channel: "fake", SourceID: "gone", Conversation: "0badc0de", Received: clock.Now()}
	if err := h.journal.put(stale); err != nil {
		t.Fatal(err)
	}
	if _, err := h.spool.put(stale.Key, []channel.Attachment{{Name: "a", Data: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	clock.Add(30 * 24 * time.Hour)
	if err := ch.hand(t, msg("7:9", block("in progress"))); err != nil {
		t.Fatal(err)
	}
	running := f.taskFor("7:9")
	f.waitStarted("app", running.Conversation)
	clock.Add(30 * 24 * time.Hour) // the running one is old too, but in flight
	g.collectGarbage(context.Background())
	if e, _ := h.journal.get(stale.Key); e != nil {
		t.Errorf("stale entry kept: %+v", e)
	}
	if atts, _ := h.spool.list(stale.Key); len(atts) != 0 {
		t.Errorf("stale spool kept: %v", atts)
	}
	if e, _ := h.journal.get(messageKey("fake", msg("7:9", block("in progress")))); e == nil {
		t.Errorf("the running message's entry was forgotten")
	}
	f.release("app", running.Conversation)
	ch.wait(t, "the reply", func() bool { return len(ch.replies) == 1 })
}

// TestGCKeepsQueuedConversation: an old conversation that a new message
// was just queued for is not removed by garbage collection before its task
// takes the conversation lock; an old idle one is.
func TestGCKeepsQueuedConversation(t *testing.T) {
	clock := newTestClock()
	f := newFixture(t, fixtureOpts{maxAgeDays: 7, maxConcurrent: 1, clock: clock.Now})
	ch := f.chans["app"]
	g := f.start()
	h := f.handler("app")
	busyDir, _, err := h.store.Create("fake")
	if err != nil {
		t.Fatal(err)
	}
	idleDir, _, err := h.store.Create("fake")
	if err != nil {
		t.Fatal(err)
	}
	clock.Add(30 * 24 * time.Hour)
	// The only worker runs another conversation, so the new message's
	// task stays queued, without the conversation lock.
	if err := ch.hand(t, msg("7:0", block("blocker"))); err != nil {
		t.Fatal(err)
	}
	blocker := f.taskFor("7:0")
	f.waitStarted("app", blocker.Conversation)
	m := msg("7:1", "@@reply kept")
	m.ConversationID = busyDir.ID
	if err := ch.hand(t, m); err != nil {
		t.Fatal(err)
	}
	queued := f.taskFor("7:1")
	if queued.Conversation != busyDir.ID || queued.State != StateQueued {
		t.Fatalf("task: %+v; want queued in %s", queued, busyDir.ID)
	}
	g.collectGarbage(context.Background())
	if !h.store.Exists(busyDir.ID) {
		t.Errorf("conversation %s with a queued task was removed", busyDir.ID)
	}
	if h.store.Exists(idleDir.ID) {
		t.Errorf("old idle conversation %s was kept", idleDir.ID)
	}
	f.release("app", blocker.Conversation)
	ch.wait(t, "both replies", func() bool { return len(ch.replies) == 2 })
	if r, _ := replyOf(ch.replies, "7:1"); r.R.ConversationID != busyDir.ID {
		t.Errorf("queued message answered in %q; want %s", r.R.ConversationID, busyDir.ID)
	}
}

// TestPruneSeesResolvedImages: the image prune decides on an up-to-date
// view. A message that arrives while garbage collection is under way (the
// case of a message waiting in the inbox at start) resolves its image; the
// prune that follows must not remove it before its container starts,
// which would make the engine try to pull it from a registry.
func TestPruneSeesResolvedImages(t *testing.T) {
	clock := newTestClock()
	f := newFixture(t, fixtureOpts{maxAgeDays: 7, imagePrune: true, clock: clock.Now})
	ch := f.chans["app"]
	g := f.start()
	h := f.handler("app")
	old, _, err := h.store.Create("fake")
	if err != nil {
		t.Fatal(err)
	}
	clock.Add(30 * 24 * time.Hour)

	resolved, gcDone := make(chan struct{}), make(chan struct{})
	var once sync.Once
	f.sb.BeforeRun = func(ctx context.Context, spec *sandbox.Spec) error {
		// The task has its image and is about to start its container:
		// let the collector go on, and start only once it is done.
		once.Do(func() { close(resolved) })
		<-gcDone
		return nil
	}
	entered := make(chan struct{})
	h.store.RemoveAll = func(p string) error {
		close(entered)
		<-resolved
		return os.RemoveAll(p)
	}
	go func() {
		defer close(gcDone)
		g.collectGarbage(context.Background())
	}()
	<-entered // the collector has started: its view of "busy" is taken
	if err := ch.hand(t, msg("8:1", "@@reply after the prune")); err != nil {
		t.Fatal(err)
	}
	ch.wait(t, "the reply", func() bool { return len(ch.replies) == 1 })
	if r := ch.replies[0].R; r.Outcome != channel.OutcomeSuccess {
		t.Errorf("outcome: %s (%q); want success, the image still there", r.Outcome, r.Markdown)
	}
	if h.store.Exists(old.ID) {
		t.Errorf("old conversation kept")
	}
	// With no task about, the next prune does remove the unused images.
	poll(t, "the task to end", func() bool { return f.taskFor("8:1").State == StateDone })
	g.collectGarbage(context.Background())
	if len(f.sb.Pruned()) == 0 {
		t.Errorf("no image pruned while idle")
	}
}

// TestClaudeVersionGCWaitsForTasks: installed Claude Code versions that no
// repo names are removed only while no task runs (a version a task has
// resolved but not yet mounted looks unused); intake is not held up.
func TestClaudeVersionGCWaitsForTasks(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ch := f.chans["app"]
	g := f.start()
	old := filepath.Join(f.state, ClaudeBinariesDir, "1.2.3")
	mustWrite(t, filepath.Join(old, "claude"), "an old release")
	if err := ch.hand(t, msg("8:5", block("running"))); err != nil {
		t.Fatal(err)
	}
	running := f.taskFor("8:5")
	f.waitStarted("app", running.Conversation)
	g.collectGarbage(context.Background())
	if _, err := os.Stat(old); err != nil {
		t.Errorf("version removed while a task ran: %v", err)
	}
	f.release("app", running.Conversation)
	ch.wait(t, "the reply", func() bool { return len(ch.replies) == 1 })
	f.waitTask(running.ID, StateDone)
	g.collectGarbage(context.Background())
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("unused version kept while idle: %v", err)
	}
}

// testClock is a settable clock.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock {
	return &testClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestOutcomeOnReplyAndDone: the channel learns how the task ended.
func TestOutcomeOnReplyAndDone(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ch := f.chans["app"]
	f.start()
	if err := ch.hand(t, msg("9:1", "@@fail 3 the build is broken")); err != nil {
		t.Fatal(err)
	}
	ch.wait(t, "reply and Done", func() bool { return len(ch.replies) == 1 && len(ch.dones) == 1 })
	want := channel.Outcome(agent.OutcomeError)
	if got := ch.replies[0].R.Outcome; got != want || got.Success() {
		t.Errorf("Reply outcome: %q; want %q", got, want)
	}
	if got := ch.dones[0].Outcome; got != want {
		t.Errorf("Done outcome: %q; want %q", got, want)
	}
}
