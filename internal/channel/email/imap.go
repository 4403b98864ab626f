package email

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/airut/airut/internal/channel"
)

const (
	imapDialTimeout = 30 * time.Second
	inbox           = "INBOX"
)

// errStaleUID means the mailbox was recreated (new UIDVALIDITY) since the
// message was read, so its UID may now name another message.
var errStaleUID = errors.New("mailbox uidvalidity changed; not deleting by a stale uid")

func (c *Channel) imapAddr() string {
	return net.JoinHostPort(c.cfg.IMAP.Server, strconv.Itoa(c.cfg.IMAP.Port))
}

// dialIMAP connects, logs in and selects INBOX.
func (c *Channel) dialIMAP(ctx context.Context, handler *imapclient.UnilateralDataHandler, debug io.Writer) (*imapclient.Client, *imap.SelectData, error) {
	tlsCfg := tlsConfig(c.cfg.IMAP.TLSConfig, c.imapRoots, c.cfg.IMAP.Server)
	opts := &imapclient.Options{
		TLSConfig:             tlsCfg,
		Dialer:                &net.Dialer{Timeout: imapDialTimeout},
		UnilateralDataHandler: handler,
	}
	if debug != nil {
		opts.DebugWriter = debug
	}
	var (
		cl  *imapclient.Client
		err error
	)
	switch c.cfg.IMAP.TLS {
	case TLSNone:
		cl, err = imapclient.DialInsecure(c.imapAddr(), opts)
	case TLSStartTLS:
		cl, err = imapclient.DialStartTLS(c.imapAddr(), opts)
	default:
		cl, err = imapclient.DialTLS(c.imapAddr(), opts)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("dial imap %s: %w", c.imapAddr(), err)
	}
	stop := context.AfterFunc(ctx, func() { cl.Close() })
	defer stop()
	if err := c.imapLogin(ctx, cl); err != nil {
		cl.Close()
		return nil, nil, err
	}
	sel, err := cl.Select(inbox, nil).Wait()
	if err != nil {
		cl.Close()
		return nil, nil, fmt.Errorf("imap select %s: %w", inbox, err)
	}
	return cl, sel, nil
}

// imapLogin logs in with the password, or with AUTHENTICATE XOAUTH2 when
// the channel has an OAuth2 token source.
func (c *Channel) imapLogin(ctx context.Context, cl *imapclient.Client) error {
	user := c.cfg.IMAP.Username
	return c.login(ctx, "imap login", user,
		func() error { return cl.Login(user, c.cfg.IMAP.Password).Wait() },
		cl.Authenticate)
}

// login runs a password login, or XOAUTH2 with the shared token, which is
// dropped when the server refuses it so the next login fetches a fresh one.
// Errors name the step and the user, never the password or token.
func (c *Channel) login(ctx context.Context, step, user string, password func() error, authenticate func(sasl.Client) error) error {
	if c.tokens == nil {
		if err := password(); err != nil {
			return &loginError{fmt.Errorf("%s as %s: %w", step, user, err)}
		}
		return nil
	}
	tok, err := c.tokens.Token(ctx)
	if err != nil {
		return &loginError{fmt.Errorf("%s as %s: %w", step, user, err)}
	}
	if err := authenticate(xoauth2Client{user: user, token: tok}); err != nil {
		c.tokens.invalidate(tok)
		return &loginError{fmt.Errorf("%s as %s with xoauth2: %w", step, user, err)}
	}
	return nil
}

