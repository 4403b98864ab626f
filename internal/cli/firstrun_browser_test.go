package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/emersion/go-message/mail"

	"github.com/airut/airut/internal/cli"
	"github.com/airut/airut/internal/testkit"
	"github.com/airut/airut/internal/testkit/mailtest"
)

// firstRunWait bounds each wait of the first-run test; the first task
// builds the repo and proxy images, minutes on a loaded 2-core host.
const firstRunWait = 10 * time.Minute

// recorder is a reverse proxy in front of the dashboard that keeps every
// response body the browser received, streams included.
type recorder struct {
	mu     sync.Mutex
	bodies bytes.Buffer
}

type teeBody struct {
	io.ReadCloser
	r *recorder
}

func (b teeBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.r.mu.Lock()
	b.r.bodies.Write(p[:n])
	b.r.mu.Unlock()
	return n, err
}

func (r *recorder) contains(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Contains(r.bodies.Bytes(), []byte(s))
}

func (r *recorder) proxy(target *url.URL) http.Handler {
	return &httputil.ReverseProxy{
		// The Host the browser sent is kept: the dashboard checks it (and
		// Origin) against the loopback address the browser sees.
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = target.Scheme, target.Host
			pr.Out.Host = pr.In.Host
		},
		FlushInterval: -1, // SSE
		ModifyResponse: func(resp *http.Response) error {
			var hdr bytes.Buffer
			_ = resp.Header.Write(&hdr)
			r.mu.Lock()
			r.bodies.Write(hdr.Bytes())
			r.mu.Unlock()
			resp.Body = teeBody{resp.Body, r}
			return nil
		},
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// firstRunBrowser starts one headless chromium for the test; under CI a
// missing chromium fails.
func firstRunBrowser(t *testing.T) context.Context {
	t.Helper()
	exe, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("chromium not found (make test-deps installs it): %v", err)
		}
		t.Skip("chromium not installed")
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	bctx, cancelB := chromedp.NewContext(actx)
	if err := chromedp.Do(bctx); err != nil {
		cancelB()
		cancelA()
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() { cancelB(); cancelA() })
	return bctx
}

type page struct {
	t   *testing.T
	ctx context.Context
}

func (p page) text() string {
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	return s
}

func (p page) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	p.t.Logf("%s: %s", time.Now().Format(time.TimeOnly), what)
	ctx, cancel := context.WithTimeout(p.ctx, firstRunWait)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v\npage:\n%s", what, err, p.text())
	}
}

// waitJS polls cond from Go, riding out navigations; reload, when set,
// re-opens the page every few seconds (for pages that are not live).
func (p page) waitJS(what, cond, reload string) {
	p.t.Helper()
	deadline := time.Now().Add(firstRunWait)
	last, logged := time.Now(), time.Now()
	p.t.Logf("%s: waiting for %s", time.Now().Format(time.TimeOnly), what)
	for {
		ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](cond))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out waiting for %s (%v)\npage:\n%s", what, err, p.text())
		}
		if time.Since(logged) > time.Minute {
			p.t.Logf("still waiting for %s (%v); the page says:\n%s", what, err, p.text())
			logged = time.Now()
		}
		if reload != "" && time.Since(last) > 5*time.Second {
			ctx, cancel := context.WithTimeout(p.ctx, time.Minute)
			_ = chromedp.Do(ctx, chromedp.Navigate(reload))
			cancel()
			last = time.Now()
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// screenshot saves the page (the whole of it when full, else the
// viewport: the editor's page is too long to read at README size).
func (p page) screenshot(name string, full bool) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, time.Minute)
	defer cancel()
	shot := chromedp.CaptureScreenshot()
	if full {
		shot = chromedp.FullScreenshot(100)
	}
	png, err := chromedp.Run(ctx, shot)
	if err != nil {
		p.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	dir := os.Getenv("AIRUT_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(testkit.ModuleRoot(), "artifacts")
	}
	dir = filepath.Join(dir, "firstrun")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		p.t.Error(err)
	}
	// The README's screenshots are refreshed on request only: a test run
	// must not dirty the checkout.
	if os.Getenv("AIRUT_UPDATE_DOCS") != "" {
		if err := os.WriteFile(filepath.Join(testkit.ModuleRoot(), "docs", name+".png"), png, 0o644); err != nil {
			p.t.Error(err)
		}
	}
}

