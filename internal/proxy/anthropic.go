package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/airut/airut/internal/allowlist"
)

// Anthropic's server-side tools (S5.6). web_fetch and web_search run on
// Anthropic's side: the proxy never sees what they fetch, so a Messages
// request offering them could make Anthropic read any URL for the agent.
// The proxy rewrites such requests so those tools can reach only hosts
// the allowlist opens to GET on every path, and blocks a request it
// cannot make so:
//
//   - allowed_domains is trimmed to such hosts, or, when absent, set to
//     every host the allowlist opens that way; a list that ends up empty
//     blocks the request (an empty list is refused by web_search and
//     would mean "no restriction" to a future tool);
//   - Anthropic includes subdomains ("example.com" covers
//     "docs.example.com"), so a domain is kept only if its subdomains are
//     open too ("*.example.com" or wider);
//   - blocked_domains (a blocklist cannot be reconciled with an
//     allowlist), wildcard entries other than "*.d" with d kept, and
//     malformed entries block the request;
//   - mcp_servers (the MCP connector: Anthropic calls a URL for the agent)
//     must each be a URL the allowlist allows for POST.
//
// Where the allowlist opens every host to GET ("*"), the tools are left
// as they are: they can reach nothing the agent cannot.
//
// Only the members of the tool objects that change are rewritten; the
// rest of the body goes upstream byte for byte, with its length fixed.

// anthropicHost is the Messages API's host.
const anthropicHost = "api.anthropic.com"

// anthropicPath is the path pattern the rewrite applies to, as in the
// allowlist: /v1/messages, its query forms and the batches API.
const anthropicPath = "/v1/messages*"

// ErrToolConfig is matched by every refusal of the server-side tool
// rewrite.
var ErrToolConfig = errors.New("server-side tool configuration")

func toolErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrToolConfig, fmt.Sprintf(format, args...))
}

// toolDomains is what the allowlist lets server-side tools reach.
type toolDomains struct {
	al *allowlist.Allowlist
	// open are the host patterns open to GET on every path.
	open []string
	// all: some open pattern is "*": every host is open to GET.
	all bool
	// inject is allowed_domains for a tool that declares none.
	inject []string
}

func newToolDomains(al *allowlist.Allowlist) *toolDomains {
	td := &toolDomains{al: al}
	if al == nil {
		return td
	}
	td.open = append(td.open, al.Domains...)
	for _, e := range al.URLPrefixes {
		if e.Path == "" && (len(e.Methods) == 0 || slices.Contains(e.Methods, http.MethodGet)) {
			td.open = append(td.open, e.Host)
		}
	}
	td.all = slices.Contains(td.open, "*")
	seen := map[string]bool{}
	for _, p := range td.open {
		c := strings.TrimPrefix(p, "*.")
		if strings.ContainsAny(c, "*?[") || seen[c] || !td.safe(c) {
			continue
		}
		seen[c] = true
		td.inject = append(td.inject, c)
	}
	sort.Strings(td.inject)
	return td
}

// safe reports whether Anthropic may be let reach host and its
// subdomains.
func (td *toolDomains) safe(host string) bool {
	if td.all {
		return true
	}
	if !td.al.AllowsGET(host) {
		return false
	}
	for _, p := range td.open {
		if p == "*" {
			return true
		}
		if suffix, ok := strings.CutPrefix(p, "*"); ok && !strings.ContainsAny(suffix, "*?[") && strings.HasSuffix("."+host, suffix) {
			return true
		}
	}
	return false
}

// anthropicTools is the filter of S5.6.
func (p *Proxy) anthropicTools(r *Request) error {
	if r.Host != anthropicHost || r.HTTP.Method != http.MethodPost || !allowlist.Fnmatch(anthropicPath, r.Path) {
		return nil
	}
	if ce := strings.TrimSpace(r.HTTP.Header.Get("Content-Encoding")); ce != "" && !strings.EqualFold(ce, "identity") {
		return toolErr("a Messages request with Content-Encoding %q cannot be checked for server-side tools", ce)
	}
	body, err := r.Body()
	if err != nil {
		return err
	}
	if !mayDeclareTools(body) {
		return nil
	}
	out, changed, err := p.tools.rewrite(body)
	if err != nil {
		return err
	}
	if changed {
		r.SetBody(out)
		p.logger.Info("anthropic server-side tools rewritten", keyURL, "https://"+r.Host+r.Path,
			"bytes_before", len(body), "bytes_after", len(out))
	}
	return nil
}

