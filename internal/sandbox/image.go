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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing/fstest"
	"time"

	"golang.org/x/sync/singleflight"
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
	labelImage    = "io.airut.image"
	labelInstance = "io.airut.instance"
	labelOwner    = "io.airut.owner"
	labelKind     = "io.airut.prefix"
)

// ImageCache builds the two-layer task image (repo image, then the overlay
// with the entrypoint) at most once per content hash, and the proxy image
// once per proxy binary.
//
// Every image handed out is leased: Ensure and EnsureProxy return a release
// function, and Prune never removes an image under a lease, so an image a
// task has resolved but not yet started (or still runs) is never pruned
// from under it.
type ImageCache struct {
	rt *Runtime
	// Prefix names the images: "airut" for the gateway, "airut-cli" for
	// airut-sandbox, so the two never prune each other's.
	Prefix string
	// Instance, when set, scopes the images to one gateway (InstanceID of
	// its state directory): they are named <Prefix>-<Instance>… and
	// labelled with it, and Prune removes only those, so two gateways
	// sharing a Podman store never prune each other's images. Set it before
	// the first Ensure.
	Instance string
	// MaxAge forces a rebuild of images older than this; 0 means
	// DefaultMaxImageAge.
	MaxAge time.Duration
	// Now is the clock, injectable for tests.
	Now func() time.Time

	builds atomic.Int64
	group  singleflight.Group
	// pruneMu is held by Prune for its whole run and briefly by every new
	// lease, so a lease taken while a prune runs waits for it to finish
	// (and then finds the image gone and rebuilds it).
	pruneMu sync.RWMutex

	mu     sync.Mutex
	leases map[string]int
	// proxyTags maps a proxy binary (path, size, mtime) to its image, known
	// to exist: proxy images never age, so each binary is read, hashed and
	// checked with the engine once per process, not on every task.
	proxyTags map[string]string
	// used records when this process last handed out or released each
	// tag, so Prune also keeps images tasks used within MaxAge.
	used map[string]time.Time
	// created holds the creation time of every task image this process
	// has built or inspected: within MaxAge of it, Ensure hands the image
	// out without asking the engine (an inspect is a podman process,
	// 50 ms on the task's path). Prune and Forget drop entries; an image
	// removed behind the cache's back fails its task's start with
	// ErrImageMissing, and the gateway forgets it and ensures it again.
	created map[string]time.Time
}

// NewImageCache returns a cache whose images are named after prefix.
func NewImageCache(rt *Runtime, prefix string) *ImageCache {
	return &ImageCache{rt: rt, Prefix: prefix, Now: time.Now,
		leases: map[string]int{}, proxyTags: map[string]string{}, used: map[string]time.Time{}, created: map[string]time.Time{}}
}

// InstanceID names one gateway by its state directory, for
// ImageCache.Instance: two gateways with different state directories get
// different images even with the same prefix.
func InstanceID(stateDir string) string {
	if abs, err := filepath.Abs(stateDir); err == nil {
		stateDir = abs
	}
	h := sha256.Sum256([]byte(filepath.Clean(stateDir)))
	return hex.EncodeToString(h[:4])
}

// imageName is the repository name of one kind of image ("", "-repo",
// "-proxy") of this cache.
func (c *ImageCache) imageName(kind string) string {
	base := c.Prefix
	if c.Instance != "" {
		base += "-" + c.Instance
	}
	return "localhost/" + base + kind
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
// the repo image and the overlay if they are missing or older than MaxAge,
// and a release function: until it is called (once the task's container
// has exited), Prune keeps the image. Concurrent callers with the same
// context share one build; a caller whose ctx ends stops waiting, and the
// build goes on for the others (see share).
func (c *ImageCache) Ensure(ctx context.Context, buildCtx fs.FS) (tag string, release func(), err error) {
	hash, err := ContextHash(buildCtx)
	if err != nil {
		return "", func() {}, err
	}
	repoTag, overlayTag := c.taskTags(hash)
	release = c.lease(repoTag, overlayTag)
	tag, err = c.share(ctx, "task:"+hash, func(bctx context.Context) (string, error) {
		return c.ensure(bctx, repoTag, overlayTag, buildCtx)
	})
	if err != nil {
		release()
		return "", func() {}, err
	}
	return tag, release, nil
}

// taskTags names the repo image and the overlay of a context hash.
func (c *ImageCache) taskTags(hash string) (repoTag, overlayTag string) {
	repoTag = c.imageName("-repo") + ":" + hash[:24]
	oh := sha256.Sum256(append([]byte(repoTag+"\x00"), entrypointScript...))
	return repoTag, c.imageName("") + ":" + hex.EncodeToString(oh[:])[:24]
}

// lease holds tags against Prune until the returned function is called.
func (c *ImageCache) lease(tags ...string) (release func()) {
	c.pruneMu.RLock()
	c.mu.Lock()
	for _, t := range tags {
		c.leases[t]++
	}
	c.mu.Unlock()
	c.pruneMu.RUnlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			for _, t := range tags {
				if c.leases[t]--; c.leases[t] <= 0 {
					delete(c.leases, t)
				}
				c.used[t] = c.Now()
			}
		})
	}
}

