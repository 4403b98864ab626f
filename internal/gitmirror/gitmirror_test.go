package gitmirror

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// isolate keeps the host's git configuration out of the tests and gives
// commits an identity.
func isolate(t *testing.T) {
	t.Helper()
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	t.Setenv("GIT_AUTHOR_NAME", "Test")
	t.Setenv("GIT_AUTHOR_EMAIL", "test@example.com")
	t.Setenv("GIT_COMMITTER_NAME", "Test")
	t.Setenv("GIT_COMMITTER_EMAIL", "test@example.com")
}

func run(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func write(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

var binary = "\x00\x01\xff\xfe binary\r\n\x00"

// upstream is a throwaway "real" repository: a bare repo whose default
// branch is trunk, and a work tree to push from.
type upstream struct {
	bare, work string
}

func newUpstream(t *testing.T) upstream {
	t.Helper()
	isolate(t)
	root := t.TempDir()
	u := upstream{bare: filepath.Join(root, "remote.git"), work: filepath.Join(root, "work")}
	run(t, root, "init", "--quiet", "--bare", "-b", "trunk", u.bare)
	run(t, root, "init", "--quiet", "-b", "trunk", u.work)
	write(t, filepath.Join(u.work, "README.md"), "v1\n", 0o644)
	write(t, filepath.Join(u.work, ".airut/container/Dockerfile"), "FROM airut-test-base\n", 0o644)
	write(t, filepath.Join(u.work, ".airut/container/entry.sh"), "#!/bin/sh\nexec \"$@\"\n", 0o755)
	write(t, filepath.Join(u.work, ".airut/container/blob.bin"), binary, 0o644)
	write(t, filepath.Join(u.work, ".airut/container/sub/deep.txt"), "deep\n", 0o644)
	if err := os.Symlink("Dockerfile", filepath.Join(u.work, ".airut/container/link")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(u.work, ".airut/network-allowlist.yaml"), "domains: []\n", 0o644)
	run(t, u.work, "add", "-A")
	run(t, u.work, "commit", "--quiet", "-m", "initial")
	run(t, u.work, "push", "--quiet", u.bare, "trunk")
	return u
}

func (u upstream) commit(t *testing.T, file, content string) {
	t.Helper()
	write(t, filepath.Join(u.work, file), content, 0o644)
	run(t, u.work, "add", "-A")
	run(t, u.work, "commit", "--quiet", "-m", "change "+file)
	run(t, u.work, "push", "--quiet", u.bare, "HEAD:trunk")
}

func newMirror(t *testing.T, u upstream) *Mirror {
	t.Helper()
	m := &Mirror{Dir: filepath.Join(t.TempDir(), "app", "git-mirror"), URL: u.bare}
	if err := m.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEnsureFetchesAndPrunes(t *testing.T) {
	u := newUpstream(t)
	ctx := context.Background()
	m := newMirror(t, u)
	if _, err := os.Stat(filepath.Join(m.Dir, "HEAD")); err != nil {
		t.Fatalf("no bare mirror at %s: %v", m.Dir, err)
	}
	if got, err := readHead(ctx, m, "README.md"); err != nil || string(got) != "v1\n" {
		t.Fatalf("README.md = %q, %v; want v1", got, err)
	}

	u.commit(t, "README.md", "v2\n")
	run(t, u.work, "push", "--quiet", u.bare, "HEAD:refs/heads/feature")
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := readHead(ctx, m, "README.md"); err != nil || string(got) != "v2\n" {
		t.Errorf("after fetch README.md = %q, %v; want v2", got, err)
	}
	if got := run(t, m.Dir, "branch", "--list", "feature"); got == "" {
		t.Errorf("feature branch not fetched")
	}

	run(t, u.work, "push", "--quiet", u.bare, "--delete", "feature")
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if got := run(t, m.Dir, "branch", "--list", "feature"); got != "" {
		t.Errorf("deleted branch not pruned: %q", got)
	}
}

func TestDefaultBranch(t *testing.T) {
	u := newUpstream(t)
	ctx := context.Background()
	m := newMirror(t, u)
	if got, err := m.DefaultBranch(ctx); err != nil || got != "trunk" {
		t.Errorf("DefaultBranch = %q, %v; want trunk", got, err)
	}

	// The remote's default branch moves to release, which has other content.
	run(t, u.work, "checkout", "--quiet", "-b", "release")
	u.commit(t, "README.md", "release\n")
	run(t, u.work, "push", "--quiet", u.bare, "HEAD:refs/heads/release")
	run(t, u.bare, "symbolic-ref", "HEAD", "refs/heads/release")
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := m.DefaultBranch(ctx); err != nil || got != "release" {
		t.Errorf("DefaultBranch after the remote moved = %q, %v; want release", got, err)
	}
	if got, err := readHead(ctx, m, "README.md"); err != nil || string(got) != "release\n" {
		t.Errorf("README.md = %q, %v; want the release branch's", got, err)
	}
}

// readHead reads a file at the mirror's default branch as it is now.
func readHead(ctx context.Context, m *Mirror, name string) ([]byte, error) {
	r, err := m.Head(ctx)
	if err != nil {
		return nil, err
	}
	return r.ReadFile(ctx, name)
}

func TestReadFile(t *testing.T) {
	u := newUpstream(t)
	m := newMirror(t, u)
	r, err := m.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path    string
		want    string
		wantErr error
		errText string
	}{
		{path: "README.md", want: "v1\n"},
		{path: "./.airut/network-allowlist.yaml", want: "domains: []\n"},
		{path: ".airut/container/blob.bin", want: binary},
		{path: ".airut/missing.yaml", wantErr: ErrNotFound},
		{path: "nope/README.md", wantErr: fs.ErrNotExist},
		{path: ".airut/container", errText: "not a file"},
		{path: ".airut/container/link", errText: "is a symlink, not a file"},
		{path: "../etc/passwd", errText: "invalid repository path"},
		{path: "/etc/passwd", errText: "invalid repository path"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			got, err := r.ReadFile(context.Background(), tc.path)
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("err = %v; want %v", err, tc.wantErr)
				}
			case tc.errText != "":
				if err == nil || !strings.Contains(err.Error(), tc.errText) {
					t.Errorf("err = %v; want one saying %q", err, tc.errText)
				}
			case err != nil:
				t.Errorf("err = %v", err)
			case string(got) != tc.want:
				t.Errorf("got %q; want %q", got, tc.want)
			}
		})
	}
}

