package repoconfig

import (
	"net/url"
	"strings"

	"github.com/airut/airut/internal/yamlwalk"
)

// GitHubAppCredential is one github_app_credentials entry of sandbox.yaml
// (S2, S5.4): the same keys as in airut.yaml, values usually by !env.
type GitHubAppCredential struct {
	AppID                   string            `yaml:"app_id,required"`
	PrivateKey              string            `yaml:"private_key,required"`
	InstallationID          int64             `yaml:"installation_id,required"`
	Scopes                  []string          `yaml:"scopes,required"`
	BaseURL                 string            `yaml:"base_url"` // default https://api.github.com
	Permissions             map[string]string `yaml:"permissions"`
	Repositories            []string          `yaml:"repositories"`
	AllowForeignCredentials bool              `yaml:"allow_foreign_credentials"`
}

// checkGitHubApps applies the rules of github_app_credentials the schema's
// types cannot say.
func checkGitHubApps(apps map[string]GitHubAppCredential, report func(yamlwalk.Path, string, ...any),
	checked func(yamlwalk.Path) bool, secret func(yamlwalk.Path, string)) {
	var root yamlwalk.Path
	for name, g := range apps {
		p := root.Key("github_app_credentials", name)
		if !envNameRe.MatchString(name) {
			report(p, "not a valid environment variable name")
		}
		secret(p.Key("app_id"), g.AppID)
		secret(p.Key("private_key"), g.PrivateKey)
		if checked(p.Key("private_key")) && g.PrivateKey != "" && !strings.Contains(g.PrivateKey, "PRIVATE KEY-----") {
			report(p.Key("private_key"), "must be a PEM private key")
		}
		if checked(p.Key("installation_id")) && g.InstallationID < 1 {
			report(p.Key("installation_id"), "must be a positive integer")
		}
		for i, s := range g.Scopes {
			if strings.TrimSpace(s) == "" {
				report(p.Key("scopes").Index(i), "must not be empty")
			}
		}
		if checked(p.Key("base_url")) && g.BaseURL != "" {
			if u, err := url.Parse(g.BaseURL); err != nil || u.Scheme != "https" || u.Host == "" {
				report(p.Key("base_url"), "must be an https:// URL (GitHub Enterprise: https://HOST/api/v3), not %q", g.BaseURL)
			}
		}
		for perm, level := range g.Permissions {
			if level != "read" && level != "write" && level != "admin" {
				report(p.Key("permissions", perm), "must be read, write or admin, not %q", level)
			}
		}
		for i, r := range g.Repositories {
			if r == "" || strings.ContainsAny(r, "/ ") {
				report(p.Key("repositories").Index(i), "must be a repository name without its owner, not %q", r)
			}
		}
	}
}
