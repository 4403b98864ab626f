package proxy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/airut/airut/internal/secrets"
)

// The response redactor (SPEC S4, "Responses from a scoped host…") keeps a
// real credential the proxy injected from coming back to the agent: an
// upstream that echoes request headers (error pages, "/headers" debugging
// endpoints, "who am I" answers) would otherwise hand it over, and the
// agent could carry it anywhere the allowlist allows.
//
// Every form in which a real value could come back is a pattern, replaced
// by the same form of its surrogate: raw; base64, standard and URL-safe,
// at each of the three byte alignments (so also inside a Basic pair, where
// "user:" shifts the value); percent-encoded; JSON-escaped. A pattern and
// its replacement have the same length, so a body keeps its length
// (Content-Length stays right) and nothing around a match moves.
//
// Matching is leftmost, longest at one position, non-overlapping, with the
// Wu–Manber shift table over two-byte blocks: on data without a secret
// most positions are skipped, so the cost is a fraction of a byte compare
// per byte. Streamed, the redactor holds back only the tail of a chunk
// that could still begin a pattern, so Server-Sent Events are not delayed
// unless their last bytes look like the start of a secret.

const (
	// minRawLen is the shortest real value matched raw; shorter ones would
	// match everywhere and protect nothing.
	minRawLen = 4
	// minEncodedLen is the shortest encoded fragment (base64 core,
	// escaped form) matched.
	minEncodedLen = 6
	// maxWindow bounds the prefix used for the shift table (uint8 shifts).
	maxWindow = 200
	// partialLen is the length of the beginning and the end of a long
	// pattern that are patterns too: an upstream that cuts an echo short
	// ("Bearer ghp_abc…") or shows its tail must not hand over most of a
	// real value. Sixteen characters of a token are never there by chance.
	partialLen = 16
	// minPartialOf is the shortest pattern that gets partial patterns.
	minPartialOf = 24
)

type pattern struct {
	from, to []byte
}

// redactor is an immutable set of patterns and its search tables.
type redactor struct {
	pats   []pattern
	minLen int              // shortest pattern: the Wu–Manber window
	maxLen int              // longest pattern: how far a match may reach
	shift  *[1 << 16]uint8  // indexed by a two-byte block: no bounds check
	bucket map[uint16][]int // block at the end of the window → patterns
	first  [256]bool        // first bytes of patterns
}

// newRedactor builds the patterns of every pair. It returns nil when there
// is nothing to redact.
func newRedactor(pairs []secrets.Pair) *redactor {
	seen := map[string]bool{}
	var pats []pattern
	add := func(from, to string) {
		if from == to || seen[from] {
			return
		}
		seen[from] = true
		pats = append(pats, pattern{from: []byte(from), to: []byte(to)})
	}
	for _, p := range pairs {
		real := p.Real.Reveal()
		sur := sameLength(p.Surrogate, len(real))
		if len(real) < minRawLen {
			continue
		}
		forms := append([][2]string{{real, sur}}, variants(real, sur)...)
		for i, v := range forms {
			if i > 0 && len(v[0]) < minEncodedLen {
				continue
			}
			add(v[0], v[1])
			if n := len(v[0]); n >= minPartialOf {
				add(v[0][:partialLen], v[1][:partialLen])
				add(v[0][n-partialLen:], v[1][n-partialLen:])
			}
		}
	}
	if len(pats) == 0 {
		return nil
	}
	// Longest first, so that at one position the longest match wins with
	// a first-match scan.
	slices.SortStableFunc(pats, func(a, b pattern) int { return len(b.from) - len(a.from) })
	rd := &redactor{pats: pats, minLen: len(pats[len(pats)-1].from), maxLen: len(pats[0].from)}
	m := min(rd.minLen, maxWindow)
	rd.minLen = m
	rd.shift = new([1 << 16]uint8)
	for i := range rd.shift {
		rd.shift[i] = uint8(m - 1)
	}
	rd.bucket = map[uint16][]int{}
	for i, p := range pats {
		rd.first[p.from[0]] = true
		for j := 1; j < m; j++ {
			blk := uint16(p.from[j-1])<<8 | uint16(p.from[j])
			if s := uint8(m - 1 - j); s < rd.shift[blk] {
				rd.shift[blk] = s
			}
		}
		last := uint16(p.from[m-2])<<8 | uint16(p.from[m-1])
		rd.bucket[last] = append(rd.bucket[last], i)
	}
	return rd
}

// sameLength makes a replacement exactly n bytes long. Masked surrogates
// already are; a kind whose surrogate differs in length is cut or padded,
// since a changed length would break the framing around the match.
func sameLength(s string, n int) string {
	if len(s) >= n {
		return s[:n]
	}
	return s + strings.Repeat("*", n-len(s))
}

