package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/redact"
)

func recv(t *testing.T, s *Subscription) *Event {
	t.Helper()
	select {
	case e, ok := <-s.Events():
		if !ok {
			t.Fatalf("subscription ended: %v", s.Err())
		}
		return e
	case <-time.After(testWait):
		t.Fatal("no event")
		return nil
	}
}

func TestBusFilterAndOrder(t *testing.T) {
	b := NewBus(nil)
	all := b.Subscribe(Filter{})
	task := b.Subscribe(Filter{Task: "t1"})
	net := b.Subscribe(Filter{Conversation: "c1", Kinds: []EventKind{EventNetwork}})
	defer all.Close()
	defer task.Close()
	defer net.Close()
	evs := []Event{
		{Kind: EventTask, Repo: "app", Conversation: "c1", Task: "t1"},
		{Kind: EventNetwork, Repo: "app", Conversation: "c1", Task: "t1", Line: "BLOCKED GET https://x/ -> 403"},
		{Kind: EventAgent, Repo: "app", Conversation: "c2", Task: "t2"},
		{Kind: EventRepo, Repo: "app"},
	}
	for _, e := range evs {
		b.Publish(e)
	}
	for i := range evs {
		if e := recv(t, all); e.Seq != uint64(i+1) || e.Kind != evs[i].Kind || e.Time.IsZero() {
			t.Errorf("event %d: %+v", i, e)
		}
	}
	if e := recv(t, task); e.Seq != 1 {
		t.Errorf("task filter: first %+v", e)
	}
	if e := recv(t, task); e.Seq != 2 {
		t.Errorf("task filter: second %+v", e)
	}
	if e := recv(t, net); e.Seq != 2 || e.Line == "" {
		t.Errorf("network filter: %+v", e)
	}
	select {
	case e := <-net.Events():
		t.Errorf("network filter let through %+v", e)
	default:
	}
	if b.Seq() != 4 {
		t.Errorf("Seq: %d; want 4", b.Seq())
	}
}

