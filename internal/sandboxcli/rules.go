package sandboxcli

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/airut/airut/internal/gitmirror"
	"github.com/airut/airut/internal/repoconfig"
)

// rules is where one run reads the sandbox's own rules (.airut/: the
// container context, the allowlist, sandbox.yaml) from (S2). In CI the
// working tree is the pull request under test, so by default the rules
// come from a trusted ref, never from the checkout.
type rules struct {
	src repoconfig.Source
	// top is the repository's top directory (the working directory when
	// it is in no repository); rel is the working directory relative to
	// it, which relative path flags start from.
	top, rel string
	// trusted is false when the rules come from the code under test;
	// why then says how that came about.
	trusted bool
	why     string
	// ref and commit name the revision read; both empty for a plain
	// directory.
	ref, commit string
	// stderr receives the warning for a file given by absolute path that
	// lies inside the checkout (the code under test too); nil: none.
	stderr io.Writer
}

// baseRefEnv is set by GitHub Actions on pull_request events to the
// branch the pull request targets.
const baseRefEnv = "GITHUB_BASE_REF"

// resolveRules picks the rules' source for a run in cwd (S2): --config-ref
// when given; else origin/$GITHUB_BASE_REF when that is set; else
// origin/HEAD, the clone's default branch. HEAD, the code under test, is
// used only when asked for (--config-ref HEAD) or when the repository has
// no remote at all, and is marked untrusted. A trusted ref that is missing
// is an error saying how to fetch it; it never falls back to HEAD.
func resolveRules(ctx context.Context, cwd, configRef string, getenv func(string) string) (*rules, error) {
	top, ok, err := gitmirror.TopLevel(ctx, cwd)
	if err != nil {
		return nil, fmt.Errorf("find the git repository of %s: %w", cwd, err)
	}
	if !ok {
		if configRef != "" {
			return nil, fmt.Errorf("--config-ref %s: %s is not in a git repository", configRef, cwd)
		}
		return &rules{src: repoconfig.DirSource{Dir: cwd}, top: cwd, rel: ".",
			why: "the directory is not a git repository"}, nil
	}
	r := &rules{top: top, rel: relativeTo(top, cwd)}
	var what string // the trusted ref, as the user would name it
	switch base := getenv(baseRefEnv); {
	case configRef == "HEAD":
		r.ref, r.why = "HEAD", "--config-ref HEAD"
	case configRef != "":
		r.ref, r.trusted, what = remoteRef(ctx, top, configRef), true, "--config-ref "+configRef
	case base != "":
		// A pull request's CI: the base branch is the trusted ref even if
		// the remote has gone missing (fail closed, never HEAD).
		r.ref, r.trusted = "refs/remotes/origin/"+base, true
		what = "origin/" + base + ", the pull request's base branch (" + baseRefEnv + ")"
	default:
		remotes, err := gitmirror.Remotes(ctx, top)
		if err != nil {
			return nil, fmt.Errorf("list the remotes of %s: %w", top, err)
		}
		if len(remotes) == 0 {
			r.ref, r.why = "HEAD", "the repository has no remote"
		} else {
			r.ref, r.trusted = "refs/remotes/origin/HEAD", true
			what = "origin/HEAD, the default branch"
			// Named by the branch it stands for, in messages and logs.
			if t := gitmirror.SymbolicRef(ctx, top, r.ref); strings.HasPrefix(t, "refs/remotes/origin/") {
				r.ref = t
			}
		}
	}
	rev, err := gitmirror.Resolve(ctx, top, r.ref)
	if err != nil {
		if !r.trusted {
			return nil, fmt.Errorf("read the rules from HEAD: %w", err)
		}
		return nil, fmt.Errorf("trusted ref %s is not in the clone %s: %s", what, top, fetchHint(ctx, top, r.ref))
	}
	rev.Name = strings.TrimPrefix(r.ref, "refs/remotes/")
	r.src, r.commit = rev, rev.Commit
	return r, nil
}

// remoteRef spells REMOTE/BRANCH out as refs/remotes/REMOTE/BRANCH when
// REMOTE is a remote of the clone, so that no local branch or tag of that
// name (which git would prefer) stands in for it.
func remoteRef(ctx context.Context, top, ref string) string {
	remote, _, ok := strings.Cut(ref, "/")
	if !ok || strings.HasPrefix(ref, "refs/") {
		return ref
	}
	if remotes, err := gitmirror.Remotes(ctx, top); err == nil && slices.Contains(remotes, remote) {
		return "refs/remotes/" + ref
	}
	return ref
}

