// Package email is the email channel: IMAP in, SMTP out.
//
// The IMAP inbox is a work queue on an account dedicated to one repository:
// every message in it is work. A message is authenticated (DMARC as
// recorded by the receiving server) and authorized before anything else
// reads it; rejected mail is deleted without a reply, so forged mail causes
// no backscatter. Accepted mail stays in the inbox until the gateway calls
// Done after its reply was sent, so a crash loses nothing: after a restart
// the message is simply handed over again.
//
// Login is by password or, for Microsoft 365, by SASL XOAUTH2 with an
// access token from the client-credentials flow (OAuth2Config), cached
// until shortly before it expires.
package email

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-message/mail"

	"github.com/airut/airut/internal/channel"
)

// ConversationLookup reports whether a conversation id exists on disk.
type ConversationLookup func(id string) bool

// Thread keys in channel.Message.Thread.
const (
	threadMessageID  = "message_id"
	threadReferences = "references"
)

// Log keys.
const (
	logSender = "sender"
	logReason = "reason"
	logUID    = "uid"
	logError  = "error"
)

// msgKey names a message for as long as its mailbox keeps its UIDVALIDITY.
type msgKey struct {
	validity uint32
	uid      imap.UID
}

func (k msgKey) String() string { return fmt.Sprintf("%d:%d", k.validity, k.uid) }

func parseSourceID(s string) (msgKey, error) {
	v, u, ok := strings.Cut(s, ":")
	validity, err1 := strconv.ParseUint(v, 10, 32)
	uid, err2 := strconv.ParseUint(u, 10, 32)
	if !ok || err1 != nil || err2 != nil || uid == 0 {
		return msgKey{}, fmt.Errorf("email source id %q is not uidvalidity:uid", s)
	}
	return msgKey{validity: uint32(validity), uid: imap.UID(uid)}, nil
}

// Channel is the email channel of one repository.
type Channel struct {
	cfg        Config
	exists     ConversationLookup
	log        *slog.Logger
	from       *mail.Address
	fromDomain string
	now        func() time.Time

	mu sync.Mutex
	// inflight holds messages handed to the handler and not yet Done (or
	// Released), so a later pass over the inbox does not hand them over
	// twice. Its size is bounded by Config.MaxInflight.
	inflight map[msgKey]struct{}
	// kick asks the receive loop for another pass: room was made in the
	// in-flight set.
	kick chan struct{}
	// imapRoots and smtpRoots are the private CAs of ca_file, nil for the
	// system roots.
	imapRoots, smtpRoots *x509.CertPool

	ops imapOps
	// tokens is set when the channel logs in with OAuth2.
	tokens *tokenSource
}

var _ channel.Channel = (*Channel)(nil)

// New checks cfg and returns a channel; it does not connect yet.
func New(cfg Config, exists ConversationLookup, logger *slog.Logger) (*Channel, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("email config: %w", err)
	}
	from, err := mail.ParseAddress(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("email config: from: %q: %w", cfg.From, err)
	}
	domain := domainOf(from.Address)
	if domain == "" {
		return nil, fmt.Errorf("email config: from: %q has no domain", cfg.From)
	}
	if exists == nil {
		return nil, errors.New("email: nil ConversationLookup")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Channel{
		cfg:        cfg,
		exists:     exists,
		log:        logger.With("channel", "email"),
		from:       from,
		fromDomain: domain,
		now:        time.Now,
		inflight:   make(map[msgKey]struct{}),
		kick:       make(chan struct{}, 1),
	}
	if c.imapRoots, err = loadCAFile(cfg.IMAP.CAFile); err != nil {
		return nil, fmt.Errorf("email config: imap.ca_file: %w", err)
	}
	if c.smtpRoots, err = loadCAFile(cfg.SMTP.CAFile); err != nil {
		return nil, fmt.Errorf("email config: smtp.ca_file: %w", err)
	}
	c.ops.c = c
	if cfg.OAuth2 != nil {
		c.tokens = newTokenSource(*cfg.OAuth2, c.log)
	}
	return c, nil
}

