package mailtest

import (
	"bytes"
	"io"
	"mime"
	"testing"

	"github.com/emersion/go-message/mail"
)

// Sent is a message the gateway sent, parsed: its threading headers, its
// text and HTML bodies and its attachments by name.
type Sent struct {
	From, To, Subject, MessageID, InReplyTo, References string
	Text, HTML                                          string
	Attachments                                         map[string]string
}

// ParseSent parses a message the SMTP server received.
func ParseSent(t testing.TB, data []byte) Sent {
	t.Helper()
	r, err := mail.CreateReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("parse sent mail: %v\n%s", err, data)
	}
	var s Sent
	s.Subject, _ = r.Header.Subject()
	s.From, s.To = r.Header.Get("From"), r.Header.Get("To")
	s.MessageID = r.Header.Get("Message-Id")
	s.InReplyTo = r.Header.Get("In-Reply-To")
	s.References = r.Header.Get("References")
	s.Attachments = map[string]string{}
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("parse sent mail part: %v", err)
		}
		body, _ := io.ReadAll(p.Body)
		switch ph := p.Header.(type) {
		case *mail.InlineHeader:
			if ct, _, _ := mime.ParseMediaType(ph.Get("Content-Type")); ct == "text/html" {
				s.HTML += string(body)
			} else {
				s.Text += string(body)
			}
		case *mail.AttachmentHeader:
			name, _ := ph.Filename()
			s.Attachments[name] = string(body)
		}
	}
	return s
}
