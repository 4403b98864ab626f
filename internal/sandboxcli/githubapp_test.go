package sandboxcli_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airut/airut/internal/proxy"
	"github.com/airut/airut/internal/testkit"
	"github.com/airut/airut/internal/testkit/githubtest"
)

// TestGitHubAppGitCloneAndPush runs Debian's git in the real sandbox with
// only the ghs_ surrogate of a GitHub App from sandbox.yaml: it clones
// and pushes over smart HTTP to a local GitHub (git http-backend behind
// TLS) that accepts nothing but an installation token the proxy minted
// with the App's key, which never enters the container.
func TestGitHubAppGitCloneAndPush(t *testing.T) {
	engine, _ := setup(t)
	gitImage := testkit.GitImage(t, engine)
	app := githubtest.NewApp(t)
	hostIP := testkit.HostIP(t)
	ca := testkit.NewTestCA(t)
	gh := githubtest.New(t, app, 42, githubtest.Repo{ID: 1296269, Owner: "acme", Name: "app"},
		githubtest.Repo{ID: 555, Owner: "acme", Name: "other"})
	src := testkit.GitRepo(t, map[string]string{"README": "hello from acme/app\n"})
	bare := gh.AddGitRepo(t, "acme", "app", src)
	gh.AddGitRepo(t, "acme", "other", src)
	addr := net.JoinHostPort(hostIP, gh.ServeTLS(t, ca.Leaf(t, "github.com", "api.github.com")))
	dir := t.TempDir()
	caFile, netLog := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "network.log")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AIRUT_TEST_APP_ID", app.ID)
	t.Setenv("AIRUT_TEST_APP_KEY", app.KeyPEM)
	repo(t, "", map[string]string{
		".airut/container/Dockerfile": "FROM " + gitImage + "\n",
		".airut/network-allowlist.yaml": `url_prefixes:
  - host: github.com
    path: /acme/app*
  - host: api.github.com
    path: /repos/acme/app*
    methods: [GET]
`,
		".airut/sandbox.yaml": `github_app_credentials:
  GH_TOKEN:
    app_id: !env AIRUT_TEST_APP_ID
    private_key: !env AIRUT_TEST_APP_KEY
    installation_id: 42
    scopes: [github.com, api.github.com]
    repositories: [app]
    permissions:
      contents: write
`,
	})
	script := `set -e
export HOME=/tmp GIT_AUTHOR_NAME=Agent GIT_AUTHOR_EMAIL=agent@airut.invalid GIT_COMMITTER_NAME=Agent GIT_COMMITTER_EMAIL=agent@airut.invalid
case "$GH_TOKEN" in ghs_????????????????????????????????????) ;; *) echo "not a ghs_ surrogate: $GH_TOKEN"; exit 3;; esac
if env | grep -q "PRIVATE KEY"; then echo "the App key is in the container"; exit 4; fi
git clone -q "https://x-access-token:$GH_TOKEN@github.com/acme/app.git" /tmp/app
cat /tmp/app/README
cd /tmp/app
echo pushed > pushed.txt
git add pushed.txt
git commit -qm "from the sandbox"
git push -q origin HEAD:main
if git ls-remote "https://x-access-token:$GH_TOKEN@github.com/acme/other.git" >/dev/null 2>&1; then echo "other: reached"; else echo "other: refused"; fi
echo done`
	code, stdout, stderr := run("run", "--resolve", "github.com="+addr, "--resolve", "api.github.com="+addr,
		"--upstream-ca", caFile, "--network-log", netLog, "--", "sh", "-c", script)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if want := "hello from acme/app\nother: refused\ndone\n"; stdout != want {
		t.Errorf("stdout %q; want %q", stdout, want)
	}
	if msg := testkit.Git(t, bare, "log", "-1", "--format=%s", "main"); msg != "from the sandbox" {
		t.Errorf("upstream main is at %q; want the pushed commit", msg)
	}
	mints := gh.Mints()
	if len(mints) == 0 || mints[0].Status != 201 || mints[0].Issuer != app.ID {
		t.Fatalf("mints %+v; want one by the App", mints)
	}
	authed := 0
	for _, c := range gh.Calls() {
		switch {
		case c.Token == "":
			// git's first request of each exchange, before the 401 challenge.
		case !c.Valid:
			t.Errorf("upstream got %s %s with a token it did not mint (%.8s…)", c.Method, c.Path, c.Token)
		default:
			authed++
			if strings.HasPrefix(c.Path, "/acme/other") {
				t.Errorf("acme/other reached: %s %s", c.Method, c.Path)
			}
		}
	}
	if authed < 4 {
		t.Errorf("%d authenticated git requests; want clone and push (at least 4)", authed)
	}
	data, err := os.ReadFile(netLog)
	if err != nil {
		t.Fatal(err)
	}
	tokened, blocked := 0, 0
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		r, err := proxy.ParseRecord(line)
		if err != nil {
			t.Errorf("network log: %v", err)
			continue
		}
		if r.Token == "github-app" {
			tokened++
		}
		if r.Verdict == proxy.VerdictBlocked && strings.Contains(r.URL, "/acme/other") {
			blocked++
		}
	}
	if tokened < 4 || blocked == 0 {
		t.Errorf("network log has %d [token: github-app] lines and %d blocked acme/other; want both:\n%s", tokened, blocked, data)
	}
}