// variants returns the encoded forms of real with the same forms of its
// surrogate. Each base64 form is the "core" at one alignment: the
// characters that depend on the value's bytes only, which every encoding
// of a longer string containing it at that alignment shares.
func variants(real, sur string) [][2]string {
	var out [][2]string
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for align := range 3 {
			from, to := base64Core(enc, real, align), base64Core(enc, sur, align)
			if from != "" && len(from) == len(to) {
				out = append(out, [2]string{from, to})
			}
		}
	}
	lowerQuery := func(s string) string { return escapedHexLower(url.QueryEscape(s)) }
	lowerPath := func(s string) string { return escapedHexLower(url.PathEscape(s)) }
	for _, f := range []func(string) string{url.QueryEscape, url.PathEscape, lowerQuery, lowerPath, jsonEscape, jsonEscapeSlash} {
		if from, to := f(real), f(sur); from != real && len(from) == len(to) {
			out = append(out, [2]string{from, to})
		}
	}
	return out
}

// base64Core encodes s preceded by align bytes and returns the characters
// that depend on s alone.
func base64Core(enc *base64.Encoding, s string, align int) string {
	buf := make([]byte, align+len(s)+2)
	copy(buf[align:], s)
	full := enc.EncodeToString(buf)
	lo, hi := align, align+len(s) // s occupies bytes [lo, hi)
	first, last := -1, -1
	for c := 0; c < len(full); c++ {
		g, k := c/4, c%4
		var deps []int
		switch k {
		case 0:
			deps = []int{3 * g}
		case 1:
			deps = []int{3 * g, 3*g + 1}
		case 2:
			deps = []int{3*g + 1, 3*g + 2}
		case 3:
			deps = []int{3*g + 2}
		}
		inside := true
		for _, d := range deps {
			if d < lo || d >= hi {
				inside = false
			}
		}
		if inside {
			if first < 0 {
				first = c
			}
			last = c
		}
	}
	if first < 0 {
		return ""
	}
	return full[first : last+1]
}

func escapedHexLower(s string) string {
	b := []byte(s)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			b[i+1], b[i+2] = bytes.ToLower(b[i+1 : i+2])[0], bytes.ToLower(b[i+2 : i+3])[0]
			i += 2
		}
	}
	return string(b)
}

func jsonEscape(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}

func jsonEscapeSlash(s string) string {
	return strings.ReplaceAll(jsonEscape(s), "/", `\/`)
}

// scan replaces, in buf, every match starting at a position in [start,
// limit], and returns the first start not yet decided: every start before
// it is a match (replaced) or was ruled out. Patterns are longest first,
// so the first one equal at a position is the longest there. A start past
// limit may be ruled out by the shift table (that needs only bytes in
// buf) but is never taken as a match: a longer pattern might start there
// and end beyond buf.
func (rd *redactor) scan(buf []byte, start, limit int) (next, n int) {
	m := rd.minLen
	shift := rd.shift
	pos := start + m - 1
	// A window ends at pos; its start pos-m+1 must not pass limit.
	end := min(len(buf), limit+m)
	full := uint8(m - 1) // the shift of a block in no pattern: the common case
	for pos < end {
		sh := shift[uint16(buf[pos-1])<<8|uint16(buf[pos])]
		// While the shift is the full window, the next block's address is
		// known before its shift is: the CPU runs these loads ahead of the
		// branch instead of waiting on each, which on text without a
		// secret more than halves the scan's time.
		for sh == full && pos+int(full) < end {
			next := pos + int(full)
			sh = shift[uint16(buf[next-1])<<8|uint16(buf[next])]
			pos = next
		}
		if sh != 0 {
			pos += int(sh)
			continue
		}
		s := pos - m + 1
		matched := false
		for _, i := range rd.bucket[uint16(buf[pos-1])<<8|uint16(buf[pos])] {
			p := &rd.pats[i]
			if s+len(p.from) <= len(buf) && bytes.Equal(buf[s:s+len(p.from)], p.from) {
				copy(buf[s:], p.to)
				n++
				pos = s + len(p.from) + m - 1
				matched = true
				break
			}
		}
		if !matched {
			pos++
		}
	}
	return pos - m + 1, n
}

// tail decides the starts in [t, len(buf)) that scan could not: a start
// where a pattern matches whole and no longer one could still match with
// more data is replaced; the first start where some pattern could still
// match (it agrees with all of buf it covers) ends the decided part.
func (rd *redactor) tail(buf []byte, t int) (next, n int) {
	for t < len(buf) {
		if !rd.first[buf[t]] {
			t++
			continue
		}
		rest := buf[t:]
		open, full := false, -1
		for i := range rd.pats { // longest first
			p := rd.pats[i].from
			k := min(len(p), len(rest))
			if !bytes.Equal(rest[:k], p[:k]) {
				continue
			}
			if len(p) > len(rest) {
				open = true
				continue
			}
			full = i
			break
		}
		switch {
		case open:
			return t, n
		case full >= 0:
			copy(rest, rd.pats[full].to)
			n++
			t += len(rd.pats[full].from)
		default:
			t++
		}
	}
	return t, n
}

