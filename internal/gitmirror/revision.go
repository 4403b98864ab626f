package gitmirror

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"testing/fstest"
)

// Revision is one commit of a git repository, read through git objects:
// nothing in a working tree (uncommitted files, symlinks to the host) can
// leak in, and a fetch that moves a branch while a task reads its .airut/
// changes nothing, since every read names the same commit.
//
// It is the one git-tree reader of the project: the gateway reads the
// mirror's default branch with it, airut-sandbox a trusted ref of a CI
// clone (origin's base branch, see sandboxcli).
// Its methods are those of repoconfig.Source.
type Revision struct {
	// Dir is the repository: a bare mirror or a working tree.
	Dir string
	// Commit is the full object name every read uses.
	Commit string
	// Name is what was resolved ("trunk", "HEAD"), for messages.
	Name string
	// Git is the git executable; "git" from PATH when empty.
	Git string
}

// ErrDefaultBranch is wrapped by Head's and Update's errors about the
// default branch itself (as opposed to the fetch).
var ErrDefaultBranch = errors.New("default branch")

// Head resolves the mirror's default branch to the commit it points at now.
// It waits for a fetch in progress, so it never sees one half done.
func (m *Mirror) Head(ctx context.Context) (*Revision, error) {
	mu := m.fetchLock()
	mu.Lock()
	defer mu.Unlock()
	return m.head(ctx)
}

func (m *Mirror) head(ctx context.Context) (*Revision, error) {
	ref, err := m.headRef(ctx)
	if err != nil {
		return nil, fmt.Errorf("mirror %s: %w: %w", m.Dir, ErrDefaultBranch, err)
	}
	branch, ok := strings.CutPrefix(ref, "refs/heads/")
	if !ok {
		return nil, fmt.Errorf("mirror %s: %w: HEAD points at %q, not a branch", m.Dir, ErrDefaultBranch, ref)
	}
	r, err := Resolve(ctx, m.Dir, ref)
	if err != nil {
		return nil, fmt.Errorf("mirror %s: %w: %s has no commits", m.Dir, ErrDefaultBranch, branch)
	}
	r.Name, r.Git = branch, m.Git
	return r, nil
}

// Resolve pins rev ("HEAD", a branch, a commit) of the repository in dir to
// its commit.
func Resolve(ctx context.Context, dir, rev string) (*Revision, error) {
	out, err := runGit(ctx, "", dir, nil, "rev-parse", "--verify", "--quiet", "--end-of-options", rev+"^{commit}")
	if err != nil {
		return nil, fmt.Errorf("resolve %s in %s: %w", rev, dir, err)
	}
	return &Revision{Dir: dir, Commit: strings.TrimSpace(string(out)), Name: rev}, nil
}

// Describe names the revision in messages: "trunk (3f2a1b9c0d1e) of /srv/mirror".
func (r *Revision) Describe() string {
	c := r.Commit
	if len(c) > 12 {
		c = c[:12]
	}
	return fmt.Sprintf("%s (%s) of %s", r.Name, c, r.Dir)
}

func (r *Revision) git(ctx context.Context, stdin io.Reader, args ...string) ([]byte, error) {
	return runGit(ctx, r.Git, r.Dir, stdin, args...)
}

// cleanPath validates a repository-relative path.
func cleanPath(p string) (string, error) {
	c := path.Clean(strings.TrimPrefix(p, "./"))
	if c == "." || c == ".." || strings.HasPrefix(c, "../") || path.IsAbs(c) || strings.ContainsRune(c, 0) {
		return "", fmt.Errorf("invalid repository path %q", p)
	}
	return c, nil
}

type treeEntry struct {
	mode, typ, sha, path string
}

// list runs ls-tree at the revision for one path, recursively for a
// directory.
func (r *Revision) list(ctx context.Context, p string, recursive bool) ([]treeEntry, error) {
	args := []string{"ls-tree", "-z", "--full-tree"}
	if recursive {
		args = append(args, "-r")
	}
	out, err := r.git(ctx, nil, append(args, r.Commit, "--", p)...)
	if err != nil {
		return nil, err
	}
	var entries []treeEntry
	for rec := range bytes.SplitSeq(out, []byte{0}) {
		if len(rec) == 0 {
			continue
		}
		meta, name, ok := strings.Cut(string(rec), "\t")
		f := strings.Fields(meta)
		if !ok || len(f) != 3 {
			return nil, fmt.Errorf("unexpected ls-tree output %q", rec)
		}
		entries = append(entries, treeEntry{mode: f[0], typ: f[1], sha: f[2], path: name})
	}
	return entries, nil
}

