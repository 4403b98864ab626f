package email

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// DefaultOAuth2Scope is the only scope Microsoft 365 accepts for IMAP
	// and SMTP with client credentials.
	DefaultOAuth2Scope = "https://outlook.office365.com/.default"

	oauth2Timeout = 30 * time.Second
	// oauth2RefreshMargin is how long before expiry a token is replaced, so
	// a token is never presented in its last seconds (as MSAL does).
	oauth2RefreshMargin = 5 * time.Minute
	// oauth2MaxBody bounds what is read from the token endpoint.
	oauth2MaxBody = 1 << 20
	xoauth2       = "XOAUTH2"
)

// OAuth2Config is Microsoft 365 login with the client-credentials flow: the
// channel gets an access token for its Azure AD application and logs in to
// IMAP and SMTP with SASL XOAUTH2 instead of a password.
type OAuth2Config struct {
	// TenantID is the Azure AD tenant (a GUID or a domain). Required unless
	// TokenURL is set.
	TenantID string
	// ClientID is the application (client) id. Required.
	ClientID string
	// ClientSecret is the application's client secret. Required.
	ClientSecret string
	// TokenURL is the token endpoint; default
	// https://login.microsoftonline.com/<TenantID>/oauth2/v2.0/token. It
	// must be https, or http to a loopback address (tests).
	TokenURL string
	// Scope defaults to DefaultOAuth2Scope.
	Scope string
}

func (o *OAuth2Config) setDefaults() {
	if o.TokenURL == "" && o.TenantID != "" {
		o.TokenURL = "https://login.microsoftonline.com/" + url.PathEscape(o.TenantID) + "/oauth2/v2.0/token"
	}
	if o.Scope == "" {
		o.Scope = DefaultOAuth2Scope
	}
}

// validate runs after setDefaults, so TokenURL is empty only when neither it
// nor the tenant was given.
func (o *OAuth2Config) validate() []error {
	const p = "microsoft_oauth2."
	var errs []error
	if strings.TrimSpace(o.TenantID) == "" && o.TokenURL == "" {
		errs = append(errs, errors.New(p+"tenant_id: required"))
	} else if o.TenantID != "" && !validTenant(o.TenantID) {
		// The value is not repeated: the config treats it as a secret.
		errs = append(errs, errors.New(p+"tenant_id: must be a tenant GUID or domain"))
	}
	if strings.TrimSpace(o.ClientID) == "" {
		errs = append(errs, errors.New(p+"client_id: required"))
	}
	if o.ClientSecret == "" {
		errs = append(errs, errors.New(p+"client_secret: required"))
	}
	if o.TokenURL != "" {
		if err := checkTokenURL(o.TokenURL); err != nil {
			errs = append(errs, fmt.Errorf(p+"token_url: %w", err))
		}
	}
	return errs
}

func validTenant(s string) bool {
	for _, r := range s {
		ok := r == '-' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if !ok {
			return false
		}
	}
	return s != ""
}

// checkTokenURL fails closed on plain http: the client secret travels in
// the request body, so only a loopback endpoint may go without TLS.
func checkTokenURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	switch u.Scheme {
	case "https":
	case "http":
		ip := net.ParseIP(u.Hostname())
		if ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("%s: plain http is allowed only to a loopback address", s)
		}
	default:
		return fmt.Errorf("%s: must be an https URL", s)
	}
	if u.Host == "" {
		return fmt.Errorf("%s: no host", s)
	}
	return nil
}

// tokenSource hands out one cached access token and fetches a new one when
// it is about to expire. Concurrent callers share a single fetch.
type tokenSource struct {
	cfg    OAuth2Config
	client *http.Client
	log    *slog.Logger
	now    func() time.Time

	// fetching admits one fetch at a time; a channel rather than a mutex
	// so a waiter can give up when its context ends.
	fetching chan struct{}

	mu        sync.Mutex
	token     string
	refreshAt time.Time
}