// redact replaces every match in b, in place, as if b were a whole body,
// and also a tail of b that is the beginning of a pattern (at least
// minEncodedLen bytes of it): an upstream that cuts an echo short must not
// hand over most of a real value.
func (rd *redactor) redact(b []byte) int {
	if rd == nil || len(b) == 0 {
		return 0
	}
	n := 0
	if len(b) >= rd.minLen {
		_, n = rd.scan(b, 0, len(b)-rd.minLen)
	}
	for t := max(0, len(b)-rd.maxLen+1); t <= len(b)-minEncodedLen; t++ {
		if !rd.first[b[t]] {
			continue
		}
		rest := b[t:]
		for i := range rd.pats {
			p := &rd.pats[i]
			if len(rest) < len(p.from) && bytes.Equal(rest, p.from[:len(rest)]) {
				copy(rest, p.to)
				return n + 1
			}
		}
	}
	return n
}

// redactString is redact for a header value.
func (rd *redactor) redactString(s string) (string, int) {
	if rd == nil {
		return s, 0
	}
	b := []byte(s)
	if n := rd.redact(b); n > 0 {
		return string(b), n
	}
	return s, 0
}

// redactHeader redacts every value of h in place.
func (rd *redactor) redactHeader(h http.Header) int {
	if rd == nil {
		return 0
	}
	total := 0
	for _, vs := range h {
		for i, v := range vs {
			if nv, n := rd.redactString(v); n > 0 {
				vs[i] = nv
				total += n
			}
		}
	}
	return total
}

// redactBufSize is the redacting reader's buffer: ReverseProxy copies in
// 64 KiB reads.
const redactBufSize = 64 << 10

// redactReader is a response body with every real value replaced, for any
// split of the body into reads: it holds back only bytes that could still
// begin a pattern. With a caller's buffer of some size (ReverseProxy reads
// 64 KiB) it works in that buffer, so a body is copied again only by the
// few bytes held back.
type redactReader struct {
	rd    *redactor
	src   io.Reader
	count *atomic.Int64
	buf   []byte // for reads into a small buffer
	ready []byte // redacted, not yet returned (a part of buf)
	carry []byte // read, not yet decided; its own array
	err   error  // the source's error, returned once everything is out
	onEOF func() // runs once, when the source is exhausted (trailers)
}

func newRedactReader(rd *redactor, src io.Reader, count *atomic.Int64) *redactReader {
	return &redactReader{rd: rd, src: src, count: count, carry: make([]byte, 0, 2*rd.maxLen)}
}

func (r *redactReader) Read(p []byte) (int, error) {
	for {
		if len(r.ready) > 0 {
			n := copy(p, r.ready)
			r.ready = r.ready[n:]
			return n, nil
		}
		if r.err != nil {
			return 0, r.err
		}
		if len(p) >= 2*r.rd.maxLen {
			if n := r.fill(p); n > 0 {
				return n, nil
			}
			continue
		}
		if r.buf == nil {
			r.buf = make([]byte, redactBufSize+r.rd.maxLen)
		}
		r.ready = r.buf[:r.fill(r.buf)]
	}
}

// fill puts the undecided bytes and one read from the source into buf,
// redacts what it can decide, keeps the rest, and returns how many of
// buf's first bytes are final.
func (r *redactReader) fill(buf []byte) int {
	have := copy(buf, r.carry)
	n, err := r.src.Read(buf[have:])
	have += n
	b := buf[:have]
	r.carry = r.carry[:0]
	switch {
	case err == io.EOF:
		r.err = err
		r.count.Add(int64(r.rd.redact(b)))
		if r.onEOF != nil {
			r.onEOF()
			r.onEOF = nil
		}
		return have
	case err != nil:
		// A broken body: what is undecided may be the start of a real
		// value, and the agent gets a cut-off body anyway.
		r.err = err
		next, found := r.rd.scan(b, 0, have-r.rd.maxLen)
		r.count.Add(int64(found))
		return max(next, 0)
	}
	next, found := r.rd.scan(b, 0, have-r.rd.maxLen)
	next, more := r.rd.tail(b, max(next, 0))
	r.count.Add(int64(found + more))
	r.carry = append(r.carry, b[next:]...)
	return next
}

func (r *redactReader) Close() error {
	if c, ok := r.src.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// redactConn is the upstream side of an upgraded (WebSocket) connection
// with what it sends redacted; writes pass through.
type redactConn struct {
	*redactReader
	w io.WriteCloser
}

func (c *redactConn) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *redactConn) Close() error                { return c.w.Close() }
