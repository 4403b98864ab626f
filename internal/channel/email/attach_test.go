package email_test

import (
	"context"
	"strings"
	"testing"

	"github.com/emersion/go-message/mail"

	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/testkit/mailtest"
)

// TestAttachmentTypes checks what a mail client gets for outbox files:
// the media type with its charset, and the name intact whatever its
// script. The old code passed "text/plain; charset=utf-8" as a bare media
// type, which formats to an empty Content-Type.
func TestAttachmentTypes(t *testing.T) {
	tests := []struct {
		name, data  string
		wantType    string
		wantCharset string
	}{
		{name: "notes.txt", data: "naïve café ✓\n", wantType: "text/plain", wantCharset: "utf-8"},
		{name: "Überblick – 日本語.txt", data: "grüße\n", wantType: "text/plain", wantCharset: "utf-8"},
		{name: "latin1.txt", data: "caf\xe9\n", wantType: "text/plain"},
		{name: "page.html", data: "<p>hi</p>", wantType: "text/html", wantCharset: "utf-8"},
		{name: "plot.png", data: "\x89PNG\r\n\x1a\n", wantType: "image/png"},
		{name: "data.unknownext", data: "\x00\x01", wantType: "application/octet-stream"},
		{name: "noext", data: "x", wantType: "application/octet-stream"},
	}
	h := newHarness(t, mailtest.IMAPOptions{}, mailtest.SMTPOptions{})
	ch := h.channel(t)
	var atts []channel.Attachment
	for _, tt := range tests {
		atts = append(atts, channel.Attachment{Name: tt.name, Data: []byte(tt.data)})
	}
	msg := &channel.Message{SenderAddress: "alice@example.com", Subject: "files", Thread: map[string]string{"message_id": "m@example.com"}}
	if err := ch.Reply(context.Background(), msg, channel.Reply{ConversationID: "1a2b3c4d", Markdown: "here", Attachments: atts}); err != nil {
		t.Fatalf("Reply: %v", err)
	}
	raw := h.waitSMTP(t, 1).Data
	got := attachmentHeaders(t, raw)
	for _, tt := range tests {
		ah, ok := got[tt.name]
		if !ok {
			t.Errorf("%s: not among the attachments %v", tt.name, keys(got))
			continue
		}
		ct, params, err := ah.ContentType()
		if err != nil || ct != tt.wantType || params["charset"] != tt.wantCharset {
			t.Errorf("%s: Content-Type %q parsed as %q charset %q (err %v); want %q charset %q",
				tt.name, ah.Get("Content-Type"), ct, params["charset"], err, tt.wantType, tt.wantCharset)
		}
		if params["name"] != tt.name {
			t.Errorf("%s: Content-Type name %q; want the file name", tt.name, params["name"])
		}
	}
	// The wire form is ASCII only: 8-bit names in headers break on
	// servers without SMTPUTF8.
	for _, line := range strings.Split(string(raw), "\r\n") {
		if strings.HasPrefix(line, "Content-Disposition") || strings.HasPrefix(line, "Content-Type") {
			for _, r := range line {
				if r > 0x7e {
					t.Errorf("non-ASCII header line %q", line)
					break
				}
			}
		}
	}
}

func attachmentHeaders(t *testing.T, raw []byte) map[string]*mail.AttachmentHeader {
	t.Helper()
	mr, err := mail.CreateReader(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*mail.AttachmentHeader{}
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		if ah, ok := p.Header.(*mail.AttachmentHeader); ok {
			name, _ := ah.Filename()
			out[name] = ah
		}
	}
	return out
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestInboundAttachmentNames decodes the two ways clients write a
// non-ASCII file name: RFC 2231 (filename*=, Thunderbird, Apple Mail) and
// RFC 2047 inside the quoted parameter (Outlook, Gmail).
func TestInboundAttachmentNames(t *testing.T) {
	const want = "Überblick 日本.txt"
	tests := []struct{ name, disposition string }{
		{"rfc2231", `attachment; filename*=utf-8''%C3%9Cberblick%20%E6%97%A5%E6%9C%AC.txt`},
		{"rfc2231 continued", "attachment;\r\n filename*0*=utf-8''%C3%9Cberblick%20;\r\n filename*1*=%E6%97%A5%E6%9C%AC.txt"},
		{"rfc2047", `attachment; filename="=?UTF-8?B?w5xiZXJibGljayDml6XmnKwudHh0?="`},
		{"rfc2047 iso-8859-1 name", `attachment; filename="=?ISO-8859-1?Q?=DCberblick_?= =?UTF-8?B?5pel5pysLnR4dA==?="`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, mailtest.IMAPOptions{}, mailtest.SMTPOptions{})
			raw := "Authentication-Results: mx.example.com; dmarc=pass header.from=example.com\r\n" +
				"From: alice@example.com\r\nTo: airut@example.com\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\nMessage-ID: <att@example.com>\r\n" +
				"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
				"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee file\r\n" +
				"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Disposition: " + tt.disposition + "\r\n\r\ninhalt\r\n--b--\r\n"
			h.imap.Append(t, []byte(raw))
			h.run(t, h.channel(t))
			msg := h.next(t)
			if msg.Subject != "Grüße" {
				t.Errorf("subject %q; want Grüße", msg.Subject)
			}
			if len(msg.Attachments) != 1 || msg.Attachments[0].Name != want {
				var names []string
				for _, a := range msg.Attachments {
					names = append(names, a.Name)
				}
				t.Fatalf("attachments %q; want [%q]", names, want)
			}
		})
	}
}
