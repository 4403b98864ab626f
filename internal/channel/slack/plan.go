package slack

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/airut/airut/internal/channel"
)

// Plan item states, as the agent's todo tools name them.
const (
	PlanPending    = "pending"
	PlanInProgress = "in_progress"
	PlanCompleted  = "completed"
)

// PlanItem is one entry of the agent's todo list.
type PlanItem struct {
	Text   string
	Status string // PlanPending, PlanInProgress or PlanCompleted
}

const (
	// planInterval is the least time between two edits of a plan
	// message: Slack rate-limits chat.update, and a user cannot read
	// faster anyway.
	planInterval = time.Second
	// maxSectionChars is under Slack's 3000-character limit for a
	// section block's text.
	maxSectionChars = 2900
	// maxPlanBlocks is under Slack's 50 blocks per message.
	maxPlanBlocks = 45
	maxItemChars  = 400
)

// plan is the state of one task's plan message.
type plan struct {
	started bool // the DM status was cleared

	channel, thread string
	ts              string // the plan message once posted
	items           []PlanItem
	version, sent   int // latest version, version shown in Slack
	lastSent        time.Time
	timer           Timer
	sendMu          sync.Mutex // one post or update at a time
}

func (c *Channel) planLocked(msg *channel.Message) *plan {
	p := c.plans[msg.SourceID]
	if p == nil {
		p = &plan{}
		c.plans[msg.SourceID] = p
	}
	return p
}

func (c *Channel) forgetPlanLocked(msg *channel.Message) {
	if p := c.plans[msg.SourceID]; p != nil {
		if p.timer != nil {
			p.timer.Stop()
		}
		delete(c.plans, msg.SourceID)
	}
}

// Progress implements channel.Progresser: once the agent runs, the
// assistant status is cleared (Started), and its todo list becomes the
// thread's plan message (Plan).
func (c *Channel) Progress(ctx context.Context, msg *channel.Message, p channel.Progress) error {
	if p.Phase == channel.PhasePreparing {
		return nil // the status set on receipt says so already
	}
	if len(p.Todos) == 0 {
		return c.Started(ctx, msg)
	}
	items := make([]PlanItem, len(p.Todos))
	for i, t := range p.Todos {
		items[i] = PlanItem{Text: t.Content, Status: t.Status}
	}
	return c.Plan(ctx, msg, items)
}

// Plan shows the agent's todo list in the thread: one plan message,
// posted on the first call and edited in place with chat.update after,
// at most once a second (the latest list wins; an edit that comes too
// soon is sent when the second is up).
func (c *Channel) Plan(ctx context.Context, msg *channel.Message, items []PlanItem) error {
	ch, thread, err := threadOf(msg)
	if err != nil {
		return err
	}
	if err := c.Started(ctx, msg); err != nil {
		c.log.Warn("slack assistant status not cleared", logChan, ch, logError, err)
	}
	c.mu.Lock()
	p := c.planLocked(msg)
	p.channel, p.thread = ch, thread
	p.items = append([]PlanItem(nil), items...)
	p.version++
	if p.timer != nil {
		c.mu.Unlock()
		return nil // the scheduled edit takes the latest list
	}
	if wait := p.lastSent.Add(planInterval).Sub(c.clock.Now()); !p.lastSent.IsZero() && wait > 0 {
		key := msg.SourceID
		p.timer = c.clock.AfterFunc(wait, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := c.sendPlan(ctx, key); err != nil {
				c.log.Warn("slack plan not updated", logError, err)
			}
		})
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	return c.sendPlan(ctx, msg.SourceID)
}

// flushPlan sends the latest list at once, before the reply.
func (c *Channel) flushPlan(ctx context.Context, msg *channel.Message) {
	c.mu.Lock()
	p := c.plans[msg.SourceID]
	if p != nil && p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	c.mu.Unlock()
	if p == nil {
		return
	}
	if err := c.sendPlan(ctx, msg.SourceID); err != nil {
		c.log.Warn("slack plan not updated", logError, err)
	}
}

func (c *Channel) sendPlan(ctx context.Context, key string) error {
	c.mu.Lock()
	p := c.plans[key]
	if p == nil {
		c.mu.Unlock()
		return nil
	}
	p.timer = nil
	c.mu.Unlock()

	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	c.mu.Lock()
	if p.version == p.sent {
		c.mu.Unlock()
		return nil
	}
	items, version, ts, ch, thread := p.items, p.version, p.ts, p.channel, p.thread
	p.lastSent = c.clock.Now()
	c.mu.Unlock()

	text, blocks := renderPlan(items)
	opts := []slack.MsgOption{slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...)}
	var err error
	if ts == "" {
		_, ts, err = c.api.PostMessageContext(ctx, ch, append(opts, slack.MsgOptionTS(thread))...)
	} else {
		_, _, _, err = c.api.UpdateMessageContext(ctx, ch, ts, opts...)
	}
	if err != nil {
		return fmt.Errorf("slack plan message: %w", err)
	}
	c.mu.Lock()
	p.ts, p.sent = ts, version
	c.mu.Unlock()
	return nil
}

// renderPlan makes the plan message: a summary line as the text (what
// notifications show) and the list in section blocks, each under Slack's
// 3000-character limit.
func renderPlan(items []PlanItem) (string, []slack.Block) {
	done := 0
	var lines []string
	for _, it := range items {
		t := strings.Join(strings.Fields(it.Text), " ")
		if r := []rune(t); len(r) > maxItemChars {
			t = string(r[:maxItemChars-1]) + "…"
		}
		t = escapeText(t)
		switch it.Status {
		case PlanCompleted:
			done++
			lines = append(lines, "✅ ~"+t+"~")
		case PlanInProgress:
			lines = append(lines, "▶️ *"+t+"*")
		default:
			lines = append(lines, "⬜ "+t)
		}
	}
	summary := fmt.Sprintf("Plan: %d of %d done", done, len(items))
	section := func(s string) slack.Block {
		return slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, s, false, false), nil, nil)
	}
	blocks := []slack.Block{section("*" + summary + "*")}
	var cur strings.Builder
	for i, l := range lines {
		if cur.Len() > 0 && len([]rune(cur.String()))+1+len([]rune(l)) > maxSectionChars {
			if len(blocks) == maxPlanBlocks-1 {
				cur.WriteString(fmt.Sprintf("\n… and %d more", len(lines)-i))
				break
			}
			blocks = append(blocks, section(cur.String()))
			cur.Reset()
		}
		if cur.Len() > 0 {
			cur.WriteByte('\n')
		}
		cur.WriteString(l)
	}
	if cur.Len() > 0 {
		blocks = append(blocks, section(cur.String()))
	}
	return summary, blocks
}
