package secrets

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airut/airut/internal/testkit"
	"github.com/airut/airut/internal/testkit/githubtest"
)

// ghEnv is a fake GitHub behind TLS, reached by every host name through
// a transport like the proxy's (pinned address, private CA).
type ghEnv struct {
	gh   *githubtest.Server
	app  *githubtest.App
	repo githubtest.Repo
	env  Env
}

var (
	appOnce sync.Once
	theApp  *githubtest.App
)

// testApp is one App key for the whole package: RSA key generation is
// slow.
func testApp(t *testing.T) *githubtest.App {
	appOnce.Do(func() { theApp = githubtest.NewApp(t) })
	return theApp
}

func newGHEnv(t *testing.T, apiPrefix string) *ghEnv {
	t.Helper()
	app := testApp(t)
	repo := githubtest.Repo{ID: 1296269, Owner: "acme", Name: "app"}
	gh := githubtest.New(t, app, 42, repo, githubtest.Repo{ID: 555, Owner: "acme", Name: "other"})
	gh.APIPrefix = apiPrefix
	if apiPrefix != "" {
		gh.GraphQLPath = "/api/graphql"
	}
	ca := testkit.NewTestCA(t)
	port := gh.ServeTLS(t, ca.Leaf(t, "api.github.com", "github.com", "ghe.example"))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM)
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, "127.0.0.1:"+port)
		},
		TLSClientConfig: &tls.Config{RootCAs: roots},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &ghEnv{gh: gh, app: app, repo: repo, env: Env{Transport: tr}}
}

func (e *ghEnv) githubApp(mod func(*GitHubApp)) GitHubApp {
	g := GitHubApp{AppID: e.app.ID, PrivateKey: e.app.KeyPEM, InstallationID: 42,
		Scopes: []string{"api.github.com", "github.com"}, Repositories: []string{"app"},
		Permissions: map[string]string{"contents": "write"}}
	if mod != nil {
		mod(&g)
	}
	return g
}

