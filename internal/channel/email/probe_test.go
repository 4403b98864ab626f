package email_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/airut/airut/internal/testkit/mailtest"
)

func TestProbe(t *testing.T) {
	tests := []struct {
		name   string
		smtp   mailtest.SMTPOptions
		mutate func(h *harness)
		want   string // "" = success
	}{
		{name: "ok", smtp: mailtest.SMTPOptions{Username: "airut", Password: "smtp-pw-1"},
			mutate: func(h *harness) {
				h.cfg.SMTP.RequireAuth, h.cfg.SMTP.Username, h.cfg.SMTP.Password = true, "airut", "smtp-pw-1"
			}},
		{name: "imap wrong password", mutate: func(h *harness) { h.cfg.IMAP.Password = "wrong-password" },
			want: "imap login as"},
		{name: "imap unreachable", mutate: func(h *harness) { h.cfg.IMAP.Port = closedPort(t) },
			want: "dial imap 127.0.0.1:"},
		{name: "smtp wrong password", smtp: mailtest.SMTPOptions{Username: "airut", Password: "smtp-pw-1"},
			mutate: func(h *harness) {
				h.cfg.SMTP.RequireAuth, h.cfg.SMTP.Username, h.cfg.SMTP.Password = true, "airut", "nope-nope"
			},
			want: "smtp 127.0.0.1:"},
		{name: "smtp unreachable", mutate: func(h *harness) { h.cfg.SMTP.Port = closedPort(t) },
			want: "smtp 127.0.0.1:"},
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
