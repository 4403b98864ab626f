package slack

import (
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/slack-go/slack"
)

// inboxFile keeps the posts that were accepted and not yet Done. Socket
// Mode envelopes are acknowledged on receipt, so Slack will not deliver
// them again: after a crash or restart, the channel hands these over once
// more (the gateway's journal tells a repeat from new work), the way an
// IMAP inbox keeps a message until it is deleted.
const inboxFile = "slack_inbox.json"

// storedPost is a post as kept in the inbox file.
type storedPost struct {
	Kind     postKind     `json:"kind"`
	Channel  string       `json:"channel"`
	TS       string       `json:"ts"`
	ThreadTS string       `json:"thread_ts"`
	User     string       `json:"user"`
	UserTeam string       `json:"user_team,omitempty"`
	Text     string       `json:"text"`
	Files    []slack.File `json:"files,omitempty"`
}

var timeZero time.Time

type inbox struct {
	path string

	mu    sync.Mutex
	posts map[string]storedPost
}

func openInbox(dir string) (*inbox, error) {
	in := &inbox{path: filepath.Join(dir, inboxFile), posts: map[string]storedPost{}}
	if err := loadJSON(in.path, &in.posts); err != nil {
		return nil, fmt.Errorf("slack inbox: %w", err)
	}
	return in, nil
}

func (in *inbox) add(p *post) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.posts[p.key()] = storedPost{Kind: p.kind, Channel: p.channel, TS: p.ts, ThreadTS: p.threadTS,
		User: p.user, UserTeam: p.userTeam, Text: p.text, Files: p.files}
	return in.saveLocked()
}

func (in *inbox) remove(key string) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if _, ok := in.posts[key]; !ok {
		return nil
	}
	delete(in.posts, key)
	return in.saveLocked()
}

func (in *inbox) saveLocked() error {
	if err := saveJSON(in.path, in.posts); err != nil {
		return fmt.Errorf("slack inbox: %w", err)
	}
	return nil
}

// pending returns the kept posts, oldest first.
func (in *inbox) pending() []*post {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []*post
	for _, s := range in.posts {
		out = append(out, &post{kind: s.Kind, channel: s.Channel, ts: s.TS, threadTS: s.ThreadTS,
			user: s.User, userTeam: s.UserTeam, text: s.Text, files: s.Files})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := tsTime(out[i].ts, timeZero), tsTime(out[j].ts, timeZero)
		if !a.Equal(b) {
			return a.Before(b)
		}
		return out[i].key() < out[j].key()
	})
	return out
}
