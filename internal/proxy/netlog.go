package proxy

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Verdicts, the first word of every network log line (SPEC S4).
const (
	VerdictAllowed  = "ALLOWED"
	VerdictBlocked  = "BLOCKED"
	VerdictError    = "ERROR"
	VerdictStripped = "STRIPPED"
	VerdictDNS      = "DNS"
)

// dnsDropped is the query type of a DNS record for a query that got no
// answer ("DNS DROPPED <reason>").
const dnsDropped = "DROPPED"

// Record is one network log event: the decision the proxy made on one
// request or DNS query, or one header it stripped from a request. The
// network log line is its rendering (Line), every field escaped so that
// one record is always one line and no field can forge another;
// ParseRecord reads a line back. Tests assert on records, not on text.
type Record struct {
	Verdict string // VerdictAllowed …

	// ALLOWED, BLOCKED, ERROR: the request.
	Method string
	URL    string // scheme://host + raw target, as the agent sent it
	Status int    // ALLOWED and BLOCKED
	// Reason is the cause of an ERROR (on the line) or of a BLOCKED
	// verdict, and the reason of DNS DROPPED (on the line); for BLOCKED it
	// is only in the operational log.
	Reason string
	Masked int    // headers whose surrogate was swapped for a real value
	Token  string // kinds of minted tokens swapped in ("github-app"), comma-separated
	// Signed names the signature re-made with a real key ("aws"): the
	// line says "[signed: aws]", or with SignError "[not signed: aws:
	// <why>]" (the request went on with the agent's surrogate signature).
	Signed    string
	SignError string
	Dropped   int    // duplicate copies of replaced headers removed
	Redacted  int    // real values replaced by their surrogates in the response
	Upgrade   string // an Upgrade the proxy refused and removed ("h2c")
	Aborted   bool   // the response was cut off (the agent or the upstream went away)

	// STRIPPED: a header removed from a request.
	Header string
	Host   string
	Why    string // "" (foreign credential) or "plain http"

	// DNS: a query and its answer.
	QType  string // "A", "AAAA", … or "DROPPED"
	Name   string
	Answer string // "10.199.1.100", "NOTIMP"

	// Not on the line, for the operational log only.
	Rule    string        // the allowlist entry that decided
	Elapsed time.Duration // from the request's arrival to its end
}

// Line renders r as its network log line, without the newline.
func (r Record) Line() string {
	var b strings.Builder
	b.WriteString(r.Verdict)
	switch r.Verdict {
	case VerdictAllowed, VerdictBlocked:
		fmt.Fprintf(&b, " %s %s -> %d", escapeWord(r.Method), escapeWord(r.URL), r.Status)
		tag := func(key string, n int) {
			if n > 0 {
				fmt.Fprintf(&b, " [%s: %d]", key, n)
			}
		}
		tag("masked", r.Masked)
		if r.Token != "" {
			fmt.Fprintf(&b, " [token: %s]", escapeTag(r.Token))
		}
		switch {
		case r.Signed != "" && r.SignError != "":
			fmt.Fprintf(&b, " [not signed: %s: %s]", escapeTag(r.Signed), escapeTagText(r.SignError))
		case r.Signed != "":
			fmt.Fprintf(&b, " [signed: %s]", escapeTag(r.Signed))
		}
		tag("dropped", r.Dropped)
		tag("redacted", r.Redacted)
		if r.Upgrade != "" {
			fmt.Fprintf(&b, " [upgrade refused: %s]", escapeTag(r.Upgrade))
		}
		if r.Aborted {
			b.WriteString(" [aborted]")
		}
	case VerdictError:
		fmt.Fprintf(&b, " %s %s -> %s", escapeWord(r.Method), escapeWord(r.URL), escapeText(r.Reason))
	case VerdictStripped:
		fmt.Fprintf(&b, " %s on %s", escapeWord(r.Header), escapeWord(r.Host))
		if r.Why != "" {
			fmt.Fprintf(&b, " (%s)", escape(r.Why, func(c byte) bool { return c < ' ' || c >= 0x7f || c == '(' || c == ')' }))
		}
	case VerdictDNS:
		if r.QType == dnsDropped {
			fmt.Fprintf(&b, " %s %s", dnsDropped, escapeText(r.Reason))
			break
		}
		fmt.Fprintf(&b, " %s %s -> %s", escapeWord(r.QType), escapeWord(r.Name), escapeWord(r.Answer))
	}
	return b.String()
}

// addToken notes a kind of minted token, once.
func (r *Record) addToken(kind string) {
	for _, k := range strings.Split(r.Token, ",") {
		if k == kind {
			return
		}
	}
	if r.Token != "" {
		r.Token += ","
	}
	r.Token += kind
}

