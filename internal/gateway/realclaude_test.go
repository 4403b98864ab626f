package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/airut/airut/internal/agent"
	"github.com/airut/airut/internal/cli"
	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/gateway"
	"github.com/airut/airut/internal/redact"
	"github.com/airut/airut/internal/testkit"
	"github.com/airut/airut/internal/testkit/fakeapi"
)

// The real-CLI tests run the pinned Claude Code release (testkit.
// ClaudeVersion) in the real sandbox, through the real gateway and the
// real proxy, against the fake Messages API on the host, which the proxy
// reaches as api.anthropic.com through network.resolve. The CLI holds
// only a surrogate of the credential; the proxy swaps in the real one.

// realAPIKey and realOAuthToken have the shape of Anthropic credentials,
// so their surrogates keep the sk-ant- prefix.
var (
	realAPIKey     = "sk-ant-api03-" + testkit.RandomHex(40) + "-AAAA"
	realOAuthToken = "sk-ant-oat01-" + testkit.RandomHex(40) + "-AAAA"
)

var realConfigTemplate = template.Must(template.New("airut.yaml").Parse(`config_version: 5
execution:
  max_concurrent: {{.Max}}
  shutdown_timeout: 20
  image_prune: false
network:
  upstream_ca: {{.CA}}
  resolve:
    api.anthropic.com: "{{.API}}"
repos:
  app:
    repo_url: {{.Origin}}
    claude_binary: {{.Claude}}
    resource_limits:
      timeout: 300
    masked_secrets:
      {{.Cred}}:
        value: !env GW_CLAUDE_CREDENTIAL
        scopes: ["api.anthropic.com"]
        headers: ["{{.Header}}"]
    email:
      account:
        username: airut@example.com
        from: "Airut <airut@example.com>"
        password: !env GW_IMAP_PASSWORD
      imap:
        server: 127.0.0.1
        port: {{.IMAPPort}}
        tls: false
        use_idle: true
      smtp:
        server: 127.0.0.1
        port: {{.SMTPPort}}
        require_auth: false
        starttls: false
      auth:
        authorized_senders: [alice@example.com]
        trusted_authserv_id: mx.example.com
`))

type realOpts struct {
	// allowlist is the repo's network-allowlist.yaml; default the README's
	// recommended one.
	allowlist string
	// oauth authenticates with CLAUDE_CODE_OAUTH_TOKEN instead of
	// ANTHROPIC_API_KEY.
	oauth bool
	// dockerfile is appended to the repo's Dockerfile (ENV lines).
	dockerfile    string
	maxConcurrent int
}

type realHarness struct {
	*harness
	api    *testkit.AnthropicUpstream
	claude string
	real   string // the real credential
	caFile string // the fake API's CA, network.upstream_ca
}

// recommendedAllowlist is the allowlist the README recommends for Claude
// Code, read from the README itself so the two cannot drift apart.
func recommendedAllowlist(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testkit.ModuleRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- anthropic-allowlist -->\n```yaml\n(.*?)```").FindSubmatch(data)
	if m == nil {
		t.Fatal("README.md has no <!-- anthropic-allowlist --> yaml block")
	}
	return string(m[1])
}

// newRealHarness starts a gateway whose repo runs the real CLI.
func newRealHarness(t testing.TB, o realOpts) *realHarness {
	t.Helper()
	h := newHarness(t)
	claude := testkit.RealClaude(t)
	img := testkit.ClaudeImage(t, h.engine, claude)
	ca := testkit.NewTestCA(t)
	real, cred, header := realAPIKey, "ANTHROPIC_API_KEY", "x-api-key"
	if o.oauth {
		real, cred, header = realOAuthToken, "CLAUDE_CODE_OAUTH_TOKEN", "Authorization"
	}
	api := testkit.NewAnthropicUpstream(t, ca, testkit.HostIP(t), real)
	caFile := filepath.Join(t.TempDir(), "upstream-ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if o.allowlist == "" {
		o.allowlist = recommendedAllowlist(t)
	}
	if o.maxConcurrent == 0 {
		o.maxConcurrent = 2
	}
	h.commit(map[string]string{
		".airut/container/Dockerfile":   "FROM " + img + "\n" + o.dockerfile,
		".airut/network-allowlist.yaml": o.allowlist,
	})
	var b bytes.Buffer
	if err := realConfigTemplate.Execute(&b, map[string]any{
		"Max": o.maxConcurrent, "CA": caFile, "API": api.Addr, "Origin": h.origin, "Claude": claude,
		"Cred": cred, "Header": header, "IMAPPort": h.imap.Port, "SMTPPort": h.smtp.Port,
	}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"GW_CLAUDE_CREDENTIAL": real, "GW_IMAP_PASSWORD": h.imap.Password}
	cfg, err := config.Parse("airut.yaml", b.Bytes(), config.MapEnv(env), h.reg)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if cfg.Err() != nil {
		t.Fatalf("config: %v", cfg.Err())
	}
	logger := slog.New(redact.NewHandler(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}), h.reg))
	gw, err := gateway.New(cfg, gateway.Options{
		StateDir: h.state, Logger: logger, Registry: h.reg, Prefix: h.prefix, Channels: cli.ChannelFactories(),
		ProxyBinary: filepath.Join(h.bins, "airut-proxy"), StopGrace: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.gw, h.cancel, h.done = gw, cancel, make(chan error, 1)
	go func() { h.done <- gw.Run(ctx) }()
	t.Cleanup(h.stop)
	rh := &realHarness{harness: h, api: api, claude: claude, real: real, caFile: caFile}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("fake API requests:\n%s", fakeapi.Transcript(api.API.Requests()))
		}
	})
	return rh
}

