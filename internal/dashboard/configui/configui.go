// Package configui is the dashboard's config editor (SPEC S9): the
// /api/config endpoints and the /config page. It edits airut.yaml through
// config.Store and config.Edit — validated as `airut config validate`
// does, saved atomically only when the file did not change meanwhile, with
// secrets written to .env and never sent back — and leaves applying the
// saved file to hot reload.
//
// The dashboard wraps the mux with its Host, CSRF and header middleware;
// the handlers here still refuse a state change without X-Requested-With
// (API) or the form's CSRF token, so they are safe on their own.
package configui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/redact"
)

// maxBody bounds a config or secret sent to the editor.
const maxBody = 1 << 20

// Options configures the editor.
type Options struct {
	// Store is airut.yaml and its .env. Required.
	Store *config.Store
	// Layout renders a page inside the dashboard's frame. Default: a bare
	// HTML page.
	Layout func(w http.ResponseWriter, r *http.Request, title string, body template.HTML)
	// CSRFToken is the dashboard's token for r (dashboard.CSRFToken: it
	// sets the cookie when the browser has none), put in every form and
	// checked on every form post. Default: forms need a same-origin
	// Origin header instead.
	CSRFToken func(http.ResponseWriter, *http.Request) string
	// Logger reports saves. Default: discard.
	Logger *slog.Logger
	// TestTimeout bounds one Test button. Default 20s.
	TestTimeout time.Duration
}

// UI is the config editor.
type UI struct{ o Options }

// New returns the editor.
func New(o Options) *UI {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Layout == nil {
		o.Layout = barePage
	}
	if o.TestTimeout <= 0 {
		o.TestTimeout = 20 * time.Second
	}
	return &UI{o: o}
}

// Register adds the editor's routes to mux.
func (u *UI) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/config", u.getConfig)
	mux.HandleFunc("POST /api/config/validate", u.api(u.validate))
	mux.HandleFunc("PUT /api/config", u.api(u.putConfig))
	mux.HandleFunc("PUT /api/config/secrets/{name}", u.api(u.putSecret))
	mux.HandleFunc("POST /api/config/test/{kind}", u.api(u.test))
	mux.HandleFunc("GET /config", u.page)
	mux.HandleFunc("POST /config", u.form)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// api guards a state-changing API call: X-Requested-With is a header a
// cross-site form cannot send.
func (u *UI) api(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Requested-With") == "" {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "X-Requested-With header required"})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		h(w, r)
	}
}

// current is the file as the editor shows it: literal secret values (a
// hand-written file may have some) masked.
func (u *UI) current() (text, hash string, err error) {
	data, hash, err := u.o.Store.Read()
	if err != nil {
		return "", "", err
	}
	_, reg := u.o.Store.Validate(data)
	return reg.Redact(string(data)), hash, nil
}

func (u *UI) getConfig(w http.ResponseWriter, r *http.Request) {
	text, hash, err := u.current()
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	w.Header().Set("ETag", `"`+hash+`"`)
	w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, text)
}

// review is the answer of validate: every problem and the diff against
// the file on disk, secrets masked.
type review struct {
	Errors config.Errors `json:"errors"`
	Diff   string        `json:"diff"`
	Hash   string        `json:"hash"`
}

func (u *UI) review(data []byte) (review, error) {
	probs, reg := u.o.Store.Validate(data)
	if probs == nil {
		probs = config.Errors{}
	}
	old, hash, err := u.o.Store.Read()
	if err != nil {
		return review{}, err
	}
	_, oldReg := u.o.Store.Validate(old)
	d := oldReg.Redact(config.Diff(old, data, reg))
	return review{Errors: probs, Diff: d, Hash: hash}, nil
}

func (u *UI) validate(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": err.Error()})
		return
	}
	rv, err := u.review(data)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, rv)
}

func (u *UI) putConfig(w http.ResponseWriter, r *http.Request) {
	match := strings.Trim(r.Header.Get("If-Match"), `"`)
	if match == "" {
		writeJSON(w, http.StatusPreconditionRequired, map[string]string{"error": "If-Match: <hash of the file as loaded> required"})
		return
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": err.Error()})
		return
	}
	code, body := u.save(data, match)
	writeJSON(w, code, body)
}

