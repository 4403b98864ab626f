package repoconfig_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/airut/airut/internal/gitmirror"
	"github.com/airut/airut/internal/repoconfig"
	"github.com/airut/airut/internal/testkit"
)

var ctx = context.Background()

// gitSource is HEAD of a repository, read through git objects: the Source
// the gateway and airut-sandbox use.
func gitSource(t *testing.T, dir string) repoconfig.Source {
	t.Helper()
	r, err := gitmirror.Resolve(ctx, dir, "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func readAll(t *testing.T, fsys fs.FS) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		info, _ := d.Info()
		if info.Mode()&0o111 != 0 {
			p += "*"
		}
		got[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestGitSourceReadsCommittedTreeOnly(t *testing.T) {
	dir := testkit.GitRepo(t, map[string]string{
		".airut/container/Dockerfile":   "FROM x\n",
		".airut/container/setup.sh*":    "#!/bin/sh\n",
		".airut/container/sub/conf.txt": "c\n",
		".airut/network-allowlist.yaml": "domains: [a.com]\n",
	})
	// Uncommitted changes and new files in the working tree are invisible:
	// only git objects of the revision count.
	testkit.WriteFiles(t, dir, map[string]string{".airut/container/Dockerfile": "FROM evil\n", ".airut/container/new.txt": "n"})
	src := gitSource(t, dir)
	tree, err := repoconfig.ContainerContext(ctx, src, "")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"Dockerfile": "FROM x\n", "setup.sh*": "#!/bin/sh\n", "sub/conf.txt": "c\n"}
	if diff := cmp.Diff(want, readAll(t, tree)); diff != "" {
		t.Errorf("context (-want +got):\n%s", diff)
	}
	data, err := src.ReadFile(ctx, repoconfig.AllowlistPath)
	if err != nil || string(data) != "domains: [a.com]\n" {
		t.Errorf("ReadFile = %q, %v", data, err)
	}
	if _, err := src.ReadFile(ctx, ".airut/nope.yaml"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err = %v; want fs.ErrNotExist", err)
	}
}

func TestGitSourceBareMirrorDefaultBranch(t *testing.T) {
	dir := testkit.GitRepo(t, map[string]string{".airut/container/Dockerfile": "FROM main\n"})
	testkit.Git(t, dir, "checkout", "-q", "-b", "feature")
	testkit.WriteFiles(t, dir, map[string]string{".airut/container/Dockerfile": "FROM feature\n"})
	testkit.Commit(t, dir, "feature")
	testkit.Git(t, dir, "checkout", "-q", "main")
	mirror := filepath.Join(t.TempDir(), "mirror.git")
	testkit.Git(t, dir, "clone", "-q", "--mirror", dir, mirror)
	tree, err := repoconfig.ContainerContext(ctx, gitSource(t, mirror), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, tree)["Dockerfile"]; got != "FROM main\n" {
		t.Errorf("mirror HEAD gave %q; want the default branch's Dockerfile", got)
	}
}

func TestContainerContextErrors(t *testing.T) {
	cases := map[string]struct {
		files map[string]string
		path  string
		want  string
	}{
		"no folder":     {map[string]string{"README": "x"}, "", "no .airut/container/Dockerfile"},
		"no dockerfile": {map[string]string{".airut/container/x": "y"}, "", "no .airut/container/Dockerfile"},
		"custom path":   {map[string]string{"ci/container/Dockerfile": "FROM x"}, "ci/container", ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := testkit.GitRepo(t, tc.files)
			_, err := repoconfig.ContainerContext(ctx, gitSource(t, dir), tc.path)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("err = %v; want %q", err, tc.want)
			}
		})
	}
}

func TestSymlinksRefused(t *testing.T) {
	dir := testkit.GitRepo(t, map[string]string{".airut/container/Dockerfile": "FROM x\n"})
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, ".airut/container/passwd")); err != nil {
		t.Fatal(err)
	}
	if _, err := (repoconfig.DirSource{Dir: dir}).Tree(ctx, ".airut/container"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("DirSource: err = %v; want symlink refused", err)
	}
	testkit.Commit(t, dir, "symlink")
	if _, err := repoconfig.ContainerContext(ctx, gitSource(t, dir), ""); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("GitSource: err = %v; want symlink refused", err)
	}
}

