package email

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/testkit/mailtest"
)

const (
	testClientID = "11111111-2222-3333-4444-555555555555"
	testSecret   = "cl1ent-s3cret~value"
)

// fakeClock is a settable clock for the token cache.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestTokenSource(t *testing.T, url string) (*tokenSource, *fakeClock) {
	t.Helper()
	cfg := OAuth2Config{ClientID: testClientID, ClientSecret: testSecret, TokenURL: url}
	cfg.setDefaults()
	ts := newTokenSource(cfg, slog.New(slog.DiscardHandler))
	clock := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	ts.now = clock.now
	return ts, clock
}

func TestTokenSourceRequest(t *testing.T) {
	srv := mailtest.NewTokenServer(t, mailtest.TokenOptions{ClientID: testClientID, ClientSecret: testSecret})
	ts, _ := newTestTokenSource(t, srv.URL)
	tok, err := ts.Token(context.Background())
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	if tok != "test-access-token" {
		t.Errorf("got token %q; want test-access-token", tok)
	}
	reqs := srv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d token requests; want 1", len(reqs))
	}
	got := map[string]string{}
	for k := range reqs[0] {
		got[k] = reqs[0].Get(k)
	}
	want := map[string]string{
		"grant_type":    "client_credentials",
		"client_id":     testClientID,
		"client_secret": testSecret,
		"scope":         "https://outlook.office365.com/.default",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("token request form mismatch (-want +got):\n%s", diff)
	}
}

func TestTokenSourceCacheAndRefresh(t *testing.T) {
	srv := mailtest.NewTokenServer(t, mailtest.TokenOptions{
		ClientID: testClientID, ClientSecret: testSecret,
		Tokens: []string{"tok-1", "tok-2"}, ExpiresIn: 3600,
	})
	ts, clock := newTestTokenSource(t, srv.URL)
	steps := []struct {
		name      string
		advance   time.Duration
		wantToken string
		wantHits  int
	}{
		{name: "first call fetches", wantToken: "tok-1", wantHits: 1},
		{name: "cached", advance: time.Minute, wantToken: "tok-1", wantHits: 1},
		{name: "still cached just before the margin", advance: 53*time.Minute + 59*time.Second, wantToken: "tok-1", wantHits: 1},
		{name: "refreshed five minutes before expiry", advance: time.Second, wantToken: "tok-2", wantHits: 2},
		{name: "new token cached", advance: 30 * time.Minute, wantToken: "tok-2", wantHits: 2},
	}
	for _, st := range steps {
		clock.advance(st.advance)
		tok, err := ts.Token(context.Background())
		if err != nil {
			t.Fatalf("%s: Token: %v", st.name, err)
		}
		if tok != st.wantToken {
			t.Errorf("%s: got token %q; want %q", st.name, tok, st.wantToken)
		}
		if got := len(srv.Requests()); got != st.wantHits {
			t.Errorf("%s: got %d token requests; want %d", st.name, got, st.wantHits)
		}
	}
}

func TestTokenSourceConcurrentCallersShareOneFetch(t *testing.T) {
	srv := mailtest.NewTokenServer(t, mailtest.TokenOptions{ClientID: testClientID, ClientSecret: testSecret})
	ts, _ := newTestTokenSource(t, srv.URL)
	const callers = 8
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := ts.Token(context.Background()); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Token: %v", err)
	}
	if got := len(srv.Requests()); got != 1 {
		t.Errorf("got %d token requests for %d concurrent callers; want 1", got, callers)
	}
}

func TestTokenSourceInvalidate(t *testing.T) {
	srv := mailtest.NewTokenServer(t, mailtest.TokenOptions{
		ClientID: testClientID, ClientSecret: testSecret, Tokens: []string{"tok-1", "tok-2"},
	})
	ts, _ := newTestTokenSource(t, srv.URL)
	first, err := ts.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ts.invalidate("some-other-token") // a stale caller must not drop the current token
	if tok, _ := ts.Token(context.Background()); tok != first {
		t.Errorf("after invalidating another token got %q; want %q", tok, first)
	}
	ts.invalidate(first)
	if tok, _ := ts.Token(context.Background()); tok != "tok-2" {
		t.Errorf("after invalidate got %q; want a fresh tok-2", tok)
	}
}

