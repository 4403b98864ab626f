package email

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// TLSMode says how a mail connection is secured.
type TLSMode string

const (
	// TLSImplicit wraps the connection in TLS from the start (IMAPS 993,
	// SMTPS 465).
	TLSImplicit TLSMode = "tls"
	// TLSStartTLS upgrades a plain connection with STARTTLS and fails if the
	// server does not offer it.
	TLSStartTLS TLSMode = "starttls"
	// TLSOpportunistic (SMTP only) uses STARTTLS when the server offers it
	// and plain TCP otherwise: for a local relay that has no certificate.
	TLSOpportunistic TLSMode = "opportunistic"
	// TLSNone is plain TCP: for tests and relays on the same host.
	TLSNone TLSMode = "none"
)

// IMAPConfig is the inbound side.
type IMAPConfig struct {
	Server   string
	Port     int // default 993 (143 for starttls and none)
	Username string
	// Password is required unless Config.OAuth2 is set, and must then be
	// empty.
	Password string
	// TLS defaults to TLSImplicit.
	TLS TLSMode
	// TLSConfig overrides the TLS client settings; nil means the system
	// roots (or CAFile's) and Server as the name to verify.
	TLSConfig *tls.Config
	// CAFile is a PEM file of CA certificates trusted for this connection
	// instead of the system roots (a private mail CA). Default "" (system
	// roots).
	CAFile string
	// UseIdle waits for new mail with IDLE instead of polling.
	UseIdle bool
	// PollInterval is the wait between polls when UseIdle is off; default 60s.
	PollInterval time.Duration
	// IdleReconnectInterval re-issues IDLE this often, because servers drop
	// idle connections after 30 minutes (RFC 2177); default 29m.
	IdleReconnectInterval time.Duration
}

// SMTPConfig is the outbound side.
type SMTPConfig struct {
	Server   string
	Port     int // default 587 (465 for tls, 25 for none)
	Username string
	// Password is required with RequireAuth unless Config.OAuth2 is set,
	// and must then be empty.
	Password string
	// RequireAuth authenticates before sending: AUTH PLAIN, or AUTH
	// XOAUTH2 when Config.OAuth2 is set.
	RequireAuth bool
	// TLS defaults to TLSStartTLS (required).
	TLS       TLSMode
	TLSConfig *tls.Config
	// CAFile is as IMAPConfig.CAFile, for the SMTP connection.
	CAFile string
}

// Config is one repository's email channel. The config package maps the
// `email:` block of airut.yaml onto it.
type Config struct {
	IMAP IMAPConfig
	SMTP SMTPConfig
	// OAuth2, when set, logs in to IMAP (AUTHENTICATE XOAUTH2) and SMTP
	// (AUTH XOAUTH2) with a Microsoft 365 access token instead of the
	// passwords. Default nil (password login).
	OAuth2 *OAuth2Config
	// From is the channel's own address, "Airut <airut@example.com>" or a
	// bare address; replies come from it and its domain ends Message-IDs.
	From string
	// AuthorizedSenders are exact addresses or "*@domain", case-insensitive.
	AuthorizedSenders []string
	// TrustedAuthservID is the authserv-id that the first
	// Authentication-Results header must carry; "" skips the check
	// (Microsoft 365 omits it).
	TrustedAuthservID string
	// MicrosoftInternalFallback accepts X-MS-Exchange-Organization-AuthAs:
	// Internal when a message has no Authentication-Results header at all.
	MicrosoftInternalFallback bool
	// DashboardBaseURL, when set, puts a link to the conversation in the
	// acknowledgement reply.
	DashboardBaseURL string

	// ReconnectMin and ReconnectMax bound the exponential backoff between
	// IMAP reconnects; defaults 1s and 60s (a short outage must not delay
	// mail by minutes).
	ReconnectMin time.Duration
	ReconnectMax time.Duration
	// MaxInflight is how many messages may be handed to the handler and not
	// yet Done at once, and so the most one pass fetches: the inbox is the
	// durable queue, and what waits there costs no memory. Default 20.
	MaxInflight int
	// SendAttempts is how often a reply is tried before it counts as a
	// channel error; default 5. SendRetryDelay is the first wait between
	// tries, doubled each time; default 2s. Together about 30 s: after a
	// Dovecot restart, Postfix's submission answers AUTH with "454
	// Temporary authentication failure" for several seconds (its smtpd
	// processes still hold the dead auth connection).
	SendAttempts   int
	SendRetryDelay time.Duration
}

