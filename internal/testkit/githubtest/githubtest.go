// Package githubtest is a local stand-in for GitHub, for tests of the
// proxy's GitHub App credentials (SPEC S5.4–S5.5): the App token endpoint,
// the installation's repository listing, a GraphQL endpoint that records
// what reaches it, a REST endpoint, and git smart HTTP served by Debian's
// `git http-backend`.
//
// It verifies what GitHub verifies. The App JWT must be RS256, signed with
// the App's key, with iss the App's id (or client id), iat not in the
// future and exp at most ten minutes ahead; the installation must exist,
// the requested repositories must be the installation's, permissions must
// be read, write or admin; a User-Agent is required. Installation tokens
// ("ghs_" and 36 letters and digits) expire after TTL and reach only the
// repositories they were minted for. Git accepts only a current
// installation token, as the password of HTTP Basic (any user name), and
// asks for one with 401 and WWW-Authenticate like GitHub.
//
// Every mint and every call is recorded with its time, so tests can show
// from the fake's own records (not from wall-clock thresholds) that no
// request waited for a refresh and none carried an expired token.
package githubtest

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/airut/airut/internal/testkit"
)

// App is a GitHub App: its ids and its key pair.
type App struct {
	ID       string // numeric App id
	ClientID string // "Iv23…", also accepted as iss
	Key      *rsa.PrivateKey
	KeyPEM   string // PKCS#1, as GitHub hands it out
}

// NewApp makes an App with a fresh 2048-bit key.
func NewApp(t testing.TB) *App {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := rand.Int(rand.Reader, big.NewInt(900000))
	return &App{
		ID:       strconv.FormatInt(100000+n.Int64(), 10),
		ClientID: "Iv23li" + randString(14),
		Key:      key,
		KeyPEM:   string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})),
	}
}

// Repo is one repository of the installation.
type Repo struct {
	ID          int64
	Owner, Name string
}

// FullName is "owner/name".
func (r Repo) FullName() string { return r.Owner + "/" + r.Name }

// NodeID is the repository's node id in GitHub's current format:
// "R_" and base64url of the msgpack array [0, id].
func (r Repo) NodeID() string { return NodeID("R", 0, r.ID) }

// LegacyNodeID is the repository's node id in GitHub's legacy format:
// base64 of "010:Repository<id>".
func (r Repo) LegacyNodeID() string {
	return base64.StdEncoding.EncodeToString([]byte("010:Repository" + strconv.FormatInt(r.ID, 10)))
}

// NodeID encodes a current-format node id: prefix, "_", base64url
// (unpadded) of the msgpack array of the given non-negative integers.
func NodeID(prefix string, ints ...int64) string {
	var b bytes.Buffer
	b.WriteByte(0x90 | byte(len(ints)))
	for _, v := range ints {
		switch {
		case v < 0x80:
			b.WriteByte(byte(v))
		case v <= 0xff:
			b.Write([]byte{0xcc, byte(v)})
		case v <= 0xffff:
			b.WriteByte(0xcd)
			_ = binary.Write(&b, binary.BigEndian, uint16(v))
		case v <= 0xffffffff:
			b.WriteByte(0xce)
			_ = binary.Write(&b, binary.BigEndian, uint32(v))
		default:
			b.WriteByte(0xcf)
			_ = binary.Write(&b, binary.BigEndian, uint64(v))
		}
	}
	return prefix + "_" + base64.RawURLEncoding.EncodeToString(b.Bytes())
}

// Token is one installation token the fake minted.
type Token struct {
	Value       string
	Issued      time.Time
	Expires     time.Time
	Repos       []string // names it reaches; nil: every repository of the installation
	Permissions map[string]string
}

// Mint is one call of the token endpoint.
type Mint struct {
	Start, End time.Time
	Status     int
	Token      string // the token minted, if any
	Issuer     string // the JWT's iss
	IssuedAt   time.Time
	ExpiresAt  time.Time
	Body       string // the request body
	Error      string // why it was refused
}

// Call is one request to anything but the token endpoint.
type Call struct {
	Time   time.Time
	Method string
	Host   string
	Path   string // raw target
	Token  string // the credential it carried
	// Valid: the token was one this fake minted and had not expired when
	// the call arrived.
	Valid bool
	// MintInFlight: a mint had started and not ended when the call arrived.
	MintInFlight bool
	Status       int
	Body         string
}

