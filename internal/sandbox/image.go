package sandbox

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

//go:embed entrypoint.sh
var entrypointScript []byte

// EntrypointPath is where the overlay image puts the entrypoint script.
const EntrypointPath = "/usr/local/bin/airut-entrypoint"

// DefaultMaxImageAge is how old an image may get before it is rebuilt, so
// base-image security updates are picked up even when nothing changed.
const DefaultMaxImageAge = 24 * time.Hour

// Label keys put on everything the sandbox creates, so leftovers can be found.
const (
	labelImage = "io.airut.image"
	labelOwner = "io.airut.owner"
	labelKind  = "io.airut.prefix"
)

// ImageCache builds the two-layer task image (repo image, then the overlay
// with the entrypoint) at most once per content hash.
type ImageCache struct {
	rt *Runtime
	// Prefix names the images: "airut" for the gateway, "airut-cli" for
	// airut-sandbox, so the two never prune each other's.
	Prefix string
	// MaxAge forces a rebuild of images older than this; 0 means
	// DefaultMaxImageAge.
	MaxAge time.Duration
	// Now is the clock, injectable for tests.
	Now func() time.Time

	builds atomic.Int64

	mu       sync.Mutex
	inflight map[string]*imageFlight
	// proxyTags maps a proxy binary (path, size, mtime) to its image, known
	// to exist: proxy images never age, so each binary is read, hashed and
	// checked with the engine once per process, not on every task.
	proxyTags map[string]string
	// used records when this process last handed out each tag, so Prune
	// keeps the images that tasks still use.
	used map[string]time.Time
}

type imageFlight struct {
	done chan struct{}
	tag  string
	err  error
}

// NewImageCache returns a cache whose images are named after prefix.
func NewImageCache(rt *Runtime, prefix string) *ImageCache {
	return &ImageCache{rt: rt, Prefix: prefix, Now: time.Now, inflight: map[string]*imageFlight{},
		proxyTags: map[string]string{}, used: map[string]time.Time{}}
}

// Builds counts the image builds this cache has run (repo and overlay each
// count one); tests use it to prove the cache was hit.
func (c *ImageCache) Builds() int64 { return c.builds.Load() }

// ContextHash is the content hash of a build context: every regular file's
// path, executable bit and content, in lexical order.
func ContextHash(fsys fs.FS) (string, error) {
	h := sha256.New()
	err := walkContext(fsys, func(name string, mode fs.FileMode, data []byte) error {
		fmt.Fprintf(h, "%s\x00%o\x00%d\x00", name, mode&0o111, len(data))
		h.Write(data)
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// walkContext visits every regular file of a build context. Symlinks and
// other special files are refused: following one could pull a host file
// into the image.
func walkContext(fsys fs.FS, visit func(name string, mode fs.FileMode, data []byte) error) error {
	found := false
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("build context: %s is not a regular file (symlinks are not allowed)", name)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		if name == "Dockerfile" {
			found = true
		}
		return visit(name, info.Mode(), data)
	})
	if err != nil {
		return err
	}
	if !found {
		return errors.New("build context: no Dockerfile")
	}
	return nil
}

// Ensure returns the tag of the task image for a build context, building
// the repo image and the overlay if they are missing or older than MaxAge.
// Concurrent callers with the same context share one build.
func (c *ImageCache) Ensure(ctx context.Context, buildCtx fs.FS) (string, error) {
	hash, err := ContextHash(buildCtx)
	if err != nil {
		return "", err
	}
	return c.flight(ctx, hash, func() (string, error) { return c.ensure(ctx, hash, buildCtx) })
}

// markUsed notes that tags were handed out now, for Prune.
func (c *ImageCache) markUsed(tags ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range tags {
		c.used[t] = c.Now()
	}
}

// flight runs fn once for all concurrent callers with the same key.
func (c *ImageCache) flight(ctx context.Context, key string, fn func() (string, error)) (string, error) {
	c.mu.Lock()
	if f, ok := c.inflight[key]; ok {
		c.mu.Unlock()
		select {
		case <-f.done:
			return f.tag, f.err
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	f := &imageFlight{done: make(chan struct{})}
	c.inflight[key] = f
	c.mu.Unlock()

	f.tag, f.err = fn()
	close(f.done)
	c.mu.Lock()
	delete(c.inflight, key)
	c.mu.Unlock()
	return f.tag, f.err
}

func (c *ImageCache) ensure(ctx context.Context, hash string, buildCtx fs.FS) (string, error) {
	repoTag := fmt.Sprintf("localhost/%s-repo:%s", c.Prefix, hash[:24])
	oh := sha256.Sum256(append([]byte(repoTag+"\x00"), entrypointScript...))
	overlayTag := fmt.Sprintf("localhost/%s:%s", c.Prefix, hex.EncodeToString(oh[:])[:24])

	fresh, err := c.fresh(ctx, overlayTag)
	if err != nil {
		return "", err
	}
	if fresh {
		c.markUsed(overlayTag, repoTag)
		return overlayTag, nil
	}
	repoFresh, err := c.fresh(ctx, repoTag)
	if err != nil {
		return "", err
	}
	if !repoFresh {
		if err := c.buildFS(ctx, repoTag, buildCtx, "repository image from .airut/container/Dockerfile"); err != nil {
			return "", err
		}
	}
	if err := c.buildOverlay(ctx, overlayTag, repoTag); err != nil {
		return "", err
	}
	c.markUsed(overlayTag, repoTag)
	return overlayTag, nil
}

// fresh reports whether tag exists and is younger than MaxAge.
func (c *ImageCache) fresh(ctx context.Context, tag string) (bool, error) {
	out, err := c.rt.output(ctx, "image", "inspect", "--format", "{{.Created}}", tag)
	if err != nil {
		if isNoSuchImage(err) {
			return false, nil
		}
		return false, fmt.Errorf("inspect image %s: %w: %w", tag, err, ErrInfrastructure)
	}
	created, err := parseEngineTime(strings.TrimSpace(string(out)))
	if err != nil {
		// An unreadable date is treated as stale: rebuilding is safe.
		return false, nil
	}
	maxAge := c.MaxAge
	if maxAge <= 0 {
		maxAge = DefaultMaxImageAge
	}
	return c.Now().Sub(created) < maxAge, nil
}

func isNoSuchImage(err error) bool {
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "no such image") || strings.Contains(s, "image not known") ||
		strings.Contains(s, "no such object")
}

// parseEngineTime reads podman's Go time.String form and docker's RFC 3339.
func parseEngineTime(s string) (time.Time, error) {
	if i := strings.Index(s, " m=+"); i >= 0 {
		s = s[:i]
	}
	for _, layout := range []string{"2006-01-02 15:04:05.999999999 -0700 MST", time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("unrecognised image creation time %q", s)
}

// buildFS materialises a build context into a fresh directory and builds it.
func (c *ImageCache) buildFS(ctx context.Context, tag string, buildCtx fs.FS, what string) error {
	dir, err := os.MkdirTemp("", "airut-build-")
	if err != nil {
		return fmt.Errorf("build context: %w", err)
	}
	defer os.RemoveAll(dir)
	err = walkContext(buildCtx, func(name string, mode fs.FileMode, data []byte) error {
		dst := filepath.Join(dir, filepath.FromSlash(path.Clean(name)))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644|mode&0o111)
	})
	if err != nil {
		return fmt.Errorf("materialise build context: %w", err)
	}
	return c.build(ctx, tag, dir, what)
}

func (c *ImageCache) buildOverlay(ctx context.Context, tag, repoTag string) error {
	dir, err := os.MkdirTemp("", "airut-overlay-")
	if err != nil {
		return fmt.Errorf("overlay context: %w", err)
	}
	defer os.RemoveAll(dir)
	dockerfile := fmt.Sprintf("FROM %s\nCOPY entrypoint.sh %s\nENTRYPOINT [\"/bin/sh\", %q]\nCMD []\n",
		repoTag, EntrypointPath, EntrypointPath)
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "entrypoint.sh"), entrypointScript, 0o755); err != nil {
		return err
	}
	return c.build(ctx, tag, dir, "overlay image")
}

