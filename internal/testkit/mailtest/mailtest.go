// Package mailtest runs real IMAP and SMTP servers in-process for tests: an
// in-memory IMAP server (go-imap's imapmemserver) and an SMTP server
// (go-smtp) that keeps what it receives.
//
// Both accept password login and, when a test gives them tokens, SASL
// XOAUTH2 (Microsoft 365 and Gmail OAuth2 login) with exactly those bearer
// tokens. TokenServer is the OAuth2 token endpoint that hands such tokens
// out.
//
// Both listen on ephemeral loopback ports, over plain TCP unless a test
// gives them a TLS config (IMAPS, SMTP STARTTLS): tests of certificate
// handling need it, the rest talk the plain protocols. Debian's Dovecot
// and Postfix are in dovecot.go and postfix.go, for the tests that need
// the real servers' behaviour.
package mailtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// IMAPServer is an in-memory IMAP server with one user whose INBOX exists.
type IMAPServer struct {
	Host     string
	Port     int
	Username string
	Password string

	user   *imapmemserver.User
	server *imapserver.Server
	ln     *trackingListener

	mu       sync.Mutex
	appended chan struct{} // closed and replaced by every Append
	auth     authLog
	conns    map[*imapserver.Conn]struct{}
	tls      bool
	// dropFetch counts FETCH commands down to the one that drops every
	// connection (at 0); below 0 nothing happens.
	dropFetch atomic.Int64
}

// session makes the in-memory server behave like Dovecot where the email
// channel depends on it:
//
//   - IDLE reports messages appended before or during it. The in-memory
//     server only reports changes made after IDLE starts, so a message
//     appended between a client's SEARCH and its IDLE would go unnoticed;
//     real servers (Dovecot, Exchange) report it, and a test must not
//     depend on that race.
//   - UID STORE and UID EXPUNGE ignore a UID the session has not been told
//     about yet (no EXISTS for it since SELECT), returning OK with no
//     effect, as RFC 3501 servers do: the in-memory server acts on the
//     shared mailbox and would hide a client that deletes on a stale
//     session.
type session struct {
	imapserver.SessionIMAP4rev2
	s    *IMAPServer
	conn *imapserver.Conn
	// known is the highest UID this session has been told about: UIDNEXT-1
	// at SELECT, then the mailbox's at every poll (IDLE, NOOP and the end
	// of each command). It errs towards knowing too much: a message
	// appended during a poll counts as told.
	known atomic.Uint32
}

func (ss *session) Close() error {
	ss.s.mu.Lock()
	delete(ss.s.conns, ss.conn)
	ss.s.mu.Unlock()
	return ss.SessionIMAP4rev2.Close()
}

func (ss *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	data, err := ss.SessionIMAP4rev2.Select(name, options)
	if err == nil {
		ss.known.Store(uint32(data.UIDNext) - 1)
	}
	return data, err
}

func (ss *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	err := ss.SessionIMAP4rev2.Poll(w, allowExpunge)
	ss.learn()
	return err
}

// learn marks every message now in INBOX as told to the session.
func (ss *session) learn() {
	st, err := ss.s.user.Status("INBOX", &imap.StatusOptions{UIDNext: true})
	if err == nil && st.UIDNext > 0 {
		ss.known.Store(uint32(st.UIDNext) - 1)
	}
}

// told drops the UIDs this session has not been told about from a UID set;
// a sequence set is left alone, as sequence numbers exist only for told
// messages.
func (ss *session) told(set imap.NumSet) (imap.NumSet, bool) {
	uids, ok := set.(imap.UIDSet)
	if !ok {
		return set, true
	}
	known := imap.UID(ss.known.Load())
	var out imap.UIDSet
	for _, r := range uids {
		start, stop := r.Start, r.Stop
		if stop == 0 || stop > known { // 0 is "*"
			stop = known
		}
		if start == 0 {
			start = known
		}
		if start <= stop && start > 0 {
			out.AddRange(start, stop)
		}
	}
	return out, len(out) > 0
}

func (ss *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	set, ok := ss.told(numSet)
	if !ok {
		return nil
	}
	return ss.SessionIMAP4rev2.Store(w, set, flags, options)
}