// Server is the fake. Create it with New; configure before serving.
type Server struct {
	App            *App
	InstallationID int64
	Repos          []Repo
	// TTL is how long minted tokens live. Default one hour, like GitHub.
	TTL time.Duration
	// GitRoot holds bare repositories as <owner>/<name>.git.
	GitRoot string
	// GraphQLPath is where GraphQL is served: "/graphql" (github.com) or
	// "/api/graphql" (Enterprise Server). REST is served under APIPrefix
	// ("" or "/api/v3").
	GraphQLPath, APIPrefix string

	mu       sync.Mutex
	tokens   map[string]*Token
	mints    []Mint
	calls    []Call
	inflight int
	onMint   func(n int) // called inside the n-th mint (1-based), before it answers
	failMint func(n int) (int, string)
}

// New returns a fake for app with one installation holding repos, and an
// empty git root (see AddGitRepo).
func New(t testing.TB, app *App, installationID int64, repos ...Repo) *Server {
	t.Helper()
	return &Server{
		App: app, InstallationID: installationID, Repos: repos, TTL: time.Hour,
		GitRoot: t.TempDir(), GraphQLPath: "/graphql", tokens: map[string]*Token{},
	}
}

// OnMint sets a hook run inside every mint, after the JWT is verified and
// before the answer; a hook that blocks holds that mint in flight.
func (s *Server) OnMint(f func(n int)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onMint = f
}

// FailMint makes mints fail: f returns the status and message for the
// n-th mint, or 0 to let it succeed.
func (s *Server) FailMint(f func(n int) (status int, message string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failMint = f
}

// Mints returns every mint so far.
func (s *Server) Mints() []Mint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.mints)
}

// Calls returns every other request so far.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Tokens returns every token minted so far.
func (s *Server) Tokens() []Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Token
	for _, t := range s.tokens {
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b Token) int { return a.Issued.Compare(b.Issued) })
	return out
}

// AddGitRepo creates the bare repository owner/name.git under GitRoot from
// the commits of the repository at src.
func (s *Server) AddGitRepo(t testing.TB, owner, name, src string) string {
	t.Helper()
	dst := filepath.Join(s.GitRoot, owner, name+".git")
	if out, err := exec.Command("git", "clone", "-q", "--bare", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("git clone --bare: %v\n%s", err, out)
	}
	return dst
}

// ServeTLS serves the fake over TLS on 0.0.0.0 with cert until the test
// ends, and returns the port.
func (s *Server) ServeTLS(t testing.TB, cert tls.Certificate) string {
	t.Helper()
	return testkit.ServeTLS(t, s, cert)
}

