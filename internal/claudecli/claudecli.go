// Package claudecli installs Claude Code by version from the npm registry
// (SPEC S6 claude_version).
//
// Claude Code's npm package @anthropic-ai/claude-code is a thin wrapper;
// its native executable ships in one optional dependency per platform,
// @anthropic-ai/claude-code-linux-x64 (glibc), -linux-x64-musl,
// -linux-arm64 and -linux-arm64-musl. An Installer resolves a wanted
// version ("latest", "stable" or N.N.N) against the wrapper's dist-tags,
// downloads that version's platform tarball, verifies it against the
// registry's dist.integrity (sha512) before anything of it is used, and
// unpacks the executable to <dir>/<version>/claude, where it is reused.
//
// Tags are resolved at most once per TagTTL and remembered on disk; when
// the registry cannot be reached the last resolved version is used. A
// version directory appears only complete (written beside, renamed into
// place), so a crash mid-download leaves nothing that looks installed.
package claudecli

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/airut/airut/internal/atomicfile"
)

// DefaultRegistry is npm's public registry.
const DefaultRegistry = "https://registry.npmjs.org"

// Package is the wrapper package whose dist-tags name the releases.
const Package = "@anthropic-ai/claude-code"

// DefaultTagTTL is how long a resolved tag is trusted before the registry
// is asked again.
const DefaultTagTTL = time.Hour

// BinaryName is the executable's name inside a version directory.
const BinaryName = "claude"

// maxBinaryBytes bounds the unpacked executable (about 400 MB today): a
// registry answering with an endless stream cannot fill the disk.
const maxBinaryBytes = 2 << 30

// Sentinels callers can tell apart with errors.Is.
var (
	// ErrIntegrity: the tarball did not match the registry's integrity.
	ErrIntegrity = errors.New("integrity check failed")
	// ErrNotFound: the registry has no such version or tag.
	ErrNotFound = errors.New("not found in the registry")
)

