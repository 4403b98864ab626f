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
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// ErrNotFound is returned when a path does not exist at a revision. It is
// an fs.ErrNotExist, so callers reading a repoconfig.Source can test for
// either.
var ErrNotFound = fmt.Errorf("not found at the revision: %w", fs.ErrNotExist)

// Mirror is a bare mirror of URL kept in Dir.
type Mirror struct {
	Dir string
	URL string
	// Git is the git executable; "git" from PATH when empty.
	Git string
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
	return m.ensure(ctx)
}

func (m *Mirror) ensure(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(m.Dir, "HEAD")); err == nil {
		return m.fetch(ctx)
	}
	return m.create(ctx)
}

// Update is Ensure then Head, in one hold of the mirror: the default
// branch as the fetch left it, pinned to its commit.
func (m *Mirror) Update(ctx context.Context) (*Revision, error) {
	mu := m.fetchLock()
	mu.Lock()
	defer mu.Unlock()
	if err := m.ensure(ctx); err != nil {
		return nil, err
	}
	return m.head(ctx)
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

// urlsSet remembers, per mirror directory, the URL this process has
// checked or set as its origin: the check is a git process on every
// fetch otherwise.
var urlsSet sync.Map // cleaned Dir → URL

// fetch brings the mirror up to date with the remote. The remote's refs
// and HEAD are asked for (ls-remote) while the mirror's own are listed;
// when they are the same, as they are for most tasks, nothing is fetched.
// A mirror's HEAD is set once at clone time; it follows the remote's when
// the default branch changes.
func (m *Mirror) fetch(ctx context.Context) error {
	key := filepath.Clean(m.Dir)
	if url, ok := urlsSet.Load(key); !ok || url != m.URL {
		// The configured URL may have changed since the mirror was made.
		cur, err := m.git(ctx, m.Dir, nil, "config", "--get", "remote.origin.url")
		if err != nil || strings.TrimSpace(string(cur)) != m.URL {
			if _, err := m.git(ctx, m.Dir, nil, "remote", "set-url", "origin", m.URL); err != nil {
				return fmt.Errorf("mirror %s: %w", m.Dir, err)
			}
		}
		urlsSet.Store(key, m.URL)
	}
	type listing struct {
		out []byte
		err error
	}
	remoteC := make(chan listing, 1)
	go func() {
		out, err := m.git(ctx, m.Dir, nil, "ls-remote", "--symref", "origin")
		remoteC <- listing{out, err}
	}()
	local, lerr := m.refs(ctx)
	r := <-remoteC
	if r.err != nil {
		return fmt.Errorf("mirror %s: %w", m.Dir, r.err)
	}
	if lerr != nil {
		return fmt.Errorf("mirror %s: %w", m.Dir, lerr)
	}
	remote, remoteHead := parseRemote(r.out)
	if !sameRefs(local, remote) {
		if _, err := m.git(ctx, m.Dir, nil, "fetch", "--prune", "--quiet", "origin"); err != nil {
			return fmt.Errorf("mirror %s: %w", m.Dir, err)
		}
		if local, lerr = m.refs(ctx); lerr != nil {
			return fmt.Errorf("mirror %s: %w", m.Dir, lerr)
		}
	}
	if remoteHead == "" {
		return nil // a server that does not advertise it: keep ours
	}
	if _, ok := local[remoteHead]; !ok {
		return nil // not fetched (yet); keep ours
	}
	if cur, err := m.headRef(ctx); err == nil && cur == remoteHead {
		return nil
	}
	if _, err := m.git(ctx, m.Dir, nil, "symbolic-ref", "HEAD", remoteHead); err != nil {
		return fmt.Errorf("mirror %s: %w", m.Dir, err)
	}
	return nil
}

// refs lists the mirror's refs: name → object name.
func (m *Mirror) refs(ctx context.Context) (map[string]string, error) {
	out, err := m.git(ctx, m.Dir, nil, "for-each-ref", "--format=%(objectname) %(refname)")
	if err != nil {
		return nil, err
	}
	refs := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		if sha, name, ok := strings.Cut(line, " "); ok {
			refs[name] = sha
		}
	}
	return refs, nil
}

