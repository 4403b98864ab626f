package email

import (
	"fmt"
	"strings"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-msgauth/authres"
)

// rejectError is why a message was refused. Its text goes into the one log
// line written for the rejection; it names no secret.
type rejectError struct{ reason string }

func (e *rejectError) Error() string { return e.reason }

func reject(format string, args ...any) error {
	return &rejectError{reason: fmt.Sprintf(format, args...)}
}

// authPolicy is the part of Config that decides whether a sender is who the
// From header says.
type authPolicy struct {
	trustedAuthservID  string
	msInternalFallback bool
}

// authenticate returns the sender of h if the receiving server vouches for
// it, or a *rejectError. Every branch that is not an explicit pass rejects.
func authenticate(h mail.Header, p authPolicy) (*mail.Address, error) {
	froms := h.Values("From")
	if len(froms) != 1 {
		return nil, reject("want exactly one From header, got %d", len(froms))
	}
	sender, err := parseStrictAddress(froms[0])
	if err != nil {
		return nil, err
	}

	// Values lists fields top to bottom. Only the topmost was added by our
	// own receiving server; anything below it may come from the sender.
	results := h.Values("Authentication-Results")
	if len(results) == 0 {
		if p.msInternalFallback && strings.EqualFold(strings.TrimSpace(h.Get("X-MS-Exchange-Organization-AuthAs")), "Internal") {
			return sender, nil
		}
		return nil, reject("no Authentication-Results header")
	}
	if err := checkAuthResults(results[0], p.trustedAuthservID, domainOf(sender.Address)); err != nil {
		return nil, err
	}
	return sender, nil
}

// checkAuthResults accepts an Authentication-Results value that comes from
// the trusted authserv-id and carries dmarc=pass for the From domain.
func checkAuthResults(value, trusted, fromDomain string) error {
	v := stripComments(unfold(value))
	// Microsoft 365 writes no authserv-id: the value starts with a result
	// ("spf=pass ..."). authres would take that for the id, so split it
	// ourselves and hand authres only the results.
	first, rest, _ := strings.Cut(v, ";")
	id := ""
	if fields := strings.Fields(first); len(fields) > 0 && !strings.Contains(fields[0], "=") {
		id = fields[0]
	} else {
		rest = v
	}
	if trusted != "" && !strings.EqualFold(id, trusted) {
		return reject("Authentication-Results authserv-id %q is not the trusted %q", id, trusted)
	}
	_, results, err := authres.Parse("airut; " + rest)
	if err != nil {
		return reject("malformed Authentication-Results: %v", err)
	}
	for _, r := range results {
		d, ok := r.(*authres.DMARCResult)
		if !ok || d.Value != authres.ResultPass {
			continue
		}
		// A pass is for the domain in header.from; if the receiving server
		// named one, it must be the From we are about to trust.
		if d.From != "" && !strings.EqualFold(d.From, fromDomain) {
			return reject("dmarc=pass is for %q, not the From domain %q", d.From, fromDomain)
		}
		return nil
	}
	return reject("Authentication-Results has no dmarc=pass")
}

// authorized reports whether addr matches one of the patterns: an exact
// address or "*@domain", both case-insensitive.
func authorized(addr string, patterns []string) bool {
	addr = strings.ToLower(strings.TrimSpace(addr))
	for _, p := range patterns {
		p = strings.ToLower(strings.TrimSpace(p))
		if domain, ok := strings.CutPrefix(p, "*@"); ok {
			if domainOf(addr) == domain && domain != "" {
				return true
			}
			continue
		}
		if p != "" && p == addr {
			return true
		}
	}
	return false
}

func validSenderPattern(p string) bool {
	p = strings.TrimSpace(p)
	if d, ok := strings.CutPrefix(p, "*@"); ok {
		return d != "" && !strings.ContainsAny(d, "@ *")
	}
	local, domain, ok := strings.Cut(p, "@")
	return ok && local != "" && domain != "" && !strings.ContainsAny(domain, "@ *")
}

// parseStrictAddress parses a From value that must name exactly one mailbox.
// net/mail is lenient about stray angle brackets, and a lenient parser is
// how "Boss <boss@corp> <evil@attacker>" gets read two ways by two programs,
// so the brackets are checked first.
func parseStrictAddress(raw string) (*mail.Address, error) {
	opens, closes, lastClose, firstOpen := 0, 0, -1, -1
	inQuote, depth, escaped := false, 0, false
	for i, r := range raw {
		switch {
		case escaped:
			escaped = false
		case r == '\\' && (inQuote || depth > 0):
			escaped = true
		case inQuote:
			if r == '"' {
				inQuote = false
			}
		case r == '(':
			depth++
		case r == ')' && depth > 0:
			depth--
		case depth > 0:
		case r == '"':
			inQuote = true
		case r == '<':
			opens++
			if firstOpen < 0 {
				firstOpen = i
			}
		case r == '>':
			closes++
			lastClose = i
		case r == ',' || r == ';':
			return nil, reject("From names more than one address")
		}
	}
	if opens > 1 || closes > 1 {
		return nil, reject("From has multiple angle brackets")
	}
	if opens != closes || (opens == 1 && lastClose < firstOpen) {
		return nil, reject("From has misordered angle brackets")
	}
	if opens == 1 && strings.TrimSpace(stripComments(raw[lastClose+1:])) != "" {
		return nil, reject("From has text after the address")
	}
	list, err := mail.ParseAddressList(raw)
	if err != nil {
		return nil, reject("From does not parse: %v", err)
	}
	if len(list) != 1 {
		return nil, reject("From names %d addresses", len(list))
	}
	a := list[0]
	local, domain, ok := strings.Cut(a.Address, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") {
		return nil, reject("From address %q is not local@domain", a.Address)
	}
	return a, nil
}

func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(addr[i+1:])
}

func unfold(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ", "\t", " ").Replace(s)
}

// stripComments removes RFC 5322 comments, nested or not, leaving quoted
// strings alone: "(sender IP is 1.2.3.4; ok)" would otherwise split a
// result at its semicolon.
func stripComments(s string) string {
	var b strings.Builder
	depth, inQuote, escaped := 0, false, false
	for _, r := range s {
		switch {
		case escaped:
			escaped = false
			if depth == 0 {
				b.WriteRune(r)
			}
			continue
		case r == '\\' && (inQuote || depth > 0):
			escaped = true
			if depth == 0 {
				b.WriteRune(r)
			}
			continue
		case inQuote:
			if r == '"' {
				inQuote = false
			}
		case r == '(':
			depth++
			continue
		case r == ')' && depth > 0:
			depth--
			if depth == 0 {
				b.WriteRune(' ')
			}
			continue
		case depth > 0:
			continue
		case r == '"':
			inQuote = true
		}
		b.WriteRune(r)
	}
	return b.String()
}
