package gateway_test

import (
	"strings"
	"testing"
)

// TestRejectedMail: forged or unauthorized mail runs no task, gets no
// reply (no backscatter), is deleted, and the log says why.
func TestRejectedMail(t *testing.T) {
	h := newHarness(t)
	h.start(harnessOpts{})
	pass := "Authentication-Results: mx.example.com; dmarc=pass header.from=example.com"
	tests := []struct {
		name    string
		mail    outMail
		wantLog string
	}{
		{name: "forged header below the real one", mail: outMail{Headers: []string{
			"Authentication-Results: mx.example.com; dmarc=fail header.from=example.com", pass}}, wantLog: "dmarc"},
		{name: "wrong authserv-id", mail: outMail{Headers: []string{
			"Authentication-Results: evil.example.net; dmarc=pass header.from=example.com"}}, wantLog: "authserv"},
		{name: "dmarc=passthrough", mail: outMail{Headers: []string{
			"Authentication-Results: mx.example.com; dmarc=passthrough header.from=example.com"}}, wantLog: "dmarc"},
		{name: "two From headers", mail: outMail{Headers: []string{pass,
			"From: alice@example.com", "From: mallory@evil.example"}}, wantLog: "From"},
		{name: "unauthorized sender", mail: outMail{From: "Mallory <mallory@example.com>"}, wantLog: "not authorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := strings.Count(h.logs.String(), "email rejected")
			tt.mail.Subject = tt.name
			tt.mail.Body = "@@run touch /storage/ran\n@@reply should never run"
			h.send(tt.mail)
			h.waitInboxEmpty()
			waitFor(t, "the rejection log line", func() bool { return strings.Count(h.logs.String(), "email rejected") > before })
			var line string
			for _, l := range strings.Split(h.logs.String(), "\n") {
				if strings.Contains(l, "email rejected") {
					line = l
				}
			}
			if !strings.Contains(line, tt.wantLog) {
				t.Errorf("rejection log: got %q; want it to mention %q", line, tt.wantLog)
			}
		})
	}
	if n := len(h.gw.Tasks()); n != 0 {
		t.Errorf("tasks: got %d; want none", n)
	}
	if n := len(h.smtp.Messages()); n != 0 {
		t.Errorf("mails sent: got %d; want none", n)
	}
}
