package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airut/airut/internal/allowlist"
	"golang.org/x/net/websocket"
)

// testCA issues certificates for the fake "internet" upstreams.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test upstream CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) leaf(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// seen is one request as the upstream received it.
type seen struct {
	Method     string
	Host       string
	RequestURI string
	Header     http.Header
	BodyLen    int
}

// bigBlock is what /big repeats: base64 text, so that the redactor scans
// data that looks like credentials (the worst case for its skip table), not
// zeros.
var bigBlock = func() []byte {
	raw := make([]byte, 48<<10)
	x := uint64(0x9e3779b97f4a7c15)
	for i := range raw {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		raw[i] = byte(x)
	}
	return []byte(base64.StdEncoding.EncodeToString(raw))
}()

// upstream is a fake internet host: it records what reached it, echoes
// WebSocket frames on /ws and serves n bytes on /big?n=.
type upstream struct {
	srv  *httptest.Server
	addr string
	mu   sync.Mutex
	reqs []seen
}

func upstreamHandler(u *upstream) http.Handler {
	ws := websocket.Handler(func(c *websocket.Conn) {
		for {
			var msg string
			if websocket.Message.Receive(c, &msg) != nil || websocket.Message.Send(c, msg) != nil {
				return
			}
		}
	})
	big := func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		for n > 0 {
			k := min(n, len(bigBlock))
			if _, err := w.Write(bigBlock[:k]); err != nil {
				return
			}
			n -= k
		}
	}
	// No ServeMux: it would redirect "//x" and hide what the proxy sent.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ws":
			ws.ServeHTTP(w, r)
			return
		case "/big":
			big(w, r)
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, seen{Method: r.Method, Host: r.Host, RequestURI: r.RequestURI, Header: r.Header.Clone(), BodyLen: int(n)})
		u.mu.Unlock()
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "1")
		w.Header().Set("X-Upstream", "yes")
		_, _ = io.WriteString(w, "ok")
	})
}

func newUpstream(t testing.TB, ca *testCA, names ...string) *upstream {
	t.Helper()
	u := &upstream{}
	u.srv = httptest.NewUnstartedServer(upstreamHandler(u))
	if ca != nil {
		u.srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.leaf(t, names...)}}
		u.srv.StartTLS()
	} else {
		u.srv.Start()
	}
	t.Cleanup(u.srv.Close)
	u.addr = u.srv.Listener.Addr().String()
	return u
}

// take returns and forgets the requests seen so far.
func (u *upstream) take() []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	r := u.reqs
	u.reqs = nil
	return r
}

// logBuffer collects the network log.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !bytes.HasSuffix(p, []byte("\n")) || bytes.Count(p, []byte("\n")) != 1 {
		l.lines = append(l.lines, fmt.Sprintf("BAD WRITE %q", p))
		return len(p), nil
	}
	l.lines = append(l.lines, string(p[:len(p)-1]))
	return len(p), nil
}

// take returns and forgets the lines logged so far.
func (l *logBuffer) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.lines
	l.lines = nil
	return r
}

// testProxy is a proxy serving on loopback ephemeral ports.
type testProxy struct {
	*Proxy
	log                    *logBuffer
	httpAddr, tlsAddr      string
	dnsUDPAddr, dnsTCPAddr string
	roots                  *x509.CertPool
}

const testListenIP = "10.199.1.100"

func startProxy(t testing.TB, cfg Config) *testProxy {
	t.Helper()
	lb := &logBuffer{}
	cfg.Log = lb
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = testListenIP
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	listen := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	hl, tl, dl := listen(), listen(), listen()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); _ = p.ServeHTTP(hl) }()
	go func() { defer wg.Done(); _ = p.ServeTLS(tl) }()
	go func() { defer wg.Done(); _ = p.ServeDNS(pc, dl) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		wg.Wait()
	})
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(p.CACertPEM()) {
		t.Fatal("CACertPEM holds no certificate")
	}
	return &testProxy{Proxy: p, log: lb, httpAddr: hl.Addr().String(), tlsAddr: tl.Addr().String(),
		dnsUDPAddr: pc.LocalAddr().String(), dnsTCPAddr: dl.Addr().String(), roots: roots}
}

// records parses (and forgets) the network log lines written so far.
func (px *testProxy) records(t testing.TB) []Record {
	t.Helper()
	var out []Record
	for _, l := range px.log.take() {
		r, err := ParseRecord(l)
		if err != nil {
			t.Errorf("log line %q: %v", l, err)
			continue
		}
		out = append(out, r)
	}
	return out
}

// client is an HTTP client that reaches every host through the proxy, as
// the agent does through the proxy's DNS.
func (px *testProxy) client(h2 bool) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				target := px.tlsAddr
				if strings.HasSuffix(addr, ":80") {
					target = px.httpAddr
				}
				var d net.Dialer
				return d.DialContext(ctx, network, target)
			},
			TLSClientConfig:   &tls.Config{RootCAs: px.roots},
			ForceAttemptHTTP2: h2,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// raw sends one request written by hand over a fresh connection: TLS with
// the given SNI when tlsName is non-nil, plain HTTP otherwise.
func (px *testProxy) raw(t testing.TB, tlsName *string, request string) (*http.Response, string) {
	t.Helper()
	var c net.Conn
	var err error
	if tlsName != nil {
		c, err = tls.Dial("tcp", px.tlsAddr, &tls.Config{ServerName: *tlsName, RootCAs: px.roots})
	} else {
		c, err = net.Dial("tcp", px.httpAddr)
	}
	if err != nil {
		t.Fatalf("dial proxy: %v", err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatalf("write request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

func mustAllowlist(t testing.TB, yaml string) *allowlist.Allowlist {
	t.Helper()
	al, err := allowlist.Parse([]byte(yaml), "network-allowlist.yaml")
	if err != nil {
		t.Fatalf("parse allowlist: %v", err)
	}
	return al
}

func itoa(n int) string       { return strconv.Itoa(n) }
func strconvHex(n int) string { return strconv.FormatInt(int64(n), 16) }