// injector builds the proxy's injector for one App (and masked secrets).
func (e *ghEnv) injector(t *testing.T, g GitHubApp, masked map[string]Masked) (*maskedInjector, *Map) {
	t.Helper()
	m, err := NewMap(masked, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddGitHubApps(map[string]GitHubApp{"GH_TOKEN": g}); err != nil {
		t.Fatal(err)
	}
	injs := m.Replacements().Injectors(e.env)
	if len(injs) != 1 {
		t.Fatalf("Injectors = %d; want 1", len(injs))
	}
	inj := injs[0].(*maskedInjector)
	t.Cleanup(func() { _ = inj.Close() })
	return inj, m
}

func request(t *testing.T, rawURL string, auth ...string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(rawURL)
	r.Host = u.Hostname()
	for _, a := range auth {
		r.Header.Add("Authorization", a)
	}
	return r
}

var surrogateRE = regexp.MustCompile(`^ghs_[A-Za-z0-9]{36}$`)

func TestGitHubAppSurrogateAndEnv(t *testing.T) {
	e := newGHEnv(t, "")
	m, err := NewMap(map[string]Masked{
		"GH_TOKEN": {Value: "ghp_maskedLoses123", Scopes: []string{"x"}, Headers: []string{"Authorization"}},
		"OTHER":    {Value: "sk-ant-keep1", Scopes: []string{"x"}, Headers: []string{"X-Api-Key"}},
	}, map[string]string{"GH_TOKEN": "plain-loses", "PLAIN": "p"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddGitHubApps(map[string]GitHubApp{"GH_TOKEN": e.githubApp(nil)}); err != nil {
		t.Fatal(err)
	}
	env := m.Env()
	sur, _ := m.Surrogate("GH_TOKEN")
	if !surrogateRE.MatchString(env["GH_TOKEN"]) || env["GH_TOKEN"] != sur {
		t.Errorf("GH_TOKEN = %q; want the App's ghs_ surrogate %q (github_app > masked > plain)", env["GH_TOKEN"], sur)
	}
	if env["PLAIN"] != "p" || !strings.HasPrefix(env["OTHER"], "sk-ant-") {
		t.Errorf("env = %v", env)
	}
	for _, v := range env {
		if strings.Contains(v, "PRIVATE KEY") {
			t.Fatal("the App's private key is in the container's environment")
		}
	}
	r := m.Replacements()
	if len(r.apps) != 1 || len(r.masked) != 1 || r.masked[0].name != "OTHER" {
		t.Errorf("replacements: %d apps, masked %v; want the shadowed masked GH_TOKEN left out", len(r.apps), r.masked)
	}
	// Two maps: two different surrogates (fresh per task).
	m2, _ := NewMap(nil, nil)
	_ = m2.AddGitHubApps(map[string]GitHubApp{"GH_TOKEN": e.githubApp(nil)})
	if s2, _ := m2.Surrogate("GH_TOKEN"); s2 == sur {
		t.Error("two tasks got the same surrogate")
	}
}

func TestAddGitHubAppsErrors(t *testing.T) {
	e := newGHEnv(t, "")
	tests := []struct {
		name string
		mod  func(*GitHubApp)
		want string
	}{
		{"no app id", func(g *GitHubApp) { g.AppID = "" }, "app_id"},
		{"bad key", func(g *GitHubApp) {
			g.PrivateKey = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"
		}, "private_key: want a PEM RSA private key"},
		{"no installation", func(g *GitHubApp) { g.InstallationID = 0 }, "installation_id 0"},
		{"no scopes", func(g *GitHubApp) { g.Scopes = nil }, "scopes is empty"},
		{"http base", func(g *GitHubApp) { g.BaseURL = "http://ghe.example/api/v3" }, "base_url"},
		{"base with query", func(g *GitHubApp) { g.BaseURL = "https://ghe.example/api/v3?x=1" }, "base_url"},
		{"bad permission", func(g *GitHubApp) { g.Permissions = map[string]string{"contents": "all"} }, "permissions.contents"},
		{"owner in repository", func(g *GitHubApp) { g.Repositories = []string{"acme/app"} }, "without its owner"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := NewMap(nil, nil)
			err := m.AddGitHubApps(map[string]GitHubApp{"GH": e.githubApp(tt.mod)})
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "github app GH") {
				t.Errorf("got %v; want an error naming GH and %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Errorf("error shows the key: %v", err)
			}
		})
	}
}

func TestGitHubAppString(t *testing.T) {
	e := newGHEnv(t, "")
	g := e.githubApp(nil)
	for _, s := range []string{g.String(), strings.TrimSpace(fmtAll(g))} {
		if strings.Contains(s, "PRIVATE KEY") || !strings.Contains(s, redacted) {
			t.Errorf("printed %q; want the key redacted", s)
		}
	}
}

func TestGitHubAppReplacementFile(t *testing.T) {
	e := newGHEnv(t, "/api/v3")
	m, _ := NewMap(nil, nil)
	g := e.githubApp(func(g *GitHubApp) { g.BaseURL = "https://ghe.example/api/v3"; g.AllowForeignCredentials = true })
	if err := m.AddGitHubApps(map[string]GitHubApp{"GH_TOKEN": g}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "r.json")
	if err := m.WriteReplacementFile(path); err != nil {
		t.Fatal(err)
	}
	r, err := LoadReplacementFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.apps) != 1 {
		t.Fatalf("loaded %d apps; want 1", len(r.apps))
	}
	a, want := r.apps[0], m.apps[0]
	if a.surrogate != want.surrogate || a.app.appID != e.app.ID || a.app.installationID != 42 || !a.allowForeign ||
		a.app.baseURL != "https://ghe.example/api/v3" || a.app.graphQLHost != "ghe.example" || a.app.graphQLPath != "/api/graphql" ||
		!slices.Equal(a.app.repositories, []string{"app"}) || a.app.permissions["contents"] != "write" {
		t.Errorf("round trip: %+v %+v; want %+v", a, a.app, want)
	}

	// Refused entries.
	data, _ := os.ReadFile(path)
	var f map[string]any
	_ = json.Unmarshal(data, &f)
	cred := f["credentials"].([]any)[0].(map[string]any)
	for name, mutate := range map[string]func(map[string]any){
		"bad surrogate": func(ga map[string]any) { ga["surrogate"] = "ghs_short" },
		"bad key":       func(ga map[string]any) { ga["private_key"] = "nope" },
		"unknown field": func(ga map[string]any) { ga["extra"] = 1 },
	} {
		t.Run(name, func(t *testing.T) {
			c := cloneJSON(cred)
			mutate(c["github_app"].(map[string]any))
			b, _ := json.Marshal(map[string]any{"version": 2, "credentials": []any{c}})
			p := filepath.Join(t.TempDir(), "r.json")
			_ = os.WriteFile(p, b, 0o600)
			if _, err := LoadReplacementFile(p); err == nil || !strings.Contains(err.Error(), "credentials[0] (GH_TOKEN)") {
				t.Errorf("got %v; want the entry refused", err)
			}
		})
	}
}

func cloneJSON(m map[string]any) map[string]any {
	b, _ := json.Marshal(m)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

func TestGitHubAppInject(t *testing.T) {
	e := newGHEnv(t, "")
	inj, m := e.injector(t, e.githubApp(nil), map[string]Masked{
		"GH_PAT": {Value: "ghp_REALpat1234567890", Scopes: []string{"api.github.com"}, Headers: []string{"Authorization"}},
	})
	sur, _ := m.Surrogate("GH_TOKEN")
	pat, _ := m.Surrogate("GH_PAT")
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	var minted string
	tests := []struct {
		name    string
		url     string
		auth    []string
		want    func(real string) []string
		token   bool
		stripIt bool
	}{
		{"token scheme", "https://api.github.com/repos/acme/app", []string{"token " + sur}, func(r string) []string { return []string{"token " + r} }, true, false},
		{"bearer", "https://api.github.com/graphql", []string{"Bearer " + sur}, func(r string) []string { return []string{"Bearer " + r} }, true, false},
		{"git basic x-access-token", "https://github.com/acme/app.git/info/refs", []string{"Basic " + b64("x-access-token:"+sur)},
			func(r string) []string { return []string{"Basic " + b64("x-access-token:"+r)} }, true, false},
		{"basic any user", "https://github.com/acme/app.git/info/refs", []string{"Basic " + b64("someone:"+sur)},
			func(r string) []string { return []string{"Basic " + b64("someone:"+r)} }, true, false},
		{"masked beside the app, same host", "https://api.github.com/user", []string{"token " + pat}, func(string) []string { return []string{"token ghp_REALpat1234567890"} }, false, false},
		{"duplicate collapsed", "https://api.github.com/x", []string{"token " + sur, "token " + sur}, func(r string) []string { return []string{"token " + r} }, true, false},
		{"foreign stripped", "https://api.github.com/x", []string{"token ghs_agentsOwnTokenXXXXXXXXXXXXXXXXXXXXXX"}, nil, false, true},
		{"out of scope untouched", "https://example.com/x", []string{"token " + sur}, func(string) []string { return []string{"token " + sur} }, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := request(t, tt.url, tt.auth...)
			res, err := inj.Inject(r)
			if err != nil {
				t.Fatal(err)
			}
			got := r.Header.Values("Authorization")
			if tt.stripIt {
				if len(got) != 0 || len(res.Stripped) != 1 {
					t.Errorf("Authorization %q, stripped %v; want it stripped", got, res.Stripped)
				}
				return
			}
			if tt.token {
				toks := e.gh.Tokens()
				minted = toks[len(toks)-1].Value
				if !slices.Equal(res.Tokens, []string{KindGitHubApp}) || res.Masked != 0 {
					t.Errorf("Injection = %+v; want Tokens [github-app]", res)
				}
				if !slices.ContainsFunc(res.Injected, func(p Pair) bool { return p.Real.Reveal() == minted && p.Surrogate == sur }) {
					t.Errorf("Injected %v; want the minted token paired with the surrogate (for the response redactor)", res.Injected)
				}
			}
			if want := tt.want(minted); !slices.Equal(got, want) {
				t.Errorf("Authorization = %q; want %q", got, want)
			}
		})
	}
	if n := len(e.gh.Mints()); n != 1 {
		t.Errorf("%d mints; want 1 (the token is cached)", n)
	}
	mint := e.gh.Mints()[0]
	if mint.Status != http.StatusCreated || mint.Issuer != e.app.ID {
		t.Errorf("mint %+v; want 201 with iss = the App id", mint)
	}
	if d := mint.Start.Sub(mint.IssuedAt); d < 50*time.Second || d > 70*time.Second {
		t.Errorf("iat is %v before the mint; want about 60s (clock drift, as GitHub recommends)", d)
	}
	if d := mint.ExpiresAt.Sub(mint.Start); d > 10*time.Minute || d < time.Minute {
		t.Errorf("exp is %v after the mint; want at most 10 minutes", d)
	}
	var body map[string]any
	_ = json.Unmarshal([]byte(mint.Body), &body)
	if !strings.Contains(mint.Body, `"repositories":["app"]`) || !strings.Contains(mint.Body, `"contents":"write"`) {
		t.Errorf("mint body %s; want repositories and permissions", mint.Body)
	}
}

func TestGitHubAppPlainHTTPNeverMints(t *testing.T) {
	e := newGHEnv(t, "")
	inj, m := e.injector(t, e.githubApp(nil), nil)
	sur, _ := m.Surrogate("GH_TOKEN")
	r := request(t, "http://api.github.com/x", "token "+sur)
	res, err := inj.Inject(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Header.Values("Authorization")) != 0 || len(res.Stripped) != 1 || res.Stripped[0].Reason != StripPlainHTTP {
		t.Errorf("Injection %+v, Authorization %q; want it stripped (plain http)", res, r.Header.Values("Authorization"))
	}
	if n := len(e.gh.Mints()); n != 0 {
		t.Errorf("%d mints; want none for a request that gets no token", n)
	}
}

func TestGitHubAppFirstRequestsShareOneMint(t *testing.T) {
	e := newGHEnv(t, "")
	release := make(chan struct{})
	e.gh.OnMint(func(int) { <-release })
	inj, m := e.injector(t, e.githubApp(nil), nil)
	sur, _ := m.Surrogate("GH_TOKEN")
	const n = 8
	errs := make(chan error, n)
	got := make(chan string, n)
	for range n {
		go func() {
			r := request(t, "https://api.github.com/x", "token "+sur)
			_, err := inj.Inject(r)
			errs <- err
			got <- r.Header.Get("Authorization")
		}()
	}
	// Every request waits for the one mint.
	for len(e.gh.Mints()) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	seen := map[string]bool{}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		seen[<-got] = true
	}
	if len(seen) != 1 || len(e.gh.Mints()) != 1 {
		t.Errorf("%d distinct tokens from %d mints; want one of each", len(seen), len(e.gh.Mints()))
	}
}

