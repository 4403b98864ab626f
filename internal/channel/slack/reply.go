package slack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/slack-go/slack"

	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/markdown"
)

// responseFile is the name a reply too long for five messages goes out as.
const responseFile = "response.md"

// replyProgress remembers what of one reply was sent, so that a retried
// Reply (the gateway retries a failed one) continues where it stopped and
// posts nothing twice.
type replyProgress struct {
	chunks   int             // messages posted
	uploaded map[string]bool // attachments uploaded, by name
	notified bool            // the failed-uploads message went out
}

type replyProgressKey struct{ source, digest string }

func (k replyProgressKey) String() string { return k.source + "\x00" + k.digest }

func threadOf(msg *channel.Message) (ch, thread string, err error) {
	ch, thread = msg.Thread[threadChannel], msg.Thread[threadTS]
	if ch == "" || thread == "" {
		return "", "", fmt.Errorf("slack: message %q carries no thread", msg.SourceID)
	}
	return ch, thread, nil
}

// Acknowledge implements channel.Channel: the thread's conversation is
// recorded (before any reply), and messages that arrived behind the
// first one go on to it. The user already sees :eyes: or the assistant
// status, so nothing is posted.
func (c *Channel) Acknowledge(ctx context.Context, msg *channel.Message, conversationID string) error {
	if _, _, err := threadOf(msg); err != nil {
		return err
	}
	return c.register(msg, conversationID)
}

// Started clears the assistant status once the agent runs, so the
// composer works again while the task goes on (the status is for the
// preparation only). Progress calls it too.
func (c *Channel) Started(ctx context.Context, msg *channel.Message) error {
	if msg.Thread[threadSurface] != surfaceDM {
		return nil
	}
	ch, thread, err := threadOf(msg)
	if err != nil {
		return err
	}
	c.mu.Lock()
	p := c.planLocked(msg)
	already := p.started
	p.started = true
	c.mu.Unlock()
	if already {
		return nil
	}
	return c.setStatus(ctx, ch, thread, "")
}

// Reply implements channel.Channel: the reply in mrkdwn, in as many
// messages as it takes (split at safe boundaries under Slack's 40,000
// characters), or as response.md when that would be more than five; then
// each attachment uploaded to the thread, and a message naming any that
// failed.
func (c *Channel) Reply(ctx context.Context, msg *channel.Message, r channel.Reply) error {
	ch, thread, err := threadOf(msg)
	if err != nil {
		return err
	}
	conv := r.ConversationID
	if conv == "" {
		conv = msg.ConversationID
	}
	if err := c.register(msg, conv); err != nil {
		return err
	}
	c.flushPlan(ctx, msg)
	if msg.Thread[threadSurface] == surfaceDM {
		if err := c.setStatus(ctx, ch, thread, ""); err != nil {
			c.log.Warn("slack assistant status not cleared", logChan, ch, logError, err)
		}
	}

	key := replyProgressKey{source: msg.SourceID, digest: replyDigest(r)}
	c.mu.Lock()
	prog := c.replies[key.String()]
	if prog == nil {
		prog = &replyProgress{uploaded: map[string]bool{}}
		c.replies[key.String()] = prog
	}
	c.mu.Unlock()

	users, chans := c.mentionCandidates()
	text := rewriteMentions(markdown.ToMrkdwn(r.Markdown), users, chans)
	chunks := markdown.SplitMrkdwn(text, maxMessageChars)
	if len(chunks) == 0 {
		chunks = []string{"(empty reply)"}
	}
	if len(chunks) > maxChunks {
		if prog.chunks == 0 {
			if err := c.upload(ctx, ch, thread, responseFile, []byte(r.Markdown),
				"The reply is long, so it is attached as response.md."); err != nil {
				return fmt.Errorf("slack reply as %s: %w", responseFile, err)
			}
			prog.chunks = 1
		}
	} else {
		for ; prog.chunks < len(chunks); prog.chunks++ {
			_, _, err := c.api.PostMessageContext(ctx, ch,
				slack.MsgOptionText(chunks[prog.chunks], false),
				slack.MsgOptionTS(thread),
				slack.MsgOptionDisableMediaUnfurl(),
			)
			if err != nil {
				return fmt.Errorf("slack reply part %d of %d: %w", prog.chunks+1, len(chunks), err)
			}
		}
	}

	var failed []string
	for _, a := range r.Attachments {
		if prog.uploaded[a.Name] {
			continue
		}
		if err := c.upload(ctx, ch, thread, a.Name, a.Data, ""); err != nil {
			c.log.Warn("slack attachment not uploaded", "file", a.Name, logError, err)
			failed = append(failed, fmt.Sprintf("• %s (%s)", escapeText(a.Name), escapeText(err.Error())))
			continue
		}
		prog.uploaded[a.Name] = true
	}
	if len(failed) > 0 && !prog.notified {
		text := "These files could not be uploaded; they are still in the outbox:\n" + strings.Join(failed, "\n")
		if _, _, err := c.api.PostMessageContext(ctx, ch, slack.MsgOptionText(text, false), slack.MsgOptionTS(thread)); err != nil {
			return fmt.Errorf("slack failed-upload notice: %w", err)
		}
		prog.notified = true
	}
	return nil
}

