// Package repoconfig reads a repository's .airut/ folder: the container
// build context, the network allowlist and sandbox.yaml. For the gateway
// they come from one commit of the bare mirror's default branch (git
// objects, never the agent's workspace); for airut-sandbox from one commit
// of a trusted ref of the CI's clone (the base branch, never the pull
// request under test), or explicit files. The git side is
// gitmirror.Revision, which satisfies Source; this package does not run
// git itself.
package repoconfig

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"testing/fstest"
)

// Well-known paths inside a repository.
const (
	DefaultContainerPath = ".airut/container"
	AllowlistPath        = ".airut/network-allowlist.yaml"
	SandboxPath          = ".airut/sandbox.yaml"
)

// Source reads files of one revision of a repository. Every read of one
// Source must see the same revision: a task reads its container context
// and its allowlist from the same commit.
type Source interface {
	// ReadFile returns a file's content; a missing file is fs.ErrNotExist.
	ReadFile(ctx context.Context, name string) ([]byte, error)
	// Tree returns every file under dir as a read-only file system; a
	// missing dir is fs.ErrNotExist.
	Tree(ctx context.Context, dir string) (fs.FS, error)
	// Describe names the source in errors ("HEAD of /repo").
	Describe() string
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
