package allowlist

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// ErrUnsafePath is matched (errors.Is) by every CleanPath error.
var ErrUnsafePath = errors.New("unsafe request path")

// ErrBadHost is matched (errors.Is) by every NormalizeHost error.
var ErrBadHost = errors.New("invalid host")

// CleanPath checks a raw request target (origin form: path and optional
// query, as on the request line or in an HTTP/2 :path) and returns it
// percent-decoded exactly once, for Match. The proxy forwards the original
// raw target upstream, so these checks make sure the proxy and the
// upstream cannot disagree on which resource is meant, whatever
// normalisation the upstream applies (RFC 3986 dot removal, Tomcat and
// Spring path parameters, a second percent-decoding, Unicode
// compatibility folding, Windows' trailing dots and spaces):
//
//   - the raw target must be syntactically valid: no space, control
//     character, DEL, '#' or raw non-ASCII byte (a client sends those
//     percent-encoded; raw, they are a malformed request line or an HTTP/2
//     :path that would forge a second field in the network log);
//   - an invalid '%' sequence is an error (decoding it "leniently" is a
//     guess about what the upstream will do);
//   - a NUL anywhere is an error (C servers truncate at it);
//   - in the path part, after decoding: a backslash or any control
//     character is an error (some servers treat '\' as '/'), and so is a
//     decoded "%XX" (a "%25" that decodes to another escape: an upstream
//     that decodes twice sees another path), and a path that is not valid
//     UTF-8 (overlong forms of '.' and '/' included);
//   - a dot segment is an error: a segment that is only dots (and spaces)
//     once its ";parameters" are cut off and Unicode look-alikes are folded
//     ("..", ".", "..;x", ".. ", "%2e%2e", "．．", "‥"; full-width and
//     other look-alike slashes count as '/'). The upstream removes them, so
//     "/repos/acme/app/../../other" would match "/repos/acme/app*" here and
//     reach another repository there. "/./" is refused too although it
//     cannot climb: it lets a request match a pattern like "/api/*/read"
//     while reaching "/api/read", and clients remove dot segments before
//     sending (RFC 3986), so no real client sends one. "/..hidden" and
//     "/.well-known" are ordinary names, and so are percent-encoded UTF-8
//     names ("/b/%E6%97%A5.txt").
//
// The path part ends at the first '?' of the raw target, not of the
// decoded one: "%3F" is part of a path segment, and "/a%3F/../b" is still
// a traversal. The query is decoded too (patterns match it), but only NUL
// is refused there: a query is not normalised into a path, and it may
// carry escaped escapes and binary data. A target not starting with '/' is
// an error.
func CleanPath(rawPathAndQuery string) (string, error) {
	if !strings.HasPrefix(rawPathAndQuery, "/") {
		return "", fmt.Errorf("%w: %q does not start with '/'", ErrUnsafePath, rawPathAndQuery)
	}
	if err := checkTargetSyntax(rawPathAndQuery); err != nil {
		return "", err
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
	if strings.IndexByte(path, 0) >= 0 || strings.IndexByte(query, 0) >= 0 {
		return "", fmt.Errorf("%w: NUL byte", ErrUnsafePath)
	}
	if err := checkDecodedPath(path); err != nil {
		return "", err
	}
	if hasQuery {
		return path + "?" + query, nil
	}
	return path, nil
}

// checkTargetSyntax refuses the bytes that RFC 9112 and RFC 3986 never
// allow unescaped in a request target and that change how it reads:
// space and controls end or split it, '#' starts a fragment a client
// never sends, and raw non-ASCII bytes are decoded differently by every
// server (Latin-1, UTF-8, "best fit").
func checkTargetSyntax(raw string) error {
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c <= ' ' || c == 0x7f:
			return fmt.Errorf("%w: raw control character or space (byte %#02x) in request target", ErrUnsafePath, c)
		case c >= 0x80:
			return fmt.Errorf("%w: raw non-ASCII byte %#02x in request target (send it percent-encoded)", ErrUnsafePath, c)
		case c == '#':
			return fmt.Errorf("%w: fragment ('#') in request target", ErrUnsafePath)
		}
	}
	return nil
}

// checkDecodedPath applies the path rules of CleanPath to a path decoded
// once.
func checkDecodedPath(path string) error {
	ascii := true
	for i := 0; i < len(path); i++ {
		switch c := path[i]; {
		case c < ' ' || c == 0x7f:
			return fmt.Errorf("%w: control character %#02x in path", ErrUnsafePath, c)
		case c == '\\':
			return fmt.Errorf("%w: backslash in path", ErrUnsafePath)
		case c >= 0x80:
			ascii = false
		}
	}
	if !ascii && !utf8.ValidString(path) {
		return fmt.Errorf("%w: decoded path is not valid UTF-8", ErrUnsafePath)
	}
	if hasEscape(path) {
		return fmt.Errorf("%w: escaped percent-encoding (%%25) in path", ErrUnsafePath)
	}
	folded := path
	if !ascii {
		folded = foldLookalikes(path)
		switch {
		case strings.IndexByte(folded, '\\') >= 0:
			return fmt.Errorf("%w: backslash look-alike in path", ErrUnsafePath)
		case hasEscape(folded):
			return fmt.Errorf("%w: percent look-alike escape in path", ErrUnsafePath)
		}
	}
	if hasDotSegment(folded) {
		return fmt.Errorf("%w: dot segment in path", ErrUnsafePath)
	}
	return nil
}

// hasEscape reports whether s holds a '%' followed by two hex digits.
func hasEscape(s string) bool {
	for i := strings.IndexByte(s, '%'); i >= 0; {
		if i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			return true
		}
		j := strings.IndexByte(s[i+1:], '%')
		if j < 0 {
			return false
		}
		i += 1 + j
	}
	return false
}

// lookalikes are characters that Unicode compatibility folding (NFKC)
// leaves alone but that some normalisers (IDNA, Windows "best fit"
// code-page mapping) still turn into '.', '/' or '\'.
var lookalikes = strings.NewReplacer(
	"\u3002", ".", // ideographic full stop (NFKC maps U+FF61 to it)
	"\u2044", "/", // fraction slash
	"\u2215", "/", // division slash
	"\u29f8", "/", // big solidus
	"\u2571", "/", // box drawing light diagonal
	"\u2216", "\\", // set minus
	"\u29f5", "\\", // reverse solidus operator
	"\u29f9", "\\", // big reverse solidus
)

// foldLookalikes maps a valid UTF-8 path to what an upstream that folds
// Unicode might read: NFKC (full-width '．' and '／', '․', '‥', '﹒', '％'
// …) and then the look-alikes NFKC keeps.
func foldLookalikes(path string) string {
	return lookalikes.Replace(norm.NFKC.String(path))
}

// hasDotSegment reports whether a decoded path has a segment that is only
// dots, once its ";parameters" are cut off and spaces trimmed: what
// Tomcat-style servers (";"), Windows (trailing dots and spaces) and RFC
// 3986 dot removal all read as "." or "..".
func hasDotSegment(path string) bool {
	for seg := range strings.SplitSeq(path, "/") {
		seg, _, _ = strings.Cut(seg, ";")
		seg = strings.Trim(seg, " ")
		if seg != "" && strings.Trim(seg, ".") == "" {
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