func TestLoadAllowlist(t *testing.T) {
	cases := map[string]struct {
		content string // "" = no file
		want    string
	}{
		"valid":       {"domains: [a.com]\n", ""},
		"missing":     {"", "network-allowlist.yaml is missing"},
		"yaml error":  {"domains: [\n", ".airut/network-allowlist.yaml:1"},
		"unknown key": {"domains: [a.com]\nhosts: [b]\n", ".airut/network-allowlist.yaml:2: hosts: unknown key"},
		"string list": {"domains: \"*.x.com\"\n", ".airut/network-allowlist.yaml:1: domains: must be a list"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			files := map[string]string{"README": "x"}
			if tc.content != "" {
				files[repoconfig.AllowlistPath] = tc.content
			}
			dir := testkit.GitRepo(t, files)
			data, al, err := repoconfig.LoadAllowlist(ctx, gitSource(t, dir))
			if tc.want == "" {
				if err != nil || al == nil || string(data) != tc.content {
					t.Fatalf("got %v, %v", al, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v; want %q", err, tc.want)
			}
		})
	}
}

func TestParseSandbox(t *testing.T) {
	env := func(name string) (string, bool) {
		v, ok := map[string]string{"TOKEN": "ghp_real", "EMPTY": "", "AWS_ACCESS_KEY_ID": "AKIAREAL", "CI_SECRET": "s3cr3t", "CI_TOKEN": "tok",
			"APP_KEY": "-----BEGIN RSA PRIVATE KEY-----\nx\n-----END RSA PRIVATE KEY-----\n", "INSTALLATION": "42"}[name]
		return v, ok
	}
	valid := `signing_credentials:
  SHORT:
    type: aws-sigv4
    access_key_id: !env AWS_ACCESS_KEY_ID
    secret_access_key: !env CI_SECRET
    session_token: !env CI_TOKEN
    scopes: ["*.amazonaws.com"]
  LONG:
    type: aws-sigv4
    access_key_id: {name: PROD_KEY, value: !env AWS_ACCESS_KEY_ID}
    secret_access_key: {value: literal-secret}
    scopes: [s3.example.test]
env:
  CI: "true"
  FROM_ENV: !env TOKEN
pass_env: [HOME, GOFLAGS]
masked_secrets:
  GH_TOKEN:
    value: !env TOKEN
    scopes: [api.github.com, "*.githubusercontent.com"]
    headers: [Authorization]
github_app_credentials:
  GH_APP_TOKEN:
    app_id: "12345"
    private_key: !env APP_KEY
    installation_id: !env INSTALLATION
    scopes: [api.github.com, github.com]
    base_url: https://ghe.example/api/v3
    permissions:
      contents: write
    repositories: [app]
network_sandbox: true
resource_limits:
  timeout: 600
  memory: 2g
  cpus: "1.5"
  pids_limit: 512
network:
  resolve:
    Internal.Example: 10.0.0.5
  upstream_ca: /etc/ca.pem
`
	got, err := repoconfig.ParseSandbox([]byte(valid), "sandbox.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	want := &repoconfig.Sandbox{
		Env:     map[string]string{"CI": "true", "FROM_ENV": "ghp_real"},
		PassEnv: []string{"HOME", "GOFLAGS"},
		MaskedSecrets: map[string]repoconfig.MaskedSecret{"GH_TOKEN": {Value: "ghp_real",
			Scopes: []string{"api.github.com", "*.githubusercontent.com"}, Headers: []string{"Authorization"}}},
		SigningCredentials: map[string]repoconfig.SigningCredential{
			"SHORT": {Type: "aws-sigv4", Scopes: []string{"*.amazonaws.com"},
				AccessKeyID:     repoconfig.SigningField{Name: "AWS_ACCESS_KEY_ID", Value: "AKIAREAL"},
				SecretAccessKey: repoconfig.SigningField{Name: "CI_SECRET", Value: "s3cr3t"},
				SessionToken:    &repoconfig.SigningField{Name: "CI_TOKEN", Value: "tok"}},
			"LONG": {Type: "aws-sigv4", Scopes: []string{"s3.example.test"},
				AccessKeyID:     repoconfig.SigningField{Name: "PROD_KEY", Value: "AKIAREAL"},
				SecretAccessKey: repoconfig.SigningField{Name: "AWS_SECRET_ACCESS_KEY", Value: "literal-secret"}},
		},
		GitHubAppCredentials: map[string]repoconfig.GitHubAppCredential{"GH_APP_TOKEN": {AppID: "12345",
			PrivateKey: "-----BEGIN RSA PRIVATE KEY-----\nx\n-----END RSA PRIVATE KEY-----\n", InstallationID: 42,
			Scopes: []string{"api.github.com", "github.com"}, BaseURL: "https://ghe.example/api/v3",
			Permissions: map[string]string{"contents": "write"}, Repositories: []string{"app"}}},
		NetworkSandbox: true,
		Limits:         repoconfig.Limits{TimeoutSeconds: 600, Memory: "2g", CPUs: "1.5", PidsLimit: 512},
		Resolve:        map[string]string{"internal.example": "10.0.0.5"},
		UpstreamCA:     "/etc/ca.pem",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	if s, err := repoconfig.ParseSandbox(nil, "sandbox.yaml", env); err != nil || !s.NetworkSandbox {
		t.Errorf("empty file: %+v, %v; want defaults with the network sandbox on", s, err)
	}

	bad := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown top key", "bogus: 1\n", []string{"sandbox.yaml:1: bogus: unknown key"}},
		{"unknown nested key", "resource_limits:\n  memroy: 1g\n", []string{"sandbox.yaml:2: resource_limits.memroy: unknown key"}},
		{"pass_env string", "pass_env: HOME\n", []string{"sandbox.yaml:1: pass_env: must be a list"}},
		{"bad bool", "network_sandbox: maybe\n", []string{"sandbox.yaml:1: network_sandbox: must be true or false"}},
		{"bad memory", "resource_limits:\n  memory: lots\n", []string{"sandbox.yaml:2: resource_limits.memory: must be a size"}},
		{"bad cpus", "resource_limits:\n  cpus: -1\n", []string{"sandbox.yaml:2: resource_limits.cpus: must be a positive number"}},
		{"bad timeout", "resource_limits:\n  timeout: soon\n", []string{"sandbox.yaml:2: resource_limits.timeout: must be a non-negative integer"}},
		{"unset env", "env:\n  A: !env NOPE\n", []string{"sandbox.yaml:2: env.A: environment variable NOPE is not set"}},
		{"empty secret", "masked_secrets:\n  T:\n    value: !env EMPTY\n    scopes: [a]\n    headers: [b]\n", []string{"sandbox.yaml:3: masked_secrets.T.value: environment variable EMPTY is empty"}},
		{"empty literal secret", "masked_secrets:\n  T:\n    value: \"\"\n    scopes: [a]\n    headers: [b]\n", []string{"sandbox.yaml:3: masked_secrets.T.value: must not be empty"}},
		{"masked missing fields", "masked_secrets:\n  T:\n    value: x\n", []string{"sandbox.yaml:3: masked_secrets.T.headers: required", "sandbox.yaml:3: masked_secrets.T.scopes: required"}},
		{"signing bad type", "signing_credentials:\n  AWS:\n    type: gcp\n    access_key_id: a\n    secret_access_key: b\n    scopes: [x]\n", []string{"sandbox.yaml:3: signing_credentials.AWS.type: must be aws-sigv4"}},
		{"signing bad name", "signing_credentials:\n  AWS:\n    type: aws-sigv4\n    access_key_id: {name: \"A B\", value: a}\n    secret_access_key: b\n    scopes: [x]\n",
			[]string{"sandbox.yaml:4: signing_credentials.AWS.access_key_id: container variable \"A B\" is not a valid"}},
		{"signing one name twice", "signing_credentials:\n  AWS:\n    type: aws-sigv4\n    access_key_id: !env CI_SECRET\n    secret_access_key: !env CI_SECRET\n    scopes: [x]\n",
			[]string{"sandbox.yaml:5: signing_credentials.AWS.secret_access_key: container variable CI_SECRET is access_key_id's too"}},
		{"signing empty value", "signing_credentials:\n  AWS:\n    type: aws-sigv4\n    access_key_id: {value: !env EMPTY}\n    secret_access_key: b\n    scopes: [x]\n",
			[]string{"sandbox.yaml:4: signing_credentials.AWS.access_key_id.value: environment variable EMPTY is empty"}},
		{"signing value missing", "signing_credentials:\n  AWS:\n    type: aws-sigv4\n    access_key_id: {name: X}\n    secret_access_key: b\n    scopes: [x]\n",
			[]string{"sandbox.yaml:4: signing_credentials.AWS.access_key_id.value: required"}},
		{"bad env name", "env:\n  1BAD: x\n", []string{"sandbox.yaml:2: env.1BAD: not a valid environment variable name"}},
		{"unknown tag", "env:\n  A: !var X\n", []string{"sandbox.yaml:2: env.A: unknown tag !var"}},
		{"yaml syntax", "env: [\n", []string{"sandbox.yaml:1: YAML syntax error"}},
		{"several errors", "bogus: 1\npass_env: x\n", []string{"sandbox.yaml:1: bogus: unknown key", "sandbox.yaml:2: pass_env: must be a list"}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := repoconfig.ParseSandbox([]byte(tc.yaml), "sandbox.yaml", env)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != len(tc.want) {
				t.Errorf("%d errors reported; want %d: %q", n, len(tc.want), err)
			}
		})
	}
}

func TestWithFile(t *testing.T) {
	dir := testkit.GitRepo(t, map[string]string{".airut/container/Dockerfile": "FROM a\n", ".airut/container/x": "x"})
	tree, err := repoconfig.ContainerContext(ctx, gitSource(t, dir), "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := repoconfig.WithFile(tree, "Dockerfile", []byte("FROM b\n"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"Dockerfile": "FROM b\n", "x": "x"}, readAll(t, got)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
