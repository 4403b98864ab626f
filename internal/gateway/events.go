package gateway

import (
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/airut/airut/internal/redact"
)

// EventKind says what an Event carries.
type EventKind string

// Event kinds.
const (
	// EventTask: a task's tracker state changed; Info is the new snapshot.
	EventTask EventKind = "task"
	// EventAgent: one stream-json line of a running agent, redacted, in
	// Data.
	EventAgent EventKind = "agent"
	// EventNetwork: one line of a task's network log (ALLOWED, BLOCKED,
	// DNS …), redacted, in Line.
	EventNetwork EventKind = "network"
	// EventRepo: a repository's state changed; RepoState is the new one.
	EventRepo EventKind = "repo"
)

// Event is one thing that happened in the gateway, as subscribers see it.
// Events are immutable once published: subscribers share them.
type Event struct {
	// Seq increases by one with every event the gateway publishes; a
	// client that reconnects resumes after the last Seq it saw.
	Seq  uint64
	Time time.Time
	Kind EventKind
	// Repo, Conversation and Task say what the event is about; each is
	// "" where it does not apply (a repo event has no task).
	Repo         string
	Conversation string
	Task         string
	// Info is the task's snapshot after the change (EventTask).
	Info *TaskInfo
	// RepoState is the repository's new state (EventRepo).
	RepoState *RepoStatus
	// Data is the agent's stream-json event (EventAgent), redacted; a line
	// larger than maxEventData is replaced by a stub naming its type and
	// size (the whole line is in events.jsonl).
	Data json.RawMessage
	// Line is the network log line (EventNetwork), redacted.
	Line string
}

// size is what the event costs the ring, roughly.
func (e *Event) size() int { return 256 + len(e.Data) + len(e.Line) }

// Filter selects events; a zero field matches everything.
type Filter struct {
	Repo         string
	Conversation string
	Task         string
	// Kinds, when not empty, are the only kinds delivered.
	Kinds []EventKind
}

func (f *Filter) match(e *Event) bool {
	return (f.Repo == "" || f.Repo == e.Repo) &&
		(f.Conversation == "" || f.Conversation == e.Conversation) &&
		(f.Task == "" || f.Task == e.Task) &&
		(len(f.Kinds) == 0 || slices.Contains(f.Kinds, e.Kind))
}

// Bus errors.
var (
	// ErrSubscriberTooSlow ends a subscription whose buffer was full when
	// an event arrived: the gateway never waits for a subscriber. The
	// subscriber resumes with SubscribeFrom after the last Seq it read.
	ErrSubscriberTooSlow = errors.New("event subscriber too slow: events were dropped")
	// ErrEventsLost is returned by SubscribeFrom when events after the
	// given Seq are no longer kept: the client must reload its state (from
	// Tasks, Repos, events.jsonl) and subscribe afresh.
	ErrEventsLost = errors.New("events after that sequence number are no longer kept")
)

// Bus limits.
const (
	// DefaultSubscriberBuffer is how many events a subscriber may fall
	// behind before it is dropped.
	DefaultSubscriberBuffer = 1024
	// Ring limits: the most recent events are kept for SubscribeFrom, up
	// to this many or this many bytes, whichever is reached first.
	ringEvents = 8192
	ringBytes  = 32 << 20
	// maxEventData caps one agent event on the bus: a 10 MB tool result
	// line must not be copied to every subscriber and kept in the ring.
	maxEventData = 256 << 10
)

// Bus fans the gateway's events out to subscribers: bounded, never
// blocking the publisher, resumable from an in-memory ring by sequence
// number.
type Bus struct {
	now func() time.Time

	mu  sync.Mutex
	seq uint64
	// ring is a circular buffer of the kept events: n of them, the
	// oldest at head. It grows by doubling up to maxEvents.
	ring      []*Event
	head, n   int
	ringBytes int
	maxEvents int
	maxBytes  int
	subs      map[*Subscription]struct{}
}

// NewBus returns an empty bus; now is its clock (time.Now when nil).
func NewBus(now func() time.Time) *Bus {
	if now == nil {
		now = time.Now
	}
	return &Bus{now: now, maxEvents: ringEvents, maxBytes: ringBytes, subs: map[*Subscription]struct{}{}}
}

// Subscription receives the events its filter matches, in Seq order.
type Subscription struct {
	c   chan *Event
	bus *Bus
	f   Filter
	err error // guarded by bus.mu; set when c is closed
}

