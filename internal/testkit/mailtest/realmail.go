package mailtest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"github.com/airut/airut/internal/testkit"
)

// RealMail is Debian's Dovecot and Postfix, configured from scratch in a
// temporary directory and listening on unprivileged loopback ports: what a
// small self-hosted deployment runs.
//
//   - Dovecot serves IMAPS (with IDLE) and LMTP, users from a passwd-file;
//     mail is stored as Maildir under the directory.
//   - Postfix has two smtpd listeners: MX, where "remote" mail arrives
//     unauthenticated and is checked by the DMARC milter (see milter.go)
//     that adds Authentication-Results and removes forged ones, and
//     submission, STARTTLS required and SASL AUTH through Dovecot's auth
//     service, for the gateway's replies. Both deliver every local domain
//     to Dovecot by LMTP.
//
// Nothing under /etc is read or changed; the servers run as root (they
// drop to their own users) and are stopped at test cleanup.
type RealMail struct {
	Dir string
	// Host is the name the certificate carries ("localhost").
	Host string
	// CAFile is the PEM of the CA that signed the servers' certificate.
	CAFile string
	// AuthservID is what the milter writes into Authentication-Results.
	AuthservID                                  string
	IMAPSPort, SubmissionPort, MXPort, LMTPPort int

	authPort   int
	milter     *dmarcMilter
	roots      *x509.CertPool
	dovecotCmd *exec.Cmd
	postfixCmd *exec.Cmd
	mu         sync.Mutex
	passwords  map[string]string
}

// RealMail's fixed identities.
const (
	RealMailAuthservID = "mx.airut.test"
	realMailHost       = "localhost"
)

