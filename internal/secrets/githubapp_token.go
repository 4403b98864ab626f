package secrets

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The App JWT: iat a minute in the past against clock drift, as GitHub
// recommends, and exp nine minutes ahead, inside GitHub's ten-minute
// limit even for a clock that runs a little fast.
const (
	jwtBackdate = 60 * time.Second
	jwtLifetime = 9 * time.Minute
)

const (
	// mintTimeout bounds one token request (and one repository listing).
	mintTimeout = 30 * time.Second
	// maxRefreshLead is how long before expiry a token is refreshed at
	// most (a quarter of its life for short-lived ones).
	maxRefreshLead = 15 * time.Minute
	// maxExpiryMargin is how long before expiry a token is no longer sent
	// at most (a tenth of its life for short-lived ones): it must not
	// expire on its way.
	maxExpiryMargin = time.Minute
	// maxBackoff caps the wait after failed mints.
	maxBackoff = 30 * time.Second
	// maxRepoPages bounds the repository listing (100 per page).
	maxRepoPages = 100
	// maxAPIBody caps a GitHub API answer read by the proxy.
	maxAPIBody = 4 << 20
)

// ErrClosed is returned for a token asked of a proxy shutting down.
var ErrClosed = errors.New("credential source closed")

// Repository is one repository a GitHub App token may reach.
type Repository struct {
	ID       int64  // database id, what node ids encode
	NodeID   string // "R_kgDO…" or the legacy base64 form
	FullName string // "owner/name"
}

// RepoScope is what a GitHub App token may reach, for the proxy's GraphQL
// scope check (S5.5): the configured repositories, or with none
// configured every repository of the installation.
type RepoScope struct {
	App   string // the credential's name
	Repos []Repository
}

// HasID reports whether the repository with database id id is in scope.
func (s *RepoScope) HasID(id int64) bool {
	return slices.ContainsFunc(s.Repos, func(r Repository) bool { return r.ID == id })
}

// HasFullName reports whether owner/name is in scope; GitHub compares
// both case-insensitively.
func (s *RepoScope) HasFullName(fullName string) bool {
	return slices.ContainsFunc(s.Repos, func(r Repository) bool { return strings.EqualFold(r.FullName, fullName) })
}

// appToken is one minted installation token.
type appToken struct {
	value       Value
	expires     time.Time // on the local clock
	refreshAt   time.Time
	usableUntil time.Time
	repos       []Repository // from the mint answer or listed on demand
	reposKnown  bool
}

// tokenSource mints and caches one App's installation tokens. A request
// waits only when there is no usable token (the task's first, or after a
// failure); otherwise a refresh runs in the background, started by a
// timer at refreshAt or by the first request after it, while requests
// keep using the current token.
type tokenSource struct {
	name   string
	app    *appConfig
	client *http.Client
	log    *slog.Logger
	now    func() time.Time

	ctx    context.Context // ends on close: stops mints in flight
	cancel context.CancelFunc

	mu       sync.Mutex
	cur      *appToken
	inflight chan struct{} // closed when the mint in flight ends
	lastErr  error
	retryAt  time.Time
	failures int
	timer    *time.Timer
	closed   bool
	reposMu  sync.Mutex // one repository listing at a time
}

func newTokenSource(name string, app *appConfig, env Env) *tokenSource {
	logger := env.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &tokenSource{
		name: name,
		app:  app,
		client: &http.Client{
			Transport: env.Transport,
			Timeout:   mintTimeout,
			// GitHub answers the token endpoint directly; a redirect would
			// carry the App's JWT to wherever it points.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		log:    logger.With("github_app", name),
		now:    time.Now,
		ctx:    ctx,
		cancel: cancel,
	}
}

// token returns a usable installation token. It waits for a mint only
// when there is none; a token past its refresh time is returned at once
// and a refresh started beside it.
func (s *tokenSource) token(ctx context.Context) (*appToken, error) {
	for {
		s.mu.Lock()
		now := s.now()
		if t := s.cur; t != nil && now.Before(t.usableUntil) {
			if !now.Before(t.refreshAt) && !now.Before(s.retryAt) {
				s.startMintLocked()
			}
			s.mu.Unlock()
			return t, nil
		}
		if s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		if s.inflight == nil && s.lastErr != nil && now.Before(s.retryAt) {
			err := s.lastErr
			s.mu.Unlock()
			return nil, err
		}
		ch := s.startMintLocked()
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for an installation token: %w", ctx.Err())
		}
	}
}

