package sandboxcli_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/airut/airut/internal/testkit"
)

// pullRequestCheckout makes what a GitHub runner holds for pull request 1
// before the action runs: origin, a bare repository with main (the base
// branch's rules, moved on since the pull request branched), the branch
// pr, and refs/pull/1/merge, their merge as GitHub makes it; and the
// workspace checked out as actions/checkout does on a pull_request event
// (the merge ref only, depth 1, no other branch, no credential kept).
func pullRequestCheckout(t *testing.T, base, pr map[string]string) (workspace string) {
	t.Helper()
	src := testkit.GitRepo(t, base)
	testkit.Git(t, src, "checkout", "-q", "-b", "pr")
	testkit.WriteFiles(t, src, pr)
	testkit.Commit(t, src, "pull request")
	testkit.Git(t, src, "checkout", "-q", "main")
	testkit.WriteFiles(t, src, map[string]string{"CHANGELOG": "main moved on\n"})
	testkit.Commit(t, src, "meanwhile on main")
	testkit.Git(t, src, "checkout", "-q", "--detach", "main")
	testkit.Git(t, src, "merge", "-q", "--no-ff", "-m", "Merge pr into main", "pr")
	testkit.Git(t, src, "update-ref", "refs/pull/1/merge", "HEAD")
	testkit.Git(t, src, "checkout", "-q", "main")
	origin := filepath.Join(t.TempDir(), "origin.git")
	testkit.Git(t, src, "clone", "-q", "--mirror", src, origin)

	workspace = t.TempDir()
	testkit.Git(t, workspace, "init", "-q")
	testkit.Git(t, workspace, "remote", "add", "origin", origin)
	testkit.Git(t, workspace, "fetch", "-q", "--no-tags", "--prune", "--no-recurse-submodules", "--depth=1",
		"origin", "+refs/pull/1/merge:refs/remotes/pull/1/merge")
	testkit.Git(t, workspace, "checkout", "-q", "--force", "refs/remotes/pull/1/merge")
	if out, err := exec.Command("git", "-C", workspace, "rev-parse", "--verify", "--quiet", "origin/main").Output(); err == nil {
		t.Fatalf("the checkout already has origin/main (%s): the test would not show the action fetching it", out)
	}
	return workspace
}

// TestActionPullRequest runs action.yml's steps as GitHub would on a pull
// request that tries to switch the sandbox off, widen the allowlist and
// change the Dockerfile: the base branch is fetched and its rules apply
// (shown from inside the container), the command's exit code is the
// step's, the image is built and saved on a cache miss and, on a second
// runner without the image, loaded from the cache instead of built.
func TestActionPullRequest(t *testing.T) {
	engine, base := setup(t)
	label := testkit.RandomHex(6) // this test's own image
	baseFiles := baseRules(base)
	baseFiles[".airut/container/Dockerfile"] = "FROM " + base + "\nLABEL t=" + label + "\nRUN echo base > /rules-marker\n"
	prFiles := map[string]string{
		".airut/sandbox.yaml":           "network_sandbox: false\nenv:\n  RULES: pr\n",
		".airut/network-allowlist.yaml": "domains: [evil.example.test]\n",
		".airut/container/Dockerfile":   "FROM " + base + "\nRUN echo pr > /rules-marker\n",
		"pr-file.txt":                   "code under test\n",
	}
	workspace := pullRequestCheckout(t, baseFiles, prFiles)
	echo, pins := upstream(t)
	cache := t.TempDir()
	command := probe(echo)[2] + "\nexit 3"
	inputs := map[string]string{"command": command, "sandbox-args": "--verbose " + strings.Join(pins, " ")}

	first := newRunner(t, workspace, cache, "main")
	if code := first.run(inputs); code != 3 {
		t.Fatalf("first run: exit %d; want the command's 3\n%s", code, first.log.String())
	}
	log := first.log.String()
	if want := "marker=base env=base code=code under test\n" + blockedEvil; !strings.Contains(log, want) {
		t.Errorf("first run: the container did not get the base branch's rules; log:\n%s", log)
	}
	if !strings.Contains(log, "CONNECT FAILED") || len(echo.Requests()) != 0 {
		t.Errorf("first run: the network was not sandboxed (upstream saw %d requests); log:\n%s", len(echo.Requests()), log)
	}
	mainSHA := testkit.Git(t, workspace, "rev-parse", "refs/remotes/origin/main")
	if !strings.Contains(log, "Sandbox rules (.airut/) from origin/main at commit "+mainSHA) ||
		!strings.Contains(log, `msg="sandbox rules" from="origin/main at commit `+mainSHA) {
		t.Errorf("the log does not say which commit the rules came from:\n%s", log)
	}
	saved := regexp.MustCompile(`saved (localhost/airut-cli:[0-9a-f]+) to `).FindStringSubmatch(log)
	if saved == nil || !strings.Contains(log, "cache restore airut-sandbox-image-") || !strings.Contains(log, "hit=false") {
		t.Fatalf("first run: no cache miss, build and save; log:\n%s", log)
	}
	keys, _ := os.ReadDir(cache)
	if len(keys) != 1 {
		t.Fatalf("cache holds %d keys; want the one image", len(keys))
	}
	key := keys[0].Name()
	if tars, _ := filepath.Glob(filepath.Join(cache, key, "*.tar")); len(tars) != 1 {
		t.Errorf("cached %q holds %v; want one image archive", key, tars)
	}
	if cfg, err := os.ReadFile(filepath.Join(workspace, ".git", "config")); err != nil || strings.Contains(string(cfg), "extraheader") {
		t.Errorf("the workspace's .git/config (%v) holds a credential:\n%s", err, cfg)
	}

	// The same job again is refused: the workspace has had sandboxed code.
	if code := first.run(inputs); code != 125 || !strings.Contains(first.log.String(), "sandboxed code has already run in this job's workspace") {
		t.Errorf("second use in one job: exit %d; want 125 and the reason", code)
	}

	// A new runner: the images are gone from its store, the cache has them.
	repoTag := "localhost/airut-cli-repo:" + strings.TrimPrefix(key, "airut-sandbox-image-")[:24]
	for _, tag := range []string{saved[1], repoTag} {
		if out, err := exec.Command(engine, "rmi", tag).CombinedOutput(); err != nil {
			t.Fatalf("rmi %s: %v %s", tag, err, out)
		}
	}
	second := newRunner(t, workspace, cache, "main")
	if code := second.run(inputs); code != 3 {
		t.Fatalf("second run: exit %d\n%s", code, second.log.String())
	}
	log = second.log.String()
	if !strings.Contains(log, "hit=true") || !strings.Contains(log, "loaded ") {
		t.Errorf("second run: the image was not restored and loaded; log:\n%s", log)
	}
	if strings.Contains(log, "-t "+saved[1]) || strings.Contains(log, "-t "+repoTag) {
		t.Errorf("second run built the image although the cache had it; log:\n%s", log)
	}
	if slices.Contains(second.ran, "Save the sandbox image") {
		t.Errorf("second run saved the cache again: %q", second.ran)
	}
	if want := "marker=base env=base code=code under test\n" + blockedEvil; !strings.Contains(log, want) {
		t.Errorf("second run: the container did not get the base branch's rules; log:\n%s", log)
	}
	_ = exec.Command(engine, "rmi", saved[1], repoTag).Run()
}

