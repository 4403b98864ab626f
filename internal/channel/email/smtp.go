package email

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/airut/airut/internal/channel"
)

const smtpDialTimeout = 30 * time.Second

// send delivers data, retrying with doubling delays: a reply that fails
// only after every try counts as a channel error.
func (c *Channel) send(ctx context.Context, from string, rcpts []string, data []byte) error {
	delay := c.cfg.SendRetryDelay
	var err error
	for attempt := 1; attempt <= c.cfg.SendAttempts; attempt++ {
		err = c.sendOnce(ctx, from, rcpts, data)
		if err == nil {
			return nil
		}
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code >= 500 {
			// Permanent: the server said no, asking again will not help.
			err = channel.Permanent(err)
			break
		}
		if attempt == c.cfg.SendAttempts {
			break
		}
		c.log.Warn("smtp send failed; retrying", "attempt", attempt, "retry_in", delay, "error", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("send mail: %w (then %w)", err, ctx.Err())
		case <-t.C:
		}
		delay *= 2
	}
	return fmt.Errorf("send mail via %s: %w", c.smtpAddr(), err)
}

func (c *Channel) smtpAddr() string {
	return net.JoinHostPort(c.cfg.SMTP.Server, strconv.Itoa(c.cfg.SMTP.Port))
}

func (c *Channel) smtpTLSConfig() *tls.Config {
	return tlsConfig(c.cfg.SMTP.TLSConfig, c.smtpRoots, c.cfg.SMTP.Server)
}

func (c *Channel) dialSMTP(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: smtpDialTimeout}
	conn, err := d.DialContext(ctx, "tcp", c.smtpAddr())
	if err != nil {
		return nil, fmt.Errorf("dial smtp: %w", err)
	}
	return conn, nil
}

// smtpClient connects according to the TLS mode. Opportunistic mode asks
// the server first and reconnects to upgrade, because go-smtp offers
// STARTTLS only as the first step of a new client.
func (c *Channel) smtpClient(ctx context.Context) (*smtp.Client, error) {
	conn, err := c.dialSMTP(ctx)
	if err != nil {
		return nil, err
	}
	switch c.cfg.SMTP.TLS {
	case TLSImplicit:
		tc := tls.Client(conn, c.smtpTLSConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("smtp tls handshake: %w", err)
		}
		return smtp.NewClient(tc), nil
	case TLSStartTLS:
		cl, err := smtp.NewClientStartTLS(conn, c.smtpTLSConfig())
		if err != nil {
			return nil, fmt.Errorf("smtp starttls (required; the server must offer it): %w", err)
		}
		return cl, nil
	case TLSOpportunistic:
		cl := smtp.NewClient(conn)
		if err := cl.Hello("localhost"); err != nil {
			cl.Close()
			return nil, fmt.Errorf("smtp ehlo: %w", err)
		}
		if ok, _ := cl.Extension("STARTTLS"); !ok {
			return cl, nil
		}
		_ = cl.Quit()
		conn, err := c.dialSMTP(ctx)
		if err != nil {
			return nil, err
		}
		cl, err = smtp.NewClientStartTLS(conn, c.smtpTLSConfig())
		if err != nil {
			return nil, fmt.Errorf("smtp starttls: %w", err)
		}
		return cl, nil
	default:
		return smtp.NewClient(conn), nil
	}
}

func (c *Channel) sendOnce(ctx context.Context, from string, rcpts []string, data []byte) error {
	cl, err := c.smtpClient(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	stop := context.AfterFunc(ctx, func() { cl.Close() })
	defer stop()

	if c.cfg.SMTP.RequireAuth {
		if ok, _ := cl.Extension("AUTH"); !ok {
			return errors.New("smtp server offers no AUTH but require_auth is set")
		}
		if err := c.smtpAuth(ctx, cl); err != nil {
			return err
		}
	}
	if err := cl.SendMail(from, rcpts, bytes.NewReader(data)); err != nil {
		return fmt.Errorf("smtp send: %w", err)
	}
	// The message is accepted once DATA succeeds; a failed QUIT must not
	// make the caller send it again.
	_ = cl.Quit()
	return nil
}

// smtpAuth logs in with AUTH PLAIN, or AUTH XOAUTH2 when the channel has an
// OAuth2 token source.
func (c *Channel) smtpAuth(ctx context.Context, cl *smtp.Client) error {
	user := c.cfg.SMTP.Username
	return c.login(ctx, "smtp auth", user,
		func() error { return cl.Auth(sasl.NewPlainClient("", user, c.cfg.SMTP.Password)) },
		cl.Auth)
}
