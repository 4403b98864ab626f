package configui_test

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/dashboard/configui"
	"github.com/airut/airut/internal/testkit"
	"github.com/airut/airut/internal/testkit/mailtest"
	"github.com/airut/airut/internal/testkit/slacktest"
)

const testPassword = "s3cret-mailbox-pw"

type fixture struct {
	t     *testing.T
	dir   string
	store *config.Store
	srv   *httptest.Server
	imap  *mailtest.IMAPServer
	smtp  *mailtest.SMTPServer
	slack *slacktest.Server
}

func newFixture(t *testing.T, csrf func(http.ResponseWriter, *http.Request) string) *fixture {
	t.Helper()
	f := &fixture{t: t, dir: t.TempDir()}
	f.imap = mailtest.NewIMAPServer(t, mailtest.IMAPOptions{})
	f.smtp = mailtest.NewSMTPServer(t, mailtest.SMTPOptions{Username: f.imap.Username, Password: f.imap.Password})
	f.slack = slacktest.New(t)
	f.store = &config.Store{Path: filepath.Join(f.dir, config.FileName), Env: config.MapEnv(map[string]string{})}
	mux := http.NewServeMux()
	configui.New(configui.Options{Store: f.store, CSRFToken: csrf}).Register(mux)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// repoYAML is a repo whose mailbox is the fixture's servers.
func (f *fixture) repoYAML(id, origin string) string {
	return fmt.Sprintf(`  %s:
    repo_url: %s
    email:
      account:
        username: %s
        from: "Airut <airut@example.com>"
        password: !env MAIL_PW
      imap:
        server: 127.0.0.1
        port: %d
        tls: false
      smtp:
        server: 127.0.0.1
        port: %d
        starttls: false
      auth:
        authorized_senders: [alice@example.com]
        trusted_authserv_id: mx.example.com
`, id, origin, f.imap.Username, f.imap.Port, f.smtp.Port)
}

func (f *fixture) do(method, path, body string, hdr ...string) (*http.Response, string) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("X-Requested-With", "test")
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	for _, secret := range []string{testPassword, f.imap.Password, "xoxb-test-bot-token", "xapp-test-app-token"} {
		if strings.Contains(string(data), secret) {
			f.t.Errorf("%s %s: a secret is in the response:\n%s", method, path, data)
		}
	}
	return resp, string(data)
}

func (f *fixture) load() (string, string) {
	f.t.Helper()
	resp, body := f.do("GET", "/api/config", "")
	if resp.StatusCode != 200 {
		f.t.Fatalf("GET /api/config: %d %s", resp.StatusCode, body)
	}
	return body, strings.Trim(resp.Header.Get("ETag"), `"`)
}

// TestFirstRunThroughAPI: from no file at all to a saved repo with its
// secret in .env, through the API alone.
func TestFirstRunThroughAPI(t *testing.T) {
	f := newFixture(t, nil)
	text, hash := f.load()
	if text != "" || hash != config.Hash(nil) {
		t.Fatalf("first run: %q %s", text, hash)
	}
	// The secret first: into .env, never echoed.
	resp, body := f.do("PUT", "/api/config/secrets/MAIL_PW", testPassword)
	if resp.StatusCode != 200 || !strings.Contains(body, `"set":true`) {
		t.Fatalf("PUT secret: %d %s", resp.StatusCode, body)
	}
	env, _ := os.ReadFile(filepath.Join(f.dir, ".env"))
	if !strings.Contains(string(env), testPassword) {
		t.Errorf(".env: %q", env)
	}
	if fi, _ := os.Stat(filepath.Join(f.dir, ".env")); fi.Mode().Perm() != 0o600 {
		t.Errorf(".env mode %v", fi.Mode().Perm())
	}

	yaml := "config_version: 5\nrepos:\n" + f.repoYAML("app", "https://example.com/app.git")
	resp, body = f.do("POST", "/api/config/validate", yaml)
	var rv struct {
		Errors []map[string]any
		Diff   string
	}
	if err := json.Unmarshal([]byte(body), &rv); err != nil || resp.StatusCode != 200 {
		t.Fatalf("validate: %d %s", resp.StatusCode, body)
	}
	if len(rv.Errors) != 0 || !strings.Contains(rv.Diff, "+9:         password: !env MAIL_PW") {
		t.Errorf("review: %+v", rv)
	}

	resp, body = f.do("PUT", "/api/config", yaml, "If-Match", `"`+hash+`"`)
	if resp.StatusCode != 200 {
		t.Fatalf("PUT /api/config: %d %s", resp.StatusCode, body)
	}
	saved, _ := os.ReadFile(f.store.Path)
	if string(saved) != yaml || strings.Contains(string(saved), testPassword) {
		t.Errorf("airut.yaml: %s", saved)
	}
	cfg, err := config.Load(f.store.Path, nil, nil)
	if err != nil || cfg.Repos["app"] == nil || cfg.Repos["app"].Email.Account.Password.Reveal() != testPassword {
		t.Errorf("the saved config does not load with its secret: %v %v", err, cfg)
	}
}