// TestBusSlowSubscriber: a subscriber that does not keep up is dropped
// with ErrSubscriberTooSlow; the publisher never waits; the subscriber
// resumes from the last Seq it read and misses nothing kept in the ring.
func TestBusSlowSubscriber(t *testing.T) {
	b := NewBus(nil)
	slow := b.Subscribe(Filter{})
	fast := b.Subscribe(Filter{})
	total := DefaultSubscriberBuffer + 10
	for i := 0; i < total; i++ {
		// Publish returns although slow reads nothing: it never waits.
		b.Publish(Event{Kind: EventAgent, Task: "t"})
		if e := recv(t, fast); e.Seq != uint64(i+1) {
			t.Fatalf("fast subscriber: seq %d; want %d", e.Seq, i+1)
		}
	}
	var last uint64
	for e := range slow.Events() {
		last = e.Seq
	}
	if !errors.Is(slow.Err(), ErrSubscriberTooSlow) {
		t.Fatalf("slow subscriber: err %v; want ErrSubscriberTooSlow", slow.Err())
	}
	if last != DefaultSubscriberBuffer {
		t.Errorf("slow subscriber read up to %d; want %d", last, DefaultSubscriberBuffer)
	}
	again, err := b.SubscribeFrom(last, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for want := last + 1; want <= uint64(total); want++ {
		if e := recv(t, again); e.Seq != want {
			t.Fatalf("resumed: got seq %d; want %d", e.Seq, want)
		}
	}
	b.Publish(Event{Kind: EventTask})
	if e := recv(t, again); e.Seq != uint64(total)+1 {
		t.Errorf("live after the replay: seq %d", e.Seq)
	}
	again.Close()
	recv(t, fast)
	fast.Close()
	if fast.Err() != nil {
		t.Errorf("closed subscription err: %v; want nil", fast.Err())
	}
}

// TestBusRing: the ring keeps the most recent events within its count and
// byte limits; a resume from before the oldest kept event is refused with
// ErrEventsLost, so the client reloads instead of silently missing events.
func TestBusRing(t *testing.T) {
	b := NewBus(nil)
	b.maxEvents, b.maxBytes = 10, 1<<20
	for i := 0; i < 25; i++ {
		b.Publish(Event{Kind: EventNetwork, Line: fmt.Sprint(i)})
	}
	if b.n != 10 || b.at(0).Seq != 16 {
		t.Fatalf("ring: %d events from %d; want 10 from 16", b.n, b.at(0).Seq)
	}
	if _, err := b.SubscribeFrom(14, Filter{}); !errors.Is(err, ErrEventsLost) {
		t.Errorf("SubscribeFrom(14): %v; want ErrEventsLost", err)
	}
	s, err := b.SubscribeFrom(15, Filter{})
	if err != nil {
		t.Fatalf("SubscribeFrom(15): %v", err)
	}
	if e := recv(t, s); e.Seq != 16 {
		t.Errorf("first replayed: %d; want 16", e.Seq)
	}
	s.Close()
	// A client ahead of the bus (it saw a previous process) starts now.
	s, err = b.SubscribeFrom(1000, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	b.Publish(Event{Kind: EventTask})
	if e := recv(t, s); e.Seq != 26 {
		t.Errorf("after a too-new seq: %d; want 26", e.Seq)
	}
	s.Close()

	// Bytes: large events push out old ones.
	b = NewBus(nil)
	b.maxBytes = 1 << 20
	big := strings.Repeat("x", 300<<10)
	for i := 0; i < 10; i++ {
		b.Publish(Event{Kind: EventNetwork, Line: big})
	}
	if b.ringBytes > b.maxBytes || b.n != 3 {
		t.Errorf("ring: %d events, %d bytes; want 3 within %d", b.n, b.ringBytes, b.maxBytes)
	}
}

func TestAgentEventData(t *testing.T) {
	reg := redact.NewRegistry()
	reg.Add("s3cret-value-123")
	small := []byte(`{"type":"assistant","text":"the key is s3cret-value-123"}`)
	if got := string(agentEventData(small, "assistant", reg)); strings.Contains(got, "s3cret") || !strings.Contains(got, "assistant") {
		t.Errorf("small event: %s; want it redacted", got)
	}
	huge := []byte(`{"type":"user","content":"` + strings.Repeat("a", 10<<20) + `"}`)
	got := agentEventData(huge, "user", reg)
	var stub struct {
		Type      string `json:"type"`
		Truncated int    `json:"airut_truncated_bytes"`
	}
	if err := json.Unmarshal(got, &stub); err != nil || stub.Type != "user" || stub.Truncated != len(huge) || len(got) > 200 {
		t.Errorf("huge event: %d bytes %q; want a stub naming type and size", len(got), got[:min(len(got), 100)])
	}
}

// TestTaskEvents: one subscription per task sees the task's tracker
// changes, its agent's stream-json events and its network log lines, as
// they happen; a conversation subscription sees the same.
func TestTaskEvents(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ch := f.chans["app"]
	g := f.start()
	all := g.Events().Subscribe(Filter{Repo: "app"})
	defer all.Close()
	if err := ch.hand(t, msg("30:1", "@@todo write the test|[>] run it\n@@reply events")); err != nil {
		t.Fatal(err)
	}
	var task string
	kinds := map[EventKind]int{}
	var states []string
	for {
		e := recv(t, all)
		if task == "" && e.Kind == EventTask {
			task = e.Task
		}
		if e.Task != task {
			continue
		}
		kinds[e.Kind]++
		if e.Kind == EventTask {
			if n := len(states); n == 0 || states[n-1] != e.Info.State {
				states = append(states, e.Info.State)
			}
			if e.Info.State == StateDone {
				break
			}
		}
		if e.Kind == EventAgent && !json.Valid(e.Data) {
			t.Errorf("agent event not JSON: %s", e.Data)
		}
		if e.Kind == EventNetwork && !strings.HasPrefix(e.Line, "DNS A ") {
			t.Errorf("network line: %q", e.Line)
		}
	}
	if kinds[EventAgent] < 3 || kinds[EventNetwork] != 1 {
		t.Errorf("events of the task: %v; want its stream-json events and its network line", kinds)
	}
	want := []string{StateQueued, StateRunning, StateReplying, StateDone}
	if strings.Join(states, ",") != strings.Join(want, ",") {
		t.Errorf("task states: %v; want %v", states, want)
	}
}

// TestProgress: the channel of the reply thread sees the task's phases and
// its todo list as it changes, the final list before the reply.
func TestProgress(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ch := f.chans["app"]
	f.start()
	if err := ch.hand(t, msg("31:1", "@@todo plan|write\n@@todo [x] plan|[>] write\n@@reply progressed")); err != nil {
		t.Fatal(err)
	}
	ch.wait(t, "the reply", func() bool { return len(ch.replies) == 1 })
	ch.mu.Lock()
	prog := append([]channel.Progress(nil), ch.progress...)
	ch.mu.Unlock()
	if len(prog) < 2 || prog[0].Phase != "preparing" {
		t.Fatalf("progress: %+v; want preparing first", prog)
	}
	last := prog[len(prog)-1]
	if last.Phase != "running" || len(last.Todos) != 2 || last.Todos[0].Status != "completed" || last.Todos[1].Status != "in_progress" {
		t.Errorf("last progress: %+v; want running with plan done and write in progress", last)
	}
	ti := f.taskFor("31:1")
	if last.TaskID != ti.ID || last.ConversationID != ti.Conversation {
		t.Errorf("progress names %s/%s; want %s/%s", last.TaskID, last.ConversationID, ti.ID, ti.Conversation)
	}
}

// BenchmarkBusPublish is the cost of one event with N subscribers, half of
// which the event's filter matches.
func BenchmarkBusPublish(b *testing.B) {
	for _, n := range []int{0, 1, 10, 100, 1000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			bus := NewBus(nil)
			stop := make(chan struct{})
			for i := 0; i < n; i++ {
				f := Filter{Task: "t"}
				if i%2 == 1 {
					f.Task = "other"
				}
				s := bus.Subscribe(f)
				go func() {
					for {
						select {
						case <-s.Events():
						case <-stop:
							return
						}
					}
				}()
			}
			e := Event{Kind: EventAgent, Repo: "app", Conversation: "c", Task: "t", Data: []byte(`{"type":"assistant"}`)}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				bus.Publish(e)
			}
			b.StopTimer()
			close(stop)
		})
	}
}