// TestGitHubAppRefreshDoesNotBlock holds the refresh mint in flight and
// shows that a request meanwhile gets the current token at once.
func TestGitHubAppRefreshDoesNotBlock(t *testing.T) {
	e := newGHEnv(t, "")
	e.gh.TTL = 2 * time.Second
	held := make(chan struct{})
	release := make(chan struct{})
	e.gh.OnMint(func(n int) {
		if n == 2 {
			close(held)
			<-release
		}
	})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	inj, m := e.injector(t, e.githubApp(nil), nil)
	sur, _ := m.Surrogate("GH_TOKEN")
	inject := func() string {
		r := request(t, "https://api.github.com/x", "token "+sur)
		if _, err := inj.Inject(r); err != nil {
			t.Fatal(err)
		}
		return r.Header.Get("Authorization")
	}
	first := inject()
	// The refresh starts by itself (timer at 3/4 of the life) and is held.
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("no refresh started before the token's expiry")
	}
	during := make(chan string, 1)
	go func() { during <- inject() }()
	select {
	case got := <-during:
		if got != first {
			t.Errorf("during the refresh: %q; want the current token %q", got, first)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a request waited for the refresh in flight")
	}
	close(release)
	for len(e.gh.Tokens()) < 2 || e.gh.Mints()[1].End.IsZero() {
		time.Sleep(5 * time.Millisecond)
	}
	deadline := time.Now().Add(10 * time.Second)
	for inject() == first && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := inject(); got == first || got != "token "+e.gh.Tokens()[1].Value {
		t.Errorf("after the refresh: %q; want the new token", got)
	}
}

