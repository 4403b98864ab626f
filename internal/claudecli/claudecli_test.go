package claudecli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha1"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeRegistry is a local npm registry over HTTP: the dist-tag endpoint,
// abbreviated packuments, version manifests and tarballs, as
// registry.npmjs.org serves them for @anthropic-ai/claude-code.
type fakeRegistry struct {
	srv *httptest.Server

	mu        sync.Mutex
	tags      map[string]string
	versions  map[string][]byte // version → tarball
	integrity map[string]string // version → override of dist.integrity
	platforms map[string]bool   // platform packages asked for
	down      bool              // every request fails with 503
	noTagAPI  bool              // /-/package/…/dist-tags answers 404, as some mirrors do
	cutBody   bool              // tarball bodies stop half-way
	gets      map[string]int    // path → count
}

func newFakeRegistry(t *testing.T) *fakeRegistry {
	t.Helper()
	f := &fakeRegistry{tags: map[string]string{}, versions: map[string][]byte{}, integrity: map[string]string{},
		platforms: map[string]bool{}, gets: map[string]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeRegistry) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := r.URL.Path // npm accepts @scope/name and @scope%2fname alike
	f.gets[p]++
	if f.down {
		http.Error(w, "registry down", http.StatusServiceUnavailable)
		return
	}
	switch {
	case p == "/-/package/"+Package+"/dist-tags":
		if f.noTagAPI {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(f.tags)
	case p == "/"+Package:
		if r.Header.Get("Accept") != "application/vnd.npm.install-v1+json" {
			http.Error(w, "want the abbreviated packument", http.StatusNotAcceptable)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"name": Package, "dist-tags": f.tags})
	case strings.HasPrefix(p, "/tarballs/"):
		v := strings.TrimSuffix(strings.TrimPrefix(p, "/tarballs/"), ".tgz")
		data, ok := f.versions[v]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if f.cutBody {
			w.Header().Set("Content-Length", fmt.Sprint(len(data)))
			_, _ = w.Write(data[:len(data)/2])
			if hj, ok := w.(http.Hijacker); ok {
				c, _, _ := hj.Hijack()
				c.Close()
			}
			return
		}
		_, _ = w.Write(data)
	case strings.HasPrefix(p, "/"+Package+"-"):
		rest := strings.TrimPrefix(p, "/"+Package+"-")
		platform, v, ok := strings.Cut(rest, "/")
		data, known := f.versions[v]
		if !ok || !known {
			http.NotFound(w, r)
			return
		}
		f.platforms[platform] = true
		integrity := f.integrity[v]
		if integrity == "" {
			sum := sha512.Sum512(data)
			integrity = "sha512-" + base64.StdEncoding.EncodeToString(sum[:])
		}
		sha := sha1.Sum(data)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"name": Package + "-" + platform, "version": v,
			"dist": map[string]any{"integrity": integrity, "shasum": hex.EncodeToString(sha[:]),
				"tarball": f.srv.URL + "/tarballs/" + v + ".tgz"},
		})
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeRegistry) set(fn func(f *fakeRegistry)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeRegistry) count(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gets[path]
}

// publish adds a version whose executable is a script printing its version.
func (f *fakeRegistry) publish(t *testing.T, version string) []byte {
	t.Helper()
	exe := []byte("#!/bin/sh\necho '" + version + " (Claude Code)'\n")
	f.set(func(f *fakeRegistry) {
		f.versions[version] = tarball(t, map[string][]byte{"package/claude": exe, "package/package.json": []byte("{}")})
	})
	return exe
}

