package gateway

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airut/airut/internal/conversation"
	"github.com/airut/airut/internal/gitmirror"
	"github.com/airut/airut/internal/testkit"
)

// TestSpareWorkspace: a spare workspace is placed into a new
// conversation, kept when the fetch leaves the branch where it was, and
// cloned again when the branch moved; a workspace whose clone (or whose
// check of a placed spare) a crash interrupted is cloned again.
func TestSpareWorkspace(t *testing.T) {
	ctx := context.Background()
	origin := testkit.GitRepo(t, map[string]string{"NOTE.md": "v1\n"})
	state := t.TempDir()
	h := &repoHandler{mirror: &gitmirror.Mirror{Dir: filepath.Join(state, "app", "git-mirror"), URL: origin},
		store: &conversation.Store{Root: filepath.Join(state, "app", "conversations"), Repo: "app"}, jobCtx: ctx}
	if err := os.MkdirAll(h.store.Root, 0o755); err != nil {
		t.Fatal(err)
	}
	note := func(dir *conversation.Dir) string {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(dir.Workspace(), "NOTE.md"))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	// start is a task's workspace start: the spare placed, the mirror
	// updated, the workspace ensured.
	start := func(dir *conversation.Dir) (placed bool) {
		t.Helper()
		sp, err := h.placeWorkspace(dir)
		if err != nil {
			t.Fatal(err)
		}
		rev, err := h.mirror.Update(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := ensureWorkspace(ctx, h, dir, rev, sp); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(dir.Workspace() + cloningSuffix); err == nil {
			t.Fatal("the clone marker is left")
		}
		return sp != nil
	}
	refill := func() {
		t.Helper()
		h.refillWorkspace()
		h.bg.Wait()
		if h.ws.spare == nil {
			t.Fatal("no spare workspace made")
		}
	}
	newConv := func() *conversation.Dir {
		t.Helper()
		dir, _, err := h.store.Create("test")
		if err != nil {
			t.Fatal(err)
		}
		return dir
	}

	first := newConv()
	if start(first) || note(first) != "v1\n" {
		t.Fatalf("first workspace: placed a spare that cannot exist, or NOTE.md = %q", note(first))
	}
	refill()
	second := newConv()
	if !start(second) || note(second) != "v1\n" {
		t.Fatalf("second workspace: the spare was not placed, or NOTE.md = %q", note(second))
	}
	h.ws.mu.Lock()
	spareDir := h.spareWorkspaceDir()
	h.ws.mu.Unlock()
	if _, err := os.Stat(spareDir); err == nil {
		t.Error("the placed spare is still in the spare's place")
	}

	// The branch moves after the spare was made: the placed spare is
	// cloned again.
	refill()
	testkit.WriteFiles(t, origin, map[string]string{"NOTE.md": "v2\n"})
	testkit.Commit(t, origin, "v2")
	third := newConv()
	if !start(third) || note(third) != "v2\n" {
		t.Fatalf("third workspace: NOTE.md = %q; want the pushed v2", note(third))
	}
	if got := testkit.Git(t, third.Workspace(), "remote", "get-url", "origin"); strings.TrimSpace(got) != origin {
		t.Errorf("origin %q; want %s", got, origin)
	}

	// A crash left a half-cloned workspace and its marker: cloned again.
	fourth := newConv()
	testkit.WriteFiles(t, fourth.Workspace(), map[string]string{".git/HEAD": "junk", "half.txt": "partial"})
	if err := os.WriteFile(fourth.Workspace()+cloningSuffix, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h.ws.spare = nil
	if start(fourth) || note(fourth) != "v2\n" {
		t.Fatalf("fourth workspace: NOTE.md = %q", note(fourth))
	}
	if _, err := os.Stat(filepath.Join(fourth.Workspace(), "half.txt")); err == nil {
		t.Error("the half clone's files are still there")
	}
	// A conversation's existing workspace is left as it is.
	testkit.WriteFiles(t, second.Workspace(), map[string]string{"work.txt": "the agent's"})
	refill()
	if start(second) {
		t.Error("a spare was placed into a workspace that exists")
	}
	if _, err := os.Stat(filepath.Join(second.Workspace(), "work.txt")); err != nil {
		t.Errorf("the existing workspace was replaced: %v", err)
	}
}
