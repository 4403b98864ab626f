package githubtest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestMintVerifiesLikeGitHub: the fake refuses what GitHub refuses.
func TestMintVerifiesLikeGitHub(t *testing.T) {
	app, other := NewApp(t), NewApp(t)
	s := New(t, app, 42, Repo{ID: 1, Owner: "acme", Name: "app"})
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	now := time.Now()
	good := jwt.MapClaims{"iss": app.ID, "iat": now.Add(-time.Minute).Unix(), "exp": now.Add(9 * time.Minute).Unix()}
	with := func(k string, v any) jwt.MapClaims {
		c := jwt.MapClaims{}
		for kk, vv := range good {
			c[kk] = vv
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	tests := []struct {
		name, auth, path, body, ua string
		status                     int
	}{
		{"good", "Bearer " + sign(t, jwt.SigningMethodRS256, app.Key, good), "/app/installations/42/access_tokens", `{"repositories":["app"]}`, "x", 201},
		{"client id as iss", "Bearer " + sign(t, jwt.SigningMethodRS256, app.Key, with("iss", app.ClientID)), "/app/installations/42/access_tokens", "", "x", 201},
		{"other key", "Bearer " + sign(t, jwt.SigningMethodRS256, other.Key, good), "/app/installations/42/access_tokens", "", "x", 401},
		{"hs256", "Bearer " + sign(t, jwt.SigningMethodHS256, []byte("secret"), good), "/app/installations/42/access_tokens", "", "x", 401},
		{"expired", "Bearer " + sign(t, jwt.SigningMethodRS256, app.Key, with("exp", now.Add(-time.Second).Unix())), "/app/installations/42/access_tokens", "", "x", 401},
		{"exp too far", "Bearer " + sign(t, jwt.SigningMethodRS256, app.Key, with("exp", now.Add(11*time.Minute).Unix())), "/app/installations/42/access_tokens", "", "x", 401},
		{"no exp", "Bearer " + sign(t, jwt.SigningMethodRS256, app.Key, with("exp", nil)), "/app/installations/42/access_tokens", "", "x", 401},
		{"iat in the future", "Bearer " + sign(t, jwt.SigningMethodRS256, app.Key, with("iat", now.Add(time.Minute).Unix())), "/app/installations/42/access_tokens", "", "x", 401},
		{"no iat", "Bearer " + sign(t, jwt.SigningMethodRS256, app.Key, with("iat", nil)), "/app/installations/42/access_tokens", "", "x", 401},
		{"wrong iss", "Bearer " + sign(t, jwt.SigningMethodRS256, app.Key, with("iss", "999")), "/app/installations/42/access_tokens", "", "x", 401},
		{"token not jwt", "token ghs_x", "/app/installations/42/access_tokens", "", "x", 401},
		{"other installation", "Bearer " + sign(t, jwt.SigningMethodRS256, app.Key, good), "/app/installations/7/access_tokens", "", "x", 404},
		{"repository not installed", "Bearer " + sign(t, jwt.SigningMethodRS256, app.Key, good), "/app/installations/42/access_tokens", `{"repositories":["nope"]}`, "x", 422},
		{"bad permission", "Bearer " + sign(t, jwt.SigningMethodRS256, app.Key, good), "/app/installations/42/access_tokens", `{"permissions":{"contents":"all"}}`, "x", 422},
		{"no user agent", "Bearer " + sign(t, jwt.SigningMethodRS256, app.Key, good), "/app/installations/42/access_tokens", "", "", 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", srv.URL+tt.path, strings.NewReader(tt.body))
			req.Header.Set("Authorization", tt.auth)
			req.Header.Set("User-Agent", tt.ua)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var ans map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&ans)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d %v; want %d", resp.StatusCode, ans, tt.status)
			}
			if tt.status == 201 {
				tok, _ := ans["token"].(string)
				exp, err := time.Parse(time.RFC3339, ans["expires_at"].(string))
				if !strings.HasPrefix(tok, "ghs_") || len(tok) != 40 || err != nil || exp.Before(time.Now().Add(50*time.Minute)) {
					t.Errorf("answer %v; want a ghs_ token valid for an hour", ans)
				}
				if _, listed := ans["repositories"]; listed != strings.Contains(tt.body, "repositories") {
					t.Errorf("repositories listed: %v; want only when requested", ans["repositories"])
				}
			}
		})
	}
}

// TestTokensExpireAndScope: tokens expire after TTL and reach only the
// repositories they were minted for; git gets a Basic challenge.
func TestTokensExpireAndScope(t *testing.T) {
	app := NewApp(t)
	s := New(t, app, 42, Repo{ID: 1, Owner: "acme", Name: "app"}, Repo{ID: 2, Owner: "acme", Name: "other"})
	s.TTL = 300 * time.Millisecond
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	mint := func(body string) string {
		now := time.Now()
		req, _ := http.NewRequest("POST", srv.URL+"/app/installations/42/access_tokens", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+sign(t, jwt.SigningMethodRS256, app.Key,
			jwt.MapClaims{"iss": app.ID, "iat": now.Add(-time.Minute).Unix(), "exp": now.Add(5 * time.Minute).Unix()}))
		req.Header.Set("User-Agent", "x")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ans struct{ Token string }
		_ = json.NewDecoder(resp.Body).Decode(&ans)
		return ans.Token
	}
	get := func(path, auth string) (int, string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate") + string(b)
	}
	scoped := mint(`{"repositories":["app"]}`)
	all := mint(``)
	if st, _ := get("/repos/acme/app", "token "+scoped); st != 200 {
		t.Errorf("scoped token on its repository: %d", st)
	}
	if st, _ := get("/repos/acme/other", "token "+scoped); st != 404 {
		t.Errorf("scoped token on another repository: %d; want 404", st)
	}
	if st, body := get("/installation/repositories?per_page=1&page=2", "Bearer "+all); st != 200 || !strings.Contains(body, `"acme/other"`) || strings.Contains(body, `"acme/app"`) {
		t.Errorf("listing page 2: %d %s", st, body)
	}
	if st, hdr := get("/acme/app.git/info/refs?service=git-upload-pack", ""); st != 401 || !strings.HasPrefix(hdr, `Basic realm="GitHub"`) {
		t.Errorf("git without a token: %d %q; want a Basic challenge", st, hdr)
	}
	time.Sleep(400 * time.Millisecond)
	if st, _ := get("/repos/acme/app", "token "+scoped); st != 401 {
		t.Errorf("expired token: %d; want 401", st)
	}
	for _, c := range s.Calls() {
		if c.Path == "/repos/acme/app" && c.Status == 401 && c.Valid {
			t.Errorf("call recorded valid with an expired token: %+v", c)
		}
	}
}
