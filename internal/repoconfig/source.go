// Package repoconfig reads a repository's .airut/ folder: the container
// build context, the network allowlist and sandbox.yaml. For the gateway
// they come from the default branch of the bare mirror (git objects, never
// the agent's workspace); for airut-sandbox from a working tree's HEAD or
// explicit files.
package repoconfig

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"strconv"
	"strings"
	"testing/fstest"
)

// Well-known paths inside a repository.
const (
	DefaultContainerPath = ".airut/container"
	AllowlistPath        = ".airut/network-allowlist.yaml"
	SandboxPath          = ".airut/sandbox.yaml"
)

// Source reads files of one revision of a repository.
type Source interface {
	// ReadFile returns a file's content; a missing file is fs.ErrNotExist.
	ReadFile(ctx context.Context, name string) ([]byte, error)
	// Tree returns every file under dir as a read-only file system.
	Tree(ctx context.Context, dir string) (fs.FS, error)
	// Describe names the source in errors ("HEAD of /repo").
	Describe() string
}

// GitSource reads a revision from a git repository through git objects, so
// nothing in a working tree (uncommitted files, symlinks to the host) can
// leak in. Dir may be a bare mirror or a working tree.
type GitSource struct {
	Dir string
	// Rev defaults to HEAD, which in a bare mirror is the default branch.
	Rev string
}

func (g GitSource) rev() string {
	if g.Rev == "" {
		return "HEAD"
	}
	return g.Rev
}

// Describe implements Source.
func (g GitSource) Describe() string { return fmt.Sprintf("%s of %s", g.rev(), g.Dir) }

func (g GitSource) git(ctx context.Context, stdin io.Reader, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", g.Dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("git %s in %s: %s", args[0], g.Dir, strings.TrimSpace(stderr.String()+" "+err.Error()))
	}
	return stdout.Bytes(), nil
}

// ReadFile implements Source.
func (g GitSource) ReadFile(ctx context.Context, name string) ([]byte, error) {
	files, err := g.list(ctx, name)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if f.path == name {
			if f.mode == 0o120000 {
				return nil, fmt.Errorf("%s: %s is a symlink, not a file", g.Describe(), name)
			}
			return g.blob(ctx, f.oid)
		}
	}
	return nil, fmt.Errorf("%s: %s: %w", g.Describe(), name, fs.ErrNotExist)
}

type treeEntry struct {
	mode int64
	oid  string
	path string
}

// list runs ls-tree for one path (recursively for a directory).
func (g GitSource) list(ctx context.Context, name string) ([]treeEntry, error) {
	out, err := g.git(ctx, nil, "ls-tree", "-r", "-z", "--full-tree", g.rev(), "--", name)
	if err != nil {
		return nil, err
	}
	var entries []treeEntry
	for _, rec := range bytes.Split(out, []byte{0}) {
		if len(rec) == 0 {
			continue
		}
		meta, p, ok := bytes.Cut(rec, []byte{'\t'})
		f := strings.Fields(string(meta))
		if !ok || len(f) != 3 {
			return nil, fmt.Errorf("git ls-tree: unexpected record %q", rec)
		}
		mode, err := strconv.ParseInt(f[0], 8, 64)
		if err != nil {
			return nil, fmt.Errorf("git ls-tree: bad mode %q", f[0])
		}
		if f[1] != "blob" {
			// Submodules (commit entries) cannot be part of a build context.
			continue
		}
		entries = append(entries, treeEntry{mode: mode, oid: f[2], path: string(p)})
	}
	return entries, nil
}

func (g GitSource) blob(ctx context.Context, oid string) ([]byte, error) {
	return g.git(ctx, nil, "cat-file", "blob", oid)
}

// Tree implements Source. Symlinks in the tree are an error: the build
// context must be plain files.
func (g GitSource) Tree(ctx context.Context, dir string) (fs.FS, error) {
	dir = strings.TrimSuffix(path.Clean(dir), "/")
	entries, err := g.list(ctx, dir)
	if err != nil {
		return nil, err
	}
	files := fstest.MapFS{}
	for _, e := range entries {
		rel, ok := strings.CutPrefix(e.path, dir+"/")
		if !ok {
			continue
		}
		if e.mode == 0o120000 {
			return nil, fmt.Errorf("%s: %s is a symlink; the container context must hold plain files", g.Describe(), e.path)
		}
		data, err := g.blob(ctx, e.oid)
		if err != nil {
			return nil, err
		}
		files[rel] = mapFile(data, e.mode&0o111 != 0)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: %s: %w", g.Describe(), dir, fs.ErrNotExist)
	}
	return files, nil
}

// DirSource reads plain files from a directory (airut-sandbox with explicit
// paths, or a checkout that is not a git repository).
type DirSource struct{ Dir string }

// Describe implements Source.
func (d DirSource) Describe() string { return d.Dir }

// ReadFile implements Source.
func (d DirSource) ReadFile(_ context.Context, name string) ([]byte, error) {
	p := d.Dir + "/" + name
	info, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", p)
	}
	return os.ReadFile(p)
}

// Tree implements Source. The files are copied into memory so a later change
// on disk cannot make the hash and the build disagree.
func (d DirSource) Tree(_ context.Context, dir string) (fs.FS, error) {
	root := dir
	if !strings.HasPrefix(dir, "/") {
		root = d.Dir + "/" + dir
	}
	files := fstest.MapFS{}
	err := fs.WalkDir(os.DirFS(root), ".", func(name string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			return nil
		}
		if !e.Type().IsRegular() {
			return fmt.Errorf("%s/%s is not a regular file (symlinks are not allowed in the container context)", root, name)
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(root + "/" + name)
		if err != nil {
			return err
		}
		files[name] = mapFile(data, info.Mode()&0o111 != 0)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return files, nil
}

func mapFile(data []byte, exec bool) *fstest.MapFile {
	mode := fs.FileMode(0o644)
	if exec {
		mode = 0o755
	}
	return &fstest.MapFile{Data: data, Mode: mode}
}
