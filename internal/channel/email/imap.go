package email

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
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
func (c *Channel) dialIMAP(ctx context.Context, handler *imapclient.UnilateralDataHandler) (*imapclient.Client, *imap.SelectData, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.cfg.IMAP.TLSConfig != nil {
		tlsCfg = c.cfg.IMAP.TLSConfig.Clone()
	}
	if tlsCfg.ServerName == "" {
		tlsCfg.ServerName = c.cfg.IMAP.Server
	}
	opts := &imapclient.Options{
		TLSConfig:             tlsCfg,
		Dialer:                &net.Dialer{Timeout: imapDialTimeout},
		UnilateralDataHandler: handler,
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
			return fmt.Errorf("%s as %s: %w", step, user, err)
		}
		return nil
	}
	tok, err := c.tokens.Token(ctx)
	if err != nil {
		return fmt.Errorf("%s as %s: %w", step, user, err)
	}
	if err := authenticate(xoauth2Client{user: user, token: tok}); err != nil {
		c.tokens.invalidate(tok)
		return fmt.Errorf("%s as %s with xoauth2: %w", step, user, err)
	}
	return nil
}

// Run implements channel.Channel. It returns nil when ctx ends; connection
// failures are retried with exponential backoff and never returned.
func (c *Channel) Run(ctx context.Context, h channel.Handler) error {
	if h == nil {
		return errors.New("email: nil handler")
	}
	defer c.ops.close()
	delay := c.cfg.ReconnectMin
	for {
		selected, err := c.session(ctx, h)
		if ctx.Err() != nil {
			return nil
		}
		if selected {
			delay = c.cfg.ReconnectMin
		}
		c.log.Warn("imap connection lost; reconnecting", logError, err, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		delay = min(delay*2, c.cfg.ReconnectMax)
	}
}

// session runs one IMAP connection until it fails or ctx ends. selected
// reports whether it got as far as selecting INBOX (which resets backoff).
func (c *Channel) session(ctx context.Context, h channel.Handler) (selected bool, err error) {
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
	cl, sel, err := c.dialIMAP(ctx, handler)
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

	for {
		// Drain before searching: a notice that arrives from here on
		// triggers another pass, so no append can fall between the search
		// and the wait.
		select {
		case <-wake:
		default:
		}
		if err := c.processInbox(ctx, cl, sel.UIDValidity, h); err != nil {
			return true, err
		}
		if useIdle {
			err = c.idle(ctx, cl, wake)
		} else {
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
	}
	// NOOP is the polling command: it lets the server report new and
	// expunged messages (which it may hold back during SEARCH and FETCH),
	// and shows that the connection is still alive.
	if err := cl.Noop().Wait(); err != nil {
		return fmt.Errorf("imap noop: %w", err)
	}
	return nil
}

// processInbox hands every message not yet in flight to accept and h,
// oldest first, and deletes the rejected ones.
func (c *Channel) processInbox(ctx context.Context, cl *imapclient.Client, validity uint32, h channel.Handler) error {
	data, err := cl.UIDSearch(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagDeleted}}, nil).Wait()
	if err != nil {
		return fmt.Errorf("imap search: %w", err)
	}
	for _, uid := range data.AllUIDs() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		key := msgKey{validity: validity, uid: uid}
		if c.isInflight(key) {
			continue
		}
		raw, err := fetchRaw(cl, uid)
		if err != nil {
			return err
		}
		if raw == nil {
			continue // expunged since the search
		}
		msg, err := c.accept(key, raw)
		var rej *rejectError
		if errors.As(err, &rej) {
			c.log.Warn("email rejected", logSender, rejectedSender(raw), logReason, rej.reason, logUID, key.String())
			if err := deleteUID(cl, uid); err != nil {
				return fmt.Errorf("delete rejected message %s: %w", key, err)
			}
			continue
		}
		if err != nil {
			return err
		}
		if !c.markInflight(key) {
			continue
		}
		c.log.Info("email accepted", logSender, msg.SenderAddress, logUID, key.String(), "conversation", msg.ConversationID, "model", msg.Model)
		if err := h(ctx, msg); err != nil {
			// Not taken: hand it over again on a later pass.
			c.clearInflight(key)
			c.log.Warn("email left in the inbox for later", logUID, key.String(), logError, err)
		}
	}
	return nil
}

func fetchRaw(cl *imapclient.Client, uid imap.UID) ([]byte, error) {
	section := &imap.FetchItemBodySection{Peek: true}
	msgs, err := cl.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{
		UID:         true,
		BodySection: []*imap.FetchItemBodySection{section},
	}).Collect()
	if err != nil {
		return nil, fmt.Errorf("imap fetch uid %d: %w", uid, err)
	}
	for _, m := range msgs {
		if m.UID == uid {
			if b := m.FindBodySection(section); b != nil {
				return b, nil
			}
		}
	}
	return nil, nil
}

// deleteUID flags one message \Deleted and expunges it. UID EXPUNGE touches
// only that message; plain EXPUNGE (servers without UIDPLUS) removes every
// \Deleted message, which in a dedicated work-queue inbox is only ours.
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
	if cl.Caps().Has(imap.CapUIDPlus) {
		err = cl.UIDExpunge(set).Close()
	} else {
		err = cl.Expunge().Close()
	}
	if err != nil {
		return fmt.Errorf("imap expunge: %w", err)
	}
	return nil
}

// imapOps is a second IMAP connection for Done. The receive loop's
// connection spends its time in IDLE; deleting from a separate connection
// needs no coordination with it, and the loop sees the EXPUNGE as an
// ordinary mailbox update.
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
	// A kept connection may have been dropped by the server while unused:
	// one failure earns one fresh connection.
	for attempt := 0; attempt < 2; attempt++ {
		if o.cl == nil {
			cl, sel, derr := o.c.dialIMAP(ctx, nil)
			if derr != nil {
				return derr
			}
			o.cl, o.validity = cl, sel.UIDValidity
		}
		if key.validity != o.validity {
			return errStaleUID
		}
		cl := o.cl
		stop := context.AfterFunc(ctx, func() { cl.Close() })
		err = deleteUID(cl, key.uid)
		stop()
		if err == nil {
			return nil
		}
		o.cl.Close()
		o.cl = nil
		if ctx.Err() != nil {
			return errors.Join(err, ctx.Err())
		}
	}
	return err
}

func (o *imapOps) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cl != nil {
		o.cl.Close()
		o.cl = nil
	}
}
