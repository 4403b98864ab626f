package testkit

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/airut/airut/internal/claudecli"
)

// ClaudeVersion is the Claude Code release the tests run: the one place it
// is pinned. `make test` installs it (go run ./internal/testkit/installclaude)
// and the real-CLI tests use that install.
const ClaudeVersion = "2.1.332"

// ClaudeImageName is the repository of the offline image the real CLI runs
// in: the base image plus the glibc files its native executable links.
const ClaudeImageName = "localhost/airut-test-claude"

// ClaudeCacheDir is where tests keep installed Claude Code versions:
// $AIRUT_CLAUDE_CACHE, else ~/.cache/airut/claude-binaries, so a machine
// downloads a version once, not once per run.
func ClaudeCacheDir() (string, error) {
	if d := os.Getenv("AIRUT_CLAUDE_CACHE"); d != "" {
		return d, nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "airut", "claude-binaries"), nil
}

// InstallClaude installs the pinned version from the npm registry into the
// cache through the same installer the gateway uses (so CI exercises it),
// and returns the executable's path.
func InstallClaude(ctx context.Context, logger *slog.Logger) (string, error) {
	dir, err := ClaudeCacheDir()
	if err != nil {
		return "", err
	}
	in := &claudecli.Installer{Dir: dir, Registry: os.Getenv("AIRUT_CLAUDE_REGISTRY"), Logger: logger}
	return in.Install(ctx, ClaudeVersion)
}

// RealClaude returns the pinned Claude Code executable for a test. Where
// it cannot be installed the test is skipped, except under CI=true, where
// it fails: `make test` installs it before the tests run.
func RealClaude(t testing.TB) string {
	t.Helper()
	p, err := InstallClaude(context.Background(), nil)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Claude Code %s: %v (CI=true: make test installs it)", ClaudeVersion, err)
		}
		t.Skipf("Claude Code %s not installed and not installable here: %v", ClaudeVersion, err)
	}
	return p
}

var (
	claudeImageMu   sync.Mutex
	claudeImageTags = map[string]string{}
)

// ClaudeImage returns the tag of an offline image in which the glibc
// build of Claude Code runs: the base image (busybox, test binaries) plus
// the dynamic loader and shared libraries that the executable at claude
// and bash link against, copied from this host, and bash itself (the
// CLI's Bash tool wants bash, not busybox ash). Nothing is pulled; the
// executable is not in the image: the sandbox mounts it, as in production.
func ClaudeImage(t testing.TB, engine, claude string) string {
	t.Helper()
	claudeImageMu.Lock()
	defer claudeImageMu.Unlock()
	if tag, ok := claudeImageTags[engine]; ok {
		return tag
	}
	bins, err := BuildBinaries()
	if err != nil {
		t.Fatal(err)
	}
	bash := "/bin/bash"
	if p, err := filepath.EvalSymlinks(bash); err == nil {
		bash = p
	}
	extra := map[string]string{"bin/bash": bash}
	for _, exe := range []string{claude, bash} {
		libs, err := sharedLibraries(exe)
		if err != nil {
			t.Fatalf("claude image: %v", err)
		}
		for imagePath, host := range libs {
			extra[imagePath] = host
		}
	}
	rootfs, err := rootfsTar(bins, extra)
	if err != nil {
		t.Fatalf("claude image: %v", err)
	}
	tag, err := importRootfs(context.Background(), engine, ClaudeImageName, rootfs)
	if err != nil {
		t.Fatalf("claude image: %v", err)
	}
	claudeImageTags[engine] = tag
	return tag
}

// libDirs are where Debian (multiarch) and other distributions keep
// shared libraries.
var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
	"/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// sharedLibraries returns what the dynamic executable exe needs to run: its
// ELF interpreter under the path it names, and every DT_NEEDED library,
// transitively, under the path it has on this host (image path → real
// host file). Read from the ELF headers, so no ldd is needed.
func sharedLibraries(exe string) (map[string]string, error) {
	f, err := elf.Open(exe)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", exe, err)
	}
	defer f.Close()
	out := map[string]string{}
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		data := make([]byte, p.Filesz)
		if _, err := p.ReadAt(data, 0); err != nil {
			return nil, fmt.Errorf("%s: interpreter: %w", exe, err)
		}
		interp := strings.TrimRight(string(data), "\x00")
		real, err := filepath.EvalSymlinks(interp)
		if err != nil {
			return nil, fmt.Errorf("%s wants the loader %s: %w", exe, interp, err)
		}
		out[strings.TrimPrefix(interp, "/")] = real
	}
	var walk func(path string) error
	seen := map[string]bool{}
	walk = func(path string) error {
		lf, err := elf.Open(path)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		needed, err := lf.ImportedLibraries()
		lf.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for _, lib := range needed {
			if seen[lib] {
				continue
			}
			seen[lib] = true
			found := ""
			for _, d := range libDirs {
				if _, err := os.Stat(filepath.Join(d, lib)); err == nil {
					found = filepath.Join(d, lib)
					break
				}
			}
			if found == "" {
				return fmt.Errorf("%s needs %s, which is not on this host", path, lib)
			}
			real, err := filepath.EvalSymlinks(found)
			if err != nil {
				return err
			}
			out[strings.TrimPrefix(found, "/")] = real
			if err := walk(real); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(exe); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New(exe + " is not a dynamic executable")
	}
	return out, nil
}