var (
	mintPath = regexp.MustCompile(`^/app/installations/([0-9]+)/access_tokens$`)
	repoPath = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)(/.*)?$`)
	gitPath  = regexp.MustCompile(`^/([^/]+)/([^/]+?)(?:\.git)?/(info/refs|git-upload-pack|git-receive-pack)$`)
)

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	api, isAPI := strings.CutPrefix(p, s.APIPrefix)
	switch {
	case isAPI && r.Method == http.MethodPost && mintPath.MatchString(api):
		s.mint(w, r, mintPath.FindStringSubmatch(api)[1])
	case p == s.GraphQLPath:
		s.call(w, r, false, s.graphQL)
	case isAPI && api == "/installation/repositories":
		s.call(w, r, false, s.listRepos)
	case isAPI && repoPath.MatchString(api):
		s.call(w, r, false, s.repo)
	case gitPath.MatchString(p):
		s.call(w, r, true, s.git)
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not Found"})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// mint is POST /app/installations/{id}/access_tokens.
func (s *Server) mint(w http.ResponseWriter, r *http.Request, id string) {
	m := Mint{Start: time.Now()}
	s.mu.Lock()
	s.inflight++
	n := len(s.mints) + 1
	s.mints = append(s.mints, m) // placeholder, replaced at the end
	hook, fail := s.onMint, s.failMint
	s.mu.Unlock()
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	m.Body = string(body)
	status, ans := s.mintAnswer(r, id, body, &m)
	if status == http.StatusCreated && fail != nil {
		if st, msg := fail(n); st != 0 {
			status, ans, m.Error, m.Token = st, map[string]any{"message": msg}, msg, ""
		}
	}
	if hook != nil {
		hook(n)
	}
	if status == http.StatusCreated {
		// The Date header is GitHub's clock; the proxy reads expiry against it.
		w.Header().Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	m.Status = status
	writeJSON(w, status, ans)
	s.mu.Lock()
	defer s.mu.Unlock()
	m.End = time.Now()
	s.mints[n-1] = m
	s.inflight--
}

func (s *Server) mintAnswer(r *http.Request, id string, body []byte, m *Mint) (int, any) {
	refuse := func(status int, msg string) (int, any) {
		m.Error = msg
		return status, map[string]any{"message": msg, "documentation_url": "https://docs.github.com/rest"}
	}
	if r.Header.Get("User-Agent") == "" {
		return refuse(http.StatusForbidden, "Request forbidden by administrative rules. Please make sure your request has a User-Agent header")
	}
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return refuse(http.StatusUnauthorized, "A JSON web token could not be decoded")
	}
	now := time.Now()
	claims := jwt.RegisteredClaims{}
	_, err := jwt.ParseWithClaims(bearer, &claims, func(*jwt.Token) (any, error) { return &s.App.Key.PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithTimeFunc(func() time.Time { return now }))
	if err != nil {
		return refuse(http.StatusUnauthorized, "A JSON web token could not be decoded: "+err.Error())
	}
	m.Issuer = claims.Issuer
	if claims.IssuedAt == nil {
		return refuse(http.StatusUnauthorized, "'Issued at' claim ('iat') is required")
	}
	m.IssuedAt, m.ExpiresAt = claims.IssuedAt.Time, claims.ExpiresAt.Time
	switch {
	case claims.Issuer != s.App.ID && claims.Issuer != s.App.ClientID:
		return refuse(http.StatusUnauthorized, "'Issuer' claim ('iss') must be an Integer or the App's client ID")
	case claims.ExpiresAt.After(now.Add(10 * time.Minute)):
		return refuse(http.StatusUnauthorized, "'Expiration time' claim ('exp') is too far in the future")
	case id != strconv.FormatInt(s.InstallationID, 10):
		return refuse(http.StatusNotFound, "Not Found")
	}
	var req struct {
		Repositories []string          `json:"repositories"`
		Permissions  map[string]string `json:"permissions"`
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			return refuse(http.StatusBadRequest, "Problems parsing JSON")
		}
	}
	for k, v := range req.Permissions {
		if v != "read" && v != "write" && v != "admin" {
			return refuse(http.StatusUnprocessableEntity, fmt.Sprintf("The permissions requested are not granted to this installation: %s: %s", k, v))
		}
	}
	var repos []map[string]any
	for _, name := range req.Repositories {
		i := slices.IndexFunc(s.Repos, func(r Repo) bool { return strings.EqualFold(r.Name, name) })
		if i < 0 {
			return refuse(http.StatusUnprocessableEntity, "There is at least one repository that does not exist or is not accessible to the parent installation.")
		}
		repos = append(repos, repoJSON(s.Repos[i]))
	}
	tok := &Token{Value: "ghs_" + randString(36), Issued: now, Expires: now.Add(s.TTL), Repos: req.Repositories, Permissions: req.Permissions}
	s.mu.Lock()
	s.tokens[tok.Value] = tok
	s.mu.Unlock()
	m.Token = tok.Value
	ans := map[string]any{
		"token":                tok.Value,
		"expires_at":           tok.Expires.UTC().Format(time.RFC3339),
		"permissions":          req.Permissions,
		"repository_selection": "all",
	}
	if req.Repositories != nil {
		ans["repository_selection"] = "selected"
		ans["repositories"] = repos
	}
	return http.StatusCreated, ans
}

func repoJSON(r Repo) map[string]any {
	return map[string]any{"id": r.ID, "node_id": r.NodeID(), "name": r.Name, "full_name": r.FullName(),
		"owner": map[string]any{"login": r.Owner}}
}

// call authenticates a request with an installation token and records
// it. basic: git's form (Basic with the token as the password) and a
// Basic challenge on failure.
func (s *Server) call(w http.ResponseWriter, r *http.Request, basic bool, next func(http.ResponseWriter, *http.Request, *Token, *Call)) {
	c := Call{Time: time.Now(), Method: r.Method, Host: r.Host, Path: r.RequestURI}
	auth := r.Header.Get("Authorization")
	if _, pass, ok := r.BasicAuth(); ok {
		c.Token = pass
	} else if scheme, cred, ok := strings.Cut(auth, " "); ok && (strings.EqualFold(scheme, "token") || strings.EqualFold(scheme, "bearer")) {
		c.Token = cred
	}
	s.mu.Lock()
	c.MintInFlight = s.inflight > 0
	tok := s.tokens[c.Token]
	c.Valid = tok != nil && c.Time.Before(tok.Expires)
	s.mu.Unlock()
	rec := &statusWriter{ResponseWriter: w}
	switch {
	case !c.Valid && basic:
		w.Header().Set("WWW-Authenticate", `Basic realm="GitHub"`)
		http.Error(rec, "Authentication failed", http.StatusUnauthorized)
	case !c.Valid:
		writeJSON(rec, http.StatusUnauthorized, map[string]string{"message": "Bad credentials"})
	default:
		next(rec, r, tok, &c)
	}
	c.Status = rec.status
	s.mu.Lock()
	s.calls = append(s.calls, c)
	s.mu.Unlock()
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// reaches reports whether tok may reach the repository owner/name.
func (s *Server) reaches(tok *Token, owner, name string) bool {
	i := slices.IndexFunc(s.Repos, func(r Repo) bool {
		return strings.EqualFold(r.Owner, owner) && strings.EqualFold(r.Name, name)
	})
	if i < 0 {
		return false
	}
	return tok.Repos == nil || slices.ContainsFunc(tok.Repos, func(n string) bool { return strings.EqualFold(n, name) })
}

// graphQL records the body and answers an empty result: the fake does
// not execute queries, it shows which reached it.
func (s *Server) graphQL(w http.ResponseWriter, r *http.Request, _ *Token, c *Call) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 2<<20))
	c.Body = string(body)
	writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{}})
}

// listRepos is GET /installation/repositories (paginated, per_page ≤ 100).
func (s *Server) listRepos(w http.ResponseWriter, r *http.Request, tok *Token, _ *Call) {
	per, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
	if per <= 0 || per > 100 {
		per = 30
	}
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	if page < 1 {
		page = 1
	}
	var all []map[string]any
	for _, repo := range s.Repos {
		if s.reaches(tok, repo.Owner, repo.Name) {
			all = append(all, repoJSON(repo))
		}
	}
	from := min((page-1)*per, len(all))
	to := min(from+per, len(all))
	writeJSON(w, http.StatusOK, map[string]any{"total_count": len(all), "repositories": append([]map[string]any{}, all[from:to]...)})
}

// repo is GET /repos/{owner}/{repo}…: the repository, if the token
// reaches it.
func (s *Server) repo(w http.ResponseWriter, r *http.Request, tok *Token, _ *Call) {
	m := repoPath.FindStringSubmatch(strings.TrimPrefix(r.URL.Path, s.APIPrefix))
	if !s.reaches(tok, m[1], m[2]) {
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not Found"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"full_name": m[1] + "/" + m[2]})
}

// git serves smart HTTP with git http-backend, for repositories the token
// reaches.
func (s *Server) git(w http.ResponseWriter, r *http.Request, tok *Token, _ *Call) {
	m := gitPath.FindStringSubmatch(r.URL.Path)
	if !s.reaches(tok, m[1], m[2]) {
		http.Error(w, "Repository not found.", http.StatusNotFound)
		return
	}
	backend, err := gitHTTPBackend()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	// Clients may omit ".git"; the repositories on disk have it.
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/" + m[1] + "/" + strings.TrimSuffix(m[2], ".git") + ".git/" + m[3]
	h := &cgi.Handler{
		Path: backend,
		Env: []string{"GIT_PROJECT_ROOT=" + s.GitRoot, "GIT_HTTP_EXPORT_ALL=1",
			// An authenticated user may push (git http-backend enables
			// receive-pack for one).
			"REMOTE_USER=x-access-token"},
	}
	h.ServeHTTP(w, r2)
}

var (
	backendOnce sync.Once
	backendPath string
	backendErr  error
)

// gitHTTPBackend finds git-http-backend in git's exec path.
func gitHTTPBackend() (string, error) {
	backendOnce.Do(func() {
		out, err := exec.Command("git", "--exec-path").Output()
		if err != nil {
			backendErr = fmt.Errorf("git --exec-path: %w", err)
			return
		}
		backendPath = filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
		if _, err := os.Stat(backendPath); err != nil {
			backendErr = fmt.Errorf("git http-backend: %w (install git)", err)
		}
	})
	return backendPath, backendErr
}

const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func randString(n int) string {
	b := make([]byte, n)
	for i := range b {
		k, _ := rand.Int(rand.Reader, big.NewInt(int64(len(alnum))))
		b[i] = alnum[k.Int64()]
	}
	return string(b)
}
