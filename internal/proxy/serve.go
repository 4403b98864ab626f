package proxy

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
	"github.com/airut/airut/internal/secrets"
)

// shutdownTimeout bounds the drain on SIGTERM: the sandbox tears the
// container down soon after anyway.
const shutdownTimeout = 5 * time.Second

// ErrUsage is matched by every error about the command line (exit status
// 2 for airut-proxy).
var ErrUsage = errors.New("usage")

func usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// ServeConfig is one proxy process as the sandbox starts it: files in its
// container, its address and ports.
type ServeConfig struct {
	ListenIP         string            // the proxy's IPv4 on the task network: every DNS A answer. Required.
	BindIP           string            // address the listeners bind to. Default ListenIP.
	AllowlistFile    string            // network allowlist YAML. Required.
	ReplacementsFile string            // credential replacement file (secrets.WriteReplacementFile). Default none.
	CACertOut        string            // where the per-task CA certificate goes, once every listener is bound. Required.
	NetworkLogFile   string            // the network log is appended here too. Default stdout only.
	UpstreamDNS      string            // HOST:PORT of the resolver for upstream names. Default the system's.
	Resolve          map[string]string // host pins, exempt from the address guard. Default none.
	UpstreamCAFile   string            // PEM of extra CAs for upstream TLS. Default none.
	MaxBody          int64             // cap on a held request body. Default DefaultMaxBody.
	DNSPort          int               // UDP and TCP. Default 53.
	HTTPPort         int               // Default 80.
	HTTPSPort        int               // Default 443.
	WaitConfig       string            // a spare: wait for this claim file, which supplies the other flags (claim.go). Default none.
	WaitSignal       string            // written once a spare waits for its claim. Default none.
	StopOnEOF        bool              // stop when standard input ends, and end the network log with EndOfLog. Default false.
	Stdout           io.Writer         // the network log. Default os.Stdout.
	Stderr           io.Writer         // the operational log. Default os.Stderr.
}

// Main is airut-proxy's command line: flags into a ServeConfig, then Serve.
//
// "airut-proxy hold" is the other process of the network sandbox: run in
// its own container on the task network, it does nothing until it is
// stopped, so the task network's namespace (its address, resolver and
// sysctls) exists before the agent's container joins it
// (--network container:…) and the agent's start pays no network set-up.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 1 && args[0] == "hold" {
		<-ctx.Done()
		return nil
	}
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if cfg.StopOnEOF {
		// The sandbox holds the input open for the task's life: its end
		// stops the proxy as SIGTERM would, without an engine call.
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go func() {
			_, _ = io.Copy(io.Discard, stdin)
			cancel()
		}()
	}
	if cfg.WaitConfig != "" {
		if cfg, err = awaitClaim(ctx, args, cfg.WaitConfig, cfg.WaitSignal, stderr); err != nil {
			return err
		}
	}
	cfg.Stdout, cfg.Stderr = stdout, stderr
	return Serve(ctx, cfg)
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

