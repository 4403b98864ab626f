package proxy

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airut/airut/internal/secrets"
	"github.com/airut/airut/internal/testkit"
	"github.com/airut/airut/internal/testkit/githubtest"
)

const githubAllowlist = `
url_prefixes:
  - host: api.github.com
    path: /graphql
    methods: [POST]
    graphql:
      queries: [viewer, repository, node, nodes, rateLimit]
      mutations: [addComment]
  - host: api.github.com
    path: /repos/acme/*
    methods: [GET]
  - host: github.com
    path: /acme/*
`

var (
	ghAppOnce sync.Once
	ghApp     *githubtest.App
)

// ghEnv is the proxy in front of a fake GitHub holding acme/app and
// acme/other, with a GitHub App credential for acme/app.
type ghEnv struct {
	px        *testProxy
	gh        *githubtest.Server
	surrogate string
	app       githubtest.Repo
}

func newGHEnv(t testing.TB, ttl time.Duration) *ghEnv {
	t.Helper()
	return newGHEnvWith(t, ttl, nil)
}

// ghOptions vary the environment: GitHub Enterprise Server, or a proxy
// that resolves and trusts GitHub differently from the defaults.
type ghOptions struct {
	enterprise bool // base_url https://ghe.example/api/v3
	noPin      bool // GitHub's names are not pinned (resolved by UpstreamDNS)
	noCA       bool // the upstream CA is not trusted
	dns        string
	echo       string // addr of an echoing upstream for echo.github.test, in the App's scope
	echoCA     []byte // its CA
}