func TestTokenSourceNoExpiresInIsNotCached(t *testing.T) {
	srv := mailtest.NewTokenServer(t, mailtest.TokenOptions{
		ClientID: testClientID, ClientSecret: testSecret, ExpiresIn: -1,
	})
	ts, _ := newTestTokenSource(t, srv.URL)
	for range 2 {
		if _, err := ts.Token(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(srv.Requests()); got != 2 {
		t.Errorf("got %d token requests; want 2 (a token without expires_in is not cached)", got)
	}
}

func TestTokenSourceErrors(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		secret  string // the client secret the source sends
		wantErr []string
	}{
		{name: "wrong secret", secret: "wrong-s3cret-value", status: 0,
			wantErr: []string{"401 Unauthorized", "invalid_client", "AADSTS7000215"}},
		{name: "server error, html body", status: http.StatusBadGateway, body: "<html>bad gateway</html>",
			wantErr: []string{"502 Bad Gateway"}},
		{name: "error echoing the secret", status: http.StatusBadRequest,
			body:    `{"error":"invalid_request","error_description":"bad client_secret=` + testSecret + `"}`,
			wantErr: []string{"400 Bad Request", "invalid_request", "[REDACTED]"}},
		{name: "no access token", status: http.StatusOK, body: `{"token_type":"Bearer","expires_in":3599}`,
			wantErr: []string{"200 OK", "no access_token"}},
		{name: "not json", status: http.StatusOK, body: `access_token=x`,
			wantErr: []string{"200 OK", "not JSON"}},
		{name: "not a bearer token", status: http.StatusOK, body: `{"token_type":"mac","access_token":"x","expires_in":60}`,
			wantErr: []string{"token_type"}},
		{name: "bad expires_in", status: http.StatusOK, body: `{"token_type":"Bearer","access_token":"x","expires_in":"soon"}`,
			wantErr: []string{"expires_in"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := mailtest.NewTokenServer(t, mailtest.TokenOptions{ClientID: testClientID, ClientSecret: testSecret})
			if tt.status != 0 {
				srv.FailWith(tt.status, tt.body)
			}
			ts, _ := newTestTokenSource(t, srv.URL)
			if tt.secret != "" {
				ts.cfg.ClientSecret = tt.secret
			}
			_, err := ts.Token(context.Background())
			if err == nil {
				t.Fatal("Token: got nil error")
			}
			msg := err.Error()
			t.Logf("error: %s", msg)
			for _, w := range append([]string{srv.URL}, tt.wantErr...) {
				if !strings.Contains(msg, w) {
					t.Errorf("got error %q; want it to contain %q", msg, w)
				}
			}
			if strings.Contains(msg, ts.cfg.ClientSecret) {
				t.Errorf("error %q contains the client secret", msg)
			}
		})
	}
}

func TestTokenSourceStringExpiresIn(t *testing.T) {
	// The v1.0 endpoint sends expires_in as a string.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"token_type":"Bearer","access_token":"v1-token","expires_in":"3599"}`))
	}))
	t.Cleanup(srv.Close)
	ts, _ := newTestTokenSource(t, srv.URL)
	if _, err := ts.Token(context.Background()); err != nil {
		t.Fatalf("Token: %v", err)
	}
	ts.mu.Lock()
	got := ts.refreshAt.Sub(ts.now())
	ts.mu.Unlock()
	if want := 3599*time.Second - oauth2RefreshMargin; got != want {
		t.Errorf("got refresh in %v; want %v", got, want)
	}
}

func TestTokenSourceDoesNotFollowRedirects(t *testing.T) {
	var elsewhere sync.Map
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		elsewhere.Store("secret", r.PostForm.Get("client_secret"))
		_, _ = w.Write([]byte(`{"token_type":"Bearer","access_token":"stolen","expires_in":3599}`))
	}))
	t.Cleanup(other.Close)
	redirect := httptest.NewServer(http.RedirectHandler(other.URL, http.StatusTemporaryRedirect))
	t.Cleanup(redirect.Close)

	ts, _ := newTestTokenSource(t, redirect.URL)
	_, err := ts.Token(context.Background())
	if err == nil || !strings.Contains(err.Error(), "307") {
		t.Errorf("got error %v; want one with status 307", err)
	}
	if v, ok := elsewhere.Load("secret"); ok {
		t.Errorf("the redirect target received client_secret %q; want no request", v)
	}
}

func TestTokenSourceUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/tenant/oauth2/v2.0/token"
	srv.Close()
	ts, _ := newTestTokenSource(t, url)
	_, err := ts.Token(context.Background())
	if err == nil || !strings.Contains(err.Error(), url) {
		t.Fatalf("got error %v; want one naming %s", err, url)
	}
	if strings.Contains(err.Error(), testSecret) {
		t.Errorf("error %q contains the client secret", err)
	}
}

// TestXOAUTH2RefreshOverSMTP sends two replies an hour apart: the second
// logs in with a new token, which the server now requires.
func TestXOAUTH2RefreshOverSMTP(t *testing.T) {
	tokens := mailtest.NewTokenServer(t, mailtest.TokenOptions{
		ClientID: testClientID, ClientSecret: testSecret,
		Tokens: []string{"tok-1", "tok-2"}, ExpiresIn: 3600,
	})
	imapSrv := mailtest.NewIMAPServer(t, mailtest.IMAPOptions{})
	smtpSrv := mailtest.NewSMTPServer(t, mailtest.SMTPOptions{Username: "airut@example.com", OAuth2Tokens: []string{"tok-1"}})
	c, err := New(Config{
		IMAP: IMAPConfig{Server: imapSrv.Host, Port: imapSrv.Port, Username: imapSrv.Username, TLS: TLSNone},
		SMTP: SMTPConfig{Server: smtpSrv.Host, Port: smtpSrv.Port, Username: "airut@example.com", RequireAuth: true, TLS: TLSNone},
		OAuth2: &OAuth2Config{
			TenantID: "contoso.onmicrosoft.com", ClientID: testClientID, ClientSecret: testSecret, TokenURL: tokens.URL,
		},
		From:              "airut@example.com",
		AuthorizedSenders: []string{"*@example.com"},
		SendAttempts:      1,
	}, func(string) bool { return false }, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	clock := &fakeClock{t: time.Now()}
	c.tokens.now = clock.now
	msg := &channel.Message{SenderAddress: "alice@example.com", Subject: "x", Thread: map[string]string{}}
	reply := func() error {
		return c.Reply(context.Background(), msg, channel.Reply{ConversationID: "1a2b3c4d", Markdown: "done"})
	}
	if err := reply(); err != nil {
		t.Fatalf("first reply: %v", err)
	}
	smtpSrv.AcceptTokens("tok-2") // tok-1 no longer works
	clock.advance(time.Hour)
	if err := reply(); err != nil {
		t.Fatalf("reply after an hour: %v", err)
	}
	if got := len(tokens.Requests()); got != 2 {
		t.Errorf("got %d token requests; want 2", got)
	}
	if got := len(smtpSrv.Messages()); got != 2 {
		t.Errorf("got %d messages delivered; want 2", got)
	}
}
