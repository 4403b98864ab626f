package allowlist

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

func TestCleanPath(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		want    string
		wantErr string // substring; "" means success
	}{
		{"plain", "/repos/acme/app", "/repos/acme/app", ""},
		{"root", "/", "/", ""},
		{"query kept", "/v1/messages?beta=true", "/v1/messages?beta=true", ""},
		{"empty query kept", "/graphql?", "/graphql?", ""},
		{"encoded letter", "/%67raphql", "/graphql", ""},
		{"lower and upper hex", "/a%2fb%2Fc", "/a/b/c", ""},
		{"plus is not a space", "/a+b?q=c+d", "/a+b?q=c+d", ""},
		{"query decoded", "/search?q=%2F%3F%26", "/search?q=/?&", ""},
		{"encoded question mark stays in the path", "/a%3Fb?c", "/a?b?c", ""},
		{"double encoding in the query decoded once", "/a?u=%252e%252e", "/a?u=%2e%2e", ""},
		{"lone escaped percent", "/100%25", "/100%", ""},
		{"escaped percent before non-hex", "/100%25-off", "/100%-off", ""},
		{"dot-dot prefix of a name", "/..hidden", "/..hidden", ""},
		{"dot-dot suffix of a name", "/a../b", "/a../b", ""},
		{"dot file", "/.well-known/x", "/.well-known/x", ""},
		{"double slash", "//a//b", "//a//b", ""},
		{"dot-dot in query", "/a?next=/x/../y", "/a?next=/x/../y", ""},
		{"backslash in query", "/a?q=%5C", "/a?q=\\", ""},
		{"binary in query", "/a?q=%ff%c0%ae", "/a?q=\xff\xc0\xae", ""},
		{"path parameter on a name", "/a;jsessionid=1/b", "/a;jsessionid=1/b", ""},
		{"encoded UTF-8 name", "/b/%E6%97%A5.txt", "/b/日.txt", ""},
		{"encoded UTF-8 S3 key", "/bucket/caf%C3%A9%20menu.pdf", "/bucket/café menu.pdf", ""},
		{"full-width slash between names", "/a%EF%BC%8Fb", "/a／b", ""},
		{"full-width dot in a name", "/a%EF%BC%8Ejson", "/a．json", ""},
		{"brackets in query", "/a?x[]=1&y={2}", "/a?x[]=1&y={2}", ""},

		{"dot-dot segment", "/a/../b", "", "dot segment"},
		{"three dots", "/.../x", "", "dot segment"},
		{"dot-dot with path parameter", "/a/..;/b", "", "dot segment"},
		{"dot-dot with named path parameter", "/a/..;x=1/b", "", "dot segment"},
		{"dot with path parameter", "/a/.;/b", "", "dot segment"},
		{"encoded semicolon after dot-dot", "/a/..%3B/b", "", "dot segment"},
		{"dot-dot and trailing space", "/a/..%20/b", "", "dot segment"},
		{"double encoded dot-dot", "/%252e%252e/x", "", "escaped percent-encoding"},
		{"double encoded slash", "/a%252Fb", "", "escaped percent-encoding"},
		{"double encoded backslash", "/a%255cb", "", "escaped percent-encoding"},
		{"full-width dots", "/a/%EF%BC%8E%EF%BC%8E/b", "", "dot segment"},
		{"full-width slash and dots", "/a%EF%BC%8F..%EF%BC%8Fb", "", "dot segment"},
		{"one dot leader", "/a/%E2%80%A4/b", "", "dot segment"},
		{"two dot leader", "/a/%E2%80%A5/b", "", "dot segment"},
		{"small full stop", "/a/%EF%B9%92%EF%B9%92/b", "", "dot segment"},
		{"ideographic full stops", "/a/%E3%80%82%E3%80%82/b", "", "dot segment"},
		{"division slash", "/a%E2%88%95..%E2%88%95b", "", "dot segment"},
		{"full-width backslash", "/a%EF%BC%BCb", "", "backslash look-alike"},
		{"full-width percent escape", "/a%EF%BC%852e%EF%BC%852e/b", "", "percent look-alike"},
		{"overlong dot", "/a/%C0%AE%C0%AE/b", "", "not valid UTF-8"},
		{"overlong slash", "/a%C0%AFb", "", "not valid UTF-8"},
		{"three-byte overlong dot", "/a/%E0%80%AE/b", "", "not valid UTF-8"},
		{"non-UTF-8 byte", "/a%ff", "", "not valid UTF-8"},
		{"UTF-16 surrogate", "/a%ED%A0%80", "", "not valid UTF-8"},
		{"encoded newline", "/a%0Ab", "", "control character"},
		{"encoded tab", "/a%09b", "", "control character"},
		{"encoded DEL", "/a%7Fb", "", "control character"},
		{"raw space", "/a b", "", "space"},
		{"raw space before a forged verdict", "/x -> 200 ALLOWED GET https://evil", "", "space"},
		{"raw tab", "/a\tb", "", "control character"},
		{"raw newline", "/a\nb", "", "control character"},
		{"raw DEL", "/a\x7fb", "", "control character"},
		{"raw space in query", "/a?q=b c", "", "space"},
		{"raw non-ASCII", "/caf\xc3\xa9", "", "non-ASCII"},
		{"raw non-ASCII in query", "/a?q=\xff", "", "non-ASCII"},
		{"fragment", "/a#b", "", "fragment"},
		{"fragment in query", "/a?b#c", "", "fragment"},
		{"trailing dot-dot", "/a/..", "", "dot segment"},
		{"only dot-dot", "/..", "", "dot segment"},
		{"encoded dot-dot", "/a/%2e%2e/b", "", "dot segment"},
		{"upper-case encoded dot-dot", "/a/%2E%2E/b", "", "dot segment"},
		{"half encoded dot-dot", "/a/.%2e/b", "", "dot segment"},
		{"encoded slash makes a dot-dot segment", "/a%2F..%2Fb", "", "dot segment"},
		{"traversal behind an encoded question mark", "/a%3F/../b", "", "dot segment"},
		{"dot segment", "/a/./b", "", "dot segment"},
		{"trailing dot", "/a/.", "", "dot segment"},
		{"encoded dot segment", "/a/%2e/b", "", "dot segment"},
		{"NUL", "/a%00b", "", "NUL"},
		{"NUL in query", "/a?b=%00", "", "NUL"},
		{"backslash", "/a\\b", "", "backslash"},
		{"encoded backslash", "/a%5cb", "", "backslash"},
		{"encoded backslash upper", "/..%5C..%5Cetc", "", "backslash"},
		{"invalid escape", "/a%zz", "", `invalid percent-encoding "%zz"`},
		{"half invalid escape", "/a%4g", "", `invalid percent-encoding "%4g"`},
		{"truncated escape", "/a%4", "", `invalid percent-encoding "%4"`},
		{"lone percent", "/a%", "", `invalid percent-encoding "%"`},
		{"percent percent", "/%%", "", `invalid percent-encoding "%%"`},
		{"invalid escape in query", "/a?b=%", "", "invalid percent-encoding"},
		{"no leading slash", "a/b", "", "does not start with '/'"},
		{"empty", "", "", "does not start with '/'"},
		{"asterisk form", "*", "", "does not start with '/'"},
		{"absolute form", "http://x/a", "", "does not start with '/'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CleanPath(tt.raw)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Errorf("CleanPath(%q) = %q, %v; want %q, nil", tt.raw, got, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrUnsafePath) {
				t.Errorf("CleanPath(%q) = %q, %v; want an ErrUnsafePath containing %q", tt.raw, got, err, tt.wantErr)
			}
		})
	}
}