func TestReadTree(t *testing.T) {
	u := newUpstream(t)
	m := newMirror(t, u)
	ctx := context.Background()
	r, err := m.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := r.Tree(ctx, ".airut/container/")
	if err != nil {
		t.Fatal(err)
	}
	type file struct {
		Mode fs.FileMode
		Data string
	}
	got := map[string]file{}
	err = fs.WalkDir(tree, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		var data []byte
		if info.Mode()&fs.ModeSymlink != 0 {
			var target string
			target, err = fs.ReadLink(tree, p)
			data = []byte(target)
		} else {
			data, err = fs.ReadFile(tree, p)
		}
		got[p] = file{info.Mode(), string(data)}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]file{
		"Dockerfile":   {0o644, "FROM airut-test-base\n"},
		"blob.bin":     {0o644, binary},
		"entry.sh":     {0o755, "#!/bin/sh\nexec \"$@\"\n"},
		"link":         {fs.ModeSymlink | 0o777, "Dockerfile"},
		"sub/deep.txt": {0o644, "deep\n"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Tree (-want +got):\n%s", diff)
	}
	if _, err := r.Tree(ctx, ".airut/nothing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Tree(missing) = %v; want ErrNotFound", err)
	}
	if _, err := r.Tree(ctx, "README.md"); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Tree(file) = %v; want a not-a-directory error", err)
	}
	// A prefix of a name is not the directory.
	if _, err := r.Tree(ctx, ".airut/cont"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Tree(prefix) = %v; want ErrNotFound", err)
	}
}

// TestHeadPinsOneCommit: a task resolves the default branch once and reads
// every .airut/ file at that commit, so a fetch by another task between
// its reads cannot hand it the Dockerfile of one commit and the allowlist
// of the next.
func TestHeadPinsOneCommit(t *testing.T) {
	u := newUpstream(t)
	m := newMirror(t, u)
	ctx := context.Background()
	r, err := m.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := r.Tree(ctx, ".airut/container")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := fs.ReadFile(tree, "Dockerfile"); string(b) != "FROM airut-test-base\n" {
		t.Fatalf("Dockerfile = %q", b)
	}

	// Another task fetches a commit that changes both files.
	write(t, filepath.Join(u.work, ".airut/container/Dockerfile"), "FROM next\n", 0o644)
	u.commit(t, ".airut/network-allowlist.yaml", "domains: [next.example]\n")
	if err := (&Mirror{Dir: m.Dir, URL: u.bare}).Ensure(ctx); err != nil {
		t.Fatal(err)
	}

	allow, err := r.ReadFile(ctx, ".airut/network-allowlist.yaml")
	if err != nil || string(allow) != "domains: []\n" {
		t.Errorf("allowlist read after the fetch = %q, %v; want the pinned commit's", allow, err)
	}
	// The mirror itself did move: a new resolution sees the new commit.
	r2, err := m.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r2.Commit == r.Commit {
		t.Fatalf("fetch did not move the default branch (%s)", r.Commit)
	}
	if b, err := r2.ReadFile(ctx, ".airut/network-allowlist.yaml"); err != nil || string(b) != "domains: [next.example]\n" {
		t.Errorf("allowlist at the new head = %q, %v", b, err)
	}
	if !strings.Contains(r.Describe(), "trunk ("+r.Commit[:12]+")") {
		t.Errorf("Describe = %q; want the branch and the commit", r.Describe())
	}
}

