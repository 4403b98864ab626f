package gateway_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/emersion/go-message/mail"

	"github.com/airut/airut/internal/testkit"
	"github.com/airut/airut/internal/testkit/mailtest"
)

// The email suite against Debian's Dovecot and Postfix: `airut run` as a
// user runs it, IMAPS with IDLE and submission with STARTTLS and AUTH,
// both trusting the servers' private CA through ca_file; mail arrives at
// Postfix's MX from "remote" senders (DKIM-signed by their domain, or not),
// is authenticated by the receiving side's milter, and is delivered to
// Dovecot by LMTP. Replies travel through submission to the senders'
// own Dovecot mailboxes, where the test reads them.

var realMailAccounts = map[string]string{
	"airut@example.com": "airut-mailbox-pw",
	"alice@example.org": "alice-pw",
	"carol@example.org": "carol-pw",
}

const realInbox = "airut@example.com"

var realConfig = template.Must(template.New("airut.yaml").Parse(`config_version: 5
execution:
  max_concurrent: 3
  shutdown_timeout: 20
  claude_binary: {{.Bins}}/fakeclaude
  image_prune: false
repos:
  app:
    repo_url: {{.Origin}}
    resource_limits:
      timeout: 300
    email:
      account:
        username: airut@example.com
        from: "Airut <airut@example.com>"
        password: !env GW_MAIL_PASSWORD
      imap:
        server: {{.Host}}
        port: {{.IMAPS}}
        tls: true
        use_idle: true
        ca_file: {{.CA}}
      smtp:
        server: {{.Host}}
        port: {{.Submission}}
        require_auth: true
        starttls: true
        ca_file: {{.CA}}
      auth:
        authorized_senders: [alice@example.org]
        trusted_authserv_id: {{.Authserv}}
`))

type realGW struct {
	t      *testing.T
	mail   *mailtest.RealMail
	bins   string
	origin string
	home   string // XDG_STATE_HOME; the state is home/airut
	prefix string
	cfg    string
	logs   *testkit.SyncBuffer
	proc   *proc
	engine string
	seq    int
}

func newRealGW(t *testing.T) *realGW {
	t.Helper()
	mailtest.RequireRealMail(t)
	engine := testkit.RequireEngine(t)
	bins, err := testkit.BuildBinaries()
	if err != nil {
		t.Fatal(err)
	}
	base := testkit.BaseImage(t, engine)
	g := &realGW{
		t: t, engine: engine, bins: bins,
		mail: mailtest.StartRealMail(t, realMailAccounts),
		origin: testkit.GitRepo(t, map[string]string{
			".airut/container/Dockerfile":   testkit.DefaultDockerfile(base),
			".airut/network-allowlist.yaml": testAllowlist,
			"README.md":                     "# app\n",
		}),
		home:   t.TempDir(),
		prefix: testPrefix(t),
		logs:   &testkit.SyncBuffer{},
	}
	dir := t.TempDir()
	g.cfg = filepath.Join(dir, "airut.yaml")
	var b bytes.Buffer
	if err := realConfig.Execute(&b, map[string]any{
		"Bins": bins, "Origin": g.origin, "Host": g.mail.Host, "IMAPS": g.mail.IMAPSPort,
		"Submission": g.mail.SubmissionPort, "CA": g.mail.CAFile, "Authserv": g.mail.AuthservID,
	}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(g.cfg, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	// The mailbox password lives in .env beside the config, as an
	// operator keeps it.
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte("GW_MAIL_PASSWORD="+realMailAccounts[realInbox]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("airut run log:\n%s", g.logs.String())
		}
		for _, args := range [][]string{
			{"ps", "-a", "--filter", "name=^" + g.prefix + "-", "--format", "{{.Names}}"},
			{"network", "ls", "--filter", "name=^" + g.prefix + "-conv", "--format", "{{.Name}}"},
		} {
			out, _ := exec.Command(engine, args...).CombinedOutput()
			if s := strings.TrimSpace(string(out)); s != "" {
				t.Errorf("left behind (%s): %s", args[0], s)
			}
		}
		_ = exec.Command(engine, "network", "rm", "-f", g.prefix+"-egress").Run()
	})
	return g
}