func newTokenSource(cfg OAuth2Config, log *slog.Logger) *tokenSource {
	return &tokenSource{
		cfg: cfg,
		client: &http.Client{
			Timeout: oauth2Timeout,
			// A 307 or 308 would re-send the client secret to wherever
			// it points; the endpoint is fixed, so a redirect is an error.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		log:      log,
		now:      time.Now,
		fetching: make(chan struct{}, 1),
	}
}

func (ts *tokenSource) cached() (string, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.token != "" && ts.now().Before(ts.refreshAt) {
		return ts.token, true
	}
	return "", false
}

// Token returns a valid access token, from the cache when it has one.
func (ts *tokenSource) Token(ctx context.Context) (string, error) {
	if tok, ok := ts.cached(); ok {
		return tok, nil
	}
	select {
	case ts.fetching <- struct{}{}:
	case <-ctx.Done():
		return "", fmt.Errorf("oauth2 token from %s: %w", ts.cfg.TokenURL, ctx.Err())
	}
	defer func() { <-ts.fetching }()
	// Another caller may have fetched while this one waited.
	if tok, ok := ts.cached(); ok {
		return tok, nil
	}
	tok, lifetime, err := ts.fetch(ctx)
	if err != nil {
		return "", fmt.Errorf("oauth2 token from %s: %w", ts.cfg.TokenURL, err)
	}
	margin := min(oauth2RefreshMargin, lifetime/2)
	ts.mu.Lock()
	ts.token, ts.refreshAt = tok, ts.now().Add(lifetime-margin)
	ts.mu.Unlock()
	ts.log.Debug("oauth2 token acquired", "expires_in", lifetime)
	return tok, nil
}

// invalidate drops tok from the cache after a server refused it (revoked,
// or the application's permissions changed), so the next login fetches a
// new one instead of failing until the old one expires.
func (ts *tokenSource) invalidate(tok string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.token == tok {
		ts.token = ""
	}
}

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	// ExpiresIn is a number from the v2.0 endpoint and a string from v1.0.
	ExpiresIn        json.RawMessage `json:"expires_in"`
	Error            string          `json:"error"`
	ErrorDescription string          `json:"error_description"`
}

func (ts *tokenSource) fetch(ctx context.Context) (string, time.Duration, error) {
	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {ts.cfg.ClientID},
		"client_secret": {ts.cfg.ClientSecret},
		"scope":         {ts.cfg.Scope},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.cfg.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := ts.client.Do(req)
	if err != nil {
		// *url.Error repeats method and URL; the body (and so the secret)
		// is never part of it.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, oauth2MaxBody))
	if err != nil {
		return "", 0, fmt.Errorf("http %s: read body: %w", resp.Status, err)
	}
	var tr tokenResponse
	jsonErr := json.Unmarshal(body, &tr)
	if resp.StatusCode != http.StatusOK {
		detail := ""
		if jsonErr == nil && tr.Error != "" {
			detail = ": " + ts.scrub(tr.Error+": "+firstLine(tr.ErrorDescription))
		}
		return "", 0, fmt.Errorf("http %s%s", resp.Status, detail)
	}
	if jsonErr != nil {
		return "", 0, fmt.Errorf("http %s: response is not JSON: %w", resp.Status, jsonErr)
	}
	if tr.AccessToken == "" {
		return "", 0, fmt.Errorf("http %s: response has no access_token", resp.Status)
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer") {
		return "", 0, fmt.Errorf("http %s: token_type %q is not Bearer", resp.Status, tr.TokenType)
	}
	secs, err := parseExpiresIn(tr.ExpiresIn)
	if err != nil {
		return "", 0, fmt.Errorf("http %s: expires_in: %w", resp.Status, err)
	}
	return tr.AccessToken, time.Duration(secs) * time.Second, nil
}

// parseExpiresIn accepts a number or a numeric string. A missing value
// gives 0: the token is used once and not cached, rather than guessed at.
func parseExpiresIn(raw json.RawMessage) (int64, error) {
	s := strings.Trim(strings.TrimSpace(string(raw)), `"`)
	if s == "" || s == "null" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a number of seconds", s)
	}
	return n, nil
}

// scrub keeps the client secret out of text taken from the endpoint's
// response, in case an endpoint echoes the request.
func (ts *tokenSource) scrub(s string) string {
	if ts.cfg.ClientSecret != "" {
		s = strings.ReplaceAll(s, ts.cfg.ClientSecret, "[REDACTED]")
	}
	if len(s) > 300 {
		s = strings.ToValidUTF8(s[:300], "") + "…"
	}
	return s
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(s)
}

// xoauth2Client is the SASL XOAUTH2 mechanism (Google's and Microsoft's;
// go-sasl has only the standard OAUTHBEARER). The whole exchange is the
// initial response; a server that refuses the token sends a JSON error as a
// challenge and expects an empty response before it says NO.
type xoauth2Client struct {
	user, token string
}

func (c xoauth2Client) Start() (string, []byte, error) {
	return xoauth2, []byte("user=" + c.user + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
}

func (c xoauth2Client) Next(challenge []byte) ([]byte, error) {
	return []byte{}, nil
}
