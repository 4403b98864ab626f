package secrets

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestPoolsTogether: every kind in one task. A name in several pools
// takes the highest's value (S5: github_app > signing > masked > plain),
// a masked secret the container never sees is not in the proxy's map, the
// replacement file carries each kind with its own entry, and a bad entry
// in each pool is reported, all at once.
func TestPoolsTogether(t *testing.T) {
	e := newGHEnv(t, "")
	scoped := func(v string) Masked {
		return Masked{Value: v, Scopes: []string{"api.example.com"}, Headers: []string{"Authorization"}}
	}
	m, err := NewMapFrom(Pools{
		Plain: map[string]string{"PLAIN": "p", "TAKEN_BY_MASKED": "p", "AWS_ACCESS_KEY_ID": "p", "GH_TOKEN": "p"},
		Masked: map[string]Masked{"TAKEN_BY_MASKED": scoped("m1"), "AWS_SECRET_ACCESS_KEY": scoped("m2"),
			"GH_TOKEN": scoped("m3"), "MASKED": scoped("m4")},
		AWS: map[string]AWS{"AWS": {AccessKeyID: realKeyID, SecretAccessKey: realSecret, Scopes: []string{"*.amazonaws.com"},
			SessionToken: realSessionToken, SessionTokenEnv: "GH_TOKEN"}},
		GitHubApps: map[string]GitHubApp{"GH_TOKEN": e.githubApp(nil)},
	})
	if err != nil {
		t.Fatal(err)
	}
	env := m.Env()
	sur := func(name string) string { s, _ := m.Surrogate(name); return s }
	app := m.apps[0].surrogate
	want := map[string]string{
		"PLAIN":                 "p",
		"TAKEN_BY_MASKED":       sur("TAKEN_BY_MASKED"),
		"MASKED":                sur("MASKED"),
		"AWS_ACCESS_KEY_ID":     m.aws[0].keyID.surrogate,
		"AWS_SECRET_ACCESS_KEY": m.aws[0].secret.surrogate,
		"GH_TOKEN":              app,
	}
	for name, w := range want {
		if env[name] != w {
			t.Errorf("Env[%s] = %q; want %q", name, env[name], w)
		}
	}
	if len(env) != len(want) {
		t.Errorf("Env has %d names; want %d: %v", len(env), len(want), env)
	}
	if !strings.HasPrefix(app, "ghs_") {
		t.Errorf("GH_TOKEN = %q; want the App's surrogate (github_app > signing)", app)
	}

	r := m.Replacements()
	var names []string
	for _, x := range r.masked {
		names = append(names, x.name)
	}
	if strings.Join(names, ",") != "MASKED,TAKEN_BY_MASKED" {
		t.Errorf("proxy's masked secrets = %v; want only those the container sees", names)
	}
	if len(r.apps) != 1 || len(r.aws) != 1 {
		t.Errorf("proxy's map: %d apps, %d aws; want 1 and 1", len(r.apps), len(r.aws))
	}

	path := filepath.Join(t.TempDir(), "r.json")
	if err := m.WriteReplacementFile(path); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadReplacementFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded.masked) != 4 || len(loaded.apps) != 1 || len(loaded.aws) != 1 {
		t.Errorf("replacement file round trip: %d masked, %d apps, %d aws", len(loaded.masked), len(loaded.apps), len(loaded.aws))
	}
	injs := loaded.Injectors(Env{Transport: e.env.Transport, MaxBody: 1 << 20})
	if len(injs) != 2 || injs[0].Kind() == KindAWS || injs[1].Kind() != KindAWS {
		t.Fatalf("injectors %v; want the header one, then aws-sigv4", injs)
	}
	for _, inj := range injs {
		if c, ok := inj.(interface{ Close() error }); ok {
			_ = c.Close()
		}
	}

	_, err = NewMapFrom(Pools{
		Masked:     map[string]Masked{"M": {Value: "v"}},
		AWS:        map[string]AWS{"A": {AccessKeyID: "AKIAX"}},
		GitHubApps: map[string]GitHubApp{"G": e.githubApp(func(g *GitHubApp) { g.PrivateKey = "not a key" })},
	})
	for _, w := range []string{"masked secret M: scopes is empty", "signing credential A: secret_access_key is empty", "github app G: "} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("bad entries in every pool: %v; want it to contain %q", err, w)
		}
	}
}