func tarball(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, data := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write(data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newInstaller(t *testing.T, reg *fakeRegistry) (*Installer, *clock) {
	t.Helper()
	clk := &clock{now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	return &Installer{Dir: t.TempDir(), Registry: reg.srv.URL, Platform: "linux-x64", Now: clk.Now}, clk
}

func TestInstallVerifiesAndReuses(t *testing.T) {
	reg := newFakeRegistry(t)
	exe := reg.publish(t, "2.1.5")
	in, _ := newInstaller(t, reg)
	path, err := in.Install(context.Background(), "2.1.5")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(in.Dir, "2.1.5", "claude"); path != want {
		t.Errorf("path = %s; want %s", path, want)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, exe) {
		t.Fatalf("installed executable: %q, %v; want %q", got, err, exe)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm()&0o111 == 0 {
		t.Errorf("mode %v: not executable", fi.Mode())
	}
	if _, err := in.Install(context.Background(), "2.1.5"); err != nil {
		t.Fatal(err)
	}
	if n := reg.count("/tarballs/2.1.5.tgz"); n != 1 {
		t.Errorf("tarball downloaded %d times; want once (then reused)", n)
	}
	if left := leftovers(t, in.Dir); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// leftovers lists what an install should not leave: downloads and stages.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestInstallRefusesBadIntegrity(t *testing.T) {
	other := sha512.Sum512([]byte("something else"))
	tests := []struct {
		name      string
		integrity string
		want      error
		wantText  string
	}{
		{"digest of other bytes", "sha512-" + base64.StdEncoding.EncodeToString(other[:]), ErrIntegrity, "integrity check failed"},
		{"sha1 only", "sha1-" + base64.StdEncoding.EncodeToString(make([]byte, 20)), nil, "no sha512 digest"},
		{"malformed", "sha512-!!!", nil, "not a valid sha512 digest"},
		{"missing", "", nil, "no sha512 digest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := newFakeRegistry(t)
			reg.publish(t, "2.1.5")
			integrity := tc.integrity
			if integrity == "" {
				integrity = " "
			}
			reg.set(func(f *fakeRegistry) { f.integrity["2.1.5"] = integrity })
			in, _ := newInstaller(t, reg)
			_, err := in.Install(context.Background(), "2.1.5")
			if err == nil || !strings.Contains(err.Error(), tc.wantText) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("Install: %v; want an error with %q", err, tc.wantText)
			}
			if in.Installed("2.1.5") {
				t.Errorf("a version that failed verification counts as installed")
			}
			if left := leftovers(t, in.Dir); len(left) > 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

func TestInstallInterruptedDownload(t *testing.T) {
	reg := newFakeRegistry(t)
	reg.publish(t, "2.1.5")
	reg.set(func(f *fakeRegistry) { f.cutBody = true })
	in, _ := newInstaller(t, reg)
	if _, err := in.Install(context.Background(), "2.1.5"); err == nil {
		t.Fatal("Install of a cut-off download succeeded")
	}
	if in.Installed("2.1.5") || len(leftovers(t, in.Dir)) > 0 {
		t.Fatalf("a failed download left something behind: installed=%v %v", in.Installed("2.1.5"), leftovers(t, in.Dir))
	}
	reg.set(func(f *fakeRegistry) { f.cutBody = false })
	if _, err := in.Install(context.Background(), "2.1.5"); err != nil {
		t.Fatalf("retry after the registry recovered: %v", err)
	}
}

func TestInstallTarballWithoutBinary(t *testing.T) {
	reg := newFakeRegistry(t)
	reg.set(func(f *fakeRegistry) {
		f.versions["2.1.5"] = tarball(t, map[string][]byte{"package/README.md": []byte("hi")})
	})
	in, _ := newInstaller(t, reg)
	if _, err := in.Install(context.Background(), "2.1.5"); err == nil || !strings.Contains(err.Error(), "no package/claude") {
		t.Fatalf("Install: %v; want a missing-binary error", err)
	}
}

func TestInstallUnknownVersion(t *testing.T) {
	reg := newFakeRegistry(t)
	in, _ := newInstaller(t, reg)
	if _, err := in.Install(context.Background(), "9.9.9"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Install: %v; want ErrNotFound", err)
	}
	if _, err := in.Install(context.Background(), "../x"); err == nil {
		t.Fatal("Install accepted a path as a version")
	}
}

func TestInstallPlatformPackage(t *testing.T) {
	reg := newFakeRegistry(t)
	reg.publish(t, "2.1.5")
	in, _ := newInstaller(t, reg)
	in.Platform = "linux-arm64-musl"
	if _, err := in.Install(context.Background(), "2.1.5"); err != nil {
		t.Fatal(err)
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if !reg.platforms["linux-arm64-musl"] || len(reg.platforms) != 1 {
		t.Errorf("platform packages asked for: %v; want only linux-arm64-musl", reg.platforms)
	}
}

func TestHostPlatform(t *testing.T) {
	p, err := HostPlatform()
	if err != nil {
		t.Skipf("no Claude Code build for this host: %v", err)
	}
	switch p {
	case "linux-x64", "linux-arm64", "linux-x64-musl", "linux-arm64-musl":
	default:
		t.Errorf("HostPlatform = %q", p)
	}
}

func TestConcurrentInstallsDownloadOnce(t *testing.T) {
	reg := newFakeRegistry(t)
	reg.publish(t, "2.1.5")
	in, _ := newInstaller(t, reg)
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 8 {
		wg.Go(func() {
			if _, err := in.Install(context.Background(), "2.1.5"); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d concurrent installs failed", failed.Load())
	}
	if n := reg.count("/tarballs/2.1.5.tgz"); n != 1 {
		t.Errorf("tarball downloaded %d times; want once", n)
	}
}

func TestResolveTags(t *testing.T) {
	reg := newFakeRegistry(t)
	reg.set(func(f *fakeRegistry) { f.tags = map[string]string{"latest": "2.1.5", "next": "2.2.0"} })
	in, clk := newInstaller(t, reg)
	ctx := context.Background()
	tagURL := "/-/package/" + Package + "/dist-tags"

	if v, err := in.Resolve(ctx, "2.0.1"); err != nil || v != "2.0.1" {
		t.Fatalf("Resolve(2.0.1) = %q, %v; a version resolves to itself", v, err)
	}
	if reg.count(tagURL) != 0 {
		t.Errorf("a version number asked the registry")
	}
	if v, err := in.Resolve(ctx, "latest"); err != nil || v != "2.1.5" {
		t.Fatalf("Resolve(latest) = %q, %v; want 2.1.5", v, err)
	}
	reg.set(func(f *fakeRegistry) { f.tags["latest"] = "2.1.6" })
	clk.add(59 * time.Minute)
	if v, _ := in.Resolve(ctx, "latest"); v != "2.1.5" || reg.count(tagURL) != 1 {
		t.Errorf("within the hour: got %q after %d lookups; want the remembered 2.1.5 and one lookup", v, reg.count(tagURL))
	}
	clk.add(2 * time.Minute)
	if v, _ := in.Resolve(ctx, "latest"); v != "2.1.6" || reg.count(tagURL) != 2 {
		t.Errorf("after the hour: got %q after %d lookups; want 2.1.6 from a second lookup", v, reg.count(tagURL))
	}

	// A new installer on the same directory (a restart) remembers too, and
	// falls back to it when the registry is down.
	reg.set(func(f *fakeRegistry) { f.down = true })
	clk.add(2 * time.Hour)
	again := &Installer{Dir: in.Dir, Registry: reg.srv.URL, Platform: "linux-x64", Now: clk.Now}
	if v, err := again.Resolve(ctx, "latest"); err != nil || v != "2.1.6" {
		t.Errorf("registry down: Resolve = %q, %v; want the last resolved 2.1.6", v, err)
	}
	if _, err := again.Resolve(ctx, "stable"); err == nil {
		t.Errorf("registry down and stable never resolved: want an error")
	}

	reg.set(func(f *fakeRegistry) { f.down = false })
	_, err := again.Resolve(ctx, "stable")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "latest, next") {
		t.Errorf("a tag the registry lacks: %v; want ErrNotFound naming the tags it has", err)
	}
	if _, err := again.Resolve(ctx, "newest"); err == nil {
		t.Errorf("Resolve(newest): want an error")
	}
}

func TestResolveWithoutTagEndpoint(t *testing.T) {
	reg := newFakeRegistry(t)
	reg.set(func(f *fakeRegistry) { f.tags = map[string]string{"stable": "2.1.4"}; f.noTagAPI = true })
	in, _ := newInstaller(t, reg)
	if v, err := in.Resolve(context.Background(), "stable"); err != nil || v != "2.1.4" {
		t.Fatalf("Resolve(stable) from the packument = %q, %v; want 2.1.4", v, err)
	}
}

func TestRegistryUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	in := &Installer{Dir: t.TempDir(), Registry: "http://" + addr, Platform: "linux-x64"}
	if _, _, err := in.Binary(context.Background(), "latest"); err == nil {
		t.Fatal("Binary with no registry and nothing remembered succeeded")
	}
}

func TestBinaryAndGC(t *testing.T) {
	reg := newFakeRegistry(t)
	for _, v := range []string{"2.1.3", "2.1.4", "2.1.5"} {
		reg.publish(t, v)
	}
	reg.set(func(f *fakeRegistry) { f.tags = map[string]string{"latest": "2.1.5"} })
	in, clk := newInstaller(t, reg)
	ctx := context.Background()
	for _, want := range []string{"2.1.3", "2.1.4", "latest"} {
		if _, _, err := in.Binary(ctx, want); err != nil {
			t.Fatal(err)
		}
	}
	// A stage of an install that crashed long ago, and one in progress.
	old := filepath.Join(in.Dir, ".2.1.9.stage-1")
	fresh := filepath.Join(in.Dir, ".2.1.9.stage-2")
	for _, d := range []string{old, fresh} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	clk.add(2 * time.Hour)
	if err := os.Chtimes(old, clk.Now().Add(-2*time.Hour), clk.Now().Add(-2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(fresh, clk.Now(), clk.Now()); err != nil {
		t.Fatal(err)
	}
	removed, err := in.GC([]string{"2.1.4", in.LastResolved("latest")})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"2.1.3"}, removed); diff != "" {
		t.Errorf("removed (-want +got):\n%s", diff)
	}
	versions, _ := in.Versions()
	if diff := cmp.Diff([]string{"2.1.4", "2.1.5"}, versions); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("an old install stage survived GC")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("an install stage in progress was removed: %v", err)
	}
}

func TestLocate(t *testing.T) {
	reg := newFakeRegistry(t)
	reg.publish(t, "2.1.5")
	in, _ := newInstaller(t, reg)
	ctx := context.Background()
	dir := t.TempDir()
	own := filepath.Join(dir, "claude-own")
	if err := os.WriteFile(own, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(own, link); err != nil {
		t.Fatal(err)
	}
	pathDir := t.TempDir()
	onPath := filepath.Join(pathDir, "claude")
	if err := os.WriteFile(onPath, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}

	t.Setenv("PATH", pathDir)
	tests := []struct {
		name            string
		binary, version string
		want            Located
		wantErr         string
	}{
		{"binary through a symlink", link, "", Located{Path: own, From: FromBinary}, ""},
		{"version", "", "2.1.5", Located{Path: in.Path("2.1.5"), Version: "2.1.5", From: FromVersion}, ""},
		{"PATH", "", "", Located{Path: onPath, From: FromPath}, ""},
		{"dangling binary", filepath.Join(dir, "missing"), "", Located{}, "claude_binary"},
		{"directory as binary", dir, "", Located{}, "not a file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := in.Locate(ctx, tc.binary, tc.version)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Locate: %v; want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Locate (-want +got):\n%s", diff)
			}
		})
	}
	t.Setenv("PATH", t.TempDir())
	if _, err := in.Locate(ctx, "", ""); !errors.Is(err, ErrNoClaude) {
		t.Errorf("nothing configured or on PATH: %v; want ErrNoClaude", err)
	}
}
