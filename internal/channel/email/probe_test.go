package email_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/airut/airut/internal/channel/email"
	"github.com/airut/airut/internal/testkit"
	"github.com/airut/airut/internal/testkit/mailtest"
)

// problems lists the kinds of the *ProbeError values joined in err.
func problems(err error) []email.Problem {
	if err == nil {
		return nil
	}
	var out []email.Problem
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		var pe *email.ProbeError
		if errors.As(e, &pe) {
			out = append(out, pe.Problem)
		}
	}
	return out
}

// TestProbeCertificates: a private mail CA is trusted through ca_file and
// only for the side it is configured on; without it the probe names a
// certificate problem.
func TestProbeCertificates(t *testing.T) {
	ca, other := testkit.NewTestCA(t), testkit.NewTestCA(t)
	leaf := ca.Leaf(t, "mail.test")
	srvTLS := &tls.Config{Certificates: []tls.Certificate{leaf}}
	dir := t.TempDir()
	caFile, otherFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "other.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(otherFile, other.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name           string
		imapCA, smtpCA string
		serverName     string
		want           []email.Problem
	}{
		{name: "both trusted by ca_file", imapCA: caFile, smtpCA: caFile},
		{name: "no ca_file: unknown authority", want: []email.Problem{email.ProblemCertificate, email.ProblemCertificate}},
		{name: "imap's ca_file does not cover smtp", imapCA: caFile, want: []email.Problem{email.ProblemCertificate}},
		{name: "another CA", imapCA: otherFile, smtpCA: caFile, want: []email.Problem{email.ProblemCertificate}},
		{name: "wrong server name", imapCA: caFile, smtpCA: caFile, serverName: "127.0.0.1",
			want: []email.Problem{email.ProblemCertificate, email.ProblemCertificate}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, mailtest.IMAPOptions{TLS: srvTLS}, mailtest.SMTPOptions{TLS: srvTLS})
			name := tt.serverName
			if name == "" {
				name = "mail.test"
			}
			// The name to verify is the configured server's; the test
			// servers listen on 127.0.0.1, so only the dial is redirected.
			h.cfg.IMAP.TLS, h.cfg.IMAP.CAFile = email.TLSImplicit, tt.imapCA
			h.cfg.SMTP.TLS, h.cfg.SMTP.CAFile = email.TLSStartTLS, tt.smtpCA
			h.cfg.IMAP.TLSConfig = &tls.Config{ServerName: name, MinVersion: tls.VersionTLS12}
			h.cfg.SMTP.TLSConfig = &tls.Config{ServerName: name, MinVersion: tls.VersionTLS12}
			err := h.channel(t).Probe(context.Background())
			if got := problems(err); !slices.Equal(got, tt.want) {
				t.Fatalf("problems %v; want %v (%v)", got, tt.want, err)
			}
		})
	}
}

func TestNewRejectsBadCAFile(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ file, want string }{
		{filepath.Join(dir, "missing.pem"), "imap.ca_file"},
		{notPEM, "no PEM certificate"},
	} {
		h := newHarness(t, mailtest.IMAPOptions{}, mailtest.SMTPOptions{})
		h.cfg.IMAP.CAFile = tt.file
		_, err := email.New(h.cfg, func(string) bool { return false }, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New with ca_file %s: %v; want an error containing %q", tt.file, err, tt.want)
		}
	}
}

func TestProbe(t *testing.T) {
	tests := []struct {
		name   string
		smtp   mailtest.SMTPOptions
		mutate func(h *harness)
		want   string // "" = success
		// problems are the ProbeError kinds, IMAP's first.
		problems []email.Problem
	}{
		{name: "ok", smtp: mailtest.SMTPOptions{Username: "airut", Password: "smtp-pw-1"},
			mutate: func(h *harness) {
				h.cfg.SMTP.RequireAuth, h.cfg.SMTP.Username, h.cfg.SMTP.Password = true, "airut", "smtp-pw-1"
			}},
		{name: "imap wrong password", mutate: func(h *harness) { h.cfg.IMAP.Password = "wrong-password" },
			want: "imap login as", problems: []email.Problem{email.ProblemLogin}},
		{name: "imap unreachable", mutate: func(h *harness) { h.cfg.IMAP.Port = closedPort(t) },
			want: "dial imap 127.0.0.1:", problems: []email.Problem{email.ProblemUnreachable}},
		{name: "smtp wrong password", smtp: mailtest.SMTPOptions{Username: "airut", Password: "smtp-pw-1"},
			mutate: func(h *harness) {
				h.cfg.SMTP.RequireAuth, h.cfg.SMTP.Username, h.cfg.SMTP.Password = true, "airut", "nope-nope"
			},
			want: "smtp 127.0.0.1:", problems: []email.Problem{email.ProblemLogin}},
		{name: "smtp unreachable", mutate: func(h *harness) { h.cfg.SMTP.Port = closedPort(t) },
			want: "smtp 127.0.0.1:", problems: []email.Problem{email.ProblemUnreachable}},
		{name: "both sides fail, both are reported",
			mutate: func(h *harness) { h.cfg.IMAP.Password, h.cfg.SMTP.Port = "wrong-password", closedPort(t) },
			want:   "smtp 127.0.0.1:", problems: []email.Problem{email.ProblemLogin, email.ProblemUnreachable}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, mailtest.IMAPOptions{}, tc.smtp)
			tc.mutate(h)
			err := h.channel(t).Probe(context.Background())
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Probe: %v; want success", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Probe: %v; want an error containing %q", err, tc.want)
			}
			if got := problems(err); !slices.Equal(got, tc.problems) {
				t.Errorf("problems %v; want %v (%v)", got, tc.problems, err)
			}
			if err != nil && (strings.Contains(err.Error(), "wrong-password") || strings.Contains(err.Error(), "nope-nope")) {
				t.Errorf("probe error carries the password: %v", err)
			}
		})
	}
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}