// TestActionRefuses: the action stops (exit 125) before any code of the
// pull request runs when the checkout kept a credential the sandbox could
// read, when the base branch cannot be fetched, and when there is no
// trusted branch to name.
func TestActionRefuses(t *testing.T) {
	_, base := setup(t)
	cases := []struct {
		name   string
		prep   func(t *testing.T, r *runner)
		inputs map[string]string
		want   string
	}{
		{"persisted credential", func(t *testing.T, r *runner) {
			testkit.Git(t, r.workspace, "config", "http.https://github.com/.extraheader", "AUTHORIZATION: basic eC1hY2Nlc3M=")
		}, nil, "the checkout left a credential in .git/config"},
		{"credential in the remote URL", func(t *testing.T, r *runner) {
			testkit.Git(t, r.workspace, "remote", "set-url", "origin", "https://x-access-token:ghs_abc@github.com/acme/app")
		}, nil, "a remote URL in .git/config holds a credential"},
		{"base branch missing", nil, map[string]string{"config-ref": "release"}, "could not fetch the trusted branch 'release' from origin"},
		{"not a branch", nil, map[string]string{"config-ref": "main..x"}, "config-ref 'main..x' is not a branch name"},
		{"no trusted branch", func(t *testing.T, r *runner) {
			r.github["base_ref"], r.github["event.repository.default_branch"] = "", ""
			r.env = append(r.env, "GITHUB_BASE_REF=")
		}, nil, "no config-ref"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			workspace := pullRequestCheckout(t, baseRules(base), map[string]string{"pr-file.txt": "x\n"})
			r := newRunner(t, workspace, t.TempDir(), "main")
			if tc.prep != nil {
				tc.prep(t, r)
			}
			inputs := map[string]string{"command": "touch ran"}
			for k, v := range tc.inputs {
				inputs[k] = v
			}
			code := r.run(inputs)
			if code != 125 || !strings.Contains(r.log.String(), "::error title=airut-sandbox::"+tc.want) {
				t.Errorf("exit %d; want 125 and %q; log:\n%s", code, tc.want, r.log.String())
			}
			if _, err := os.Stat(filepath.Join(workspace, "ran")); err == nil {
				t.Errorf("the command ran")
			}
		})
	}
}

// actionlint is the linter for GitHub workflows, run from the module cache
// (make test-actionlint puts it there): tests reach no network.
const actionlint = "github.com/rhysd/actionlint/cmd/actionlint@v1.7.12"