// headRef is the ref the mirror's HEAD points at ("refs/heads/trunk"),
// read from the HEAD file when it is a plain symbolic ref (no git
// process), else from git.
func (m *Mirror) headRef(ctx context.Context) (string, error) {
	if data, err := os.ReadFile(filepath.Join(m.Dir, "HEAD")); err == nil {
		ref, ok := strings.CutPrefix(strings.TrimSpace(string(data)), "ref: ")
		if ok && strings.HasPrefix(ref, "refs/heads/") && ref != "refs/heads/.invalid" {
			return ref, nil
		}
	}
	out, err := m.git(ctx, m.Dir, nil, "symbolic-ref", "HEAD")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// parseRemote reads ls-remote --symref: the refs (peeled tag lines and
// HEAD left out) and the branch HEAD points at ("" when not advertised).
func parseRemote(out []byte) (refs map[string]string, head string) {
	refs = map[string]string{}
	for line := range strings.SplitSeq(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "ref: "); ok {
			ref, name, _ := strings.Cut(rest, "\t")
			if name == "HEAD" && strings.HasPrefix(ref, "refs/heads/") {
				head = ref
			}
			continue
		}
		sha, name, ok := strings.Cut(line, "\t")
		if !ok || name == "HEAD" || strings.HasSuffix(name, "^{}") || !strings.HasPrefix(name, "refs/") {
			continue
		}
		refs[name] = sha
	}
	return refs, head
}

// sameRefs reports whether two ref listings are the same.
func sameRefs(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for name, sha := range a {
		if b[name] != sha {
			return false
		}
	}
	return true
}

// DefaultBranch returns the mirror's default branch name (what the
// remote's HEAD points at), checked to have a commit.
func (m *Mirror) DefaultBranch(ctx context.Context) (string, error) {
	rev, err := m.head(ctx)
	if err != nil {
		return "", err
	}
	return rev.Name, nil
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
	return m.CloneBranch(ctx, dest, branch)
}

// CloneHead is Clone with the mirror held still: no fetch moves the
// default branch while it is cloned, and the revision returned is what
// the clone has checked out.
func (m *Mirror) CloneHead(ctx context.Context, dest string) (*Revision, error) {
	mu := m.fetchLock()
	mu.Lock()
	defer mu.Unlock()
	rev, err := m.head(ctx)
	if err != nil {
		return nil, fmt.Errorf("clone %s: %w", dest, err)
	}
	if err := m.CloneBranch(ctx, dest, rev.Name); err != nil {
		return nil, err
	}
	return rev, nil
}

// CloneBranch is Clone checked out on branch (the default branch a Head
// or Update has just resolved, without asking for it again).
func (m *Mirror) CloneBranch(ctx context.Context, dest, branch string) error {
	src, err := filepath.Abs(m.Dir)
	if err != nil {
		return fmt.Errorf("clone %s: %w", dest, err)
	}
	// --local --no-hardlinks copies the mirror's object files: no
	// hardlinks into the mirror's object store and no alternates file,
	// at half the cost of --no-local's pack protocol (the workspace clone
	// is on every new task's critical path).
	if _, err := m.git(ctx, "", nil, "clone", "--local", "--no-hardlinks", "--quiet",
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

// git runs git for the mirror; errors have the URL's credentials redacted.
func (m *Mirror) git(ctx context.Context, dir string, stdin io.Reader, args ...string) ([]byte, error) {
	out, err := runGit(ctx, m.Git, dir, stdin, args...)
	if err != nil {
		return nil, redactedError{err: err, text: m.redact(err.Error())}
	}
	return out, nil
}

// redactedError keeps the cause (a context error) for errors.Is but shows
// only the redacted text.
type redactedError struct {
	err  error
	text string
}

func (e redactedError) Error() string { return e.text }
func (e redactedError) Unwrap() error { return e.err }

// runGit runs git (bin, or "git" from PATH) in dir ("" for the current
// directory) and returns its standard output. Errors carry git's standard
// error, and the context's error when it ended the command.
func runGit(ctx context.Context, bin, dir string, stdin io.Reader, args ...string) ([]byte, error) {
	if bin == "" {
		bin = "git"
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Stdin = stdin
	// Never wait for a password on a terminal nobody watches; C locale so
	// messages are the same everywhere. Replace refs (refs/replace/) are
	// ignored: a commit read by its name must be that commit, not whatever
	// a planted replace ref substitutes for it.
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "LC_ALL=C", "GIT_NO_REPLACE_OBJECTS=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 4000 {
			msg = msg[len(msg)-4000:]
		}
		text := fmt.Sprintf("git %s: %v: %s", strings.Join(args, " "), err, msg)
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("%s: %w", text, ctxErr)
		}
		return nil, errors.New(text)
	}
	return stdout.Bytes(), nil
}
