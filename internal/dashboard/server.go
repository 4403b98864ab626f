// Package dashboard is the operator's web window on the gateway (SPEC S9):
// server-rendered pages (html/template, htmx for the live parts), a JSON
// API, and Server-Sent Events on the same paths. It reads the gateway
// through its read-only views and event bus, and acts on it only through
// Submit and Cancel.
//
// Everything served passes the redactor, every response carries the
// security headers, a foreign Host is refused (421) and a state-changing
// request must prove it comes from the dashboard's own pages (403).
// Other packages add pages with Mount (or Options.Extra) and render them in
// the shared layout with Page; the middleware covers them too.
package dashboard

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/gateway"
	"github.com/airut/airut/internal/redact"
)

// Finding is one item of the first-run checklist (the same findings as
// `airut check`).
type Finding struct {
	// Title names what was checked: "Podman", "Claude credential".
	Title string
	// OK: nothing to do.
	OK bool
	// Detail says what was found; Fix what to do about it.
	Detail string
	Fix    string
}

// ReloadState is what the config watcher reports for /api/health.
type ReloadState struct {
	Generation uint64
	LastError  string
}

// NavLink is one entry of the page header's navigation.
type NavLink struct {
	Title string
	Path  string
}

// Options configure a Server.
type Options struct {
	// Gateway is the running gateway. Required.
	Gateway *gateway.Gateway
	// Config returns the config in force (bind address, base URL, repos).
	// Required.
	Config func() *config.Config
	// StateDir is the gateway's state root, where the web channel keeps
	// its replies (<state>/<repo>/channels/web). Required.
	StateDir string
	// Registry redacts every byte served. Required.
	Registry *redact.Registry
	Logger   *slog.Logger
	// Version is what /api/version reports.
	Version string
	// Checks, when set, returns the first-run checklist shown on the
	// overview while something is missing.
	Checks func(ctx context.Context) []Finding
	// Reload, when set, reports the hot reload's generation and last
	// error; default 0 and "".
	Reload func() ReloadState
	// Extra register more handlers on the dashboard's mux (the config
	// editor); the security middleware applies to them as to every page.
	Extra []func(mux *http.ServeMux)
	// Nav are extra header links (e.g. {"Config", "/config"}).
	Nav []NavLink
	// MaxStreams caps open SSE/NDJSON streams; over it: 429. Default 64.
	MaxStreams int
	// Heartbeat is the interval of SSE comments on idle streams. Default
	// 15s.
	Heartbeat time.Duration
}

// Server is the dashboard's HTTP handler.
type Server struct {
	opts Options
	log  *slog.Logger
	mux  *http.ServeMux
	// streams holds one token per open stream (the cap).
	streams chan struct{}
	handler http.Handler
}

// New builds the dashboard; it serves once handed to an http.Server (or
// ListenAndServe).
func New(opts Options) (*Server, error) {
	if opts.Gateway == nil || opts.Config == nil || opts.Registry == nil || opts.StateDir == "" {
		return nil, errors.New("dashboard: Gateway, Config, Registry and StateDir are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxStreams <= 0 {
		opts.MaxStreams = 64
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 15 * time.Second
	}
	if opts.Reload == nil {
		opts.Reload = func() ReloadState { return ReloadState{} }
	}
	s := &Server{opts: opts, log: opts.Logger, mux: http.NewServeMux(), streams: make(chan struct{}, opts.MaxStreams)}
	s.routes()
	for _, f := range opts.Extra {
		f(s.mux)
	}
	s.handler = s.secure(s.mux)
	return s, nil
}

// Mount adds a handler under pattern (Go 1.22 mux syntax), behind the
// same middleware as the dashboard's own pages.
func (s *Server) Mount(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// ListenAndServe serves on the config's dashboard.host:port until ctx
// ends. A bind that is not loopback is logged as a warning: the dashboard
// has no login.
func (s *Server) ListenAndServe(ctx context.Context) error {
	d := s.opts.Config().Dashboard
	addr := net.JoinHostPort(d.Host, strconv.Itoa(d.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if !isLoopbackHost(s.opts.Config().Dashboard.Host) {
		s.log.Warn("dashboard bound to a non-loopback address: it has no login, put it behind an authenticating reverse proxy",
			"addr", ln.Addr().String())
	}
	s.log.Info("dashboard listening", "url", "http://"+ln.Addr().String())
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	err := srv.Serve(ln)
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// baseURL is dashboard.base_url parsed, or nil.
func (s *Server) baseURL() *url.URL {
	b := s.opts.Config().Dashboard.BaseURL
	if b == "" {
		return nil
	}
	u, err := url.Parse(b)
	if err != nil || u.Host == "" {
		return nil
	}
	return u
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