func parseFlags(args []string, stderr io.Writer) (ServeConfig, error) {
	c := ServeConfig{Resolve: resolveFlag{}}
	fs := flag.NewFlagSet("airut-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.ListenIP, "listen-ip", "", "the proxy's IPv4 address on the internal network: every DNS A answer (required)")
	fs.StringVar(&c.BindIP, "bind-ip", "", "address the listeners bind to (default: --listen-ip)")
	fs.StringVar(&c.AllowlistFile, "allowlist", "", "network allowlist YAML file (required)")
	fs.StringVar(&c.ReplacementsFile, "replacements", "", "credential replacement map written by the gateway (optional)")
	fs.StringVar(&c.CACertOut, "ca-cert-out", "", "where to write the per-task CA certificate; written once all listeners are bound (required)")
	fs.StringVar(&c.NetworkLogFile, "network-log", "", "append the network log to this file (it always goes to stdout)")
	fs.StringVar(&c.UpstreamDNS, "upstream-dns", "", "HOST:PORT of the DNS server for upstream names (default: system resolver)")
	fs.Var(resolveFlag(c.Resolve), "resolve", "pin HOST=ADDR (repeatable; exempt from the private-address guard)")
	fs.StringVar(&c.UpstreamCAFile, "upstream-ca", "", "PEM file of extra CAs trusted for upstream TLS")
	fs.Int64Var(&c.MaxBody, "max-body", DefaultMaxBody, "cap in bytes on a request body held for inspection")
	fs.IntVar(&c.DNSPort, "dns-port", 53, "DNS port (UDP and TCP)")
	fs.IntVar(&c.HTTPPort, "http-port", 80, "HTTP port")
	fs.IntVar(&c.HTTPSPort, "https-port", 443, "HTTPS port")
	fs.StringVar(&c.WaitConfig, "wait-config", "", "start as a spare: bind nothing until this claim file appears, then take the other flags from it")
	fs.StringVar(&c.WaitSignal, "wait-signal", "", "with --wait-config: write this file once waiting")
	fs.BoolVar(&c.StopOnEOF, "stop-on-eof", false, "stop when standard input ends, and end the network log on standard output with the end-of-log line")
	if err := fs.Parse(args); err != nil {
		return c, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	var missing []string
	for name, v := range map[string]string{"--listen-ip": c.ListenIP, "--allowlist": c.AllowlistFile, "--ca-cert-out": c.CACertOut} {
		if v == "" && (c.WaitConfig == "" || name == "--listen-ip") {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return c, usagef("missing required flags: %s", strings.Join(slices.Sorted(slices.Values(missing)), ", "))
	}
	if fs.NArg() > 0 {
		return c, usagef("unexpected arguments: %q", fs.Args())
	}
	return c, nil
}

// Serve runs one proxy until ctx ends: it loads the files, binds every
// listener, writes the CA certificate (the sandbox's readiness signal),
// serves, and drains on cancellation.
func Serve(ctx context.Context, c ServeConfig) error {
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.Stderr == nil {
		c.Stderr = os.Stderr
	}
	if c.BindIP == "" {
		c.BindIP = c.ListenIP
	}
	defPort := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defPort(&c.DNSPort, 53)
	defPort(&c.HTTPPort, 80)
	defPort(&c.HTTPSPort, 443)
	logger := slog.New(slog.NewTextHandler(c.Stderr, nil))
	al, err := allowlist.Load(c.AllowlistFile)
	if err != nil {
		return err
	}
	var repl *secrets.Replacements
	if c.ReplacementsFile != "" {
		if repl, err = secrets.LoadReplacementFile(c.ReplacementsFile); err != nil {
			return err
		}
	}
	var upstreamCA []byte
	if c.UpstreamCAFile != "" {
		if upstreamCA, err = os.ReadFile(c.UpstreamCAFile); err != nil {
			return fmt.Errorf("read upstream CA: %w", err)
		}
	}
	netlog := c.Stdout
	if c.NetworkLogFile != "" {
		lf, err := os.OpenFile(c.NetworkLogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("open network log: %w", err)
		}
		defer lf.Close()
		netlog = io.MultiWriter(lf, c.Stdout)
	}
	p, err := New(Config{
		ListenAddr:   c.ListenIP,
		Allowlist:    al,
		Replacements: repl,
		UpstreamDNS:  c.UpstreamDNS,
		Resolve:      c.Resolve,
		UpstreamCA:   upstreamCA,
		MaxBody:      c.MaxBody,
		Log:          netlog,
		Logger:       logger,
	})
	if err != nil {
		return err
	}

	// Binding is an undo stack: a listener that fails closes the ones
	// before it.
	var lc net.ListenConfig
	addr := func(port int) string { return net.JoinHostPort(c.BindIP, strconv.Itoa(port)) }
	var undo []io.Closer
	fail := func(what string, err error) error {
		for i := len(undo) - 1; i >= 0; i-- {
			_ = undo[i].Close()
		}
		return fmt.Errorf("listen %s: %w", what, err)
	}
	listen := func(port int) (net.Listener, error) {
		l, err := lc.Listen(ctx, "tcp", addr(port))
		if err == nil {
			undo = append(undo, l)
		}
		return l, err
	}
	httpL, err := listen(c.HTTPPort)
	if err != nil {
		return fail("http", err)
	}
	httpsL, err := listen(c.HTTPSPort)
	if err != nil {
		return fail("https", err)
	}
	dnsL, err := listen(c.DNSPort)
	if err != nil {
		return fail("dns tcp", err)
	}
	dnsPC, err := lc.ListenPacket(ctx, "udp", addr(c.DNSPort))
	if err != nil {
		return fail("dns udp", err)
	}

	errc := make(chan error, 3)
	go func() { errc <- p.ServeHTTP(httpL) }()
	go func() { errc <- p.ServeTLS(httpsL) }()
	go func() { errc <- p.ServeDNS(dnsPC, dnsL) }()

	// The CA file is the readiness signal: the sandbox starts the agent
	// only once it exists, so it is written after every listener is bound,
	// and atomically so a reader never sees half of it.
	if err := atomicfile.Write(c.CACertOut, p.CACertPEM(), 0o644); err != nil {
		_ = p.Shutdown(context.Background())
		return fmt.Errorf("write CA certificate: %w", err)
	}
	logger.Info("proxy ready", "listen_ip", c.ListenIP, "bind_ip", c.BindIP,
		"http_port", c.HTTPPort, "https_port", c.HTTPSPort, "dns_port", c.DNSPort)

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
	if c.StopOnEOF {
		// Nothing is logged after the drain: this line tells the sandbox
		// that the network log is whole, before the engine has cleaned the
		// container up.
		if _, err := io.WriteString(c.Stdout, EndOfLog+"\n"); err != nil {
			return fmt.Errorf("network log: %w", err)
		}
	}
	return nil
}

// EndOfLog is the network log's last line on standard output with
// --stop-on-eof: the proxy has stopped and logged everything.
const EndOfLog = "# airut-proxy: end of network log"
