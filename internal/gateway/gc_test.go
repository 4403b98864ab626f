package gateway

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/config"
)

// TestGCKeepsQueuedConversation: an old conversation that a new message
// was just queued for is not removed by garbage collection before its task
// takes the conversation lock; an old idle one is.
func TestGCKeepsQueuedConversation(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	cfg := &config.Config{Execution: config.Execution{MaxConcurrent: 1, ShutdownTimeout: 5, ConversationMaxAgeDays: 7}}
	g, h := unitGateway(t, cfg, clock)
	busyDir, _, err := h.store.Create("fake")
	if err != nil {
		t.Fatal(err)
	}
	idleDir, _, err := h.store.Create("fake")
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.AddDate(0, 0, 30)
	mu.Unlock()

	// The only worker slot is taken, so the new message's task stays
	// queued, without the conversation lock.
	g.sem <- struct{}{}
	fc := newFlaky()
	h.channels = []channel.Channel{fc}
	h.onMessage(fc, &channel.Message{SourceID: "1:1", ConversationID: busyDir.ID, SenderAddress: "alice@example.com", Body: "more"})
	tasks := g.Tasks()
	if len(tasks) != 1 || tasks[0].Conversation != busyDir.ID || tasks[0].State != StateQueued {
		t.Fatalf("tasks: got %+v; want one queued in %s", tasks, busyDir.ID)
	}

	g.collectGarbage(context.Background())
	if !h.store.Exists(busyDir.ID) {
		t.Errorf("conversation %s with a queued task was removed", busyDir.ID)
	}
	if h.store.Exists(idleDir.ID) {
		t.Errorf("old idle conversation %s was kept", idleDir.ID)
	}

	// Shut down: the queued task is abandoned without running.
	g.mu.Lock()
	g.stopping = true
	close(g.stopC)
	g.mu.Unlock()
	g.running.Wait()
	if ti, _ := g.Task(tasks[0].ID); ti.State != StateAbandoned {
		t.Errorf("task after shutdown: got %s; want %s", ti.State, StateAbandoned)
	}
}