// TestActionLint lints what the runner stand-in above cannot judge: the
// README's workflow and one that sets every input of action.yml, with
// actionlint (which checks action.yml's metadata and the inputs a workflow
// gives it), and run.sh with shellcheck.
func TestActionLint(t *testing.T) {
	root := testkit.ModuleRoot()
	shellcheck, err := exec.LookPath("shellcheck")
	if err != nil {
		requireTool(t, "shellcheck is not installed (make test-deps installs it)")
	} else if out, err := exec.Command(shellcheck, filepath.Join(root, "contrib/action/run.sh")).CombinedOutput(); err != nil {
		t.Errorf("shellcheck contrib/action/run.sh: %v\n%s", err, out)
	}

	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, example, ok := strings.Cut(string(readme), "<!-- ci-workflow-example -->\n```yaml\n")
	example, _, ok2 := strings.Cut(example, "```\n<!-- /ci-workflow-example -->")
	if !ok || !ok2 {
		t.Fatal("README.md: no ci-workflow-example block")
	}
	local := regexp.MustCompile(`(?m)^(\s*- uses: )airut/airut@\S+.*$`)
	if len(local.FindAllString(example, -1)) != 1 {
		t.Fatal("README.md's workflow does not use airut/airut once")
	}
	example = local.ReplaceAllString(example, "${1}./")
	every := "name: every input\non: pull_request\njobs:\n  t:\n    runs-on: ubuntu-24.04\n    steps:\n      - uses: ./\n        with:\n"
	for name := range loadAction(t).Inputs {
		every += "          " + name + ": x\n"
	}
	bogus := strings.Replace(every, "        with:\n", "        with:\n          bogus-input: x\n", 1)

	lint := func(workflow string) (string, error) {
		// A repository: actionlint finds `uses: ./` from the top of one.
		dir := testkit.GitRepo(t, map[string]string{".github/workflows/ci.yml": workflow})
		action, err := os.ReadFile(filepath.Join(root, "action.yml"))
		if err != nil {
			t.Fatal(err)
		}
		testkit.WriteFiles(t, dir, map[string]string{"action.yml": string(action)})
		args := []string{"run", actionlint, "-pyflakes=", "-shellcheck=" + shellcheck, ".github/workflows/ci.yml"}
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		gomodcache, _ := exec.Command("go", "env", "GOMODCACHE").Output()
		cmd.Env = append(os.Environ(), "GOPROXY=file://"+strings.TrimSpace(string(gomodcache))+"/cache/download",
			"GOSUMDB=off", "GOFLAGS=", "GOTOOLCHAIN=local")
		out, err := cmd.CombinedOutput()
		if strings.Contains(string(out), "go: ") && strings.Contains(string(out), "actionlint@") {
			requireTool(t, "actionlint is not in the module cache (make test-actionlint fetches it): "+string(out))
		}
		return string(out), err
	}
	for name, wf := range map[string]string{"README.md's workflow": example, "every input": every} {
		if out, err := lint(wf); err != nil {
			t.Errorf("actionlint on %s: %v\n%s\n%s", name, err, out, wf)
		}
	}
	// The linter does read action.yml: an input it does not declare is an error.
	if out, err := lint(bogus); err == nil || !strings.Contains(out, `input "bogus-input" is not defined in action`) {
		t.Errorf("actionlint accepted an input action.yml does not declare: %v\n%s", err, out)
	}
}

// requireTool skips, or fails under CI=true, where CI installs the tool.
func requireTool(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// TestActionWithoutCache: with cache 'false' no cache step runs, no cache
// key is computed, the image is built by the run itself, and the command's
// exit code is still the step's.
func TestActionWithoutCache(t *testing.T) {
	_, base := setup(t)
	workspace := pullRequestCheckout(t, baseRules(base), map[string]string{
		".airut/container/Dockerfile": "FROM " + base + "\nRUN echo pr > /rules-marker\n",
		"pr-file.txt":                 "code under test\n",
	})
	cache := t.TempDir()
	r := newRunner(t, workspace, cache, "main")
	code := r.run(map[string]string{"command": "echo \"marker=$(cat /rules-marker) code=$(cat pr-file.txt)\"\nexit 7", "cache": "false"})
	log := r.log.String()
	if code != 7 || !strings.Contains(log, "marker=base code=code under test\n") {
		t.Fatalf("exit %d; want the command's 7 and the base branch's image; log:\n%s", code, log)
	}
	for _, step := range r.ran {
		if strings.Contains(step, "image") {
			t.Errorf("step %q ran with cache 'false'", step)
		}
	}
	if keys, _ := os.ReadDir(cache); len(keys) != 0 || strings.Contains(log, "airut-sandbox-image-") {
		t.Errorf("cache 'false' touched the cache (%d keys); log:\n%s", len(keys), log)
	}
}