func newGHEnvWith(t testing.TB, ttl time.Duration, o *ghOptions) *ghEnv {
	t.Helper()
	if o == nil {
		o = &ghOptions{}
	}
	ghAppOnce.Do(func() { ghApp = githubtest.NewApp(t) })
	app := githubtest.Repo{ID: 1296269, Owner: "acme", Name: "app"}
	gh := githubtest.New(t, ghApp, 42, app, githubtest.Repo{ID: 555, Owner: "acme", Name: "other"})
	if ttl > 0 {
		gh.TTL = ttl
	}
	gh.AddGitRepo(t, "acme", "app", testkit.GitRepo(t, map[string]string{"README": "hello\n"}))
	ca := testkit.NewTestCA(t)
	addr := net.JoinHostPort("127.0.0.1", gh.ServeTLS(t, ca.Leaf(t, "api.github.com", "github.com", "ghe.example")))
	m, err := secrets.NewMap(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cred := secrets.GitHubApp{
		AppID: ghApp.ID, PrivateKey: ghApp.KeyPEM, InstallationID: 42,
		Scopes: []string{"api.github.com", "github.com"}, Repositories: []string{"app"},
	}
	allow := githubAllowlist
	if o.echo != "" {
		cred.Scopes = append(cred.Scopes, "echo.github.test")
		allow += "  - host: echo.github.test\n"
	}
	if o.enterprise {
		gh.APIPrefix, gh.GraphQLPath = "/api/v3", "/api/graphql"
		cred.BaseURL, cred.Scopes = "https://ghe.example/api/v3", []string{"ghe.example"}
		allow = "domains: [ghe.example]\n"
	}
	if err := m.AddGitHubApps(map[string]secrets.GitHubApp{"GH_TOKEN": cred}); err != nil {
		t.Fatal(err)
	}
	sur, _ := m.Surrogate("GH_TOKEN")
	cfg := Config{
		Allowlist:    mustAllowlist(t, allow),
		Replacements: m.Replacements(),
		UpstreamCA:   ca.CertPEM,
		Resolve:      map[string]string{"api.github.com": addr, "github.com": addr, "ghe.example": addr},
		UpstreamDNS:  o.dns,
	}
	if o.echo != "" {
		cfg.Resolve["echo.github.test"] = o.echo
		cfg.UpstreamCA = append(append([]byte(nil), ca.CertPEM...), o.echoCA...)
	}
	if o.noPin {
		cfg.Resolve = nil
	}
	if o.noCA {
		cfg.UpstreamCA = nil
	}
	px := startProxy(t, cfg)
	return &ghEnv{px: px, gh: gh, surrogate: sur, app: app}
}

func (e *ghEnv) do(t testing.TB, c *http.Client, method, url, auth, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestGitHubAppThroughProxy(t *testing.T) {
	e := newGHEnv(t, 0)
	c := e.px.client(false)
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+e.surrogate))
	gql := func(q string) string { b, _ := jsonMarshal(map[string]any{"query": q}); return b }
	tests := []struct {
		name, method, url, auth, body string
		status                        int
		line                          string
		reached                       bool
	}{
		{"rest with the surrogate", "GET", "https://api.github.com/repos/acme/app", "token " + e.surrogate, "", 200,
			"ALLOWED GET https://api.github.com/repos/acme/app -> 200 [token: github-app]", true},
		{"git's basic pair", "GET", "https://github.com/acme/app.git/info/refs?service=git-upload-pack", basic, "", 200,
			"ALLOWED GET https://github.com/acme/app.git/info/refs?service=git-upload-pack -> 200 [token: github-app]", true},
		{"graphql query allowed", "POST", "https://api.github.com/graphql", "bearer " + e.surrogate,
			gql(`{ repository(owner: "acme", name: "app") { issues(first: 1) { totalCount } } }`), 200,
			"ALLOWED POST https://api.github.com/graphql -> 200 [token: github-app]", true},
		{"graphql mutation not listed", "POST", "https://api.github.com/graphql", "bearer " + e.surrogate,
			gql(`mutation { deleteRepository(input: {repositoryId: "R_kgDOABPHjQ"}) { clientMutationId } }`), 403,
			"BLOCKED POST https://api.github.com/graphql -> 403", false},
		{"graphql batch", "POST", "https://api.github.com/graphql", "bearer " + e.surrogate,
			`[` + gql(`{ viewer { login } }`) + `]`, 403, "BLOCKED POST https://api.github.com/graphql -> 403", false},
		{"graphql repository out of scope", "POST", "https://api.github.com/graphql", "bearer " + e.surrogate,
			gql(`{ repository(owner: "acme", name: "other") { name } }`), 403, "BLOCKED POST https://api.github.com/graphql -> 403", false},
		{"graphql node out of scope", "POST", "https://api.github.com/graphql", "bearer " + e.surrogate,
			gql(`{ node(id: "` + githubtest.NodeID("I", 0, 555, 1) + `") { id } }`), 403, "BLOCKED POST https://api.github.com/graphql -> 403", false},
		{"graphql without the surrogate is not scoped, and gets no token", "POST", "https://api.github.com/graphql", "",
			gql(`{ repository(owner: "acme", name: "other") { name } }`), 401, "ALLOWED POST https://api.github.com/graphql -> 401", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.gh.Calls())
			e.px.log.take()
			status, body := e.do(t, c, tt.method, tt.url, tt.auth, tt.body)
			if status != tt.status {
				t.Errorf("status %d (%s); want %d", status, body, tt.status)
			}
			if lines := e.px.log.take(); len(lines) != 1 || lines[0] != tt.line {
				t.Errorf("log %q; want %q", lines, tt.line)
			}
			calls := e.gh.Calls()[before:]
			if tt.reached != (len(calls) == 1) {
				t.Fatalf("upstream calls %+v; want reached=%v", calls, tt.reached)
			}
			if tt.reached && tt.auth != "" {
				if !calls[0].Valid || calls[0].Token == e.surrogate {
					t.Errorf("upstream got token %q (valid %v); want a minted one", calls[0].Token, calls[0].Valid)
				}
			}
			if status == 403 {
				msg := decodeBlocked(t, body).Message
				if !strings.Contains(msg, "graphql") && !strings.Contains(msg, "batched") {
					t.Errorf("403 message %q; want the GraphQL reason", msg)
				}
			}
		})
	}
	if n := len(e.gh.Mints()); n != 1 {
		t.Errorf("%d mints; want 1", n)
	}
}