// mayDeclareTools is a cheap, sound pre-check: a body that declares a
// web_ tool or MCP servers has "web_" or "mcp_servers" in it, or spells a
// letter or '_' of them with a \u escape (an escaped control character,
// as in terminal output, cannot).
func mayDeclareTools(body []byte) bool {
	return containsFold(body, "web_") || bytes.Contains(body, []byte("mcp_servers")) || escapesLetter(body)
}

func escapesLetter(b []byte) bool {
	for {
		i := bytes.Index(b, []byte(`\u00`))
		if i < 0 || i+6 > len(b) {
			return false
		}
		if c := b[i+4]; c >= '4' && c <= '7' {
			return true // \u0040-\u007f: letters, digits of none, '_'
		}
		b = b[i+4:]
	}
}

func containsFold(b []byte, lower string) bool {
	for i := 0; i+len(lower) <= len(b); i++ {
		j := bytes.IndexByte(b[i:], lower[0])
		k := bytes.IndexByte(b[i:], lower[0]-'a'+'A')
		switch {
		case j < 0 && k < 0:
			return false
		case j < 0 || (k >= 0 && k < j):
			j = k
		}
		i += j
		if i+len(lower) <= len(b) && bytes.EqualFold(b[i:i+len(lower)], []byte(lower)) {
			return true
		}
	}
	return false
}

// edit replaces data[start:end].
type edit struct {
	start, end int
	with       []byte
}