// LogValue keeps the passwords and OAuth2 secrets out of any log line that
// prints a Config.
func (c Config) LogValue() slog.Value {
	login := "password"
	if c.OAuth2 != nil {
		login = "xoauth2"
	}
	return slog.GroupValue(
		slog.String("imap", fmt.Sprintf("%s:%d", c.IMAP.Server, c.IMAP.Port)),
		slog.String("smtp", fmt.Sprintf("%s:%d", c.SMTP.Server, c.SMTP.Port)),
		slog.String("from", c.From),
		slog.String("login", login),
	)
}

func (c *Config) setDefaults() {
	if c.IMAP.TLS == "" {
		c.IMAP.TLS = TLSImplicit
	}
	if c.IMAP.Port == 0 {
		c.IMAP.Port = 993
		if c.IMAP.TLS != TLSImplicit {
			c.IMAP.Port = 143
		}
	}
	if c.IMAP.PollInterval <= 0 {
		c.IMAP.PollInterval = 60 * time.Second
	}
	if c.IMAP.IdleReconnectInterval <= 0 {
		c.IMAP.IdleReconnectInterval = 29 * time.Minute
	}
	if c.SMTP.TLS == "" {
		c.SMTP.TLS = TLSStartTLS
	}
	if c.SMTP.Port == 0 {
		switch c.SMTP.TLS {
		case TLSImplicit:
			c.SMTP.Port = 465
		case TLSNone:
			c.SMTP.Port = 25
		default:
			c.SMTP.Port = 587
		}
	}
	if c.ReconnectMin <= 0 {
		c.ReconnectMin = time.Second
	}
	if c.ReconnectMax <= 0 {
		c.ReconnectMax = time.Minute
	}
	if c.MaxInflight <= 0 {
		c.MaxInflight = 20
	}
	if c.ReconnectMax < c.ReconnectMin {
		c.ReconnectMax = c.ReconnectMin
	}
	if c.SendAttempts <= 0 {
		c.SendAttempts = 5
	}
	if c.SendRetryDelay <= 0 {
		c.SendRetryDelay = 2 * time.Second
	}
	if c.OAuth2 != nil {
		o := *c.OAuth2 // the caller's struct is left as it was
		o.setDefaults()
		c.OAuth2 = &o
	}
}

// validate collects every problem, named by its airut.yaml key.
func (c *Config) validate() error {
	var errs []error
	req := func(v, key string) {
		if strings.TrimSpace(v) == "" {
			errs = append(errs, fmt.Errorf("%s: required", key))
		}
	}
	req(c.IMAP.Server, "imap.server")
	req(c.IMAP.Username, "imap.username")
	req(c.SMTP.Server, "smtp.server")
	req(c.From, "from")
	switch c.IMAP.TLS {
	case TLSImplicit, TLSStartTLS, TLSNone:
	default:
		errs = append(errs, fmt.Errorf("imap.tls: %q is not one of tls, starttls, none", c.IMAP.TLS))
	}
	switch c.SMTP.TLS {
	case TLSImplicit, TLSStartTLS, TLSOpportunistic, TLSNone:
	default:
		errs = append(errs, fmt.Errorf("smtp.tls: %q is not one of tls, starttls, opportunistic, none", c.SMTP.TLS))
	}
	if c.SMTP.RequireAuth {
		req(c.SMTP.Username, "smtp.username")
	}
	if c.OAuth2 == nil {
		if c.IMAP.Password == "" {
			errs = append(errs, errors.New("imap.password: required unless microsoft_oauth2 is set"))
		}
		if c.SMTP.RequireAuth && c.SMTP.Password == "" {
			errs = append(errs, errors.New("smtp.password: required with require_auth unless microsoft_oauth2 is set"))
		}
	} else {
		// Both at once would leave it unclear which login is meant.
		if c.IMAP.Password != "" {
			errs = append(errs, errors.New("imap.password: must be empty when microsoft_oauth2 is set"))
		}
		if c.SMTP.Password != "" {
			errs = append(errs, errors.New("smtp.password: must be empty when microsoft_oauth2 is set"))
		}
		errs = append(errs, c.OAuth2.validate()...)
	}
	if len(c.AuthorizedSenders) == 0 {
		errs = append(errs, errors.New("auth.authorized_senders: at least one sender required"))
	}
	for i, s := range c.AuthorizedSenders {
		if !validSenderPattern(s) {
			errs = append(errs, fmt.Errorf("auth.authorized_senders[%d]: %q is neither an address nor *@domain", i, s))
		}
	}
	return errors.Join(errs...)
}
