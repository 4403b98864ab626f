// Package proxy is the network sandbox's proxy process (SPEC S4): a DNS
// responder that answers every A query with the proxy's own address, HTTP
// and HTTPS listeners that intercept every request (TLS terminated with
// leaf certificates minted from a per-task CA held only in memory), the
// allowlist enforcement, the request filters (the GraphQL operation check
// and GitHub App repository scope, S5.5; the rewrite of Anthropic's
// server-side tools, S5.6), the swap of surrogate credentials for real ones
// on scoped hosts (the credential injectors of package secrets, run last
// after every filter), the
// redaction of real values from those hosts' responses, a guarded upstream
// dialer, deadlines on every phase, and the network log: one Record per
// decision, rendered as one escaped line.
//
// Serve runs a whole proxy process from files (cmd/airut-proxy calls it);
// New and the Serve* methods run one on listeners the caller hands it. It
// knows nothing of Podman.
package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/airut/airut/internal/allowlist"
	"github.com/airut/airut/internal/secrets"
	"golang.org/x/net/netutil"
)

// DefaultMaxBody is the cap on a request body the proxy must hold to
// inspect it (S4).
const DefaultMaxBody = 32 << 20

const (
	maxHeaderBytes  = 256 << 10
	upstreamTLSTime = 15 * time.Second
	upstreamPooled  = 90 * time.Second // an idle pooled upstream connection
	expectContinue  = 2 * time.Second
	maxStreams      = 250 // concurrent HTTP/2 streams per agent connection
	pingAfter       = time.Minute
	pingTimeout     = 15 * time.Second
)

// Config is what one proxy process needs.
type Config struct {
	// ListenAddr is the proxy's IPv4 address on the internal network: the
	// answer to every DNS A query. Required.
	ListenAddr string
	// Allowlist decides every request. Required; an empty one blocks all.
	Allowlist *allowlist.Allowlist
	// Replacements are the task's credentials: one injector per kind swaps
	// surrogates for real values on scoped hosts, and the responses of
	// those hosts are redacted. Default: none.
	Replacements *secrets.Replacements
	// UpstreamDNS is the "host:port" of the DNS server used to resolve
	// upstream names. Default: the system resolver.
	UpstreamDNS string
	// Resolve pins host names to addresses ("10.0.0.5", "10.0.0.5:8443" or
	// a name); a pinned address is exempt from the address guard. Default:
	// none.
	Resolve map[string]string
	// UpstreamCA is PEM trusted for upstream TLS besides the system roots.
	// Default: none.
	UpstreamCA []byte
	// AllowRanges are address ranges the address guard lets through
	// although they are private, loopback or the like. Default: none.
	AllowRanges []netip.Prefix
	// MaxBody caps a request body held for inspection. Default
	// DefaultMaxBody (32 MiB).
	MaxBody int64
	// Filters run, in order, on every allowed request before credentials
	// are injected (the seam for S5.5–S5.6). Default: none.
	Filters []Filter
	// Timeouts bound every phase on both sides. Default: see Timeouts.
	Timeouts Timeouts
	// MaxConns caps the agent's concurrent connections per listener.
	// Default DefaultMaxConns.
	MaxConns int
	// GraphQL checks requests allowed by a url_prefixes entry with graphql
	// rules (S5.5). Default CheckGraphQL.
	GraphQL Filter
	// Log receives the network log, one line per Write. Default: discarded.
	Log io.Writer
	// Logger receives operational logs. Default: discarded.
	Logger *slog.Logger
}

// Proxy is one running proxy. Create it with New, start the Serve methods
// (each blocks), stop it with Shutdown.
type Proxy struct {
	cfg      Config
	listenIP netip.Addr
	ca       *authority
	netlog   *netLog
	logger   *slog.Logger
	dialer   *dialer
	upstream *http.Transport
	rp       *httputil.ReverseProxy
	httpSrv  *http.Server
	tlsSrv   *http.Server
	timeouts Timeouts

	injectors []secrets.Injector
	scopers   []gitHubScoper // injectors that carry GitHub App tokens
	tools     *toolDomains   // what Anthropic's server-side tools may reach
	redact    atomic.Pointer[redactor]
	redactMu  sync.Mutex
	known     map[string]secrets.Pair // real value → pair, for learn

	mu     sync.Mutex
	closed bool
	conns  map[io.Closer]struct{} // DNS listeners and connections, hijacked (upgraded) connections
	wg     sync.WaitGroup
}