// record reads a conversation's conversation.json.
func (h *realHarness) record(conv string) conversationRecord {
	h.t.Helper()
	data, err := os.ReadFile(filepath.Join(h.convDir(conv), "conversation.json"))
	if err != nil {
		h.t.Fatal(err)
	}
	var r conversationRecord
	if err := json.Unmarshal(data, &r); err != nil {
		h.t.Fatal(err)
	}
	return r
}

type conversationRecord struct {
	SessionID string `json:"session_id"`
	Tasks     []struct {
		Outcome string   `json:"outcome"`
		Cost    float64  `json:"cost"`
		Stderr  []string `json:"stderr"`
	} `json:"tasks"`
}

func (h *realHarness) file(conv, rel string) string {
	h.t.Helper()
	data, err := os.ReadFile(filepath.Join(h.convDir(conv), filepath.FromSlash(rel)))
	if err != nil {
		h.t.Fatalf("%s: %v", rel, err)
	}
	return strings.TrimSpace(string(data))
}

// credentialsSeen returns the credentials the fake API received.
func (h *realHarness) credentialsSeen() map[string]int {
	seen := map[string]int{}
	for _, r := range h.api.API.Requests() {
		if k := r.APIKey(); k != "" {
			seen[k]++
		}
	}
	return seen
}

// costOf is what fakeapi's usage costs on the model the CLI runs for
// "opus", per call, as the CLI prices it: the expected per-task cost is
// calls × this.
const opusCallCost = 0.006

func approx(a, b float64) bool { d := a - b; return d < 1e-9 && d > -1e-9 }

