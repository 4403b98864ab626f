package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/airut/airut/internal/allowlist"
	"github.com/airut/airut/internal/atomicfile"
	"github.com/airut/airut/internal/proxy"
	"github.com/airut/airut/internal/secrets"
)

// shutdownTimeout bounds the drain on SIGTERM: the sandbox tears the
// container down soon after anyway.
const shutdownTimeout = 5 * time.Second

// usageError is a bad command line: exit status 2.
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "health" {
		return runHealth(ctx, args[1:], stderr)
	}
	return runServe(ctx, args, stdout, stderr)
}

// resolveFlag collects repeatable --resolve HOST=ADDR.
type resolveFlag map[string]string

func (r resolveFlag) String() string { return fmt.Sprint(map[string]string(r)) }

func (r resolveFlag) Set(v string) error {
	host, addr, ok := strings.Cut(v, "=")
	if !ok || host == "" || addr == "" {
		return fmt.Errorf("want HOST=ADDR, got %q", v)
	}
	r[host] = addr
	return nil
}

type serveFlags struct {
	listenIP, bindIP, allowlist, replacements, caCertOut, networkLog string
	upstreamDNS, upstreamCA                                          string
	resolve                                                          resolveFlag
	maxBody                                                          int64
	dnsPort, httpPort, httpsPort                                     int
}

func parseServe(args []string, stderr io.Writer) (*serveFlags, error) {
	f := &serveFlags{resolve: resolveFlag{}}
	fs := flag.NewFlagSet("airut-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.listenIP, "listen-ip", "", "the proxy's IPv4 address on the internal network: every DNS A answer (required)")
	fs.StringVar(&f.bindIP, "bind-ip", "", "address the listeners bind to (default: --listen-ip)")
	fs.StringVar(&f.allowlist, "allowlist", "", "network allowlist YAML file (required)")
	fs.StringVar(&f.replacements, "replacements", "", "credential replacement map written by the gateway (optional)")
	fs.StringVar(&f.caCertOut, "ca-cert-out", "", "where to write the per-task CA certificate; written once all listeners are bound (required)")
	fs.StringVar(&f.networkLog, "network-log", "", "append the network log to this file (it always goes to stdout)")
	fs.StringVar(&f.upstreamDNS, "upstream-dns", "", "HOST:PORT of the DNS server for upstream names (default: system resolver)")
	fs.Var(f.resolve, "resolve", "pin HOST=ADDR (repeatable; exempt from the private-address guard)")
	fs.StringVar(&f.upstreamCA, "upstream-ca", "", "PEM file of extra CAs trusted for upstream TLS")
	fs.Int64Var(&f.maxBody, "max-body", proxy.DefaultMaxBody, "cap in bytes on a request body held for inspection")
	fs.IntVar(&f.dnsPort, "dns-port", 53, "DNS port (UDP and TCP)")
	fs.IntVar(&f.httpPort, "http-port", 80, "HTTP port")
	fs.IntVar(&f.httpsPort, "https-port", 443, "HTTPS port")
	if err := fs.Parse(args); err != nil {
		return nil, usageError{err}
	}
	var missing []string
	for name, v := range map[string]string{"--listen-ip": f.listenIP, "--allowlist": f.allowlist, "--ca-cert-out": f.caCertOut} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, usagef("missing required flags: %s", strings.Join(slices.Sorted(slices.Values(missing)), ", "))
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected arguments: %q", fs.Args())
	}
	if f.bindIP == "" {
		f.bindIP = f.listenIP
	}
	return f, nil
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseServe(args, stderr)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	al, err := allowlist.Load(f.allowlist)
	if err != nil {
		return err
	}
	var repl *secrets.Replacements
	if f.replacements != "" {
		if repl, err = secrets.LoadReplacementFile(f.replacements); err != nil {
			return err
		}
	}
	var upstreamCA []byte
	if f.upstreamCA != "" {
		if upstreamCA, err = os.ReadFile(f.upstreamCA); err != nil {
			return fmt.Errorf("read upstream CA: %w", err)
		}
	}
	netlog := stdout
	if f.networkLog != "" {
		lf, err := os.OpenFile(f.networkLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("open network log: %w", err)
		}
		defer lf.Close()
		netlog = io.MultiWriter(lf, stdout)
	}
	p, err := proxy.New(proxy.Config{
		ListenAddr:   f.listenIP,
		Allowlist:    al,
		Replacements: repl,
		UpstreamDNS:  f.upstreamDNS,
		Resolve:      f.resolve,
		UpstreamCA:   upstreamCA,
		MaxBody:      f.maxBody,
		Log:          netlog,
		Logger:       logger,
	})
	if err != nil {
		return err
	}

	var lc net.ListenConfig
	addr := func(port int) string { return net.JoinHostPort(f.bindIP, strconv.Itoa(port)) }
	var closers []io.Closer
	closeAll := func() {
		for _, c := range closers {
			_ = c.Close()
		}
	}
	listen := func(port int) (net.Listener, error) {
		l, err := lc.Listen(ctx, "tcp", addr(port))
		if err == nil {
			closers = append(closers, l)
		}
		return l, err
	}
	httpL, err := listen(f.httpPort)
	if err != nil {
		closeAll()
		return fmt.Errorf("listen http: %w", err)
	}
	httpsL, err := listen(f.httpsPort)
	if err != nil {
		closeAll()
		return fmt.Errorf("listen https: %w", err)
	}
	dnsL, err := listen(f.dnsPort)
	if err != nil {
		closeAll()
		return fmt.Errorf("listen dns tcp: %w", err)
	}
	dnsPC, err := lc.ListenPacket(ctx, "udp", addr(f.dnsPort))
	if err != nil {
		closeAll()
		return fmt.Errorf("listen dns udp: %w", err)
	}

	errc := make(chan error, 3)
	go func() { errc <- p.ServeHTTP(httpL) }()
	go func() { errc <- p.ServeTLS(httpsL) }()
	go func() { errc <- p.ServeDNS(dnsPC, dnsL) }()

	// The CA file is the readiness signal: the sandbox starts the agent
	// only once it exists, so it is written after every listener is bound,
	// and atomically so a reader never sees half of it.
	if err := atomicfile.Write(f.caCertOut, p.CACertPEM(), 0o644); err != nil {
		_ = p.Shutdown(context.Background())
		return fmt.Errorf("write CA certificate: %w", err)
	}
	logger.Info("proxy ready", "listen_ip", f.listenIP, "bind_ip", f.bindIP,
		"http_port", f.httpPort, "https_port", f.httpsPort, "dns_port", f.dnsPort)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	shutErr := p.Shutdown(sctx)
	if serveErr != nil {
		return serveErr
	}
	if shutErr != nil && !errors.Is(shutErr, context.DeadlineExceeded) {
		return shutErr
	}
	logger.Info("proxy stopped")
	return nil
}
