package proxy

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestRecordLines(t *testing.T) {
	tests := []struct {
		rec  Record
		line string
	}{
		{Record{Verdict: VerdictAllowed, Method: "GET", URL: "https://api.github.com/repos/acme/app", Status: 200, Masked: 1}, "ALLOWED GET https://api.github.com/repos/acme/app -> 200 [masked: 1]"},
		{Record{Verdict: VerdictAllowed, Method: "POST", URL: "https://api.github.com/graphql", Status: 200, Token: "github-app"}, "ALLOWED POST https://api.github.com/graphql -> 200 [token: github-app]"},
		{Record{Verdict: VerdictAllowed, Method: "GET", URL: "https://a.test/x", Status: 200, Masked: 1, Token: "github-app", Dropped: 2, Redacted: 3, Upgrade: "h2c", Aborted: true}, "ALLOWED GET https://a.test/x -> 200 [masked: 1] [token: github-app] [dropped: 2] [redacted: 3] [upgrade refused: h2c] [aborted]"},
		{Record{Verdict: VerdictBlocked, Method: "POST", URL: "https://evil.com/upload", Status: 403}, "BLOCKED POST https://evil.com/upload -> 403"},
		{Record{Verdict: VerdictAllowed, Method: "PUT", URL: "https://b.s3.amazonaws.com/k", Status: 200, Signed: "aws", Redacted: 1}, "ALLOWED PUT https://b.s3.amazonaws.com/k -> 200 [signed: aws] [redacted: 1]"},
		{Record{Verdict: VerdictAllowed, Method: "GET", URL: "http://b.s3.amazonaws.com/k", Status: 403, Signed: "aws", SignError: "plain http"}, "ALLOWED GET http://b.s3.amazonaws.com/k -> 403 [not signed: aws: plain http]"},
		{Record{Verdict: VerdictAllowed, Method: "GET", URL: "https://s.test/", Status: 403, Signed: "aws", SignError: "x] [masked: 9\n"}, "ALLOWED GET https://s.test/ -> 403 [not signed: aws: x%5D %5Bmasked: 9%0A]"},
		{Record{Verdict: VerdictError, Method: "GET", URL: "https://pypi.org/simple", Reason: "dial tcp: i/o timeout"}, "ERROR GET https://pypi.org/simple -> dial tcp: i/o timeout"},
		{Record{Verdict: VerdictStripped, Header: "Authorization", Host: "evil-but-allowed.com"}, "STRIPPED Authorization on evil-but-allowed.com"},
		{Record{Verdict: VerdictStripped, Header: "Authorization", Host: "api.github.com", Why: "plain http"}, "STRIPPED Authorization on api.github.com (plain http)"},
		{Record{Verdict: VerdictDNS, QType: "A", Name: "api.github.com", Answer: "10.199.1.100"}, "DNS A api.github.com -> 10.199.1.100"},
		{Record{Verdict: VerdictDNS, QType: "AAAA", Name: "x.com", Answer: "NOTIMP"}, "DNS AAAA x.com -> NOTIMP"},
		{Record{Verdict: VerdictDNS, QType: dnsDropped, Reason: "2 questions"}, "DNS DROPPED 2 questions"},
		// A forged verdict inside a field stays inside it.
		{Record{Verdict: VerdictBlocked, Method: "GET", URL: "https://a.test/x -> 200 [masked: 1]\nALLOWED GET https://b", Status: 403},
			"BLOCKED GET https://a.test/x%20->%20200%20[masked:%201]%0AALLOWED%20GET%20https://b -> 403"},
		{Record{Verdict: VerdictError, Method: "GE T", URL: "https://a.test/é", Reason: "bad\r\nALLOWED x"}, "ERROR GE%20T https://a.test/%C3%A9 -> bad%0D%0AALLOWED x"},
		{Record{Verdict: VerdictAllowed, Method: "GET", URL: "https://a.test/", Status: 200, Upgrade: "h2c] [masked: 9"}, "ALLOWED GET https://a.test/ -> 200 [upgrade refused: h2c%5D%20%5Bmasked:%209]"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			if got := tt.rec.Line(); got != tt.line {
				t.Errorf("Line() = %q; want %q", got, tt.line)
			}
			got, err := ParseRecord(tt.line)
			if err != nil {
				t.Fatalf("ParseRecord: %v", err)
			}
			if got.Line() != tt.line {
				t.Errorf("ParseRecord(%q).Line() = %q; want it unchanged", tt.line, got.Line())
			}
		})
	}
}

func TestParseRecordErrors(t *testing.T) {
	for _, line := range []string{"", "HELLO world", "ALLOWED GET", "ALLOWED GET x => 200", "ALLOWED GET x -> abc", "ALLOWED GET x -> 200 [bogus: 1]", "ALLOWED GET x -> 200 [masked: 1", "STRIPPED Authorization", "DNS A x"} {
		if r, err := ParseRecord(line); err == nil {
			t.Errorf("ParseRecord(%q) = %+v; want an error", line, r)
		}
	}
}

// FuzzRecordLine: whatever an agent puts in a field, a record is one line
// and reads back with the same verdict, status and tags.
func FuzzRecordLine(f *testing.F) {
	f.Add("GET", "https://a.test/x -> 200 [masked: 1]\nALLOWED", "reason", "h2c", "Authorization", "host")
	f.Add("P\x00ST", "/\xff\xfe", "a\r\nb", "]", "X ] (", "h (plain http)")
	f.Fuzz(func(t *testing.T, method, u, reason, upgrade, header, host string) {
		recs := []Record{
			{Verdict: VerdictAllowed, Method: method, URL: u, Status: 200, Masked: 1, Redacted: 2, Upgrade: upgrade},
			{Verdict: VerdictBlocked, Method: method, URL: u, Status: 403},
			{Verdict: VerdictError, Method: method, URL: u, Reason: reason},
			{Verdict: VerdictStripped, Header: header, Host: host, Why: "plain http"},
			{Verdict: VerdictDNS, QType: method, Name: u, Answer: host},
			{Verdict: VerdictDNS, QType: dnsDropped, Reason: reason},
		}
		for _, r := range recs {
			line := r.Line()
			if strings.ContainsAny(line, "\r\n\x00") {
				t.Fatalf("Line() = %q has a line break or NUL", line)
			}
			got, err := ParseRecord(line)
			if err != nil {
				t.Fatalf("ParseRecord(%q): %v", line, err)
			}
			if got.Line() != line {
				t.Fatalf("ParseRecord(%q).Line() = %q", line, got.Line())
			}
			want := Record{Verdict: r.Verdict, Status: r.Status, Masked: r.Masked, Redacted: r.Redacted, Why: r.Why}
			if r.Verdict == VerdictDNS && r.QType == dnsDropped {
				want.QType = dnsDropped
			}
			opts := cmpopts.IgnoreFields(Record{}, "Method", "URL", "Reason", "Upgrade", "Header", "Host", "QType", "Name", "Answer")
			if diff := cmp.Diff(want, got, opts); diff != "" {
				t.Fatalf("ParseRecord(%q) mismatch (-want +got):\n%s", line, diff)
			}
		}
	})
}