func (ss *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	if uids != nil {
		set, ok := ss.told(*uids)
		if !ok {
			return nil
		}
		u := set.(imap.UIDSet)
		uids = &u
	}
	return ss.SessionIMAP4rev2.Expunge(w, uids)
}

func (ss *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	if ss.s.dropFetch.Add(-1) == 0 {
		// The connection breaks while the client waits for the data.
		ss.s.ln.closeAll()
		return errors.New("mailtest: connection dropped mid-fetch")
	}
	return ss.SessionIMAP4rev2.Fetch(w, numSet, options)
}

func (ss *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	for {
		// Take the channel before polling: an append after this point
		// closes it and causes another poll, one before it is polled now.
		ss.s.mu.Lock()
		appended := ss.s.appended
		ss.s.mu.Unlock()
		if err := ss.Poll(w, true); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-appended:
		}
	}
}

// Login is one successful login, in the order they happened.
type Login struct {
	// Mechanism is "LOGIN" (the IMAP command), "PLAIN" or "XOAUTH2".
	Mechanism string
	Username  string
}

// authLog is the tokens a server accepts and the logins it saw.
type authLog struct {
	mu     sync.Mutex
	tokens map[string]bool
	logins []Login
}

func (a *authLog) setTokens(tokens []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tokens = make(map[string]bool, len(tokens))
	for _, t := range tokens {
		a.tokens[t] = true
	}
}

func (a *authLog) hasTokens() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.tokens) > 0
}

func (a *authLog) tokenOK(tok string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.tokens[tok]
}

func (a *authLog) record(mech, user string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.logins = append(a.logins, Login{Mechanism: mech, Username: user})
}

func (a *authLog) list() []Login {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Login(nil), a.logins...)
}

// xoauth2Error is the challenge Microsoft 365 and Gmail send when they
// refuse a token; the client answers it with an empty response and then
// gets the failure.
const xoauth2Error = `{"status":"401","schemes":"bearer","scope":"https://outlook.office365.com/.default"}`

// xoauth2Server is the server side of SASL XOAUTH2. check returns the
// protocol's own failure error.
type xoauth2Server struct {
	check  func(user, token string) error
	failed error
}

func (x *xoauth2Server) Next(resp []byte) ([]byte, bool, error) {
	if x.failed != nil {
		return nil, false, x.failed
	}
	if resp == nil {
		// No initial response: a nil challenge asks for it.
		return nil, false, nil
	}
	user, token, err := parseXOAUTH2(resp)
	if err == nil {
		err = x.check(user, token)
	}
	if err != nil {
		x.failed = err
		return []byte(xoauth2Error), false, nil
	}
	return nil, true, nil
}

// parseXOAUTH2 reads "user=U\x01auth=Bearer T\x01\x01".
func parseXOAUTH2(resp []byte) (user, token string, err error) {
	s, ok := strings.CutSuffix(string(resp), "\x01\x01")
	if !ok {
		return "", "", errors.New("xoauth2: response does not end in ^A^A")
	}
	for _, kv := range strings.Split(s, "\x01") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "user":
			user = v
		case "auth":
			token, ok = strings.CutPrefix(v, "Bearer ")
			if !ok {
				return "", "", errors.New("xoauth2: auth is not a Bearer token")
			}
		}
	}
	if user == "" || token == "" {
		return "", "", errors.New("xoauth2: user or token missing")
	}
	return user, token, nil
}

var _ imapserver.SessionSASL = (*session)(nil)

func (ss *session) Login(username, password string) error {
	if err := ss.SessionIMAP4rev2.Login(username, password); err != nil {
		return err
	}
	ss.s.auth.record("LOGIN", username)
	return nil
}

func (ss *session) AuthenticateMechanisms() []string {
	if ss.s.auth.hasTokens() {
		return []string{sasl.Plain, "XOAUTH2"}
	}
	return []string{sasl.Plain}
}

func (ss *session) Authenticate(mech string) (sasl.Server, error) {
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthorizationFailed, Text: "SASL identity not supported"}
			}
			if err := ss.SessionIMAP4rev2.Login(username, password); err != nil {
				return err
			}
			ss.s.auth.record(sasl.Plain, username)
			return nil
		}), nil
	case "XOAUTH2":
		if ss.s.auth.hasTokens() {
			return &xoauth2Server{check: func(user, token string) error {
				fail := &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed, Text: "AUTHENTICATE failed."}
				if user != ss.s.Username || !ss.s.auth.tokenOK(token) {
					return fail
				}
				// The in-memory backend knows only passwords; logging in
				// with it selects the user for the session.
				if err := ss.SessionIMAP4rev2.Login(ss.s.Username, ss.s.Password); err != nil {
					return fail
				}
				ss.s.auth.record("XOAUTH2", user)
				return nil
			}}, nil
		}
	}
	return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "SASL mechanism not supported"}
}