// markUsed notes that tags were handed out now, for Prune.
func (c *ImageCache) markUsed(tags ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range tags {
		c.used[t] = c.Now()
	}
}

// DefaultBuildTimeout bounds one image build, which no task's timeout
// covers.
const DefaultBuildTimeout = time.Hour

// share runs build once for every concurrent caller with the same key
// (singleflight). The build runs under a context of its own, not that of
// whichever caller started it: each caller waits on its own ctx, and a
// caller that gives up (its task was cancelled) only stops waiting. The
// build runs to completion (or DefaultBuildTimeout) even when nobody waits
// any more: podman cannot cancel a build cleanly (its RUN processes go on,
// orphaned, and its working container stays in storage), and the finished
// image is what the next task of the repository needs anyway.
func (c *ImageCache) share(ctx context.Context, key string, build func(context.Context) (string, error)) (string, error) {
	ch := c.group.DoChan(key, func() (any, error) {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultBuildTimeout)
		defer cancel()
		return build(bctx)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(string), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (c *ImageCache) ensure(ctx context.Context, repoTag, overlayTag string, buildCtx fs.FS) (string, error) {
	c.mu.Lock()
	at, known := c.created[overlayTag]
	c.mu.Unlock()
	if known && c.Now().Sub(at) < c.maxAge() {
		c.markUsed(overlayTag, repoTag)
		return overlayTag, nil
	}
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
	c.mu.Lock()
	c.created[overlayTag] = c.Now()
	c.mu.Unlock()
	c.markUsed(overlayTag, repoTag)
	return overlayTag, nil
}

// Forget drops what the cache knows of tag, so the next Ensure asks the
// engine again: the tag's container failed to start for want of the
// image (ErrImageMissing), removed by something other than this cache.
func (c *ImageCache) Forget(tag string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.created, tag)
	for k, t := range c.proxyTags {
		if t == tag {
			delete(c.proxyTags, k)
		}
	}
}

func (c *ImageCache) maxAge() time.Duration {
	if c.MaxAge <= 0 {
		return DefaultMaxImageAge
	}
	return c.MaxAge
}

// EnsureProxy builds (once per binary content) the FROM scratch image that
// holds the static airut-proxy binary, and leases it like Ensure.
func (c *ImageCache) EnsureProxy(ctx context.Context, binary string) (tag string, release func(), err error) {
	info, err := os.Stat(binary)
	if err != nil {
		return "", func() {}, fmt.Errorf("proxy binary: %w: %w", err, ErrInfrastructure)
	}
	fileKey := fmt.Sprintf("%s\x00%d\x00%d", binary, info.Size(), info.ModTime().UnixNano())
	c.mu.Lock()
	tag, known := c.proxyTags[fileKey]
	c.mu.Unlock()
	if known {
		return tag, c.lease(tag), nil
	}
	data, err := os.ReadFile(binary)
	if err != nil {
		return "", func() {}, fmt.Errorf("proxy binary: %w: %w", err, ErrInfrastructure)
	}
	bctx := fstest.MapFS{
		"Dockerfile":  {Data: []byte("FROM scratch\nCOPY airut-proxy " + proxyBinary + "\nENTRYPOINT [\"" + proxyBinary + "\"]\n")},
		"airut-proxy": {Data: data, Mode: 0o755},
	}
	hash, err := ContextHash(bctx)
	if err != nil {
		return "", func() {}, err
	}
	tag = c.imageName("-proxy") + ":" + hash[:24]
	release = c.lease(tag)
	_, err = c.share(ctx, "proxy:"+hash, func(bctx2 context.Context) (string, error) {
		// The proxy image has no base to refresh, so it never ages out.
		if _, err := c.rt.output(bctx2, "image", "exists", tag); err != nil {
			if err := c.buildFS(bctx2, tag, bctx, "proxy image"); err != nil {
				return "", err
			}
		}
		c.mu.Lock()
		c.proxyTags[fileKey] = tag
		c.mu.Unlock()
		return tag, nil
	})
	if err != nil {
		release()
		return "", func() {}, err
	}
	return tag, release, nil
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
	fresh := c.Now().Sub(created) < c.maxAge()
	if fresh {
		c.mu.Lock()
		c.created[tag] = created
		c.mu.Unlock()
	}
	return fresh, nil
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
	args := []string{"build", "--label", labelImage + "=" + c.Prefix}
	if c.Instance != "" {
		args = append(args, "--label", labelInstance+"="+c.Instance)
	}
	args = append(args, "-t", tag, "-f", filepath.Join(dir, "Dockerfile"))
	if c.rt.IsPodman() {
		// Layers make rebuilds of a changed Dockerfile cheap; the content
		// hash in the tag decides when to rebuild, not the layer cache.
		args = append(args, "--layers", "--pull=never")
		args = append(args, c.rt.runtimeArgs()...)
	}
	args = append(args, dir)
	// A prune of this cache waits for the build: removing images can take
	// layers from under the build's layer-cache look-up.
	c.pruneMu.RLock()
	defer c.pruneMu.RUnlock()
	start := time.Now()
	_, err := c.rt.output(ctx, args...)
	if err != nil && isLayerRace(err) && ctx.Err() == nil {
		// Something else sharing the store (another gateway's prune, an
		// operator's `podman image prune`) removed a layer the cache look-up
		// was reading. The build runs again without the layer cache, which
		// no removal can race (a second look-up could hit the next one).
		c.rt.Logger.Info("image build raced a removal in the store; building again without the layer cache", "tag", tag, "err", err)
		retry := slices.Insert(slices.Clone(args), 1, "--no-cache")
		_, err = c.rt.output(ctx, retry...)
	}
	if err != nil {
		return fmt.Errorf("build %s: %w: %w", what, err, ErrInfrastructure)
	}
	c.rt.Logger.Info("image built", "tag", tag, "seconds", time.Since(start).Seconds())
	return nil
}

func isLayerRace(err error) bool {
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "layer not known") || strings.Contains(s, "checking if cached image exists")
}

// Prune removes the images this cache builds (its prefix and instance, by
// name and label) that are not leased, not in keep, and that this process
// has not handed out within MaxAge; images of other prefixes, of other
// gateways (another Instance) and of other processes' running containers
// are never touched. Errors for images still in use are expected and
// ignored.
func (c *ImageCache) Prune(ctx context.Context, keep ...string) (removed []string, err error) {
	c.pruneMu.Lock()
	defer c.pruneMu.Unlock()
	args := []string{"images", "--filter", "label=" + labelImage + "=" + c.Prefix}
	if c.Instance != "" {
		args = append(args, "--filter", "label="+labelInstance+"="+c.Instance)
	}
	args = append(args, "--format", "{{.Repository}}:{{.Tag}}")
	out, err := c.rt.output(ctx, args...)
	// Podman fails the whole listing when another process (a second
	// gateway, airut-sandbox) removes an image while it is being read: a
	// moment later the listing is whole again.
	for try := 0; err != nil && isNoSuchImage(err) && try < 3; try++ {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("list images: %w", ctx.Err())
		case <-time.After(time.Duration(try+1) * 200 * time.Millisecond):
		}
		out, err = c.rt.output(ctx, args...)
	}
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	ours := map[string]bool{c.imageName(""): true, c.imageName("-repo"): true, c.imageName("-proxy"): true}
	skip := map[string]bool{}
	for _, k := range keep {
		skip[k] = true
	}
	maxAge := c.maxAge()
	c.mu.Lock()
	for tag := range c.leases {
		skip[tag] = true
	}
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
		// One image can carry several names (a layer-cache hit of another
		// cache's build): only this cache's own names are removed, which
		// untags the image without deleting what the other name holds.
		name, _, _ := strings.Cut(ref, ":")
		if skip[ref] || !ours[name] || strings.HasSuffix(ref, ":<none>") {
			continue
		}
		if _, err := c.rt.output(ctx, "rmi", ref); err == nil {
			removed = append(removed, ref)
			c.mu.Lock()
			delete(c.created, ref)
			c.mu.Unlock()
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
