package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/airut/airut/internal/allowlist"
	"github.com/airut/airut/internal/secrets"
)

// Sentinels for every way a request is blocked; reject maps them to the
// 403 body and log line.
var (
	// ErrHostNotAllowed: no allowlist entry matches the host and path.
	ErrHostNotAllowed = errors.New("host/path not allowed")
	// ErrMethodNotAllowed: an entry matches the host and path, not the method.
	ErrMethodNotAllowed = errors.New("method not allowed")
	// ErrRefused: the request is refused whatever the allowlist says
	// (CONNECT, TRACE, domain fronting, an unsafe path or host).
	ErrRefused = errors.New("request refused")
	// ErrBodyTooLarge: a body that had to be held is over MaxBody.
	ErrBodyTooLarge = errors.New("request body too large")
	// ErrBodyUnreadable: a body that had to be held could not be read.
	ErrBodyUnreadable = errors.New("request body unreadable")
	// ErrFiltered: a Filter blocked the request.
	ErrFiltered = errors.New("request blocked by filter")
)

func refused(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

// Log keys for the proxy's structured decision line.
const (
	keyVerdict = "verdict"
	keyMethod  = "method"
	keyURL     = "url"
	keyStatus  = "status"
	keyRule    = "rule"
	keyReason  = "reason"
	keyMasked  = "masked"
	keyElapsed = "elapsed"
)

// reqState follows one request from the handler through Rewrite to the
// response or error, carried in the request context.
type reqState struct {
	start    time.Time
	method   string
	scheme   string
	port     string // upstream port
	rawHost  string // as received, for the log of unparsable requests
	host     string // normalised destination
	target   string // raw request target, sent upstream unchanged
	path     string // target decoded once, for matching
	decision allowlist.Decision
	result   secrets.Result
}

type stateKey struct{}

func stateFrom(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	return st
}

// url is the request as the network log shows it.
func (st *reqState) url() string {
	host := st.host
	if host == "" {
		host = st.rawHost
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if st.target != "" && !strings.HasPrefix(st.target, "/") {
		return st.target // absolute-form or CONNECT authority, as sent
	}
	return st.scheme + "://" + host + st.target
}

type handler struct {
	p      *Proxy
	scheme string
	port   string
	tls    bool
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := h.p
	st := &reqState{
		start:   time.Now(),
		method:  r.Method,
		scheme:  h.scheme,
		port:    h.port,
		rawHost: r.Host,
		target:  r.RequestURI,
	}
	if err := h.check(r, st); err != nil {
		p.reject(w, st, err)
		return
	}
	if err := p.filter(r, st); err != nil {
		p.reject(w, st, err)
		return
	}
	if isUpgrade(r) {
		// http.Server.Shutdown neither waits for nor closes a hijacked
		// connection; ReverseProxy hijacks on 101 and copies until one side
		// closes, so the proxy closes it itself on Shutdown.
		if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
			p.track(c)
			defer p.untrack(c)
		}
	}
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
}

// check applies every rule that needs no body: destination, fronting,
// method, path hardening, allowlist.
func (h *handler) check(r *http.Request, st *reqState) error {
	if r.Method == http.MethodConnect {
		return refused("CONNECT is not supported: the sandbox reaches hosts directly, not through a tunnel")
	}
	name := r.Host
	sni := ""
	if h.tls && r.TLS != nil {
		sni = r.TLS.ServerName
		if sni != "" {
			name = sni
		}
	}
	host, err := allowlist.NormalizeHost(name)
	if err != nil {
		return refused("%v", err)
	}
	st.host = host
	if !strings.HasPrefix(st.target, "/") {
		// net/http drops the Host header of an absolute-form request, so
		// the URL host and the Host header cannot be compared; a client
		// that reaches the proxy through DNS never sends this form.
		return refused("absolute-form request target %q", st.target)
	}
	if h.tls {
		hh, err := allowlist.NormalizeHost(r.Host)
		switch {
		case err != nil:
			return refused("%v", err)
		case sni == "" && !isIPLiteral(hh):
			return refused("no TLS server name for host %s", hh)
		case hh != host:
			return refused("Host header %s does not match TLS server name %s", hh, host)
		}
	}
	if m := strings.ToUpper(r.Method); m == "TRACE" || m == "TRACK" {
		return refused("%s is never allowed: it echoes request headers, credentials included", m)
	}
	path, err := allowlist.CleanPath(st.target)
	if err != nil {
		return refused("%v", err)
	}
	st.path = path
	st.decision = h.p.cfg.Allowlist.Match(host, path, r.Method)
	switch st.decision.Verdict {
	case allowlist.Allowed:
		return nil
	case allowlist.BlockedMethod:
		return ErrMethodNotAllowed
	default:
		return ErrHostNotAllowed
	}
}

func isIPLiteral(h string) bool { return net.ParseIP(h) != nil }

// filter runs the GraphQL check and the configured filters.
func (p *Proxy) filter(r *http.Request, st *reqState) error {
	filters := p.cfg.Filters
	if st.decision.GraphQL != nil {
		if p.cfg.GraphQL == nil {
			return refused("GraphQL operation checks (%s) are not available in this proxy", st.decision.Rule)
		}
		filters = append([]Filter{p.cfg.GraphQL}, filters...)
	}
	if len(filters) == 0 {
		return nil
	}
	fr := &Request{HTTP: r, Host: st.host, Path: st.path, Decision: st.decision, maxBody: p.cfg.MaxBody}
	for _, f := range filters {
		err := f(fr)
		if fr.bodyErr != nil {
			return fr.bodyErr
		}
		if err != nil {
			if errors.Is(err, ErrRefused) || errors.Is(err, ErrBodyTooLarge) || errors.Is(err, ErrBodyUnreadable) {
				return err
			}
			return filterError{err}
		}
	}
	return nil
}

// filterError is a Filter's refusal; it matches ErrFiltered and keeps the
// filter's own text for the 403 message.
type filterError struct{ err error }

func (e filterError) Error() string        { return "blocked by filter: " + e.err.Error() }
func (e filterError) Unwrap() error        { return e.err }
func (e filterError) Is(target error) bool { return target == ErrFiltered }

func isUpgrade(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" && httpHeaderHasToken(r.Header, "Connection", "upgrade")
}

func httpHeaderHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// rewrite builds the upstream request. ReverseProxy has already removed
// hop-by-hop headers (and those named in Connection) and X-Forwarded-*.
// The credential pass runs here, the last step before dialling.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	st := stateFrom(pr.In.Context())
	out := pr.Out
	out.URL.Scheme = st.scheme
	out.URL.Host = net.JoinHostPort(st.host, st.port)
	out.URL.User = nil
	setTarget(out.URL, st.target)
	// The Host sent is the checked name, not the client's spelling of it
	// (case, trailing dot, port), so the upstream sees what was allowed.
	out.Host = st.host
	if strings.Contains(st.host, ":") {
		out.Host = "[" + st.host + "]"
	}
	out.RequestURI = ""
	st.result = p.cfg.Replacements.Apply(st.host, out.Header)
	for _, name := range st.result.Stripped {
		p.netlog.line(fmt.Sprintf("STRIPPED %s on %s", name, st.host))
	}
}

