package mailtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
)

// TokenServer is an OAuth2 client-credentials token endpoint in the shape
// of Microsoft's (login.microsoftonline.com/<tenant>/oauth2/v2.0/token),
// over plain HTTP on loopback.
type TokenServer struct {
	// URL is the token endpoint.
	URL string

	opts TokenOptions

	mu       sync.Mutex
	requests []url.Values
	next     int
	failCode int
	failBody string
	changed  chan struct{} // closed and replaced by every request
}

// TokenOptions adjust NewTokenServer.
type TokenOptions struct {
	// ClientID and ClientSecret are the credentials the endpoint accepts;
	// others get 401 invalid_client.
	ClientID     string
	ClientSecret string
	// Tokens are handed out in order, one per request; the last repeats.
	// Default "test-access-token".
	Tokens []string
	// ExpiresIn is the expires_in of every token, in seconds; default
	// 3599. Negative leaves it out of the response.
	ExpiresIn int
}

// NewTokenServer starts an endpoint for the tenant "contoso.onmicrosoft.com"
// and stops it at test cleanup.
func NewTokenServer(t testing.TB, opts TokenOptions) *TokenServer {
	t.Helper()
	if len(opts.Tokens) == 0 {
		opts.Tokens = []string{"test-access-token"}
	}
	if opts.ExpiresIn == 0 {
		opts.ExpiresIn = 3599
	}
	s := &TokenServer{opts: opts, changed: make(chan struct{})}
	const path = "/contoso.onmicrosoft.com/oauth2/v2.0/token"
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+path, s.serve)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	s.URL = srv.URL + path
	return s
}

func (s *TokenServer) serve(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_request", "error_description": err.Error()})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r.PostForm)
	close(s.changed)
	s.changed = make(chan struct{})
	f := r.PostForm
	switch {
	case s.failCode != 0:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(s.failCode)
		_, _ = w.Write([]byte(s.failBody))
	case f.Get("grant_type") != "client_credentials":
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "unsupported_grant_type",
			"error_description": "AADSTS70003: The app requested an unsupported grant type."})
	case f.Get("client_id") != s.opts.ClientID || f.Get("client_secret") != s.opts.ClientSecret:
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "invalid_client",
			"error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 0000"})
	case f.Get("scope") == "":
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_scope",
			"error_description": "AADSTS1002012: The provided value for scope is not valid."})
	default:
		tok := s.opts.Tokens[min(s.next, len(s.opts.Tokens)-1)]
		s.next++
		resp := map[string]any{"token_type": "Bearer", "access_token": tok}
		if s.opts.ExpiresIn > 0 {
			resp["expires_in"] = s.opts.ExpiresIn
		}
		writeJSON(w, http.StatusOK, resp)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// FailWith makes every later request get this status and raw body; 0
// returns to normal.
func (s *TokenServer) FailWith(code int, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failCode, s.failBody = code, body
}

// Requests returns the form of every request so far.
func (s *TokenServer) Requests() []url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]url.Values(nil), s.requests...)
}

// WaitRequests blocks until n requests have arrived or ctx ends.
func (s *TokenServer) WaitRequests(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		have, ch := len(s.requests), s.changed
		s.mu.Unlock()
		if have >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for token request %d (have %d): %w", n, have, ctx.Err())
		case <-ch:
		}
	}
}
