package gitmirror

import (
	"context"
	"strings"
)

// Working-tree look-ups for airut-sandbox, which reads the rules of a CI
// checkout from one of its remote-tracking refs (S2): which repository holds
// a directory, which remotes it has, where a symbolic ref points.

// TopLevel returns the top directory of the working tree that holds dir.
// ok is false when dir is in no git repository; any other failure of git
// (git missing, a repository git refuses to read) is an error, so that a
// caller never mistakes a broken repository for a plain directory.
func TopLevel(ctx context.Context, dir string) (top string, ok bool, err error) {
	out, err := runGit(ctx, "", dir, nil, "rev-parse", "--show-toplevel")
	if err != nil {
		if strings.Contains(err.Error(), "not a git repository") {
			return "", false, nil
		}
		return "", false, err
	}
	return strings.TrimSpace(string(out)), true, nil
}

// Remotes lists the names of the remotes of the repository in dir.
func Remotes(ctx context.Context, dir string) ([]string, error) {
	out, err := runGit(ctx, "", dir, nil, "remote")
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(out)), nil
}

// SymbolicRef returns the ref that the symbolic ref name points at
// (refs/remotes/origin/HEAD → refs/remotes/origin/main), or "" when name is
// not a symbolic ref or does not exist.
func SymbolicRef(ctx context.Context, dir, name string) string {
	out, err := runGit(ctx, "", dir, nil, "symbolic-ref", "--quiet", name)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
