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
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/airut/airut/internal/fileerr"
	"gopkg.in/yaml.v3"
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
// Anchors and aliases work; merge keys ("<<") and a second YAML document
// are errors.
func Parse(data []byte, filename string) (*Allowlist, error) {
	p := &parser{file: filename}
	root, err := p.decode(data)
	if err != nil {
		return nil, err
	}
	al := &Allowlist{}
	if root != nil {
		p.top(root, al)
	}
	if len(p.problems) > 0 {
		return nil, errors.Join(p.problems...)
	}
	return al, nil
}

// problem is one validation error. It matches ErrInvalid without repeating
// its text, so a joined list reads as one problem per line.
type problem struct {
	file string
	line int
	key  string
	msg  string
}

func (e *problem) Error() string { return fileerr.Format(e.file, e.line, e.key, e.msg) }

func (e *problem) Unwrap() error { return ErrInvalid }

type parser struct {
	file     string
	problems []error
}

func (p *parser) addf(n *yaml.Node, key, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.problems = append(p.problems, &problem{file: p.file, line: line, key: key, msg: fmt.Sprintf(format, args...)})
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// decode returns the root node of the single document in data, or nil for
// an empty document.
func (p *parser) decode(data []byte) (root *yaml.Node, err error) {
	// yaml.v3 has panicked on hostile input before; a bad file must be an
	// error, never a crash of the gateway.
	defer func() {
		if r := recover(); r != nil {
			root = nil
			err = &problem{file: p.file, msg: fmt.Sprintf("YAML parser failed: %v", r)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, p.syntaxError(err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, p.syntaxError(err)
	default:
		return nil, &problem{file: p.file, line: extra.Line, msg: "only one YAML document is allowed"}
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

func (p *parser) syntaxError(err error) error {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &problem{file: p.file, line: line, msg: "YAML syntax error: " + m[2]}
	}
	return &problem{file: p.file, msg: "YAML syntax error: " + strings.TrimPrefix(msg, "yaml: ")}
}

// resolve follows aliases so that anchors work like in the reference.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// describe names a node's type for "got X" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		switch t := n.ShortTag(); t {
		case "!!str":
			return "string"
		case "!!int":
			return "integer"
		case "!!bool":
			return "boolean"
		case "!!float":
			return "number"
		case "!!null":
			return "null"
		default:
			return "value tagged " + t
		}
	}
	return "unexpected YAML node"
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func isString(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str"
}

// fields walks a mapping, reporting non-string, duplicate and unknown keys,
// and calls fn for each known key with its resolved value.
func (p *parser) fields(m *yaml.Node, key string, known []string, fn func(name string, v *yaml.Node)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := resolve(m.Content[i]), resolve(m.Content[i+1])
		if k == nil || v == nil {
			continue
		}
		if k.ShortTag() == "!!merge" {
			p.addf(k, join(key, "<<"), "merge keys are not supported; write the keys out")
			continue
		}
		if !isString(k) {
			p.addf(k, key, "keys must be strings, got %s", describe(k))
			continue
		}
		name := k.Value
		if first, dup := seen[name]; dup {
			p.addf(k, join(key, name), "duplicate key (first at line %d)", first)
			continue
		}
		seen[name] = k.Line
		if !contains(known, name) {
			p.addf(k, join(key, name), "unknown key (expected one of: %s)", strings.Join(known, ", "))
			continue
		}
		fn(name, v)
	}
}

func join(parent, child string) string {
	if parent == "" {
		return child
	}
	return parent + "." + child
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (p *parser) top(root *yaml.Node, al *Allowlist) {
	root = resolve(root)
	if isNull(root) {
		return
	}
	if root.Kind != yaml.MappingNode {
		p.addf(root, "", "top level must be a mapping with domains and url_prefixes, got %s", describe(root))
		return
	}
	p.fields(root, "", []string{"domains", "url_prefixes"}, func(name string, v *yaml.Node) {
		switch name {
		case "domains":
			for i, item := range p.list(v, "domains", "host patterns", true) {
				key := fmt.Sprintf("domains[%d]", i)
				if s, ok := p.str(item, key); ok {
					if host, ok := p.hostPattern(item, key, s); ok {
						al.Domains = append(al.Domains, host)
					}
				}
			}
		case "url_prefixes":
			for i, item := range p.list(v, "url_prefixes", "entries", true) {
				if e, ok := p.urlPrefix(item, fmt.Sprintf("url_prefixes[%d]", i)); ok {
					al.URLPrefixes = append(al.URLPrefixes, e)
				}
			}
		}
	})
}

// list returns the items of a sequence node. A null is an empty list where
// nullOK, since there an empty list means less access, never more.
func (p *parser) list(n *yaml.Node, key, what string, nullOK bool) []*yaml.Node {
	if nullOK && isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.addf(n, key, "must be a list of %s, got %s", what, describe(n))
		return nil
	}
	items := make([]*yaml.Node, 0, len(n.Content))
	for _, item := range n.Content {
		items = append(items, resolve(item))
	}
	return items
}

func (p *parser) str(n *yaml.Node, key string) (string, bool) {
	if !isString(n) {
		p.addf(n, key, "must be a string, got %s", describe(n))
		return "", false
	}
	return n.Value, true
}

func (p *parser) urlPrefix(n *yaml.Node, key string) (URLPrefix, bool) {
	var e URLPrefix
	if n.Kind != yaml.MappingNode {
		p.addf(n, key, "must be a mapping with host, path, methods, graphql, got %s", describe(n))
		return e, false
	}
	before := len(p.problems)
	hasHost := false
	p.fields(n, key, []string{"host", "path", "methods", "graphql"}, func(name string, v *yaml.Node) {
		fkey := join(key, name)
		switch name {
		case "host":
			hasHost = true
			if s, ok := p.str(v, fkey); ok {
				e.Host, _ = p.hostPattern(v, fkey, s)
			}
		case "path":
			if s, ok := p.str(v, fkey); ok {
				e.Path = s
				p.checkPath(v, fkey, s)
			}
		case "methods":
			if v.Kind != yaml.SequenceNode {
				p.addf(v, fkey, "must be a list of HTTP methods, got %s", describe(v))
				return
			}
			for i, item := range p.list(v, fkey, "HTTP methods", false) {
				mkey := fmt.Sprintf("%s[%d]", fkey, i)
				if s, ok := p.str(item, mkey); ok {
					if m, ok := p.method(item, mkey, s); ok {
						e.Methods = append(e.Methods, m)
					}
				}
			}
		case "graphql":
			e.GraphQL = p.graphQL(v, fkey)
		}
	})
	if !hasHost {
		p.addf(n, key, "host is required")
	}
	return e, len(p.problems) == before
}

func (p *parser) graphQL(n *yaml.Node, key string) *GraphQL {
	if n.Kind != yaml.MappingNode {
		p.addf(n, key, "must be a mapping with queries, mutations, subscriptions, got %s", describe(n))
		return nil
	}
	g := &GraphQL{}
	p.fields(n, key, []string{"queries", "mutations", "subscriptions"}, func(name string, v *yaml.Node) {
		fkey := join(key, name)
		var out []string
		for i, item := range p.list(v, fkey, "field name patterns", true) {
			ikey := fmt.Sprintf("%s[%d]", fkey, i)
			if s, ok := p.str(item, ikey); ok {
				if s == "" {
					p.addf(item, ikey, "must not be empty")
					continue
				}
				out = append(out, s)
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
	return g
}

// hostPattern validates and normalises a host pattern: lower-case, one
// trailing dot removed, IPv6 literals in canonical form without brackets.
func (p *parser) hostPattern(n *yaml.Node, key, s string) (string, bool) {
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
		p.addf(n, key, "host pattern must not be empty")
	case strings.Contains(h, "://"):
		p.addf(n, key, "must be a host name, not a URL: %q", s)
	case strings.Contains(h, "/"):
		p.addf(n, key, "must be a host name without a path (use url_prefixes with path): %q", s)
	case strings.Count(h, ":") == 1:
		p.addf(n, key, "must not include a port (the port is never part of matching): %q", s)
	case strings.HasPrefix(h, "."):
		p.addf(n, key, "a leading dot matches no host; write %q to match subdomains", "*"+h)
	case strings.ContainsAny(h, "[]") && !hasWildcard(h):
		p.addf(n, key, "brackets are a character class only in a pattern with '*' or '?'; without them %q is compared exactly and matches no host", s)
	default:
		for _, c := range h {
			if !isHostPatternChar(c) {
				p.addf(n, key, "invalid character %q in host pattern %q (internationalised names must be written in xn-- form)", c, s)
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

func (p *parser) checkPath(n *yaml.Node, key, s string) {
	switch {
	case s == "":
	case strings.ContainsRune(s, 0):
		p.addf(n, key, "must not contain a NUL character")
	case !strings.ContainsRune("/*?[", rune(s[0])):
		p.addf(n, key, "must start with '/' or a wildcard (request paths always start with '/'): %q", s)
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

func (p *parser) method(n *yaml.Node, key, s string) (string, bool) {
	m := strings.ToUpper(s)
	switch {
	case contains(knownMethods, m):
		return m, true
	case contains(refusedMethods, m):
		p.addf(n, key, "%s is always refused by the proxy and cannot be allowed", m)
	default:
		p.addf(n, key, "unknown HTTP method %q (expected one of: %s)", s, strings.Join(knownMethods, ", "))
	}
	return "", false
}
