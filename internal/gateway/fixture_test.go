package gateway

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/redact"
	"github.com/airut/airut/internal/sandbox"
	"github.com/airut/airut/internal/testkit"
	"github.com/airut/airut/internal/testkit/hostsandbox"
)

// testWait bounds every wait of these tests: a hang fails the test.
const testWait = 2 * time.Minute

// fakeChannel is a channel the test drives: it hands over the messages
// the test gives it and records what the gateway did with them. It is a
// Prober, a Progresser and a Starter.
type fakeChannel struct {
	name string
	// replyErr and doneErr, when set, decide each call's error; n counts
	// the calls from 1.
	replyErr func(n int, m *channel.Message, r channel.Reply) error
	doneErr  func(n int, m *channel.Message) error

	mu       sync.Mutex
	handler  channel.Handler
	ctx      context.Context
	running  chan struct{}
	runs     int
	acks     []string
	replyN   int
	doneN    int
	replies  []sentReply
	dones    []doneCall
	progress []channel.Progress
	probeErr error
	probes   int
	changed  chan struct{}
}

type sentReply struct {
	To  channel.Message
	R   channel.Reply
	New *Delivery // set for a new thread (Send)
}

type doneCall struct {
	SourceID string
	Outcome  channel.Outcome
}

func newFakeChannel(name string) *fakeChannel {
	return &fakeChannel{name: name, running: make(chan struct{}), changed: make(chan struct{})}
}

func (f *fakeChannel) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeChannel) Name() string { return f.name }

func (f *fakeChannel) Run(ctx context.Context, h channel.Handler) error {
	f.mu.Lock()
	f.handler, f.ctx = h, ctx
	f.runs++
	close(f.running)
	f.notifyLocked()
	f.mu.Unlock()
	<-ctx.Done()
	f.mu.Lock()
	f.handler = nil
	f.running = make(chan struct{})
	f.mu.Unlock()
	return nil
}

// hand gives m to the gateway as the channel's receive loop would, once
// the loop runs, and returns the handler's answer.
func (f *fakeChannel) hand(t testing.TB, m *channel.Message) error {
	t.Helper()
	deadline := time.After(testWait)
	for {
		f.mu.Lock()
		h, ctx, running := f.handler, f.ctx, f.running
		f.mu.Unlock()
		if h != nil {
			return h(ctx, m)
		}
		select {
		case <-running:
		case <-deadline:
			t.Fatalf("channel %s never ran", f.name)
		}
	}
}

func (f *fakeChannel) Acknowledge(_ context.Context, m *channel.Message, conv string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acks = append(f.acks, m.SourceID)
	f.notifyLocked()
	return nil
}

func (f *fakeChannel) Reply(_ context.Context, m *channel.Message, r channel.Reply) error {
	return f.reply(*m, r, nil)
}

func (f *fakeChannel) Send(_ context.Context, to []string, subject, conv string, r channel.Reply) error {
	r.ConversationID = conv
	return f.reply(channel.Message{}, r, &Delivery{To: to, Subject: subject})
}