// start runs `airut run` on the config.
func (g *realGW) start() {
	g.t.Helper()
	before := strings.Count(g.logs.String(), "imap connected")
	cmd := exec.Command(airutBinary(g.t), "--config", g.cfg, "run", "--prefix", g.prefix)
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+g.home, "AIRUT_PROXY_BINARY="+filepath.Join(g.bins, "airut-proxy"))
	cmd.Stdout, cmd.Stderr = g.logs, g.logs
	if err := cmd.Start(); err != nil {
		g.t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	g.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(waitTimeout):
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	g.proc = p
	waitFor(g.t, "airut run to connect to Dovecot", func() bool {
		return strings.Count(g.logs.String(), "imap connected") > before
	})
}

func (g *realGW) convDir(conv string) string {
	return filepath.Join(g.home, "airut", "app", "conversations", conv)
}

// inMail is a message from a remote sender to the gateway's inbox.
type inMail struct {
	from, subject, body   string
	inReplyTo, references string
	// attachments are (header value of Content-Disposition, content).
	attachments [][2]string
	// unsigned leaves out the DKIM signature of the From domain, so DMARC
	// fails at the receiving side.
	unsigned bool
	// extra headers, e.g. a forged Authentication-Results.
	extra []string
}

// send delivers m to Postfix's MX and returns its Message-ID.
func (g *realGW) send(m inMail) string {
	g.t.Helper()
	g.seq++
	if m.from == "" {
		m.from = "Alice <alice@example.org>"
	}
	id := fmt.Sprintf("<rm%d.%d@example.org>", g.seq, time.Now().UnixNano())
	var b strings.Builder
	for _, h := range m.extra {
		b.WriteString(h + "\r\n")
	}
	fmt.Fprintf(&b, "From: %s\r\nTo: airut@example.com\r\nSubject: %s\r\nMessage-ID: %s\r\nDate: %s\r\nMIME-Version: 1.0\r\n",
		m.from, mime.BEncoding.Encode("UTF-8", m.subject), id, time.Now().Format(time.RFC1123Z))
	if m.inReplyTo != "" {
		fmt.Fprintf(&b, "In-Reply-To: %s\r\nReferences: %s\r\n", m.inReplyTo, strings.TrimSpace(m.references+" "+m.inReplyTo))
	}
	body := strings.ReplaceAll(m.body, "\n", "\r\n")
	if len(m.attachments) == 0 {
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\n\r\n" + body + "\r\n")
	} else {
		b.WriteString("Content-Type: multipart/mixed; boundary=rmb\r\n\r\n--rmb\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body + "\r\n")
		for _, a := range m.attachments {
			b.WriteString("--rmb\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: " + a[0] + "\r\n\r\n" +
				base64.StdEncoding.EncodeToString([]byte(a[1])) + "\r\n")
		}
		b.WriteString("--rmb--\r\n")
	}
	raw := []byte(b.String())
	if !m.unsigned {
		addr, err := mail.ParseAddress(m.from)
		if err != nil {
			g.t.Fatal(err)
		}
		if raw, err = g.mail.DomainKey(addr.Address[strings.LastIndexByte(addr.Address, '@')+1:]).Sign(raw); err != nil {
			g.t.Fatal(err)
		}
	}
	g.mail.Deliver(g.t, "bounces@example.org", realInbox, raw)
	return id
}

// gotMail is a mail the gateway sent, as it landed in a sender's inbox.
type gotMail struct {
	subject, messageID, inReplyTo, text string
	ack                                 bool
	attachments                         map[string]gotAttachment
}

type gotAttachment struct {
	contentType, charset, data string
}

func (g *realGW) inbox(user string) []gotMail {
	g.t.Helper()
	var out []gotMail
	for _, m := range g.mail.Mailbox(g.t, user) {
		r, err := mail.CreateReader(bytes.NewReader(m.Raw))
		if err != nil {
			g.t.Fatalf("parse mail in %s: %v", user, err)
		}
		gm := gotMail{attachments: map[string]gotAttachment{}}
		gm.subject, _ = r.Header.Subject()
		gm.messageID = r.Header.Get("Message-Id")
		gm.inReplyTo = r.Header.Get("In-Reply-To")
		for {
			p, err := r.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				g.t.Fatalf("parse mail part: %v", err)
			}
			data, _ := io.ReadAll(p.Body)
			switch h := p.Header.(type) {
			case *mail.InlineHeader:
				if ct, _, _ := h.ContentType(); ct == "text/plain" {
					gm.text += string(data)
				}
			case *mail.AttachmentHeader:
				name, _ := h.Filename()
				ct, params, _ := h.ContentType()
				gm.attachments[name] = gotAttachment{contentType: ct, charset: params["charset"], data: string(data)}
			}
		}
		gm.ack = strings.Contains(gm.text, "I'm working on this")
		out = append(out, gm)
	}
	return out
}