// IMAPOptions adjust NewIMAPServer.
type IMAPOptions struct {
	// NoIdle advertises only IMAP4rev1 (no IDLE, no UIDPLUS), like an old
	// server; the default advertises IMAP4rev2, which includes both.
	NoIdle bool
	// OAuth2Tokens turns on AUTHENTICATE XOAUTH2 for the user with these
	// bearer tokens; password login keeps working.
	OAuth2Tokens []string
	// TLS, when set, serves implicit TLS (IMAPS) with this config.
	TLS *tls.Config
}

// NewIMAPServer starts a server on 127.0.0.1 and stops it at test cleanup.
func NewIMAPServer(t testing.TB, opts IMAPOptions) *IMAPServer {
	t.Helper()
	mem := imapmemserver.New()
	user := imapmemserver.NewUser("airut@example.com", "imap-password")
	if err := user.Create("INBOX", nil); err != nil {
		t.Fatalf("create INBOX: %v", err)
	}
	mem.AddUser(user)
	s := &IMAPServer{
		Host:     "127.0.0.1",
		Username: "airut@example.com",
		Password: "imap-password",
		user:     user,
		appended: make(chan struct{}),
		conns:    make(map[*imapserver.Conn]struct{}),
	}
	s.dropFetch.Store(-1)
	s.auth.setTokens(opts.OAuth2Tokens)

	caps := imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}}
	if opts.NoIdle {
		caps = imap.CapSet{imap.CapIMAP4rev1: {}}
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(conn *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			inner, ok := mem.NewSession().(imapserver.SessionIMAP4rev2)
			if !ok {
				return nil, nil, errors.New("imapmemserver session lacks IMAP4rev2 methods")
			}
			s.mu.Lock()
			s.conns[conn] = struct{}{}
			s.mu.Unlock()
			return &session{SessionIMAP4rev2: inner, s: s, conn: conn}, nil, nil
		},
		Caps: caps,
		// Plain TCP on loopback: LOGIN must be allowed without TLS.
		InsecureAuth: true,
		Logger:       newTestLogger(t),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen imap: %v", err)
	}
	s.ln = &trackingListener{Listener: ln, conns: make(map[net.Conn]struct{})}
	s.Port = ln.Addr().(*net.TCPAddr).Port
	s.server = srv
	var serve net.Listener = s.ln
	if opts.TLS != nil {
		serve, s.tls = tls.NewListener(s.ln, opts.TLS), true
	}
	go func() { _ = srv.Serve(serve) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// AcceptTokens replaces the XOAUTH2 tokens the server accepts, as a token
// revocation would; none turns XOAUTH2 off.
func (s *IMAPServer) AcceptTokens(tokens ...string) { s.auth.setTokens(tokens) }

// Logins lists the successful logins so far, including Inbox's.
func (s *IMAPServer) Logins() []Login { return s.auth.list() }

// Addr is host:port.
func (s *IMAPServer) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Append adds a raw message to INBOX and returns its UID. Connections in
// IDLE are told at once.
func (s *IMAPServer) Append(t testing.TB, raw []byte) imap.UID {
	t.Helper()
	data, err := s.user.Append("INBOX", literal{bytes.NewReader(raw)}, &imap.AppendOptions{})
	if err != nil {
		t.Fatalf("append to INBOX: %v", err)
	}
	s.mu.Lock()
	close(s.appended)
	s.appended = make(chan struct{})
	s.mu.Unlock()
	return data.UID
}

// Message is one message left in INBOX.
type Message struct {
	UID   imap.UID
	Flags []imap.Flag
	Raw   []byte
}

// Inbox lists what INBOX holds, over a real IMAP connection.
func (s *IMAPServer) Inbox(t testing.TB) []Message {
	t.Helper()
	var (
		cl  *imapclient.Client
		err error
	)
	if s.tls {
		// The helper looks at the mailbox; the channel's tests verify.
		cl, err = imapclient.DialTLS(s.Addr(), &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	} else {
		cl, err = imapclient.DialInsecure(s.Addr(), nil)
	}
	if err != nil {
		t.Fatalf("dial imap: %v", err)
	}
	defer cl.Close()
	if err := cl.Login(s.Username, s.Password).Wait(); err != nil {
		t.Fatalf("imap login: %v", err)
	}
	sel, err := cl.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("imap select: %v", err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	section := &imap.FetchItemBodySection{Peek: true}
	var all imap.SeqSet
	all.AddRange(1, 0)
	bufs, err := cl.Fetch(all, &imap.FetchOptions{
		UID:         true,
		Flags:       true,
		BodySection: []*imap.FetchItemBodySection{section},
	}).Collect()
	if err != nil {
		t.Fatalf("imap fetch: %v", err)
	}
	var out []Message
	for _, b := range bufs {
		out = append(out, Message{UID: b.UID, Flags: b.Flags, Raw: b.FindBodySection(section)})
	}
	return out
}

// DropConnections closes every open client connection but keeps listening,
// as a server restart or a network failure would look to a client.
func (s *IMAPServer) DropConnections() int {
	return s.ln.closeAll()
}

// Bye ends every client connection with an untagged BYE, as Dovecot does
// when it shuts down ("* BYE Server shutting down."), and returns how many
// it ended. The server keeps listening, as a restarted one would.
func (s *IMAPServer) Bye(text string) int {
	s.mu.Lock()
	conns := make([]*imapserver.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Bye(text)
	}
	return len(conns)
}

// DropOnFetch makes the nth FETCH command from now (1 = the next) close
// every client connection instead of answering, as a server or network
// failing in the middle of a download would.
func (s *IMAPServer) DropOnFetch(n int) { s.dropFetch.Store(int64(n)) }

// Connections counts the client connections accepted so far.
func (s *IMAPServer) Connections() int {
	s.ln.mu.Lock()
	defer s.ln.mu.Unlock()
	return s.ln.accepted
}

type literal struct{ *bytes.Reader }

func (l literal) Size() int64 { return l.Reader.Size() }

type trackingListener struct {
	net.Listener
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	accepted int
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.conns[c] = struct{}{}
	l.accepted++
	l.mu.Unlock()
	return &trackedConn{Conn: c, l: l}, nil
}

func (l *trackingListener) closeAll() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.conns)
	for c := range l.conns {
		_ = c.Close()
		delete(l.conns, c)
	}
	return n
}

type trackedConn struct {
	net.Conn
	l *trackingListener
}

func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c.Conn)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// SMTPServer accepts mail for any recipient and keeps it.
type SMTPServer struct {
	Host string
	Port int
	// Username, when set, must log in: with Password (AUTH PLAIN) or with
	// one of the OAuth2 tokens (AUTH XOAUTH2).
	Username string
	Password string

	auth     authLog
	mu       sync.Mutex
	msgs     []SMTPMessage
	changed  chan struct{}
	failNext int
	failCode int
	rejected int
}

