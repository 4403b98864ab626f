package slack

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/airut/airut/internal/channel"
)

// heldMessage is an admitted message waiting to be handed over.
type heldMessage struct {
	p   *post
	msg *channel.Message
}

// admit runs in the post's thread lane: checks, then builds the message,
// then hands it over (or holds it behind the thread's first message).
func (c *Channel) admit(ctx context.Context, p *post) {
	key := p.threadKey()
	log := c.log.With(logChan, p.channel, logTS, p.ts, logThread, p.threadTS, logUser, p.user, logSurface, p.kind.String())
	// Recorded before the checks: its envelope is acknowledged already,
	// so a stop or crash from here on must leave it to be redone.
	if err := c.inbox.add(p); err != nil {
		// Going on still answers it in the normal case.
		log.Error("slack message not recorded in the inbox", logError, err)
	}
	hm := c.check(ctx, p, log)
	if hm == nil && ctx.Err() == nil {
		if err := c.inbox.remove(p.key()); err != nil {
			log.Warn("slack rejected message not removed from the inbox", logError, err)
		}
	}
	c.mu.Lock()
	if p.kind != postReply {
		c.threadLocked(key).claims--
	}
	if hm == nil {
		c.forgetLocked(key)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.deliver(ctx, hm, log)
}

// check applies the surface rules and authorization, then builds the
// message. nil means the post is dropped (and the log says why).
func (c *Channel) check(ctx context.Context, p *post, log *slog.Logger) *heldMessage {
	// A reply continues only a thread that has, or is getting, a
	// conversation: its root may have been rejected meanwhile.
	if p.kind == postReply && !c.engaged(p.threadKey()) {
		log.Debug("slack reply in a thread that is not engaged; ignored")
		return nil
	}
	if p.kind != postDM && len(c.allowed) > 0 && !c.allowed[p.channel] {
		log.Info("slack message rejected", logReason, "channel not in allowed_channels")
		return nil
	}
	u, why := c.authorize(ctx, p.user, p.userTeam)
	if why != "" {
		log.Info("slack message rejected", logReason, string(why))
		return nil
	}
	if p.kind != postDM {
		// Learnt for #name in replies.
		c.channels.name(ctx, c.api, p.channel)
	}
	msg := &channel.Message{
		SourceID:      p.key(),
		MessageID:     p.key(),
		SenderAddress: u.ID,
		SenderName:    u.displayName(),
		Time:          tsTime(p.ts, c.clock.Now()),
		Body:          c.inboundText(ctx, p.text),
		Thread: map[string]string{
			threadChannel: p.channel,
			threadTS:      p.threadTS,
			threadMsgTS:   p.ts,
			threadSurface: surfaceOf(p.kind),
		},
	}
	var notes []string
	msg.Attachments, notes = c.downloadFiles(ctx, p.files, log)
	if len(notes) > 0 {
		msg.Body = strings.TrimSpace(msg.Body + "\n\n" + strings.Join(notes, "\n"))
	}
	if p.kind == postMention && p.midThread() {
		if _, known := c.store.get(p.threadKey()); !known {
			if bg := c.history(ctx, p, log); bg != "" {
				msg.Body = bg + msg.Body
			}
		}
	}
	log.Info("slack message accepted", "sender", msg.SenderName)
	return &heldMessage{p: p, msg: msg}
}

func surfaceOf(k postKind) string {
	if k == postDM {
		return surfaceDM
	}
	return surfaceChannel
}

// deliver hands hm over with its thread's conversation, or holds it while
// the thread's first message waits for one, so that two quick messages in
// a new thread never start two conversations.
func (c *Channel) deliver(ctx context.Context, hm *heldMessage, log *slog.Logger) {
	if ctx.Err() != nil {
		// Run has ended: nothing goes to the gateway any more. The
		// message is in the inbox and is handed over after the restart.
		return
	}
	key := hm.p.threadKey()
	conv, _ := c.store.get(key)
	if conv != "" && !c.cfg.Exists(conv) {
		log.Info("slack thread's conversation no longer exists; starting a new one", logConv, conv)
		conv = ""
	}
	c.mu.Lock()
	t := c.threadLocked(key)
	if len(t.held) > 0 || (conv == "" && t.awaiting) {
		t.held = append(t.held, hm)
		c.mu.Unlock()
		log.Info("slack message waits for the conversation of its thread's first message")
		return
	}
	newThread := conv == ""
	if newThread {
		t.awaiting = true
		t.holdTimer = c.clock.AfterFunc(defaultHoldTimeout, func() {
			c.lanes.run(key, func() { c.holdExpired(ctx, key) })
		})
	} else {
		c.forgetLocked(key)
	}
	h := c.handler
	c.mu.Unlock()

	hm.msg.ConversationID = conv
	c.markReceived(ctx, hm, newThread, log)
	if err := h(ctx, hm.msg); err != nil {
		// Not taken: it stays in the inbox and is handed over again
		// after a restart.
		log.Warn("slack message not taken by the gateway", logError, err)
	}
}

// release hands over the messages held behind a thread's first message,
// once its conversation is known. It runs in the thread's lane.
func (c *Channel) release(ctx context.Context, key string) {
	c.mu.Lock()
	t := c.threads[key]
	if t == nil {
		c.mu.Unlock()
		return
	}
	t.awaiting = false
	if t.holdTimer != nil {
		t.holdTimer.Stop()
		t.holdTimer = nil
	}
	held := t.held
	t.held = nil
	c.forgetLocked(key)
	c.mu.Unlock()
	for _, hm := range held {
		c.deliver(ctx, hm, c.log.With(logChan, hm.p.channel, logTS, hm.p.ts))
	}
}

// holdExpired gives up waiting for a first message's conversation (the
// gateway dropped it): the held messages go on as if they came first.
func (c *Channel) holdExpired(ctx context.Context, key string) {
	c.mu.Lock()
	t := c.threads[key]
	if t == nil || !t.awaiting {
		c.mu.Unlock()
		return
	}
	n := len(t.held)
	c.mu.Unlock()
	c.log.Warn("slack thread's first message got no conversation in time; handing over the messages after it", "thread", key, "held", n)
	c.release(ctx, key)
}

// register records a thread's conversation (before anything is posted in
// reply) and releases the messages held behind it.
func (c *Channel) register(msg *channel.Message, conv string) error {
	ch, thread := msg.Thread[threadChannel], msg.Thread[threadTS]
	if ch == "" || thread == "" || conv == "" {
		return nil
	}
	key := ch + ":" + thread
	if err := c.store.put(key, conv, c.clock.Now()); err != nil {
		return err
	}
	c.mu.Lock()
	ctx := c.runCtx
	_, inFlight := c.threads[key]
	c.mu.Unlock()
	if inFlight && ctx != nil {
		c.lanes.run(key, func() { c.release(ctx, key) })
	}
	return nil
}

// markReceived shows the user that the message arrived: :eyes: in a
// channel; in a DM the assistant status, and the thread title from the
// first message.
func (c *Channel) markReceived(ctx context.Context, hm *heldMessage, newThread bool, log *slog.Logger) {
	p := hm.p
	if p.kind != postDM {
		if err := c.api.AddReactionContext(ctx, reactionEyes, slack.NewRefToMessage(p.channel, p.ts)); err != nil && !isSlackError(err, "already_reacted") {
			log.Warn("slack reaction not added", logError, err)
		}
		return
	}
	if err := c.setStatus(ctx, p.channel, p.threadTS, statusWorking); err != nil {
		log.Warn("slack assistant status not set", logError, err)
	}
	if newThread {
		err := c.api.SetAssistantThreadsTitleContext(ctx, slack.AssistantThreadsSetTitleParameters{
			ChannelID: p.channel, ThreadTS: p.threadTS, Title: title(hm.msg.Body),
		})
		if err != nil {
			log.Warn("slack assistant thread title not set", logError, err)
		}
	}
}

const (
	reactionEyes  = "eyes"
	reactionDone  = "white_check_mark"
	reactionError = "x"
	statusWorking = "is working on this…"
	greeting      = "Hi! Send me a task and I'll work on it in a sandbox with the repository, then reply in this thread. Attach files if they help."
)

func (c *Channel) setStatus(ctx context.Context, ch, thread, status string) error {
	return c.api.SetAssistantThreadsStatusContext(ctx, slack.AssistantThreadsSetStatusParameters{
		ChannelID: ch, ThreadTS: thread, Status: status,
	})
}

// greet answers assistant_thread_started: a new DM thread opened by the
// user gets a short greeting.
func (c *Channel) greet(ctx context.Context, ch, thread string) {
	if ch == "" || thread == "" {
		return
	}
	_, _, err := c.api.PostMessageContext(ctx, ch, slack.MsgOptionText(greeting, false), slack.MsgOptionTS(thread))
	if err != nil {
		c.log.Warn("slack greeting not posted", logChan, ch, logThread, thread, logError, err)
	}
}

// title is a thread title from a message: its first line, shortened.
func title(body string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(body), "\n")
	line = strings.TrimSpace(line)
	if r := []rune(line); len(r) > 60 {
		line = strings.TrimSpace(string(r[:59])) + "…"
	}
	if line == "" {
		line = "Task"
	}
	return line
}