// setTarget makes u send exactly the raw target the client sent: the
// allowlist matched its decoding, and re-encoding could make the upstream
// read another path. Opaque is written verbatim, except that an opaque
// starting with "//" would be taken for an authority.
func setTarget(u *url.URL, target string) {
	path, query, hasQuery := strings.Cut(target, "?")
	u.RawQuery = query
	u.ForceQuery = hasQuery && query == ""
	u.Fragment, u.RawFragment = "", ""
	if !strings.HasPrefix(path, "//") {
		u.Opaque, u.Path, u.RawPath = path, "", ""
		return
	}
	u.Opaque = ""
	if dec, err := url.PathUnescape(path); err == nil {
		u.Path, u.RawPath = dec, path
	}
}

func (p *Proxy) modifyResponse(resp *http.Response) error {
	st := stateFrom(resp.Request.Context())
	line := requestLine("ALLOWED", st.method, st.url()) + fmt.Sprintf(" -> %d", resp.StatusCode)
	if st.result.Masked > 0 {
		line += fmt.Sprintf(" [masked: %d]", st.result.Masked)
	}
	if st.result.Dropped > 0 {
		line += fmt.Sprintf(" [dropped: %d]", st.result.Dropped)
	}
	p.netlog.line(line)
	p.logger.Info("proxy decision", keyVerdict, "allowed", keyMethod, st.method, keyURL, st.url(),
		keyStatus, resp.StatusCode, keyRule, st.decision.Rule, keyMasked, st.result.Masked,
		keyElapsed, time.Since(st.start))
	return nil
}