func TestResolveWorkTreeHEAD(t *testing.T) {
	u := newUpstream(t)
	ctx := context.Background()
	// Uncommitted changes in a working tree are invisible.
	write(t, filepath.Join(u.work, "README.md"), "dirty\n", 0o644)
	r, err := Resolve(ctx, u.work, "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := r.ReadFile(ctx, "README.md"); err != nil || string(b) != "v1\n" {
		t.Errorf("README.md = %q, %v; want the committed v1", b, err)
	}
	if _, err := Resolve(ctx, u.work, "no-such-branch"); err == nil {
		t.Error("Resolve of a missing branch succeeded")
	}
	if _, err := Resolve(ctx, u.work, "--output=/tmp/x"); err == nil {
		t.Error("Resolve took an option for a revision")
	}
}

func TestClone(t *testing.T) {
	u := newUpstream(t)
	m := newMirror(t, u)
	u.commit(t, "README.md", "v2\n")
	if err := m.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "workspace")
	if err := m.Clone(context.Background(), dest); err != nil {
		t.Fatal(err)
	}
	if got := run(t, dest, "remote", "get-url", "origin"); got != u.bare {
		t.Errorf("origin = %q; want the real repository %q", got, u.bare)
	}
	if got := run(t, dest, "rev-parse", "--abbrev-ref", "HEAD"); got != "trunk" {
		t.Errorf("checked out %q; want trunk", got)
	}
	if data, err := os.ReadFile(filepath.Join(dest, "README.md")); err != nil || string(data) != "v2\n" {
		t.Errorf("README.md = %q, %v; want v2", data, err)
	}
	if _, err := os.Stat(filepath.Join(dest, ".git", "objects", "info", "alternates")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("clone has an alternates file (%v); want none", err)
	}
	// No object file may be shared with the mirror (hardlinked). The
	// mirror itself may share files with the upstream here, both being
	// local.
	mirrorFiles := inodes(t, filepath.Join(m.Dir, "objects"))
	for id, p := range inodes(t, filepath.Join(dest, ".git", "objects")) {
		if mp, ok := mirrorFiles[id]; ok {
			t.Errorf("clone's %s is the mirror's %s (hardlink)", p, mp)
		}
	}
	// The agent's push goes to the real remote, not the mirror.
	write(t, filepath.Join(dest, "agent.txt"), "work\n", 0o644)
	run(t, dest, "add", "agent.txt")
	run(t, dest, "commit", "--quiet", "-m", "agent work")
	run(t, dest, "push", "--quiet", "origin", "HEAD:refs/heads/agent/fix")
	if got := run(t, u.bare, "branch", "--list", "agent/fix"); got == "" {
		t.Errorf("push did not reach the real remote")
	}
	if err := m.Clone(context.Background(), dest); err == nil {
		t.Errorf("Clone into a non-empty directory succeeded; want an error")
	}
}

