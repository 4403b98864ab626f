package gateway

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/airut/airut/internal/claudecli"
	"github.com/airut/airut/internal/conversation"
)

// gcLoop removes old conversations (and unused images) at start and then
// every gcInterval until ctx ends.
func (g *Gateway) gcLoop(ctx context.Context) {
	t := time.NewTicker(gcInterval)
	defer t.Stop()
	for {
		g.collectGarbage(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (g *Gateway) collectGarbage(ctx context.Context) {
	days := g.cfg.Execution.ConversationMaxAgeDays
	g.mu.Lock()
	repos := make([]*repoHandler, 0, len(g.repos))
	for _, h := range g.repos {
		repos = append(repos, h)
	}
	g.mu.Unlock()
	if days > 0 {
		for _, h := range repos {
			removed, err := h.collectConversations(time.Duration(days)*24*time.Hour, g.now())
			if err != nil {
				g.log.Warn("conversation gc failed", logRepo, h.id, logError, err)
			}
			if len(removed) > 0 {
				g.log.Info("removed old conversations", logRepo, h.id, "count", len(removed))
			}
		}
	}
	// Claude Code versions no repo uses any more go only while no job
	// exists, checked and collected under g.mu so that no job can be
	// registered in between: a task between resolving its version and
	// mounting it would otherwise lose the file.
	g.mu.Lock()
	if len(g.jobs) == 0 {
		g.collectClaudeVersions()
	}
	g.mu.Unlock()
	// Images a task has resolved are leased until its container exits, and
	// the cache prunes only this gateway's images: pruning need not wait
	// for idle (a "busy" snapshot was stale by the time it was used).
	if g.cfg.Execution.ImagePrune {
		if removed, err := g.cache.Prune(ctx); err != nil {
			g.log.Warn("image prune failed", logError, err)
		} else if len(removed) > 0 {
			g.log.Info("pruned unused images", "count", len(removed))
		}
	}
}

// collectConversations removes the conversations last active more than
// maxAge before now. A conversation with a job queued, pending, running or
// replying is kept however old it is: its job has not taken the
// conversation lock yet, or has let go of it to send the reply. gcMu keeps
// a message from being mapped to a conversation while it is removed.
func (h *repoHandler) collectConversations(maxAge time.Duration, now time.Time) ([]string, error) {
	h.gcMu.Lock()
	defer h.gcMu.Unlock()
	ids, err := h.store.List()
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, id := range ids {
		if h.busy(id) {
			continue
		}
		dir, err := h.store.Open(id)
		if errors.Is(err, conversation.ErrNotFound) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		updated, err := lastActivity(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if now.Sub(updated) <= maxAge {
			continue
		}
		// Another process (a second gateway on the same state) may hold it.
		l, err := h.store.TryLock(id)
		if err != nil {
			if !errors.Is(err, conversation.ErrLocked) && !errors.Is(err, conversation.ErrNotFound) {
				errs = append(errs, err)
			}
			continue
		}
		err = os.RemoveAll(dir.Path)
		l.Unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("remove conversation %s: %w", id, err))
			continue
		}
		removed = append(removed, id)
	}
	return removed, errors.Join(errs...)
}

// lastActivity is the record's updated time, or the directory's mtime when
// the record is missing or unreadable (a crash mid-create).
func lastActivity(dir *conversation.Dir) (time.Time, error) {
	if r, err := dir.Load(); err == nil && !r.Updated.IsZero() {
		return r.Updated, nil
	}
	fi, err := os.Stat(dir.Path)
	if err != nil {
		return time.Time{}, fmt.Errorf("conversation %s: %w", dir.ID, err)
	}
	return fi.ModTime(), nil
}

// collectClaudeVersions removes installed Claude Code versions that no
// repo's claude_version names; a tag keeps what it last resolved to.
func (g *Gateway) collectClaudeVersions() {
	var keep []string
	for _, rc := range g.cfg.Repos {
		switch v := rc.ClaudeVersion; {
		case v == "":
		case claudecli.IsTag(v):
			if last := g.claude.LastResolved(v); last != "" {
				keep = append(keep, last)
			}
		default:
			keep = append(keep, v)
		}
	}
	removed, err := g.claude.GC(keep)
	if err != nil {
		g.log.Warn("claude version gc failed", logError, err)
	}
	if len(removed) > 0 {
		g.log.Info("removed unused Claude Code versions", "versions", removed)
	}
}