func TestGitHubAppMintFailureAnswers502(t *testing.T) {
	e := newGHEnv(t, 0)
	e.gh.FailMint(func(int) (int, string) { return http.StatusServiceUnavailable, "try later" })
	c := e.px.client(false)
	for _, tc := range []struct{ name, method, url, body string }{
		{"rest", "GET", "https://api.github.com/repos/acme/app", ""},
		// The scope check needs the token's repositories: it fails the same way.
		{"graphql", "POST", "https://api.github.com/graphql", `{"query":"{ viewer { login } }"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := e.do(t, c, tc.method, tc.url, "token "+e.surrogate, tc.body)
			var ans map[string]string
			_ = json.Unmarshal([]byte(body), &ans)
			if status != http.StatusBadGateway || ans["error"] != "credential_unavailable" || !strings.Contains(ans["message"], "503") || !strings.Contains(ans["message"], "try later") {
				t.Errorf("got %d %s; want 502 credential_unavailable with GitHub's reason", status, body)
			}
			lines := e.px.log.take()
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "ERROR "+tc.method+" "+tc.url+" -> ") {
				t.Errorf("log %q; want one ERROR line", lines)
			}
		})
	}
	if n := len(e.gh.Calls()); n != 0 {
		t.Errorf("upstream reached %d times; want never without a token", n)
	}
}

// TestGitHubEnterprise: with base_url https://HOST/api/v3 the token comes
// from /api/v3/app/… and GraphQL at /api/graphql is scoped.
func TestGitHubEnterprise(t *testing.T) {
	e := newGHEnvWith(t, 0, &ghOptions{enterprise: true})
	c := e.px.client(false)
	q := func(owner, name string) string {
		b, _ := jsonMarshal(map[string]any{"query": "{ repository(owner: \"" + owner + "\", name: \"" + name + "\") { name } }"})
		return b
	}
	if st, body := e.do(t, c, "POST", "https://ghe.example/api/graphql", "token "+e.surrogate, q("acme", "app")); st != 200 {
		t.Errorf("in scope: %d %s", st, body)
	}
	if st, body := e.do(t, c, "POST", "https://ghe.example/api/graphql", "token "+e.surrogate, q("acme", "other")); st != 403 || !strings.Contains(body, "acme/other") {
		t.Errorf("out of scope: %d %s; want 403", st, body)
	}
	if st, _ := e.do(t, c, "GET", "https://ghe.example/api/v3/repos/acme/app", "token "+e.surrogate, ""); st != 200 {
		t.Errorf("REST: %d", st)
	}
	if m := e.gh.Mints(); len(m) != 1 || m[0].Status != 201 {
		t.Errorf("mints %+v; want one at the Enterprise API", m)
	}
}

// TestGitHubAppMintResolvesLikeTheAgent: the proxy's own token request
// goes through the same resolver, address guard and trust as the agent's.
func TestGitHubAppMintResolvesLikeTheAgent(t *testing.T) {
	dns := testkit.NewDNSServer(t, "127.0.0.1", map[string]string{"api.github.com": "127.0.0.1"})
	for _, tc := range []struct {
		name string
		o    ghOptions
		want string
	}{
		{"resolved to loopback: refused by the address guard", ghOptions{noPin: true, dns: dns.Addr}, "address denied"},
		{"upstream CA not trusted", ghOptions{noCA: true}, "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newGHEnvWith(t, 0, &tc.o)
			st, body := e.do(t, e.px.client(false), "GET", "https://api.github.com/repos/acme/app", "token "+e.surrogate, "")
			if st != http.StatusBadGateway || !strings.Contains(body, "credential_unavailable") || !strings.Contains(body, tc.want) {
				t.Errorf("got %d %s; want 502 credential_unavailable with %q", st, body, tc.want)
			}
			if n := len(e.gh.Mints()); n != 0 {
				t.Errorf("%d mints reached the fake; want none", n)
			}
		})
	}
}

// TestGitHubAppTokenRedacted: a minted token echoed by a scoped upstream
// (headers, body, base64) reaches the agent as the surrogate only.
func TestGitHubAppTokenRedacted(t *testing.T) {
	ca := testkit.NewTestCA(t)
	up := testkit.NewLenient(t, ca, "127.0.0.1", "echo.github.test")
	e := newGHEnvWith(t, 0, &ghOptions{echo: up.TLSAddr, echoCA: ca.CertPEM})
	for _, mode := range []string{"raw", "b64", "json"} {
		req, _ := http.NewRequest("GET", "https://echo.github.test/reflect/"+mode, nil)
		req.Header.Set("Authorization", "token "+e.surrogate)
		resp, err := e.px.client(false).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var hdr strings.Builder
		_ = resp.Header.Write(&hdr)
		for _, tok := range e.gh.Tokens() {
			for _, form := range []string{tok.Value, base64.StdEncoding.EncodeToString([]byte("token " + tok.Value))} {
				if strings.Contains(string(body), form) || strings.Contains(hdr.String(), form) {
					t.Errorf("%s: the minted token reached the agent", mode)
				}
			}
		}
		if !strings.Contains(hdr.String(), e.surrogate) {
			t.Errorf("%s: response headers %q; want the surrogate in place of the token", mode, hdr.String())
		}
		lines := e.px.log.take()
		if len(lines) != 1 || !strings.Contains(lines[0], "[token: github-app]") || !strings.Contains(lines[0], "[redacted: ") {
			t.Errorf("%s: log %q; want the token and redaction tags", mode, lines)
		}
	}
	if len(e.gh.Tokens()) != 1 {
		t.Fatalf("%d tokens minted; want 1", len(e.gh.Tokens()))
	}
}

// TestGitHubAppRefreshUnderLoad runs requests without pause while tokens
// of four seconds are refreshed, with each refresh held in flight until
// five requests have reached the upstream meanwhile. From the fake's own
// records: no request carried an expired or unknown token, and requests
// kept arriving during every refresh (none waited for it).
func TestGitHubAppRefreshUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about ten seconds")
	}
	e := newGHEnv(t, 4*time.Second)
	const during = 5
	var heldTooLong atomic.Int32
	e.gh.OnMint(func(n int) {
		if n == 1 {
			return
		}
		start := time.Now()
		deadline := start.Add(20 * time.Second)
		for time.Now().Before(deadline) {
			k := 0
			for _, c := range e.gh.Calls() {
				if c.MintInFlight && !c.Time.Before(start) {
					k++
				}
			}
			if k >= during {
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
		heldTooLong.Add(1)
	})
	c := e.px.client(false)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bad atomic.Int32
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if status, _ := e.do(t, c, "GET", "https://api.github.com/repos/acme/app", "token "+e.surrogate, ""); status != 200 {
					bad.Add(1)
				}
			}
		}()
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if m := e.gh.Mints(); len(m) >= 3 && !m[2].End.IsZero() {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // requests with the third token
	close(stop)
	wg.Wait()
	mints, calls := e.gh.Mints(), e.gh.Calls()
	if len(mints) < 3 {
		t.Fatalf("%d mints in 60s; want 3 (refreshes before expiry)", len(mints))
	}
	if n := heldTooLong.Load(); n > 0 {
		t.Errorf("%d refreshes saw fewer than %d requests while in flight: requests waited for them", n, during)
	}
	tokens := map[string]bool{}
	for _, c := range calls {
		tokens[c.Token] = true
		if !c.Valid {
			t.Errorf("request at %s carried an invalid or expired token (mint in flight: %v)", c.Time.Format(time.StampMicro), c.MintInFlight)
		}
	}
	for i, m := range mints[1:3] {
		k := 0
		for _, c := range calls {
			if !c.Time.Before(m.Start) && !c.Time.After(m.End) {
				k++
			}
		}
		if k < during {
			t.Errorf("refresh %d: %d requests reached the upstream while it was in flight; want at least %d", i+2, k, during)
		}
	}
	if len(tokens) < 3 || bad.Load() > 0 {
		t.Errorf("%d distinct tokens used, %d failed requests; want 3 tokens and no failure", len(tokens), bad.Load())
	}
	t.Logf("%d requests, %d mints", len(calls), len(mints))
}
