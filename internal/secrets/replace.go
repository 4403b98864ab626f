package secrets

import (
	"encoding/base64"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/airut/airut/internal/allowlist"
)

// Replacements is the proxy's side of a Map: every credential of one task,
// by kind. The zero value and nil hold nothing.
type Replacements struct {
	masked []entry
	aws    []awsEntry
}

// Len is the number of credentials.
func (r *Replacements) Len() int {
	if r == nil {
		return 0
	}
	return len(r.masked) + len(r.aws)
}

// InjectorOptions are what the proxy tells its injectors.
type InjectorOptions struct {
	// MaxBody caps a request body an injector must hold (SigV4 hashes a
	// body whose hash the client did not send; an aws-chunked chunk is
	// held until its signature is known). Required.
	MaxBody int64
}

// Injectors returns one Injector per credential kind present.
func (r *Replacements) Injectors(opt InjectorOptions) []Injector {
	if r.Len() == 0 {
		return nil
	}
	var out []Injector
	if len(r.masked) > 0 {
		out = append(out, &maskedInjector{entries: r.masked})
	}
	if len(r.aws) > 0 {
		out = append(out, newAWSInjector(r.aws, opt))
	}
	return out
}

// Pairs returns every real value known before any request, with its
// surrogate, for the response redactor.
func (r *Replacements) Pairs() []Pair {
	if r == nil {
		return nil
	}
	out := make([]Pair, 0, len(r.masked)+3*len(r.aws))
	for _, e := range r.masked {
		out = append(out, Pair{Real: e.real, Surrogate: e.surrogate})
	}
	for i := range r.aws {
		out = append(out, r.aws[i].pairs()...)
	}
	return out
}

func matchesAnyHost(patterns []string, host string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return allowlist.MatchHost(p, host) })
}

// maskedInjector swaps masked surrogates (S5.2) in the headers their
// entries name, on the hosts they are scoped to.
type maskedInjector struct {
	entries []entry
}

func (m *maskedInjector) Kind() string { return KindMasked }

func (m *maskedInjector) Scoped(host string) bool {
	for i := range m.entries {
		if m.entries[i].inScope(host) {
			return true
		}
	}
	return false
}

func (e *entry) inScope(host string) bool { return matchesAnyHost(e.scopes, host) }

// Inject applies the masked rules to r's headers for r.Host (the
// destination name; matching lower-cases it and drops a trailing dot).
//
// For each header matching the headers patterns of an entry whose scopes
// match the host, a value is replaced only when the surrogate is the whole
// credential in it: the bare surrogate, "<scheme> <surrogate>", or a Basic
// pair whose password (or user) is exactly the surrogate and whose other
// half is a user name, not a credential (see isUserName). A replaced
// header is collapsed to its first replaced copy, so the agent cannot add
// a second, foreign credential beside the real one.
//
// Everything else is stripped unless the covering entries allow foreign
// credentials: a value carrying a surrogate beside other content ("Bearer
// OWN, Bearer SURROGATE"), and, in a header named exactly (no wildcard),
// any value without a surrogate (the agent's own token). A header named by
// a wildcard pattern that carries no surrogate is left alone: nothing
// tells a credential in it from other data.
//
// Over plain HTTP nothing is injected: a header that would have been
// replaced, or that carries a surrogate at all, is stripped instead
// (StripPlainHTTP), so a real credential never crosses the network in the
// clear.
//
// Only whole surrogates are replaced, so a surrogate split across values
// or encoded another way reaches upstream as the useless surrogate, never
// half-swapped.
func (m *maskedInjector) Inject(r *http.Request) (Injection, error) {
	var res Injection
	h := r.Header
	if len(h) == 0 {
		return res, nil
	}
	host := r.Host
	if n, err := allowlist.NormalizeHost(host); err == nil {
		host = n
	}
	var inScope []*entry
	for i := range m.entries {
		if m.entries[i].inScope(host) {
			inScope = append(inScope, &m.entries[i])
		}
	}
	if len(inScope) == 0 {
		return res, nil
	}
	overTLS := r.URL != nil && r.URL.Scheme == "https"
	for _, name := range slices.Sorted(maps.Keys(h)) {
		var cover []*entry
		strictExact, strict := false, false
		for _, e := range inScope {
			matched := false
			for _, p := range e.headers {
				if matchHeader(p, name) {
					matched = true
					if isExactPattern(p) && !e.allowForeign {
						strictExact = true
					}
				}
			}
			if matched {
				cover = append(cover, e)
				if !e.allowForeign {
					strict = true
				}
			}
		}
		if len(cover) == 0 {
			continue
		}
		var replaced []string
		var used [][]Pair
		mixed := false
		for _, v := range h[name] {
			nv, pair, kind := classify(v, cover)
			switch kind {
			case whole:
				replaced = append(replaced, nv)
				used = append(used, pair)
			case beside:
				mixed = true
			}
		}
		canonical := http.CanonicalHeaderKey(name)
		switch {
		case !overTLS && (len(replaced) > 0 || mixed):
			delete(h, name)
			res.Stripped = append(res.Stripped, Strip{Header: canonical, Reason: StripPlainHTTP})
		case len(replaced) > 0:
			res.Masked++
			res.Dropped += len(h[name]) - 1
			h[name] = replaced[:1]
			res.Injected = append(res.Injected, used[0]...)
		case (mixed && strict) || strictExact:
			delete(h, name)
			res.Stripped = append(res.Stripped, Strip{Header: canonical, Reason: StripForeign})
		}
	}
	return res, nil
}