var versionRE = regexp.MustCompile(`^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)

// IsTag reports whether want names a dist-tag rather than a version.
func IsTag(want string) bool { return want == "latest" || want == "stable" }

// Installer installs and finds Claude Code versions under Dir.
type Installer struct {
	// Dir holds one directory per installed version and tags.json
	// (<state>/claude-binaries). Required.
	Dir string
	// Registry is the npm registry base URL. Default DefaultRegistry.
	Registry string
	// Platform is the platform package suffix (linux-x64, linux-arm64-musl
	// …). Default HostPlatform().
	Platform string
	// Client makes the registry requests. Default: a client with timeouts
	// on every phase but the body (a tarball is large).
	Client *http.Client
	// TagTTL is how long a resolved tag is reused. Default DefaultTagTTL.
	TagTTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger gets one line per install and per tag fallback. Default:
	// discard.
	Logger *slog.Logger

	flight inflight
	tagMu  sync.Mutex // tags.json
}

func (in *Installer) registry() string {
	if in.Registry == "" {
		return DefaultRegistry
	}
	return strings.TrimRight(in.Registry, "/")
}

func (in *Installer) now() time.Time {
	if in.Now == nil {
		return time.Now()
	}
	return in.Now()
}

func (in *Installer) logger() *slog.Logger {
	if in.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return in.Logger
}

var defaultClient = &http.Client{Transport: &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	TLSHandshakeTimeout:   15 * time.Second,
	ResponseHeaderTimeout: 30 * time.Second,
	IdleConnTimeout:       30 * time.Second,
}}

func (in *Installer) client() *http.Client {
	if in.Client == nil {
		return defaultClient
	}
	return in.Client
}

func (in *Installer) platform() (string, error) {
	if in.Platform != "" {
		return in.Platform, nil
	}
	return HostPlatform()
}

// HostPlatform names the platform package matching this host: the CPU
// (x64 or arm64) and, on Linux, the C library (a musl host gets the -musl
// build, whose executable needs musl's loader).
func HostPlatform() (string, error) {
	var cpu string
	switch runtime.GOARCH {
	case "amd64":
		cpu = "x64"
	case "arm64":
		cpu = "arm64"
	default:
		return "", fmt.Errorf("claude_version: no Claude Code build for %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	if runtime.GOOS != "linux" {
		return "", fmt.Errorf("claude_version: no Claude Code build for %s/%s in this installer", runtime.GOOS, runtime.GOARCH)
	}
	if isMusl() {
		return "linux-" + cpu + "-musl", nil
	}
	return "linux-" + cpu, nil
}

// isMusl reports a musl host: musl's loader is present and glibc's is not
// (Alpine; a glibc host with musl-tools installed stays glibc).
func isMusl() bool {
	musl, _ := filepath.Glob("/lib/ld-musl-*.so.1")
	if len(musl) == 0 {
		return false
	}
	for _, p := range []string{"/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1", "/lib/x86_64-linux-gnu/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6"} {
		if _, err := os.Stat(p); err == nil {
			return false
		}
	}
	return true
}

// PlatformPackage is the npm package holding the executable for platform.
func PlatformPackage(platform string) string { return Package + "-" + platform }

// Binary returns the executable for want ("latest", "stable" or a
// version), installing it first when needed, and the version it is.
func (in *Installer) Binary(ctx context.Context, want string) (path, version string, err error) {
	version, err = in.Resolve(ctx, want)
	if err != nil {
		return "", "", err
	}
	path, err = in.Install(ctx, version)
	return path, version, err
}

// Resolve turns want into a version number. A version is returned as is;
// a tag is looked up at most once per TagTTL, and when the registry fails
// the last version it resolved to is used (logged).
func (in *Installer) Resolve(ctx context.Context, want string) (string, error) {
	if versionRE.MatchString(want) {
		return want, nil
	}
	if !IsTag(want) {
		return "", fmt.Errorf("claude_version %q: want a version (2.1.3), latest or stable", want)
	}
	in.tagMu.Lock()
	tags := in.loadTags()
	in.tagMu.Unlock()
	ttl := in.TagTTL
	if ttl == 0 {
		ttl = DefaultTagTTL
	}
	if t, ok := tags[want]; ok && in.now().Sub(t.Resolved) < ttl && t.Resolved.Before(in.now().Add(time.Minute)) {
		return t.Version, nil
	}
	version, err := in.flight.do(ctx, "tag:"+want, func() (string, error) { return in.fetchTag(ctx, want) })
	if err != nil {
		if t, ok := tags[want]; ok {
			in.logger().Warn("claude_version: registry unreachable; using the last resolved version",
				"tag", want, "version", t.Version, "resolved", t.Resolved, "error", err)
			return t.Version, nil
		}
		return "", err
	}
	in.tagMu.Lock()
	defer in.tagMu.Unlock()
	tags = in.loadTags()
	tags[want] = tagEntry{Version: version, Resolved: in.now()}
	if err := in.saveTags(tags); err != nil {
		in.logger().Warn("claude_version: could not remember the resolved tag", "tag", want, "error", err)
	}
	return version, nil
}

// LastResolved returns what tag resolved to last time, without asking the
// registry ("" when never resolved).
func (in *Installer) LastResolved(tag string) string {
	in.tagMu.Lock()
	defer in.tagMu.Unlock()
	return in.loadTags()[tag].Version
}

type tagEntry struct {
	Version  string    `json:"version"`
	Resolved time.Time `json:"resolved"`
}

func (in *Installer) tagsFile() string { return filepath.Join(in.Dir, "tags.json") }

func (in *Installer) loadTags() map[string]tagEntry {
	tags := map[string]tagEntry{}
	data, err := os.ReadFile(in.tagsFile())
	if err == nil {
		_ = json.Unmarshal(data, &tags) // a damaged file only costs a lookup
	}
	for k, t := range tags {
		if !versionRE.MatchString(t.Version) {
			delete(tags, k)
		}
	}
	return tags
}

func (in *Installer) saveTags(tags map[string]tagEntry) error {
	data, err := json.MarshalIndent(tags, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(in.Dir, 0o755); err != nil {
		return err
	}
	return atomicfile.Write(in.tagsFile(), data, 0o644)
}

// fetchTag asks the registry's dist-tag endpoint, then the abbreviated
// packument for registries (mirrors) that lack that endpoint.
func (in *Installer) fetchTag(ctx context.Context, tag string) (string, error) {
	var tags map[string]string
	err := in.getJSON(ctx, in.registry()+"/-/package/"+Package+"/dist-tags", "application/json", &tags)
	if err != nil {
		var doc struct {
			DistTags map[string]string `json:"dist-tags"`
		}
		if err2 := in.getJSON(ctx, in.registry()+"/"+escapePackage(Package), "application/vnd.npm.install-v1+json", &doc); err2 != nil {
			return "", fmt.Errorf("claude_version %s: %w", tag, errors.Join(err, err2))
		}
		tags = doc.DistTags
	}
	v, ok := tags[tag]
	if !ok {
		names := make([]string, 0, len(tags))
		for k := range tags {
			names = append(names, k)
		}
		sort.Strings(names)
		return "", fmt.Errorf("claude_version %s: %s has no dist-tag %q (it has: %s): %w",
			tag, Package, tag, strings.Join(names, ", "), ErrNotFound)
	}
	if !versionRE.MatchString(v) {
		return "", fmt.Errorf("claude_version %s: the registry's tag points to %q, not a version", tag, v)
	}
	return v, nil
}

// escapePackage writes a scoped name as npm's URLs want it (@scope%2fname).
func escapePackage(name string) string { return strings.Replace(name, "/", "%2f", 1) }

func (in *Installer) getJSON(ctx context.Context, u, accept string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", accept)
	resp, err := in.client().Do(req)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("registry: GET %s: %w", u, ErrNotFound)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("registry: GET %s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 32<<20)).Decode(v); err != nil {
		return fmt.Errorf("registry: GET %s: %w", u, err)
	}
	return nil
}

// Path is where version's executable is (or would be) installed.
func (in *Installer) Path(version string) string {
	return filepath.Join(in.Dir, version, BinaryName)
}

// Installed reports whether version is installed.
func (in *Installer) Installed(version string) bool {
	fi, err := os.Stat(in.Path(version))
	return err == nil && fi.Mode().IsRegular()
}

// Install makes sure version is installed and returns its executable.
// Concurrent calls for one version share one download.
func (in *Installer) Install(ctx context.Context, version string) (string, error) {
	if !versionRE.MatchString(version) {
		return "", fmt.Errorf("claude_version %q: not a version", version)
	}
	if in.Installed(version) {
		return in.Path(version), nil
	}
	_, err := in.flight.do(ctx, "install:"+version, func() (string, error) {
		if in.Installed(version) {
			return "", nil
		}
		return "", in.install(ctx, version)
	})
	if err != nil {
		return "", err
	}
	return in.Path(version), nil
}

type manifest struct {
	Version string `json:"version"`
	Dist    struct {
		Integrity string `json:"integrity"`
		Tarball   string `json:"tarball"`
	} `json:"dist"`
}

func (in *Installer) install(ctx context.Context, version string) error {
	platform, err := in.platform()
	if err != nil {
		return err
	}
	pkg := PlatformPackage(platform)
	var m manifest
	if err := in.getJSON(ctx, in.registry()+"/"+escapePackage(pkg)+"/"+version, "application/json", &m); err != nil {
		return fmt.Errorf("claude_version %s: %s: %w", version, pkg, err)
	}
	if m.Version != version {
		return fmt.Errorf("claude_version %s: the registry answered version %q", version, m.Version)
	}
	want, err := sha512Of(m.Dist.Integrity)
	if err != nil {
		return fmt.Errorf("claude_version %s: %s: %w", version, pkg, err)
	}
	if _, err := url.Parse(m.Dist.Tarball); err != nil || m.Dist.Tarball == "" {
		return fmt.Errorf("claude_version %s: %s has no tarball URL", version, pkg)
	}
	if err := os.MkdirAll(in.Dir, 0o755); err != nil {
		return err
	}
	started := in.now()
	tgz, err := in.download(ctx, m.Dist.Tarball, want)
	if err != nil {
		return fmt.Errorf("claude_version %s: %s: %w", version, pkg, err)
	}
	defer os.Remove(tgz)

	// Unpacked beside the final directory and renamed into place: an
	// interrupted install never looks installed.
	stage, err := os.MkdirTemp(in.Dir, "."+version+".stage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	if err := extractBinary(tgz, filepath.Join(stage, BinaryName)); err != nil {
		return fmt.Errorf("claude_version %s: %s: %w", version, pkg, err)
	}
	final := filepath.Join(in.Dir, version)
	if err := os.Rename(stage, final); err != nil {
		if in.Installed(version) {
			return nil // another process won the race with the same bytes
		}
		return fmt.Errorf("claude_version %s: %w", version, err)
	}
	in.logger().Info("installed Claude Code", "version", version, "package", pkg,
		"path", in.Path(version), "took", in.now().Sub(started).Round(time.Millisecond))
	return nil
}

// sha512Of picks the sha512 digest out of a Subresource Integrity string
// ("sha512-<base64>", possibly several space-separated hashes). Only
// sha512 is accepted: sha1 (the legacy shasum) is not a security check.
func sha512Of(integrity string) ([]byte, error) {
	for _, f := range strings.Fields(integrity) {
		algo, b64, ok := strings.Cut(f, "-")
		if !ok || algo != "sha512" {
			continue
		}
		if i := strings.IndexByte(b64, '?'); i >= 0 {
			b64 = b64[:i] // SRI options
		}
		sum, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(sum) != sha512.Size {
			return nil, fmt.Errorf("dist.integrity %q is not a valid sha512 digest", integrity)
		}
		return sum, nil
	}
	return nil, fmt.Errorf("dist.integrity %q has no sha512 digest: refusing an unverifiable download", integrity)
}

// download fetches the tarball to a temporary file and checks it against
// want; the file is removed unless it matched.
func (in *Installer) download(ctx context.Context, u string, want []byte) (path string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := in.client().Do(req)
	if err != nil {
		return "", fmt.Errorf("download: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("download %s: %s", u, resp.Status)
	}
	f, err := os.CreateTemp(in.Dir, ".download-*.tgz")
	if err != nil {
		return "", err
	}
	defer func() {
		f.Close()
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	h := sha512.New()
	if _, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(resp.Body, maxBinaryBytes)); err != nil {
		return "", fmt.Errorf("download %s: %w", u, err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if got := h.Sum(nil); !equal(got, want) {
		return "", fmt.Errorf("%s: got sha512-%s; the registry says sha512-%s: %w", u,
			base64.StdEncoding.EncodeToString(got), base64.StdEncoding.EncodeToString(want), ErrIntegrity)
	}
	return f.Name(), nil
}

func equal(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	var d byte
	for i := range a {
		d |= a[i] ^ b[i]
	}
	return d == 0
}

// extractBinary copies package/claude out of a verified npm tarball.
func extractBinary(tgz, dst string) error {
	f, err := os.Open(tgz)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("tarball: %w", err)
	}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return fmt.Errorf("tarball has no package/%s", BinaryName)
		}
		if err != nil {
			return fmt.Errorf("tarball: %w", err)
		}
		if hdr.Name != "package/"+BinaryName || hdr.Typeflag != tar.TypeReg {
			continue
		}
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, io.LimitReader(tr, maxBinaryBytes)); err != nil {
			out.Close()
			return fmt.Errorf("tarball: %w", err)
		}
		return out.Close()
	}
}

// Versions lists the installed versions.
func (in *Installer) Versions() ([]string, error) {
	entries, err := os.ReadDir(in.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && versionRE.MatchString(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// GC removes every installed version not in keep, and leftovers of
// interrupted installs older than an hour. It returns the versions
// removed.
func (in *Installer) GC(keep []string) ([]string, error) {
	entries, err := os.ReadDir(in.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	kept := map[string]bool{}
	for _, k := range keep {
		kept[k] = true
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		name := e.Name()
		p := filepath.Join(in.Dir, name)
		switch {
		case e.IsDir() && versionRE.MatchString(name):
			if kept[name] {
				continue
			}
			// A running container keeps its bind-mounted inode: removing
			// the file does not break a task that uses it.
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, err)
				continue
			}
			removed = append(removed, name)
		case strings.HasPrefix(name, "."):
			if fi, err := e.Info(); err == nil && in.now().Sub(fi.ModTime()) > time.Hour {
				os.RemoveAll(p)
			}
		}
	}
	sort.Strings(removed)
	return removed, errors.Join(errs...)
}

// inflight runs one call per key at a time and hands its result to every
// caller that asked meanwhile; a waiting caller gives up when its own
// context ends.
type inflight struct {
	mu    sync.Mutex
	calls map[string]*call
}

type call struct {
	done chan struct{}
	val  string
	err  error
}

func (f *inflight) do(ctx context.Context, key string, fn func() (string, error)) (string, error) {
	f.mu.Lock()
	if c, ok := f.calls[key]; ok {
		f.mu.Unlock()
		select {
		case <-c.done:
			return c.val, c.err
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	if f.calls == nil {
		f.calls = map[string]*call{}
	}
	c := &call{done: make(chan struct{})}
	f.calls[key] = c
	f.mu.Unlock()
	c.val, c.err = fn()
	f.mu.Lock()
	delete(f.calls, key)
	f.mu.Unlock()
	close(c.done)
	return c.val, c.err
}

// Where a repo's Claude Code executable comes from, as Located.From says.
const (
	FromBinary  = "claude_binary"
	FromVersion = "claude_version"
	FromPath    = "PATH"
)

// Located is the Claude Code executable a repo uses.
type Located struct {
	// Path is the executable on the host, symlinks resolved (the sandbox
	// bind-mounts it, and a mount follows links on the host).
	Path string
	// Version is the installed version for FromVersion; "" otherwise.
	Version string
	// From is FromBinary, FromVersion or FromPath.
	From string
}

// ErrNoClaude: no claude_binary, no claude_version, and no claude on PATH.
var ErrNoClaude = errors.New("no Claude Code: set claude_version (e.g. latest) or claude_binary, or put claude on PATH")

// Locate decides a repo's executable: binary (a host path: the repo's
// claude_binary, else execution.claude_binary) when set; else version,
// installed by in when needed; else `claude` found on PATH.
func (in *Installer) Locate(ctx context.Context, binary, version string) (Located, error) {
	switch {
	case binary != "":
		p, err := realFile(binary)
		if err != nil {
			return Located{}, fmt.Errorf("claude_binary: %w", err)
		}
		return Located{Path: p, From: FromBinary}, nil
	case version != "":
		p, v, err := in.Binary(ctx, version)
		if err != nil {
			return Located{}, err
		}
		return Located{Path: p, Version: v, From: FromVersion}, nil
	}
	found, err := exec.LookPath("claude")
	if err != nil {
		return Located{}, ErrNoClaude
	}
	p, err := realFile(found)
	if err != nil {
		return Located{}, fmt.Errorf("claude on PATH: %w", err)
	}
	return Located{Path: p, From: FromPath}, nil
}

// realFile resolves p to an absolute path without symlinks that names a
// regular file: a dangling link is a clear error here rather than a
// container start failure.
func realFile(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a file", real)
	}
	return real, nil
}