// setField sets a form field by name, as typing into it would.
func setField(name, value string) chromedp.Action[chromedp.Void] {
	return chromedp.SetValue(chromedp.CSS(`[name="`+name+`"]`), value)
}

// TestFirstRunInBrowser is the newcomer's path, through the real `airut
// run` wiring and headless chromium: a gateway with no repository shows
// the setup checklist; the config editor adds a repository with an email
// channel (its password typed into a password field), Review shows the
// change with the password as !env only, Save writes it, hot reload
// brings the repo live without a restart, and an email to it is
// answered. The password is in .env (0600) and nowhere else: not in
// airut.yaml, any response the browser got, or the log.
func TestFirstRunInBrowser(t *testing.T) {
	bctx := firstRunBrowser(t)
	engine := testkit.RequireEngine(t)
	bins, err := testkit.BuildBinaries()
	if err != nil {
		t.Fatal(err)
	}
	base := testkit.BaseImage(t, engine)
	origin := testkit.GitRepo(t, map[string]string{
		".airut/container/Dockerfile":   testkit.DefaultDockerfile(base),
		".airut/network-allowlist.yaml": "domains:\n  - api.example.test\n",
		"README.md":                     "# app\n",
	})
	imapSrv := mailtest.NewIMAPServer(t, mailtest.IMAPOptions{})
	smtpSrv := mailtest.NewSMTPServer(t, mailtest.SMTPOptions{})
	password := imapSrv.Password

	isolate(t)
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	t.Setenv("AIRUT_PROXY_BINARY", filepath.Join(bins, "airut-proxy"))
	// .env goes into the process environment; the test process must not
	// keep it, nor have it set beforehand (a variable set before airut
	// started wins over .env).
	unsetenv(t, "AIRUT_APP_EMAIL_PASSWORD")

	// The first run: the only line is the dashboard's port, free for this
	// test (the default 5200 may be taken on a shared host); no repos.
	dir := t.TempDir()
	path := filepath.Join(dir, "airut.yaml")
	port := freePort(t)
	writeFile(t, path, "dashboard: {port: "+strconv.Itoa(port)+"}\n", 0o600)

	const prefix = "airut-cli-firstrun-test"
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, []string{"run", "--config", path, "--prefix", prefix, "--debug"}, &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("airut run exited %d", code)
			}
		case <-time.After(firstRunWait):
			t.Errorf("airut run did not stop")
		}
		if t.Failed() {
			t.Logf("airut run log:\n%s", stderr.String())
		}
		if left := testkit.Leftovers(engine, prefix); len(left) > 0 {
			t.Errorf("left behind: %s", strings.Join(left, ", "))
		}
		_ = exec.Command(engine, "network", "rm", "-f", prefix+"-egress").Run()
		// The repo and proxy images of this gateway are its own (named
		// after the prefix); the shared base image stays.
		out, _ := exec.Command(engine, "images", "--format", "{{.Repository}}:{{.Tag}}").Output()
		for _, img := range strings.Fields(string(out)) {
			if strings.HasPrefix(img, "localhost/"+prefix+"-") {
				_ = exec.Command(engine, "rmi", "-f", img).Run()
			}
		}
	})

	dash, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(port))
	health := func() (h struct {
		Status string
		Repos  map[string]int
	}) {
		resp, err := http.Get(dash.String() + "/api/health")
		if err != nil {
			return h
		}
		defer resp.Body.Close()
		_ = json.NewDecoder(resp.Body).Decode(&h)
		return h
	}
	deadline := time.Now().Add(firstRunWait)
	for health().Status == "" {
		// The port was free a moment ago; if another process took it
		// since, say so at once.
		if strings.Contains(stderr.String(), `msg="dashboard stopped"`) {
			t.Fatalf("the dashboard could not start on %s:\n%s", dash, stderr.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dashboard never answered on %s\n%s", dash, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if h := health(); h.Status != "setup" {
		t.Errorf("health on the first run: %+v; want setup", h)
	}

	rec := &recorder{}
	front := httptest.NewServer(rec.proxy(dash))
	t.Cleanup(front.Close)
	tab, closeTab := chromedp.NewContext(bctx)
	t.Cleanup(closeTab)
	// The tab is opened on its own context: a target first used under a
	// per-step timeout would close when that step's context ends.
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	p := page{t: t, ctx: tab}

	// Empty state: the checklist says a repository is missing.
	p.do("open the overview", chromedp.Navigate(front.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#checklist")))
	p.waitJS("the checklist to ask for a repository", `(() => {
		const c = document.querySelector('#checklist');
		const todo = [...c.querySelectorAll('li.todo')].map(li => li.textContent);
		return todo.some(t => t.includes('First repository')) &&
			document.querySelector('#repos').textContent.includes('No repository is configured yet');
	})()`, "")
	p.screenshot("firstrun-checklist", true)

	// Add a repository with its email channel.
	p.do("fill in Add a repository", chromedp.Navigate(front.URL+"/config"), chromedp.WaitVisible(chromedp.CSS("form.add-repo")),
		setField("id", "app"), setField("repo_url", origin), chromedp.SetValue(chromedp.CSS(`form.add-repo select[name="channel"]`), "email"),
		setField("username", imapSrv.Username), setField("from", "Airut <airut@example.com>"),
		chromedp.SendKeys(chromedp.CSS(`form.add-repo input[name="password"]`), password),
		setField("imap_server", "127.0.0.1"), setField("imap_port", strconv.Itoa(imapSrv.Port)),
		setField("smtp_server", "127.0.0.1"), setField("smtp_port", strconv.Itoa(smtpSrv.Port)),
		setField("authorized_senders", "alice@example.com"), setField("trusted_authserv_id", "mx.example.com"))
	if typed := eval(t, tab, `document.querySelector('form.add-repo input[name="password"]').type`); typed != "password" {
		t.Errorf("the password field is %q, want a masked password input", typed)
	}
	p.do("click Add", chromedp.Click(chromedp.CSS(`form.add-repo button[value="addrepo"]`)))
	p.waitJS("the review of the new repository", `document.querySelector('section.diff pre') !== null &&
		document.querySelector('section.diff pre').textContent.includes('repo_url')`, "")

	// The test servers speak plain text on loopback, and the agent is
	// fakeclaude: set those in the form's settings, then Apply.
	p.do("set the loopback mail settings and the agent", chromedp.WaitVisible(chromedp.CSS(`section.form button[value="apply"]`)),
		setField("f:repos/app/email/imap/tls", "false"), setField("f:repos/app/email/imap/use_idle", "true"),
		setField("f:repos/app/email/smtp/starttls", "false"), setField("f:repos/app/email/smtp/require_auth", "false"),
		setField("f:execution/claude_binary", filepath.Join(bins, "fakeclaude")),
		chromedp.Click(chromedp.CSS(`section.form button[value="apply"]`)))
	p.waitJS("the review with the settings", `document.querySelector('section.diff pre') !== null &&
		document.querySelector('section.diff pre').textContent.includes('claude_binary')`, "")
	diff := eval(t, tab, `document.querySelector('section.diff pre').textContent`)
	for _, want := range []string{"repo_url", "password: !env AIRUT_APP_EMAIL_PASSWORD", "tls: false", "fakeclaude"} {
		if !strings.Contains(diff, want) {
			t.Errorf("the review lacks %q:\n%s", want, diff)
		}
	}
	// The file's first line is untouched: the review must not show it
	// as removed (a browser posts form values with CRLF line breaks).
	if strings.Contains(diff, "-1: dashboard") {
		t.Errorf("the review shows the untouched first line as replaced:\n%s", diff)
	}
	if strings.Contains(diff, password) {
		t.Fatalf("the review shows the password:\n%s", diff)
	}
	if errs := eval(t, tab, `(document.querySelector('section.errors') || {textContent: ''}).textContent`); errs != "" {
		t.Fatalf("the review has problems:\n%s", errs)
	}
	p.screenshot("config-editor", false)

	// Save; hot reload brings the repo live, no restart.
	p.do("click Save", chromedp.Click(chromedp.CSS(`section.diff button[value="save"]`)))
	p.waitJS("Saved", `document.body.innerText.includes('Saved. Hot reload applies it now.')`, "")
	p.do("open the overview", chromedp.Navigate(front.URL+"/"))
	p.waitJS("the repo live on the overview", `(() => {
		const card = [...document.querySelectorAll('#repos .card')].find(c => c.querySelector('b') && c.querySelector('b').textContent === 'app');
		return card !== undefined && card.querySelector('.state-live') !== null;
	})()`, front.URL+"/")
	if h := health(); h.Status != "ok" || h.Repos["live"] != 1 {
		t.Errorf("health after the save: %+v; want ok with one live repo", h)
	}
	if n := strings.Count(stderr.String(), "airut gateway starting"); n != 1 {
		t.Errorf("the gateway started %d times; want once (no restart)", n)
	}

	// An email to the new repository is answered.
	imapSrv.Append(t, []byte(strings.Join([]string{
		"Authentication-Results: mx.example.com; spf=pass; dkim=pass; dmarc=pass header.from=example.com",
		"From: Alice <alice@example.com>", "To: airut@example.com", "Subject: first task",
		"Message-ID: <" + testkit.RandomHex(8) + "@example.com>", "Date: " + time.Now().UTC().Format(time.RFC1123Z),
		"MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "",
		"@@reply hello from the first run", "",
	}, "\r\n")))
	mctx, mcancel := context.WithTimeout(context.Background(), firstRunWait)
	defer mcancel()
	// Mail #1 is the acknowledgement, #2 the reply.
	msg, err := smtpSrv.WaitMessage(mctx, 2)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	if text := replyText(t, msg.Data); !strings.Contains(text, "hello from the first run") {
		t.Errorf("reply: %q", text)
	}

	// The password lives in .env (0600) only.
	st, err := os.Stat(filepath.Join(dir, ".env"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf(".env mode %v, want 0600", st.Mode().Perm())
	}
	dotenv, _ := os.ReadFile(filepath.Join(dir, ".env"))
	if !strings.Contains(string(dotenv), "AIRUT_APP_EMAIL_PASSWORD=") || !strings.Contains(string(dotenv), password) {
		t.Errorf(".env lacks the password:\n%s", dotenv)
	}
	yamlText, _ := os.ReadFile(path)
	if strings.Contains(string(yamlText), password) {
		t.Errorf("airut.yaml holds the password:\n%s", yamlText)
	}
	if strings.Contains(string(yamlText), "\r") {
		t.Errorf("airut.yaml was saved with CR line breaks: %q", yamlText)
	}
	if !strings.Contains(string(yamlText), "!env AIRUT_APP_EMAIL_PASSWORD") {
		t.Errorf("airut.yaml does not refer to the password:\n%s", yamlText)
	}
	// Every page again, after the task: none may show it.
	for _, path := range []string{"/", "/config", "/repos/app"} {
		p.do("open "+path, chromedp.Navigate(front.URL+path))
	}
	for _, path := range []string{"/api/config", "/api/health", "/api/repos"} {
		resp, err := http.Get(front.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// The recorder saw the pages: the variable's name is on them.
	if !rec.contains("AIRUT_APP_EMAIL_PASSWORD") {
		t.Error("the recorded responses lack the secret's name: the recorder saw nothing")
	}
	if rec.contains(password) {
		t.Error("a response to the browser holds the password")
	}
	if strings.Contains(stderr.String(), password) || strings.Contains(stdout.String(), password) {
		t.Error("the log holds the password")
	}
}

func eval(t *testing.T, ctx context.Context, expr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// replyText is the text of a sent message, every inline part decoded.
func replyText(t *testing.T, data []byte) string {
	t.Helper()
	r, err := mail.CreateReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("parse reply: %v\n%s", err, data)
	}
	var out strings.Builder
	for {
		part, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("parse reply part: %v", err)
		}
		if h, ok := part.Header.(*mail.InlineHeader); ok {
			if ct, _, _ := mime.ParseMediaType(h.Get("Content-Type")); ct == "text/plain" {
				b, _ := io.ReadAll(part.Body)
				out.Write(b)
			}
		}
	}
	return out.String()
}
