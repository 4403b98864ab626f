package secrets

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
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
	apps   []entry // GitHub App credentials: entries whose real value is minted
	aws    []awsEntry
}

// Len is the number of credentials.
func (r *Replacements) Len() int {
	if r == nil {
		return 0
	}
	return len(r.masked) + len(r.apps) + len(r.aws)
}

// Injectors returns one Injector per credential kind present. Masked
// secrets and GitHub Apps share one (see KindGitHubApp). Call it once per
// proxy: the GitHub App tokens it mints are cached in what it returns.
// AWS credentials have their own, run after it.
func (r *Replacements) Injectors(env Env) []Injector {
	if r.Len() == 0 {
		return nil
	}
	var out []Injector
	if len(r.masked)+len(r.apps) > 0 {
		h := &maskedInjector{entries: slices.Clone(r.masked)}
		for _, e := range r.apps {
			e.src = newTokenSource(e.name, e.app, env)
			h.entries = append(h.entries, e)
		}
		out = append(out, h)
	}
	if len(r.aws) > 0 {
		out = append(out, newAWSInjector(slices.Clone(r.aws), env))
	}
	return out
}

// Pairs returns every real value known before any request, with its
// surrogate, for the response redactor. Minted tokens are reported by
// Inject as they are swapped in.
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

// maskedInjector swaps masked surrogates (S5.2) and GitHub App surrogates
// (S5.4, in Authorization) in the headers their entries name, on the
// hosts they are scoped to.
type maskedInjector struct {
	entries []entry
}

func (m *maskedInjector) Kind() string {
	apps := 0
	for i := range m.entries {
		if m.entries[i].app != nil {
			apps++
		}
	}
	switch apps {
	case 0:
		return KindMasked
	case len(m.entries):
		return KindGitHubApp
	}
	return KindMasked + "+" + KindGitHubApp
}

// Close stops the GitHub App token refreshes.
func (m *maskedInjector) Close() error {
	for i := range m.entries {
		if m.entries[i].src != nil {
			m.entries[i].src.close()
		}
	}
	return nil
}

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
		var first *found
		mixed := false
		for _, v := range h[name] {
			f, kind := classify(v, cover)
			switch kind {
			case whole:
				if first == nil {
					first = &f
				}
			case beside:
				mixed = true
			}
		}
		canonical := http.CanonicalHeaderKey(name)
		switch {
		case !overTLS && (first != nil || mixed):
			delete(h, name)
			res.Stripped = append(res.Stripped, Strip{Header: canonical, Reason: StripPlainHTTP})
		case first != nil:
			real, err := first.e.realValue(r.Context())
			if err != nil {
				return Injection{}, err
			}
			nv, pairs := first.wrap(real)
			if first.e.app != nil {
				if !slices.Contains(res.Tokens, KindGitHubApp) {
					res.Tokens = append(res.Tokens, KindGitHubApp)
				}
			} else {
				res.Masked++
			}
			res.Dropped += len(h[name]) - 1
			h[name] = []string{nv}
			res.Injected = append(res.Injected, pairs...)
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

// found is a header value in which a surrogate is the whole credential.
type found struct {
	e *entry
	// wrap builds the value to send from the real credential, and the
	// real values it then carries with their surrogates.
	wrap func(real string) (string, []Pair)
}

// classify looks at one header value.
func classify(v string, cover []*entry) (found, valueKind) {
	for _, e := range cover {
		if v == e.surrogate {
			return found{e, func(real string) (string, []Pair) { return real, e.pairs(real) }}, whole
		}
	}
	scheme, cred, hasScheme := cutScheme(v)
	if hasScheme {
		for _, e := range cover {
			if cred == e.surrogate {
				return found{e, func(real string) (string, []Pair) { return scheme + " " + real, e.pairs(real) }}, whole
			}
		}
		if strings.EqualFold(scheme, "Basic") {
			if f, kind := classifyBasic(scheme, cred, cover); kind != none {
				return f, kind
			}
		}
	}
	for _, e := range cover {
		if strings.Contains(v, e.surrogate) {
			return found{}, beside
		}
	}
	return found{}, none
}

func (e *entry) pairs(real string) []Pair {
	return []Pair{{Real: NewValue(real), Surrogate: e.surrogate}}
}

// realValue is the credential to send for e: the masked value, or the
// GitHub App's current installation token (minted on first use, which the
// request waits for).
func (e *entry) realValue(ctx context.Context) (string, error) {
	if e.app == nil {
		return e.real.Reveal(), nil
	}
	if e.src == nil {
		return "", fmt.Errorf("github app %s: %w", e.name, errNoSource)
	}
	t, err := e.src.token(ctx)
	if err != nil {
		return "", fmt.Errorf("github app %s: %w", e.name, err)
	}
	return t.value.Reveal(), nil
}

var errNoSource = errors.New("no token source (replacements used without Injectors)")

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
func classifyBasic(scheme, payload string, cover []*entry) (found, valueKind) {
	dec, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		dec, err = base64.RawStdEncoding.DecodeString(payload)
	}
	if err != nil {
		return found{}, none
	}
	user, pass, ok := strings.Cut(string(dec), ":")
	if !ok {
		return found{}, none
	}
	encode := func(u, p string) string { return base64.StdEncoding.EncodeToString([]byte(u + ":" + p)) }
	for _, e := range cover {
		var pair func(real string) (string, string)
		switch {
		case pass == e.surrogate && isUserName(user, cover):
			pair = func(real string) (string, string) { return encode(user, real), encode(user, e.surrogate) }
		case user == e.surrogate && (pass == "" || isUserName(pass, cover)):
			pair = func(real string) (string, string) { return encode(real, pass), encode(e.surrogate, pass) }
		default:
			continue
		}
		return found{e, func(real string) (string, []Pair) {
			r, s := pair(real)
			return scheme + " " + r, append(e.pairs(real), Pair{Real: NewValue(r), Surrogate: s})
		}}, whole
	}
	for _, e := range cover {
		if strings.Contains(user, e.surrogate) || strings.Contains(pass, e.surrogate) {
			return found{}, beside
		}
	}
	return found{}, none
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
