package proxy

import (
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
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
	// (CONNECT, TRACE, domain fronting, an unsafe path or host, a
	// malformed WebSocket handshake).
	ErrRefused = errors.New("request refused")
	// ErrBodyTooLarge: a body that had to be held is over MaxBody.
	ErrBodyTooLarge = errors.New("request body too large")
	// ErrBodyUnreadable: a body that had to be held could not be read.
	ErrBodyUnreadable = errors.New("request body unreadable")
	// ErrFiltered: a Filter blocked the request.
	ErrFiltered = errors.New("request blocked by filter")
)

// Upstream failures that are the proxy's own refusal, answered 502 like
// any upstream error, with the reason on the ERROR line.
var (
	errBadSwitch      = errors.New("upstream switched protocols without a valid WebSocket handshake")
	errCompressed     = errors.New("compressed response from a scoped host cannot be checked for credentials")
	errInjectorFailed = errors.New("credential injection failed")
)

func refused(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

// Log keys of the proxy's structured decision record.
const (
	keyVerdict  = "verdict"
	keyMethod   = "method"
	keyURL      = "url"
	keyStatus   = "status"
	keyRule     = "rule"
	keyReason   = "reason"
	keyMasked   = "masked"
	keyRedacted = "redacted"
	keyElapsed  = "elapsed"
)

// reqState follows one request from the handler through Rewrite, the
// injection and the response to its record, carried in the request
// context.
type reqState struct {
	start    time.Time
	scheme   string
	port     string // upstream port
	rawHost  string // as received, for the log of unparsable requests
	host     string // normalised destination
	target   string // raw request target, sent upstream unchanged
	path     string // target decoded once, for matching
	decision allowlist.Decision
	scoped   bool   // a credential is scoped to host: responses are redacted
	wsKey    string // Sec-WebSocket-Key of a checked WebSocket handshake
	tunnel   bool   // the response was 101: the record is written at the switch

	rec      Record
	redacted atomic.Int64
	once     sync.Once // the record is written once
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

func (h *handler) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	p := h.p
	st := &reqState{
		start:   time.Now(),
		scheme:  h.scheme,
		port:    h.port,
		rawHost: r.Host,
		target:  r.RequestURI,
	}
	st.rec = Record{Method: r.Method}
	w := p.agentWriter(rw, r, st)
	p.agentBody(r, w)
	defer func() {
		if v := recover(); v != nil {
			// ReverseProxy aborts a response whose copy failed with
			// http.ErrAbortHandler; the record says so and the panic goes on.
			st.rec.Aborted = true
			p.finish(st)
			panic(v)
		}
		p.finish(st)
	}()
	if err := h.check(r, st); err != nil {
		p.reject(w, st, err)
		return
	}
	if err := p.checkUpgrade(r, st); err != nil {
		p.reject(w, st, err)
		return
	}
	if err := p.filter(r, st); err != nil {
		if errors.Is(err, errInjectorFailed) {
			p.credentialError(w, st, err)
			return
		}
		p.reject(w, st, err)
		return
	}
	if st.wsKey != "" {
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
	st.rec.Rule = st.decision.Rule
	switch st.decision.Verdict {
	case allowlist.Allowed:
	case allowlist.BlockedMethod:
		return ErrMethodNotAllowed
	default:
		return ErrHostNotAllowed
	}
	if st.decision.MethodsListed {
		// An upstream that honours these would run another method than
		// the one the rule allowed.
		for _, name := range methodOverrideHeaders {
			r.Header.Del(name)
		}
	}
	st.scoped = h.p.scoped(host)
	return nil
}

// methodOverrideHeaders are the headers frameworks read to run another
// method than the request line's (Rails, Laravel, Symfony, Express,
// Google APIs).
var methodOverrideHeaders = []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"}

func isIPLiteral(h string) bool { return net.ParseIP(h) != nil }

// filter runs the method-override check, the GraphQL check and the
// configured filters.
func (p *Proxy) filter(r *http.Request, st *reqState) error {
	var filters []Filter
	if st.decision.MethodsListed && r.Method == http.MethodPost {
		filters = append(filters, p.methodParam)
	}
	if st.decision.GraphQL != nil {
		filters = append(filters, p.cfg.GraphQL)
	}
	if len(p.scopers) > 0 {
		filters = append(filters, p.gitHubScope)
	}
	if st.host == anthropicHost {
		filters = append(filters, p.anthropicTools)
	}
	filters = append(filters, p.cfg.Filters...)
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
			if errors.Is(err, ErrRefused) || errors.Is(err, ErrBodyTooLarge) || errors.Is(err, ErrBodyUnreadable) || errors.Is(err, errInjectorFailed) {
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

// rewrite builds the upstream request. ReverseProxy has already removed
// hop-by-hop headers (and those named in Connection) and X-Forwarded-*.
// Credentials are injected after this, by the transport, as the very last
// step before the request is written.
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
	if st.scoped {
		// A scoped host may get a real credential, so its response is
		// redacted: ask for it uncompressed, whole (a range could cut a
		// reflected value in two) and with WebSocket frames uncompressed.
		out.Header.Set("Accept-Encoding", "identity")
		out.Header.Del("Range")
		out.Header.Del("If-Range")
		out.Header.Del("Sec-WebSocket-Extensions")
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

// injectingTransport runs the credential injectors on the request that is
// about to be written upstream: after the allowlist, every filter and the
// rewrite, so nothing can change the request after a real value is in it.
type injectingTransport struct {
	p    *Proxy
	next http.RoundTripper
}

func (t *injectingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := t.p.inject(r, stateFrom(r.Context())); err != nil {
		return nil, err
	}
	return t.next.RoundTrip(r)
}

func (p *Proxy) inject(r *http.Request, st *reqState) error {
	for _, inj := range p.injectors {
		res, err := inj.Inject(r)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", errInjectorFailed, inj.Kind(), err)
		}
		st.rec.Masked += res.Masked
		st.rec.Dropped += res.Dropped
		for _, k := range res.Tokens {
			st.rec.addToken(k)
		}
		if res.Signed != "" {
			st.rec.Signed, st.rec.SignError = res.Signed, res.SignError
			if res.SignError != "" {
				// Fail closed: the request goes on with the agent's
				// surrogate signature, which the upstream rejects.
				p.logger.Warn("request not re-signed", keyMethod, st.rec.Method, keyURL, st.url(),
					"kind", inj.Kind(), keyReason, res.SignError)
			}
		}
		for _, s := range res.Stripped {
			p.netlog.record(Record{Verdict: VerdictStripped, Header: s.Header, Host: st.host, Why: s.Reason})
		}
		p.learn(res.Injected)
	}
	return nil
}

func (p *Proxy) modifyResponse(resp *http.Response) error {
	st := stateFrom(resp.Request.Context())
	st.rec.Verdict, st.rec.Status = VerdictAllowed, resp.StatusCode
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return p.switchProtocols(resp, st)
	}
	if !st.scoped {
		return nil
	}
	rd := p.redactor()
	if rd == nil {
		return nil
	}
	st.redacted.Add(int64(rd.redactHeader(resp.Header)))
	body, err := decodedBody(resp)
	if err != nil {
		return err
	}
	rr := newRedactReader(rd, body, &st.redacted)
	rr.onEOF = func() { st.redacted.Add(int64(rd.redactHeader(resp.Trailer))) }
	resp.Body = struct {
		io.Reader
		io.Closer
	}{rr, resp.Body}
	return nil
}

// decodedBody is the body of a scoped host's response as the redactor must
// see it. The request asked for identity; an upstream that compresses
// anyway is decoded (and the agent gets identity) when it uses gzip or
// deflate, and refused otherwise: a body the proxy cannot read might carry
// a real value.
func decodedBody(resp *http.Response) (io.Reader, error) {
	ce := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding")))
	if ce == "" || ce == "identity" {
		return resp.Body, nil
	}
	if resp.Request.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified {
		return resp.Body, nil
	}
	var open func(io.Reader) (io.Reader, error)
	switch ce {
	case "gzip", "x-gzip":
		open = func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) }
	case "deflate":
		open = func(r io.Reader) (io.Reader, error) { return zlib.NewReader(r) }
	default:
		return nil, fmt.Errorf("%w: Content-Encoding %q", errCompressed, ce)
	}
	resp.Header.Del("Content-Encoding")
	resp.Header.Del("Content-Length")
	resp.Header.Del("Content-MD5")
	resp.ContentLength = -1
	return &lazyDecoder{src: resp.Body, open: open}, nil
}

// lazyDecoder opens its decoder on the first Read, so the response's
// headers reach the agent without waiting for the first compressed bytes.
type lazyDecoder struct {
	src  io.Reader
	open func(io.Reader) (io.Reader, error)
	dec  io.Reader
}

func (d *lazyDecoder) Read(p []byte) (int, error) {
	if d.dec == nil {
		dec, err := d.open(d.src)
		if err != nil {
			return 0, fmt.Errorf("decode response: %w", err)
		}
		d.dec = dec
	}
	return d.dec.Read(p)
}

// upstreamError handles a failed round trip: a denied address is a block,
// anything else an ERROR line and a 502.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	st := stateFrom(r.Context())
	if errors.Is(err, ErrAddressDenied) {
		p.reject(w, st, err)
		return
	}
	if errors.Is(err, errInjectorFailed) {
		p.credentialError(w, st, err)
		return
	}
	badGateway(w, st, "upstream_error", "The proxy could not complete the request upstream: ", err)
}