// tsTime converts a Slack ts ("1700000000.000100") to a time.
func tsTime(ts string, fallback time.Time) time.Time {
	sec, frac, _ := strings.Cut(ts, ".")
	s, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return fallback.UTC()
	}
	us, _ := strconv.ParseInt((frac + "000000")[:6], 10, 64)
	return time.Unix(s, us*1000).UTC()
}

// history renders the thread's earlier messages for a mention in the
// middle of a thread the app was not part of: the agent sees what the
// request refers to. Bounded by HistoryMessages and HistoryChars, newest
// kept.
func (c *Channel) history(ctx context.Context, p *post, log *slog.Logger) string {
	msgs, _, _, err := c.api.GetConversationRepliesContext(ctx, &slack.GetConversationRepliesParameters{
		ChannelID: p.channel, Timestamp: p.threadTS, Limit: 200,
	})
	if err != nil {
		log.Warn("slack thread history not read", logError, err)
		return ""
	}
	var lines []string
	total := 0
	var earlier []slack.Message
	cutoff := tsTime(p.ts, time.Time{})
	for _, m := range msgs {
		if tsTime(m.Timestamp, cutoff).Before(cutoff) {
			earlier = append(earlier, m)
		}
	}
	for i := len(earlier) - 1; i >= 0 && len(lines) < c.cfg.HistoryMessages; i-- {
		m := earlier[i]
		who := m.Username
		if m.User != "" {
			who = m.User
			if u, err := c.users.get(ctx, m.User); err == nil {
				who = u.displayName()
			}
		}
		if m.BotID != "" && who == "" {
			who = "bot"
		}
		text := c.inboundText(ctx, m.Text)
		if r := []rune(text); len(r) > c.cfg.HistoryChars/2 {
			text = string(r[:c.cfg.HistoryChars/2]) + " […]"
		}
		line := fmt.Sprintf("[%s %s] %s", who, tsTime(m.Timestamp, c.clock.Now()).Format("2006-01-02 15:04:05 UTC"), text)
		if total+len(line) > c.cfg.HistoryChars {
			break
		}
		total += len(line)
		lines = append(lines, line)
	}
	if len(lines) == 0 {
		return ""
	}
	for i, j := 0, len(lines)-1; i < j; i, j = i+1, j-1 {
		lines[i], lines[j] = lines[j], lines[i]
	}
	omitted := ""
	if n := len(earlier) - len(lines); n > 0 {
		omitted = fmt.Sprintf(" (%d older messages left out)", n)
	}
	return "Earlier messages in this Slack thread, for background" + omitted + ":\n\n" +
		strings.Join(lines, "\n") + "\n\n---\n\n"
}
