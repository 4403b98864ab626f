package gateway

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/airut/airut/internal/conversation"
)

// Read-only views of the conversations on disk, for the dashboard. They
// read <state>/<repo>/conversations/ directly, so past conversations are
// there after a restart, and those of a repo that is not running too.

// ConversationView is one conversation as the dashboard shows it.
type ConversationView struct {
	Record conversation.Record
	// Dir is the conversation directory.
	Dir string
}

// EventsPath is the conversation's events.jsonl.
func (v *ConversationView) EventsPath() string { return filepath.Join(v.Dir, conversation.EventsFile) }

// NetworkLogPath is the conversation's network log.
func (v *ConversationView) NetworkLogPath() string {
	return filepath.Join(v.Dir, conversation.NetworkLogFile)
}

// OutboxFile is one file waiting in a conversation's outbox.
type OutboxFile = conversation.OutboxFile

// Conversation reads conversation id from disk, whichever repo holds it
// (conversation ids are unique across the gateway).
func (g *Gateway) Conversation(id string) (ConversationView, error) {
	if !conversation.ValidID(id) {
		return ConversationView{}, fmt.Errorf("conversation %q: %w", id, conversation.ErrBadID)
	}
	for _, repo := range g.stateRepos() {
		dir := filepath.Join(g.opts.StateDir, repo, "conversations", id)
		rec, err := readRecord(dir)
		if errors.Is(err, conversation.ErrNotFound) {
			continue
		}
		if err != nil {
			return ConversationView{}, err
		}
		if rec.Repo == "" {
			rec.Repo = repo
		}
		return ConversationView{Record: *rec, Dir: dir}, nil
	}
	return ConversationView{}, fmt.Errorf("%s: %w", id, ErrUnknownConversation)
}

// Conversations lists the conversations of repo ("" for every repo) read
// from disk, most recently updated first, at most limit of them (0: all).
func (g *Gateway) Conversations(repo string, limit int) []ConversationView {
	repos := g.stateRepos()
	if repo != "" {
		repos = []string{repo}
	}
	var out []ConversationView
	for _, r := range repos {
		root := filepath.Join(g.opts.StateDir, r, "conversations")
		entries, err := os.ReadDir(root)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !e.IsDir() || !conversation.ValidID(e.Name()) {
				continue
			}
			dir := filepath.Join(root, e.Name())
			rec, err := readRecord(dir)
			if err != nil {
				continue // being created, or trashed meanwhile
			}
			if rec.Repo == "" {
				rec.Repo = r
			}
			out = append(out, ConversationView{Record: *rec, Dir: dir})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Record.Updated.After(out[j].Record.Updated) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// FindTask returns the conversation that recorded task id and the task's
// record, for a finished task the tracker no longer holds (after a
// restart).
func (g *Gateway) FindTask(id string) (ConversationView, conversation.Task, bool) {
	for _, v := range g.Conversations("", 0) {
		for _, t := range v.Record.Tasks {
			if t.ID == id {
				return v, t, true
			}
		}
	}
	return ConversationView{}, conversation.Task{}, false
}

// Outbox lists the files in a conversation's outbox (regular files in its
// root only).
func (v *ConversationView) Outbox() ([]OutboxFile, error) { return v.dir().StatOutbox() }

// ReadOutbox reads one outbox file of at most max bytes.
func (v *ConversationView) ReadOutbox(name string, max int64) ([]byte, error) {
	return v.dir().ReadOutboxFile(name, max)
}

func (v *ConversationView) dir() *conversation.Dir {
	return &conversation.Dir{ID: v.Record.ID, Path: v.Dir}
}

// stateRepos are the repo ids that have a directory in the state root:
// configured now or not.
func (g *Gateway) stateRepos() []string {
	entries, err := os.ReadDir(g.opts.StateDir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && e.Name()[0] != '.' {
			if _, err := os.Stat(filepath.Join(g.opts.StateDir, e.Name(), "conversations")); err == nil {
				out = append(out, e.Name())
			}
		}
	}
	return out
}

func readRecord(dir string) (*conversation.Record, error) {
	d := &conversation.Dir{Path: dir}
	return d.Load()
}