// TestRealClaudeConversation: a new conversation and a resume through the
// real CLI. Tool calls change the workspace; the fake API sees only the
// real key and the container only its surrogate; each task records its
// own cost, not the session's running total; a headless run needs
// nothing beyond the README's allowlist.
func TestRealClaudeConversation(t *testing.T) {
	h := newRealHarness(t, realOpts{})
	first := outMail{Subject: "Add notes", MessageID: "<real1@example.com>", Body: "Please add a note.\n" +
		"@@say Working on it…\n" +
		// The Bash tool scrubs ANTHROPIC_API_KEY from its commands'
		// environment: the CLI's own (PID 1) shows what the container got.
		"@@bash echo first > /workspace/note.txt && tr '\\0' '\\n' < /proc/1/environ | sed -n 's/^ANTHROPIC_API_KEY=//p' > /storage/key-in-container\n" +
		"@@write /workspace/notes/more.txt second\\n\n" +
		"@@reply Added **note.txt** and notes/more.txt."}
	h.send(first)
	_ = h.waitMail(1)
	reply := h.waitMail(2)
	h.waitInboxEmpty()
	conv := h.taskOf("Add notes").Conversation

	if !strings.Contains(reply.Text, "Added note.txt and notes/more.txt.") {
		t.Errorf("reply: got %q; want the agent's answer", reply.Text)
	}
	if strings.Contains(reply.Text, "Working on it") {
		t.Errorf("reply: got %q; the narration of an earlier message must not be in it", reply.Text)
	}
	if !strings.Contains(reply.Text, "Cost: $0.02") {
		t.Errorf("reply: got %q; want the cost footer of an API-key run ($0.018)", reply.Text)
	}
	if got := h.file(conv, "workspace/note.txt"); got != "first" {
		t.Errorf("workspace/note.txt = %q; want %q (Bash ran in the sandbox)", got, "first")
	}
	if got := h.file(conv, "workspace/notes/more.txt"); got != "second" {
		t.Errorf("workspace/notes/more.txt = %q; want %q (Write ran in the sandbox)", got, "second")
	}
	surrogate := h.file(conv, "storage/key-in-container")
	if surrogate == realAPIKey || len(surrogate) != len(realAPIKey) || !strings.HasPrefix(surrogate, "sk-ant-") {
		t.Errorf("the container's ANTHROPIC_API_KEY: got %d bytes (real: %v); want a same-shape surrogate", len(surrogate), surrogate == realAPIKey)
	}
	seen := h.credentialsSeen()
	if seen[realAPIKey] == 0 || len(seen) != 1 {
		t.Errorf("credentials at the fake API: %d distinct, real key %d times; want only the real key", len(seen), seen[realAPIKey])
	}
	if seen[surrogate] > 0 {
		t.Errorf("the surrogate reached the API")
	}

	// The second message resumes the session: the API sees the earlier
	// turns, the workspace is the same, and the task costs its own calls.
	h.send(outMail{Subject: "Re: " + reply.Subject, InReplyTo: reply.MessageID, References: first.MessageID + " " + reply.MessageID,
		Body: "Once more.\n@@bash cat /workspace/note.txt >> /workspace/notes/more.txt\n@@reply Appended the note."})
	reply2 := h.waitMail(3)
	h.waitInboxEmpty()
	if !strings.Contains(reply2.Text, "Appended the note.") || !strings.Contains(reply2.Text, "Cost: $0.01") {
		t.Errorf("second reply: got %q; want the answer and a $0.012 footer (not the running total $0.030)", reply2.Text)
	}
	if got := h.file(conv, "workspace/notes/more.txt"); got != "second\nfirst" {
		t.Errorf("workspace/notes/more.txt after the resume = %q", got)
	}
	msgs := h.api.API.MessagesRequests()
	last := msgs[len(msgs)-1]
	if !bytes.Contains(last.Body, []byte("Please add a note.")) {
		t.Errorf("the resumed run's API request lacks the first task's prompt: not a resume")
	}
	rec := h.record(conv)
	if len(rec.Tasks) != 2 || rec.SessionID == "" {
		t.Fatalf("conversation.json: %d tasks, session %q; want 2 tasks and a session", len(rec.Tasks), rec.SessionID)
	}
	for i, want := range []float64{3 * opusCallCost, 2 * opusCallCost} {
		if got := rec.Tasks[i].Cost; !approx(got, want) || rec.Tasks[i].Outcome != string(agent.OutcomeSuccess) {
			t.Errorf("task %d: cost %v outcome %s; want %v success", i+1, got, rec.Tasks[i].Outcome, want)
		}
	}

	// The recommended allowlist lets the run work: the Messages API is
	// allowed and nothing else is needed.
	netLog := h.file(conv, "network-sandbox.log")
	if !strings.Contains(netLog, "ALLOWED POST https://api.anthropic.com/v1/messages?beta=true -> 200 [masked: 1]") {
		t.Errorf("network log lacks the allowed, masked Messages API call:\n%s", netLog)
	}
	for _, line := range strings.Split(netLog, "\n") {
		if strings.HasPrefix(line, "BLOCKED") && !strings.Contains(line, "/api/claude_code/") {
			t.Errorf("blocked at start-up beyond the two settings lookups: %s", line)
		}
	}
	for _, r := range h.api.API.Requests() {
		if !strings.HasPrefix(r.Path, "/v1/messages") {
			t.Errorf("the fake API got %s %s: the allowlist should have kept it away", r.Method, r.Path)
		}
	}
}