// New checks cfg and creates the per-task CA.
func New(cfg Config) (*Proxy, error) {
	var errs []error
	listenIP, err := netip.ParseAddr(cfg.ListenAddr)
	if err != nil || !listenIP.Unmap().Is4() {
		errs = append(errs, fmt.Errorf("listen address %q: want an IPv4 address", cfg.ListenAddr))
	}
	listenIP = listenIP.Unmap()
	if cfg.Allowlist == nil {
		errs = append(errs, errors.New("allowlist is required"))
	}
	switch {
	case cfg.MaxBody == 0:
		cfg.MaxBody = DefaultMaxBody
	case cfg.MaxBody < 0:
		errs = append(errs, fmt.Errorf("max body %d: must not be negative", cfg.MaxBody))
	}
	switch {
	case cfg.MaxConns == 0:
		cfg.MaxConns = DefaultMaxConns
	case cfg.MaxConns < 0:
		errs = append(errs, fmt.Errorf("max conns %d: must not be negative", cfg.MaxConns))
	}
	if cfg.UpstreamDNS != "" {
		if _, _, err := net.SplitHostPort(cfg.UpstreamDNS); err != nil {
			errs = append(errs, fmt.Errorf("upstream dns %q: want host:port", cfg.UpstreamDNS))
		}
	}
	pins := make(map[string]string, len(cfg.Resolve))
	for host, addr := range cfg.Resolve {
		h, err := allowlist.NormalizeHost(host)
		if err != nil {
			errs = append(errs, fmt.Errorf("resolve %s: %w", host, err))
			continue
		}
		if _, err := pinTarget(addr, "443"); err != nil {
			errs = append(errs, fmt.Errorf("resolve %s=%q: %w", host, addr, err))
			continue
		}
		pins[h] = addr
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if len(cfg.UpstreamCA) > 0 && !roots.AppendCertsFromPEM(cfg.UpstreamCA) {
		errs = append(errs, errors.New("upstream CA: no PEM certificate found"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("proxy config: %w", err)
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.GraphQL == nil {
		cfg.GraphQL = CheckGraphQL
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ca, err := newAuthority(time.Now())
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		cfg:      cfg,
		listenIP: listenIP,
		ca:       ca,
		netlog:   &netLog{w: cfg.Log},
		logger:   logger,
		conns:    make(map[io.Closer]struct{}),
		timeouts: cfg.Timeouts.withDefaults(),
		tools:    newToolDomains(cfg.Allowlist),
		known:    make(map[string]secrets.Pair),
	}
	p.learn(cfg.Replacements.Pairs())
	p.dialer = newDialer(guard{allow: cfg.AllowRanges, self: ownAddresses(listenIP)}, pins, cfg.UpstreamDNS)
	p.upstream = &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := p.dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			ic := &idleConn{Conn: c}
			ic.arm(p.timeouts.UpstreamIdle)
			return ic, nil
		},
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   upstreamTLSTime,
		ResponseHeaderTimeout: p.timeouts.UpstreamHeader,
		IdleConnTimeout:       upstreamPooled,
		ExpectContinueTimeout: expectContinue,
		MaxIdleConnsPerHost:   16,
		// Bulk bodies move in 64 KiB reads and writes, not 4 KiB ones.
		ReadBufferSize:  64 << 10,
		WriteBufferSize: 64 << 10,
		// The agent's Accept-Encoding goes upstream as sent (on a scoped
		// host it is replaced by identity): the proxy neither asks for
		// compression nor decodes it behind the agent's back.
		DisableCompression: true,
		// Upstream stays HTTP/1.1: it carries WebSocket upgrades, and the
		// agent's HTTP/2 is terminated here anyway.
		ForceAttemptHTTP2: false,
	}
	// The injectors' own requests (GitHub App token mints) go out through
	// the same transport as the agent's: same pins, roots and guard.
	p.injectors = cfg.Replacements.Injectors(secrets.Env{Transport: p.upstream, Logger: logger, MaxBody: cfg.MaxBody})
	for _, inj := range p.injectors {
		if s, ok := inj.(gitHubScoper); ok {
			p.scopers = append(p.scopers, s)
		}
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      &injectingTransport{p: p, next: p.upstream},
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.upstreamError,
		BufferPool:     bufferPool{},
		ErrorLog:       slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	p.httpSrv = p.newServer(&handler{p: p, scheme: "http", port: "80"})
	p.tlsSrv = p.newServer(&handler{p: p, scheme: "https", port: "443", tls: true})
	p.tlsSrv.TLSConfig = &tls.Config{
		GetCertificate: p.ca.getCertificate,
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
	}
	return p, nil
}

func (p *Proxy) newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler: h,
		// Also bounds the TLS handshake (http.Server takes the shortest of
		// its read timeouts for it).
		ReadHeaderTimeout: p.timeouts.Header,
		IdleTimeout:       p.timeouts.Idle,
		MaxHeaderBytes:    maxHeaderBytes,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: maxStreams,
			SendPingTimeout:      pingAfter,
			PingTimeout:          pingTimeout,
			WriteByteTimeout:     p.timeouts.Body,
		},
		ErrorLog: slog.NewLogLogger(p.logger.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
}

type connKey struct{}

// CACertPEM is the per-task CA certificate, for the agent container's
// trust store. The private key is never exported.
func (p *Proxy) CACertPEM() []byte { return append([]byte(nil), p.ca.certPEM...) }

// ServeHTTP serves plain HTTP on l (the destination is the Host header)
// until Shutdown.
func (p *Proxy) ServeHTTP(l net.Listener) error {
	if err := p.httpSrv.Serve(p.agentListener(l)); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve http: %w", err)
	}
	return nil
}

// ServeTLS serves HTTPS (HTTP/1.1 and HTTP/2) on l, terminating TLS with a
// leaf for the SNI name, until Shutdown.
func (p *Proxy) ServeTLS(l net.Listener) error {
	if err := p.tlsSrv.ServeTLS(p.agentListener(l), "", ""); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve https: %w", err)
	}
	return nil
}

