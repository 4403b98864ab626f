package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/airut/airut/internal/agent"
	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/conversation"
	"github.com/airut/airut/internal/redact"
	"github.com/airut/airut/internal/sandbox"
	"github.com/airut/airut/internal/secrets"
)

// stderrTailLines is how many stderr lines are kept for error replies.
const stderrTailLines = 20

// taskResult is what a task amounts to, for its reply and its record.
type taskResult struct {
	outcome agent.Outcome
	// reason explains infrastructure failures and other non-agent outcomes.
	reason   string
	res      agent.Result
	exitCode int
	stderr   []string
	// recovered: the conversation's session could not be resumed and the
	// task ran again with a fresh one.
	recovered bool
	timeout   time.Duration
	// subscription: Claude Code ran on a subscription login, where the
	// cost it reports is notional.
	subscription bool
	// unavailable: the run failed on the model service (429, 5xx) after
	// the CLI's own retries.
	unavailable bool
	// imageMissing: the container could not start because its image was
	// removed outside Airut (nothing ran).
	imageMissing bool
	// notReady: the container started early, but what its command waited
	// for failed (sandbox.ErrNotReady); nothing ran.
	notReady bool
	// credential names the Claude credential the repo configures, for an
	// auth_failed reply ("" when it has none).
	credential string
	model      string
	// eventsFrom is where the task's events start in events.jsonl;
	// eventsKnown is false when it never got the conversation lock (its
	// range is then empty).
	eventsFrom  int64
	eventsKnown bool
	started     time.Time
	finished    time.Time
	dir         *conversation.Dir
}

// infra builds the result of a failure around the agent.
func infra(format string, args ...any) taskResult {
	return taskResult{outcome: agent.OutcomeInfrastructure, reason: fmt.Sprintf(format, args...)}
}

// execute runs the task: workspace, repo config, image, network, agent.
func (j *job) execute(items []*item, log *slog.Logger) (tr taskResult) {
	h, g := j.h, j.h.g
	ctx := j.ctx
	started := g.now()
	defer func() {
		tr.started = started
		if ctx.Err() != nil && tr.outcome == agent.OutcomeInfrastructure {
			// A failure caused by the cancellation is the cancellation.
			tr.outcome, tr.reason = agent.OutcomeCancelled, "stopped"
		}
	}()
	if ctx.Err() != nil {
		return taskResult{outcome: agent.OutcomeCancelled, reason: "stopped before it started"}
	}

	dir, err := h.store.Open(j.conv)
	if err != nil {
		return infra("conversation %s: %v", j.conv, err)
	}
	lock, err := h.store.Lock(ctx, j.conv)
	if err != nil {
		r := infra("conversation lock: %v", err)
		r.dir = dir
		return r
	}
	defer lock.Unlock()
	// The task's transcript starts where the conversation's events end
	// now; the dashboard reads it from there while the task runs.
	tr.eventsFrom = fileSize(dir.EventsPath())
	g.tracker.update(j.id, func(ti *TaskInfo) { ti.EventsFrom = tr.eventsFrom })
	from := tr.eventsFrom
	tr = j.prepareAndRun(ctx, dir, items, log)
	tr.dir, tr.eventsFrom, tr.eventsKnown = dir, from, true
	return tr
}

