package secrets

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/big"
	"net/url"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// GitHubApp is one github_app_credentials entry (S5.4): the container gets
// a stable ghs_ surrogate, and the proxy mints installation tokens with
// the App's key and swaps them in for it on the scoped hosts.
type GitHubApp struct {
	AppID          string // the App's numeric id or client id: the JWT's iss
	PrivateKey     string // PEM, RSA (PKCS#1 or PKCS#8)
	InstallationID int64
	Scopes         []string // host patterns where the surrogate is swapped
	// BaseURL is the REST API root, https only. Default
	// DefaultGitHubAPI; GitHub Enterprise Server: https://HOST/api/v3.
	BaseURL string
	// Permissions narrow the token ("contents": "write"). Default: the
	// installation's.
	Permissions map[string]string
	// Repositories narrow the token to these repository names (without
	// the owner). Default: every repository of the installation.
	Repositories            []string
	AllowForeignCredentials bool
}

// DefaultGitHubAPI is GitHubApp.BaseURL when unset.
const DefaultGitHubAPI = "https://api.github.com"

// String, Format and LogValue redact PrivateKey.
func (g GitHubApp) String() string {
	return fmt.Sprintf("{AppID:%s PrivateKey:%s InstallationID:%d Scopes:%v BaseURL:%s Permissions:%v Repositories:%v AllowForeignCredentials:%t}",
		g.AppID, redacted, g.InstallationID, g.Scopes, g.BaseURL, g.Permissions, g.Repositories, g.AllowForeignCredentials)
}

func (g GitHubApp) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(g.String())) }

func (g GitHubApp) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("app_id", g.AppID),
		slog.String("private_key", redacted),
		slog.Int64("installation_id", g.InstallationID),
		slog.Any("scopes", g.Scopes),
		slog.String("base_url", g.BaseURL),
	)
}

// appConfig is a checked GitHubApp.
type appConfig struct {
	appID          string
	keyPEM         string
	key            *rsa.PrivateKey
	installationID int64
	baseURL        string // without a trailing slash
	permissions    map[string]string
	repositories   []string
	// graphQLHost and graphQLPath are where the App's GraphQL API is:
	// api.github.com/graphql, or HOST/api/graphql for GHES (S5.5).
	graphQLHost, graphQLPath string
}

// permissionLevels are the values GitHub accepts in a token request.
var permissionLevels = []string{"read", "write", "admin"}

func newAppConfig(g GitHubApp) (*appConfig, error) {
	switch {
	case strings.TrimSpace(g.AppID) == "" || strings.ContainsAny(g.AppID, " \t\r\n"):
		return nil, fmt.Errorf("app_id %q: want the App's id or client id", g.AppID)
	case g.InstallationID < 1:
		return nil, fmt.Errorf("installation_id %d: want a positive integer", g.InstallationID)
	case len(g.Scopes) == 0:
		return nil, errors.New("scopes is empty")
	}
	for _, s := range g.Scopes {
		if strings.TrimSpace(s) == "" {
			return nil, errors.New("scopes contains an empty pattern")
		}
	}
	key, err := jwt.ParseRSAPrivateKeyFromPEM([]byte(g.PrivateKey))
	if err != nil {
		return nil, fmt.Errorf("private_key: want a PEM RSA private key: %w", err)
	}
	base := g.BaseURL
	if base == "" {
		base = DefaultGitHubAPI
	}
	u, err := url.Parse(base)
	switch {
	case err != nil:
		return nil, fmt.Errorf("base_url %q: %w", base, err)
	case u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("base_url %q: want https://HOST[/PATH] (GitHub Enterprise: https://HOST/api/v3)", base)
	}
	for name, level := range g.Permissions {
		if name == "" || !slices.Contains(permissionLevels, level) {
			return nil, fmt.Errorf("permissions.%s: %q: want one of %s", name, level, strings.Join(permissionLevels, ", "))
		}
	}
	for _, r := range g.Repositories {
		if r == "" || strings.ContainsAny(r, "/ \t") {
			return nil, fmt.Errorf("repositories: %q: want a repository name without its owner", r)
		}
	}
	c := &appConfig{
		appID:          g.AppID,
		keyPEM:         g.PrivateKey,
		key:            key,
		installationID: g.InstallationID,
		baseURL:        strings.TrimRight(base, "/"),
		permissions:    maps.Clone(g.Permissions),
		repositories:   slices.Clone(g.Repositories),
		graphQLHost:    strings.ToLower(u.Hostname()),
	}
	// GitHub.com serves GraphQL at api.github.com/graphql; Enterprise
	// Server, whose REST root is /api/v3, at /api/graphql.
	p := strings.TrimRight(u.Path, "/")
	if rest, ok := strings.CutSuffix(p, "/api/v3"); ok {
		c.graphQLPath = rest + "/api/graphql"
	} else {
		c.graphQLPath = p + "/graphql"
	}
	return c, nil
}

