package email

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/google/go-cmp/cmp"

	"github.com/airut/airut/internal/channel"
)

func TestThreadConversation(t *testing.T) {
	tests := []struct {
		name       string
		inReplyTo  []string
		references []string
		subject    string
		want       string
	}{
		{name: "nothing", subject: "Fix the build", want: ""},
		{name: "in-reply-to ours", inReplyTo: []string{"airut.1a2b3c4d.1795000000.abc123@example.com"}, want: "1a2b3c4d"},
		{name: "in-reply-to wins over references", inReplyTo: []string{"airut.11111111.1.a@example.com"},
			references: []string{"airut.22222222.1.a@example.com"}, want: "11111111"},
		{name: "references newest first", inReplyTo: []string{"CAxyz@mail.gmail.com"},
			references: []string{"airut.11111111.1.a@example.com", "other@x", "airut.22222222.1.a@example.com", "CAxyz@mail.gmail.com"}, want: "22222222"},
		{name: "subject tag", subject: "Re: [ID:abcdef01] Fix", want: "abcdef01"},
		{name: "subject tag upper-case hex", subject: "Re: [id:ABCDEF01] Fix", want: "abcdef01"},
		{name: "references before subject", references: []string{"airut.22222222.1.a@example.com"}, subject: "[ID:abcdef01]", want: "22222222"},
		{name: "foreign message ids ignored", inReplyTo: []string{"airut-ish.12345678@x"}, references: []string{"notairut.12345678.1.a@x"}, want: ""},
		{name: "too short tag", subject: "[ID:abc]", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := threadConversation(tt.inReplyTo, tt.references, tt.subject); got != tt.want {
				t.Errorf("got %q; want %q", got, tt.want)
			}
		})
	}
}

func TestReplySubject(t *testing.T) {
	tests := []struct {
		name, subject, want string
	}{
		{"plain", "Fix the build", "Re: [ID:1a2b3c4d] Fix the build"},
		{"one re", "Re: Fix the build", "Re: [ID:1a2b3c4d] Fix the build"},
		{"repeated re", "RE: Re: re: Fix", "Re: [ID:1a2b3c4d] Fix"},
		{"counted re", "Re[2]: Fix", "Re: [ID:1a2b3c4d] Fix"},
		{"existing tag", "Re: [ID:1a2b3c4d] Fix", "Re: [ID:1a2b3c4d] Fix"},
		{"re after tag", "Re: [ID:1a2b3c4d] RE: Fix", "Re: [ID:1a2b3c4d] Fix"},
		{"empty", "", "Re: [ID:1a2b3c4d]"},
		{"re inside kept", "Answer re: taxes", "Re: [ID:1a2b3c4d] Answer re: taxes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := replySubject(tt.subject, "1a2b3c4d"); got != tt.want {
				t.Errorf("replySubject(%q) = %q; want %q", tt.subject, got, tt.want)
			}
		})
	}
}

func TestNewMessageIDRoundTrip(t *testing.T) {
	id := newMessageID("1a2b3c4d", "example.com", time.Unix(1795000000, 0))
	if !strings.HasPrefix(id, "airut.1a2b3c4d.1795000000.") || !strings.HasSuffix(id, "@example.com") {
		t.Errorf("got %q; want airut.1a2b3c4d.1795000000.<nonce>@example.com", id)
	}
	if got := threadConversation([]string{id}, nil, ""); got != "1a2b3c4d" {
		t.Errorf("threadConversation(own id) = %q; want 1a2b3c4d", got)
	}
	if other := newMessageID("1a2b3c4d", "example.com", time.Unix(1795000000, 0)); other == id {
		t.Errorf("two ids in one second are equal: %q", id)
	}
}

func TestModelHint(t *testing.T) {
	tests := []struct {
		name, headers, want string
	}{
		{"to plus", "To: airut+haiku@example.com\n", "haiku"},
		{"cc plus upper", "To: bob@example.com\nCc: Airut <AIRUT+Sonnet@EXAMPLE.com>\n", "sonnet"},
		{"delivered-to", "To: list@example.com\nDelivered-To: airut+opus@example.com\n", "opus"},
		{"no plus", "To: airut@example.com\n", ""},
		{"other local part", "To: someone+haiku@example.com\n", ""},
		{"other domain", "To: airut+haiku@example.org\n", ""},
		{"unsafe model", "To: \"x\" <airut+--rm@example.com>\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := readHeader([]byte(tt.headers + "Subject: x\n\nbody\n"))
			if err != nil {
				t.Fatalf("readHeader: %v", err)
			}
			if got := modelHint(in.header, "airut@example.com"); got != tt.want {
				t.Errorf("got %q; want %q", got, tt.want)
			}
		})
	}
}

func TestBuildMessage(t *testing.T) {
	tests := []struct {
		name      string
		atts      []channel.Attachment
		wantTypes []string // content types of the leaf parts, in order
	}{
		{name: "no attachments", wantTypes: []string{"text/plain", "text/html"}},
		{name: "with attachment", atts: []channel.Attachment{{Name: "report é.pdf", Data: []byte("%PDF-1.4\n")}},
			wantTypes: []string{"text/plain", "text/html", "application/pdf"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := buildMessage(outgoing{
				from:        &mail.Address{Name: "Airut", Address: "airut@example.com"},
				to:          []*mail.Address{{Name: "Alice", Address: "alice@example.com"}},
				subject:     "Re: [ID:1a2b3c4d] Über",
				messageID:   "airut.1a2b3c4d.1.abc@example.com",
				inReplyTo:   "orig@example.com",
				references:  []string{"first@example.com", "orig@example.com"},
				date:        time.Unix(1795000000, 0),
				markdown:    "**Done** <script>x</script>",
				attachments: tt.atts,
			})
			if err != nil {
				t.Fatalf("buildMessage: %v", err)
			}
			mr, err := mail.CreateReader(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("parse built message: %v", err)
			}
			subj, _ := mr.Header.Subject()
			if subj != "Re: [ID:1a2b3c4d] Über" {
				t.Errorf("got subject %q; want %q", subj, "Re: [ID:1a2b3c4d] Über")
			}
			refs, _ := mr.Header.MsgIDList("References")
			if diff := cmp.Diff([]string{"first@example.com", "orig@example.com"}, refs); diff != "" {
				t.Errorf("References mismatch (-want +got):\n%s", diff)
			}
			irt, _ := mr.Header.MsgIDList("In-Reply-To")
			if diff := cmp.Diff([]string{"orig@example.com"}, irt); diff != "" {
				t.Errorf("In-Reply-To mismatch (-want +got):\n%s", diff)
			}
			var types []string
			var html, name string
			for {
				p, err := mr.NextPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("next part: %v", err)
				}
				b, _ := io.ReadAll(p.Body)
				switch h := p.Header.(type) {
				case *mail.InlineHeader:
					ct, _, _ := h.ContentType()
					types = append(types, ct)
					if ct == "text/html" {
						html = string(b)
					}
				case *mail.AttachmentHeader:
					ct, _, _ := h.ContentType()
					types = append(types, ct)
					name, _ = h.Filename()
				}
			}
			if diff := cmp.Diff(tt.wantTypes, types); diff != "" {
				t.Errorf("part types mismatch (-want +got):\n%s", diff)
			}
			if !strings.Contains(html, "<strong>Done</strong>") || strings.Contains(html, "<script>") {
				t.Errorf("got html %q; want rendered bold and escaped script", html)
			}
			if len(tt.atts) > 0 && name != tt.atts[0].Name {
				t.Errorf("got attachment name %q; want %q", name, tt.atts[0].Name)
			}
		})
	}
}