// TestRealClaudeErrors: each API error mode through the real CLI, in
// conversations of their own on one gateway. CLAUDE_CODE_MAX_RETRIES=1 in
// the repo's image keeps the CLI's retries to one.
func TestRealClaudeErrors(t *testing.T) {
	h := newRealHarness(t, realOpts{dockerfile: "ENV CLAUDE_CODE_MAX_RETRIES=1\n", maxConcurrent: 3})
	cases := []struct {
		subject string
		body    string
		outcome agent.Outcome
		want    string
	}{
		{"rate limited", "@@error 429", agent.OutcomeError, "unavailable or rate-limited (HTTP 429)"},
		{"overloaded", "@@error 529", agent.OutcomeError, "unavailable or rate-limited (HTTP 529)"},
		{"too long", "@@error prompt-too-long", agent.OutcomePromptTooLong, "too long for the model's context"},
	}
	for _, c := range cases {
		h.send(outMail{Subject: c.subject, Body: c.body})
	}
	h.waitInboxEmpty()
	for _, c := range cases {
		ti := h.taskOf(c.subject)
		waitFor(t, c.subject+" to finish", func() bool {
			for _, x := range h.gw.Tasks() {
				if x.ID == ti.ID && x.State == gateway.StateDone {
					ti = x
					return true
				}
			}
			return false
		})
		if ti.Outcome != c.outcome {
			t.Errorf("%s: outcome %s; want %s", c.subject, ti.Outcome, c.outcome)
		}
		t.Logf("%s: %s in %v", c.subject, ti.Outcome, ti.Finished.Sub(ti.Started).Round(time.Millisecond))
	}
	for _, m := range h.smtp.Messages() {
		s := parseMail(t, m.Data)
		for _, c := range cases {
			if strings.HasSuffix(s.Subject, "] "+c.subject) && !strings.Contains(s.Text, "working on") && !strings.Contains(s.Text, c.want) {
				t.Errorf("%s reply: got %q; want %q", c.subject, s.Text, c.want)
			}
		}
	}
}

// TestRealClaudeAuthFailedOnResume: a key refused on a resumed
// conversation ends as auth_failed with a reply naming the secret, and
// is never retried with a fresh session (which would lose the context
// and fail again): the session stays.
func TestRealClaudeAuthFailedOnResume(t *testing.T) {
	h := newRealHarness(t, realOpts{dockerfile: "ENV CLAUDE_CODE_MAX_RETRIES=1\n"})
	h.send(outMail{Subject: "keyed", MessageID: "<k1@example.com>", Body: "@@reply first"})
	_ = h.waitMail(1)
	reply := h.waitMail(2)
	conv := h.taskOf("keyed").Conversation
	session := h.record(conv).SessionID
	before := len(h.api.API.MessagesRequests())

	h.api.API.SetKeys("sk-ant-api03-rotated-" + testkit.RandomHex(20)) // the real key was revoked
	h.send(outMail{Subject: "Re: " + reply.Subject, InReplyTo: reply.MessageID, Body: "@@reply second"})
	r2 := h.waitMail(3)
	if !strings.Contains(r2.Text, "refused the agent's credential (HTTP 401)") || !strings.Contains(r2.Text, "masked_secrets.ANTHROPIC_API_KEY") {
		t.Errorf("reply: got %q; want the auth_failed reply naming masked_secrets.ANTHROPIC_API_KEY", r2.Text)
	}
	if strings.Contains(r2.Text, "could not be resumed") {
		t.Errorf("reply: got %q; a refused key is not a lost session", r2.Text)
	}
	rec := h.record(conv)
	if rec.SessionID != session {
		t.Errorf("session after auth_failed: %q; want the same session %q kept", rec.SessionID, session)
	}
	if n := len(rec.Tasks); n != 2 || rec.Tasks[1].Outcome != string(agent.OutcomeAuthFailed) || rec.Tasks[1].Cost != 0 {
		t.Errorf("tasks: %+v; want the second auth_failed at no cost", rec.Tasks)
	}
	// One run only: its first attempt and the one retry, each resuming
	// (the request carries the first task's history).
	after := h.api.API.MessagesRequests()[before:]
	if len(after) != 2 {
		t.Errorf("messages requests after the key change: %d; want 2 (one run, one retry)", len(after))
	}
	for _, r := range after {
		if !bytes.Contains(r.Body, []byte("@@reply first")) {
			t.Errorf("a request without the conversation's history: a fresh session was tried")
		}
	}
}

