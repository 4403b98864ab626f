package configui

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/slack-go/slack"

	"github.com/airut/airut/internal/config"
)

// testGit runs git ls-remote with the host's credentials (the gateway's
// own mirror fetch uses the same), without prompting for any.
func testGit(ctx context.Context, url string) error {
	if url == "" {
		return errors.New("repo_url is empty")
	}
	cmd := exec.CommandContext(ctx, "git", "ls-remote", "--heads", "--", url)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=true", "SSH_ASKPASS=true")
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if ctx.Err() != nil {
			msg = "timed out"
		}
		return fmt.Errorf("git ls-remote %s: %s", url, msg)
	}
	return nil
}

func tlsConfig(server, caFile string) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: server, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// testIMAP logs in to the repo's mailbox and out again.
func testIMAP(ctx context.Context, e *config.Email) error {
	if e.MicrosoftOAuth2 != nil {
		return errors.New("the IMAP test logs in with a password; microsoft_oauth2 is not tested here")
	}
	addr := net.JoinHostPort(e.IMAP.Server, strconv.Itoa(e.IMAP.Port))
	tc, err := tlsConfig(e.IMAP.Server, e.IMAP.CAFile)
	if err != nil {
		return fmt.Errorf("imap: %w", err)
	}
	opts := &imapclient.Options{TLSConfig: tc}
	var cl *imapclient.Client
	if e.IMAP.TLS {
		cl, err = imapclient.DialTLS(addr, opts)
	} else {
		cl, err = imapclient.DialInsecure(addr, opts)
	}
	if err != nil {
		return fmt.Errorf("imap %s: connect: %w", addr, err)
	}
	defer cl.Close()
	stop := context.AfterFunc(ctx, func() { cl.Close() })
	defer stop()
	if err := cl.Login(e.Account.Username, e.Account.Password.Reveal()).Wait(); err != nil {
		return fmt.Errorf("imap %s: login as %s: %w", addr, e.Account.Username, err)
	}
	_ = cl.Logout().Wait()
	return nil
}

// testSMTP connects to the repo's SMTP server, with STARTTLS when it is
// required or offered, and authenticates when require_auth is on.
func testSMTP(ctx context.Context, e *config.Email) error {
	addr := net.JoinHostPort(e.SMTP.Server, strconv.Itoa(e.SMTP.Port))
	dial := func() (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("smtp %s: connect: %w", addr, err)
		}
		context.AfterFunc(ctx, func() { conn.Close() })
		return conn, nil
	}
	conn, err := dial()
	if err != nil {
		return err
	}
	cl := smtp.NewClient(conn)
	if err := cl.Hello("localhost"); err != nil {
		cl.Close()
		return fmt.Errorf("smtp %s: ehlo: %w", addr, err)
	}
	if ok, _ := cl.Extension("STARTTLS"); ok {
		_ = cl.Quit()
		tc, err := tlsConfig(e.SMTP.Server, e.SMTP.CAFile)
		if err != nil {
			return fmt.Errorf("smtp: %w", err)
		}
		if conn, err = dial(); err != nil {
			return err
		}
		if cl, err = smtp.NewClientStartTLS(conn, tc); err != nil {
			return fmt.Errorf("smtp %s: starttls: %w", addr, err)
		}
	} else if e.SMTP.StartTLS {
		cl.Close()
		return fmt.Errorf("smtp %s: the server does not offer STARTTLS (starttls: true requires it)", addr)
	}
	defer cl.Close()
	if e.SMTP.RequireAuth {
		if e.MicrosoftOAuth2 != nil {
			return errors.New("the SMTP test logs in with a password; microsoft_oauth2 is not tested here")
		}
		if err := cl.Auth(sasl.NewPlainClient("", e.Account.Username, e.Account.Password.Reveal())); err != nil {
			return fmt.Errorf("smtp %s: auth as %s: %w", addr, e.Account.Username, err)
		}
	}
	_ = cl.Quit()
	return nil
}

// testSlack calls auth.test with the bot token.
func testSlack(ctx context.Context, s *config.Slack) error {
	var opts []slack.Option
	if s.APIURL != "" {
		u := s.APIURL
		if !strings.HasSuffix(u, "/") {
			u += "/"
		}
		opts = append(opts, slack.OptionAPIURL(u))
	}
	resp, err := slack.New(s.BotToken.Reveal(), opts...).AuthTestContext(ctx)
	if err != nil {
		return fmt.Errorf("slack auth.test: %w", err)
	}
	if resp.BotID == "" {
		return fmt.Errorf("slack auth.test: the token of %s is not a bot token", resp.User)
	}
	return nil
}