// save writes data when the file still has hash match; the status and
// the JSON answer.
func (u *UI) save(data []byte, match string) (int, map[string]any) {
	if strings.Contains(string(data), redact.Mask) {
		return http.StatusUnprocessableEntity, map[string]any{"errors": config.Errors{{File: config.FileName,
			Message: "the text holds a masked secret (" + redact.Mask + "): replace it with !env NAME and set the secret"}}}
	}
	hash, err := u.o.Store.Save(data, match)
	var inv *config.InvalidError
	switch {
	case errors.Is(err, config.ErrStale):
		return http.StatusConflict, map[string]any{"error": err.Error()}
	case errors.As(err, &inv):
		return http.StatusUnprocessableEntity, map[string]any{"errors": inv.Problems}
	case err != nil:
		return http.StatusInternalServerError, map[string]any{"error": err.Error()}
	}
	u.o.Logger.Info("config saved from the dashboard", "hash", hash)
	return http.StatusOK, map[string]any{"hash": hash}
}

var secretNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (u *UI) putSecret(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !secretNameRE.MatchString(name) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "not a variable name"})
		return
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": err.Error()})
		return
	}
	value := strings.TrimRight(string(data), "\r\n")
	if value == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "empty value"})
		return
	}
	if err := u.o.Store.SetSecret(name, value); err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	u.o.Logger.Info("secret set from the dashboard", "name", name)
	writeJSON(w, http.StatusOK, map[string]any{"name": name, "set": true, "reference": "!env " + name})
}

// test runs one Test button against the repo ?repo= of the YAML in the
// body (the editor's unsaved text), or of the file when the body is empty.
func (u *UI) test(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": err.Error()})
		return
	}
	ok, msg := u.runTest(r.Context(), r.PathValue("kind"), r.URL.Query().Get("repo"), data)
	code := http.StatusOK
	if ok == nil {
		code = http.StatusBadRequest
	}
	writeJSON(w, code, map[string]any{"ok": ok != nil && *ok, "message": msg})
}

// runTest returns nil when the test could not be run at all (bad
// request), else whether it passed, and the message in words.
func (u *UI) runTest(ctx context.Context, kind, repo string, data []byte) (*bool, string) {
	if len(data) == 0 {
		var err error
		if data, _, err = u.o.Store.Read(); err != nil {
			return nil, err.Error()
		}
	}
	cfg, reg, err := u.o.Store.Parse(data)
	if err != nil {
		return nil, "the config does not load: " + err.Error()
	}
	rc := cfg.Repos[repo]
	if rc == nil {
		if e := cfg.RepoErrors[repo]; e != nil {
			return nil, "repo " + repo + " is invalid: " + reg.Redact(e.Error())
		}
		return nil, "no repo " + strconvQuote(repo)
	}
	ctx, cancel := context.WithTimeout(ctx, u.o.TestTimeout)
	defer cancel()
	var terr error
	switch kind {
	case "git":
		terr = testGit(ctx, rc.RepoURL)
	case "email":
		if rc.Email == nil {
			return nil, "repo " + repo + " has no email channel"
		}
		if terr = testIMAP(ctx, rc.Email); terr == nil {
			terr = testSMTP(ctx, rc.Email)
		}
	case "slack":
		if rc.Slack == nil {
			return nil, "repo " + repo + " has no slack channel"
		}
		terr = testSlack(ctx, rc.Slack)
	default:
		return nil, "unknown test " + strconvQuote(kind) + " (git, email or slack)"
	}
	passed := terr == nil
	if passed {
		return &passed, kind + ": ok"
	}
	return &passed, reg.Redact(terr.Error())
}

func strconvQuote(s string) string { return fmt.Sprintf("%q", s) }