func isExactPattern(p string) bool { return !strings.ContainsAny(p, "*?[") }

func matchHeader(pattern, name string) bool {
	if isExactPattern(pattern) {
		return strings.EqualFold(pattern, name)
	}
	return allowlist.Fnmatch(strings.ToLower(pattern), strings.ToLower(name))
}

// valueKind is how a header value relates to the surrogates covering it.
type valueKind int

const (
	none   valueKind = iota // no surrogate in it
	whole                   // a surrogate is the whole credential
	beside                  // a surrogate with other content: never forwarded as is
)

// classify looks at one header value. For a whole credential it returns
// the value with the real credential in place of the surrogate, and the
// real values it now carries with their surrogates.
func classify(v string, cover []*entry) (string, []Pair, valueKind) {
	for _, e := range cover {
		if v == e.surrogate {
			return e.real.Reveal(), e.pairs(), whole
		}
	}
	scheme, cred, hasScheme := cutScheme(v)
	if hasScheme {
		for _, e := range cover {
			if cred == e.surrogate {
				return scheme + " " + e.real.Reveal(), e.pairs(), whole
			}
		}
		if strings.EqualFold(scheme, "Basic") {
			if nv, pairs, kind := classifyBasic(scheme, cred, cover); kind != none {
				return nv, pairs, kind
			}
		}
	}
	for _, e := range cover {
		if strings.Contains(v, e.surrogate) {
			return "", nil, beside
		}
	}
	return "", nil, none
}

func (e *entry) pairs() []Pair { return []Pair{{Real: e.real, Surrogate: e.surrogate}} }

// cutScheme splits "<scheme> <credential>" (RFC 9110 auth-scheme: a token,
// then whitespace, then one credential with no further whitespace).
func cutScheme(v string) (scheme, cred string, ok bool) {
	i := strings.IndexAny(v, " \t")
	if i <= 0 {
		return "", "", false
	}
	scheme, cred = v[:i], strings.TrimLeft(v[i:], " \t")
	if cred == "" || strings.ContainsAny(cred, " \t") || !isToken(scheme) {
		return "", "", false
	}
	return scheme, cred, true
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return s != ""
}

// classifyBasic looks inside "Basic base64(user:password)", as git and
// most package managers send a token.
//
// The encoded pair is reported as a real value of its own: an upstream
// that echoes the request base64-encoded once more (a JSON API returning
// the raw request) would otherwise carry it out encoded twice.
func classifyBasic(scheme, payload string, cover []*entry) (string, []Pair, valueKind) {
	dec, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		dec, err = base64.RawStdEncoding.DecodeString(payload)
	}
	if err != nil {
		return "", nil, none
	}
	user, pass, ok := strings.Cut(string(dec), ":")
	if !ok {
		return "", nil, none
	}
	encode := func(u, p string) string { return base64.StdEncoding.EncodeToString([]byte(u + ":" + p)) }
	for _, e := range cover {
		var real, sur string
		switch {
		case pass == e.surrogate && isUserName(user, cover):
			real, sur = encode(user, e.real.Reveal()), encode(user, e.surrogate)
		case user == e.surrogate && (pass == "" || isUserName(pass, cover)):
			real, sur = encode(e.real.Reveal(), pass), encode(e.surrogate, pass)
		default:
			continue
		}
		return scheme + " " + real, append(e.pairs(), Pair{Real: NewValue(real), Surrogate: sur}), whole
	}
	for _, e := range cover {
		if strings.Contains(user, e.surrogate) || strings.Contains(pass, e.surrogate) {
			return "", nil, beside
		}
	}
	return "", nil, none
}

// credentialPrefixes mark the other half of a Basic pair as a credential:
// an agent must not put its own token in the user name beside the
// surrogate, since some services authenticate by either half.
var credentialPrefixes = append([]string{
	"glpat-", "npm_", "pypi-", "ghu_", "xoxa-", "xoxe", "xapp-", "AKIA", "ASIA", "sk_live_", "rk_live_",
}, knownPrefixes...)

// maxUserName is GitHub's limit on a login, and longer than the names
// tools put in a Basic pair beside a token ("x-access-token", "oauth2",
// "__token__", "x-oauth-basic").
const maxUserName = 39

// isUserName reports whether the other half of a Basic pair reads as a
// user name rather than a credential: short, of name characters, with no
// known token prefix and no surrogate in it. The rule is a heuristic by
// necessity (a short random token looks like a name), so it errs towards
// stripping: a long or token-shaped half strips the header.
func isUserName(s string, cover []*entry) bool {
	if s == "" {
		return true
	}
	if len(s) > maxUserName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("._@+~-", c) >= 0) {
			return false
		}
	}
	for _, p := range credentialPrefixes {
		if strings.HasPrefix(s, p) {
			return false
		}
	}
	for _, e := range cover {
		if strings.Contains(s, e.surrogate) {
			return false
		}
	}
	return true
}