// startMintLocked starts a mint unless one is in flight, and returns the
// channel closed when it ends.
func (s *tokenSource) startMintLocked() chan struct{} {
	if s.inflight != nil || s.closed {
		if s.inflight == nil {
			ch := make(chan struct{})
			close(ch)
			return ch
		}
		return s.inflight
	}
	ch := make(chan struct{})
	s.inflight = ch
	go s.mint(ch)
	return ch
}

func (s *tokenSource) mint(done chan struct{}) {
	ctx, cancel := context.WithTimeout(s.ctx, mintTimeout)
	defer cancel()
	start := s.now()
	t, err := s.fetchToken(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	defer close(done)
	s.inflight = nil
	now := s.now()
	if err != nil {
		s.failures++
		s.lastErr = err
		s.retryAt = now.Add(min(time.Second<<min(s.failures-1, 5), maxBackoff))
		valid := s.cur != nil && now.Before(s.cur.usableUntil)
		s.log.Warn("github app token mint failed", "error", err, "failures", s.failures, "have_valid_token", valid)
		if valid {
			s.scheduleLocked(s.retryAt)
		}
		return
	}
	s.cur, s.lastErr, s.failures, s.retryAt = t, nil, 0, time.Time{}
	s.scheduleLocked(t.refreshAt)
	s.log.Info("github app token minted", "expires_in", t.expires.Sub(now).Round(time.Second),
		"took", now.Sub(start).Round(time.Millisecond))
}

// scheduleLocked arms the refresh timer for at.
func (s *tokenSource) scheduleLocked(at time.Time) {
	if s.closed {
		return
	}
	if s.timer != nil {
		s.timer.Stop()
	}
	s.timer = time.AfterFunc(at.Sub(s.now()), func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.startMintLocked()
	})
}

func (s *tokenSource) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
	}
	s.cancel()
}

// apiError is GitHub's error body.
type apiError struct {
	Message string `json:"message"`
}

// call makes one request to the App's API and decodes a 2xx JSON answer
// into out. The error never carries the credential it was sent with.
func (s *tokenSource) call(ctx context.Context, method, path, auth string, body any, out any) (http.Header, error) {
	if s.client.Transport == nil {
		return nil, errors.New("no transport for the proxy's own requests")
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := s.app.baseURL + path
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	req.Header.Set("User-Agent", "airut-proxy")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIBody))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", method, u, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var ae apiError
		_ = json.Unmarshal(data, &ae)
		msg := ae.Message
		if len(msg) > 200 {
			msg = msg[:200]
		}
		return nil, fmt.Errorf("%s %s: GitHub answered %s: %q", method, u, resp.Status, msg)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return nil, fmt.Errorf("%s %s: undecodable answer: %w", method, u, err)
	}
	return resp.Header, nil
}

// appJWT signs the App's JSON Web Token (RS256).
func (s *tokenSource) appJWT() (string, error) {
	now := s.now()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.RegisteredClaims{
		Issuer:    s.app.appID,
		IssuedAt:  jwt.NewNumericDate(now.Add(-jwtBackdate)),
		ExpiresAt: jwt.NewNumericDate(now.Add(jwtLifetime)),
	})
	signed, err := tok.SignedString(s.app.key)
	if err != nil {
		return "", fmt.Errorf("sign the App JWT: %w", err)
	}
	return signed, nil
}

// repoJSON is a repository in GitHub's answers.
type repoJSON struct {
	ID       int64  `json:"id"`
	NodeID   string `json:"node_id"`
	Name     string `json:"name"`
	FullName string `json:"full_name"`
}

// fetchToken asks GitHub for an installation token
// (POST /app/installations/{id}/access_tokens).
func (s *tokenSource) fetchToken(ctx context.Context) (*appToken, error) {
	signed, err := s.appJWT()
	if err != nil {
		return nil, err
	}
	body := map[string]any{}
	if len(s.app.permissions) > 0 {
		body["permissions"] = s.app.permissions
	}
	if len(s.app.repositories) > 0 {
		body["repositories"] = s.app.repositories
	}
	var ans struct {
		Token        string      `json:"token"`
		ExpiresAt    time.Time   `json:"expires_at"`
		Repositories *[]repoJSON `json:"repositories"`
	}
	sent := s.now()
	hdr, err := s.call(ctx, http.MethodPost, "/app/installations/"+strconv.FormatInt(s.app.installationID, 10)+"/access_tokens",
		"Bearer "+signed, body, &ans)
	if err != nil {
		return nil, fmt.Errorf("mint installation token: %w", err)
	}
	if !validToken(ans.Token) {
		return nil, errors.New("mint installation token: GitHub's answer has no usable token")
	}
	// The expiry is GitHub's clock; the lifetime it implies is put on
	// ours, so a skewed local clock neither sends expired tokens nor
	// refreshes in a loop.
	serverNow := sent
	if d, err := http.ParseTime(hdr.Get("Date")); err == nil {
		serverNow = d
	}
	life := ans.ExpiresAt.Sub(serverNow)
	if life <= 0 {
		return nil, fmt.Errorf("mint installation token: it expires at %s, already past", ans.ExpiresAt.Format(time.RFC3339))
	}
	expires := sent.Add(life)
	t := &appToken{
		value:       NewValue(ans.Token),
		expires:     expires,
		refreshAt:   expires.Add(-min(maxRefreshLead, life/4)),
		usableUntil: expires.Add(-min(maxExpiryMargin, life/10)),
	}
	if ans.Repositories != nil {
		t.repos, t.reposKnown = s.wanted(*ans.Repositories), true
	}
	return t, nil
}