// serverModels are the ways real upstreams read a decoded path: each
// returns the segments the server would resolve. A path CleanPath accepts
// must have no "." or ".." segment under any of them.
var serverModels = map[string]func(path string) []string{
	"rfc3986": func(p string) []string { return strings.Split(p, "/") },
	"tomcat path parameters": func(p string) []string {
		segs := strings.Split(p, "/")
		for i, s := range segs {
			segs[i], _, _ = strings.Cut(s, ";")
		}
		return segs
	},
	"decodes twice": func(p string) []string {
		if d, err := url.PathUnescape(p); err == nil {
			p = d
		}
		return strings.Split(p, "/")
	},
	"backslash is a slash": func(p string) []string {
		return strings.Split(strings.ReplaceAll(p, "\\", "/"), "/")
	},
	"unicode compatibility folding": func(p string) []string {
		return strings.FieldsFunc(norm.NFKC.String(p), func(r rune) bool { return r == '/' || r == '\\' })
	},
	"windows trims trailing dots and spaces": func(p string) []string {
		segs := strings.Split(p, "/")
		for i, s := range segs {
			if t := strings.TrimRight(s, " "); t != s {
				segs[i] = t
			}
		}
		return segs
	},
}

// plainTarget reports whether raw uses only characters no server reads
// two ways (letters, digits, "-._~/", sub-delimiters but ';', '?'): such a
// target must be accepted unless it has a dot segment.
func plainTarget(raw string) bool {
	for _, c := range []byte(raw) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~/!$&'()*+,=:@?", c) >= 0) {
			return false
		}
	}
	return true
}

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{
		"/", "/a/../b", "/%2e%2e/", "/..hidden", "/a%3F/../b?c", "/%252e", "/a%5cb",
		"/a%00", "/a%zz", "/v1/messages?beta=true", "/./", "/.%2E/", "/a/..;/b",
		"/%EF%BC%8E%EF%BC%8E/", "/%C0%AE%C0%AE/", "/b/%E6%97%A5.txt", "/a b", "/a?q=%ff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := CleanPath(raw)
		if err != nil {
			if got != "" {
				t.Errorf("CleanPath(%q) = %q with error %v; want \"\"", raw, got, err)
			}
			if !errors.Is(err, ErrUnsafePath) {
				t.Errorf("CleanPath(%q) error %v does not match ErrUnsafePath", raw, err)
			}
			rawPath, _, _ := strings.Cut(raw, "?")
			if plainTarget(raw) && strings.HasPrefix(raw, "/") && !strings.Contains(rawPath, ";") {
				dots := false
				for _, seg := range strings.Split(rawPath, "/") {
					if seg != "" && strings.Trim(seg, ".") == "" {
						dots = true
					}
				}
				if !dots {
					t.Errorf("CleanPath(%q) = error %v; want a plain target accepted", raw, err)
				}
			}
			return
		}

		// Accepted: the decoding must be net/url's, once, and no server
		// model may see a dot segment, a NUL or a fragment.
		rawPath, rawQuery, hasQuery := strings.Cut(raw, "?")
		path, perr := url.PathUnescape(rawPath)
		query, qerr := url.PathUnescape(rawQuery)
		if perr != nil || qerr != nil {
			t.Fatalf("CleanPath(%q) accepted an invalid escape (%v, %v)", raw, perr, qerr)
		}
		want := path
		if hasQuery {
			want += "?" + query
		}
		if got != want {
			t.Errorf("CleanPath(%q) = %q; want %q", raw, got, want)
		}
		if !utf8.ValidString(path) || strings.ContainsAny(path, "\x00\\\n\r") || strings.ContainsRune(query, 0) {
			t.Errorf("CleanPath(%q) accepted a path with NUL, backslash, newline or invalid UTF-8: %q", raw, got)
		}
		if strings.ContainsAny(raw, " #\t") {
			t.Errorf("CleanPath(%q) accepted a space, tab or fragment in the raw target", raw)
		}
		for name, model := range serverModels {
			for _, seg := range model(path) {
				if seg == "." || seg == ".." {
					t.Errorf("CleanPath(%q) accepted %q, which a server that %s resolves as a dot segment", raw, path, name)
				}
			}
		}
	})
}

