package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/websocket"
)

func TestWebSocket(t *testing.T) {
	e := newEnv(t, nil)
	ws := dialWS(t, e.px, "api.example.com", "/ws", "")
	defer ws.Close()
	for _, msg := range []string{"hello", strings.Repeat("x", 100<<10)} {
		if err := websocket.Message.Send(ws, msg); err != nil {
			t.Fatal(err)
		}
		var got string
		if err := websocket.Message.Receive(ws, &got); err != nil {
			t.Fatal(err)
		}
		if got != msg {
			t.Errorf("echo of %d bytes came back as %d bytes", len(msg), len(got))
		}
	}
	if diff := cmp.Diff([]string{"ALLOWED GET https://api.example.com/ws -> 101"}, e.px.log.take()); diff != "" {
		t.Errorf("network log mismatch (-want +got):\n%s", diff)
	}

	t.Run("closed by Shutdown", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.px.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		var got string
		err := websocket.Message.Receive(ws, &got)
		if err == nil {
			t.Fatalf("read after Shutdown succeeded; want the connection closed")
		}
		if strings.Contains(err.Error(), "timeout") {
			t.Errorf("read after Shutdown: %v; want the connection closed, not left open", err)
		}
	})
}

func TestWebSocketBlocked(t *testing.T) {
	e := newEnv(t, nil)
	conn, err := tls.Dial("tcp", e.px.tlsAddr, &tls.Config{ServerName: "evil.com", RootCAs: e.px.roots})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cfg, _ := websocket.NewConfig("wss://evil.com/ws", "https://evil.com")
	if _, err := websocket.NewClient(cfg, conn); err == nil {
		t.Fatal("websocket to a blocked host succeeded")
	}
	if diff := cmp.Diff([]string{"BLOCKED GET https://evil.com/ws -> 403"}, e.px.log.take()); diff != "" {
		t.Errorf("network log mismatch (-want +got):\n%s", diff)
	}
}

func TestHTTP2Client(t *testing.T) {
	e := newEnv(t, nil)
	c := e.px.client(true)
	tests := []struct {
		name, url string
		status    int
		line      string
	}{
		{"allowed", "https://api.example.com/h2?x=1", 200, "ALLOWED GET https://api.example.com/h2?x=1 -> 200"},
		{"blocked", "https://evil.com/h2", 403, "BLOCKED GET https://evil.com/h2 -> 403"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.px.log.take()
			resp, err := c.Get(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 {
				t.Errorf("protocol = %s; want HTTP/2", resp.Proto)
			}
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d; want %d (%s)", resp.StatusCode, tt.status, body)
			}
			if diff := cmp.Diff([]string{tt.line}, e.px.log.take()); diff != "" {
				t.Errorf("network log mismatch (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("host differs from SNI", func(t *testing.T) {
		e.px.log.take()
		req, _ := http.NewRequest("GET", "https://api.example.com/", nil)
		req.Host = "evil.com"
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Errorf("status = %d; want 403", resp.StatusCode)
		}
	})
}

func TestCA(t *testing.T) {
	px := startProxy(t, Config{Allowlist: mustAllowlist(t, "domains: []\n")})
	pemBytes := px.CACertPEM()
	if strings.Contains(string(pemBytes), "PRIVATE") {
		t.Fatal("CACertPEM contains a private key")
	}
	block, rest := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" || len(strings.TrimSpace(string(rest))) != 0 {
		t.Fatalf("CACertPEM is not exactly one certificate: %q", pemBytes)
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := ca.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("CA key is %T; want ECDSA P-256", ca.PublicKey)
	}
	if !ca.IsCA || ca.NotAfter.Sub(ca.NotBefore) > 8*24*time.Hour {
		t.Errorf("CA IsCA=%t validity %v; want a CA valid for days, not years", ca.IsCA, ca.NotAfter.Sub(ca.NotBefore))
	}
	other := startProxy(t, Config{Allowlist: mustAllowlist(t, "domains: []\n")})
	if string(other.CACertPEM()) == string(pemBytes) {
		t.Error("two proxies share a CA; want one per task")
	}

	var leaves []*x509.Certificate
	for range 2 {
		conn, err := tls.Dial("tcp", px.tlsAddr, &tls.Config{ServerName: "Some.Host.example", RootCAs: px.roots})
		if err != nil {
			t.Fatalf("TLS with the proxy's CA: %v", err)
		}
		leaves = append(leaves, conn.ConnectionState().PeerCertificates[0])
		conn.Close()
	}
	if !leaves[0].Equal(leaves[1]) {
		t.Error("leaf minted twice for one name; want it cached")
	}
	if diff := cmp.Diff([]string{"some.host.example"}, leaves[0].DNSNames); diff != "" {
		t.Errorf("leaf names mismatch (-want +got):\n%s", diff)
	}
	if _, err := tls.Dial("tcp", px.tlsAddr, &tls.Config{ServerName: "x.example", RootCAs: other.roots}); err == nil {
		t.Error("a leaf verified against another task's CA")
	}
}

func TestNewErrors(t *testing.T) {
	al := mustAllowlist(t, "domains: []\n")
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no listen address", Config{Allowlist: al}, `listen address "": want an IPv4 address`},
		{"IPv6 listen address", Config{ListenAddr: "fd00::1", Allowlist: al}, `listen address "fd00::1": want an IPv4 address`},
		{"no allowlist", Config{ListenAddr: "10.0.0.1"}, "allowlist is required"},
		{"negative body cap", Config{ListenAddr: "10.0.0.1", Allowlist: al, MaxBody: -1}, "max body -1: must not be negative"},
		{"bad upstream dns", Config{ListenAddr: "10.0.0.1", Allowlist: al, UpstreamDNS: "1.1.1.1"}, `upstream dns "1.1.1.1": want host:port`},
		{"bad upstream CA", Config{ListenAddr: "10.0.0.1", Allowlist: al, UpstreamCA: []byte("nope")}, "upstream CA: no PEM certificate found"},
		{"bad resolve host", Config{ListenAddr: "10.0.0.1", Allowlist: al, Resolve: map[string]string{"bad host": "1.2.3.4"}}, "resolve bad host: invalid host"},
		{"empty resolve address", Config{ListenAddr: "10.0.0.1", Allowlist: al, Resolve: map[string]string{"a.com": ""}}, `resolve a.com="": empty pinned address`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v; want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestNetLogOneLinePerRecord(t *testing.T) {
	lb := &logBuffer{}
	l := &netLog{w: lb}
	l.record(Record{Verdict: VerdictBlocked, Method: "GET", URL: "http://x/\nALLOWED GET forged -> 200", Status: 403})
	want := []string{"BLOCKED GET http://x/%0AALLOWED%20GET%20forged%20->%20200 -> 403"}
	if diff := cmp.Diff(want, lb.take()); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
}