// agentListener caps the agent's concurrent connections and makes each
// one an idleConn (armed when it becomes a tunnel).
func (p *Proxy) agentListener(l net.Listener) net.Listener {
	return idleListener{netutil.LimitListener(l, p.cfg.MaxConns)}
}

// Shutdown stops the listeners, waits for in-flight requests until ctx
// ends, and closes upgraded and DNS connections, which http.Server.Shutdown
// does not track.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = make(map[io.Closer]struct{})
	p.mu.Unlock()
	for c := range conns {
		_ = c.Close()
	}
	var errs []error
	var wg sync.WaitGroup
	for _, srv := range []*http.Server{p.httpSrv, p.tlsSrv} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(ctx); err != nil {
				p.mu.Lock()
				errs = append(errs, err)
				p.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, inj := range p.injectors {
		if c, ok := inj.(io.Closer); ok {
			_ = c.Close()
		}
	}
	p.upstream.CloseIdleConnections()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("proxy shutdown: %w", err)
	}
	return nil
}

// track registers c to be closed by Shutdown; after Shutdown it closes c
// at once.
func (p *Proxy) track(c io.Closer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return
	}
	p.conns[c] = struct{}{}
}

func (p *Proxy) untrack(c io.Closer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

func (p *Proxy) closing() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// bufferPool gives ReverseProxy 64 KiB copy buffers instead of a fresh
// 32 KiB one per response.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

func (bufferPool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }
