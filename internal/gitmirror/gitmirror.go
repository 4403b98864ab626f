// Package gitmirror keeps a bare mirror of a repository on the host: it is
// fetched before each task, the repository's own config (.airut/) is read
// from its default branch, and each conversation's workspace is cloned from
// it.
//
// Git runs as the operator's git CLI with the operator's environment, so
// credential helpers and GIT_* variables of the host apply to the mirror's
// fetches. Nothing credential-bearing is written into a workspace clone: the
// agent reaches the real remote through the proxy, which holds the real
// credentials.
package gitmirror

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// ErrNotFound is returned when a path does not exist at the default branch.
var ErrNotFound = errors.New("not found at the default branch")

// Mirror is a bare mirror of URL kept in Dir.
type Mirror struct {
	Dir string
	URL string
	// Git is the git executable; "git" from PATH when empty.
	Git string
}

// File is one file of a tree read from the mirror.
type File struct {
	Path string      // relative to the directory that was read, slash-separated
	Mode fs.FileMode // 0644, 0755, or fs.ModeSymlink|0777 (Data is the target)
	Data []byte
}

// fetchLocks serialises mirror updates per directory, across Mirror values
// that name the same one.
var fetchLocks sync.Map // cleaned Dir → *sync.Mutex

func (m *Mirror) fetchLock() *sync.Mutex {
	key := filepath.Clean(m.Dir)
	if abs, err := filepath.Abs(key); err == nil {
		key = abs
	}
	mu, _ := fetchLocks.LoadOrStore(key, &sync.Mutex{})
	return mu.(*sync.Mutex)
}

// Ensure makes the mirror current: a mirror clone when it does not exist
// yet, otherwise a fetch that also prunes deleted refs and follows a change
// of the remote's default branch.
func (m *Mirror) Ensure(ctx context.Context) error {
	mu := m.fetchLock()
	mu.Lock()
	defer mu.Unlock()
	if _, err := os.Stat(filepath.Join(m.Dir, "HEAD")); err == nil {
		return m.fetch(ctx)
	}
	return m.create(ctx)
}

func (m *Mirror) create(ctx context.Context) error {
	// Whatever is there without a HEAD is a clone that died half-way.
	if err := os.RemoveAll(m.Dir); err != nil {
		return fmt.Errorf("mirror %s: remove partial mirror: %w", m.Dir, err)
	}
	if err := os.MkdirAll(filepath.Dir(m.Dir), 0o755); err != nil {
		return fmt.Errorf("mirror %s: %w", m.Dir, err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(m.Dir), "."+filepath.Base(m.Dir)+".tmp-")
	if err != nil {
		return fmt.Errorf("mirror %s: %w", m.Dir, err)
	}
	defer os.RemoveAll(tmp)
	// Cloned aside and renamed into place so that a crash never leaves a
	// mirror that looks complete but is not.
	if _, err := m.git(ctx, "", nil, "clone", "--mirror", "--", m.URL, tmp); err != nil {
		return fmt.Errorf("mirror %s: %w", m.Dir, err)
	}
	if err := os.Rename(tmp, m.Dir); err != nil {
		return fmt.Errorf("mirror %s: %w", m.Dir, err)
	}
	return nil
}

func (m *Mirror) fetch(ctx context.Context) error {
	// The configured URL may have changed since the mirror was made.
	cur, err := m.git(ctx, m.Dir, nil, "config", "--get", "remote.origin.url")
	if err != nil || strings.TrimSpace(string(cur)) != m.URL {
		if _, err := m.git(ctx, m.Dir, nil, "remote", "set-url", "origin", m.URL); err != nil {
			return fmt.Errorf("mirror %s: %w", m.Dir, err)
		}
	}
	if _, err := m.git(ctx, m.Dir, nil, "fetch", "--prune", "--quiet", "origin"); err != nil {
		return fmt.Errorf("mirror %s: %w", m.Dir, err)
	}
	// A mirror's HEAD is set once at clone time; follow the remote when its
	// default branch changes.
	out, err := m.git(ctx, m.Dir, nil, "ls-remote", "--symref", "origin", "HEAD")
	if err != nil {
		return fmt.Errorf("mirror %s: %w", m.Dir, err)
	}
	ref := parseSymref(out)
	if ref == "" {
		return nil // a server that does not advertise it: keep ours
	}
	if _, err := m.git(ctx, m.Dir, nil, "rev-parse", "--verify", "--quiet", ref); err != nil {
		return nil // not fetched (yet); keep ours
	}
	if _, err := m.git(ctx, m.Dir, nil, "symbolic-ref", "HEAD", ref); err != nil {
		return fmt.Errorf("mirror %s: %w", m.Dir, err)
	}
	return nil
}

// parseSymref reads "ref: refs/heads/main\tHEAD" from ls-remote --symref.
func parseSymref(out []byte) string {
	for line := range strings.SplitSeq(string(out), "\n") {
		rest, ok := strings.CutPrefix(line, "ref: ")
		if !ok {
			continue
		}
		ref, name, _ := strings.Cut(rest, "\t")
		if name == "HEAD" && strings.HasPrefix(ref, "refs/heads/") {
			return ref
		}
	}
	return ""
}

// DefaultBranch returns the mirror's default branch name (what the
// remote's HEAD points at).
func (m *Mirror) DefaultBranch(ctx context.Context) (string, error) {
	out, err := m.git(ctx, m.Dir, nil, "symbolic-ref", "HEAD")
	if err != nil {
		return "", fmt.Errorf("mirror %s: default branch: %w", m.Dir, err)
	}
	ref := strings.TrimSpace(string(out))
	branch, ok := strings.CutPrefix(ref, "refs/heads/")
	if !ok {
		return "", fmt.Errorf("mirror %s: HEAD points at %q, not a branch", m.Dir, ref)
	}
	if _, err := m.git(ctx, m.Dir, nil, "rev-parse", "--verify", "--quiet", ref+"^{commit}"); err != nil {
		return "", fmt.Errorf("mirror %s: default branch %s has no commits", m.Dir, branch)
	}
	return branch, nil
}

// cleanPath validates a repository-relative path.
func cleanPath(p string) (string, error) {
	c := path.Clean(strings.TrimPrefix(p, "./"))
	if c == "." || c == ".." || strings.HasPrefix(c, "../") || path.IsAbs(c) || strings.ContainsRune(c, 0) {
		return "", fmt.Errorf("invalid repository path %q", p)
	}
	return c, nil
}

type treeEntry struct {
	mode, typ, sha, path string
}

func parseLsTree(out []byte) ([]treeEntry, error) {
	var entries []treeEntry
	for rec := range bytes.SplitSeq(out, []byte{0}) {
		if len(rec) == 0 {
			continue
		}
		meta, p, ok := strings.Cut(string(rec), "\t")
		f := strings.Fields(meta)
		if !ok || len(f) != 3 {
			return nil, fmt.Errorf("unexpected ls-tree output %q", rec)
		}
		entries = append(entries, treeEntry{mode: f[0], typ: f[1], sha: f[2], path: p})
	}
	return entries, nil
}

// ReadFile returns the content of path at the default branch.
func (m *Mirror) ReadFile(ctx context.Context, p string) ([]byte, error) {
	c, err := cleanPath(p)
	if err != nil {
		return nil, fmt.Errorf("mirror %s: read %s: %w", m.Dir, p, err)
	}
	out, err := m.git(ctx, m.Dir, nil, "ls-tree", "-z", "HEAD", "--", c)
	if err != nil {
		return nil, fmt.Errorf("mirror %s: read %s: %w", m.Dir, c, err)
	}
	entries, err := parseLsTree(out)
	if err != nil {
		return nil, fmt.Errorf("mirror %s: read %s: %w", m.Dir, c, err)
	}
	var entry *treeEntry
	for i := range entries {
		if entries[i].path == c {
			entry = &entries[i]
		}
	}
	switch {
	case entry == nil:
		return nil, fmt.Errorf("mirror %s: read %s: %w", m.Dir, c, ErrNotFound)
	case entry.typ != "blob":
		return nil, fmt.Errorf("mirror %s: read %s: is a %s, not a file", m.Dir, c, entry.typ)
	}
	data, err := m.git(ctx, m.Dir, nil, "cat-file", "blob", entry.sha)
	if err != nil {
		return nil, fmt.Errorf("mirror %s: read %s: %w", m.Dir, c, err)
	}
	return data, nil
}

// ReadTreeFiles returns every file under dir at the default branch, with
// its mode. Submodules are skipped.
func (m *Mirror) ReadTreeFiles(ctx context.Context, dir string) ([]File, error) {
	c, err := cleanPath(dir)
	if err != nil {
		return nil, fmt.Errorf("mirror %s: read tree %s: %w", m.Dir, dir, err)
	}
	out, err := m.git(ctx, m.Dir, nil, "ls-tree", "-r", "-z", "HEAD", "--", c)
	if err != nil {
		return nil, fmt.Errorf("mirror %s: read tree %s: %w", m.Dir, c, err)
	}
	entries, err := parseLsTree(out)
	if err != nil {
		return nil, fmt.Errorf("mirror %s: read tree %s: %w", m.Dir, c, err)
	}
	var files []File
	var shas []string
	for _, e := range entries {
		rel, ok := strings.CutPrefix(e.path, c+"/")
		if !ok {
			if e.path == c {
				return nil, fmt.Errorf("mirror %s: read tree %s: is a file, not a directory", m.Dir, c)
			}
			continue
		}
		var mode fs.FileMode
		switch e.mode {
		case "100644":
			mode = 0o644
		case "100755":
			mode = 0o755
		case "120000":
			mode = fs.ModeSymlink | 0o777
		default: // 160000: a submodule has no content here
			continue
		}
		files = append(files, File{Path: rel, Mode: mode})
		shas = append(shas, e.sha)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("mirror %s: read tree %s: %w", m.Dir, c, ErrNotFound)
	}
	if len(shas) == 0 {
		return files, nil
	}
	blobs, err := m.catBlobs(ctx, shas)
	if err != nil {
		return nil, fmt.Errorf("mirror %s: read tree %s: %w", m.Dir, c, err)
	}
	for i := range files {
		files[i].Data = blobs[i]
	}
	return files, nil
}

// ReadTree returns the regular files under dir at the default branch,
// keyed by their path relative to dir. Symlinks and submodules are left
// out; ReadTreeFiles has them, with modes.
func (m *Mirror) ReadTree(ctx context.Context, dir string) (map[string][]byte, error) {
	files, err := m.ReadTreeFiles(ctx, dir)
	if err != nil {
		return nil, err
	}
	tree := make(map[string][]byte, len(files))
	for _, f := range files {
		if f.Mode.IsRegular() {
			tree[f.Path] = f.Data
		}
	}
	return tree, nil
}

// catBlobs reads many blobs with one git process.
func (m *Mirror) catBlobs(ctx context.Context, shas []string) ([][]byte, error) {
	in := strings.Join(shas, "\n") + "\n"
	out, err := m.git(ctx, m.Dir, strings.NewReader(in), "cat-file", "--batch")
	if err != nil {
		return nil, err
	}
	r := bufio.NewReader(bytes.NewReader(out))
	blobs := make([][]byte, 0, len(shas))
	for _, sha := range shas {
		header, err := r.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("cat-file: truncated output: %w", err)
		}
		f := strings.Fields(header)
		if len(f) != 3 || f[0] != sha || f[1] != "blob" {
			return nil, fmt.Errorf("cat-file: unexpected header %q for %s", strings.TrimSpace(header), sha)
		}
		size, err := strconv.Atoi(f[2])
		if err != nil || size < 0 {
			return nil, fmt.Errorf("cat-file: bad size in %q", strings.TrimSpace(header))
		}
		data := make([]byte, size)
		if _, err := io.ReadFull(r, data); err != nil {
			return nil, fmt.Errorf("cat-file: truncated blob %s: %w", sha, err)
		}
		if b, err := r.ReadByte(); err != nil || b != '\n' {
			return nil, fmt.Errorf("cat-file: missing separator after %s", sha)
		}
		blobs = append(blobs, data)
	}
	return blobs, nil
}

// Clone makes a full, independent clone of the mirror at dest (which must
// not exist or be empty), checked out on the default branch. Its origin is
// the real repository, stripped of any credential in the URL, so the agent
// pushes there through the proxy; it shares no objects with the mirror, so
// nothing the agent does in its workspace can reach the mirror.
func (m *Mirror) Clone(ctx context.Context, dest string) error {
	branch, err := m.DefaultBranch(ctx)
	if err != nil {
		return fmt.Errorf("clone %s: %w", dest, err)
	}
	src, err := filepath.Abs(m.Dir)
	if err != nil {
		return fmt.Errorf("clone %s: %w", dest, err)
	}
	// --no-local goes through the pack protocol, as for a remote: no
	// hardlinks into the mirror's object store and no alternates file.
	if _, err := m.git(ctx, "", nil, "clone", "--no-local", "--no-hardlinks", "--quiet",
		"--branch", branch, "--", src, dest); err != nil {
		return fmt.Errorf("clone %s: %w", dest, err)
	}
	if _, err := m.git(ctx, dest, nil, "remote", "set-url", "origin", PublicURL(m.URL)); err != nil {
		return fmt.Errorf("clone %s: %w", dest, err)
	}
	if _, err := os.Stat(filepath.Join(dest, ".git", "objects", "info", "alternates")); err == nil {
		return fmt.Errorf("clone %s: clone shares objects with the mirror (alternates present)", dest)
	}
	return nil
}

// PublicURL strips credentials from a repository URL: the whole user
// part of an http(s) URL (a token is often passed as the user name) and the
// password of any other URL. scp-like addresses (git@host:path) carry no
// secret and are returned as they are.
func PublicURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil || u.Scheme == "" {
		return raw
	}
	switch u.Scheme {
	case "http", "https":
		u.User = nil
	default:
		u.User = url.User(u.User.Username())
	}
	return u.String()
}

// redact hides the mirror URL's credentials in text that goes into errors.
func (m *Mirror) redact(s string) string {
	u, err := url.Parse(m.URL)
	if err != nil || u.User == nil {
		return s
	}
	s = strings.ReplaceAll(s, m.URL, PublicURL(m.URL))
	if pw, ok := u.User.Password(); ok && pw != "" {
		s = strings.ReplaceAll(s, pw, "REDACTED")
	}
	if u.Scheme == "http" || u.Scheme == "https" {
		if name := u.User.Username(); name != "" {
			s = strings.ReplaceAll(s, name+"@", "REDACTED@")
		}
	}
	return s
}

// git runs git in dir ("" for the current directory) and returns its
// standard output. Errors carry git's standard error.
func (m *Mirror) git(ctx context.Context, dir string, stdin io.Reader, args ...string) ([]byte, error) {
	bin := m.Git
	if bin == "" {
		bin = "git"
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Stdin = stdin
	// Never wait for a password on a terminal nobody watches; C locale so
	// messages are the same everywhere.
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "LC_ALL=C")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 4000 {
			msg = msg[len(msg)-4000:]
		}
		text := m.redact(fmt.Sprintf("git %s: %v: %s", strings.Join(args, " "), err, msg))
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("%s: %w", text, ctxErr)
		}
		return nil, errors.New(text)
	}
	return stdout.Bytes(), nil
}