// credentialError answers a request whose credential could not be had (a
// GitHub App token that could not be minted): 502, with the reason, and
// the request never went upstream.
func (p *Proxy) credentialError(w http.ResponseWriter, st *reqState, err error) {
	badGateway(w, st, "credential_unavailable", "The proxy could not obtain the credential for this request, so it was not sent: ", err)
}

// badGateway is the one place a request becomes a 502 and an ERROR record.
func badGateway(w http.ResponseWriter, st *reqState, code, message string, err error) {
	reason := err.Error()
	st.rec.Verdict, st.rec.Reason = VerdictError, reason
	writeJSON(w, http.StatusBadGateway, map[string]string{
		"error":   code,
		"host":    st.host,
		"path":    st.target,
		"method":  st.rec.Method,
		"message": message + reason,
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

// reject is the one place a blocked request becomes a 403 and a BLOCKED
// record.
func (p *Proxy) reject(w http.ResponseWriter, st *reqState, err error) {
	host := st.host
	if host == "" {
		host = st.rawHost
	}
	path := st.path
	if path == "" {
		path = st.target
	}
	method := st.rec.Method
	var msg string
	var fe filterError
	switch {
	case errors.Is(err, ErrMethodNotAllowed):
		msg = fmt.Sprintf("Method %s is not allowed for %s%s by the network allowlist. %s", method, host, path, requestAccess)
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
	st.rec.Verdict, st.rec.Status, st.rec.Reason = VerdictBlocked, http.StatusForbidden, err.Error()
	writeJSON(w, http.StatusForbidden, blockedBody{
		Error:   "blocked_by_network_allowlist",
		Host:    host,
		Path:    path,
		Method:  method,
		Message: msg,
	})
}

// finish writes the request's record: once, when its response is complete
// (the redaction count is known only then), or for a switched protocol
// once more at the tunnel's end if something was redacted in it.
func (p *Proxy) finish(st *reqState) {
	if st.tunnel {
		if n := int(st.redacted.Load()); n > 0 {
			rec := st.rec
			rec.Redacted = n
			p.netlog.record(rec)
		}
		return
	}
	st.once.Do(func() { p.writeRecord(st) })
}

func (p *Proxy) writeRecord(st *reqState) {
	rec := &st.rec
	if rec.Verdict == "" {
		// The handler returned without a decision: the client went away
		// before the upstream answered.
		rec.Verdict, rec.Reason = VerdictError, "request ended before a response"
	}
	rec.URL = st.url()
	rec.Redacted = int(st.redacted.Load())
	rec.Elapsed = time.Since(st.start)
	p.netlog.record(*rec)
	level, verdict := p.logger.Info, strings.ToLower(rec.Verdict)
	if rec.Verdict == VerdictError {
		level = p.logger.Warn
	}
	level("proxy decision", keyVerdict, verdict, keyMethod, rec.Method, keyURL, rec.URL,
		keyStatus, rec.Status, keyRule, rec.Rule, keyReason, rec.Reason, keyMasked, rec.Masked,
		keyRedacted, rec.Redacted, keyElapsed, rec.Elapsed)
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

// scoped reports whether a credential of any kind is scoped to host.
func (p *Proxy) scoped(host string) bool {
	for _, inj := range p.injectors {
		if inj.Scoped(host) {
			return true
		}
	}
	return false
}

// redactor is the current redactor of the task's real values.
func (p *Proxy) redactor() *redactor { return p.redact.Load() }

// learn adds real values an injector reported to the redactor, so a value
// minted during the task (a GitHub App token) is redacted from then on.
func (p *Proxy) learn(pairs []secrets.Pair) {
	if len(pairs) == 0 {
		return
	}
	p.redactMu.Lock()
	defer p.redactMu.Unlock()
	added := false
	for _, pr := range pairs {
		if _, ok := p.known[pr.Real.Reveal()]; !ok {
			p.known[pr.Real.Reveal()] = pr
			added = true
		}
	}
	if added {
		all := make([]secrets.Pair, 0, len(p.known))
		for _, pr := range p.known {
			all = append(all, pr)
		}
		p.redact.Store(newRedactor(all))
	}
}