// SMTPMessage is one received message.
type SMTPMessage struct {
	From string
	To   []string
	Data []byte
}

// SMTPOptions adjust NewSMTPServer.
type SMTPOptions struct {
	// Username requires a login as that user; Password turns on AUTH
	// PLAIN and OAuth2Tokens AUTH XOAUTH2 with these bearer tokens.
	Username     string
	Password     string
	OAuth2Tokens []string
	// TLS, when set, offers STARTTLS with this config.
	TLS *tls.Config
}

// NewSMTPServer starts a server on 127.0.0.1 and stops it at test cleanup.
func NewSMTPServer(t testing.TB, opts SMTPOptions) *SMTPServer {
	t.Helper()
	s := &SMTPServer{
		Host:     "127.0.0.1",
		Username: opts.Username,
		Password: opts.Password,
		changed:  make(chan struct{}),
	}
	s.auth.setTokens(opts.OAuth2Tokens)
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &smtpSession{s: s}, nil
	}))
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.TLSConfig = opts.TLS
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.ErrorLog = newTestLogger(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen smtp: %v", err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	s.Port = ln.Addr().(*net.TCPAddr).Port
	return s
}

// AcceptTokens replaces the XOAUTH2 tokens the server accepts, as a token
// revocation would.
func (s *SMTPServer) AcceptTokens(tokens ...string) { s.auth.setTokens(tokens) }

