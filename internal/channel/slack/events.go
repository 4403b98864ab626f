package slack

import (
	"context"
	"fmt"
	"strings"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"
)

// postKind is how a post reached the app.
type postKind int

const (
	postDM      postKind = iota // a direct message (assistant thread)
	postMention                 // a channel post that mentions the app
	postReply                   // a reply in an engaged channel thread
)

func (k postKind) String() string {
	return [...]string{"dm", "mention", "reply"}[k]
}

// post is one user message that may become work.
type post struct {
	kind     postKind
	channel  string
	ts       string
	threadTS string // the thread's root; ts itself for a top-level post
	user     string
	userTeam string
	text     string
	files    []slack.File
}

func (p *post) key() string       { return p.channel + ":" + p.ts }
func (p *post) threadKey() string { return p.channel + ":" + p.threadTS }

// midThread reports whether the post is a reply under someone else's root.
func (p *post) midThread() bool { return p.threadTS != p.ts }

func (c *Channel) onSocketEvent(ctx context.Context, smc *socketmode.Client, evt socketmode.Event) {
	now := c.clock.Now()
	switch evt.Type {
	case socketmode.EventTypeConnecting:
		c.health.lost(now, "connecting to Socket Mode")
	case socketmode.EventTypeConnectionError:
		reason := "connection error"
		if e, ok := evt.Data.(*slack.ConnectionErrorEvent); ok && e.ErrorObj != nil {
			reason += ": " + e.ErrorObj.Error()
		}
		c.health.lost(now, reason)
		c.log.Warn("slack socket mode connection failed", logReason, reason)
	case socketmode.EventTypeInvalidAuth:
		c.health.set(now, StateFailed, "app token refused")
	case socketmode.EventTypeConnected:
		if c.health.set(now, StateHealthy, "") {
			c.log.Info("slack socket mode connected")
		}
	case socketmode.EventTypeIncomingError, socketmode.EventTypeErrorBadMessage, socketmode.EventTypeErrorWriteFailed:
		c.log.Warn("slack socket mode error", "event", string(evt.Type), "data", fmt.Sprint(evt.Data))
	case socketmode.EventTypeEventsAPI:
		// Slack wants the envelope acknowledged within 3 seconds or it
		// sends it again; work is acknowledged separately, with reactions.
		if evt.Request != nil {
			if err := smc.AckCtx(ctx, evt.Request.EnvelopeID, nil); err != nil {
				c.log.Warn("slack envelope not acknowledged", logError, err)
			}
		}
		api, ok := evt.Data.(slackevents.EventsAPIEvent)
		if !ok || api.Type != slackevents.CallbackEvent {
			return
		}
		c.onEvent(ctx, api.InnerEvent.Data)
	case socketmode.EventTypeInteractive, socketmode.EventTypeSlashCommand:
		if evt.Request != nil {
			_ = smc.AckCtx(ctx, evt.Request.EnvelopeID, nil)
		}
	}
}

// onEvent classifies an Events API event. It runs on the receive loop, so
// it only decides and claims; the slow part runs in the thread's lane.
func (c *Channel) onEvent(ctx context.Context, data any) {
	self := c.identity()
	var p *post
	switch ev := data.(type) {
	case *slackevents.AppMentionEvent:
		if ev.BotID != "" || ev.User == "" || ev.User == self.userID {
			// Bot-written mentions never start a task (two bots could
			// otherwise keep each other busy).
			c.log.Debug("slack mention by a bot ignored", logChan, ev.Channel, logTS, ev.TimeStamp)
			return
		}
		p = &post{kind: postMention, channel: ev.Channel, ts: ev.TimeStamp, threadTS: ev.ThreadTimeStamp,
			user: ev.User, userTeam: ev.UserTeam, text: ev.Text, files: ev.Files}
	case *slackevents.MessageEvent:
		p = c.classifyMessage(ev, self)
	case *slackevents.AssistantThreadStartedEvent:
		t := ev.AssistantThread
		c.lanes.run(t.ChannelID+":"+t.ThreadTimeStamp, func() { c.greet(ctx, t.ChannelID, t.ThreadTimeStamp) })
		return
	}
	if p == nil {
		return
	}
	if p.threadTS == "" {
		p.threadTS = p.ts
	}
	c.enqueue(ctx, p)
}

// enqueue dedupes p, claims its thread and queues it in the thread's lane.
func (c *Channel) enqueue(ctx context.Context, p *post) {
	c.mu.Lock()
	// The same post arrives as app_mention and as message; Slack also
	// redelivers envelopes. The first copy wins.
	if !c.seen.add(p.key()) {
		c.mu.Unlock()
		c.log.Debug("slack duplicate delivery ignored", logChan, p.channel, logTS, p.ts)
		return
	}
	// A mention or DM claims its thread at once, so a reply that follows
	// it within milliseconds is seen as part of an engaged thread.
	if p.kind != postReply {
		c.threadLocked(p.threadKey()).claims++
	}
	c.mu.Unlock()
	c.lanes.run(p.threadKey(), func() { c.admit(ctx, p) })
}

// redeliver hands over again the posts accepted before a restart and not
// Done: they are checked again (a user may have lost access meanwhile).
func (c *Channel) redeliver(ctx context.Context) {
	for _, p := range c.inbox.pending() {
		c.log.Info("slack message accepted before a restart; handing it over again", logChan, p.channel, logTS, p.ts)
		c.enqueue(ctx, p)
	}
}

// classifyMessage turns a message event into a post, or nil when it is not
// one that can start or continue work.
func (c *Channel) classifyMessage(ev *slackevents.MessageEvent, self identity) *post {
	switch ev.SubType {
	case "", "file_share", "thread_broadcast":
	default:
		// Edits, deletions, joins, bot_message, …
		return nil
	}
	if ev.BotID != "" || ev.User == "" || ev.User == self.userID {
		return nil
	}
	var files []slack.File
	if ev.Message != nil {
		files = ev.Message.Files
	}
	p := &post{channel: ev.Channel, ts: ev.TimeStamp, threadTS: ev.ThreadTimeStamp,
		user: ev.User, userTeam: ev.UserTeam, text: ev.Text, files: files}
	switch {
	case ev.ChannelType == slackevents.ChannelTypeIM:
		p.kind = postDM
	case strings.Contains(ev.Text, "<@"+self.userID+">") || strings.Contains(ev.Text, "<@"+self.userID+"|"):
		p.kind = postMention
	case ev.ThreadTimeStamp != "" && c.engaged(ev.Channel+":"+ev.ThreadTimeStamp):
		p.kind = postReply
	default:
		return nil
	}
	return p
}

// threadState is what the channel knows of a thread with work in flight.
type threadState struct {
	// claims counts posts of the thread being admitted.
	claims int
	// awaiting: a message of the thread was handed over as a new
	// conversation, whose id the gateway has not told yet.
	awaiting  bool
	held      []*heldMessage
	holdTimer Timer
}

func (c *Channel) threadLocked(key string) *threadState {
	t := c.threads[key]
	if t == nil {
		t = &threadState{}
		c.threads[key] = t
	}
	return t
}

// forgetLocked drops a thread's state once nothing is in flight.
func (c *Channel) forgetLocked(key string) {
	if t := c.threads[key]; t != nil && t.claims == 0 && !t.awaiting && len(t.held) == 0 {
		delete(c.threads, key)
	}
}

// engaged reports whether the app takes part in a thread: it has a
// conversation, or a message of it is on its way to one.
func (c *Channel) engaged(key string) bool {
	if _, ok := c.store.get(key); ok {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.threads[key]
	return t != nil && (t.claims > 0 || t.awaiting)
}