func TestCloneWritesNoCredentials(t *testing.T) {
	u := newUpstream(t)
	m := newMirror(t, u)
	m.URL = "https://x-access-token:ghs_secret123@github.example/org/repo.git"
	dest := filepath.Join(t.TempDir(), "workspace")
	if err := m.Clone(context.Background(), dest); err != nil {
		t.Fatal(err)
	}
	if got := run(t, dest, "remote", "get-url", "origin"); got != "https://github.example/org/repo.git" {
		t.Errorf("origin = %q; want the URL without credentials", got)
	}
	cfg, err := os.ReadFile(filepath.Join(dest, ".git", "config"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(cfg), "ghs_secret123") || strings.Contains(string(cfg), "x-access-token") {
		t.Errorf("clone config holds the credential:\n%s", cfg)
	}
}

func TestPublicURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://github.com/org/repo.git", "https://github.com/org/repo.git"},
		{"https://user:pass@github.com/org/repo.git", "https://github.com/org/repo.git"},
		{"https://ghp_token@github.com/org/repo.git", "https://github.com/org/repo.git"},
		{"ssh://git:pw@github.com/org/repo.git", "ssh://git@github.com/org/repo.git"},
		{"ssh://git@github.com/org/repo.git", "ssh://git@github.com/org/repo.git"},
		{"git@github.com:org/repo.git", "git@github.com:org/repo.git"},
		{"/srv/git/repo.git", "/srv/git/repo.git"},
	}
	for _, tc := range tests {
		if got := PublicURL(tc.in); got != tc.want {
			t.Errorf("PublicURL(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

func TestErrors(t *testing.T) {
	isolate(t)
	root := t.TempDir()
	m := &Mirror{Dir: filepath.Join(root, "mirror"), URL: filepath.Join(root, "does-not-exist.git")}
	err := m.Ensure(context.Background())
	if err == nil || !strings.Contains(err.Error(), "fatal:") {
		t.Errorf("Ensure of a missing repository = %v; want git's fatal message", err)
	}
	if _, statErr := os.Stat(m.Dir); !errors.Is(statErr, os.ErrNotExist) {
		t.Errorf("failed clone left %s behind", m.Dir)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("failed clone left temp dirs: %v", entries)
	}

	secret := &Mirror{Dir: filepath.Join(root, "m2"), URL: "https://user:hunter2@127.0.0.1:1/repo.git"}
	err = secret.Ensure(context.Background())
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Ensure error = %v; want an error without the password", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Ensure(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Ensure with a cancelled context = %v; want context.Canceled", err)
	}
}

func TestConcurrentEnsure(t *testing.T) {
	u := newUpstream(t)
	dir := filepath.Join(t.TempDir(), "git-mirror")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			m := &Mirror{Dir: dir, URL: u.bare}
			if err := m.Ensure(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	m := &Mirror{Dir: dir, URL: u.bare}
	if got, err := readHead(context.Background(), m, "README.md"); err != nil || string(got) != "v1\n" {
		t.Errorf("README.md = %q, %v; want v1", got, err)
	}
}

// TestEnsureFetchesOnlyWhatMoved: Ensure asks the remote for its refs and
// fetches only when they differ from the mirror's (a moved branch, a new
// or deleted ref, an annotated tag), and a mirror brought up to date is
// not fetched again. Update then pins the default branch's new commit.
func TestEnsureFetchesOnlyWhatMoved(t *testing.T) {
	u := newUpstream(t)
	ctx := context.Background()
	m := newMirror(t, u)
	// git, logging each subcommand run through the mirror.
	logFile := filepath.Join(t.TempDir(), "git.log")
	real, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	m.Git = filepath.Join(t.TempDir(), "git")
	write(t, m.Git, "#!/bin/sh\necho \"$1\" >>"+logFile+"\nexec "+real+" \"$@\"\n", 0o755)
	fetched := func() bool {
		t.Helper()
		data, _ := os.ReadFile(logFile)
		os.Remove(logFile)
		return strings.Contains(string(data), "fetch\n")
	}
	steps := []struct {
		name   string
		change func()
		fetch  bool
	}{
		{"unchanged", func() {}, false},
		{"branch moved", func() { u.commit(t, "README.md", "v2\n") }, true},
		{"then unchanged", func() {}, false},
		{"new branch", func() { run(t, u.work, "push", "--quiet", u.bare, "HEAD:refs/heads/feature") }, true},
		{"annotated tag", func() {
			run(t, u.work, "tag", "-a", "-m", "release", "v1.0")
			run(t, u.work, "push", "--quiet", u.bare, "v1.0")
		}, true},
		{"tag fetched", func() {}, false},
		{"branch deleted", func() { run(t, u.work, "push", "--quiet", u.bare, "--delete", "feature") }, true},
		{"at rest", func() {}, false},
	}
	for _, st := range steps {
		st.change()
		fetched()
		rev, err := m.Update(ctx)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := fetched(); got != st.fetch {
			t.Errorf("%s: fetched = %v; want %v", st.name, got, st.fetch)
		}
		if want := run(t, u.bare, "rev-parse", "trunk"); rev.Commit != want || rev.Name != "trunk" {
			t.Errorf("%s: Update = %s at %s; want trunk at %s", st.name, rev.Name, rev.Commit, want)
		}
	}
	if got := run(t, m.Dir, "branch", "--list", "feature"); got != "" {
		t.Errorf("deleted branch not pruned: %q", got)
	}
	if got := run(t, m.Dir, "tag", "--list"); got != "v1.0" {
		t.Errorf("tags %q; want v1.0", got)
	}
}
