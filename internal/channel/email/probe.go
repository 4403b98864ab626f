package email

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"

	"github.com/airut/airut/internal/channel"
)

var _ channel.Prober = (*Channel)(nil)

// Problem is the kind of failure a probe met; `airut check` picks the fix
// it prints by it.
type Problem string

const (
	// ProblemUnreachable: no TCP connection (name, port, firewall).
	ProblemUnreachable Problem = "unreachable"
	// ProblemCertificate: the server's certificate is not trusted for its
	// name (private CA without ca_file, wrong name, expired).
	ProblemCertificate Problem = "certificate"
	// ProblemLogin: the server refused the username and password (or the
	// OAuth2 token, or it could not be had).
	ProblemLogin Problem = "login"
	// ProblemOther is anything else: STARTTLS or AUTH not offered, no
	// INBOX, a protocol error.
	ProblemOther Problem = "other"
)

// ProbeError is one side's probe failure.
type ProbeError struct {
	Protocol string // "imap" or "smtp"
	Addr     string // host:port
	Problem  Problem
	Err      error
}

func (e *ProbeError) Error() string { return fmt.Sprintf("%s %s: %v", e.Protocol, e.Addr, e.Err) }
func (e *ProbeError) Unwrap() error { return e.Err }

// loginError marks a refused login, whatever the protocol said.
type loginError struct{ err error }

func (e *loginError) Error() string { return e.err.Error() }
func (e *loginError) Unwrap() error { return e.err }

func classify(err error) Problem {
	var (
		login    *loginError
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		dnsErr   *net.DNSError
		opErr    *net.OpError
	)
	switch {
	case errors.As(err, &login):
		return ProblemLogin
	case errors.As(err, &verify), errors.As(err, &unknown), errors.As(err, &hostname), errors.As(err, &invalid):
		return ProblemCertificate
	case errors.As(err, &dnsErr), errors.As(err, &opErr) && opErr.Op == "dial":
		return ProblemUnreachable
	}
	return ProblemOther
}

// Probe logs in to the IMAP server (then logs out) and opens an SMTP
// session with the configured TLS and AUTH (then quits), on connections of
// its own, so a running Run is not disturbed. Both sides are tried; the
// error joins a *ProbeError per side that failed and becomes the repo's
// status reason.
func (c *Channel) Probe(ctx context.Context) error {
	return errors.Join(c.ProbeIMAP(ctx), c.ProbeSMTP(ctx))
}

// ProbeIMAP is Probe's IMAP half: connect, TLS, login, SELECT INBOX.
func (c *Channel) ProbeIMAP(ctx context.Context) error {
	cl, _, err := c.dialIMAP(ctx, nil, nil)
	if err != nil {
		return &ProbeError{Protocol: "imap", Addr: c.imapAddr(), Problem: classify(err), Err: err}
	}
	_ = cl.Logout().Wait()
	cl.Close()
	return nil
}

// ProbeSMTP is Probe's SMTP half: connect, TLS (STARTTLS), AUTH when
// require_auth is set.
func (c *Channel) ProbeSMTP(ctx context.Context) error {
	fail := func(err error) error {
		return &ProbeError{Protocol: "smtp", Addr: c.smtpAddr(), Problem: classify(err), Err: err}
	}
	sc, err := c.smtpClient(ctx)
	if err != nil {
		return fail(err)
	}
	defer sc.Close()
	stop := context.AfterFunc(ctx, func() { sc.Close() })
	defer stop()
	// go-smtp finishes the STARTTLS handshake on the next command: without
	// one, an untrusted certificate would pass unnoticed.
	if err := sc.Noop(); err != nil {
		return fail(fmt.Errorf("smtp after starttls: %w", err))
	}
	if c.cfg.SMTP.RequireAuth {
		if ok, _ := sc.Extension("AUTH"); !ok {
			return fail(errors.New("server offers no AUTH but require_auth is set"))
		}
		if err := c.smtpAuth(ctx, sc); err != nil {
			return fail(err)
		}
	}
	_ = sc.Quit()
	return nil
}
