package allowlist

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ErrUnsafePath is matched (errors.Is) by every CleanPath error.
var ErrUnsafePath = errors.New("unsafe request path")

// ErrBadHost is matched (errors.Is) by every NormalizeHost error.
var ErrBadHost = errors.New("invalid host")

// CleanPath checks a raw request target (origin form: path and optional
// query, as on the request line) and returns it percent-decoded exactly
// once, for Match. The proxy forwards the original raw target upstream, so
// these checks make sure the proxy and the upstream cannot disagree on
// which resource is meant:
//
//   - an invalid '%' sequence is an error (decoding it "leniently" is a
//     guess about what the upstream will do);
//   - a NUL anywhere is an error (C servers truncate at it);
//   - in the path part, a backslash is an error (some servers treat it as
//     '/'), and so is a "." or ".." segment, raw or encoded: the upstream
//     removes them, so "/repos/acme/app/../../other" would match
//     "/repos/acme/app*" here and reach another repository there. "/./" is
//     refused too although it cannot climb: it lets a request match a
//     pattern like "/api/*/read" while reaching "/api/read", and clients
//     remove dot segments before sending (RFC 3986), so no real client
//     sends one. "/..hidden" and "/.well-known" are ordinary names.
//
// The path part ends at the first '?' of the raw target, not of the
// decoded one: "%3F" is part of a path segment, and "/a%3F/../b" is still
// a traversal. The query is decoded too (patterns match it), but only NUL
// is refused there; a double-encoded "%252e" decodes to the literal "%2e"
// and is allowed. A target not starting with '/' is an error.
func CleanPath(rawPathAndQuery string) (string, error) {
	if !strings.HasPrefix(rawPathAndQuery, "/") {
		return "", fmt.Errorf("%w: %q does not start with '/'", ErrUnsafePath, rawPathAndQuery)
	}
	rawPath, rawQuery, hasQuery := strings.Cut(rawPathAndQuery, "?")
	path, err := percentDecode(rawPath)
	if err != nil {
		return "", err
	}
	query, err := percentDecode(rawQuery)
	if err != nil {
		return "", err
	}
	switch {
	case strings.IndexByte(path, 0) >= 0 || strings.IndexByte(query, 0) >= 0:
		return "", fmt.Errorf("%w: NUL byte", ErrUnsafePath)
	case strings.IndexByte(path, '\\') >= 0:
		return "", fmt.Errorf("%w: backslash in path", ErrUnsafePath)
	case hasDotSegment(path):
		return "", fmt.Errorf("%w: dot segment in path", ErrUnsafePath)
	}
	if hasQuery {
		return path + "?" + query, nil
	}
	return path, nil
}

// hasDotSegment reports whether a decoded path has a "." or ".." segment.
func hasDotSegment(path string) bool {
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// percentDecode decodes every %XX once; '+' stays '+' (it is not a space
// in a path, and the reference's unquote keeps it too).
func percentDecode(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			end := min(i+3, len(s))
			return "", fmt.Errorf("%w: invalid percent-encoding %q", ErrUnsafePath, s[i:end])
		}
		b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
		i += 2
	}
	return b.String(), nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// NormalizeHost turns a Host header, SNI name or URL host into the form
// Match expects: lower-case, one trailing dot removed, an optional ":port"
// removed, an IPv6 literal ("[::1]:443", or bare "::1") in canonical form
// without brackets. A name must be a DNS name of letters, digits, '-' and
// '_' labels (1 to 63 characters, 253 in all); anything else, including an
// empty host, a bad port, a zone or percent-encoding, is an error, since
// a host the proxy cannot read unambiguously must not be matched.
func NormalizeHost(h string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w %q: %s", ErrBadHost, h, why)
	}
	if h == "" {
		return bad("empty")
	}
	if h[0] == '[' {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return bad("missing ']'")
		}
		if rest := h[end+1:]; rest != "" {
			port, ok := strings.CutPrefix(rest, ":")
			if !ok || !validPort(port) {
				return bad("invalid port")
			}
		}
		ip, err := netip.ParseAddr(h[1:end])
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return bad("invalid IPv6 literal")
		}
		return ip.String(), nil
	}
	if strings.Count(h, ":") > 1 {
		ip, err := netip.ParseAddr(h)
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return bad("invalid IPv6 literal")
		}
		return ip.String(), nil
	}
	name, port, hasPort := strings.Cut(h, ":")
	if hasPort && !validPort(port) {
		return bad("invalid port")
	}
	name = normalizeHostName(name)
	if name == "" || len(name) > 253 {
		return bad("invalid length")
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return bad("empty or overlong label")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return bad(fmt.Sprintf("invalid character %q", c))
			}
		}
	}
	return name, nil
}

// validPort accepts "" (RFC 3986 allows an empty port) or 1 to 65535.
func validPort(p string) bool {
	if p == "" {
		return true
	}
	if len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n >= 1 && n <= 65535
}