// Run implements channel.Channel. It returns nil when ctx ends; connection
// failures are retried with exponential backoff (capped at ReconnectMax,
// default a minute) and never returned. A server that announced its own
// shutdown (BYE, as Dovecot's "Server shutting down." on restart) is
// redialled at once: it is coming back, and mail should not wait a backoff
// step for it.
func (c *Channel) Run(ctx context.Context, h channel.Handler) error {
	if h == nil {
		return errors.New("email: nil handler")
	}
	defer c.ops.close()
	delay := c.cfg.ReconnectMin
	for {
		var bye byeWatch
		selected, err := c.session(ctx, h, &bye)
		if ctx.Err() != nil {
			return nil
		}
		if selected {
			delay = c.cfg.ReconnectMin
		}
		wait := delay
		if bye.seen() {
			wait = 0
			err = fmt.Errorf("server said BYE: %w", err)
		} else {
			delay = min(delay*2, c.cfg.ReconnectMax)
		}
		c.log.Warn("imap connection lost; reconnecting", logError, err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// byeWatch notices an untagged BYE from the server in the client's debug
// copy of the connection's plaintext, the only place go-imap shows it. It
// keeps one partial line and nothing else: the stream carries the login.
type byeWatch struct {
	mu   sync.Mutex
	line []byte
	bye  bool
}

const byePrefix = "* BYE "

func (b *byeWatch) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ch := range p {
		if ch == '\n' {
			b.line = b.line[:0]
			continue
		}
		if len(b.line) < len(byePrefix) {
			b.line = append(b.line, ch)
			if string(b.line) == byePrefix {
				b.bye = true
			}
		}
	}
	return len(p), nil
}

func (b *byeWatch) seen() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bye
}

// session runs one IMAP connection until it fails or ctx ends. selected
// reports whether it got as far as selecting INBOX (which resets backoff).
func (c *Channel) session(ctx context.Context, h channel.Handler, bye *byeWatch) (selected bool, err error) {
	wake := make(chan struct{}, 1)
	handler := &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				select {
				case wake <- struct{}{}:
				default:
				}
			}
		},
	}
	cl, sel, err := c.dialIMAP(ctx, handler, bye)
	if err != nil {
		return false, err
	}
	defer cl.Close()
	stop := context.AfterFunc(ctx, func() { cl.Close() })
	defer stop()

	useIdle := c.cfg.IMAP.UseIdle && cl.Caps().Has(imap.CapIdle)
	if c.cfg.IMAP.UseIdle && !useIdle {
		c.log.Warn("imap server does not support IDLE; polling", "poll_interval", c.cfg.IMAP.PollInterval)
	}
	c.log.Info("imap connected", "server", c.imapAddr(), "uidvalidity", sel.UIDValidity, "messages", sel.NumMessages, "idle", useIdle)
	c.purgeDeleted(cl)

	for {
		// Drain before searching: a notice that arrives from here on
		// triggers another pass, so no append can fall between the search
		// and the wait.
		drain(wake)
		drain(c.kick)
		more, err := c.processInbox(ctx, cl, sel.UIDValidity, h)
		if err != nil {
			return true, err
		}
		switch {
		case more:
			continue
		case useIdle:
			err = c.idle(ctx, cl, wake)
		default:
			err = c.poll(ctx, cl)
		}
		if err != nil {
			return true, err
		}
		if ctx.Err() != nil {
			return true, ctx.Err()
		}
	}
}

func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

// purgeDeleted expunges messages left flagged \Deleted by a delete that
// was cut off between its STORE and its EXPUNGE: the receive loop skips
// them, so nothing else would. Best effort; a failure shows up again on
// the next command.
func (c *Channel) purgeDeleted(cl *imapclient.Client) {
	data, err := cl.UIDSearch(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagDeleted}}, nil).Wait()
	if err != nil || len(data.AllUIDs()) == 0 {
		return
	}
	uids := data.AllUIDs()
	c.log.Info("expunging messages left flagged deleted", "count", len(uids))
	if cl.Caps().Has(imap.CapUIDPlus) || cl.Caps().Has(imap.CapIMAP4rev2) {
		_ = cl.UIDExpunge(imap.UIDSetNum(uids...)).Close()
	} else {
		_ = cl.Expunge().Close()
	}
}