func (j *job) prepareAndRun(ctx context.Context, dir *conversation.Dir, items []*item, log *slog.Logger) taskResult {
	g := j.h.g
	rc := j.rc
	path := newStartPath(log)
	prog := j.startProgress(items, log)
	defer prog.stop()
	rec, err := dir.Load()
	if err != nil {
		return infra("conversation %s: %v", j.conv, err)
	}

	// From here to the end of the run, the Claude version GC keeps off the
	// binary this task resolves (gc.go).
	g.resolveMu.RLock()
	defer g.resolveMu.RUnlock()
	claudeBin, err := g.claudeBinary(ctx, rc)
	if err != nil {
		return infra("%v", err)
	}
	path.mark("claude_binary")
	placed, err := j.h.placeWorkspace(dir)
	if err != nil {
		return infra("workspace: %v", err)
	}
	prep, err := j.beginSandbox(ctx, dir, log, path, placed)
	if err != nil {
		return infra("%v", err)
	}
	defer prep.cleanup()
	env, mode, provider := agent.Env(), prep.mode, prep.provider
	for k, v := range prep.env {
		env[k] = v
	}

	var names []string
	var msgs []agent.PromptMessage
	for _, it := range items {
		for _, a := range it.atts {
			n, err := saveSpooled(dir, a)
			if err != nil {
				return infra("saving attachment %q: %v", a.Name, err)
			}
			names = append(names, n)
		}
		msgs = append(msgs, agent.PromptMessage{SenderName: it.msg.SenderName, SenderAddress: it.msg.SenderAddress,
			Time: it.msg.Time, Body: it.msg.Body})
	}
	in := agent.PromptInput{Channel: items[0].ch.Name(), Attachments: names, Messages: msgs}
	if len(rec.Tasks) == 0 {
		in.Subject = items[0].msg.Subject
	}

	model := rec.Model
	if model == "" {
		model = rc.Model
	}
	effort := rc.Effort
	for _, it := range items {
		if it.msg.Model != "" {
			model = it.msg.Model
		}
		if it.sub != nil && it.sub.Effort != "" {
			effort = it.sub.Effort
		}
	}
	g.tracker.update(j.id, func(ti *TaskInfo) { ti.Model = model })

	var image string
	var ready func(context.Context) error
	runProvider := provider
	run := func(session, prompt string) taskResult {
		return j.runAgent(ctx, agentRun{
			dir: dir, image: image, claudeBin: claudeBin, env: env, mode: mode, provider: runProvider,
			opts: agent.Options{Model: model, Effort: effort, SessionID: session}, prompt: prompt, ready: ready,
		}, prog, log)
	}
	var sb preparedSandbox
	var tr taskResult
	// The next new conversation's workspace is cloned once this task's
	// own start is over.
	defer j.h.refillWorkspace()
	if early := j.h.lastImage.Load(); early != nil {
		// The container starts on the image the last task had while the
		// mirror is fetched, the workspace cloned into its mount and the
		// proxy claimed; its command runs once all that is done and the
		// image is still the one .airut/ asks for.
		image = *early
		ready = func(ctx context.Context) error {
			var err error
			if sb, err = prep.wait(ctx); err != nil {
				return err
			}
			if sb.image != image {
				return errImageChanged
			}
			path.finish("ready")
			prog.phase(channel.PhaseRunning)
			return nil
		}
		tr = run(rec.SessionID, agent.Prompt(in))
		ready = nil
		if tr.notReady || sb.image == "" {
			// The container ended before its command could run (the
			// image was removed, a claim or the preparation failed, the
			// image changed): a failed preparation is the task's
			// failure, anything else is handled below as without the
			// early start.
			if sb, err = prep.wait(ctx); err != nil {
				return infra("%v", err)
			}
		}
		if tr.notReady {
			log.Info("the task's early start was not used; starting it again", "reason", tr.reason)
			prog.phase(channel.PhaseRunning)
			image = sb.image
			if provider != nil {
				runProvider = timedProvider{provider, path}
			}
			tr = run(rec.SessionID, agent.Prompt(in))
		}
	} else {
		if sb, err = prep.wait(ctx); err != nil {
			return infra("%v", err)
		}
		image, ready = sb.image, nil
		if provider != nil {
			runProvider = timedProvider{provider, path}
		}
		prog.phase(channel.PhaseRunning)
		tr = run(rec.SessionID, agent.Prompt(in))
	}
	if sb.image != "" {
		j.h.lastImage.Store(&sb.image)
	}
	if tr.imageMissing {
		// Nothing ran: the image is ensured again (rebuilt) and the task
		// started once more.
		log.Warn("the task image was removed outside Airut; ensuring it again", "image", image)
		if image, err = sb.reimage(ctx); err != nil {
			return infra("building the container image failed: %v", err)
		}
		tr = run(rec.SessionID, agent.Prompt(in))
	}
	if rec.SessionID != "" && tr.outcome.Retryable() {
		log.Warn("session could not be resumed; retrying once with a fresh session", logOutcome, string(tr.outcome))
		tr = run("", agent.RecoveryPrompt(in, rec.LastReply()))
		tr.recovered = true
	}
	tr.model = model
	tr.credential = claudeCredential(rc)
	return tr
}

// errImageChanged fails an early start whose image is not the one the
// task's .airut/ asks for.
var errImageChanged = errors.New("the repository's container image changed since the last task")

