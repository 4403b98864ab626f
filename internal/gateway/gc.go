package gateway

import (
	"context"
	"time"

	"github.com/airut/airut/internal/claudecli"
	"github.com/airut/airut/internal/config"
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
	g.mu.Lock()
	cfg := g.cfg
	var repos []*repoHandler
	for _, s := range g.slots {
		if s.h != nil {
			repos = append(repos, s.h)
		}
	}
	g.mu.Unlock()
	if days := cfg.Execution.ConversationMaxAgeDays; days > 0 {
		for _, h := range repos {
			removed, err := h.collectConversations(time.Duration(days)*24*time.Hour, g.now())
			if err != nil {
				g.log.Warn("conversation gc failed", logRepo, h.id, logError, err)
			}
			if len(removed) > 0 {
				g.log.Info("removed old conversations", logRepo, h.id, "count", len(removed))
			}
			if n := h.collectJournal(time.Duration(days)*24*time.Hour, g.now()); n > 0 {
				g.log.Info("forgot messages that never came back from their source", logRepo, h.id, "count", n)
			}
		}
	}
	g.collectClaudeVersions(cfg)
	// Images a task has resolved are leased until its container exits, and
	// the cache prunes only this gateway's images: the prune need not wait
	// for idle.
	if cfg.Execution.ImagePrune {
		removed, err := g.currentBackend().Images.Prune(ctx)
		if err != nil {
			g.log.Warn("image prune failed", logError, err)
		} else if len(removed) > 0 {
			g.log.Info("pruned unused images", "count", len(removed))
		}
	}
}

// collectConversations removes the conversations last active more than
// maxAge before now. A conversation with a job queued, pending, running or
// replying is kept however old it is: its job has not taken the
// conversation lock yet, or has let go of it to send the reply. The check
// is made for each conversation at the moment it is moved to the trash,
// under gcMu, which keeps a message from being mapped to it meanwhile; the
// move is a rename, and the deletion runs after gcMu is let go, so intake
// never waits for a workspace to be deleted.
func (h *repoHandler) collectConversations(maxAge time.Duration, now time.Time) ([]string, error) {
	h.gcMu.Lock()
	moved, err := h.store.TrashOlderThan(maxAge, now, h.busy)
	h.gcMu.Unlock()
	if terr := h.store.EmptyTrash(); terr != nil && err == nil {
		err = terr
	}
	return moved, err
}

// collectJournal forgets the journal entries (and spools) of messages
// received more than maxAge ago that are not in progress: their source
// never handed them over again (deleted by hand, another client), and
// their conversation is as old as the ones just collected.
func (h *repoHandler) collectJournal(maxAge time.Duration, now time.Time) int {
	entries, err := h.journal.entries()
	if err != nil {
		h.log.Warn("message journal partly unreadable", logError, err)
	}
	n := 0
	for _, e := range entries {
		if now.Sub(e.Received) <= maxAge {
			continue
		}
		// Under h.mu, intake cannot take the message meanwhile: it marks
		// a message in flight before it reads the journal.
		h.mu.Lock()
		if h.inflight[e.Key] == nil && h.convs[e.Conversation] == nil {
			if err := h.journal.remove(e.Key); err != nil {
				h.log.Warn("cannot forget an old message", logError, err)
			} else {
				_ = h.spool.remove(e.Key)
				n++
			}
		}
		h.mu.Unlock()
	}
	return n
}

// collectClaudeVersions removes installed Claude Code versions that no
// repo's claude_version names; a tag keeps what it last resolved to. It
// runs only while no task is between resolving its binary and the end of
// its container (a version resolved but not yet mounted looks unused):
// the check is made now, under resolveMu, which a task that starts
// meanwhile waits for; intake does not.
func (g *Gateway) collectClaudeVersions(cfg *config.Config) {
	if !g.resolveMu.TryLock() {
		g.log.Debug("Claude version GC skipped: a task is using its binary")
		return
	}
	defer g.resolveMu.Unlock()
	var keep []string
	for _, rc := range cfg.Repos {
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