func (c *Channel) idle(ctx context.Context, cl *imapclient.Client, wake <-chan struct{}) error {
	cmd, err := cl.Idle()
	if err != nil {
		return fmt.Errorf("imap idle: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t := time.NewTimer(c.cfg.IMAP.IdleReconnectInterval)
	defer t.Stop()
	select {
	case err := <-done:
		return fmt.Errorf("imap idle ended: %w", errOrClosed(err))
	case <-cl.Closed():
		return errors.New("imap connection closed")
	case <-wake:
	case <-c.kick:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := cmd.Close(); err != nil {
		return fmt.Errorf("imap idle done: %w", err)
	}
	if err := <-done; err != nil {
		return fmt.Errorf("imap idle: %w", err)
	}
	return nil
}

func errOrClosed(err error) error {
	if err == nil {
		return errors.New("server ended IDLE")
	}
	return err
}

func (c *Channel) poll(ctx context.Context, cl *imapclient.Client) error {
	t := time.NewTimer(c.cfg.IMAP.PollInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-cl.Closed():
		return errors.New("imap connection closed")
	case <-t.C:
	case <-c.kick:
	}
	// NOOP is the polling command: it lets the server report new and
	// expunged messages (which it may hold back during SEARCH and FETCH),
	// and shows that the connection is still alive.
	if err := cl.Noop().Wait(); err != nil {
		return fmt.Errorf("imap noop: %w", err)
	}
	return nil
}

// processInbox hands messages not yet in flight to accept and h, oldest
// first, and deletes the rejected ones. It fetches at most as many as the
// in-flight limit has room for: the inbox is the durable queue, so what
// waits there costs no memory here. more reports that messages were left
// for the next pass while there was still room (some of the batch was
// rejected), so the caller goes again at once.
func (c *Channel) processInbox(ctx context.Context, cl *imapclient.Client, validity uint32, h channel.Handler) (more bool, err error) {
	data, err := cl.UIDSearch(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagDeleted}}, nil).Wait()
	if err != nil {
		return false, fmt.Errorf("imap search: %w", err)
	}
	uids := data.AllUIDs()
	room := c.pruneInflight(validity, uids)
	var batch []imap.UID
	for _, uid := range uids {
		if c.isInflight(msgKey{validity: validity, uid: uid}) {
			continue
		}
		if len(batch) == room {
			more = true
			break
		}
		batch = append(batch, uid)
	}
	if len(batch) == 0 {
		return false, nil
	}
	raws, err := fetchRaw(cl, batch)
	if err != nil {
		return false, err
	}
	handed := 0
	for _, uid := range batch {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		raw, ok := raws[uid]
		if !ok {
			continue // expunged since the search
		}
		key := msgKey{validity: validity, uid: uid}
		msg, err := c.accept(key, raw)
		var rej *rejectError
		if errors.As(err, &rej) {
			c.log.Warn("email rejected", logSender, rejectedSender(raw), logReason, rej.reason, logUID, key.String())
			if err := deleteUID(cl, uid); err != nil {
				return false, fmt.Errorf("delete rejected message %s: %w", key, err)
			}
			continue
		}
		if err != nil {
			return false, err
		}
		// Marked just before the handover and nowhere else: no path between
		// the mark and the handler can leave a message in flight that the
		// gateway never saw.
		if !c.markInflight(key) {
			continue
		}
		handed++
		c.log.Info("email accepted", logSender, msg.SenderAddress, logUID, key.String(), "conversation", msg.ConversationID, "model", msg.Model)
		if err := h(ctx, msg); err != nil {
			// Not taken: hand it over again on a later pass.
			c.Release(msg)
			c.log.Warn("email left in the inbox for later", logUID, key.String(), logError, err)
		}
	}
	return more && handed < room, nil
}

// fetchRaw downloads the given messages in one UID FETCH. A UID missing
// from the result was expunged since the search.
func fetchRaw(cl *imapclient.Client, uids []imap.UID) (map[imap.UID][]byte, error) {
	section := &imap.FetchItemBodySection{Peek: true}
	msgs, err := cl.Fetch(imap.UIDSetNum(uids...), &imap.FetchOptions{
		UID:         true,
		BodySection: []*imap.FetchItemBodySection{section},
	}).Collect()
	if err != nil {
		return nil, fmt.Errorf("imap fetch %d message(s): %w", len(uids), err)
	}
	out := make(map[imap.UID][]byte, len(msgs))
	for _, m := range msgs {
		if b := m.FindBodySection(section); b != nil && m.UID != 0 {
			out[m.UID] = b
		}
	}
	return out, nil
}

// errNotDeleted means the server answered OK to the delete and the message
// is still there: a delete that did not happen is an error, never a quiet
// success, or the message is answered again after a restart.
var errNotDeleted = errors.New("the server accepted the delete but the message is still in the mailbox")

// hasUID reports whether the session sees uid in the mailbox.
func hasUID(cl *imapclient.Client, uid imap.UID) (bool, error) {
	data, err := cl.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{imap.UIDSetNum(uid)}}, nil).Wait()
	if err != nil {
		return false, fmt.Errorf("imap search uid %d: %w", uid, err)
	}
	return slices.Contains(data.AllUIDs(), uid), nil
}