// upstreamError handles a failed round trip: a denied address is a block,
// anything else an ERROR line and a 502.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	st := stateFrom(r.Context())
	if errors.Is(err, ErrAddressDenied) {
		p.reject(w, st, err)
		return
	}
	reason := err.Error()
	p.netlog.line(requestLine("ERROR", st.method, st.url()) + " -> " + reason)
	p.logger.Warn("proxy decision", keyVerdict, "error", keyMethod, st.method, keyURL, st.url(),
		keyReason, reason, keyElapsed, time.Since(st.start))
	writeJSON(w, http.StatusBadGateway, map[string]string{
		"error":   "upstream_error",
		"host":    st.host,
		"path":    st.target,
		"method":  st.method,
		"message": "The proxy could not complete the request upstream: " + reason,
	})
}

// blockedBody is the 403 body, in the shape the agent is told to expect.
type blockedBody struct {
	Error   string `json:"error"`
	Host    string `json:"host"`
	Path    string `json:"path"`
	Method  string `json:"method"`
	Message string `json:"message"`
}

const requestAccess = "To request access, open a pull request that changes .airut/network-allowlist.yaml."

// reject is the one place a blocked request becomes a 403, a BLOCKED line
// and a decision log record.
func (p *Proxy) reject(w http.ResponseWriter, st *reqState, err error) {
	host := st.host
	if host == "" {
		host = st.rawHost
	}
	path := st.path
	if path == "" {
		path = st.target
	}
	var msg string
	var fe filterError
	switch {
	case errors.Is(err, ErrMethodNotAllowed):
		msg = fmt.Sprintf("Method %s is not allowed for %s%s by the network allowlist. %s", st.method, host, path, requestAccess)
	case errors.Is(err, ErrHostNotAllowed):
		msg = fmt.Sprintf("Host/path %s%s is not allowed by the network allowlist. %s", host, path, requestAccess)
	case errors.Is(err, ErrAddressDenied):
		msg = fmt.Sprintf("Host %s resolves to an address the sandbox may not reach (loopback, link-local, private or the proxy itself). An operator can pin it with network.resolve.", host)
	case errors.Is(err, ErrBodyTooLarge), errors.Is(err, ErrBodyUnreadable):
		msg = fmt.Sprintf("The request body must be inspected and could not be: %v (limit %d bytes).", err, p.cfg.MaxBody)
	case errors.As(err, &fe):
		msg = fmt.Sprintf("Request blocked by the network sandbox: %v.", fe.err)
	default:
		msg = fmt.Sprintf("Request refused by the network sandbox: %v. The network allowlist cannot change this.", err)
	}
	p.netlog.line(requestLine("BLOCKED", st.method, st.url()) + " -> 403")
	p.logger.Info("proxy decision", keyVerdict, "blocked", keyMethod, st.method, keyURL, st.url(),
		keyStatus, http.StatusForbidden, keyRule, st.decision.Rule, keyReason, err.Error())
	writeJSON(w, http.StatusForbidden, blockedBody{
		Error:   "blocked_by_network_allowlist",
		Host:    host,
		Path:    path,
		Method:  st.method,
		Message: msg,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		body = []byte(`{"error":"internal"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
