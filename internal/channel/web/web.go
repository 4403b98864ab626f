// Package web is the dashboard's channel: tasks started and continued from
// the browser (or its JSON API). Its messages do not arrive through Run:
// the dashboard hands them to the gateway's Submit, which runs them exactly
// as an email would (same journal, sandbox, session and reply flow). What
// the channel does is keep each reply and its files, since the gateway
// clears the outbox once a reply is "sent": the conversation page offers
// them for download afterwards.
//
// Dashboard access is the authorization (SPEC S9): there is no sender
// check here.
package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/airut/airut/internal/channel"
)

// Name is the channel kind.
const Name = "web"

// repliesDir holds, under the channel's state directory,
// <conversation>/<task>/reply.json and files/<name>.
const repliesDir = "replies"

// Channel is one repository's web channel.
type Channel struct {
	dir string
}

// New returns the web channel that keeps its replies under stateDir
// (<state>/<repo>/channels/web).
func New(stateDir string) (*Channel, error) {
	if stateDir == "" {
		return nil, errors.New("web channel: no state directory")
	}
	return &Channel{dir: stateDir}, nil
}

// Name implements channel.Channel.
func (c *Channel) Name() string { return Name }

// Run implements channel.Channel: nothing arrives here (see the package
// doc), so it waits for the end.
func (c *Channel) Run(ctx context.Context, _ channel.Handler) error {
	<-ctx.Done()
	return nil
}

// Acknowledge implements channel.Channel: the dashboard shows the task
// from its first state on, so there is nothing to send.
func (c *Channel) Acknowledge(context.Context, *channel.Message, string) error { return nil }

// Done implements channel.Channel: there is no source to acknowledge.
func (c *Channel) Done(context.Context, *channel.Message, channel.Outcome) error { return nil }

// MaxAttachmentBytes implements channel.AttachmentLimiter: files are kept
// on this host, not mailed, so the cap is generous.
func (c *Channel) MaxAttachmentBytes() int64 { return 512 << 20 }

// StoredReply is a reply as the channel kept it.
type StoredReply struct {
	Conversation string   `json:"conversation"`
	Task         string   `json:"task"`
	Outcome      string   `json:"outcome"`
	Markdown     string   `json:"markdown"`
	Files        []string `json:"files,omitempty"`
}

// Reply implements channel.Channel: the reply and its files are written
// under the channel's directory; a failure to write is transient.
func (c *Channel) Reply(_ context.Context, msg *channel.Message, r channel.Reply) error {
	conv := r.ConversationID
	if conv == "" {
		conv = msg.ConversationID
	}
	if !plainName(conv) || !plainName(r.TaskID) {
		return channel.Permanent(fmt.Errorf("web reply: bad conversation %q or task %q", conv, r.TaskID))
	}
	dir := filepath.Join(c.dir, repliesDir, conv, r.TaskID)
	files := filepath.Join(dir, "files")
	if err := os.MkdirAll(files, 0o700); err != nil {
		return fmt.Errorf("web reply: %w", err)
	}
	sr := StoredReply{Conversation: conv, Task: r.TaskID, Outcome: string(r.Outcome), Markdown: r.Markdown}
	for _, a := range r.Attachments {
		name := filepath.Base(a.Name)
		if !plainName(name) {
			continue
		}
		if err := writeAtomic(filepath.Join(files, name), a.Data); err != nil {
			return fmt.Errorf("web reply: %w", err)
		}
		sr.Files = append(sr.Files, name)
	}
	data, err := json.Marshal(sr)
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(dir, "reply.json"), data); err != nil {
		return fmt.Errorf("web reply: %w", err)
	}
	return nil
}

// Replies lists the replies kept for conversation conv under a web
// channel's state directory, in task order of their files' names.
func Replies(stateDir, conv string) ([]StoredReply, error) {
	if !plainName(conv) {
		return nil, fmt.Errorf("conversation %q: not a plain name", conv)
	}
	root := filepath.Join(stateDir, repliesDir, conv)
	entries, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []StoredReply
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(root, e.Name(), "reply.json"))
		if err != nil {
			continue
		}
		var sr StoredReply
		if json.Unmarshal(data, &sr) == nil {
			out = append(out, sr)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Task < out[j].Task })
	return out, nil
}

// OpenFile opens a file a reply carried; name must be a plain file name.
func OpenFile(stateDir, conv, task, name string) (*os.File, error) {
	if !plainName(conv) || !plainName(task) || !plainName(name) {
		return nil, fmt.Errorf("reply file %q: not a plain name", name)
	}
	f, err := os.Open(filepath.Join(stateDir, repliesDir, conv, task, "files", name))
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("reply file %q: not a regular file", name)
	}
	return f, nil
}

func plainName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\\\x00") && s == filepath.Base(s)
}

func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}