func TestGitHubAppMintFailure(t *testing.T) {
	e := newGHEnv(t, "")
	e.gh.FailMint(func(int) (int, string) { return http.StatusInternalServerError, "GitHub is down" })
	inj, m := e.injector(t, e.githubApp(nil), nil)
	sur, _ := m.Surrogate("GH_TOKEN")
	r := request(t, "https://api.github.com/x", "token "+sur)
	_, err := inj.Inject(r)
	if err == nil || !strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), "GitHub is down") || !strings.Contains(err.Error(), "GH_TOKEN") {
		t.Fatalf("Inject = %v; want the mint failure with GitHub's reason", err)
	}
	if strings.Contains(err.Error(), "eyJ") {
		t.Errorf("error carries the JWT: %v", err)
	}
	// A second request within the backoff gets the error without a new mint.
	if _, err2 := inj.Inject(request(t, "https://api.github.com/x", "token "+sur)); err2 == nil || len(e.gh.Mints()) != 1 {
		t.Errorf("second request: %v after %d mints; want the same error, one mint", err2, len(e.gh.Mints()))
	}
}

func TestGitHubAppMintRefusedByGitHub(t *testing.T) {
	e := newGHEnv(t, "")
	other := githubtest.NewApp(t) // signed with the wrong key
	tests := []struct {
		name, want string
		mod        func(*GitHubApp)
	}{
		{"wrong key", "401", func(g *GitHubApp) { g.PrivateKey = other.KeyPEM }},
		{"wrong installation", "404", func(g *GitHubApp) { g.InstallationID = 7 }},
		{"repository not in the installation", "422", func(g *GitHubApp) { g.Repositories = []string{"nope"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inj, m := e.injector(t, e.githubApp(tt.mod), nil)
			sur, _ := m.Surrogate("GH_TOKEN")
			if _, err := inj.Inject(request(t, "https://api.github.com/x", "token "+sur)); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Inject = %v; want GitHub's %s", err, tt.want)
			}
		})
	}
}

