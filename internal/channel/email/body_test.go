package email

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/airut/airut/internal/channel"
)

func TestReadContent(t *testing.T) {
	tests := []struct {
		name     string
		fixture  string
		wantBody string
		wantAtts []channel.Attachment
	}{
		{
			name:     "gmail trailing quote",
			fixture:  "gmail_reply.eml",
			wantBody: "Thanks, now also add a **test**.\n\n" + quoteRemoved,
		},
		{
			name:    "gmail inline reply",
			fixture: "gmail_inline.eml",
			wantBody: "See my answers inline.\n\n" +
				"> On Mon, Nov 23, 2026 Airut wrote:\n>\n> Which database should I use?\n\n" +
				"Postgres, please.\n\n" +
				"> Should I add tests?\n> And docs?\n\n" +
				"Yes to both.\n\n" + quoteRemoved,
		},
		{
			name:     "outlook web reply header",
			fixture:  "outlook_web.eml",
			wantBody: "Please also update the changelog.\n\n" + quoteRemoved,
		},
		{
			name:     "outlook desktop border-top separator",
			fixture:  "outlook_desktop.eml",
			wantBody: "Looks good, merge it.\n\n" + quoteRemoved,
		},
		{
			name:     "apple blockquote cite",
			fixture:  "apple_reply.eml",
			wantBody: "Ship it.\n\n" + quoteRemoved,
		},
		{
			name:     "thunderbird cite prefix",
			fixture:  "thunderbird_reply.eml",
			wantBody: "Please rebase first.\n\n- then push\n- then ping me\n\n" + quoteRemoved,
		},
		{
			name:     "plain text trailing quote",
			fixture:  "text_quote.eml",
			wantBody: "Great, thanks.\n\n> keep this inline quote\nand this answer.",
		},
		{
			name:     "rfc 2047 and 2231 file names, empty and inline parts skipped",
			fixture:  "rfc2047.eml",
			wantBody: "Siehe Anhang.",
			wantAtts: []channel.Attachment{
				{Name: "Bericht über 2026.pdf", Data: []byte("%PDF-1.4\n%äüöß\n")},
				{Name: "été notes.txt", Data: []byte("summer notes\n")},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, atts, err := readContent(readFixture(t, tt.fixture))
			if err != nil {
				t.Fatalf("readContent: %v", err)
			}
			if diff := cmp.Diff(tt.wantBody, body); diff != "" {
				t.Errorf("body mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantAtts, atts); diff != "" {
				t.Errorf("attachments mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTextBody(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "no quote", in: "hello\nworld\n", want: "hello\nworld"},
		{name: "attribution and quote", in: "ok\n\nOn Mon, Alice wrote:\n> a\n> b\n", want: "ok"},
		{name: "quote without attribution", in: "ok\n> a\n", want: "ok"},
		{name: "inline quote kept", in: "> question\nanswer\n", want: "> question\nanswer"},
		{name: "only a quote is kept", in: "> forwarded text\n", want: "> forwarded text"},
		{name: "outlook original message", in: "ok\n\n-----Original Message-----\nFrom: Airut\n\nold", want: "ok"},
		{name: "outlook underscore header", in: "ok\n\n________________________________\nFrom: Airut\nSent: today\n\nold", want: "ok"},
		{name: "crlf", in: "ok\r\n\r\nOn Mon, Alice wrote:\r\n> a\r\n", want: "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := textBody(tt.in); got != tt.want {
				t.Errorf("textBody(%q) = %q; want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestHTMLBody(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "paragraphs and breaks", in: "<p>one<br>two</p><p>three</p>", want: "one\ntwo\n\nthree"},
		{name: "link", in: `see <a href="https://x.example/pr">the PR</a>`, want: "see the PR (https://x.example/pr)"},
		{name: "bare link", in: `<a href="https://x.example">https://x.example</a>`, want: "https://x.example"},
		{name: "ordered list", in: "<ol><li>a</li><li>b</li></ol>", want: "1. a\n2. b"},
		{name: "heading", in: "<h2>Plan</h2><p>x</p>", want: "## Plan\n\nx"},
		{name: "pre keeps layout", in: "<pre>a\n  b</pre>", want: "```\na\n  b\n```"},
		{name: "own blockquote is markdown quote", in: "<blockquote>cited</blockquote><p>mine</p>", want: "> cited\n\nmine"},
		{name: "script and style dropped", in: "<style>p{}</style><script>x()</script><p>hi</p>", want: "hi"},
		{name: "table", in: "<table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr></table>", want: "a | b\n1 | 2"},
		{name: "whitespace collapsed", in: "<div>  hello \n   world  </div>", want: "hello world"},
		{name: "only a quote is kept", in: `<blockquote type="cite">fwd text</blockquote>`, want: "> fwd text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := htmlBody(tt.in); got != tt.want {
				t.Errorf("htmlBody(%q) = %q; want %q", tt.in, got, tt.want)
			}
		})
	}
}