// rewrite applies the rules to a Messages (or batches) request body.
func (td *toolDomains) rewrite(body []byte) ([]byte, bool, error) {
	top, err := members(body)
	if err != nil {
		return nil, false, toolErr("the Messages request is not a JSON object: %v", err)
	}
	var edits []edit
	params := func(obj []member, base int) error {
		for _, m := range obj {
			switch m.key {
			case "tools":
				es, err := td.toolsArray(m.val, base+m.start)
				if err != nil {
					return err
				}
				edits = append(edits, es...)
			case "mcp_servers":
				if err := td.mcpServers(m.val); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := params(top, 0); err != nil {
		return nil, false, err
	}
	// The batches API: {"requests": [{"custom_id", "params": {…}}]}.
	for _, m := range top {
		if m.key != "requests" || isNull(m.val) {
			continue
		}
		reqs, err := elements(m.val)
		if err != nil {
			continue // not an array: the API refuses it, nothing runs
		}
		for _, rq := range reqs {
			rm, err := members(rq.val)
			if err != nil {
				continue
			}
			for _, pm := range rm {
				if pm.key != "params" {
					continue
				}
				pp, err := members(pm.val)
				if err != nil {
					continue
				}
				if err := params(pp, m.start+rq.start+pm.start); err != nil {
					return nil, false, err
				}
			}
		}
	}
	if len(edits) == 0 {
		return body, false, nil
	}
	sort.Slice(edits, func(i, j int) bool { return edits[i].start < edits[j].start })
	var out bytes.Buffer
	out.Grow(len(body))
	at := 0
	for _, e := range edits {
		out.Write(body[at:e.start])
		out.Write(e.with)
		at = e.end
	}
	out.Write(body[at:])
	return out.Bytes(), true, nil
}

// toolsArray checks every tool of a tools array at offset base.
func (td *toolDomains) toolsArray(raw []byte, base int) ([]edit, error) {
	if isNull(raw) {
		return nil, nil
	}
	tools, err := elements(raw)
	if err != nil {
		return nil, toolErr("tools is not an array: %v", err)
	}
	var edits []edit
	for _, t := range tools {
		obj, err := members(t.val)
		if err != nil {
			continue // not an object: no tool, the API refuses it
		}
		typ, covered, err := serverTool(obj)
		if err != nil {
			return nil, err
		}
		if !covered || td.all {
			continue
		}
		with, err := td.tool(typ, obj)
		if err != nil {
			return nil, err
		}
		edits = append(edits, edit{start: base + t.start, end: base + t.end, with: with})
	}
	return edits, nil
}

// serverTool reads a tool's type: covered is true for Anthropic's
// web_ tools (any version, any case).
func serverTool(obj []member) (string, bool, error) {
	seen := map[string]bool{}
	typ := ""
	for _, m := range obj {
		if seen[m.key] {
			return "", false, toolErr("a tool declares %q twice", m.key)
		}
		seen[m.key] = true
		if m.key == "type" {
			_ = json.Unmarshal(m.val, &typ)
		}
	}
	return typ, strings.HasPrefix(strings.ToLower(typ), "web_"), nil
}

// tool rewrites one covered tool object.
func (td *toolDomains) tool(typ string, obj []member) ([]byte, error) {
	var allowed []string
	hasAllowed := false
	for _, m := range obj {
		switch m.key {
		case "blocked_domains":
			var list []json.RawMessage
			if err := json.Unmarshal(m.val, &list); err != nil || len(list) > 0 {
				return nil, toolErr("%s: blocked_domains is not supported by the network sandbox: use allowed_domains, which is trimmed to the hosts the network allowlist opens to GET", typ)
			}
		case "allowed_domains":
			if isNull(m.val) {
				continue
			}
			hasAllowed = true
			if err := json.Unmarshal(m.val, &allowed); err != nil {
				return nil, toolErr("%s: allowed_domains is not a list of domains", typ)
			}
		}
	}
	var list []string
	if !hasAllowed {
		list = td.inject
	} else {
		for _, d := range allowed {
			kept, err := td.domain(typ, d)
			if err != nil {
				return nil, err
			}
			if kept != "" && !slices.Contains(list, kept) {
				list = append(list, kept)
			}
		}
	}
	if len(list) == 0 {
		what := "none of its allowed_domains is"
		if !hasAllowed {
			what = "no host is"
		}
		return nil, toolErr("%s: %s open to GET on every path (with its subdomains) in the network allowlist, so the tool cannot be restricted to it. %s", typ, what, requestAccess)
	}
	listJSON, _ := json.Marshal(list)
	var b bytes.Buffer
	b.WriteByte('{')
	write := func(key string, val []byte) {
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(key)
		b.Write(k)
		b.WriteByte(':')
		b.Write(val)
	}
	wrote := false
	for _, m := range obj {
		switch m.key {
		case "blocked_domains":
			// Empty or null (anything else was refused): dropped, since it
			// may not sit beside allowed_domains.
		case "allowed_domains":
			write(m.key, listJSON)
			wrote = true
		default:
			write(m.key, m.val)
		}
	}
	if !wrote {
		write("allowed_domains", listJSON)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// domain checks one allowed_domains entry ("example.com",
// "example.com/docs", "*.example.com"): it returns the entry to keep, ""
// to drop it, or an error for one that blocks the request.
func (td *toolDomains) domain(typ, d string) (string, error) {
	host, path, _ := strings.Cut(d, "/")
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if path != "" {
		path = "/" + path
	}
	wild := false
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		host, wild = rest, true
	}
	if host == "" || strings.Contains(d, "://") || strings.ContainsAny(host, "*?[]: \t") || !validHostChars(host) {
		return "", toolErr("%s: allowed_domains entry %q is not a host name (wildcards other than a leading \"*.\", schemes and ports are not supported)", typ, d)
	}
	if wild {
		// Anthropic includes subdomains anyway: "*.d" can be "d" where d
		// and its subdomains are open.
		if !td.safe(host) {
			return "", toolErr("%s: allowed_domains entry %q cannot be made safe: %s and its subdomains are not all open to GET in the network allowlist", typ, d, host)
		}
		return host + path, nil
	}
	if !td.safe(host) {
		return "", nil
	}
	return host + path, nil
}

func validHostChars(h string) bool {
	for i := 0; i < len(h); i++ {
		if c := h[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// mcpServers checks the MCP connector's servers: Anthropic calls each URL
// for the agent, so each must be one the allowlist allows it to POST to.
func (td *toolDomains) mcpServers(raw []byte) error {
	if isNull(raw) {
		return nil
	}
	servers, err := elements(raw)
	if err != nil {
		return toolErr("mcp_servers is not an array")
	}
	for _, s := range servers {
		obj, err := members(s.val)
		if err != nil {
			return toolErr("an mcp_servers entry is not an object")
		}
		var u string
		n := 0
		for _, m := range obj {
			if m.key == "url" {
				n++
				if err := json.Unmarshal(m.val, &u); err != nil {
					return toolErr("an mcp_servers url is not a string")
				}
			}
		}
		if n != 1 {
			return toolErr("an mcp_servers entry must have exactly one url")
		}
		pu, err := url.Parse(u)
		if err != nil || pu.Scheme != "https" || pu.Host == "" || pu.User != nil {
			return toolErr("MCP server URL %q is not an https URL", u)
		}
		host, err := allowlist.NormalizeHost(pu.Hostname())
		if err != nil {
			return toolErr("MCP server URL %q: %v", u, err)
		}
		target := pu.EscapedPath()
		if target == "" {
			target = "/"
		}
		if pu.RawQuery != "" {
			target += "?" + pu.RawQuery
		}
		path, err := allowlist.CleanPath(target)
		if err != nil || td.al.Match(host, path, http.MethodPost).Verdict != allowlist.Allowed {
			return toolErr("MCP server URL %q is not allowed for POST by the network allowlist, and Anthropic would call it for the agent. %s", u, requestAccess)
		}
	}
	return nil
}