func (c *appConfig) gitHubApp(scopes []string, allowForeign bool) GitHubApp {
	return GitHubApp{
		AppID: c.appID, PrivateKey: c.keyPEM, InstallationID: c.installationID, Scopes: scopes,
		BaseURL: c.baseURL, Permissions: c.permissions, Repositories: c.repositories,
		AllowForeignCredentials: allowForeign,
	}
}

// installationTokenLen is the length of a GitHub installation token:
// "ghs_" and 36 letters and digits.
const installationTokenLen = 40

const alnum = lowerChars + upperChars + digitChars

// appSurrogate is a random stand-in shaped like an installation token, so
// gh and git take it for one.
func appSurrogate() (string, error) {
	b := []byte("ghs_")
	for len(b) < installationTokenLen {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alnum))))
		if err != nil {
			return "", fmt.Errorf("surrogate: %w", err)
		}
		b = append(b, alnum[n.Int64()])
	}
	return string(b), nil
}

// AddGitHubApps adds GitHub App credentials to the map, each with a fresh
// surrogate that stays the same for the task while the tokens behind it
// are minted and refreshed. The private key is checked here, so a bad one
// fails the task before any container starts.
func (m *Map) AddGitHubApps(apps map[string]GitHubApp) error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(apps)) {
		g := apps[name]
		if slices.ContainsFunc(m.apps, func(e entry) bool { return e.name == name }) {
			errs = append(errs, fmt.Errorf("github app %s: added twice", name))
			continue
		}
		c, err := newAppConfig(g)
		if err != nil {
			errs = append(errs, fmt.Errorf("github app %s: %w", name, err))
			continue
		}
		s, err := appSurrogate()
		if err != nil {
			errs = append(errs, fmt.Errorf("github app %s: %w", name, err))
			continue
		}
		m.apps = append(m.apps, appEntry(name, s, c, g.Scopes, g.AllowForeignCredentials))
	}
	slices.SortFunc(m.apps, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	return errors.Join(errs...)
}

func appEntry(name, surrogate string, c *appConfig, scopes []string, allowForeign bool) entry {
	return entry{
		name:         name,
		app:          c,
		surrogate:    surrogate,
		scopes:       slices.Clone(scopes),
		headers:      []string{"Authorization"},
		allowForeign: allowForeign,
	}
}

// fileGitHubApp is the wire form of one GitHub App credential. It carries
// the private key in clear: the file is written 0600 and read only by the
// proxy, never by the agent's container.
type fileGitHubApp struct {
	Surrogate               string            `json:"surrogate"`
	AppID                   string            `json:"app_id"`
	PrivateKey              string            `json:"private_key"`
	InstallationID          int64             `json:"installation_id"`
	Scopes                  []string          `json:"scopes"`
	BaseURL                 string            `json:"base_url"`
	Permissions             map[string]string `json:"permissions,omitempty"`
	Repositories            []string          `json:"repositories,omitempty"`
	AllowForeignCredentials bool              `json:"allow_foreign_credentials"`
}

func (e *entry) fileGitHubApp() *fileGitHubApp {
	g := e.app.gitHubApp(e.scopes, e.allowForeign)
	return &fileGitHubApp{
		Surrogate: e.surrogate, AppID: g.AppID, PrivateKey: g.PrivateKey, InstallationID: g.InstallationID,
		Scopes: g.Scopes, BaseURL: g.BaseURL, Permissions: g.Permissions, Repositories: g.Repositories,
		AllowForeignCredentials: g.AllowForeignCredentials,
	}
}

func (fg *fileGitHubApp) entry(name string) (entry, error) {
	c, err := newAppConfig(GitHubApp{
		AppID: fg.AppID, PrivateKey: fg.PrivateKey, InstallationID: fg.InstallationID, Scopes: fg.Scopes,
		BaseURL: fg.BaseURL, Permissions: fg.Permissions, Repositories: fg.Repositories,
	})
	if err != nil {
		return entry{}, err
	}
	if !strings.HasPrefix(fg.Surrogate, "ghs_") || len(fg.Surrogate) != installationTokenLen {
		return entry{}, errors.New("surrogate: want ghs_ and 36 letters and digits")
	}
	return appEntry(name, fg.Surrogate, c, fg.Scopes, fg.AllowForeignCredentials), nil
}