func (c *ImageCache) build(ctx context.Context, tag, dir, what string) error {
	c.builds.Add(1)
	args := []string{"build", "--label", labelImage + "=" + c.Prefix, "-t", tag, "-f", filepath.Join(dir, "Dockerfile")}
	if c.rt.IsPodman() {
		// Layers make rebuilds of a changed Dockerfile cheap; the content
		// hash in the tag decides when to rebuild, not the layer cache.
		args = append(args, "--layers", "--pull=never")
		args = append(args, c.rt.runtimeArgs()...)
	}
	args = append(args, dir)
	start := time.Now()
	if _, err := c.rt.output(ctx, args...); err != nil {
		return fmt.Errorf("build %s: %w: %w", what, err, ErrInfrastructure)
	}
	c.rt.Logger.Info("image built", "tag", tag, "seconds", time.Since(start).Seconds())
	return nil
}

// Prune removes images this cache's prefix built that no container uses,
// that are not in keep, and that this process has not handed out within
// MaxAge (those are still some task's current image). Errors for images
// still in use are expected and ignored.
func (c *ImageCache) Prune(ctx context.Context, keep ...string) (removed []string, err error) {
	out, err := c.rt.output(ctx, "images", "--filter", "label="+labelImage+"="+c.Prefix,
		"--format", "{{.Repository}}:{{.Tag}}")
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	skip := map[string]bool{}
	for _, k := range keep {
		skip[k] = true
	}
	maxAge := c.MaxAge
	if maxAge <= 0 {
		maxAge = DefaultMaxImageAge
	}
	c.mu.Lock()
	for tag, at := range c.used {
		if c.Now().Sub(at) < maxAge {
			skip[tag] = true
		}
	}
	for _, tag := range c.proxyTags {
		skip[tag] = true
	}
	c.mu.Unlock()
	for _, ref := range strings.Fields(string(out)) {
		if skip[ref] || strings.HasSuffix(ref, ":<none>") {
			continue
		}
		if _, err := c.rt.output(ctx, "rmi", ref); err == nil {
			removed = append(removed, ref)
		}
	}
	return removed, nil
}

// SaveImage writes tag to dir as an OCI archive named after its hash, for
// CI caches; LoadImage reads every archive in dir back.
func (c *ImageCache) SaveImage(ctx context.Context, tag, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	name := strings.NewReplacer("/", "_", ":", "_").Replace(tag) + ".tar"
	dst := filepath.Join(dir, name)
	if _, err := c.rt.output(ctx, "save", "-o", dst, tag); err != nil {
		return "", fmt.Errorf("save image %s: %w", tag, err)
	}
	return dst, nil
}

// LoadImages loads every *.tar archive in dir.
func (c *ImageCache) LoadImages(ctx context.Context, dir string, w io.Writer) error {
	matches, err := filepath.Glob(filepath.Join(dir, "*.tar"))
	if err != nil {
		return err
	}
	if len(matches) == 0 {
		return fmt.Errorf("load images: no *.tar archive in %s", dir)
	}
	for _, m := range matches {
		if _, err := c.rt.output(ctx, "load", "-i", m); err != nil {
			return fmt.Errorf("load image %s: %w", m, err)
		}
		fmt.Fprintf(w, "loaded %s\n", m)
	}
	return nil
}
