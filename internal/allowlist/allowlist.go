// Package allowlist parses .airut/network-allowlist.yaml and decides, for one
// request, whether the network sandbox lets it through (SPEC S4).
//
// Decisions are identical to the Python reference's, so existing files keep
// their meaning: patterns with '*' or '?' are Python fnmatch patterns (see
// Fnmatch), others are compared exactly; hosts are case-insensitive, paths
// case-sensitive and matched with their query string. Where the reference
// was lax the schema here is strict: a string where a list belongs is an
// error, never iterated character by character.
//
// The package is pure: no I/O except Load, no logging, no globals.
package allowlist

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/airut/airut/internal/yamlwalk"
)

// Allowlist is a parsed .airut/network-allowlist.yaml. The zero value (and
// a nil *Allowlist) allows nothing.
type Allowlist struct {
	// Domains are host patterns for which every path and method is
	// allowed; lower-case, without a trailing dot. Default: none.
	Domains []string
	// URLPrefixes are checked in order after Domains. Default: none.
	URLPrefixes []URLPrefix
}

// URLPrefix is one url_prefixes entry.
type URLPrefix struct {
	// Host is a host pattern; lower-case, without a trailing dot. Required.
	Host string
	// Path is a path pattern matched against the path and query string;
	// "" (the default) allows any path.
	Path string
	// Methods are upper-case HTTP methods; nil (the default) allows all.
	Methods []string
	// GraphQL restricts the operations of GraphQL requests (SPEC S5.5);
	// nil (the default) means no GraphQL inspection.
	GraphQL *GraphQL
}

// GraphQL lists, per operation type, the fnmatch patterns of the top-level
// fields allowed. An empty list allows no operation of that type.
type GraphQL struct {
	Queries       []string
	Mutations     []string
	Subscriptions []string
}

// ErrInvalid is matched (errors.Is) by every error Parse returns.
var ErrInvalid = errors.New("invalid network allowlist")

// Load reads and parses the allowlist file at path; errors name the path.
func Load(path string) (*Allowlist, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read allowlist %s: %w", path, err)
	}
	return Parse(data, path)
}

// Parse strictly validates an allowlist file. filename is used in errors,
// which have the form "file:line: key: problem"; every problem found is
// reported, joined by newlines. An empty file, one with only comments, "{}"
// or "~" gives an empty allowlist, which blocks everything.
//
// Beyond the reference's schema, Parse rejects what would silently never
// match or silently allow more than written: a null path, methods or
// graphql (which would mean "any"), a host pattern with a scheme, path,
// port, leading dot or non-ASCII letters, brackets in a host pattern
// without '*' or '?' (compared exactly, so it cannot match a host), a path
// pattern not starting with '/' or a wildcard, and methods that are not
// known HTTP methods. CONNECT, TRACE and TRACK are rejected because the
// proxy always refuses them. Null domains or url_prefixes mean none.
// Values are YAML strings: 8080 is not a host pattern, and tags such as
// !env are refused (the file is the repository's, read as written).
// Anchors and aliases work; merge keys ("<<") and a second YAML document
// are errors.
//
// The error matches ErrInvalid, and errors.As finds its yamlwalk.Errors.
func Parse(data []byte, filename string) (*Allowlist, error) {
	root, err := yamlwalk.Parse(filename, data)
	if err != nil {
		var errs yamlwalk.Errors
		errors.As(err, &errs)
		return nil, &parseError{errs}
	}
	w := yamlwalk.New(filename, yamlwalk.Options{ListKeys: true})
	al := &Allowlist{}
	top(w.Root(root), al)
	if errs := w.Errors(); len(errs) > 0 {
		return nil, &parseError{errs}
	}
	return al, nil
}

// parseError is every problem of one file, one per line. It matches
// ErrInvalid without repeating its text.
type parseError struct{ errs yamlwalk.Errors }

func (e *parseError) Error() string { return e.errs.Error() }

func (e *parseError) Unwrap() []error { return []error{ErrInvalid, e.errs} }

func contains(list []string, s string) bool { return slices.Contains(list, s) }

func top(n yamlwalk.Node, al *Allowlist) {
	if n.IsNull() {
		return
	}
	if n.YAML().Kind != yaml.MappingNode {
		n.Errorf("top level must be a mapping with domains and url_prefixes, got %s", n.Describe())
		return
	}
	n.Fields("a mapping", []string{"domains", "url_prefixes"}, func(name string, v yamlwalk.Node) {
		if v.IsNull() {
			return // none: less access, never more
		}
		switch name {
		case "domains":
			for _, item := range v.List("a list of host patterns") {
				if s, ok := item.String("a string"); ok {
					if host, ok := hostPattern(item, s); ok {
						al.Domains = append(al.Domains, host)
					}
				}
			}
		case "url_prefixes":
			for _, item := range v.List("a list of entries") {
				if e, ok := urlPrefix(item); ok {
					al.URLPrefixes = append(al.URLPrefixes, e)
				}
			}
		}
	})
}

