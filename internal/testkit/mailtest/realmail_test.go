package mailtest_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/airut/airut/internal/testkit/mailtest"
)

var accounts = map[string]string{"airut@example.com": "airut-pw-1", "alice@example.org": "alice-pw-2"}

func message(from, subject string, extra ...string) []byte {
	var b strings.Builder
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	fmt.Fprintf(&b, "From: %s\r\nTo: airut@example.com\r\nSubject: %s\r\nMessage-ID: <%d@example.org>\r\nDate: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n",
		from, subject, time.Now().UnixNano(), time.Now().Format(time.RFC1123Z))
	return []byte(b.String())
}

// TestRealMailAuthenticationResults: the receiving side writes one
// Authentication-Results header of its own at the top and drops the ones
// a sender put in; DMARC passes only with an aligned DKIM signature.
func TestRealMailAuthenticationResults(t *testing.T) {
	m := mailtest.StartRealMail(t, accounts)
	alice := m.DomainKey("example.org")
	evil := m.DomainKey("evil.example")
	forged := "Authentication-Results: " + m.AuthservID + "; dmarc=pass header.from=example.org"

	tests := []struct {
		name, subject string
		raw           func(subject string) []byte
		want          authres.ResultValue
	}{
		{"signed by the From domain", "signed", func(s string) []byte { return must(alice.Sign(message("Alice <alice@example.org>", s))) }, authres.ResultPass},
		{"unsigned, with a forged pass", "forged", func(s string) []byte { return message("alice@example.org", s, forged) }, authres.ResultFail},
		{"signed by another domain", "other", func(s string) []byte { return must(evil.Sign(message("alice@example.org", s, forged))) }, authres.ResultFail},
	}
	for i, tt := range tests {
		m.Deliver(t, "alice@example.org", "airut@example.com", tt.raw(tt.subject))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		msgs := m.WaitMailbox(ctx, t, "airut@example.com", tt.subject, func(ms []mailtest.Message) bool { return len(ms) == i+1 })
		cancel()
		raw := msgs[i].Raw
		r, err := mail.CreateReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		ars := r.Header.Values("Authentication-Results")
		if len(ars) != 1 {
			t.Errorf("%s: %d Authentication-Results headers %q; want exactly the receiver's", tt.name, len(ars), ars)
			continue
		}
		id, results, err := authres.Parse(ars[0])
		if err != nil || id != m.AuthservID {
			t.Errorf("%s: header %q: authserv-id %q, %v; want %s", tt.name, ars[0], id, err, m.AuthservID)
			continue
		}
		var got authres.ResultValue
		for _, res := range results {
			if d, ok := res.(*authres.DMARCResult); ok {
				got = d.Value
			}
		}
		if got != tt.want {
			t.Errorf("%s: dmarc=%s (%q); want %s", tt.name, got, ars[0], tt.want)
		}
	}
}

// TestRealMailSubmission: submission wants STARTTLS before AUTH, and AUTH
// before relaying; delivered mail lands in the recipient's Dovecot inbox.
func TestRealMailSubmission(t *testing.T) {
	m := mailtest.StartRealMail(t, accounts)
	addr := net.JoinHostPort(m.Host, strconv.Itoa(m.SubmissionPort))
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "airut@example.com", "airut-pw-1")); err == nil {
		t.Error("AUTH before STARTTLS succeeded; want it refused")
	}
	c.Close()

	c, err = smtp.DialStartTLS(addr, m.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("airut@example.com", nil); err == nil {
		if err := c.Rcpt("alice@example.org", nil); err == nil {
			t.Error("RCPT without AUTH accepted")
		}
	}
	if err := c.Auth(sasl.NewPlainClient("", "airut@example.com", "wrong")); err == nil {
		t.Fatal("wrong password accepted")
	}
	c.Close()
	c, err = smtp.DialStartTLS(addr, m.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "airut@example.com", "airut-pw-1")); err != nil {
		t.Fatalf("auth: %v", err)
	}
	if err := c.SendMail("airut@example.com", []string{"alice@example.org"}, bytes.NewReader(message("airut@example.com", "reply"))); err != nil {
		t.Fatalf("send: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m.WaitMailbox(ctx, t, "alice@example.org", "the reply", func(ms []mailtest.Message) bool { return len(ms) == 1 })
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