// RequireRealMail skips (or under CI=true fails) a test when Dovecot and
// Postfix are not installed or the test does not run as root.
func RequireRealMail(t testing.TB) {
	t.Helper()
	var missing []string
	for _, bin := range []string{"dovecot", "postfix"} {
		if _, err := exec.LookPath(bin); err != nil {
			if _, err := os.Stat("/usr/sbin/" + bin); err != nil {
				missing = append(missing, bin)
			}
		}
	}
	if len(missing) == 0 && os.Geteuid() == 0 {
		return
	}
	msg := fmt.Sprintf("Dovecot and Postfix tests need root and %v (make test-mail-deps installs them)", missing)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// StartRealMail configures and starts both servers with these accounts
// (address → password); every domain in them is a local Dovecot domain.
func StartRealMail(t testing.TB, accounts map[string]string) *RealMail {
	t.Helper()
	RequireRealMail(t)
	dir, err := os.MkdirTemp("", "airut-realmail-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The mail user (Dovecot's mail processes) must reach the Maildirs.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m := &RealMail{
		Dir: dir, Host: realMailHost, AuthservID: RealMailAuthservID,
		CAFile: filepath.Join(dir, "ca.pem"), passwords: accounts,
	}
	m.IMAPSPort, m.SubmissionPort, m.MXPort, m.LMTPPort, m.authPort = freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)

	ca := testkit.NewTestCA(t)
	leaf := ca.Leaf(t, realMailHost)
	keyDER, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, m.CAFile, ca.CertPEM, 0o644)
	writeFile(t, filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]}), 0o644)
	writeFile(t, filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	m.roots = x509.NewCertPool()
	m.roots.AddCert(ca.Cert)

	var users strings.Builder
	domains := map[string]bool{}
	for addr, pw := range accounts {
		fmt.Fprintf(&users, "%s:{PLAIN}%s\n", addr, pw)
		domains[addr[strings.LastIndexByte(addr, '@')+1:]] = true
	}
	writeFile(t, filepath.Join(dir, "users"), []byte(users.String()), 0o644)
	mailUID, mailGID := lookupIDs(t, "mail")
	mailDir := filepath.Join(dir, "mail")
	if err := os.Mkdir(mailDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(mailDir, mailUID, mailGID); err != nil {
		t.Fatal(err)
	}

	m.milter = startMilter(t, m.AuthservID)
	m.writeDovecotConf(t, mailUID)
	m.StartDovecot(t)
	m.writePostfixConf(t, domains)
	m.startPostfix(t)
	t.Cleanup(func() {
		m.stopPostfix()
		m.StopDovecot(t)
		if t.Failed() {
			for _, f := range []string{"dovecot.log", "postfix.log"} {
				if b, err := os.ReadFile(filepath.Join(dir, f)); err == nil {
					t.Logf("%s:\n%s", f, tail(b, 60))
				}
			}
		}
	})
	return m
}

func tail(b []byte, lines int) string {
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

func writeFile(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}

func lookupIDs(t testing.TB, name string) (int, int) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("user %s: %v", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (m *RealMail) writeDovecotConf(t testing.TB, mailUID int) {
	t.Helper()
	d := m.Dir
	conf := fmt.Sprintf(`base_dir = %[1]s/dovecot-run
state_dir = %[1]s/dovecot-state
instance_name = %[2]s
log_path = %[1]s/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = required
ssl_cert = <%[1]s/cert.pem
ssl_key = <%[1]s/key.pem
ssl_min_protocol = TLSv1.2
auth_mechanisms = plain login
first_valid_uid = %[3]d
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[1]s/users
}
userdb {
  driver = static
  args = uid=mail gid=mail home=%[1]s/mail/%%u
}
mail_location = maildir:~/Maildir
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = %[4]d
    ssl = yes
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = %[5]d
  }
}
service auth {
  inet_listener {
    address = 127.0.0.1
    port = %[6]d
  }
}
protocol lmtp {
  # Deliver to the full address, as the passwd-file names users.
  auth_username_format = %%Lu
}
`, d, filepath.Base(d), mailUID, m.IMAPSPort, m.LMTPPort, m.authPort)
	writeFile(t, filepath.Join(d, "dovecot.conf"), []byte(conf), 0o644)
}

// daemon starts a server in the foreground in a process group of its own
// (stopped as one, as a service manager does), output appended to logName.
func (m *RealMail) daemon(t testing.TB, cmd *exec.Cmd, logName string) *exec.Cmd {
	t.Helper()
	out, err := os.OpenFile(filepath.Join(m.Dir, logName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	return cmd
}

// waitExit waits up to 30 s for cmd, then kills its process group.
func waitExit(cmd *exec.Cmd) {
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// StartDovecot starts Dovecot in the foreground and waits for IMAPS.
func (m *RealMail) StartDovecot(t testing.TB) {
	t.Helper()
	cmd := m.daemon(t, exec.Command("dovecot", "-F", "-c", filepath.Join(m.Dir, "dovecot.conf")), "dovecot.out")
	m.mu.Lock()
	m.dovecotCmd = cmd
	m.mu.Unlock()
	waitPort(t, m.IMAPSPort, "dovecot imaps", filepath.Join(m.Dir, "dovecot.log"))
}

// StopDovecot stops Dovecot the way systemd stops Debian's dovecot.service:
// SIGTERM to every process of the service (KillMode=control-group, here
// the process group). Each IMAP process then tells its client "* BYE
// Server shutting down.". (SIGTERM to the master alone, or `doveadm stop`,
// is not that: the master only sends SIGQUIT, and IMAP processes keep
// their clients until those leave.)
func (m *RealMail) StopDovecot(t testing.TB) {
	m.mu.Lock()
	cmd := m.dovecotCmd
	m.dovecotCmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	pgid := cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	waitExit(cmd)
	// Every process of the group must be gone before a restart binds the
	// same ports and directories.
	deadline := time.Now().Add(20 * time.Second)
	for syscall.Kill(-pgid, 0) == nil {
		if time.Now().After(deadline) {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RestartDovecot is StopDovecot then StartDovecot.
func (m *RealMail) RestartDovecot(t testing.TB) {
	t.Helper()
	m.StopDovecot(t)
	m.StartDovecot(t)
}

func waitPort(t testing.TB, port int, what, logFile string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logFile)
			t.Fatalf("%s did not listen on %d: %v\n%s", what, port, err, tail(b, 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// postfixServices is master.cf's fixed part: the daemons Postfix needs,
// none chrooted (the queue lives in the test directory).
const postfixServices = `pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
lmtp unix - - n - - lmtp
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
`

func (m *RealMail) writePostfixConf(t testing.TB, domains map[string]bool) {
	t.Helper()
	d := m.Dir
	conf := filepath.Join(d, "postfix")
	for _, sub := range []string{conf, filepath.Join(d, "postfix-queue"), filepath.Join(d, "postfix-data")} {
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	uid, gid := lookupIDs(t, "postfix")
	if err := os.Chown(filepath.Join(d, "postfix-data"), uid, gid); err != nil {
		t.Fatal(err)
	}
	var doms []string
	for dom := range domains {
		doms = append(doms, dom)
	}
	mainCF := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/postfix-queue
data_directory = %[1]s/postfix-data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = %[2]s
mydomain = airut.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
relayhost =
virtual_mailbox_domains = %[3]s
virtual_transport = lmtp:inet:127.0.0.1:%[4]d
smtpd_tls_cert_file = %[1]s/cert.pem
smtpd_tls_key_file = %[1]s/key.pem
smtpd_tls_security_level = may
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:%[5]d
milter_default_action = tempfail
maillog_file = %[1]s/postfix.log
maillog_file_prefixes = %[1]s
smtputf8_enable = no
biff = no
delay_warning_time = 0
`, d, m.AuthservID, strings.Join(doms, " "), m.LMTPPort, m.authPort)
	masterCF := fmt.Sprintf(`127.0.0.1:%[1]d inet n - n - - smtpd
  -o syslog_name=postfix/mx
  -o smtpd_milters=inet:127.0.0.1:%[3]d
127.0.0.1:%[2]d inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
`, m.MXPort, m.SubmissionPort, m.milter.port) + postfixServices
	writeFile(t, filepath.Join(conf, "main.cf"), []byte(mainCF), 0o644)
	writeFile(t, filepath.Join(conf, "master.cf"), []byte(masterCF), 0o644)
}

func (m *RealMail) postfix(args ...string) *exec.Cmd {
	return exec.Command("postfix", append([]string{"-c", filepath.Join(m.Dir, "postfix")}, args...)...)
}

func (m *RealMail) startPostfix(t testing.TB) {
	t.Helper()
	if out, err := m.postfix("check").CombinedOutput(); err != nil {
		t.Fatalf("postfix check: %v\n%s", err, out)
	}
	m.postfixCmd = m.daemon(t, m.postfix("start-fg"), "postfix.out")
	waitPort(t, m.SubmissionPort, "postfix submission", filepath.Join(m.Dir, "postfix.log"))
	waitPort(t, m.MXPort, "postfix mx", filepath.Join(m.Dir, "postfix.log"))
}

func (m *RealMail) stopPostfix() {
	cmd := m.postfixCmd
	if cmd == nil {
		return
	}
	m.postfixCmd = nil
	_ = m.postfix("stop").Run()
	waitExit(cmd)
}

// TLSConfig trusts the servers' CA, for test clients.
func (m *RealMail) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: m.roots, ServerName: m.Host, MinVersion: tls.VersionTLS12}
}

// DomainKey is a sending domain's DKIM key, published to the milter's
// DNS: mail signed with it passes DKIM for that domain.
func (m *RealMail) DomainKey(domain string) *DomainKey { return m.milter.key(domain) }

// DomainKey signs outgoing mail for one domain, as its own mail server
// would before the message reaches our MX.
type DomainKey struct {
	Domain, Selector string
	key              ed25519.PrivateKey
}

func newDomainKey(domain string) (*DomainKey, string) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return &DomainKey{Domain: domain, Selector: "airut", key: priv},
		"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
}

// Sign returns raw with a DKIM-Signature for the key's domain on top.
func (k *DomainKey) Sign(raw []byte) ([]byte, error) {
	var b bytes.Buffer
	err := dkim.Sign(&b, bytes.NewReader(raw), &dkim.SignOptions{
		Domain: k.Domain, Selector: k.Selector, Signer: k.key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             []string{"From", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "References", "MIME-Version", "Content-Type"},
	})
	if err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Deliver hands raw to the MX listener as a remote mail server would
// (no AUTH), from envelope sender from to rcpt, and returns once Postfix
// has queued it.
func (m *RealMail) Deliver(t testing.TB, from, rcpt string, raw []byte) {
	t.Helper()
	c, err := smtp.DialStartTLS(net.JoinHostPort(m.Host, strconv.Itoa(m.MXPort)), m.TLSConfig())
	if err != nil {
		t.Fatalf("deliver to mx: %v", err)
	}
	defer c.Close()
	if err := c.SendMail(from, []string{rcpt}, bytes.NewReader(raw)); err != nil {
		t.Fatalf("deliver to mx: %v", err)
	}
	_ = c.Quit()
}

// Mailbox lists user's INBOX over IMAPS, with flags and raw messages.
func (m *RealMail) Mailbox(t testing.TB, user string) []Message {
	t.Helper()
	msgs, err := m.mailbox(user)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

func (m *RealMail) mailbox(user string) ([]Message, error) {
	cl, err := imapclient.DialTLS(net.JoinHostPort(m.Host, strconv.Itoa(m.IMAPSPort)), &imapclient.Options{TLSConfig: m.TLSConfig()})
	if err != nil {
		return nil, fmt.Errorf("dial dovecot: %w", err)
	}
	defer cl.Close()
	if err := cl.Login(user, m.passwords[user]).Wait(); err != nil {
		return nil, fmt.Errorf("login %s: %w", user, err)
	}
	sel, err := cl.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return nil, fmt.Errorf("select: %w", err)
	}
	if sel.NumMessages == 0 {
		return nil, nil
	}
	section := &imap.FetchItemBodySection{Peek: true}
	var all imap.SeqSet
	all.AddRange(1, 0)
	bufs, err := cl.Fetch(all, &imap.FetchOptions{UID: true, Flags: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	var out []Message
	for _, b := range bufs {
		out = append(out, Message{UID: b.UID, Flags: b.Flags, Raw: b.FindBodySection(section)})
	}
	_ = cl.Logout().Wait()
	return out, nil
}

// WaitMailbox waits until user's INBOX satisfies cond, and returns it.
func (m *RealMail) WaitMailbox(ctx context.Context, t testing.TB, user string, what string, cond func([]Message) bool) []Message {
	t.Helper()
	var last []Message
	var lastErr error
	for {
		msgs, err := m.mailbox(user)
		if err == nil && cond(msgs) {
			return msgs
		}
		last, lastErr = msgs, err
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s in %s: %v (have %d, last error %v)", what, user, ctx.Err(), len(last), lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
