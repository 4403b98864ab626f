// Package testkit holds what the tests share: the offline base image
// (busybox-static plus the project's own static test binaries, imported with
// `podman import`, never pulled), throwaway git repositories with an .airut/
// folder, and the prerequisites check that makes CI fail instead of skip.
package testkit

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// BaseImageName is the repository of the offline test base image.
const BaseImageName = "localhost/airut-test-base"

// Busybox is where Debian's busybox-static puts its binary.
const Busybox = "/bin/busybox"

// TestBinaries are the project's static helper programs copied into the base
// image at /usr/local/bin, by package path relative to the module root.
var TestBinaries = map[string]string{
	"fakeclaude":  "internal/testkit/fakeclaude",
	"tkhttp":      "internal/testkit/tkhttp",
	"tkaws":       "internal/testkit/tkaws",
	"airut-proxy": "cmd/airut-proxy",
}

// ModuleRoot finds the directory holding go.mod, from this source file.
func ModuleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// BuildBinaries compiles the static test binaries once per test process
// into a temporary directory, or uses prebuilt ones from $AIRUT_TESTBIN_DIR
// (CI builds them as root before running the rootless suite as a user who
// has no Go toolchain cache).
func BuildBinaries() (string, error) {
	binOnce.Do(func() {
		if d := os.Getenv("AIRUT_TESTBIN_DIR"); d != "" {
			binDir = d
			return
		}
		dir, err := os.MkdirTemp("", "airut-testbin-")
		if err != nil {
			binErr = err
			return
		}
		binDir = dir
		binErr = BuildInto(context.Background(), dir)
	})
	return binDir, binErr
}

// BuildInto compiles every test binary, statically, into dir.
func BuildInto(ctx context.Context, dir string) error {
	root := ModuleRoot()
	names := make([]string, 0, len(TestBinaries))
	for n := range TestBinaries {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		pkg := "./" + TestBinaries[name]
		if m, _ := filepath.Glob(filepath.Join(root, TestBinaries[name], "*.go")); len(m) == 0 {
			continue // not in this tree (yet)
		}
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, name), pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v\n%s", pkg, err, out)
		}
	}
	return nil
}

var (
	imageMu   sync.Mutex
	imageTags = map[string]string{}
)

// BaseImage returns the tag of the offline base image, importing it on the
// first call. The tag carries a hash of its content, so concurrent test
// processes agree on it and a changed binary gives a new image.
func BaseImage(t testing.TB, engine string) string {
	t.Helper()
	tag, err := EnsureBaseImage(context.Background(), engine)
	if err != nil {
		t.Fatalf("base image: %v", err)
	}
	return tag
}

// EnsureBaseImage is BaseImage for code that has no testing.TB (benchmarks
// set up in TestMain, CI scripts).
func EnsureBaseImage(ctx context.Context, engine string) (string, error) {
	imageMu.Lock()
	defer imageMu.Unlock()
	if tag, ok := imageTags[engine]; ok {
		return tag, nil
	}
	bins, err := BuildBinaries()
	if err != nil {
		return "", err
	}
	rootfs, err := rootfsTar(bins, nil)
	if err != nil {
		return "", err
	}
	tag, err := importRootfs(ctx, engine, BaseImageName, rootfs)
	if err != nil {
		return "", err
	}
	imageTags[engine] = tag
	return tag, nil
}

// importRootfs imports a root file system tar as name:<content hash>,
// unless that image exists already.
func importRootfs(ctx context.Context, engine, name string, rootfs []byte) (string, error) {
	sum := sha256.Sum256(rootfs)
	tag := name + ":" + hex.EncodeToString(sum[:])[:16]
	if exec.CommandContext(ctx, engine, "image", "exists", tag).Run() == nil {
		return tag, nil
	}
	cmd := exec.CommandContext(ctx, engine, "import", "--change", "CMD [\"/bin/sh\"]",
		"--change", "ENV PATH=/usr/local/bin:/usr/bin:/bin", "-", tag)
	cmd.Stdin = bytes.NewReader(rootfs)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s import: %v: %s", engine, err, out)
	}
	return tag, nil
}