// escapeText escapes a plain string for mrkdwn.
func escapeText(s string) string { return markdown.EscapeMrkdwn(s) }

// upload shares data as a file in the thread with Slack's current upload
// API: files.getUploadURLExternal, the bytes to the URL it gives, then
// files.completeUploadExternal.
func (c *Channel) upload(ctx context.Context, ch, thread, name string, data []byte, comment string) error {
	if len(data) == 0 {
		return errors.New("empty file")
	}
	_, err := c.api.UploadFileContext(ctx, slack.UploadFileParameters{
		Filename:        name,
		Title:           name,
		FileSize:        len(data),
		Reader:          bytes.NewReader(data),
		Channel:         ch,
		ThreadTimestamp: thread,
		InitialComment:  comment,
	})
	return err
}

// Done implements channel.Channel: in a channel, :eyes: gives way to
// :white_check_mark: when the task succeeded, else to :x:.
func (c *Channel) Done(ctx context.Context, msg *channel.Message, outcome channel.Outcome) error {
	return c.DoneOutcome(ctx, msg, outcome.Success())
}

// DoneOutcome finishes msg at its source: :eyes: is replaced by
// :white_check_mark: when ok, else by :x:. DMs have no reactions.
func (c *Channel) DoneOutcome(ctx context.Context, msg *channel.Message, ok bool) error {
	if msg.Thread[threadSurface] == surfaceDM {
		return c.finishSource(msg)
	}
	ch, ts := msg.Thread[threadChannel], msg.Thread[threadMsgTS]
	if ch == "" || ts == "" {
		return fmt.Errorf("slack: message %q carries no channel and ts", msg.SourceID)
	}
	ref := slack.NewRefToMessage(ch, ts)
	final := reactionDone
	if !ok {
		final = reactionError
	}
	if err := c.api.AddReactionContext(ctx, final, ref); err != nil && !isSlackError(err, "already_reacted") {
		return fmt.Errorf("slack reaction %s: %w", final, err)
	}
	if err := c.api.RemoveReactionContext(ctx, reactionEyes, ref); err != nil && !isSlackError(err, "no_reaction") {
		return fmt.Errorf("slack remove reaction %s: %w", reactionEyes, err)
	}
	return c.finishSource(msg)
}

// finishSource forgets msg: it is not handed over again after a restart.
func (c *Channel) finishSource(msg *channel.Message) error {
	c.mu.Lock()
	for k := range c.replies {
		if strings.HasPrefix(k, msg.SourceID+"\x00") {
			delete(c.replies, k)
		}
	}
	c.forgetPlanLocked(msg)
	c.mu.Unlock()
	return c.inbox.remove(msg.SourceID)
}