func TestNormalizeHost(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{"plain", "api.github.com", "api.github.com", false},
		{"upper case", "API.GitHub.COM", "api.github.com", false},
		{"trailing dot", "pypi.org.", "pypi.org", false},
		{"only one trailing dot", "pypi.org..", "", true},
		{"port", "pypi.org:443", "pypi.org", false},
		{"trailing dot and port", "pypi.org.:8443", "pypi.org", false},
		{"empty port", "pypi.org:", "pypi.org", false},
		{"underscore", "_dmarc.example.com", "_dmarc.example.com", false},
		{"single label", "localhost", "localhost", false},
		{"ipv4", "10.0.0.1:80", "10.0.0.1", false},
		{"bracketed ipv6", "[2001:DB8::1]", "2001:db8::1", false},
		{"bracketed ipv6 with port", "[2001:db8:0:0::1]:443", "2001:db8::1", false},
		{"bare ipv6", "::1", "::1", false},
		{"ipv4-mapped ipv6", "[::ffff:127.0.0.1]", "::ffff:127.0.0.1", false},

		{"empty", "", "", true},
		{"only port", ":443", "", true},
		{"only dot", ".", "", true},
		{"empty label", "a..b", "", true},
		{"leading dot", ".a.com", "", true},
		{"bad port", "pypi.org:https", "", true},
		{"port zero", "pypi.org:0", "", true},
		{"port too big", "pypi.org:65536", "", true},
		{"userinfo", "user@pypi.org", "", true},
		{"percent", "pyp%69.org", "", true},
		{"space", "pypi .org", "", true},
		{"slash", "pypi.org/x", "", true},
		{"backslash", "pypi.org\\x", "", true},
		{"NUL", "pypi.org\x00.evil.com", "", true},
		{"wildcard", "*.pypi.org", "", true},
		{"non-ASCII", "münchen.de", "", true},
		{"overlong label", strings.Repeat("a", 64) + ".com", "", true},
		{"overlong name", strings.Repeat("a.", 127) + "com", "", true},
		{"unclosed bracket", "[::1", "", true},
		{"bracketed ipv4", "[127.0.0.1]", "", true},
		{"zone", "[fe80::1%25eth0]", "", true},
		{"junk after bracket", "[::1]x", "", true},
		{"bare ipv6 junk", "::1::2", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeHost(tt.in)
			if tt.wantErr {
				if err == nil || !errors.Is(err, ErrBadHost) {
					t.Errorf("NormalizeHost(%q) = %q, %v; want an ErrBadHost", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("NormalizeHost(%q) = %q, %v; want %q, nil", tt.in, got, err, tt.want)
			}
		})
	}
}