// rootfsTar builds a minimal root file system: busybox with a link per
// applet, the test binaries, the few files tools expect, and extra host
// files (image path → host path; a host file replaces a busybox link of
// the same name).
func rootfsTar(binDir string, extra map[string]string) ([]byte, error) {
	bb, err := os.ReadFile(Busybox)
	if err != nil {
		return nil, fmt.Errorf("%s (install busybox-static): %w", Busybox, err)
	}
	out, err := exec.Command(Busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64) {
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode})
	}
	file := func(name string, mode int64, data []byte) {
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))})
		_, _ = tw.Write(data)
	}
	baseDirs := []string{"bin", "etc", "root", "usr", "usr/bin", "usr/local", "usr/local/bin", "var", "workspace", "etc/ssl", "etc/ssl/certs"}
	for _, d := range baseDirs {
		dir(d, 0o755)
	}
	dir("tmp", 0o1777)
	file("bin/busybox", 0o755, bb)
	for _, applet := range strings.Fields(string(out)) {
		if _, replaced := extra["bin/"+applet]; applet == "busybox" || replaced {
			continue
		}
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + applet, Linkname: "busybox", Mode: 0o777})
	}
	file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
	file("etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n"))
	// An empty system bundle, so the entrypoint's CA bundle logic has the
	// same shape as on a Debian image.
	file("etc/ssl/certs/ca-certificates.crt", 0o644, nil)
	entries, err := os.ReadDir(binDir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(binDir, e.Name()))
		if err != nil {
			return nil, err
		}
		file("usr/local/bin/"+e.Name(), 0o755, data)
	}
	paths := make([]string, 0, len(extra))
	for p := range extra {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	made := map[string]bool{"tmp": true}
	for _, d := range baseDirs {
		made[d] = true
	}
	var dirs []string
	for _, p := range paths {
		for d := filepath.Dir(p); d != "." && !made[d]; d = filepath.Dir(d) {
			made[d] = true
			dirs = append(dirs, d)
		}
	}
	sort.Strings(dirs) // parents before children
	for _, d := range dirs {
		dir(d, 0o755)
	}
	for _, p := range paths {
		data, err := os.ReadFile(extra[p])
		if err != nil {
			return nil, err
		}
		file(p, 0o755, data)
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// RequireEngine returns the container engine for tests, or skips the test
// when none is installed, except under CI=true, where a missing
// prerequisite fails the run: CI installs them.
func RequireEngine(t testing.TB) string {
	t.Helper()
	engine := os.Getenv("AIRUT_TEST_ENGINE")
	if engine == "" {
		engine = "podman"
	}
	if _, err := exec.LookPath(engine); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found on PATH and CI=true: CI must install it (make test-deps)", engine)
		}
		t.Skipf("%s not installed; run `make test-deps` (CI installs it)", engine)
	}
	if _, err := os.Stat(Busybox); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s missing and CI=true: install busybox-static", Busybox)
		}
		t.Skipf("%s missing; run `make test-deps`", Busybox)
	}
	return engine
}

// Leftovers lists the containers named prefix-… and the task networks
// prefix-conv… that the engine still has: what a test left behind. A
// container started with --rm is removed by the engine shortly after it
// stops, not at once, so what goes within a few seconds is not counted.
func Leftovers(engine, prefix string) []string {
	deadline := time.Now().Add(15 * time.Second)
	for {
		var left []string
		for _, args := range [][]string{
			{"ps", "-a", "--filter", "name=^" + prefix + "-", "--format", "container {{.Names}}"},
			{"network", "ls", "--filter", "name=^" + prefix + "-conv", "--format", "network {{.Name}}"},
		} {
			out, err := exec.Command(engine, args...).CombinedOutput()
			if err != nil {
				left = append(left, fmt.Sprintf("%s %s: %v: %s", engine, args[0], err, bytes.TrimSpace(out)))
				continue
			}
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if l != "" {
					left = append(left, l)
				}
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(200 * time.Millisecond)
	}
}