// truncatedType is the type of the event that stands in events.jsonl for
// an output line the sandbox cut at its line limit.
const truncatedType = "airut_truncated"

// truncatedEvent is that stand-in: it names how much of the line came.
func truncatedEvent(kept int) []byte {
	return []byte(`{"type":"` + truncatedType + `","kept_bytes":` + strconv.Itoa(kept) + `}`)
}

// saveSpooled copies one spooled attachment into the conversation's inbox.
func saveSpooled(dir *conversation.Dir, a spooled) (string, error) {
	f, err := os.Open(a.Path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return dir.SaveAttachmentFrom(a.Name, f)
}

// publish puts an event about this task on the bus.
func (j *job) publish(kind EventKind, fill func(*Event)) {
	e := Event{Kind: kind, Repo: j.h.id, Conversation: j.conv, Task: j.id}
	fill(&e)
	j.h.g.bus.Publish(e)
}

// claudeCredentialNames are the variables Claude Code authenticates with.
var claudeCredentialNames = []string{"ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"}

// claudeCredential names where the repo's Claude credential is configured,
// as the operator finds it in airut.yaml: "masked_secrets.ANTHROPIC_API_KEY".
func claudeCredential(rc *config.Repo) string {
	var found []string
	for _, name := range claudeCredentialNames {
		if _, ok := rc.MaskedSecrets[name]; ok {
			found = append(found, "masked_secrets."+name)
		}
		if _, ok := rc.Secrets[name]; ok {
			found = append(found, "secrets."+name)
		}
	}
	return strings.Join(found, " and ")
}

// proxyNetwork prepares the network sandbox of one task, whose allowlist
// is delivered once read (sandbox.ProxyNetwork.Pending): the proxy image
// (leased until the returned cleanup), the secrets for the proxy (written
// by the sandbox into its private directory under the state directory,
// never under /tmp) and the network log appended to the conversation and
// published on the event bus.
func (j *job) proxyNetwork(dir *conversation.Dir, allowlist func(context.Context) ([]byte, error), smap *secrets.Map) (sandbox.NetworkProvider, func(), error) {
	g := j.h.g
	bin, err := g.proxyBinary()
	if err != nil {
		return nil, nil, err
	}
	var upstreamCA []byte
	if p := j.cfg.Network.UpstreamCA; p != "" {
		if upstreamCA, err = os.ReadFile(p); err != nil {
			return nil, nil, fmt.Errorf("network.upstream_ca: %w", err)
		}
	}
	dns := j.cfg.Network.UpstreamDNS
	if dns != "" {
		if _, _, err := net.SplitHostPort(dns); err != nil {
			dns = net.JoinHostPort(dns, "53")
		}
	}
	proxyImage, releaseImage, err := j.backend.Images.EnsureProxy(j.ctx, bin)
	if err != nil {
		return nil, nil, err
	}
	f, err := os.OpenFile(dir.NetworkLog(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		releaseImage()
		return nil, nil, err
	}
	var mu sync.Mutex
	closeLog := func() {
		mu.Lock()
		f.Close()
		mu.Unlock()
		releaseImage()
	}
	p, cleanup := g.networkProvider(j.backend, closeLog, sandbox.ProxyNetwork{
		ProxyImage: proxyImage, Pending: allowlist, Secrets: smap,
		Resolve: j.cfg.Network.Resolve, UpstreamCA: upstreamCA, UpstreamDNS: dns,
		NetworkLog: func(line string) {
			line = g.opts.Registry.Redact(line)
			mu.Lock()
			fmt.Fprintln(f, line)
			mu.Unlock()
			j.publish(EventNetwork, func(e *Event) { e.Line = line })
		},
	})
	return p, cleanup, nil
}

type agentRun struct {
	dir       *conversation.Dir
	image     string
	claudeBin string
	env       map[string]string
	mode      sandbox.NetworkMode
	provider  sandbox.NetworkProvider
	opts      agent.Options
	prompt    string
	// ready, when set, is what the started container's command waits for
	// (sandbox.Spec.Ready).
	ready func(context.Context) error
}

// runAgent runs Claude Code once in a fresh container and classifies how
// it ended. The session id is saved even from a run that did not succeed,
// so a timed-out task can be resumed.
func (j *job) runAgent(ctx context.Context, a agentRun, prog *progress, log *slog.Logger) taskResult {
	g := j.h.g
	rc := j.rc
	reader := agent.NewReader(0)
	if a.opts.SessionID != "" {
		// CLIs without model_usage_since_last_result report only the
		// session's running total: this task's cost is its growth.
		reader.PrevTotalCostUSD = lastTotalCost(a.dir, a.opts.SessionID)
	}
	reader.OnTodo = func(todos []agent.Todo) {
		g.tracker.update(j.id, func(ti *TaskInfo) { ti.Todos = append([]agent.Todo(nil), todos...) })
		prog.todos(todos)
	}
	var errMu sync.Mutex
	var stderr []string
	var login loginKind
	limits := sandbox.Limits{
		Timeout: rc.ResourceLimits.TimeoutDuration(), Memory: rc.ResourceLimits.Memory,
		PidsLimit: rc.ResourceLimits.PidsLimit,
	}
	if rc.ResourceLimits.CPUs > 0 {
		limits.CPUs = strconv.FormatFloat(rc.ResourceLimits.CPUs, 'f', -1, 64)
	}
	spec := sandbox.Spec{
		Context: j.conv,
		Image:   a.image,
		Command: agent.Command(a.opts),
		Env:     a.env,
		Mounts: []sandbox.Mount{
			{Source: a.dir.Workspace(), Target: "/workspace"},
			{Source: a.dir.Claude(), Target: "/root/.claude"},
			{Source: a.dir.Inbox(), Target: "/inbox"},
			{Source: a.dir.Outbox(), Target: "/outbox"},
			{Source: a.dir.Storage(), Target: "/storage"},
			{Source: a.claudeBin, Target: agent.BinaryPath, ReadOnly: true},
		},
		Workdir:   "/workspace",
		Limits:    limits,
		Network:   a.mode,
		Provider:  a.provider,
		Stdin:     strings.NewReader(a.prompt),
		Ready:     a.ready,
		StopGrace: g.opts.StopGrace,
		Stdout: func(line []byte) {
			reader.Feed(line)
			login.feed(line)
			ev, err := agent.ParseEvent(line)
			if err != nil {
				if !bytes.HasSuffix(line, []byte(sandbox.TruncatedMarker)) {
					return // not an event: it only goes to the reader's tail
				}
				// An event longer than the sandbox delivers: the transcript
				// says one was cut rather than skip it silently.
				kept := len(line)
				line, ev.Type = truncatedEvent(kept), truncatedType
				log.Warn("agent output line cut by the sandbox's line limit", "kept_bytes", kept)
			}
			line = bytes.TrimSpace(line)
			if err := a.dir.AppendEvent(line); err != nil {
				log.Warn("event not recorded", logError, err)
			}
			data := agentEventData(line, ev.Type, g.opts.Registry)
			j.publish(EventAgent, func(e *Event) { e.Data = data })
		},
		Stderr: func(line []byte) {
			errMu.Lock()
			defer errMu.Unlock()
			stderr = append(stderr, string(line))
			if len(stderr) > stderrTailLines {
				stderr = stderr[len(stderr)-stderrTailLines:]
			}
		},
	}
	sres := j.backend.Runner.Run(ctx, spec)
	if len(sres.LimitsNotEnforced) > 0 {
		log.Warn("resource limits not enforced on this host", "limits", strings.Join(sres.LimitsNotEnforced, ","))
	}
	errMu.Lock()
	tail := append([]string(nil), stderr...)
	errMu.Unlock()
	res := reader.Result()
	if len(tail) > 0 {
		log.Debug("agent stderr", "exit_code", sres.ExitCode, "lines", strings.Join(tail, "\n"))
	}
	tr := taskResult{res: res, exitCode: sres.ExitCode, stderr: tail, reason: sres.Reason, timeout: limits.Timeout,
		subscription: login.subscription(), unavailable: agent.Unavailable(reader, tail),
		imageMissing: errors.Is(sres.Err, sandbox.ErrImageMissing), notReady: errors.Is(sres.Err, sandbox.ErrNotReady)}
	if tr.notReady {
		tr.outcome = agent.OutcomeInfrastructure
		return tr // nothing ran: the session stays as it was
	}
	switch sres.Outcome {
	case sandbox.OutcomeInfrastructure:
		tr.outcome = agent.OutcomeInfrastructure
	case sandbox.OutcomeCancelled:
		tr.outcome = agent.OutcomeCancelled
	case sandbox.OutcomeTimeout:
		tr.outcome = agent.OutcomeTimeout
	default:
		tr.outcome = agent.Classify(false, sres.ExitCode, reader, tail, a.opts.SessionID != "")
	}
	if res.SessionID != "" || tr.outcome.Retryable() {
		session := res.SessionID
		if tr.outcome.Retryable() {
			session = ""
		}
		if _, err := a.dir.Update(func(r *conversation.Record) error {
			r.SessionID = session
			return nil
		}); err != nil {
			log.Warn("session id not saved", logError, err)
		}
	}
	return tr
}

// loginKind notes how Claude Code authenticated, from the apiKeySource of
// its system/init event: "none" when it uses an OAuth (subscription)
// login, or where the API key came from ("ANTHROPIC_API_KEY",
// "apiKeyHelper", …).
type loginKind struct {
	mu     sync.Mutex
	source string
}

// feed looks at one stdout line; only a system/init event says anything.
func (l *loginKind) feed(line []byte) {
	if !bytes.Contains(line, []byte(`"apiKeySource"`)) {
		return // cheap: most lines are not the init event
	}
	var ev struct {
		Type         string  `json:"type"`
		Subtype      string  `json:"subtype"`
		APIKeySource *string `json:"apiKeySource"`
	}
	if json.Unmarshal(bytes.TrimSpace(line), &ev) != nil || ev.Type != "system" || ev.Subtype != "init" || ev.APIKeySource == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.source = *ev.APIKeySource
}

// subscription reports a subscription login. A run that never said how it
// logged in counts as an API key: showing a notional cost is the lesser
// harm than hiding a real one.
func (l *loginKind) subscription() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.source == "none"
}

// record appends the task (and every message coalesced into it) to
// conversation.json.
func (j *job) record(items []*item, tr taskResult, reply string) {
	if tr.dir == nil {
		return
	}
	g := j.h.g
	now := tr.finished
	if now.IsZero() {
		now = g.now()
	}
	eventsTo := fileSize(tr.dir.EventsPath())
	if !tr.eventsKnown {
		tr.eventsFrom = eventsTo
	}
	_, err := tr.dir.Update(func(r *conversation.Record) error {
		if r.Model == "" && tr.model != "" {
			r.Model = tr.model
		}
		u := tr.res.Usage
		r.Tasks = append(r.Tasks, conversation.Task{
			ID: j.id, Started: tr.started, Finished: now, Outcome: string(tr.outcome), Model: tr.model,
			Usage: conversation.Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens,
				CacheCreationInputTokens: u.CacheCreationInputTokens, CacheReadInputTokens: u.CacheReadInputTokens},
			Cost: tr.res.CostUSD, NumTurns: tr.res.NumTurns, Sender: items[0].msg.SenderAddress, Reply: reply,
			Stderr:     redactLines(g.opts.Registry, tr.stderr),
			Message:    g.opts.Registry.Redact(items[0].msg.Body),
			EventsFrom: tr.eventsFrom, EventsTo: eventsTo,
		})
		for _, it := range items[1:] {
			r.Tasks = append(r.Tasks, conversation.Task{ID: it.taskID, Started: tr.started, Finished: now,
				Outcome: StateCoalesced, Sender: it.msg.SenderAddress, CoalescedInto: j.id,
				Message: g.opts.Registry.Redact(it.msg.Body)})
		}
		return nil
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		j.h.log.Warn("conversation record not updated", logConv, j.conv, logError, err)
	}
}

// lastTotalCost is the running total the session reported at its last
// result, read back from the conversation's events.jsonl (0 when none).
func lastTotalCost(dir *conversation.Dir, session string) float64 {
	f, err := os.Open(dir.EventsPath())
	if err != nil {
		return 0
	}
	defer f.Close()
	total, _ := agent.LastTotalCost(f, session)
	return total
}

func redactLines(reg *redact.Registry, lines []string) []string {
	if len(lines) == 0 {
		return nil
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = reg.Redact(l)
	}
	return out
}

// fileSize is the size of the file at path, 0 when it does not exist.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
