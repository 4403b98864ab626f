package allowlist

import (
	"errors"
	"net/url"
	"strings"
	"testing"
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
		{"double encoding decoded once", "/%252e%252e/x", "/%2e%2e/x", ""},
		{"double encoded slash decoded once", "/a%252Fb", "/a%2Fb", ""},
		{"dot-dot prefix of a name", "/..hidden", "/..hidden", ""},
		{"dot-dot suffix of a name", "/a../b", "/a../b", ""},
		{"dot file", "/.well-known/x", "/.well-known/x", ""},
		{"three dots", "/.../x", "/.../x", ""},
		{"double slash", "//a//b", "//a//b", ""},
		{"dot-dot in query", "/a?next=/x/../y", "/a?next=/x/../y", ""},
		{"backslash in query", "/a?q=%5C", "/a?q=\\", ""},
		{"non-UTF-8 byte", "/a%ff", "/a\xff", ""},

		{"dot-dot segment", "/a/../b", "", "dot segment"},
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

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{
		"/", "/a/../b", "/%2e%2e/", "/..hidden", "/a%3F/../b?c", "/%252e", "/a%5cb",
		"/a%00", "/a%zz", "/v1/messages?beta=true", "/./", "/.%2E/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := CleanPath(raw)

		// Independent model: net/url decodes, the invariants are checked
		// on its result, and CleanPath must agree both ways.
		rawPath, rawQuery, hasQuery := strings.Cut(raw, "?")
		path, perr := url.PathUnescape(rawPath)
		query, qerr := url.PathUnescape(rawQuery)
		safe := strings.HasPrefix(raw, "/") && perr == nil && qerr == nil &&
			!strings.ContainsRune(path+query, 0) && !strings.ContainsRune(path, '\\')
		for seg := range strings.SplitSeq(path, "/") {
			if seg == "." || seg == ".." {
				safe = false
			}
		}
		want := path
		if hasQuery {
			want += "?" + query
		}

		switch {
		case err != nil && safe:
			t.Errorf("CleanPath(%q) = error %v; want %q", raw, err, want)
		case err == nil && !safe:
			t.Errorf("CleanPath(%q) = %q; want an error", raw, got)
		case err == nil && got != want:
			t.Errorf("CleanPath(%q) = %q; want %q", raw, got, want)
		case err != nil && got != "":
			t.Errorf("CleanPath(%q) = %q with error %v; want \"\"", raw, got, err)
		}
		if err == nil && strings.ContainsRune(got, 0) {
			t.Errorf("CleanPath(%q) = %q contains NUL", raw, got)
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