// Name implements channel.Channel.
func (c *Channel) Name() string { return "email" }

func (c *Channel) markInflight(k msgKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.inflight[k]; ok {
		return false
	}
	c.inflight[k] = struct{}{}
	return true
}

func (c *Channel) isInflight(k msgKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.inflight[k]
	return ok
}

// clearInflight forgets k and wakes the receive loop, which may have been
// waiting for room.
func (c *Channel) clearInflight(k msgKey) {
	c.mu.Lock()
	_, ok := c.inflight[k]
	delete(c.inflight, k)
	c.mu.Unlock()
	if ok {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

// pruneInflight forgets in-flight messages that are no longer in the
// mailbox (uids is all of it) or belong to an older UIDVALIDITY, whose
// Done can only fail, and returns how many more may be handed over now.
func (c *Channel) pruneInflight(validity uint32, uids []imap.UID) int {
	present := make(map[imap.UID]bool, len(uids))
	for _, u := range uids {
		present[u] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.inflight {
		if k.validity != validity || !present[k.uid] {
			delete(c.inflight, k)
		}
	}
	return max(c.cfg.MaxInflight-len(c.inflight), 0)
}

// Release gives a handed-over message back without acknowledging it: the
// handler left it for later (it could not record or queue it), and the
// next pass over the inbox hands it over again. Done is the other way out
// of the in-flight set; a message that takes neither stays in flight until
// it leaves the mailbox or the process restarts.
func (c *Channel) Release(msg *channel.Message) {
	key, err := parseSourceID(msg.SourceID)
	if err != nil {
		return
	}
	c.clearInflight(key)
}

// accept turns a raw message into a channel.Message, or returns a
// *rejectError saying why it must be dropped.
func (c *Channel) accept(key msgKey, raw []byte) (*channel.Message, error) {
	in, err := readHeader(raw)
	if err != nil {
		return nil, reject("unparseable message: %v", err)
	}
	sender, err := authenticate(in.header, authPolicy{
		trustedAuthservID:  c.cfg.TrustedAuthservID,
		msInternalFallback: c.cfg.MicrosoftInternalFallback,
	})
	if err != nil {
		return nil, err
	}
	if !authorized(sender.Address, c.cfg.AuthorizedSenders) {
		return nil, reject("sender %s is not authorized", sender.Address)
	}

	body, atts, err := readContent(raw)
	if err != nil {
		// The sender is trusted; a reply saying nothing could be read is
		// more useful than silence.
		c.log.Warn("email body unreadable", logSender, sender.Address, logUID, key.String(), logError, err)
		body = "(the message body could not be read: " + err.Error() + ")"
	}

	conv := threadConversation(in.inReplyTo, in.references, in.subject)
	if conv != "" && !c.exists(conv) {
		c.log.Info("email names an unknown conversation; starting a new one", "conversation", conv, logUID, key.String())
		conv = ""
	}
	t := in.date
	if t.IsZero() {
		t = c.now()
	}
	return &channel.Message{
		SourceID:       key.String(),
		MessageID:      in.messageID,
		ConversationID: conv,
		SenderAddress:  sender.Address,
		SenderName:     sender.Name,
		Time:           t.UTC(),
		Subject:        in.subject,
		Body:           body,
		Attachments:    atts,
		Model:          modelHint(in.header, c.from.Address),
		Thread: map[string]string{
			threadMessageID:  in.messageID,
			threadReferences: strings.Join(in.references, " "),
		},
	}, nil
}

// rejectedSender is the From address for a rejection log line, best effort:
// the header may be exactly what made the message fail.
func rejectedSender(raw []byte) string {
	in, err := readHeader(raw)
	if err != nil {
		return ""
	}
	froms := in.header.Values("From")
	if len(froms) == 0 {
		return ""
	}
	s := strings.Join(froms, ", ")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// Reply implements channel.Channel: the rendered reply goes to the
// authenticated sender, threaded under the original message.
func (c *Channel) Reply(ctx context.Context, msg *channel.Message, r channel.Reply) error {
	conv := r.ConversationID
	if conv == "" {
		conv = msg.ConversationID
	}
	md := r.Markdown
	if base := strings.TrimRight(c.cfg.DashboardBaseURL, "/"); base != "" && r.TaskID != "" {
		md += "\n\n---\nOn the dashboard: <" + base + "/tasks/" + r.TaskID + ">"
	}
	return c.sendReply(ctx, msg, conv, md, r.Attachments)
}

// Acknowledge implements channel.Channel: a short note in the thread that
// work has started, with the dashboard link when one is configured.
func (c *Channel) Acknowledge(ctx context.Context, msg *channel.Message, conversationID string) error {
	text := "I'm working on this and will reply in this thread when I'm done."
	if base := strings.TrimRight(c.cfg.DashboardBaseURL, "/"); base != "" {
		text += "\n\nProgress: <" + base + "/conversations/" + conversationID + ">"
	}
	return c.sendReply(ctx, msg, conversationID, text, nil)
}

func (c *Channel) sendReply(ctx context.Context, msg *channel.Message, conv, md string, atts []channel.Attachment) error {
	if conv == "" {
		return errors.New("email reply: no conversation id")
	}
	if msg.SenderAddress == "" {
		return errors.New("email reply: message has no sender")
	}
	now := c.now()
	origID := msg.Thread[threadMessageID]
	data, err := buildMessage(outgoing{
		from:        c.from,
		to:          []*mail.Address{{Name: msg.SenderName, Address: msg.SenderAddress}},
		subject:     replySubject(msg.Subject, conv),
		messageID:   newMessageID(conv, c.fromDomain, now),
		inReplyTo:   origID,
		references:  replyReferences(strings.Fields(msg.Thread[threadReferences]), origID),
		date:        now,
		markdown:    md,
		attachments: atts,
	})
	if err != nil {
		return fmt.Errorf("build email reply: %w", err)
	}
	return c.send(ctx, c.from.Address, []string{msg.SenderAddress}, data)
}

// Send starts a new thread outside any inbound message, for scheduled
// task results (S10). Its Message-ID and "[ID:conv]" subject tag carry conv,
// so a reply to it continues that conversation through the normal flow.
func (c *Channel) Send(ctx context.Context, to []string, subject, conv string, r channel.Reply) error {
	if conv == "" {
		return errors.New("email send: no conversation id")
	}
	var rcpts []*mail.Address
	var addrs []string
	for _, s := range to {
		a, err := mail.ParseAddress(s)
		if err != nil {
			return fmt.Errorf("email send: recipient %q: %w", s, err)
		}
		rcpts = append(rcpts, a)
		addrs = append(addrs, a.Address)
	}
	if len(rcpts) == 0 {
		return errors.New("email send: no recipients")
	}
	now := c.now()
	data, err := buildMessage(outgoing{
		from:        c.from,
		to:          rcpts,
		subject:     strings.TrimSpace("[ID:" + conv + "] " + subject),
		messageID:   newMessageID(conv, c.fromDomain, now),
		date:        now,
		markdown:    r.Markdown,
		attachments: r.Attachments,
	})
	if err != nil {
		return fmt.Errorf("build email: %w", err)
	}
	return c.send(ctx, c.from.Address, addrs, data)
}

// Done implements channel.Channel: the message is deleted and expunged,
// whatever the outcome.
func (c *Channel) Done(ctx context.Context, msg *channel.Message, _ channel.Outcome) error {
	key, err := parseSourceID(msg.SourceID)
	if err != nil {
		return err
	}
	if err := c.ops.delete(ctx, key); err != nil {
		if errors.Is(err, errStaleUID) {
			// The mailbox was recreated; this UID names nothing of ours
			// any more, and keeping it in flight only takes room.
			c.clearInflight(key)
		}
		return fmt.Errorf("delete message %s: %w", key, err)
	}
	c.clearInflight(key)
	return nil
}