func (f *fakeChannel) reply(m channel.Message, r channel.Reply, d *Delivery) error {
	f.mu.Lock()
	f.replyN++
	n, fn := f.replyN, f.replyErr
	f.mu.Unlock()
	if fn != nil {
		if err := fn(n, &m, r); err != nil {
			f.mu.Lock()
			f.notifyLocked()
			f.mu.Unlock()
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replies = append(f.replies, sentReply{To: m, R: r, New: d})
	f.notifyLocked()
	return nil
}

func (f *fakeChannel) Done(_ context.Context, m *channel.Message, o channel.Outcome) error {
	f.mu.Lock()
	f.doneN++
	n, fn := f.doneN, f.doneErr
	f.mu.Unlock()
	if fn != nil {
		if err := fn(n, m); err != nil {
			f.mu.Lock()
			f.notifyLocked()
			f.mu.Unlock()
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dones = append(f.dones, doneCall{SourceID: m.SourceID, Outcome: o})
	f.notifyLocked()
	return nil
}

func (f *fakeChannel) Progress(_ context.Context, _ *channel.Message, p channel.Progress) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.progress = append(f.progress, p)
	f.notifyLocked()
	return nil
}

func (f *fakeChannel) Probe(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probes++
	f.notifyLocked()
	return f.probeErr
}

func (f *fakeChannel) setProbeErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probeErr = err
}

// wait waits until cond, evaluated under the channel's lock, holds.
func (f *fakeChannel) wait(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(testWait)
	for {
		f.mu.Lock()
		ok, c := cond(), f.changed
		f.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-c:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// counts returns how often Reply (or Send) and Done were called.
func (f *fakeChannel) counts() (replies, dones int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.replyN, f.doneN
}

func (f *fakeChannel) snapshot() (replies []sentReply, dones []doneCall, acks []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sentReply(nil), f.replies...), append([]doneCall(nil), f.dones...), append([]string(nil), f.acks...)
}

var _ interface {
	channel.Channel
	channel.Prober
	channel.Progresser
	channel.Starter
} = (*fakeChannel)(nil)

// fixture is a gateway on a real git origin with fake channels, on the
// host sandbox (no Podman needed) or on real Podman.
type fixture struct {
	t       testing.TB
	o       fixtureOpts
	bins    string
	origin  string
	state   string
	prefix  string
	engine  string // "" on the host sandbox
	sb      *hostsandbox.Sandbox
	backend *Backend
	chans   map[string]*fakeChannel // by repo id
	logs    *testkit.SyncBuffer
	g       *Gateway
	cancel  context.CancelFunc
	done    chan error
}

type fixtureOpts struct {
	// podman runs on the real engine instead of the host sandbox.
	podman        bool
	maxConcurrent int
	imagePrune    bool
	maxAgeDays    int
	timeout       int // resource_limits.timeout in s; 0 = none
	shutdown      int // execution.shutdown_timeout in s; 0 = 10
	clock         func() time.Time
	repos         []string // default ["app"]
	noSandboxNet  bool
}

// podmanPrefix names what the fixtures create on real Podman: one per test
// process, so that the images are built once; TestMain removes them.
var podmanPrefix = "airut-gwu-" + testkit.RandomHex(4)

func TestMain(m *testing.M) {
	code := m.Run()
	if engine, err := exec.LookPath("podman"); err == nil {
		_ = exec.Command(engine, "network", "rm", "-f", podmanPrefix+"-egress").Run()
		if out, err := exec.Command(engine, "images", "--format", "{{.Repository}}:{{.Tag}}").Output(); err == nil {
			var imgs []string
			for _, l := range strings.Fields(string(out)) {
				if strings.HasPrefix(l, "localhost/"+podmanPrefix) {
					imgs = append(imgs, l)
				}
			}
			if len(imgs) > 0 {
				_ = exec.Command(engine, append([]string{"rmi", "-f"}, imgs...)...).Run()
			}
		}
	}
	os.Exit(code)
}

// backends lists the backends a test that drives the sandbox should run
// on: the host sandbox everywhere, and real Podman where it is (always
// under CI=true, where it must be).
func backends(t *testing.T) []string {
	out := []string{"host"}
	if _, err := exec.LookPath("podman"); err == nil || os.Getenv("CI") == "true" {
		out = append(out, "podman")
	}
	return out
}

func newFixture(t testing.TB, o fixtureOpts) *fixture {
	t.Helper()
	bins, err := testkit.BuildBinaries()
	if err != nil {
		t.Fatal(err)
	}
	if len(o.repos) == 0 {
		o.repos = []string{"app"}
	}
	f := &fixture{t: t, o: o, bins: bins, state: t.TempDir(), logs: &testkit.SyncBuffer{}, chans: map[string]*fakeChannel{}}
	dockerfile := "FROM scratch\n"
	if o.podman {
		f.engine = testkit.RequireEngine(t)
		dockerfile = testkit.DefaultDockerfile(testkit.BaseImage(t, f.engine))
		f.prefix = podmanPrefix
		testkit.RemoveImages(t, f.engine, f.prefix+"-"+sandbox.InstanceID(f.state))
	}
	f.origin = testkit.GitRepo(t, map[string]string{
		".airut/container/Dockerfile":   dockerfile,
		".airut/network-allowlist.yaml": "domains:\n  - api.example.test\n",
		"README.md":                     "# app\n",
	})
	for _, id := range o.repos {
		f.chans[id] = newFakeChannel("fake")
	}
	t.Cleanup(f.cleanup)
	return f
}

func (f *fixture) config() *config.Config {
	o := f.o
	cfg := &config.Config{
		Execution: config.Execution{
			MaxConcurrent: max(o.maxConcurrent, 1), ShutdownTimeout: 10,
			ConversationMaxAgeDays: o.maxAgeDays, ImagePrune: o.imagePrune,
			ClaudeBinary: filepath.Join(f.bins, "fakeclaude"),
		},
		Repos: map[string]*config.Repo{},
	}
	if o.shutdown > 0 {
		cfg.Execution.ShutdownTimeout = o.shutdown
	}
	for _, id := range o.repos {
		cfg.Repos[id] = f.repoConfig()
	}
	return cfg
}

func (f *fixture) repoConfig() *config.Repo {
	return &config.Repo{RepoURL: f.origin, Model: "opus", ContainerPath: ".airut/container",
		ClaudeBinary:   filepath.Join(f.bins, "fakeclaude"),
		Network:        config.RepoNetwork{SandboxEnabled: !f.o.noSandboxNet},
		ResourceLimits: config.ResourceLimits{Timeout: f.o.timeout}}
}

// newGateway builds a gateway on the fixture's state, with fresh
// channel instances' bookkeeping kept (the fakes outlive a restart, as a
// mailbox does).
func (f *fixture) newGateway(cfg *config.Config) *Gateway {
	f.t.Helper()
	if f.backend == nil {
		if f.o.podman {
			b, err := NewBackend(cfg, f.prefix, f.state, slog.New(slog.DiscardHandler), f.o.clock)
			if err != nil {
				f.t.Fatal(err)
			}
			f.backend = b
		} else {
			f.sb = hostsandbox.New()
			f.backend = &Backend{Runner: f.sb, Images: f.sb, ProxyNetwork: f.sb.ProxyNetwork}
		}
	}
	reg := redact.NewRegistry()
	logger := slog.New(redact.NewHandler(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}), reg))
	g, err := New(cfg, Options{
		StateDir: f.state, Logger: logger, Registry: reg, Clock: f.o.clock, Prefix: f.prefix,
		ProxyBinary: filepath.Join(f.bins, "airut-proxy"), StopGrace: 2 * time.Second, Backend: f.backend,
		Channels: map[string]ChannelFactory{"fake": func(env ChannelEnv) (channel.Channel, error) {
			return f.chans[env.RepoID], nil
		}},
	})
	if err != nil {
		f.t.Fatal(err)
	}
	ms := time.Millisecond
	g.timing = timing{replyMin: ms, replyMax: 4 * ms, doneMin: ms, doneMax: 4 * ms, probe: time.Second,
		reprobeMin: ms, reprobeMax: 5 * ms, restartMin: 5 * ms, restartMax: 20 * ms}
	return g
}

// start runs a gateway and waits until every repo is live.
func (f *fixture) start() *Gateway {
	f.t.Helper()
	return f.startWith(f.config())
}

func (f *fixture) startWith(cfg *config.Config) *Gateway {
	f.t.Helper()
	f.g = f.newGateway(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan error, 1)
	g := f.g
	go func() { f.done <- g.Run(ctx) }()
	for id := range cfg.Repos {
		f.waitRepo(id, RepoLive)
	}
	return g
}

func (f *fixture) stop() {
	if f.cancel == nil {
		return
	}
	f.cancel()
	f.cancel = nil
	select {
	case err := <-f.done:
		if err != nil {
			f.t.Errorf("gateway Run: %v", err)
		}
	case <-time.After(testWait):
		f.t.Errorf("gateway did not stop")
	}
}

// restart stops the gateway and starts a new one on the same state, as
// a process restart does.
func (f *fixture) restart() *Gateway {
	f.t.Helper()
	f.stop()
	return f.start()
}

func (f *fixture) cleanup() {
	f.stop()
	if f.t.Failed() {
		f.t.Logf("gateway log:\n%s", f.logs.String())
	}
	if f.sb != nil {
		if running, nets := f.sb.Leftovers(); running+nets != 0 {
			f.t.Errorf("left behind on the host sandbox: %d processes, %d networks", running, nets)
		}
	}
	if f.engine != "" {
		if left := testkit.Leftovers(f.engine, f.prefix); len(left) > 0 {
			f.t.Errorf("left behind: %s", strings.Join(left, ", "))
		}
	}
	for _, id := range f.o.repos {
		left, _ := os.ReadDir(filepath.Join(f.state, id, "spool"))
		if len(left) != 0 && !f.t.Failed() {
			f.t.Errorf("repo %s: %d message spools left behind", id, len(left))
		}
	}
}

func (f *fixture) waitRepo(id, state string) {
	f.t.Helper()
	poll(f.t, "repo "+id+" to be "+state, func() bool {
		for _, s := range f.g.Repos() {
			if s.ID == id && s.State == state {
				return true
			}
		}
		return false
	})
}

// poll waits for cond, for state the gateway exposes only by snapshot.
func poll(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitTask waits until task id is in state.
func (f *fixture) waitTask(id, state string) TaskInfo {
	f.t.Helper()
	var ti TaskInfo
	poll(f.t, "task "+id+" to be "+state, func() bool {
		var ok bool
		ti, ok = f.g.Task(id)
		return ok && ti.State == state
	})
	return ti
}

// taskFor waits for the task of the message with that source id.
func (f *fixture) taskFor(sourceID string) TaskInfo {
	f.t.Helper()
	var got TaskInfo
	poll(f.t, "a task for "+sourceID, func() bool {
		for _, ti := range f.g.Tasks() {
			if ti.Subject == sourceID {
				got = ti
				return true
			}
		}
		return false
	})
	return got
}

func (f *fixture) convDir(repo, conv string) string {
	return filepath.Join(f.state, repo, "conversations", conv)
}

// release lets a blocked agent of conv go on.
func (f *fixture) release(repo, conv string) {
	f.t.Helper()
	if err := os.WriteFile(filepath.Join(f.convDir(repo, conv), "storage", "go"), nil, 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) waitStarted(repo, conv string) {
	f.t.Helper()
	poll(f.t, "the agent of "+conv+" to start", func() bool {
		_, err := os.Stat(filepath.Join(f.convDir(repo, conv), "storage", "started"))
		return err == nil
	})
}

// Agent scripts (fakeclaude). Paths are relative to the working
// directory, /workspace, so they mean the same on both backends.
const blockLines = "@@run touch ../storage/started\n@@run while [ ! -e ../storage/go ]; do sleep 0.05; done\n"

func block(reply string) string { return blockLines + "@@reply " + reply + "\n" }

// msg is a message whose subject is its source id (taskFor finds it).
func msg(sourceID, body string) *channel.Message {
	return &channel.Message{SourceID: sourceID, MessageID: sourceID + "@example.com", SenderAddress: "alice@example.com",
		SenderName: "Alice", Subject: sourceID, Body: body, Time: time.Now().UTC(),
		Thread: map[string]string{"message_id": sourceID}}
}

func replyOf(rs []sentReply, sourceID string) (sentReply, int) {
	var got sentReply
	n := 0
	for _, r := range rs {
		if r.To.SourceID == sourceID {
			got = r
			n++
		}
	}
	return got, n
}
