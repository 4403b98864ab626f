package secrets

import (
	"encoding/base64"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/airut/airut/internal/allowlist"
)

// Replacements is the proxy's side of a Map: surrogate → real value, per
// host scope and header pattern. The zero value and nil replace nothing.
type Replacements struct {
	entries []entry
}

// Len is the number of masked secrets.
func (r *Replacements) Len() int {
	if r == nil {
		return 0
	}
	return len(r.entries)
}

// Result says what Apply did to one request, for the network log.
type Result struct {
	Masked   int      // headers in which a surrogate was replaced by its real value
	Stripped []string // canonical names of headers removed as foreign credentials
	Dropped  int      // duplicate copies of replaced headers removed
}

// Apply swaps surrogates for real values in h, for a request to host (the
// destination name, raw: matching lower-cases it and drops a trailing dot).
// It must run after every other check and decoding step on the request, on
// the headers that go upstream.
//
// For each header matching the headers patterns of an entry whose scopes
// match host, every occurrence of the surrogate is replaced, including
// inside "Authorization: Basic base64(user:token)". Only whole surrogates
// are replaced, so a surrogate split across values or encoded another way
// reaches upstream as the useless surrogate, never half-swapped. A replaced
// header is collapsed to its first replaced copy, so the agent cannot add a
// second, foreign credential beside the real one. A header named exactly
// (no wildcard) by an in-scope entry that carries no surrogate is removed,
// unless every such entry allows foreign credentials.
func (r *Replacements) Apply(host string, h http.Header) Result {
	var res Result
	if r.Len() == 0 || len(h) == 0 {
		return res
	}
	var inScope []*entry
	for i := range r.entries {
		e := &r.entries[i]
		if slices.ContainsFunc(e.scopes, func(p string) bool { return allowlist.MatchHost(p, host) }) {
			inScope = append(inScope, e)
		}
	}
	if len(inScope) == 0 {
		return res
	}
	for _, name := range slices.Sorted(maps.Keys(h)) {
		var cover []*entry
		strip := false
		for _, e := range inScope {
			matched := false
			for _, p := range e.headers {
				if matchHeader(p, name) {
					matched = true
					if isExactPattern(p) && !e.allowForeign {
						strip = true
					}
				}
			}
			if matched {
				cover = append(cover, e)
			}
		}
		if len(cover) == 0 {
			continue
		}
		var replaced []string
		for _, v := range h[name] {
			if nv, ok := replaceValue(v, cover); ok {
				replaced = append(replaced, nv)
			}
		}
		switch {
		case len(replaced) > 0:
			res.Masked++
			res.Dropped += len(h[name]) - 1
			h[name] = replaced[:1]
		case strip:
			delete(h, name)
			res.Stripped = append(res.Stripped, http.CanonicalHeaderKey(name))
		}
	}
	return res
}

func isExactPattern(p string) bool { return !strings.ContainsAny(p, "*?[") }

func matchHeader(pattern, name string) bool {
	if isExactPattern(pattern) {
		return strings.EqualFold(pattern, name)
	}
	return allowlist.Fnmatch(strings.ToLower(pattern), strings.ToLower(name))
}

// replaceValue replaces every surrogate of cover in v, looking inside a
// Basic credential first because git sends the token there, base64-encoded
// as "user:token".
func replaceValue(v string, cover []*entry) (string, bool) {
	if scheme, payload, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "Basic") {
		payload = strings.TrimSpace(payload)
		dec, err := base64.StdEncoding.DecodeString(payload)
		if err != nil {
			dec, err = base64.RawStdEncoding.DecodeString(payload)
		}
		if err == nil {
			if out, n := replaceAll(string(dec), cover); n > 0 {
				return scheme + " " + base64.StdEncoding.EncodeToString([]byte(out)), true
			}
		}
	}
	out, n := replaceAll(v, cover)
	return out, n > 0
}

func replaceAll(s string, cover []*entry) (string, int) {
	total := 0
	for _, e := range cover {
		if n := strings.Count(s, e.surrogate); n > 0 {
			s = strings.ReplaceAll(s, e.surrogate, e.real.Reveal())
			total += n
		}
	}
	return s, total
}