// TestRealClaudeUnknownSession: when the CLI no longer has the session
// (its state was lost), the real CLI's "No conversation found" makes the
// task retry once in a fresh session, which tells the user.
func TestRealClaudeUnknownSession(t *testing.T) {
	h := newRealHarness(t, realOpts{})
	h.send(outMail{Subject: "forgetful", Body: "@@reply first answer"})
	_ = h.waitMail(1)
	reply := h.waitMail(2)
	conv := h.taskOf("forgetful").Conversation
	old := h.record(conv).SessionID
	if err := os.RemoveAll(filepath.Join(h.convDir(conv), "claude", "projects")); err != nil {
		t.Fatal(err)
	}
	h.send(outMail{Subject: "Re: " + reply.Subject, InReplyTo: reply.MessageID, Body: "@@reply second answer"})
	r2 := h.waitMail(3)
	if !strings.Contains(r2.Text, "could not be resumed") || !strings.Contains(r2.Text, "second answer") {
		t.Errorf("reply: got %q; want the fresh session's answer and the note", r2.Text)
	}
	rec := h.record(conv)
	if rec.SessionID == "" || rec.SessionID == old {
		t.Errorf("session after recovery: %q (old %q); want a new one", rec.SessionID, old)
	}
	if got := rec.Tasks[len(rec.Tasks)-1].Outcome; got != string(agent.OutcomeSuccess) {
		t.Errorf("outcome: %s; want success after the retry", got)
	}
	msgs := h.api.API.MessagesRequests()
	if p := msgs[len(msgs)-1].Body; !bytes.Contains(p, []byte("could not be resumed")) || !bytes.Contains(p, []byte("first answer")) {
		t.Errorf("the recovery prompt lacks the notice or the last reply")
	}
}

// TestRealClaudeOAuthToken: a subscription token from `claude setup-token`
// as a masked secret on Authorization: the API gets the real token as a
// Bearer credential, the reply has no cost footer (a subscription login).
func TestRealClaudeOAuthToken(t *testing.T) {
	h := newRealHarness(t, realOpts{oauth: true})
	h.send(outMail{Subject: "oauth", Body: "@@bash tr '\\0' '\\n' < /proc/1/environ | sed -n 's/^CLAUDE_CODE_OAUTH_TOKEN=//p' > /storage/token\n@@reply Done with a token."})
	_ = h.waitMail(1)
	reply := h.waitMail(2)
	conv := h.taskOf("oauth").Conversation
	if !strings.Contains(reply.Text, "Done with a token.") {
		t.Errorf("reply: got %q", reply.Text)
	}
	if strings.Contains(reply.Text, "Cost:") {
		t.Errorf("reply: got %q; want no cost footer on a subscription login", reply.Text)
	}
	if got := h.file(conv, "storage/token"); got == realOAuthToken || !strings.HasPrefix(got, "sk-ant-") {
		t.Errorf("the container's token: real=%v prefix=%q; want a surrogate", got == realOAuthToken, got[:min(7, len(got))])
	}
	seen := h.credentialsSeen()
	if seen[realOAuthToken] == 0 || len(seen) != 1 {
		t.Errorf("credentials at the fake API: %d distinct, real token %d times; want only the real token", len(seen), seen[realOAuthToken])
	}
	for _, r := range h.api.API.MessagesRequests() {
		if r.Header.Get("Authorization") != "Bearer "+realOAuthToken {
			t.Errorf("messages request without the Bearer token")
		}
	}
	t.Logf("start-up with an OAuth token:\n%s", h.file(conv, "network-sandbox.log"))
}

// TestRealClaudeRejectedOnResume: an API 400 on a resumed conversation
// (typically a history the API no longer accepts) is a lost session: the
// task is retried once in a fresh session — here refused again, so it
// ends as an error after exactly one retry, and says so.
func TestRealClaudeRejectedOnResume(t *testing.T) {
	h := newRealHarness(t, realOpts{})
	h.send(outMail{Subject: "rejected", Body: "@@reply first answer"})
	_ = h.waitMail(1)
	reply := h.waitMail(2)
	conv := h.taskOf("rejected").Conversation
	before := len(h.api.API.MessagesRequests())
	h.send(outMail{Subject: "Re: " + reply.Subject, InReplyTo: reply.MessageID, Body: "@@error 400"})
	r2 := h.waitMail(3)
	if !strings.Contains(r2.Text, "could not be resumed") || !strings.Contains(r2.Text, "unexpected tool_use_id") {
		t.Errorf("reply: got %q; want the fresh-session note and the API's words", r2.Text)
	}
	after := h.api.API.MessagesRequests()[before:]
	if len(after) != 2 || !bytes.Contains(after[0].Body, []byte("first answer")) || bytes.Contains(after[1].Body, []byte("@@reply first answer")) {
		t.Errorf("requests after the 400: %d; want the resumed one, then one fresh retry without the old history", len(after))
	}
	if got := h.record(conv).Tasks[1].Outcome; got != string(agent.OutcomeError) {
		t.Errorf("outcome: %s; want error after the one retry", got)
	}
}