// secretRefs lists the !env names in data with whether each is set, for
// "set" / "not set".
func (u *UI) secretRefs(data []byte) []secretRef {
	seen := map[string]bool{}
	for _, m := range envRefRE.FindAllStringSubmatch(string(data), -1) {
		seen[m[1]] = true
	}
	out := make([]secretRef, 0, len(seen))
	for name := range seen {
		out = append(out, secretRef{Name: name, Set: u.o.Store.SecretSet(name)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

var envRefRE = regexp.MustCompile(`!env\s+([A-Za-z_][A-Za-z0-9_]*)`)

type secretRef struct {
	Name string
	Set  bool
}

// form serves the page's posts (no JavaScript needed): review, save,
// set one key, set a secret.
func (u *UI) form(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	if !u.formAllowed(w, r) {
		http.Error(w, "forbidden: missing or wrong CSRF token", http.StatusForbidden)
		return
	}
	// Browsers post form values with CRLF line breaks (the HTML form
	// encoding rules): taken as is, a save would rewrite every line of
	// airut.yaml, and Review would show the whole file replaced.
	st := pageState{YAML: strings.ReplaceAll(r.PostFormValue("yaml"), "\r\n", "\n"), Hash: r.PostFormValue("hash")}
	code := http.StatusOK
	switch r.PostFormValue("action") {
	case "review":
		rv, err := u.review([]byte(st.YAML))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		st.Errors, st.Diff, st.Reviewed = rv.Errors, rv.Diff, true
		if rv.Hash != st.Hash {
			st.Stale = true
		}
	case "save":
		c, body := u.save([]byte(st.YAML), st.Hash)
		code = c
		switch c {
		case http.StatusOK:
			st.Saved = true
			st.Hash = body["hash"].(string)
		case http.StatusConflict:
			st.Stale = true
		case http.StatusUnprocessableEntity:
			st.Errors = body["errors"].(config.Errors)
		default:
			st.Message = fmt.Sprint(body["error"])
		}
	case "apply", "addrepo":
		var text string
		var err error
		if r.PostFormValue("action") == "apply" {
			text, err = u.applyForm(st.YAML, r.PostForm)
		} else {
			text, err = u.addRepo(st.YAML, r.PostForm)
		}
		if err != nil {
			st.Message = err.Error()
			code = http.StatusUnprocessableEntity
			break
		}
		st.YAML = text
		rv, err := u.review([]byte(text))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		st.Errors, st.Diff, st.Reviewed = rv.Errors, rv.Diff, true
		st.Message = "Not saved yet: review the change below, then Save."
	case "set":
		e, err := config.NewEdit([]byte(st.YAML))
		if err == nil {
			kind := map[string]config.ValueKind{"env": config.EnvRef, "var": config.VarRef}[r.PostFormValue("kind")]
			err = e.Set(splitPath(r.PostFormValue("path")), config.Value{Kind: kind, Text: r.PostFormValue("value")})
		}
		if err != nil {
			st.Message = err.Error()
			code = http.StatusUnprocessableEntity
		} else {
			st.YAML = string(e.Bytes())
			st.Errors, _ = u.o.Store.Validate(e.Bytes())
		}
	case "secret":
		name, value := r.PostFormValue("name"), r.PostFormValue("value")
		if !secretNameRE.MatchString(name) || value == "" {
			st.Message = "a secret needs a variable name and a value"
			code = http.StatusUnprocessableEntity
		} else if err := u.o.Store.SetSecret(name, value); err != nil {
			st.Message = err.Error()
			code = http.StatusInternalServerError
		} else {
			st.Message = name + " set in .env; refer to it as !env " + name
		}
	case "test":
		ok, msg := u.runTest(r.Context(), r.PostFormValue("test_kind"), r.PostFormValue("repo"), []byte(st.YAML))
		st.Message = msg
		if ok == nil || !*ok {
			st.Message = "test failed: " + msg
		}
	default:
		http.Error(w, "unknown action", http.StatusBadRequest)
		return
	}
	u.render(w, r, code, st)
}

func splitPath(p string) []string {
	var out []string
	for _, s := range strings.Split(p, ".") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// addRepo adds the Add repository form's section to yamlText, its
// secrets written to .env.
func (u *UI) addRepo(yamlText string, form url.Values) (string, error) {
	id := strings.TrimSpace(form.Get("id"))
	block, secrets, err := newRepoBlock(form, id)
	if err != nil {
		return "", err
	}
	var doc struct {
		Repos map[string]yaml.Node `yaml:"repos"`
	}
	if err := yaml.Unmarshal([]byte(yamlText), &doc); err == nil {
		if _, dup := doc.Repos[id]; dup {
			return "", fmt.Errorf("repo %q exists already", id)
		}
	}
	e, err := config.NewEdit([]byte(yamlText))
	if err != nil {
		return "", err
	}
	if err := e.SetBlock([]string{"repos", id}, block); err != nil {
		return "", err
	}
	for name, v := range secrets {
		if err := u.o.Store.SetSecret(name, v); err != nil {
			return "", err
		}
	}
	return string(e.Bytes()), nil
}

// formAllowed checks a form post: the dashboard's CSRF token when there is
// one, else a same-origin Origin header.
func (u *UI) formAllowed(w http.ResponseWriter, r *http.Request) bool {
	if u.o.CSRFToken != nil {
		want := u.o.CSRFToken(w, r)
		return want != "" && r.PostFormValue("csrf") == want
	}
	o, err := url.Parse(r.Header.Get("Origin"))
	return err == nil && o.Host != "" && o.Host == r.Host
}

func (u *UI) page(w http.ResponseWriter, r *http.Request) {
	data, hash, err := u.o.Store.Read()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	probs, reg := u.o.Store.Validate(data)
	st := pageState{YAML: reg.Redact(string(data)), Hash: hash, Errors: probs}
	u.render(w, r, http.StatusOK, st)
}

type pageState struct {
	YAML, Hash, Diff, Message string
	Errors                    config.Errors
	Reviewed, Saved, Stale    bool
	Secrets                   []secretRef
	Sections                  []section
	CSRF                      string
}

func (u *UI) render(w http.ResponseWriter, r *http.Request, code int, st pageState) {
	st.Secrets = u.secretRefs([]byte(st.YAML))
	st.Sections = u.formSections([]byte(st.YAML), st.Errors)
	if u.o.CSRFToken != nil {
		st.CSRF = u.o.CSRFToken(w, r)
	}
	var b strings.Builder
	if err := pageTmpl.Execute(&b, st); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if code != http.StatusOK {
		w.WriteHeader(code)
	}
	u.o.Layout(w, r, "Config", template.HTML(b.String()))
}

func barePage(w http.ResponseWriter, _ *http.Request, title string, body template.HTML) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = bareTmpl.Execute(w, map[string]any{"Title": title, "Body": body})
}

var bareTmpl = template.Must(template.New("bare").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>{{.Title}} · Airut</title></head>
<body>{{.Body}}</body></html>
`))

var pageTmpl = template.Must(template.New("config").Parse(`<h1>Config</h1>
<p>airut.yaml, as <code>airut config validate</code> checks it. Saving applies it without a restart (hot reload).
Secrets go to <code>.env</code> beside it and are written as <code>!env NAME</code>; their values are never shown here.</p>
{{if .Saved}}<p class="ok" role="status">Saved. Hot reload applies it now.</p>{{end}}
{{if .Stale}}<p class="error" role="alert">airut.yaml changed on disk since this page loaded it: <a href="/config">reload it</a> and edit again.</p>{{end}}
{{if .Message}}<p role="status">{{.Message}}</p>{{end}}
{{if .Errors}}<section class="errors"><h2>Problems</h2><ul>
{{range .Errors}}<li data-line="{{.Line}}" data-key="{{.Key}}">line {{.Line}}{{if .Key}}: <code>{{.Key}}</code>{{end}}: {{.Message}}</li>
{{end}}</ul></section>{{end}}
{{if .Reviewed}}<section class="diff"><h2>Review</h2>{{if .Diff}}<pre>{{.Diff}}</pre>{{else}}<p>No change.</p>{{end}}
<form method="post" action="/config"><input type="hidden" name="csrf" value="{{.CSRF}}">
<input type="hidden" name="yaml" value="{{.YAML}}"><input type="hidden" name="hash" value="{{.Hash}}">
<button name="action" value="save"{{if .Errors}} disabled{{end}}>Save</button></form></section>{{end}}
<section class="form"><h2>Settings</h2>
<p>Each value can be a literal, <code>!env NAME</code> (the environment or <code>.env</code>) or <code>!var NAME</code> (the <code>vars:</code> map).
Apply shows the change for review; nothing is written before Save.</p>
<form method="post" action="/config">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<input type="hidden" name="yaml" value="{{.YAML}}"><input type="hidden" name="hash" value="{{.Hash}}">
{{range .Sections}}<fieldset><legend>{{.Title}}</legend>
{{range .Fields}}<div class="field{{if .Error}} invalid{{end}}" data-key="{{.Label}}">
<label for="f:{{.Key}}"><code>{{.Label}}</code></label>
<input type="hidden" name="o:{{.Key}}" value="{{.Value}}"><input type="hidden" name="ok:{{.Key}}" value="{{.Kind}}">
{{- if .List}}<input type="hidden" name="list:{{.Key}}" value="1">{{end}}
{{- if .Secret}}
<input type="hidden" name="k:{{.Key}}" value="env"><input id="f:{{.Key}}" name="f:{{.Key}}" value="{{.Value}}" placeholder="NAME in .env">
<span class="secret-state">{{if .Inline}}written in airut.yaml: set it here to move it to .env{{else if .Set}}set{{else}}not set{{end}}</span>
<input type="password" name="s:{{.Key}}" autocomplete="off" placeholder="{{if .Set}}Replace{{else}}Set{{end}}" aria-label="{{if .Set}}Replace{{else}}Set{{end}} {{.Label}}">
{{- else}}
<select name="k:{{.Key}}" aria-label="how {{.Label}} is written"><option value="literal"{{if eq .Kind "literal"}} selected{{end}}>literal</option><option value="env"{{if eq .Kind "env"}} selected{{end}}>!env</option><option value="var"{{if eq .Kind "var"}} selected{{end}}>!var</option></select>
<input id="f:{{.Key}}" name="f:{{.Key}}" value="{{.Value}}"{{if .List}} placeholder="comma-separated"{{end}}{{if .Bool}} placeholder="true or false"{{end}}>
{{- end}}
{{if .Error}}<span class="field-error" role="alert">{{.Error}}</span>{{end}}
</div>
{{end}}</fieldset>
{{end}}<button name="action" value="apply">Apply</button>
</form>
<form method="post" action="/config" class="add-repo">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<input type="hidden" name="yaml" value="{{.YAML}}"><input type="hidden" name="hash" value="{{.Hash}}">
<fieldset><legend>Add a repository</legend>
<label>Repo id <input name="id" placeholder="app" required></label>
<label>Git URL <input name="repo_url" placeholder="https://github.com/acme/app.git" required></label>
<label>Channel <select name="channel"><option value="email">email</option><option value="slack">Slack</option><option value="">none (dashboard tasks only)</option></select></label>
<fieldset><legend>Email</legend>
<label>Username <input name="username"></label> <label>From <input name="from" placeholder="Airut &lt;airut@example.com&gt;"></label>
<label>Password <input type="password" name="password" autocomplete="off"></label>
<label>IMAP server <input name="imap_server"></label> <label>IMAP port <input name="imap_port" placeholder="993"></label>
<label>SMTP server <input name="smtp_server"></label> <label>SMTP port <input name="smtp_port" placeholder="587"></label>
<label>Authorized senders <input name="authorized_senders" placeholder="alice@example.com, *@example.com"></label>
<label>Trusted authserv-id <input name="trusted_authserv_id" placeholder="mx.example.com"></label>
</fieldset>
<fieldset><legend>Slack</legend>
<label>Bot token <input type="password" name="bot_token" autocomplete="off" placeholder="xoxb-…"></label>
<label>App token <input type="password" name="app_token" autocomplete="off" placeholder="xapp-…"></label>
</fieldset>
<button name="action" value="addrepo">Add</button>
</fieldset></form>
</section>
<h2>YAML</h2>
<form method="post" action="/config" class="raw">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<input type="hidden" name="hash" value="{{.Hash}}">
<label for="yaml">airut.yaml</label>
<textarea id="yaml" name="yaml" rows="40" cols="100" spellcheck="false">{{.YAML}}</textarea>
<button name="action" value="review">Review</button>
<button name="action" value="save">Save</button>
<fieldset><legend>Set a key</legend>
<label>Key path <input name="path" placeholder="repos.app.model"></label>
<select name="kind"><option value="literal">literal</option><option value="env">!env NAME</option><option value="var">!var NAME</option></select>
<label>Value or name <input name="value"></label>
<button name="action" value="set">Set</button>
</fieldset>
<fieldset><legend>Test a repository</legend>
<label>Repo id <input name="repo"></label>
<select name="test_kind"><option value="git">git ls-remote</option><option value="email">IMAP + SMTP login</option><option value="slack">Slack auth.test</option></select>
<button name="action" value="test">Test</button>
</fieldset>
</form>
<section class="secrets"><h2>Secrets</h2>
<table><tr><th>Name</th><th>State</th><th></th></tr>
{{range .Secrets}}<tr><td><code>{{.Name}}</code></td><td>{{if .Set}}set{{else}}not set{{end}}</td>
<td><form method="post" action="/config"><input type="hidden" name="csrf" value="{{$.CSRF}}">
<input type="hidden" name="yaml" value="{{$.YAML}}"><input type="hidden" name="hash" value="{{$.Hash}}">
<input type="hidden" name="name" value="{{.Name}}"><input type="password" name="value" autocomplete="off" aria-label="new value of {{.Name}}">
<button name="action" value="secret">{{if .Set}}Replace{{else}}Set{{end}}</button></form></td></tr>
{{end}}</table>
<form method="post" action="/config"><input type="hidden" name="csrf" value="{{.CSRF}}">
<input type="hidden" name="yaml" value="{{.YAML}}"><input type="hidden" name="hash" value="{{.Hash}}">
<label>New secret name <input name="name" placeholder="GH_TOKEN"></label>
<input type="password" name="value" autocomplete="off" aria-label="value">
<button name="action" value="secret">Set</button></form>
</section>
`))
