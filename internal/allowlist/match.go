package allowlist

import (
	"strconv"
	"strings"
)

// Verdict is the outcome of matching one request. The zero value blocks,
// so a forgotten Decision never lets a request through.
type Verdict int

const (
	// BlockedHost: no entry matches the host and path.
	BlockedHost Verdict = iota
	// BlockedMethod: some url_prefixes entry matches the host and path, but
	// none that matches them also allows the method.
	BlockedMethod
	// Allowed: a domains entry, or a url_prefixes entry matching host, path
	// and method, allows the request.
	Allowed
)

func (v Verdict) String() string {
	switch v {
	case Allowed:
		return "allowed"
	case BlockedHost:
		return "blocked_host"
	case BlockedMethod:
		return "blocked_method"
	}
	return "Verdict(" + strconv.Itoa(int(v)) + ")"
}

// Decision is the result of Match.
type Decision struct {
	Verdict Verdict
	// Rule names the entry that allowed the request ("domains[0]",
	// "url_prefixes[2]"), or for BlockedMethod the first entry that matched
	// host and path; "" for BlockedHost.
	Rule string
	// GraphQL is the allowing url_prefixes entry's graphql rules, if any.
	// It is shared with the Allowlist and must not be modified.
	GraphQL *GraphQL
	// MethodsListed reports that the allowing url_prefixes entry lists
	// methods: the proxy then drops method-override headers, since an
	// upstream honouring them would run another method than the one
	// allowed.
	MethodsListed bool
}

// Match decides one request. host is as received without its port; Match
// lower-cases it and removes one trailing dot. path is the request path
// with its query string, already percent-decoded once (see CleanPath).
// method is compared case-insensitively.
//
// domains are checked first (any path, any method), then url_prefixes in
// order; an entry that matches host and path but not the method does not
// stop the search.
func (a *Allowlist) Match(host, path, method string) Decision {
	if a == nil {
		return Decision{Verdict: BlockedHost}
	}
	host = normalizeHostName(host)
	if host == "" {
		// "*" would match it; a request without a host is never allowed.
		return Decision{Verdict: BlockedHost}
	}
	for i, d := range a.Domains {
		if matchHostPattern(d, host) {
			return Decision{Verdict: Allowed, Rule: "domains[" + strconv.Itoa(i) + "]"}
		}
	}
	method = strings.ToUpper(method)
	blocked := Decision{Verdict: BlockedHost}
	for i := range a.URLPrefixes {
		e := &a.URLPrefixes[i]
		if !matchHostPattern(e.Host, host) || (e.Path != "" && !matchPattern(e.Path, path)) {
			continue
		}
		rule := "url_prefixes[" + strconv.Itoa(i) + "]"
		if e.allowsMethod(method) {
			return Decision{Verdict: Allowed, Rule: rule, GraphQL: e.GraphQL, MethodsListed: len(e.Methods) > 0}
		}
		if blocked.Verdict == BlockedHost {
			blocked = Decision{Verdict: BlockedMethod, Rule: rule}
		}
	}
	return blocked
}

// allowsMethod reports whether the entry allows an upper-case method.
// Unlike the reference, an empty method is not a wildcard: it matches only
// entries without a methods list.
func (e *URLPrefix) allowsMethod(method string) bool {
	if len(e.Methods) == 0 {
		return true
	}
	for _, m := range e.Methods {
		if strings.EqualFold(m, method) {
			return true
		}
	}
	return false
}

// AllowsGET reports whether host is open to GET on every path: a domains
// entry matches it, or a url_prefixes entry without a path whose methods
// are absent or include GET. The Anthropic server-side tool filter (SPEC
// S5.6) may only delegate such hosts, since its allowed_domains cannot
// express a path or method restriction.
func (a *Allowlist) AllowsGET(host string) bool {
	if a == nil {
		return false
	}
	host = normalizeHostName(host)
	if host == "" {
		return false
	}
	for _, d := range a.Domains {
		if matchHostPattern(d, host) {
			return true
		}
	}
	for i := range a.URLPrefixes {
		e := &a.URLPrefixes[i]
		if e.Path == "" && matchHostPattern(e.Host, host) && e.allowsMethod("GET") {
			return true
		}
	}
	return false
}

// MatchHost reports whether host matches a host pattern: both are compared
// lower-case with one trailing dot removed, with Fnmatch when the pattern
// has '*' or '?' and exactly otherwise. "*.github.com" matches
// "api.github.com" but not "github.com"; "*" matches every host.
func MatchHost(pattern, host string) bool {
	return matchPattern(normalizeHostName(pattern), normalizeHostName(host))
}

// matchHostPattern matches an already normalised host, so that a host's
// trailing dot is removed once only ("pypi.org.." stays unmatched).
func matchHostPattern(pattern, host string) bool {
	return matchPattern(normalizeHostName(pattern), host)
}

func normalizeHostName(h string) string {
	return strings.TrimSuffix(strings.ToLower(h), ".")
}