// answers returns the acknowledgements and final replies to msgID in
// alice's inbox.
func answers(all []gotMail, msgID string) (acks, replies []gotMail) {
	for _, m := range all {
		if m.inReplyTo != msgID {
			continue
		}
		if m.ack {
			acks = append(acks, m)
		} else {
			replies = append(replies, m)
		}
	}
	return acks, replies
}

// waitReply waits for the final reply to msgID and returns it.
func (g *realGW) waitReply(msgID string) gotMail {
	g.t.Helper()
	var got gotMail
	waitFor(g.t, "the reply to "+msgID, func() bool {
		_, replies := answers(g.inbox("alice@example.org"), msgID)
		if len(replies) > 0 {
			got = replies[0]
			return true
		}
		return false
	})
	return got
}

// waitStarted waits for the acknowledgement of msgID and for its agent to
// start (blockScript), and returns the conversation.
func (g *realGW) waitStarted(msgID string) string {
	g.t.Helper()
	var conv string
	waitFor(g.t, "the acknowledgement of "+msgID, func() bool {
		acks, _ := answers(g.inbox("alice@example.org"), msgID)
		if len(acks) > 0 {
			conv = convOf(g.t, acks[0].subject)
			return true
		}
		return false
	})
	waitFor(g.t, "the agent to start", func() bool {
		_, err := os.Stat(filepath.Join(g.convDir(conv), "storage", "started"))
		return err == nil
	})
	return conv
}

// release lets a blockScript agent of conv finish.
func (g *realGW) release(conv string) {
	g.t.Helper()
	if err := os.WriteFile(filepath.Join(g.convDir(conv), "storage", "go"), nil, 0o644); err != nil {
		g.t.Fatal(err)
	}
}

func (g *realGW) waitInboxEmpty() {
	g.t.Helper()
	waitFor(g.t, "the gateway's inbox to be empty", func() bool { return len(g.mail.Mailbox(g.t, realInbox)) == 0 })
}

func convOf(t testing.TB, subject string) string {
	t.Helper()
	i, j := strings.Index(subject, "[ID:"), strings.Index(subject, "]")
	if i < 0 || j < i {
		t.Fatalf("subject %q has no [ID:...] tag", subject)
	}
	return subject[i+4 : j]
}

