package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/airut/airut/internal/conversation"
	"github.com/airut/airut/internal/gitmirror"
)

// ensureWorkspace clones the workspace on a conversation's first task,
// rev being the mirror's default branch as the task fetched it. The
// clone goes into the workspace directory itself, which a container
// started early already mounts (its inode must stay); a marker beside it
// says a clone is under way, so a crash mid-clone is cloned again. A
// spare placed there (placeWorkspace) is kept when it is what the clone
// would give.
func ensureWorkspace(ctx context.Context, h *repoHandler, dir *conversation.Dir, rev *gitmirror.Revision, placed *spareWorkspace) error {
	ws := dir.Workspace()
	marker := ws + cloningSuffix
	if placed.matches(rev, h.mirror.URL) {
		if err := os.Remove(marker); err != nil {
			return err
		}
	}
	if _, err := os.Stat(filepath.Join(ws, ".git")); err == nil {
		if _, err := os.Stat(marker); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
	}
	if err := ensureMountable(dir); err != nil {
		return err
	}
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		return err
	}
	if err := emptyDir(ws); err != nil {
		return err
	}
	if err := h.mirror.CloneBranch(ctx, ws, rev.Name); err != nil {
		_ = emptyDir(ws)
		return err
	}
	return os.Remove(marker)
}

// cloningSuffix names the marker of a workspace clone under way.
const cloningSuffix = ".cloning"

// ensureMountable makes the workspace directory exist, so that a container
// can mount it before its clone is there.
func ensureMountable(dir *conversation.Dir) error {
	return os.MkdirAll(dir.Workspace(), 0o755)
}

// emptyDir removes everything in dir, keeping dir.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// spareWorkspace is a clone of the repo's mirror made ahead of need,
// after a task, for the next new conversation: its rename into place
// takes the clone off the next task's start. It is used only when the
// fetch before that task leaves the default branch where the clone has
// it; otherwise the workspace is cloned again.
type spareWorkspace struct {
	dir string
	// rev is what the clone is checked out on; url the mirror's origin it
	// was cloned for (the workspace's origin is its public form).
	rev *gitmirror.Revision
	url string
}

// workspaces keeps a repo's spare workspace.
type workspaces struct {
	mu     sync.Mutex
	spare  *spareWorkspace
	making bool
	token  string // names this handler's spare (a reload's handlers overlap)
}

// spareWorkspacePrefix names spare workspaces beside the conversations, on
// their file system (a spare is renamed into one).
const spareWorkspacePrefix = "workspace-spare-"

// spareLeftoverAge is how old another handler's spare must be to be taken
// for a crash's leftover and removed: a reload's draining handler removes
// its own.
const spareLeftoverAge = time.Hour

// spareWorkspaceDir is where this handler makes its spare; h.ws.mu is held.
func (h *repoHandler) spareWorkspaceDir() string {
	if h.ws.token == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		h.ws.token = hex.EncodeToString(b[:])
	}
	return filepath.Join(filepath.Dir(h.store.Root), spareWorkspacePrefix+h.ws.token)
}

// removeSpareWorkspace removes the handler's spare (a drain that has
// waited for its refill).
func (h *repoHandler) removeSpareWorkspace() {
	h.ws.mu.Lock()
	defer h.ws.mu.Unlock()
	if h.ws.spare != nil {
		os.RemoveAll(h.ws.spare.dir)
		h.ws.spare = nil
	}
}

// removeSpareLeftovers removes the spares a crashed process left; dir is
// this handler's.
func removeSpareLeftovers(dir string) {
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), spareWorkspacePrefix+"*"))
	for _, m := range matches {
		if st, err := os.Stat(m); err == nil && m != dir && time.Since(st.ModTime()) > spareLeftoverAge {
			os.RemoveAll(m)
		}
	}
}

// placeWorkspace readies a conversation's workspace directory for a
// container to mount: a new conversation gets the spare workspace when
// there is one, marked as not yet checked against the fetch (the marker
// of a clone under way: a crash before the check clones it again). It
// returns the spare placed, or nil.
func (h *repoHandler) placeWorkspace(dir *conversation.Dir) (*spareWorkspace, error) {
	ws := dir.Workspace()
	if _, err := os.Stat(filepath.Join(ws, ".git")); err == nil {
		return nil, ensureMountable(dir)
	}
	h.ws.mu.Lock()
	defer h.ws.mu.Unlock()
	sp := h.ws.spare
	if sp == nil {
		return nil, ensureMountable(dir)
	}
	h.ws.spare = nil
	if err := os.WriteFile(ws+cloningSuffix, nil, 0o600); err != nil {
		os.RemoveAll(sp.dir)
		return nil, err
	}
	// An empty workspace directory (a new conversation's) makes way for
	// the spare; one with anything in it (a clone that died half-way)
	// stays, and is cloned again.
	if err := os.Remove(ws); err != nil && !errors.Is(err, fs.ErrNotExist) {
		os.RemoveAll(sp.dir)
		return nil, ensureMountable(dir)
	}
	if err := os.Rename(sp.dir, ws); err != nil {
		os.RemoveAll(sp.dir)
		return nil, ensureMountable(dir)
	}
	return sp, nil
}

// matches reports whether the placed spare is what a clone after the
// fetch would give: the same branch at the same commit, from the same
// remote.
func (sp *spareWorkspace) matches(rev *gitmirror.Revision, url string) bool {
	return sp != nil && sp.rev.Name == rev.Name && sp.rev.Commit == rev.Commit && sp.url == url
}

// refillWorkspace makes the next spare workspace in the background, if
// there is none and none is being made. It is called from a task (whose
// job the drain waits for), once its own start is done.
func (h *repoHandler) refillWorkspace() {
	if h.draining.Load() {
		return
	}
	h.ws.mu.Lock()
	if h.ws.spare != nil || h.ws.making {
		h.ws.mu.Unlock()
		return
	}
	h.ws.making = true
	dir := h.spareWorkspaceDir()
	h.ws.mu.Unlock()
	h.bg.Add(1)
	go func() {
		defer h.bg.Done()
		url := h.mirror.URL
		removeSpareLeftovers(dir)
		// Whatever is there is a spare this handler did not finish:
		// never used, removed.
		err := os.RemoveAll(dir)
		var rev *gitmirror.Revision
		if err == nil {
			rev, err = h.mirror.CloneHead(h.jobCtx, dir)
		}
		h.ws.mu.Lock()
		defer h.ws.mu.Unlock()
		h.ws.making = false
		if err != nil {
			os.RemoveAll(dir)
			h.log.Debug("no spare workspace", logError, err)
			return
		}
		h.ws.spare = &spareWorkspace{dir: dir, rev: rev, url: url}
	}()
}
