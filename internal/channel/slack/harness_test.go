package slack_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/airut/airut/internal/channel"
	slackch "github.com/airut/airut/internal/channel/slack"
	"github.com/airut/airut/internal/testkit/slacktest"
)

// The fake workspace's people and channels.
const (
	alice   = slacktest.Alice
	bob     = slacktest.Bob
	guest   = slacktest.Guest
	gone    = slacktest.Gone
	botUser = slacktest.BotUser
	foreign = slacktest.Foreign
	general = slacktest.General
	secret  = slacktest.Secret
	dmChan  = "D0ALICE"
)

// harness runs a channel against the fake and collects what it hands to
// the gateway.
type harness struct {
	t     *testing.T
	fake  *slacktest.Server
	ch    *slackch.Channel
	cfg   slackch.Config
	logs  *logRecorder
	msgs  chan *channel.Message
	ctx   context.Context
	clock *fakeClock
	stop  func() // ends Run and waits for it
}

type option func(*slackch.Config)

func withRules(r ...slackch.Rule) option { return func(c *slackch.Config) { c.Authorized = r } }

func withClock(fc *fakeClock) option { return func(c *slackch.Config) { c.Clock = fc } }

func newHarness(t *testing.T, opts ...option) *harness {
	t.Helper()
	fake := slacktest.New(t)
	fake.SeedWorkspace()
	cfg := slackch.Config{
		BotToken:   slacktest.BotToken,
		AppToken:   slacktest.AppToken,
		APIURL:     fake.APIURL,
		Authorized: []slackch.Rule{{WorkspaceMembers: true}},
		StateDir:   t.TempDir(),
	}
	for _, o := range opts {
		o(&cfg)
	}
	return startHarness(t, fake, cfg)
}

func startHarness(t *testing.T, fake *slacktest.Server, cfg slackch.Config) *harness {
	t.Helper()
	logs := &logRecorder{}
	ch, err := slackch.New(cfg, slog.New(logs))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, fake: fake, ch: ch, cfg: cfg, logs: logs, msgs: make(chan *channel.Message, 100), ctx: ctx}
	if fc, ok := cfg.Clock.(*fakeClock); ok {
		h.clock = fc
	}
	done := make(chan error, 1)
	go func() {
		done <- ch.Run(ctx, func(_ context.Context, m *channel.Message) error { h.msgs <- m; return nil })
	}()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(h.stop)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := fake.WaitConnected(wctx, 1); err != nil {
		t.Fatal(err)
	}
	h.waitHealth(slackch.StateHealthy)
	return h
}

// event sends an Events API event through the socket.
func (h *harness) event(ev map[string]any) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.ctx, 15*time.Second)
	defer cancel()
	if err := h.fake.Event(ctx, ev); err != nil {
		h.t.Fatalf("event: %v", err)
	}
}

// next waits for the next message handed over.
func (h *harness) next() *channel.Message {
	h.t.Helper()
	select {
	case m := <-h.msgs:
		return m
	case <-time.After(10 * time.Second):
		h.t.Fatal("no message handed over")
		return nil
	}
}

// none checks that nothing was handed over: a sentinel message sent after
// the events under test must come out first.
func (h *harness) none() {
	h.t.Helper()
	ts := h.fake.NewTS()
	h.event(dmEvent(alice, "sentinel", ts, ""))
	m := h.next()
	if m.Body != "sentinel" {
		h.t.Fatalf("got message %q (%s); want nothing before the sentinel", m.Body, m.SourceID)
	}
}

func (h *harness) waitHealth(want slackch.State) slackch.Health {
	h.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := h.ch.Health()
		if got.State == want {
			return got
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("health %s (%s); want %s", got.State, got.Reason, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitLog waits for a log record with msg whose attribute key is value.
func (h *harness) waitLog(msg, key, value string) logRecord {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got := h.logs.find(msg, key, value); len(got) > 0 {
			return got[0]
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("no log record %q with %s=%s", msg, key, value)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitCalls waits until method was called at least n times.
func (h *harness) waitCalls(method string, n int) []slacktest.Call {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		calls := h.fake.Calls(method)
		if len(calls) >= n {
			return calls
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s called %d times; want %d", method, len(calls), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) threads() map[string]string {
	h.t.Helper()
	data, err := os.ReadFile(filepath.Join(h.cfg.StateDir, "slack_threads.json"))
	if err != nil {
		h.t.Fatalf("thread store: %v", err)
	}
	return parseThreads(h.t, data)
}

func dmEvent(user, text, ts, threadTS string) map[string]any {
	return slacktest.DM(dmChan, user, text, ts, threadTS)
}

var (
	mentionEvent   = slacktest.Mention
	channelMessage = slacktest.ChannelMessage
)

// logRecorder keeps every log record's message and attributes.
type logRecorder struct {
	mu   sync.Mutex
	recs []logRecord
}

type logRecord struct {
	msg   string
	attrs map[string]string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs(as []slog.Attr) slog.Handler    { return &boundLogger{l: l, attrs: as} }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	return (&boundLogger{l: l}).Handle(context.Background(), r)
}

type boundLogger struct {
	l     *logRecorder
	attrs []slog.Attr
}

func (b *boundLogger) Enabled(context.Context, slog.Level) bool { return true }
func (b *boundLogger) WithAttrs(as []slog.Attr) slog.Handler {
	return &boundLogger{l: b.l, attrs: append(append([]slog.Attr(nil), b.attrs...), as...)}
}
func (b *boundLogger) WithGroup(string) slog.Handler { return b }
func (b *boundLogger) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{msg: r.Message, attrs: map[string]string{}}
	for _, a := range b.attrs {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	b.l.mu.Lock()
	b.l.recs = append(b.l.recs, rec)
	b.l.mu.Unlock()
	return nil
}

// find returns the records with msg whose attribute key equals value.
func (l *logRecorder) find(msg, key, value string) []logRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []logRecord
	for _, r := range l.recs {
		if r.msg == msg && (key == "" || r.attrs[key] == value) {
			out = append(out, r)
		}
	}
	return out
}

// fakeClock is a Clock moved by hand.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	at      time.Time
	f       func()
	stopped bool
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) slackch.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

// Advance moves time on and runs the timers that are due, in order.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	var rest []*fakeTimer
	for _, t := range c.timers {
		switch {
		case t.stopped:
		case !t.at.After(c.now):
			t.stopped = true
			due = append(due, t)
		default:
			rest = append(rest, t)
		}
	}
	c.timers = rest
	c.mu.Unlock()
	sort.Slice(due, func(i, j int) bool { return due[i].at.Before(due[j].at) })
	for _, t := range due {
		t.f()
	}
}