// ReadFile returns the content of a file at the revision. A missing file is
// ErrNotFound (which is fs.ErrNotExist); a symlink is refused, not
// followed.
func (r *Revision) ReadFile(ctx context.Context, name string) ([]byte, error) {
	c, err := cleanPath(name)
	if err != nil {
		return nil, fmt.Errorf("%s: read %s: %w", r.Describe(), name, err)
	}
	entries, err := r.list(ctx, c, false)
	if err != nil {
		return nil, fmt.Errorf("%s: read %s: %w", r.Describe(), c, err)
	}
	var entry *treeEntry
	for i := range entries {
		if entries[i].path == c {
			entry = &entries[i]
		}
	}
	switch {
	case entry == nil:
		return nil, fmt.Errorf("%s: %s: %w", r.Describe(), c, ErrNotFound)
	case entry.typ != "blob":
		return nil, fmt.Errorf("%s: %s is a %s, not a file", r.Describe(), c, entry.typ)
	case entry.mode == "120000":
		return nil, fmt.Errorf("%s: %s is a symlink, not a file", r.Describe(), c)
	}
	blobs, err := r.catBlobs(ctx, []string{entry.sha})
	if err != nil {
		return nil, fmt.Errorf("%s: read %s: %w", r.Describe(), c, err)
	}
	return blobs[0], nil
}

// Tree returns every file under dir at the revision as a read-only file
// system, with its mode: 0644, 0755, or fs.ModeSymlink with the link target
// as its data (callers that need plain files refuse those). Submodules have
// no content here and are left out. A missing directory is ErrNotFound.
func (r *Revision) Tree(ctx context.Context, dir string) (fs.FS, error) {
	c, err := cleanPath(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: read tree %s: %w", r.Describe(), dir, err)
	}
	entries, err := r.list(ctx, c, true)
	if err != nil {
		return nil, fmt.Errorf("%s: read tree %s: %w", r.Describe(), c, err)
	}
	var names, shas []string
	var modes []fs.FileMode
	for _, e := range entries {
		rel, ok := strings.CutPrefix(e.path, c+"/")
		if !ok {
			if e.path == c {
				return nil, fmt.Errorf("%s: %s is a file, not a directory", r.Describe(), c)
			}
			continue
		}
		var mode fs.FileMode
		switch e.mode {
		case "100644":
			mode = 0o644
		case "100755":
			mode = 0o755
		case "120000":
			mode = fs.ModeSymlink | 0o777
		default: // 160000: a submodule
			continue
		}
		names, shas, modes = append(names, rel), append(shas, e.sha), append(modes, mode)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("%s: %s: %w", r.Describe(), c, ErrNotFound)
	}
	files := fstest.MapFS{}
	if len(shas) == 0 {
		return files, nil
	}
	blobs, err := r.catBlobs(ctx, shas)
	if err != nil {
		return nil, fmt.Errorf("%s: read tree %s: %w", r.Describe(), c, err)
	}
	for i, n := range names {
		files[n] = &fstest.MapFile{Data: blobs[i], Mode: modes[i]}
	}
	return files, nil
}

// catBlobs reads many blobs with one git process.
func (r *Revision) catBlobs(ctx context.Context, shas []string) ([][]byte, error) {
	in := strings.Join(shas, "\n") + "\n"
	out, err := r.git(ctx, strings.NewReader(in), "cat-file", "--batch")
	if err != nil {
		return nil, err
	}
	br := bufio.NewReader(bytes.NewReader(out))
	blobs := make([][]byte, 0, len(shas))
	for _, sha := range shas {
		header, err := br.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("cat-file: truncated output: %w", err)
		}
		f := strings.Fields(header)
		if len(f) != 3 || f[0] != sha || f[1] != "blob" {
			return nil, fmt.Errorf("cat-file: unexpected header %q for %s", strings.TrimSpace(header), sha)
		}
		size, err := strconv.Atoi(f[2])
		if err != nil || size < 0 {
			return nil, fmt.Errorf("cat-file: bad size in %q", strings.TrimSpace(header))
		}
		data := make([]byte, size)
		if _, err := io.ReadFull(br, data); err != nil {
			return nil, fmt.Errorf("cat-file: truncated blob %s: %w", sha, err)
		}
		if b, err := br.ReadByte(); err != nil || b != '\n' {
			return nil, fmt.Errorf("cat-file: missing separator after %s", sha)
		}
		blobs = append(blobs, data)
	}
	return blobs, nil
}
