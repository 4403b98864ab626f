package slack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/slack-go/slack"

	"github.com/airut/airut/internal/channel"
)

// startKey names one new thread of a Send: a retried Send (the gateway
// retries a failed one) finds the thread it started and goes on in it.
type startKey struct{ conv, dest, digest string }

// started is what a Send did in one destination.
type started struct {
	channel, ts string
	done        bool
}

var _ channel.Starter = (*Channel)(nil)

// Send implements channel.Starter (scheduled tasks, S10): in each
// destination of to — a channel id ("C…"), or a user id ("U…", "W…") for
// the app's direct messages with that user — a new message titled with
// subject, and r in its thread as Reply would post it. The thread is
// mapped to conv before the reply is posted, so an answer in it
// continues the conversation like any engaged thread. A Send retried
// after a failure posts nothing twice while the process runs.
func (c *Channel) Send(ctx context.Context, to []string, subject, conv string, r channel.Reply) error {
	if conv == "" {
		return errors.New("slack send: no conversation id")
	}
	if len(to) == 0 {
		return channel.Permanent(errors.New("slack send: no destination"))
	}
	if r.ConversationID == "" {
		r.ConversationID = conv
	}
	var errs []error
	permanent := true
	for _, dest := range to {
		if err := c.sendOne(ctx, strings.TrimSpace(dest), subject, conv, r); err != nil {
			errs = append(errs, fmt.Errorf("slack send to %s: %w", dest, err))
			permanent = permanent && channel.IsPermanent(err)
		}
	}
	err := errors.Join(errs...)
	if err != nil && permanent {
		return channel.Permanent(err)
	}
	return err
}

func (c *Channel) sendOne(ctx context.Context, dest, subject, conv string, r channel.Reply) error {
	k := startKey{conv: conv, dest: dest, digest: replyDigest(r)}
	c.mu.Lock()
	if c.starts == nil {
		c.starts = map[startKey]*started{}
	}
	st := c.starts[k]
	if st == nil {
		st = &started{}
		c.starts[k] = st
	}
	cur := *st
	c.mu.Unlock()
	if cur.done {
		return nil
	}
	if cur.ts == "" {
		ch := dest
		if isUserID(dest) {
			// A DM: the app's conversation with the user.
			im, _, _, err := c.api.OpenConversationContext(ctx, &slack.OpenConversationParameters{Users: []string{dest}})
			if err != nil {
				return sendError("open the direct message", err)
			}
			ch = im.ID
		}
		title := subject
		if strings.TrimSpace(title) == "" {
			title = "Scheduled task"
		}
		postCh, ts, err := c.api.PostMessageContext(ctx, ch,
			slack.MsgOptionText("*"+escapeText(title)+"*", false),
			slack.MsgOptionDisableMediaUnfurl(),
		)
		if err != nil {
			return sendError("post the message", err)
		}
		if postCh != "" {
			ch = postCh
		}
		cur.channel, cur.ts = ch, ts
		c.mu.Lock()
		*st = cur
		c.mu.Unlock()
	}
	msg := &channel.Message{
		SourceID:       "send:" + conv + ":" + cur.channel + ":" + cur.ts,
		ConversationID: conv,
		Thread:         map[string]string{threadChannel: cur.channel, threadTS: cur.ts, threadMsgTS: cur.ts},
	}
	if err := c.Reply(ctx, msg, r); err != nil {
		return sendError("post the reply", err)
	}
	c.mu.Lock()
	st.done = true
	for k := range c.replies {
		if strings.HasPrefix(k, msg.SourceID+"\x00") {
			delete(c.replies, k)
		}
	}
	c.mu.Unlock()
	return nil
}

// replyDigest identifies a reply's content: its text and attachment names.
func replyDigest(r channel.Reply) string {
	sum := sha256.New()
	sum.Write([]byte(r.Markdown))
	for _, a := range r.Attachments {
		sum.Write([]byte{0})
		sum.Write([]byte(a.Name))
	}
	return hex.EncodeToString(sum.Sum(nil))
}

// isUserID tells a user id (a DM) from a channel id.
func isUserID(id string) bool { return strings.HasPrefix(id, "U") || strings.HasPrefix(id, "W") }

// sendPermanentCodes are the refusals of a Send beyond permanentCodes:
// the destination user cannot be written to.
var sendPermanentCodes = map[string]bool{"user_not_found": true, "user_disabled": true, "cannot_dm_bot": true}

func sendError(what string, err error) error {
	err = fmt.Errorf("%s: %w", what, err)
	if Permanent(err) || sendPermanentCodes[slackCode(err)] {
		return channel.Permanent(err)
	}
	return err
}