func TestPutConfigErrors(t *testing.T) {
	f := newFixture(t, nil)
	base := "config_version: 5\nrepos:\n" + f.repoYAML("app", "https://example.com/app.git")
	if err := os.WriteFile(f.store.Path, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, ".env"), []byte("MAIL_PW=x1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, hash := f.load()

	// 422: line and key, nothing written.
	bad := base + "execution:\n  max_concurrent: 0\n"
	resp, body := f.do("PUT", "/api/config", bad, "If-Match", hash)
	var got struct {
		Errors []struct {
			Line    int
			Key     string
			Message string
		}
	}
	_ = json.Unmarshal([]byte(body), &got)
	if resp.StatusCode != 422 || len(got.Errors) != 1 || got.Errors[0].Line != 22 || got.Errors[0].Key != "execution.max_concurrent" {
		t.Errorf("invalid PUT: %d %s", resp.StatusCode, body)
	}
	// A literal secret is refused at its field.
	literal := strings.Replace(base, "!env MAIL_PW", testPassword, 1)
	resp, body = f.do("PUT", "/api/config", literal, "If-Match", hash)
	if resp.StatusCode != 422 || !strings.Contains(body, `"key":"repos.app.email.account.password"`) {
		t.Errorf("literal secret PUT: %d %s", resp.StatusCode, body)
	}
	// 409 once the file changed on disk.
	if err := os.WriteFile(f.store.Path, []byte(base+"# edited by hand\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	resp, body = f.do("PUT", "/api/config", base, "If-Match", hash)
	if resp.StatusCode != 409 {
		t.Errorf("stale PUT: %d %s", resp.StatusCode, body)
	}
	// 428 without If-Match; 403 without X-Requested-With.
	if resp, _ := f.do("PUT", "/api/config", base); resp.StatusCode != 428 {
		t.Errorf("PUT without If-Match: %d", resp.StatusCode)
	}
	if resp, _ := f.do("PUT", "/api/config", base, "If-Match", hash, "X-Requested-With", ""); resp.StatusCode != 403 {
		t.Errorf("PUT without X-Requested-With: %d", resp.StatusCode)
	}
	if resp, _ := f.do("PUT", "/api/config/secrets/MAIL_PW", "x", "X-Requested-With", ""); resp.StatusCode != 403 {
		t.Errorf("secret PUT without X-Requested-With: %d", resp.StatusCode)
	}
	if resp, _ := f.do("PUT", "/api/config/secrets/bad-name", "x"); resp.StatusCode != 400 {
		t.Errorf("secret with a bad name: %d", resp.StatusCode)
	}
}

// TestGetMasksLiteralSecrets: a hand-written file with a literal secret
// is shown masked, and the masked text cannot be saved back.
func TestGetMasksLiteralSecrets(t *testing.T) {
	f := newFixture(t, nil)
	literal := "config_version: 5\nrepos:\n" + strings.Replace(f.repoYAML("app", "https://example.com/app.git"), "!env MAIL_PW", testPassword, 1)
	if err := os.WriteFile(f.store.Path, []byte(literal), 0o600); err != nil {
		t.Fatal(err)
	}
	text, hash := f.load() // f.do fails the test if the secret is in it
	if !strings.Contains(text, "[REDACTED]") {
		t.Errorf("GET: %s", text)
	}
	if resp, _ := f.do("PUT", "/api/config", text, "If-Match", hash); resp.StatusCode != 422 {
		t.Errorf("PUT of the masked text: %d", resp.StatusCode)
	}
	resp, body := f.do("GET", "/config", "")
	if resp.StatusCode != 200 || !strings.Contains(body, "a secret written in airut.yaml") {
		t.Errorf("/config: %d %s", resp.StatusCode, body)
	}
}

// TestConcurrentSavesTwoClients: two editors load the same file; one save
// wins, the other is told the file changed (409).
func TestConcurrentSavesTwoClients(t *testing.T) {
	f := newFixture(t, nil)
	base := "config_version: 5\n"
	if err := os.WriteFile(f.store.Path, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	_, hash := f.load()
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := f.do("PUT", "/api/config", fmt.Sprintf("config_version: 5\nexecution:\n  max_concurrent: %d\n", i+1), "If-Match", hash)
			codes[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	if !(codes[0] == 200 && codes[1] == 409 || codes[0] == 409 && codes[1] == 200) {
		t.Errorf("codes %v; want one 200 and one 409", codes)
	}
}

// TestTestButtons: git ls-remote, IMAP + SMTP login and Slack auth.test
// against real local servers, each failure in words.
func TestTestButtons(t *testing.T) {
	f := newFixture(t, nil)
	origin := testkit.GitRepo(t, map[string]string{"README.md": "x\n"})
	if err := os.WriteFile(filepath.Join(f.dir, ".env"), []byte("MAIL_PW="+f.imap.Password+"\nWRONG_PW=nope\nBOT=xoxb-test-bot-token\nAPP=xapp-test-app-token\nBAD_BOT=xoxb-revoked\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	slack := fmt.Sprintf(`  chat:
    repo_url: %s
    slack:
      bot_token: !env %%s
      app_token: !env APP
      api_url: %s
      authorized:
        - workspace_members: true
`, origin, f.slack.APIURL)
	yaml := "config_version: 5\nrepos:\n" + f.repoYAML("app", origin) +
		strings.Replace(f.repoYAML("wrongpw", "/nonexistent/repo.git"), "!env MAIL_PW", "!env WRONG_PW", 1) +
		strings.Replace(strings.Replace(slack, "chat:", "chat:", 1), "%s", "BOT", 1) +
		strings.Replace(strings.Replace(slack, "chat:", "badchat:", 1), "%s", "BAD_BOT", 1)
	// Two repos cannot share an inbox; the wrong-password one gets its own user name.
	yaml = strings.Replace(yaml, "wrongpw:\n    repo_url: /nonexistent/repo.git\n    email:\n      account:\n        username: "+f.imap.Username,
		"wrongpw:\n    repo_url: /nonexistent/repo.git\n    email:\n      account:\n        username: other@example.com", 1)
	tests := []struct {
		kind, repo string
		ok         bool
		want       string
	}{
		{"git", "app", true, "git: ok"},
		{"git", "wrongpw", false, "git ls-remote /nonexistent/repo.git"},
		{"email", "app", true, "email: ok"},
		{"email", "wrongpw", false, "login as other@example.com"},
		{"slack", "chat", true, "slack: ok"},
		{"slack", "badchat", false, "slack auth.test: invalid_auth"},
	}
	for _, tt := range tests {
		t.Run(tt.kind+"-"+tt.repo, func(t *testing.T) {
			resp, body := f.do("POST", "/api/config/test/"+tt.kind+"?repo="+tt.repo, yaml)
			var got struct {
				OK      bool
				Message string
			}
			_ = json.Unmarshal([]byte(body), &got)
			if resp.StatusCode != 200 || got.OK != tt.ok || !strings.Contains(got.Message, tt.want) {
				t.Errorf("%d %s; want ok=%v and %q", resp.StatusCode, body, tt.ok, tt.want)
			}
		})
	}
	if resp, _ := f.do("POST", "/api/config/test/slack?repo=app", yaml); resp.StatusCode != 400 {
		t.Errorf("slack test of a repo without slack: %d", resp.StatusCode)
	}
}

// TestConfigPageForms: the page works without JavaScript: review shows
// the diff with secrets masked, set writes a key as !env, save writes the
// file, all behind the CSRF token.
func TestConfigPageForms(t *testing.T) {
	const token = "tok-123"
	f := newFixture(t, func(http.ResponseWriter, *http.Request) string { return token })
	base := "# my config\nconfig_version: 5\n"
	if err := os.WriteFile(f.store.Path, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	_, body := f.do("GET", "/config", "")
	if !strings.Contains(body, `name="csrf" value="tok-123"`) {
		t.Fatalf("page lacks the token:\n%s", body)
	}
	post := func(v url.Values) (int, string) {
		v.Set("hash", config.Hash([]byte(base)))
		resp, b := f.do("POST", "/config", v.Encode(), "Content-Type", "application/x-www-form-urlencoded", "X-Requested-With", "")
		return resp.StatusCode, b
	}
	if code, _ := post(url.Values{"action": {"save"}, "yaml": {base}}); code != 403 {
		t.Errorf("form without the token: %d", code)
	}
	code, b := post(url.Values{"csrf": {token}, "action": {"secret"}, "name": {"MAIL_PW"}, "value": {testPassword}})
	if code != 200 || !strings.Contains(b, "MAIL_PW set in .env") {
		t.Errorf("secret form: %d %s", code, b)
	}
	withRepo := base + "repos:\n" + f.repoYAML("app", "https://example.com/app.git")
	code, b = post(url.Values{"csrf": {token}, "action": {"set"}, "yaml": {withRepo}, "path": {"repos.app.model"}, "kind": {"literal"}, "value": {"sonnet"}})
	if code != 200 || !strings.Contains(b, "model: sonnet") || !strings.Contains(b, "<td><code>MAIL_PW</code></td><td>set</td>") {
		t.Errorf("set form: %d %s", code, b)
	}
	code, b = post(url.Values{"csrf": {token}, "action": {"review"}, "yaml": {withRepo + "execution:\n  max_concurrent: 0\n"}})
	if code != 200 || !strings.Contains(b, `data-key="execution.max_concurrent"`) || !strings.Contains(b, "&#43;3: repos:") {
		t.Errorf("review form: %d %s", code, b)
	}
	code, b = post(url.Values{"csrf": {token}, "action": {"save"}, "yaml": {withRepo}})
	if code != 200 || !strings.Contains(b, "Saved.") {
		t.Errorf("save form: %d %s", code, b)
	}
	if saved, _ := os.ReadFile(f.store.Path); string(saved) != withRepo {
		t.Errorf("saved: %s", saved)
	}
	// The page's hash is now stale: 409 with the reload prompt.
	code, b = post(url.Values{"csrf": {token}, "action": {"save"}, "yaml": {base}})
	if code != 409 || !strings.Contains(b, "changed on disk") {
		t.Errorf("stale save form: %d", code)
	}
}

// TestFormFirstRun: the first run with the page's forms only, no
// JavaScript: add a repository with an email channel and a password typed
// in the browser, review (the password nowhere in the page), save; then
// edit fields, one of them wrong, and see the error at its field.
func TestFormFirstRun(t *testing.T) {
	f := newFixture(t, nil)
	post := func(v url.Values) (int, string) {
		t.Helper()
		resp, b := f.do("POST", "/config", v.Encode(), "Content-Type", "application/x-www-form-urlencoded",
			"X-Requested-With", "", "Origin", f.srv.URL)
		return resp.StatusCode, b
	}
	code, page := post(url.Values{"action": {"addrepo"}, "yaml": {""}, "hash": {config.Hash(nil)},
		"id": {"app"}, "repo_url": {"https://example.com/app.git"}, "channel": {"email"},
		"username": {f.imap.Username}, "from": {"Airut <airut@example.com>"}, "password": {testPassword},
		"imap_server": {"127.0.0.1"}, "imap_port": {fmt.Sprint(f.imap.Port)}, "smtp_server": {"127.0.0.1"},
		"smtp_port": {fmt.Sprint(f.smtp.Port)}, "authorized_senders": {"alice@example.com, *@example.org"},
		"trusted_authserv_id": {"mx.example.com"}})
	if code != 200 || !strings.Contains(page, "password: !env AIRUT_APP_EMAIL_PASSWORD") || !strings.Contains(page, "Not saved yet") {
		t.Fatalf("add repo: %d\n%s", code, page)
	}
	// The form shows the repo's fields, the secret as set.
	if !strings.Contains(page, `data-key="repos.app.email.account.password"`) || !strings.Contains(page, `<span class="secret-state">set</span>`) {
		t.Errorf("form after adding the repo:\n%s", page)
	}
	text := extract(t, page, `name="yaml" value="`, `"`)
	code, page = post(url.Values{"action": {"save"}, "yaml": {text}, "hash": {config.Hash(nil)}})
	if code != 200 || !strings.Contains(page, "Saved.") {
		t.Fatalf("save: %d\n%s", code, page)
	}
	saved, _ := os.ReadFile(f.store.Path)
	cfg, err := config.Load(f.store.Path, nil, nil)
	if err != nil || cfg.Err() != nil || cfg.Repos["app"].Email.Account.Password.Reveal() != testPassword {
		t.Fatalf("saved config: %v %v\n%s", err, cfg.Err(), saved)
	}
	if strings.Contains(string(saved), testPassword) {
		t.Error("the password is in airut.yaml")
	}
	if got := cfg.Repos["app"].Email.Auth.AuthorizedSenders; len(got) != 2 || got[1] != "*@example.org" {
		t.Errorf("authorized senders: %v", got)
	}

	// Edit fields: a literal, and a wrong value whose error shows at its
	// field.
	if _, page = f.do("GET", "/config", ""); !strings.Contains(page, `data-key="repos.app.model"`) {
		t.Errorf("the saved repo's fields are not in the form:\n%s", page)
	}
	hash := config.Hash(saved)
	form := url.Values{"action": {"apply"}, "yaml": {string(saved)}, "hash": {hash},
		"f:repos/app/model": {"sonnet"}, "k:repos/app/model": {"literal"}, "o:repos/app/model": {""}, "ok:repos/app/model": {"literal"},
		"f:execution/max_concurrent": {"0"}, "k:execution/max_concurrent": {"literal"}, "o:execution/max_concurrent": {""}, "ok:execution/max_concurrent": {"literal"}}
	code, page = post(form)
	if code != 200 || !strings.Contains(page, "model: sonnet") {
		t.Fatalf("apply: %d\n%s", code, page)
	}
	fieldDiv := extract(t, page, `<div class="field invalid" data-key="execution.max_concurrent">`, "</div>")
	if !strings.Contains(fieldDiv, `class="field-error"`) || !strings.Contains(fieldDiv, "must be at least 1") {
		t.Errorf("the error is not at its field:\n%s", fieldDiv)
	}
	if !strings.Contains(page, `value="save" disabled`) {
		t.Error("Save is offered while there are errors")
	}
	// A repo id that exists is refused.
	if code, _ := post(url.Values{"action": {"addrepo"}, "yaml": {string(saved)}, "hash": {hash}, "id": {"app"}, "repo_url": {"x"}, "channel": {""}}); code != 422 {
		t.Errorf("adding an existing repo: %d", code)
	}
}

func extract(t *testing.T, s, start, end string) string {
	t.Helper()
	i := strings.Index(s, start)
	if i < 0 {
		t.Fatalf("no %q in:\n%s", start, s)
	}
	rest := s[i+len(start):]
	j := strings.Index(rest, end)
	if j < 0 {
		t.Fatalf("no %q after %q", end, start)
	}
	return html.UnescapeString(rest[:j])
}