func TestGitHubScope(t *testing.T) {
	for _, tc := range []struct {
		name, prefix, base, host, path string
		repos                          []string
		want                           []string
	}{
		{"github.com, repositories from the mint", "", "", "api.github.com", "/graphql", []string{"app"}, []string{"acme/app"}},
		{"github.com, every repository listed", "", "", "api.github.com", "/graphql?x=1", nil, []string{"acme/app", "acme/other"}},
		{"enterprise", "/api/v3", "https://ghe.example/api/v3", "ghe.example", "/api/graphql", []string{"app"}, []string{"acme/app"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newGHEnv(t, tc.prefix)
			g := e.githubApp(func(g *GitHubApp) {
				g.Repositories = tc.repos
				if tc.base != "" {
					g.BaseURL, g.Scopes = tc.base, []string{tc.host}
				}
			})
			inj, m := e.injector(t, g, nil)
			sur, _ := m.Surrogate("GH_TOKEN")
			h := http.Header{"Authorization": {"bearer " + sur}}
			scope, ok, err := inj.GitHubScope(context.Background(), h, tc.host, tc.path)
			if err != nil || !ok {
				t.Fatalf("GitHubScope = %v, %v, %v; want a scope", scope, ok, err)
			}
			var names []string
			for _, r := range scope.Repos {
				names = append(names, r.FullName)
			}
			if !slices.Equal(names, tc.want) || !scope.HasID(1296269) || !scope.HasFullName("ACME/App") {
				t.Errorf("scope %v; want %v", scope.Repos, tc.want)
			}
			for _, miss := range []struct {
				h          http.Header
				host, path string
			}{
				{http.Header{}, tc.host, tc.path},
				{http.Header{"Authorization": {"bearer ghs_someoneElse"}}, tc.host, tc.path},
				{h, tc.host, "/repos/acme/app"},
				{h, "example.com", tc.path},
			} {
				if _, ok, _ := inj.GitHubScope(context.Background(), miss.h, miss.host, miss.path); ok {
					t.Errorf("GitHubScope(%v, %s%s) applies; want not", miss.h, miss.host, miss.path)
				}
			}
		})
	}
}

func TestGitHubAppClosed(t *testing.T) {
	e := newGHEnv(t, "")
	inj, m := e.injector(t, e.githubApp(nil), nil)
	sur, _ := m.Surrogate("GH_TOKEN")
	_ = inj.Close()
	if _, err := inj.Inject(request(t, "https://api.github.com/x", "token "+sur)); !errors.Is(err, ErrClosed) {
		t.Errorf("Inject after Close = %v; want ErrClosed", err)
	}
}

func fmtAll(v any) string { return fmt.Sprintf("%v %+v %#v %s", v, v, v, v) }
