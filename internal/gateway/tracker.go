package gateway

import (
	"sort"
	"sync"
	"time"

	"github.com/airut/airut/internal/agent"
)

// Task states.
const (
	// StateQueued: waiting for a worker.
	StateQueued = "queued"
	// StatePending: a follow-up waiting for its conversation's running task.
	StatePending = "pending"
	// StateRunning: in the sandbox (or preparing it).
	StateRunning = "running"
	// StateCoalesced: merged into another task, named by CoalescedInto.
	StateCoalesced = "coalesced"
	// StateReplying: finished, but its reply has not been sent yet; the
	// send is retried (ReplyError says why the last attempt failed).
	StateReplying = "replying"
	// StateDone: finished and replied to; Outcome says how.
	StateDone = "done"
	// StateAbandoned: stopped by a shutdown before it replied; its message
	// stays at the source and runs again after the restart.
	StateAbandoned = "abandoned"
)

// maxFinished bounds how many finished tasks the tracker remembers.
const maxFinished = 1000

// TaskInfo is a snapshot of one task for the dashboard.
type TaskInfo struct {
	ID           string
	Repo         string
	Conversation string
	Channel      string
	State        string
	Sender       string
	// SenderName is the sender's display name where the channel has one
	// (Slack's display name, an email's From name).
	SenderName string
	Subject    string
	Model      string
	Queued     time.Time
	Started    time.Time
	Finished   time.Time
	// Outcome is set once the task is done.
	Outcome agent.Outcome
	// Reason explains a non-success outcome in one line.
	Reason string
	// ReplyError is why the last attempt to send the reply failed: while
	// the reply is retried, or for good when ReplyFailed is set.
	ReplyError string
	// ReplyFailed: the channel refused the reply permanently (an SMTP
	// 5xx); it is not retried, and the outbox is kept.
	ReplyFailed bool
	Usage       agent.Usage
	Cost        float64
	// CoalescedInto is the task that ran this task's message.
	CoalescedInto string
	// Messages is how many messages the task answers (more than one when
	// messages were coalesced into it).
	Messages int
	Todos    []agent.Todo
	// EventsFrom is the byte offset in the conversation's events.jsonl at
	// which this task's transcript starts (set when it starts running).
	EventsFrom int64
}

// tracker holds every task's state and publishes each change on the bus.
// It publishes under its lock, so the events of one task are in the order
// of its changes.
type tracker struct {
	bus   *Bus
	mu    sync.Mutex
	tasks map[string]*TaskInfo
	order []string
}

func newTracker(bus *Bus) *tracker { return &tracker{bus: bus, tasks: map[string]*TaskInfo{}} }

// publish sends ti's snapshot; t.mu is held.
func (t *tracker) publish(ti *TaskInfo) {
	if t.bus == nil {
		return
	}
	c := copyInfo(ti)
	t.bus.Publish(Event{Kind: EventTask, Repo: c.Repo, Conversation: c.Conversation, Task: c.ID, Info: &c})
}

func (t *tracker) add(ti TaskInfo) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := ti
	if _, ok := t.tasks[ti.ID]; !ok {
		t.order = append(t.order, ti.ID)
	}
	t.tasks[ti.ID] = &c
	t.publish(&c)
	t.trim()
}

// trim forgets the oldest finished tasks beyond maxFinished.
func (t *tracker) trim() {
	if len(t.order) <= maxFinished {
		return
	}
	keep := t.order[:0]
	drop := len(t.order) - maxFinished
	for _, id := range t.order {
		ti := t.tasks[id]
		final := ti.State == StateDone || ti.State == StateCoalesced || ti.State == StateAbandoned
		if drop > 0 && final {
			delete(t.tasks, id)
			drop--
			continue
		}
		keep = append(keep, id)
	}
	t.order = keep
}

func (t *tracker) update(id string, fn func(*TaskInfo)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ti, ok := t.tasks[id]; ok {
		fn(ti)
		t.publish(ti)
	}
}

func (t *tracker) get(id string) (TaskInfo, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ti, ok := t.tasks[id]
	if !ok {
		return TaskInfo{}, false
	}
	return copyInfo(ti), true
}

func (t *tracker) snapshot() []TaskInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]TaskInfo, 0, len(t.order))
	for _, id := range t.order {
		out = append(out, copyInfo(t.tasks[id]))
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Queued.Before(out[j].Queued) })
	return out
}

func copyInfo(ti *TaskInfo) TaskInfo {
	c := *ti
	c.Todos = append([]agent.Todo(nil), ti.Todos...)
	return c
}
