package proxy

import (
	"bufio"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/airut/airut/internal/secrets"
	"github.com/airut/airut/internal/testkit"
)

const toolAllowlist = `
domains:
  - "*.python.org"
  - python.org
  - pypi.org
  - "*.example.org"
url_prefixes:
  - host: api.anthropic.com
    path: /v1/messages*
    methods: [POST]
  - host: docs.rs
    methods: [GET, HEAD]
  - host: "*.docs.rs"
    methods: [GET]
  - host: api.github.com
    path: /repos/*
    methods: [GET]
  - host: mcp.example.net
    path: /mcp
    methods: [POST]
`

// toolsOf returns the tools of a rewritten body, by type.
func toolsOf(t *testing.T, body []byte) map[string]map[string]any {
	t.Helper()
	var b struct {
		Tools []map[string]any `json:"tools"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("rewritten body is not JSON: %v\n%s", err, body)
	}
	out := map[string]map[string]any{}
	for _, tool := range b.Tools {
		typ, _ := tool["type"].(string)
		out[typ] = tool
	}
	return out
}

func domainsOf(tool map[string]any) []string {
	list, _ := tool["allowed_domains"].([]any)
	var out []string
	for _, d := range list {
		out = append(out, d.(string))
	}
	return out
}

func TestToolDomainsSafe(t *testing.T) {
	td := newToolDomains(mustAllowlist(t, toolAllowlist))
	for host, want := range map[string]bool{
		"python.org": true, "docs.python.org": true, "pypi.org": false, "example.org": false,
		"a.example.org": true, "docs.rs": true, "api.github.com": false, "evil.com": false, "mcp.example.net": false,
	} {
		if got := td.safe(host); got != want {
			t.Errorf("safe(%s) = %v; want %v", host, got, want)
		}
	}
	if want := []string{"docs.rs", "python.org"}; !slices.Equal(td.inject, want) {
		t.Errorf("inject = %v; want %v", td.inject, want)
	}
}

func TestAnthropicToolRewrite(t *testing.T) {
	td := newToolDomains(mustAllowlist(t, toolAllowlist))
	const msgs = `"model":"claude-x","max_tokens":10,"messages":[{"role":"user","content":"fetch  it \u00e9 <b>"}]`
	tests := []struct {
		name    string
		body    string
		want    map[string][]string // tool type → allowed_domains after; nil entry: key absent
		same    bool                // body unchanged
		refused string
	}{
		{"trimmed", `{` + msgs + `,"tools":[{"type":"web_search_20250305","name":"web_search","allowed_domains":["docs.python.org","evil.com","pypi.org"]}]}`,
			map[string][]string{"web_search_20250305": {"docs.python.org"}}, false, ""},
		{"injected when absent", `{` + msgs + `,"tools":[{"type":"web_fetch_20250910","name":"web_fetch","max_uses":3}]}`,
			map[string][]string{"web_fetch_20250910": {"docs.rs", "python.org"}}, false, ""},
		{"injected when null", `{` + msgs + `,"tools":[{"type":"web_fetch_20250910","name":"web_fetch","allowed_domains":null}]}`,
			map[string][]string{"web_fetch_20250910": {"docs.rs", "python.org"}}, false, ""},
		{"wildcard made safe", `{` + msgs + `,"tools":[{"type":"web_fetch_20250910","name":"web_fetch","allowed_domains":["*.python.org"]}]}`,
			map[string][]string{"web_fetch_20250910": {"python.org"}}, false, ""},
		{"path kept", `{` + msgs + `,"tools":[{"type":"web_fetch_20250910","name":"web_fetch","allowed_domains":["Docs.Python.org/3/"]}]}`,
			map[string][]string{"web_fetch_20250910": {"docs.python.org/3/"}}, false, ""},
		{"empty blocklist dropped", `{` + msgs + `,"tools":[{"type":"web_search_20250305","name":"web_search","allowed_domains":["python.org"],"blocked_domains":[]}]}`,
			map[string][]string{"web_search_20250305": {"python.org"}}, false, ""},
		{"any case, any version", `{` + msgs + `,"tools":[{"type":"WEB_SEARCH_20990101","name":"web_search","allowed_domains":["evil.com","python.org"]}]}`,
			map[string][]string{"WEB_SEARCH_20990101": {"python.org"}}, false, ""},
		{"escaped type", `{` + msgs + `,"tools":[{"type":"web\u005fsearch_20250305","name":"web_search","allowed_domains":["evil.com","python.org"]}]}`,
			map[string][]string{"web_search_20250305": {"python.org"}}, false, ""},
		{"client tools untouched", `{` + msgs + `,"tools":[{"name":"WebFetch","description":"fetch","input_schema":{"type":"object"},"allowed_domains":["evil.com"]}]}`, nil, true, ""},
		{"no tools", `{` + msgs + `}`, nil, true, ""},
		{"blocklist refused", `{` + msgs + `,"tools":[{"type":"web_search_20250305","name":"web_search","blocked_domains":["evil.com"]}]}`, nil, false, "blocked_domains is not supported"},
		{"everything trimmed", `{` + msgs + `,"tools":[{"type":"web_search_20250305","name":"web_search","allowed_domains":["evil.com","pypi.org"]}]}`, nil, false, "none of its allowed_domains is open to GET"},
		{"wildcard that cannot be made safe", `{` + msgs + `,"tools":[{"type":"web_fetch_20250910","name":"web_fetch","allowed_domains":["*.example.org"]}]}`, nil, false, "cannot be made safe"},
		{"bare wildcard", `{` + msgs + `,"tools":[{"type":"web_fetch_20250910","name":"web_fetch","allowed_domains":["*"]}]}`, nil, false, "is not a host name"},
		{"inner wildcard", `{` + msgs + `,"tools":[{"type":"web_fetch_20250910","name":"web_fetch","allowed_domains":["py*.org"]}]}`, nil, false, "is not a host name"},
		{"scheme", `{` + msgs + `,"tools":[{"type":"web_fetch_20250910","name":"web_fetch","allowed_domains":["https://python.org"]}]}`, nil, false, "is not a host name"},
		{"port", `{` + msgs + `,"tools":[{"type":"web_fetch_20250910","name":"web_fetch","allowed_domains":["python.org:443"]}]}`, nil, false, "is not a host name"},
		{"not a list", `{` + msgs + `,"tools":[{"type":"web_fetch_20250910","name":"web_fetch","allowed_domains":"python.org"}]}`, nil, false, "is not a list"},
		{"duplicate key in a tool", `{` + msgs + `,"tools":[{"type":"web_fetch_20250910","name":"web_fetch","allowed_domains":["python.org"],"allowed_domains":["evil.com"]}]}`, nil, false, "twice"},
		{"two tools keys, both checked", `{` + msgs + `,"tools":[],"tools":[{"type":"web_fetch_20250910","name":"web_fetch","allowed_domains":["evil.com"]}]}`, nil, false, "none of its allowed_domains"},
		{"batches", `{"requests":[{"custom_id":"a","params":{` + msgs + `,"tools":[{"type":"web_search_20250305","name":"web_search","allowed_domains":["evil.com","python.org"]}]}}]}`, nil, false, ""},
		{"mcp server allowed", `{` + msgs + `,"mcp_servers":[{"type":"url","url":"https://mcp.example.net/mcp","name":"x"}]}`, nil, true, ""},
		{"mcp server elsewhere", `{` + msgs + `,"mcp_servers":[{"type":"url","url":"https://evil.com/mcp","name":"x"}]}`, nil, false, "MCP server URL"},
		{"mcp server over http", `{` + msgs + `,"mcp_servers":[{"type":"url","url":"http://mcp.example.net/mcp","name":"x"}]}`, nil, false, "not an https URL"},
		{"not json", `{"tools":[{"type":"web_search"`, nil, false, "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(tt.body)
			if !mayDeclareTools(body) && !tt.same {
				t.Fatal("the pre-check would skip this body")
			}
			out, changed, err := td.rewrite(body)
			if tt.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tt.refused) || !errors.Is(err, ErrToolConfig) {
					t.Errorf("got %v; want refused with %q", err, tt.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.same {
				if changed || string(out) != tt.body {
					t.Errorf("body changed:\n%s", out)
				}
				return
			}
			if !changed {
				t.Fatal("body unchanged; want rewritten")
			}
			if !strings.Contains(string(out), msgs) && !strings.Contains(tt.name, "batches") {
				t.Errorf("the rest of the body was not kept byte for byte:\n%s", out)
			}
			if tt.name == "batches" {
				if !strings.Contains(string(out), `"allowed_domains":["python.org"]`) || strings.Contains(string(out), "evil.com") {
					t.Errorf("batch not rewritten:\n%s", out)
				}
				return
			}
			tools := toolsOf(t, out)
			for typ, want := range tt.want {
				if got := domainsOf(tools[typ]); !slices.Equal(got, want) {
					t.Errorf("%s allowed_domains = %v; want %v", typ, got, want)
				}
				if _, ok := tools[typ]["blocked_domains"]; ok {
					t.Errorf("%s keeps blocked_domains", typ)
				}
			}
		})
	}
}

func TestAnthropicToolsOpenInternet(t *testing.T) {
	td := newToolDomains(mustAllowlist(t, "url_prefixes:\n  - host: \"*\"\n    methods: [GET, HEAD]\n"))
	body := `{"tools":[{"type":"web_fetch_20250910","name":"web_fetch","blocked_domains":["x.com"]}]}`
	if out, changed, err := td.rewrite([]byte(body)); err != nil || changed || string(out) != body {
		t.Errorf("rewrite = %s, %v, %v; want unchanged where the allowlist opens every host to GET", out, changed, err)
	}
}

// TestAnthropicToolsThroughProxy sends a streaming Messages request with
// server-side tools through the proxy to the fake Messages API: the body
// the fake recorded is the rewritten one, it parsed it (so the length was
// fixed), and the SSE stream came back.
func TestAnthropicToolsThroughProxy(t *testing.T) {
	const real = "sk-ant-api03-REALrealREALreal0123456789"
	ca := testkit.NewTestCA(t)
	up := testkit.NewAnthropicUpstream(t, ca, "127.0.0.1", real)
	m, err := secrets.NewMap(map[string]secrets.Masked{
		"ANTHROPIC_API_KEY": {Value: real, Scopes: []string{"api.anthropic.com"}, Headers: []string{"x-api-key"}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sur, _ := m.Surrogate("ANTHROPIC_API_KEY")
	px := startProxy(t, Config{
		Allowlist: mustAllowlist(t, toolAllowlist), Replacements: m.Replacements(), UpstreamCA: ca.CertPEM,
		Resolve: map[string]string{"api.anthropic.com": up.Addr},
	})
	c := px.client(true)
	post := func(body string, chunked bool) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", "https://api.anthropic.com/v1/messages?beta=true", strings.NewReader(body))
		if chunked {
			req.ContentLength = -1 // sent without a length, as a stream
		}
		req.Header.Set("x-api-key", sur)
		req.Header.Set("anthropic-version", "2023-06-01")
		req.Header.Set("content-type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
		}
		resp.Body.Close()
		return resp, b.String()
	}
	body := `{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}],` +
		`"tools":[{"type":"web_search_20250305","name":"web_search","max_uses":2,"allowed_domains":["docs.python.org","evil.com"]}]}`
	for _, chunked := range []bool{false, true} {
		up.API.Reset()
		resp, stream := post(body, chunked)
		if resp.StatusCode != 200 || !strings.Contains(stream, "event: message_stop") {
			t.Fatalf("status %d, stream %q; want the SSE stream", resp.StatusCode, stream)
		}
		reqs := up.API.MessagesRequests()
		if len(reqs) != 1 {
			t.Fatalf("fake saw %d Messages requests; want 1", len(reqs))
		}
		tools := toolsOf(t, reqs[0].Body)
		if got := domainsOf(tools["web_search_20250305"]); !slices.Equal(got, []string{"docs.python.org"}) {
			t.Errorf("chunked=%v: fake got allowed_domains %v; want [docs.python.org]", chunked, got)
		}
		if reqs[0].APIKey() != real {
			t.Errorf("fake got key %q; want the real one (injected after the rewrite)", reqs[0].APIKey())
		}
	}
	up.API.Reset()
	resp, answer := post(strings.Replace(body, `"allowed_domains"`, `"blocked_domains"`, 1), false)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(answer, "blocked_domains is not supported") {
		t.Errorf("blocklist: %d %s; want 403 with the reason", resp.StatusCode, answer)
	}
	if n := len(up.API.Requests()); n != 0 {
		t.Errorf("fake reached %d times by a refused request", n)
	}
}