// deleteUID flags one message \Deleted, expunges it, and checks that it is
// gone. UID EXPUNGE touches only that message; plain EXPUNGE (servers
// without UIDPLUS) removes every \Deleted message, which in a dedicated
// work-queue inbox is only ours. The session must know uid (see
// imapOps.delete): an RFC 3501 server ignores a STORE for a UID it has not
// told the session about.
func deleteUID(cl *imapclient.Client, uid imap.UID) error {
	set := imap.UIDSetNum(uid)
	err := cl.Store(set, &imap.StoreFlags{
		Op:     imap.StoreFlagsAdd,
		Silent: true,
		Flags:  []imap.Flag{imap.FlagDeleted},
	}, nil).Close()
	if err != nil {
		return fmt.Errorf("imap store \\Deleted: %w", err)
	}
	if cl.Caps().Has(imap.CapUIDPlus) || cl.Caps().Has(imap.CapIMAP4rev2) {
		err = cl.UIDExpunge(set).Close()
	} else {
		err = cl.Expunge().Close()
	}
	if err != nil {
		return fmt.Errorf("imap expunge: %w", err)
	}
	still, err := hasUID(cl, uid)
	if err != nil {
		return err
	}
	if still {
		return fmt.Errorf("delete uid %d: %w", uid, errNotDeleted)
	}
	return nil
}

// imapOps is a second IMAP connection for Done. The receive loop's
// connection spends its time in IDLE; deleting from a separate connection
// needs no coordination with it, and the loop sees the EXPUNGE as an
// ordinary mailbox update.
//
// The kept connection learns of new messages only when it asks: Dovecot
// (like RFC 3501 says) applies a UID STORE only to messages it has
// announced to the session, and answers OK to the rest. So every delete
// starts with a NOOP, which announces them, and checks that the session
// now sees the UID; one that it does not see is looked for again on a
// fresh connection, whose SELECT shows the whole mailbox, before it counts
// as already gone.
type imapOps struct {
	c        *Channel
	mu       sync.Mutex
	cl       *imapclient.Client
	validity uint32
}

func (o *imapOps) delete(ctx context.Context, key msgKey) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	var err error
	// A kept connection may have been dropped by the server while unused,
	// or not know the message yet: either earns one fresh connection.
	for attempt := 0; attempt < 2; attempt++ {
		fresh := false
		if o.cl == nil {
			cl, sel, derr := o.c.dialIMAP(ctx, nil, nil)
			if derr != nil {
				return derr
			}
			o.cl, o.validity, fresh = cl, sel.UIDValidity, true
		}
		if key.validity != o.validity {
			return errStaleUID
		}
		cl := o.cl
		stop := context.AfterFunc(ctx, func() { cl.Close() })
		var gone bool
		gone, err = deleteKnown(cl, key.uid, fresh)
		stop()
		if err == nil && (gone || fresh) {
			if !gone {
				o.c.log.Info("message to delete is already gone", logUID, key.String())
			}
			return nil
		}
		o.cl.Close()
		o.cl = nil
		if ctx.Err() != nil {
			return errors.Join(err, ctx.Err())
		}
	}
	if err == nil {
		// Unreachable: a fresh connection ends the loop above.
		err = errNotDeleted
	}
	return err
}

// deleteKnown deletes uid if the session sees it. deleted is false with a
// nil error when the session does not see it: on a fresh session that
// means the message is gone; on a kept one it may only be unannounced.
func deleteKnown(cl *imapclient.Client, uid imap.UID, fresh bool) (deleted bool, err error) {
	if !fresh {
		if err := cl.Noop().Wait(); err != nil {
			return false, fmt.Errorf("imap noop: %w", err)
		}
	}
	present, err := hasUID(cl, uid)
	if err != nil || !present {
		return false, err
	}
	if err := deleteUID(cl, uid); err != nil {
		return false, err
	}
	return true, nil
}

func (o *imapOps) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cl != nil {
		o.cl.Close()
		o.cl = nil
	}
}