func urlPrefix(n yamlwalk.Node) (URLPrefix, bool) {
	var e URLPrefix
	before := n.Walker().ErrorCount()
	hasHost := false
	ok := n.Fields("a mapping with host, path, methods, graphql", []string{"host", "path", "methods", "graphql"}, func(name string, v yamlwalk.Node) {
		switch name {
		case "host":
			hasHost = true
			if s, ok := v.String("a string"); ok {
				e.Host, _ = hostPattern(v, s)
			}
		case "path":
			if s, ok := v.String("a string"); ok {
				e.Path = s
				checkPath(v, s)
			}
		case "methods":
			for _, item := range v.List("a list of HTTP methods") {
				if s, ok := item.String("a string"); ok {
					if m, ok := method(item, s); ok {
						e.Methods = append(e.Methods, m)
					}
				}
			}
		case "graphql":
			e.GraphQL = graphQL(v)
		}
	})
	if !ok {
		return e, false
	}
	if !hasHost {
		n.Errorf("host is required")
	}
	return e, n.Walker().ErrorCount() == before
}

func graphQL(n yamlwalk.Node) *GraphQL {
	g := &GraphQL{}
	ok := n.Fields("a mapping with queries, mutations, subscriptions", []string{"queries", "mutations", "subscriptions"}, func(name string, v yamlwalk.Node) {
		var out []string
		if !v.IsNull() { // none: no operation of the type
			for _, item := range v.List("a list of field name patterns") {
				if s, ok := item.String("a string"); ok {
					if s == "" {
						item.Errorf("must not be empty")
						continue
					}
					out = append(out, s)
				}
			}
		}
		switch name {
		case "queries":
			g.Queries = out
		case "mutations":
			g.Mutations = out
		case "subscriptions":
			g.Subscriptions = out
		}
	})
	if !ok {
		return nil
	}
	return g
}

// hostPattern validates and normalises a host pattern: lower-case, one
// trailing dot removed, IPv6 literals in canonical form without brackets.
func hostPattern(n yamlwalk.Node, s string) (string, bool) {
	h := strings.TrimSuffix(strings.ToLower(s), ".")
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		if ip, err := netip.ParseAddr(h[1 : len(h)-1]); err == nil && ip.Is6() && ip.Zone() == "" {
			return ip.String(), true
		}
	}
	if ip, err := netip.ParseAddr(h); err == nil && ip.Is6() && ip.Zone() == "" {
		return ip.String(), true
	}
	switch {
	case h == "":
		n.Errorf("host pattern must not be empty")
	case strings.Contains(h, "://"):
		n.Errorf("must be a host name, not a URL: %q", s)
	case strings.Contains(h, "/"):
		n.Errorf("must be a host name without a path (use url_prefixes with path): %q", s)
	case strings.Count(h, ":") == 1:
		n.Errorf("must not include a port (the port is never part of matching): %q", s)
	case strings.HasPrefix(h, "."):
		n.Errorf("a leading dot matches no host; write %q to match subdomains", "*"+h)
	case strings.ContainsAny(h, "[]") && !hasWildcard(h):
		n.Errorf("brackets are a character class only in a pattern with '*' or '?'; without them %q is compared exactly and matches no host", s)
	default:
		for _, c := range h {
			if !isHostPatternChar(c) {
				n.Errorf("invalid character %q in host pattern %q (internationalised names must be written in xn-- form)", c, s)
				return "", false
			}
		}
		return h, true
	}
	return "", false
}

func isHostPatternChar(c rune) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.ContainsRune("-._*?[]!:", c)
}

func checkPath(n yamlwalk.Node, s string) {
	switch {
	case s == "":
	case strings.ContainsRune(s, 0):
		n.Errorf("must not contain a NUL character")
	case !strings.ContainsRune("/*?[", rune(s[0])):
		n.Errorf("must start with '/' or a wildcard (request paths always start with '/'): %q", s)
	}
}

// knownMethods are the methods an entry may list: RFC 9110, PATCH, WebDAV
// (RFC 4918, REPORT from RFC 3253) and QUERY. A typo is an error rather
// than an entry that silently never matches.
var knownMethods = []string{
	"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "QUERY",
	"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT",
}

// refusedMethods are refused by the proxy whatever the allowlist says:
// TRACE and TRACK echo injected credentials back, and CONNECT tunnels are
// refused because clients reach the proxy transparently (SPEC S4).
var refusedMethods = []string{"CONNECT", "TRACE", "TRACK"}

func method(n yamlwalk.Node, s string) (string, bool) {
	m := strings.ToUpper(s)
	switch {
	case contains(knownMethods, m):
		return m, true
	case contains(refusedMethods, m):
		n.Errorf("%s is always refused by the proxy and cannot be allowed", m)
	default:
		n.Errorf("unknown HTTP method %q (expected one of: %s)", s, strings.Join(knownMethods, ", "))
	}
	return "", false
}
