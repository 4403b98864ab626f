package proxy

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/airut/airut/internal/secrets"
	"github.com/google/go-cmp/cmp"
)

const testAllowlist = `
domains:
  - api.example.com
  - other.example.com
  - plain.example.com
  - "*.wild.example"
  - "*.ssrf.test"
url_prefixes:
  - host: repo.example.com
    path: /repos/acme/app*
    methods: [GET, POST]
  - host: held.example.com
  - host: 127.0.0.1
  - host: 10.1.2.3
`

// env is one proxy with a TLS upstream and a plain-HTTP upstream behind
// pinned names.
type env struct {
	px      *testProxy
	tlsUp   *upstream
	plainUp *upstream
	token   string // the surrogate the container would see
	secrets *secrets.Map
	upCA    *testCA
}

const realToken = "ghp_RealSecretToken0123456789abcdefABCD"

func newEnv(t testing.TB, mod func(*Config)) *env {
	t.Helper()
	ca := newTestCA(t)
	tlsUp := newUpstream(t, ca, "api.example.com", "other.example.com", "repo.example.com", "held.example.com", "x.wild.example", "127.0.0.1")
	plainUp := newUpstream(t, nil)
	m, err := secrets.NewMap(map[string]secrets.Masked{
		"GH_TOKEN": {Value: realToken, Scopes: []string{"api.example.com"}, Headers: []string{"Authorization"}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Allowlist:    mustAllowlist(t, testAllowlist),
		Replacements: m.Replacements(),
		UpstreamCA:   ca.pem,
		Resolve: map[string]string{
			"api.example.com":   tlsUp.addr,
			"other.example.com": tlsUp.addr,
			"repo.example.com":  tlsUp.addr,
			"held.example.com":  tlsUp.addr,
			"x.wild.example":    tlsUp.addr,
			"127.0.0.1":         tlsUp.addr,
			"plain.example.com": plainUp.addr,
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	token, _ := m.Surrogate("GH_TOKEN")
	return &env{px: startProxy(t, cfg), tlsUp: tlsUp, plainUp: plainUp, token: token, secrets: m, upCA: ca}
}

func ptr(s string) *string { return &s }

func decodeBlocked(t *testing.T, body string) blockedBody {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	var b blockedBody
	if err := dec.Decode(&b); err != nil {
		t.Fatalf("403 body %q is not the blocked JSON: %v", body, err)
	}
	return b
}

// TestRequests sends hand-written requests and checks the status, the
// network log and whether the upstream was reached.
func TestRequests(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name     string
		sni      *string // nil: plain HTTP
		request  string
		status   int
		lines    []string
		upstream string // RequestURI seen upstream; "" = not reached
	}{
		{
			name:     "allowed https get",
			sni:      ptr("api.example.com"),
			request:  "GET /repos/acme/app HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
			status:   200,
			lines:    []string{"ALLOWED GET https://api.example.com/repos/acme/app -> 200"},
			upstream: "/repos/acme/app",
		},
		{
			name:     "allowed plain http",
			request:  "GET /simple/ HTTP/1.1\r\nHost: plain.example.com\r\n\r\n",
			status:   200,
			lines:    []string{"ALLOWED GET http://plain.example.com/simple/ -> 200"},
			upstream: "/simple/",
		},
		{
			name:    "blocked host",
			sni:     ptr("evil.com"),
			request: "POST /upload HTTP/1.1\r\nHost: evil.com\r\nContent-Length: 3\r\n\r\nabc",
			status:  403,
			lines:   []string{"BLOCKED POST https://evil.com/upload -> 403"},
		},
		{
			name:    "blocked plain http host",
			request: "GET / HTTP/1.1\r\nHost: evil.com\r\n\r\n",
			status:  403,
			lines:   []string{"BLOCKED GET http://evil.com/ -> 403"},
		},
		{
			name:     "url prefix allows path and method",
			sni:      ptr("repo.example.com"),
			request:  "POST /repos/acme/app/issues HTTP/1.1\r\nHost: repo.example.com\r\nContent-Length: 2\r\n\r\n{}",
			status:   200,
			lines:    []string{"ALLOWED POST https://repo.example.com/repos/acme/app/issues -> 200"},
			upstream: "/repos/acme/app/issues",
		},
		{
			name:    "method not allowed",
			sni:     ptr("repo.example.com"),
			request: "DELETE /repos/acme/app HTTP/1.1\r\nHost: repo.example.com\r\n\r\n",
			status:  403,
			lines:   []string{"BLOCKED DELETE https://repo.example.com/repos/acme/app -> 403"},
		},
		{
			name:    "path not allowed",
			sni:     ptr("repo.example.com"),
			request: "GET /repos/acme/other HTTP/1.1\r\nHost: repo.example.com\r\n\r\n",
			status:  403,
			lines:   []string{"BLOCKED GET https://repo.example.com/repos/acme/other -> 403"},
		},
		{
			name:    "CONNECT refused",
			request: "CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n",
			status:  403,
			lines:   []string{"BLOCKED CONNECT api.example.com:443 -> 403"},
		},
		{
			name:    "CONNECT refused over TLS",
			sni:     ptr("api.example.com"),
			request: "CONNECT evil.com:443 HTTP/1.1\r\nHost: evil.com:443\r\n\r\n",
			status:  403,
			lines:   []string{"BLOCKED CONNECT evil.com:443 -> 403"},
		},
		{
			name:    "Host differs from SNI",
			sni:     ptr("api.example.com"),
			request: "GET / HTTP/1.1\r\nHost: evil.com\r\n\r\n",
			status:  403,
			lines:   []string{"BLOCKED GET https://api.example.com/ -> 403"},
		},
		{
			name:    "allowed Host behind blocked SNI",
			sni:     ptr("evil.com"),
			request: "GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
			status:  403,
			lines:   []string{"BLOCKED GET https://evil.com/ -> 403"},
		},
		{
			name:    "absolute-form URL differs from Host",
			request: "GET http://evil.com/x HTTP/1.1\r\nHost: plain.example.com\r\n\r\n",
			status:  403,
			lines:   []string{"BLOCKED GET http://evil.com/x -> 403"},
		},
		{
			name:    "absolute-form over TLS",
			sni:     ptr("api.example.com"),
			request: "GET https://api.example.com/x HTTP/1.1\r\nHost: evil.com\r\n\r\n",
			status:  403,
			lines:   []string{"BLOCKED GET https://api.example.com/x -> 403"},
		},
		{
			name:    "TRACE refused on an allowed host",
			sni:     ptr("api.example.com"),
			request: "TRACE / HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
			status:  403,
			lines:   []string{"BLOCKED TRACE https://api.example.com/ -> 403"},
		},
		{
			name:    "TRACK refused on an allowed host",
			request: "TRACK / HTTP/1.1\r\nHost: plain.example.com\r\n\r\n",
			status:  403,
			lines:   []string{"BLOCKED TRACK http://plain.example.com/ -> 403"},
		},
		{
			name:    "dot-dot segment",
			sni:     ptr("repo.example.com"),
			request: "GET /repos/acme/app/../../other HTTP/1.1\r\nHost: repo.example.com\r\n\r\n",
			status:  403,
			lines:   []string{"BLOCKED GET https://repo.example.com/repos/acme/app/../../other -> 403"},
		},
		{
			name:    "encoded dot-dot segment",
			sni:     ptr("repo.example.com"),
			request: "GET /repos/acme/app/%2e%2E/x HTTP/1.1\r\nHost: repo.example.com\r\n\r\n",
			status:  403,
			lines:   []string{"BLOCKED GET https://repo.example.com/repos/acme/app/%2e%2E/x -> 403"},
		},
		{
			name:    "trailing dot-dot",
			sni:     ptr("repo.example.com"),
			request: "GET /repos/acme/app/.. HTTP/1.1\r\nHost: repo.example.com\r\n\r\n",
			status:  403,
			lines:   []string{"BLOCKED GET https://repo.example.com/repos/acme/app/.. -> 403"},
		},
		{
			name:    "encoded backslash",
			sni:     ptr("repo.example.com"),
			request: "GET /repos/acme/app%5c..%5cx HTTP/1.1\r\nHost: repo.example.com\r\n\r\n",
			status:  403,
			lines:   []string{"BLOCKED GET https://repo.example.com/repos/acme/app%5c..%5cx -> 403"},
		},
		{
			name:    "raw backslash",
			sni:     ptr("repo.example.com"),
			request: "GET /repos/acme/app\\x HTTP/1.1\r\nHost: repo.example.com\r\n\r\n",
			status:  403,
			lines:   []string{"BLOCKED GET https://repo.example.com/repos/acme/app\\x -> 403"},
		},
		{
			name:    "encoded NUL",
			sni:     ptr("repo.example.com"),
			request: "GET /repos/acme/app%00.json HTTP/1.1\r\nHost: repo.example.com\r\n\r\n",
			status:  403,
			lines:   []string{"BLOCKED GET https://repo.example.com/repos/acme/app%00.json -> 403"},
		},
		{
			name:    "invalid percent in query",
			sni:     ptr("repo.example.com"),
			request: "GET /repos/acme/app?q=%zz HTTP/1.1\r\nHost: repo.example.com\r\n\r\n",
			status:  403,
			lines:   []string{"BLOCKED GET https://repo.example.com/repos/acme/app?q=%zz -> 403"},
		},
		{
			// net/http rejects this before the handler: blocked all the same.
			name:    "invalid percent in path",
			sni:     ptr("repo.example.com"),
			request: "GET /repos/acme/app%zz HTTP/1.1\r\nHost: repo.example.com\r\n\r\n",
			status:  400,
		},
		{
			name:     "dot-dot prefix in a name is fine",
			sni:      ptr("repo.example.com"),
			request:  "GET /repos/acme/app/..hidden HTTP/1.1\r\nHost: repo.example.com\r\n\r\n",
			status:   200,
			lines:    []string{"ALLOWED GET https://repo.example.com/repos/acme/app/..hidden -> 200"},
			upstream: "/repos/acme/app/..hidden",
		},
		{
			name:     "original encoding goes upstream",
			sni:      ptr("repo.example.com"),
			request:  "GET /repos/acme/app%2Fsub%7e?q=%41%2b&x HTTP/1.1\r\nHost: repo.example.com\r\n\r\n",
			status:   200,
			lines:    []string{"ALLOWED GET https://repo.example.com/repos/acme/app%2Fsub%7e?q=%41%2b&x -> 200"},
			upstream: "/repos/acme/app%2Fsub%7e?q=%41%2b&x",
		},
		{
			name:     "encoded path matches its decoding",
			sni:      ptr("repo.example.com"),
			request:  "GET /repos/%61cme/app HTTP/1.1\r\nHost: repo.example.com\r\n\r\n",
			status:   200,
			lines:    []string{"ALLOWED GET https://repo.example.com/repos/%61cme/app -> 200"},
			upstream: "/repos/%61cme/app",
		},
		{
			name:     "double slash path kept",
			sni:      ptr("api.example.com"),
			request:  "GET //x/y HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
			status:   200,
			lines:    []string{"ALLOWED GET https://api.example.com//x/y -> 200"},
			upstream: "//x/y",
		},
		{
			name:     "upper case and trailing dot host",
			request:  "GET / HTTP/1.1\r\nHost: PLAIN.Example.COM.\r\n\r\n",
			status:   200,
			lines:    []string{"ALLOWED GET http://plain.example.com/ -> 200"},
			upstream: "/",
		},
		{
			name:     "trailing dot SNI and Host with port",
			sni:      ptr("api.example.com."),
			request:  "GET / HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n",
			status:   200,
			lines:    []string{"ALLOWED GET https://api.example.com/ -> 200"},
			upstream: "/",
		},
		{
			name:     "wildcard domain",
			sni:      ptr("x.wild.example"),
			request:  "GET / HTTP/1.1\r\nHost: x.wild.example\r\n\r\n",
			status:   200,
			lines:    []string{"ALLOWED GET https://x.wild.example/ -> 200"},
			upstream: "/",
		},
		{
			name:    "wildcard does not match the bare domain",
			sni:     ptr("wild.example"),
			request: "GET / HTTP/1.1\r\nHost: wild.example\r\n\r\n",
			status:  403,
			lines:   []string{"BLOCKED GET https://wild.example/ -> 403"},
		},
		{
			name:    "IP literal not listed",
			request: "GET / HTTP/1.1\r\nHost: 93.184.216.34\r\n\r\n",
			status:  403,
			lines:   []string{"BLOCKED GET http://93.184.216.34/ -> 403"},
		},
		{
			// No SNI: the client dialled an IP literal (the proxy's).
			name:     "IP literal listed and pinned over TLS",
			sni:      ptr("127.0.0.1"),
			request:  "GET /ip HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
			status:   200,
			lines:    []string{"ALLOWED GET https://127.0.0.1/ip -> 200"},
			upstream: "/ip",
		},
		{
			name:    "no SNI with a host name",
			sni:     ptr("127.0.0.1"),
			request: "GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
			status:  403,
			lines:   []string{"BLOCKED GET https://api.example.com/ -> 403"},
		},
		{
			name:    "IP literal listed but private and not pinned",
			request: "GET / HTTP/1.1\r\nHost: 10.1.2.3\r\n\r\n",
			status:  403,
			lines:   []string{"BLOCKED GET http://10.1.2.3/ -> 403"},
		},
		{
			name:    "HTTP/1.0 without Host",
			request: "GET / HTTP/1.0\r\n\r\n",
			status:  403,
			lines:   []string{"BLOCKED GET http:/// -> 403"},
		},
		{
			name:     "hop-by-hop headers stripped",
			sni:      ptr("api.example.com"),
			request:  "GET /hop HTTP/1.1\r\nHost: api.example.com\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic eDp5\r\nX-Kept: 1\r\n\r\n",
			status:   200,
			lines:    []string{"ALLOWED GET https://api.example.com/hop -> 200"},
			upstream: "/hop",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.tlsUp.take()
			e.plainUp.take()
			e.px.log.take()
			resp, body := e.px.raw(t, tt.sni, tt.request)
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d; want %d (body %q)", resp.StatusCode, tt.status, body)
			}
			if diff := cmp.Diff(tt.lines, e.px.log.take()); diff != "" {
				t.Errorf("network log mismatch (-want +got):\n%s", diff)
			}
			var got string
			for _, s := range append(e.tlsUp.take(), e.plainUp.take()...) {
				got += s.RequestURI
				if s.Host != strings.ToLower(s.Host) || strings.HasSuffix(s.Host, ".") || strings.Contains(s.Host, ":") {
					t.Errorf("upstream Host = %q; want the normalised name", s.Host)
				}
				if s.Header.Get("X-Hop") != "" || s.Header.Get("Keep-Alive") != "" || s.Header.Get("Proxy-Authorization") != "" {
					t.Errorf("hop-by-hop header reached upstream: %v", s.Header)
				}
			}
			if got != tt.upstream {
				t.Errorf("upstream saw %q; want %q", got, tt.upstream)
			}
			if resp.StatusCode == 403 {
				b := decodeBlocked(t, body)
				if b.Error != "blocked_by_network_allowlist" || b.Method == "" || b.Message == "" {
					t.Errorf("403 body = %+v; want error, method and message set", b)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q; want application/json", ct)
				}
			}
			if resp.StatusCode == 200 && resp.Header.Get("X-Resp-Hop") != "" {
				t.Errorf("hop-by-hop response header X-Resp-Hop reached the client")
			}
		})
	}
}

func TestBlockedBody(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name    string
		sni     string
		request string
		want    blockedBody
		message string
	}{
		{
			name:    "host",
			sni:     "evil.com",
			request: "POST /upload HTTP/1.1\r\nHost: evil.com\r\nContent-Length: 0\r\n\r\n",
			want:    blockedBody{Error: "blocked_by_network_allowlist", Host: "evil.com", Path: "/upload", Method: "POST"},
			message: "Host/path evil.com/upload is not allowed by the network allowlist. To request access, open a pull request that changes .airut/network-allowlist.yaml.",
		},
		{
			name:    "method",
			sni:     "repo.example.com",
			request: "DELETE /repos/acme/app?x=%41 HTTP/1.1\r\nHost: repo.example.com\r\n\r\n",
			want:    blockedBody{Error: "blocked_by_network_allowlist", Host: "repo.example.com", Path: "/repos/acme/app?x=A", Method: "DELETE"},
			message: "Method DELETE is not allowed for repo.example.com/repos/acme/app?x=A by the network allowlist. To request access, open a pull request that changes .airut/network-allowlist.yaml.",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.px.raw(t, &tt.sni, tt.request)
			if resp.StatusCode != 403 {
				t.Fatalf("status = %d; want 403", resp.StatusCode)
			}
			got := decodeBlocked(t, body)
			if got.Message != tt.message {
				t.Errorf("message = %q; want %q", got.Message, tt.message)
			}
			got.Message = ""
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("body mismatch (-want +got):\n%s", diff)
			}
			var keys map[string]any
			_ = json.Unmarshal([]byte(body), &keys)
			if len(keys) != 5 {
				t.Errorf("body has %d keys; want exactly error, host, path, method, message", len(keys))
			}
		})
	}
}

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func TestCredentials(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name   string
		url    string
		header http.Header
		want   []string // Authorization values seen upstream
		lines  []string
	}{
		{
			name:   "bearer replaced on scoped host",
			url:    "https://api.example.com/user",
			header: http.Header{"Authorization": {"Bearer " + e.token}},
			want:   []string{"Bearer " + realToken},
			lines:  []string{"ALLOWED GET https://api.example.com/user -> 200 [masked: 1]"},
		},
		{
			name:   "basic as git sends it",
			url:    "https://api.example.com/acme/app.git/info/refs?service=git-upload-pack",
			header: http.Header{"Authorization": {basicAuth("x-access-token", e.token)}},
			want:   []string{basicAuth("x-access-token", realToken)},
			lines:  []string{"ALLOWED GET https://api.example.com/acme/app.git/info/refs?service=git-upload-pack -> 200 [masked: 1]"},
		},
		{
			name:   "surrogate untouched out of scope",
			url:    "https://other.example.com/user",
			header: http.Header{"Authorization": {"Bearer " + e.token}},
			want:   []string{"Bearer " + e.token},
			lines:  []string{"ALLOWED GET https://other.example.com/user -> 200"},
		},
		{
			name:   "foreign token stripped",
			url:    "https://api.example.com/user",
			header: http.Header{"Authorization": {"Bearer ghp_AgentsOwnToken000000000000000000000"}},
			want:   nil,
			lines: []string{
				"STRIPPED Authorization on api.example.com",
				"ALLOWED GET https://api.example.com/user -> 200",
			},
		},
		{
			name:   "duplicate authorization collapsed",
			url:    "https://api.example.com/user",
			header: http.Header{"Authorization": {"Bearer " + e.token, "Bearer ghp_AgentsOwnToken000000000000000000000"}},
			want:   []string{"Bearer " + realToken},
			lines:  []string{"ALLOWED GET https://api.example.com/user -> 200 [masked: 1] [dropped: 1]"},
		},
	}
	c := e.px.client(false)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.tlsUp.take()
			e.px.log.take()
			req, _ := http.NewRequest("GET", tt.url, nil)
			req.Header = tt.header
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status = %d; want 200", resp.StatusCode)
			}
			reqs := e.tlsUp.take()
			if len(reqs) != 1 {
				t.Fatalf("upstream saw %d requests; want 1", len(reqs))
			}
			if diff := cmp.Diff(tt.want, reqs[0].Header["Authorization"]); diff != "" {
				t.Errorf("Authorization upstream mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.lines, e.px.log.take()); diff != "" {
				t.Errorf("network log mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHeldBody checks the body cap with a filter that needs the body, as
// the GraphQL and SigV4 checks will.
func TestHeldBody(t *testing.T) {
	var filterSaw []byte
	e := newEnv(t, func(c *Config) {
		c.MaxBody = 1024
		c.Filters = []Filter{func(r *Request) error {
			if r.Host != "held.example.com" {
				return nil
			}
			b, err := r.Body()
			filterSaw = b
			if err != nil {
				return err
			}
			if strings.Contains(string(b), "forbidden") {
				return errors.New("operation not allowed")
			}
			return nil
		}}
	})
	tests := []struct {
		name     string
		host     string
		body     string
		chunked  bool
		status   int
		line     string
		upstream int // body length seen upstream; -1 = not reached
		message  string
	}{
		{"held under cap", "held.example.com", strings.Repeat("a", 1000), false, 200, "ALLOWED POST https://held.example.com/q -> 200", 1000, ""},
		{"held at cap", "held.example.com", strings.Repeat("a", 1024), false, 200, "ALLOWED POST https://held.example.com/q -> 200", 1024, ""},
		{"held over cap", "held.example.com", strings.Repeat("a", 1025), false, 403, "BLOCKED POST https://held.example.com/q -> 403", -1, "request body too large: 1025 bytes, limit 1024"},
		{"held over cap chunked", "held.example.com", strings.Repeat("a", 4096), true, 403, "BLOCKED POST https://held.example.com/q -> 403", -1, "request body too large: more than 1024 bytes"},
		{"held under cap chunked", "held.example.com", strings.Repeat("a", 100), true, 200, "ALLOWED POST https://held.example.com/q -> 200", 100, ""},
		{"filter blocks", "held.example.com", "forbidden", false, 403, "BLOCKED POST https://held.example.com/q -> 403", -1, "Request blocked by the network sandbox: operation not allowed."},
		{"not held streams past cap", "api.example.com", strings.Repeat("a", 4096), false, 200, "ALLOWED POST https://api.example.com/q -> 200", 4096, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.tlsUp.take()
			e.px.log.take()
			var framing string
			if tt.chunked {
				framing = "Transfer-Encoding: chunked\r\n\r\n" + strings.ToLower(strconvHex(len(tt.body))) + "\r\n" + tt.body + "\r\n0\r\n\r\n"
			} else {
				framing = "Content-Length: " + itoa(len(tt.body)) + "\r\n\r\n" + tt.body
			}
			resp, body := e.px.raw(t, &tt.host, "POST /q HTTP/1.1\r\nHost: "+tt.host+"\r\n"+framing)
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d; want %d (%s)", resp.StatusCode, tt.status, body)
			}
			if resp.StatusCode == 403 && !strings.Contains(decodeBlocked(t, body).Message, tt.message) {
				t.Errorf("message = %q; want it to contain %q", decodeBlocked(t, body).Message, tt.message)
			}
			if diff := cmp.Diff([]string{tt.line}, e.px.log.take()); diff != "" {
				t.Errorf("network log mismatch (-want +got):\n%s", diff)
			}
			reqs := e.tlsUp.take()
			switch {
			case tt.upstream < 0 && len(reqs) != 0:
				t.Errorf("upstream reached; want blocked")
			case tt.upstream >= 0 && (len(reqs) != 1 || reqs[0].BodyLen != tt.upstream):
				t.Errorf("upstream saw %+v; want one request with a %d-byte body", reqs, tt.upstream)
			}
		})
	}
	if string(filterSaw) != "forbidden" {
		t.Errorf("last body the filter saw = %q; want %q", filterSaw, "forbidden")
	}
}

// TestGraphQLRuleChecker: a graphql-restricted rule is never an
// unrestricted one: without a configured checker the built-in one runs
// (and refuses a body without a query), and a configured one is consulted.
func TestGraphQLRuleChecker(t *testing.T) {
	const al = `
url_prefixes:
  - host: api.example.com
    path: /graphql
    methods: [POST]
    graphql:
      queries: [viewer]
`
	for _, tc := range []struct {
		name   string
		filter Filter
		status int
	}{
		{"default checker blocks", nil, 403},
		{"checker consulted", func(r *Request) error {
			if r.Decision.GraphQL == nil {
				return errors.New("no graphql rules passed")
			}
			return nil
		}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) {
				c.Allowlist = mustAllowlist(t, al)
				c.GraphQL = tc.filter
			})
			resp, body := e.px.raw(t, ptr("api.example.com"), "POST /graphql HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 2\r\n\r\n{}")
			if resp.StatusCode != tc.status {
				t.Errorf("status = %d; want %d (%s)", resp.StatusCode, tc.status, body)
			}
		})
	}
}