// TestRealMailServers runs the email scenarios that broke, or could
// break, against real servers, in one gateway: each message answered
// exactly once and deleted, across restarts of Dovecot and of the gateway.
func TestRealMailServers(t *testing.T) {
	if raceBuild {
		t.Skip("runs in the pass without -race: the gateway under test is a subprocess built without it")
	}
	g := newRealGW(t)
	g.start()
	// want is how many acknowledgements each message must get in the
	// end (its final reply is always exactly one).
	want := map[string]int{}

	t.Run("first message", func(t *testing.T) {
		id := g.send(inMail{subject: "Fix the README", body: "Please.\n@@reply first answer"})
		want[id] = 1
		reply := g.waitReply(id)
		if !strings.Contains(reply.text, "first answer") {
			t.Errorf("reply text %q", reply.text)
		}
		g.waitInboxEmpty()
	})

	var conv, lastID, refs string
	t.Run("three follow-ups in one session", func(t *testing.T) {
		first := g.send(inMail{subject: "Session", body: "@@reply session start"})
		want[first] = 1
		reply := g.waitReply(first)
		conv, lastID, refs = convOf(t, reply.subject), reply.messageID, first
		for i := 1; i <= 3; i++ {
			id := g.send(inMail{subject: "Re: " + reply.subject, inReplyTo: lastID, references: refs,
				body: fmt.Sprintf("@@reply follow-up %d done", i)})
			want[id] = 0
			r := g.waitReply(id)
			if got := convOf(t, r.subject); got != conv {
				t.Fatalf("follow-up %d answered in conversation %s; want %s", i, got, conv)
			}
			if !strings.Contains(r.text, fmt.Sprintf("follow-up %d done", i)) {
				t.Errorf("follow-up %d reply %q", i, r.text)
			}
			// Deleted before the next one arrives: what Dovecot kept
			// before the fix was every follow-up.
			g.waitInboxEmpty()
			refs, lastID = refs+" "+lastID, r.messageID
		}
	})

	t.Run("burst to several conversations", func(t *testing.T) {
		var ids []string
		for i := 0; i < 4; i++ {
			ids = append(ids, g.send(inMail{subject: fmt.Sprintf("Burst %d", i), body: fmt.Sprintf("@@reply burst %d", i)}))
		}
		// And one more follow-up into the session while the burst runs.
		ids = append(ids, g.send(inMail{subject: "Re: session", inReplyTo: lastID, references: refs, body: "@@reply burst follow-up"}))
		convs := map[string]bool{}
		for i, id := range ids {
			want[id] = 1
			if i == 4 {
				want[id] = 0
			}
			convs[convOf(t, g.waitReply(id).subject)] = true
		}
		if len(convs) != 5 {
			t.Errorf("burst answered in %d conversations; want 5 (4 new, 1 continued)", len(convs))
		}
		g.waitInboxEmpty()
	})

	t.Run("non-ASCII subject and attachment names both ways", func(t *testing.T) {
		subject := "Grüße — 日本語のテスト"
		id := g.send(inMail{subject: subject,
			attachments: [][2]string{
				{`attachment; filename*=utf-8''%C3%9Cberblick%20%E6%97%A5.txt`, "Inhalt: äöü\n"},
				{`attachment; filename="=?UTF-8?B?cmVzdW3DqS50eHQ=?="`, "résumé\n"},
			},
			body: "@@run cat '/inbox/Überblick 日.txt' /inbox/resumé.txt > /outbox/Antwort-ü.txt\n" +
				"@@run echo 'café ✓' > '/outbox/報告.txt'\n@@reply attached"})
		want[id] = 1
		reply := g.waitReply(id)
		if !strings.HasSuffix(reply.subject, "] "+subject) {
			t.Errorf("reply subject %q; want it to end in %q", reply.subject, subject)
		}
		for name, wantData := range map[string]string{"Antwort-ü.txt": "Inhalt: äöü\nrésumé\n", "報告.txt": "café ✓\n"} {
			a, ok := reply.attachments[name]
			if !ok {
				t.Errorf("reply lacks attachment %q (has %v)", name, reply.attachments)
				continue
			}
			if a.contentType != "text/plain" || a.charset != "utf-8" || a.data != wantData {
				t.Errorf("attachment %q: %s charset %q data %q; want text/plain, utf-8, %q", name, a.contentType, a.charset, a.data, wantData)
			}
		}
		g.waitInboxEmpty()
	})

	t.Run("unauthorized sender and dmarc=fail rejected", func(t *testing.T) {
		forged := "Authentication-Results: " + g.mail.AuthservID + "; dkim=pass header.d=example.org; dmarc=pass header.from=example.org"
		carol := g.send(inMail{from: "carol@example.org", subject: "Let me in", body: "@@reply should not run"})
		spoof := g.send(inMail{subject: "Spoofed", unsigned: true, extra: []string{forged}, body: "@@reply should not run"})
		// Rejected mail is deleted without a reply; a message after them
		// shows they were read.
		after := g.send(inMail{subject: "After the rejects", body: "@@reply after"})
		want[after] = 1
		g.waitReply(after)
		g.waitInboxEmpty()
		all := g.inbox("alice@example.org")
		for name, id := range map[string]string{"unauthorized": carol, "dmarc=fail": spoof} {
			if acks, replies := answers(all, id); len(acks)+len(replies) != 0 {
				t.Errorf("%s message was answered (%d mails); want silence", name, len(acks)+len(replies))
			}
		}
		if n := len(g.mail.Mailbox(t, "carol@example.org")); n != 0 {
			t.Errorf("carol got %d mails; want none (no backscatter)", n)
		}
		for _, reason := range []string{"not authorized", "dmarc"} {
			if !strings.Contains(g.logs.String(), reason) {
				t.Errorf("log has no rejection mentioning %q", reason)
			}
		}
	})

	t.Run("dovecot restart mid-idle", func(t *testing.T) {
		before := strings.Count(g.logs.String(), "imap connected")
		g.mail.RestartDovecot(t)
		waitFor(t, "the gateway to reconnect", func() bool { return strings.Count(g.logs.String(), "imap connected") > before })
		id := g.send(inMail{subject: "After the restart", body: "@@reply still here"})
		want[id] = 1
		g.waitReply(id)
		g.waitInboxEmpty()
	})

	t.Run("dovecot restart mid-task", func(t *testing.T) {
		id := g.send(inMail{subject: "Long task", body: blockScript("long task done")})
		want[id] = 1
		c := g.waitStarted(id)
		g.mail.RestartDovecot(t)
		g.release(c)
		g.waitReply(id)
		g.waitInboxEmpty()
	})

	t.Run("SIGKILL of airut run mid-task, then restart", func(t *testing.T) {
		id := g.send(inMail{subject: "Crash me", body: "@@run echo run >> /storage/runs\n" + blockScript("survived")})
		want[id] = 1
		c := g.waitStarted(id)
		_ = g.proc.stop(t, syscall.SIGKILL)
		g.start()
		waitFor(t, "the task to run again", func() bool {
			data, _ := os.ReadFile(filepath.Join(g.convDir(c), "storage", "runs"))
			return strings.Count(string(data), "run\n") >= 2
		})
		g.release(c)
		if r := g.waitReply(id); !strings.Contains(r.text, "survived") {
			t.Errorf("reply after the restart %q", r.text)
		}
		g.waitInboxEmpty()
	})

	// Every message: exactly one final reply and the acknowledgements its
	// kind gets (one for a new conversation, none for a follow-up), after
	// a quiet moment in which a duplicate would have shown up.
	time.Sleep(2 * time.Second)
	all := g.inbox("alice@example.org")
	for id, wantAcks := range want {
		acks, replies := answers(all, id)
		if len(acks) != wantAcks || len(replies) != 1 {
			t.Errorf("message %s: %d acknowledgement(s), %d reply(ies); want %d and 1", id, len(acks), len(replies), wantAcks)
		}
	}
	if left := g.mail.Mailbox(t, realInbox); len(left) != 0 {
		t.Errorf("%d message(s) left in the gateway's inbox; want none", len(left))
	}
}