// ErrBadRecord is matched by every ParseRecord error.
var ErrBadRecord = errors.New("not a network log record")

// ParseRecord reads a line written by Record.Line. Fields come back in
// their escaped form; Rule and Elapsed, which are not on the line, are
// zero.
func ParseRecord(line string) (Record, error) {
	bad := func(why string) (Record, error) {
		return Record{}, fmt.Errorf("%w: %s: %q", ErrBadRecord, why, line)
	}
	verdict, rest, _ := strings.Cut(line, " ")
	r := Record{Verdict: verdict}
	switch verdict {
	case VerdictAllowed, VerdictBlocked, VerdictError:
		f := strings.SplitN(rest, " ", 4)
		if len(f) < 4 || f[2] != "->" {
			return bad("want METHOD URL -> …")
		}
		r.Method, r.URL = f[0], f[1]
		if verdict == VerdictError {
			r.Reason = f[3]
			return r, nil
		}
		status, tags, _ := strings.Cut(f[3], " ")
		n, err := strconv.Atoi(status)
		if err != nil {
			return bad("status")
		}
		r.Status = n
		for tags != "" {
			if !strings.HasPrefix(tags, "[") {
				return bad("tag")
			}
			end := strings.IndexByte(tags, ']')
			if end < 0 {
				return bad("unterminated tag")
			}
			key, value, _ := strings.Cut(tags[1:end], ": ")
			tags = strings.TrimPrefix(tags[end+1:], " ")
			num := func() int { n, _ := strconv.Atoi(value); return n }
			switch key {
			case "masked":
				r.Masked = num()
			case "token":
				r.Token = value
			case "dropped":
				r.Dropped = num()
			case "redacted":
				r.Redacted = num()
			case "upgrade refused":
				r.Upgrade = value
			case "signed":
				r.Signed = value
			case "not signed":
				r.Signed, r.SignError, _ = strings.Cut(value, ": ")
			case "aborted":
				r.Aborted = true
			default:
				return bad("unknown tag " + key)
			}
		}
		return r, nil
	case VerdictStripped:
		header, after, ok := strings.Cut(rest, " on ")
		if !ok {
			return bad("want HEADER on HOST")
		}
		r.Header = header
		host, why, hasWhy := strings.Cut(after, " (")
		r.Host = host
		if hasWhy {
			r.Why = strings.TrimSuffix(why, ")")
		}
		return r, nil
	case VerdictDNS:
		if reason, ok := strings.CutPrefix(rest, dnsDropped+" "); ok {
			r.QType, r.Reason = dnsDropped, reason
			return r, nil
		}
		f := strings.Split(rest, " ")
		if len(f) != 4 || f[2] != "->" {
			return bad("want TYPE NAME -> ANSWER")
		}
		r.QType, r.Name, r.Answer = f[0], f[1], f[3]
		return r, nil
	}
	return bad("unknown verdict")
}

// escapeWord percent-escapes what would end a field: space, control
// bytes, DEL and every byte outside ASCII. A '%' is kept, so a request
// target appears as it was sent (it is percent-encoded already, and one
// with a raw space or byte is refused anyway).
func escapeWord(s string) string {
	return escape(s, func(c byte) bool { return c <= ' ' || c >= 0x7f })
}

// escapeTag is escapeWord for a value inside "[key: value]".
func escapeTag(s string) string {
	return escape(s, func(c byte) bool { return c <= ' ' || c >= 0x7f || strings.IndexByte("[]()", c) >= 0 })
}

// escapeTagText is escapeTag for free text inside a tag: spaces stay.
func escapeTagText(s string) string {
	return escape(s, func(c byte) bool { return c < ' ' || c >= 0x7f || c == '[' || c == ']' })
}

// escapeText escapes a free-text reason, the last field of its line:
// spaces stay, control bytes and non-ASCII do not.
func escapeText(s string) string { return escape(s, func(c byte) bool { return c < ' ' || c >= 0x7f }) }

func escape(s string, bad func(byte) bool) string {
	i := 0
	for i < len(s) && !bad(s[i]) {
		i++
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		if c := s[i]; bad(c) {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// netLog writes the network log (SPEC S4): one line per record, each in
// one Write call under a lock, so concurrent requests never interleave and
// a reader tailing the file only ever sees whole lines.
type netLog struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *netLog) record(r Record) {
	s := r.Line()
	b := make([]byte, 0, len(s)+1)
	b = append(b, escapeText(s)...) // belt and braces: Line escapes already
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.w.Write(b)
}