// validToken accepts what can go in a header as a credential.
func validToken(s string) bool {
	if s == "" || len(s) > 1024 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == ',' || c == ';' || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// wanted keeps the configured repositories of a listing (all of them when
// none is configured).
func (s *tokenSource) wanted(list []repoJSON) []Repository {
	out := []Repository{}
	for _, r := range list {
		if r.ID == 0 || r.FullName == "" {
			continue
		}
		if len(s.app.repositories) > 0 && !slices.ContainsFunc(s.app.repositories, func(n string) bool { return strings.EqualFold(n, r.Name) }) {
			continue
		}
		out = append(out, Repository{ID: r.ID, NodeID: r.NodeID, FullName: r.FullName})
	}
	return out
}

// scope returns the repositories a token reaches, listing them
// (GET /installation/repositories) when the mint answer did not.
func (s *tokenSource) scope(ctx context.Context) (*RepoScope, error) {
	t, err := s.token(ctx)
	if err != nil {
		return nil, err
	}
	s.reposMu.Lock()
	defer s.reposMu.Unlock()
	s.mu.Lock()
	repos, known := t.repos, t.reposKnown
	s.mu.Unlock()
	if !known {
		repos, err = s.listRepos(ctx, t)
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		t.repos, t.reposKnown = repos, true
		s.mu.Unlock()
	}
	return &RepoScope{App: s.name, Repos: repos}, nil
}

func (s *tokenSource) listRepos(ctx context.Context, t *appToken) ([]Repository, error) {
	ctx, cancel := context.WithTimeout(ctx, mintTimeout)
	defer cancel()
	var all []repoJSON
	for page := 1; ; page++ {
		if page > maxRepoPages {
			return nil, fmt.Errorf("list installation repositories: more than %d pages", maxRepoPages)
		}
		var ans struct {
			Repositories []repoJSON `json:"repositories"`
		}
		if _, err := s.call(ctx, http.MethodGet, "/installation/repositories?per_page=100&page="+strconv.Itoa(page),
			"Bearer "+t.value.Reveal(), nil, &ans); err != nil {
			return nil, fmt.Errorf("list installation repositories: %w", err)
		}
		all = append(all, ans.Repositories...)
		if len(ans.Repositories) < 100 {
			break
		}
	}
	return s.wanted(all), nil
}

// GitHubScope reports, for a request to host and path (decoded, query
// allowed) with header h, whether a GitHub App's token will be swapped
// into it on the App's GraphQL endpoint, and if so the repositories the
// request must stay within (S5.5). It waits for the App's first token
// when there is none yet.
func (m *maskedInjector) GitHubScope(ctx context.Context, h http.Header, host, path string) (*RepoScope, bool, error) {
	path, _, _ = strings.Cut(path, "?")
	for i := range m.entries {
		e := &m.entries[i]
		if e.app == nil || host != e.app.graphQLHost || !sameEndpoint(path, e.app.graphQLPath) || !e.inScope(host) {
			continue
		}
		carried := false
		for _, v := range h.Values("Authorization") {
			if _, kind := classify(v, []*entry{e}); kind == whole {
				carried = true
			}
		}
		if !carried {
			continue
		}
		if e.src == nil {
			return nil, true, fmt.Errorf("github app %s: %w", e.name, errNoSource)
		}
		scope, err := e.src.scope(ctx)
		if err != nil {
			return nil, true, fmt.Errorf("github app %s: %w", e.name, err)
		}
		return scope, true, nil
	}
	return nil, false, nil
}

// sameEndpoint compares request paths the way a lenient router might:
// case-insensitive, repeated and trailing slashes ignored.
func sameEndpoint(path, endpoint string) bool {
	clean := func(p string) string {
		for strings.Contains(p, "//") {
			p = strings.ReplaceAll(p, "//", "/")
		}
		return strings.ToLower(strings.TrimRight(p, "/"))
	}
	return clean(path) == clean(endpoint)
}
