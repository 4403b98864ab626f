package email

import (
	"context"
	"errors"
	"fmt"

	"github.com/airut/airut/internal/channel"
)

var _ channel.Prober = (*Channel)(nil)

// Probe logs in to the IMAP server (then logs out) and opens an SMTP
// session with the configured TLS and AUTH (then quits), on connections of
// its own, so a running Run is not disturbed. Its error names the server
// and the stage that failed: it becomes the repo's status reason.
func (c *Channel) Probe(ctx context.Context) error {
	cl, _, err := c.dialIMAP(ctx, nil, nil)
	if err != nil {
		return err
	}
	_ = cl.Logout().Wait()
	cl.Close()

	sc, err := c.smtpClient(ctx)
	if err != nil {
		return fmt.Errorf("smtp %s: %w", c.smtpAddr(), err)
	}
	defer sc.Close()
	stop := context.AfterFunc(ctx, func() { sc.Close() })
	defer stop()
	if c.cfg.SMTP.RequireAuth {
		if ok, _ := sc.Extension("AUTH"); !ok {
			return fmt.Errorf("smtp %s: %w", c.smtpAddr(), errors.New("server offers no AUTH but require_auth is set"))
		}
		if err := c.smtpAuth(ctx, sc); err != nil {
			return fmt.Errorf("smtp %s: %w", c.smtpAddr(), err)
		}
	}
	_ = sc.Quit()
	return nil
}