// Logins lists the successful AUTH exchanges so far.
func (s *SMTPServer) Logins() []Login { return s.auth.list() }

// FailNext makes the next n DATA commands fail with a temporary error
// (451), to exercise retries.
func (s *SMTPServer) FailNext(n int) { s.FailNextWith(n, 451) }

// FailNextWith makes the next n DATA commands fail with code: 4xx is a
// temporary failure, 5xx a permanent one (554 "transaction failed").
func (s *SMTPServer) FailNextWith(n, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext, s.failCode = n, code
}

// Rejected counts the DATA commands refused by FailNext/FailNextWith.
func (s *SMTPServer) Rejected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejected
}

// Messages returns a copy of what was received so far.
func (s *SMTPServer) Messages() []SMTPMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SMTPMessage(nil), s.msgs...)
}

// WaitMessage blocks until the nth message (1-based) has arrived or ctx
// ends.
func (s *SMTPServer) WaitMessage(ctx context.Context, n int) (SMTPMessage, error) {
	for {
		s.mu.Lock()
		if len(s.msgs) >= n {
			m := s.msgs[n-1]
			s.mu.Unlock()
			return m, nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return SMTPMessage{}, fmt.Errorf("wait for smtp message %d (have %d): %w", n, len(s.Messages()), ctx.Err())
		case <-ch:
		}
	}
}

func (s *SMTPServer) add(m SMTPMessage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failNext > 0 {
		s.failNext--
		s.rejected++
		if s.failCode >= 500 {
			return &smtp.SMTPError{Code: s.failCode, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "message refused"}
		}
		return &smtp.SMTPError{Code: s.failCode, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	s.msgs = append(s.msgs, m)
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

type smtpSession struct {
	s      *SMTPServer
	authed bool
	from   string
	to     []string
}

var _ smtp.AuthSession = (*smtpSession)(nil)

func (ss *smtpSession) AuthMechanisms() []string {
	if ss.s.Username == "" {
		return nil
	}
	var mechs []string
	if ss.s.Password != "" {
		mechs = append(mechs, sasl.Plain)
	}
	if ss.s.auth.hasTokens() {
		mechs = append(mechs, "XOAUTH2")
	}
	return mechs
}

func (ss *smtpSession) Auth(mech string) (sasl.Server, error) {
	switch {
	case mech == sasl.Plain && ss.s.Password != "":
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if username != ss.s.Username || password != ss.s.Password {
				return smtp.ErrAuthFailed
			}
			ss.authed = true
			ss.s.auth.record(sasl.Plain, username)
			return nil
		}), nil
	case mech == "XOAUTH2" && ss.s.auth.hasTokens():
		return &xoauth2Server{check: func(user, token string) error {
			if user != ss.s.Username || !ss.s.auth.tokenOK(token) {
				return smtp.ErrAuthFailed
			}
			ss.authed = true
			ss.s.auth.record("XOAUTH2", user)
			return nil
		}}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (ss *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.Username != "" && !ss.authed {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}

func (ss *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	return ss.s.add(SMTPMessage{From: ss.from, To: ss.to, Data: b})
}

func (ss *smtpSession) Reset() {
	ss.from = ""
	ss.to = nil
}

func (ss *smtpSession) Logout() error { return nil }

// testLogger sends server error logs to the test log. Server goroutines
// may log after the test ended, which the testing package does not allow
// (a panic, and a data race on the test's state): the test's cleanup
// closes the logger under the same lock that every line takes.
type testLogger struct {
	t     testing.TB
	mu    *sync.Mutex
	ended *bool
}

func newTestLogger(t testing.TB) testLogger {
	l := testLogger{t: t, mu: new(sync.Mutex), ended: new(bool)}
	t.Cleanup(func() {
		l.mu.Lock()
		*l.ended = true
		l.mu.Unlock()
	})
	return l
}

func (l testLogger) Printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !*l.ended {
		l.t.Logf(format, args...)
	}
}

func (l testLogger) Println(args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !*l.ended {
		l.t.Log(args...)
	}
}