// fetchHint says how to get a missing ref into the clone.
func fetchHint(ctx context.Context, top, ref string) string {
	remotes, _ := gitmirror.Remotes(ctx, top)
	name := strings.TrimPrefix(ref, "refs/remotes/")
	remote, branch, ok := strings.Cut(name, "/")
	if !ok || !slices.Contains(remotes, remote) {
		if !slices.Contains(remotes, "origin") {
			return "this clone has no remote named origin: name the trusted ref with --config-ref REMOTE/BRANCH"
		}
		return fmt.Sprintf("fetch it with `git fetch origin %s` and name it --config-ref origin/%s", name, name)
	}
	if branch != "HEAD" {
		return fmt.Sprintf("fetch it with `git fetch %s %s`", remote, branch)
	}
	if target, ok := strings.CutPrefix(gitmirror.SymbolicRef(ctx, top, ref), "refs/remotes/"+remote+"/"); ok {
		return fmt.Sprintf("fetch it with `git fetch %s %s`", remote, target)
	}
	return fmt.Sprintf("%s/HEAD is not set in this clone: fetch the default branch and record it "+
		"(`git fetch %s BRANCH && git remote set-head %s BRANCH`), or name it with --config-ref %s/BRANCH",
		remote, remote, remote, remote)
}

// relativeTo is dir relative to top ("." for top itself); git reports top
// with symlinks resolved, so dir is resolved too.
func relativeTo(top, dir string) string {
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	rel, err := filepath.Rel(top, dir)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "."
	}
	return rel
}

// describe names the rules' source for logs: "origin/main at commit
// 3f2a… of /repo".
func (r *rules) describe() string {
	if r.commit == "" {
		return "the directory " + r.top
	}
	return fmt.Sprintf("%s at commit %s of %s", strings.TrimPrefix(r.ref, "refs/remotes/"), r.commit, r.top)
}

// repoPath is a relative path flag as a path in the repository: relative
// to the working directory, inside the repository.
func (r *rules) repoPath(flag, p string) (string, error) {
	rp := path.Join(filepath.ToSlash(r.rel), filepath.ToSlash(p))
	if rp == ".." || strings.HasPrefix(rp, "../") {
		return "", fmt.Errorf("%s %s: outside the repository (give an absolute path to read a file from disk)", flag, p)
	}
	return rp, nil
}

// onDisk notes an absolute path flag's file; one inside the checkout is
// the code under test. It reports whether the file is trusted.
func (r *rules) onDisk(flag, p string) bool {
	real := p
	if rp, err := filepath.EvalSymlinks(p); err == nil {
		real = rp
	}
	rel, err := filepath.Rel(r.top, real)
	inside := err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
	if inside && r.stderr != nil {
		fmt.Fprintf(r.stderr, "airut-sandbox: WARNING: %s %s is a file of the checkout under test: "+
			"a change to it in this checkout takes effect\n", flag, p)
	}
	return !inside
}

// readFile reads a path flag's file: a relative path is read from the
// rules' source, like the defaults; an absolute one from disk. It returns
// the name to use in messages and whether the content is trusted.
func (r *rules) readFile(ctx context.Context, flag, p string) (data []byte, name string, trusted bool, err error) {
	if filepath.IsAbs(p) {
		trusted = r.onDisk(flag, p)
		data, err = os.ReadFile(p)
		if err != nil {
			return nil, "", false, fmt.Errorf("%s: %w", flag, err)
		}
		return data, p, trusted, nil
	}
	rp, err := r.repoPath(flag, p)
	if err != nil {
		return nil, "", false, err
	}
	data, err = r.src.ReadFile(ctx, rp)
	if err != nil {
		return nil, "", false, fmt.Errorf("%s %s: %w", flag, p, err)
	}
	return data, rp, r.trusted, nil
}

// tree reads a directory flag's files, relative or absolute like readFile.
func (r *rules) tree(ctx context.Context, flag, dir string) (fs.FS, error) {
	if filepath.IsAbs(dir) {
		r.onDisk(flag, dir)
		t, err := repoconfig.DirSource{Dir: dir}.Tree(ctx, dir)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", flag, dir, err)
		}
		return t, nil
	}
	rp, err := r.repoPath(flag, dir)
	if err != nil {
		return nil, err
	}
	t, err := r.src.Tree(ctx, rp)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, dir, err)
	}
	return t, nil
}