// Events is closed when the subscription ends; Err then says why. The
// events are shared with other subscribers: read them, never change them.
func (s *Subscription) Events() <-chan *Event { return s.c }

// Err is nil while the subscription runs or after Close, and
// ErrSubscriberTooSlow when the bus dropped it.
func (s *Subscription) Err() error {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	return s.err
}

// Close ends the subscription; Events is closed.
func (s *Subscription) Close() {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	s.bus.drop(s, nil)
}

// Seq is the sequence number of the last event published (0 before the
// first). Recording it before reading a snapshot (Tasks, Repos) and then
// calling SubscribeFrom(seq) sees every change after the snapshot.
func (b *Bus) Seq() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seq
}

// Subscribe returns a subscription to the events published from now on.
func (b *Bus) Subscribe(f Filter) *Subscription {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.add(f, DefaultSubscriberBuffer, nil)
}

// SubscribeFrom returns a subscription that first replays the kept events
// after seq that f matches, then continues live. It fails with
// ErrEventsLost when some event after seq is no longer kept.
func (b *Bus) SubscribeFrom(seq uint64, f Filter) (*Subscription, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if seq > b.seq {
		seq = b.seq // a client ahead of us (after a restart) starts now
	}
	oldest := b.seq + 1 // when nothing is kept
	if b.n > 0 {
		oldest = b.at(0).Seq
	}
	if seq+1 < oldest {
		return nil, ErrEventsLost
	}
	var replay []*Event
	for i := 0; i < b.n; i++ {
		if e := b.at(i); e.Seq > seq && f.match(e) {
			replay = append(replay, e)
		}
	}
	return b.add(f, DefaultSubscriberBuffer+len(replay), replay), nil
}

// at is the i-th kept event, oldest first; b.mu is held.
func (b *Bus) at(i int) *Event { return b.ring[(b.head+i)%len(b.ring)] }

func (b *Bus) add(f Filter, buf int, replay []*Event) *Subscription {
	s := &Subscription{c: make(chan *Event, buf), bus: b, f: f}
	for _, e := range replay {
		s.c <- e
	}
	b.subs[s] = struct{}{}
	return s
}

// drop ends s with err; b.mu is held.
func (b *Bus) drop(s *Subscription, err error) {
	if _, ok := b.subs[s]; !ok {
		return
	}
	delete(b.subs, s)
	s.err = err
	close(s.c)
}

// Publish stamps e with the next Seq and the time, keeps it in the ring and
// hands it to every matching subscriber that has room; a subscriber that
// has none is dropped with ErrSubscriberTooSlow. It never blocks.
func (b *Bus) Publish(e Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	e.Seq = b.seq
	if e.Time.IsZero() {
		e.Time = b.now()
	}
	p := &e
	b.keep(p)
	for s := range b.subs {
		if !s.f.match(p) {
			continue
		}
		select {
		case s.c <- p:
		default:
			b.drop(s, ErrSubscriberTooSlow)
		}
	}
}

// keep adds e to the ring, evicting the oldest events beyond the
// limits; b.mu is held.
func (b *Bus) keep(e *Event) {
	if b.n == len(b.ring) && len(b.ring) < b.maxEvents {
		grown := make([]*Event, min(max(2*len(b.ring), 64), b.maxEvents))
		for i := 0; i < b.n; i++ {
			grown[i] = b.at(i)
		}
		b.ring, b.head = grown, 0
	}
	if b.n == len(b.ring) {
		b.evict()
	}
	b.ring[(b.head+b.n)%len(b.ring)] = e
	b.n++
	b.ringBytes += e.size()
	for b.n > 1 && b.ringBytes > b.maxBytes {
		b.evict()
	}
}

func (b *Bus) evict() {
	e := b.ring[b.head]
	b.ringBytes -= e.size()
	b.ring[b.head] = nil
	b.head = (b.head + 1) % len(b.ring)
	b.n--
}

// agentEventData is what the bus carries of one stream-json line:
// redacted, or a stub when it is too large to carry.
func agentEventData(line []byte, typ string, reg *redact.Registry) json.RawMessage {
	if len(line) <= maxEventData {
		return json.RawMessage(reg.Redact(string(line)))
	}
	stub, _ := json.Marshal(struct {
		Type      string `json:"type"`
		Truncated int    `json:"airut_truncated_bytes"`
	}{typ, len(line)})
	return stub
}
