package testkit

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// GitImageName is the repository of the offline image with Debian's git.
const GitImageName = "localhost/airut-test-git"

var (
	gitImageMu   sync.Mutex
	gitImageTags = map[string]string{}
)

// GitImage returns the tag of an offline image in which this host's git
// runs over smart HTTP: the base image (busybox, test binaries) plus
// /usr/bin/git, its exec path's git and git-remote-http(s), and the
// dynamic loader and shared libraries they link (libcurl with GnuTLS
// among them), copied from this host. Nothing is pulled.
func GitImage(t testing.TB, engine string) string {
	t.Helper()
	gitImageMu.Lock()
	defer gitImageMu.Unlock()
	if tag, ok := gitImageTags[engine]; ok {
		return tag
	}
	tag, err := ensureGitImage(context.Background(), engine)
	if err != nil {
		t.Fatalf("git image: %v", err)
	}
	gitImageTags[engine] = tag
	return tag
}

func ensureGitImage(ctx context.Context, engine string) (string, error) {
	bins, err := BuildBinaries()
	if err != nil {
		return "", err
	}
	gitBin, err := exec.LookPath("git")
	if err != nil {
		return "", fmt.Errorf("git not installed (make test-deps): %w", err)
	}
	if gitBin, err = filepath.EvalSymlinks(gitBin); err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, gitBin, "--exec-path").Output()
	if err != nil {
		return "", fmt.Errorf("git --exec-path: %w", err)
	}
	execPath := strings.TrimSpace(string(out))
	remote, err := filepath.EvalSymlinks(filepath.Join(execPath, "git-remote-http"))
	if err != nil {
		return "", fmt.Errorf("git's smart HTTP helper: %w", err)
	}
	rel := strings.TrimPrefix(execPath, "/")
	extra := map[string]string{
		"usr/bin/git":             gitBin,
		rel + "/git":              gitBin,
		rel + "/git-remote-http":  remote,
		rel + "/git-remote-https": remote,
	}
	for _, exe := range []string{gitBin, remote} {
		libs, err := sharedLibraries(exe)
		if err != nil {
			return "", err
		}
		for imagePath, host := range libs {
			extra[imagePath] = host
		}
	}
	rootfs, err := rootfsTar(bins, extra)
	if err != nil {
		return "", err
	}
	return importRootfs(ctx, engine, GitImageName, rootfs)
}
