package testkit

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/airut/airut/internal/testkit/fakeapi"
)

// HostIP returns this machine's address on its default route: what a
// container reaches the host by (rootful through the bridge, rootless
// through slirp4netns), unlike 127.0.0.1.
func HostIP(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile("/proc/net/route")
	if err != nil {
		t.Fatal(err)
	}
	iface := ""
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 2 && f[1] == "00000000" {
			iface = f[0]
			break
		}
	}
	if iface == "" {
		t.Fatal("no default route: cannot tell containers how to reach the host")
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	t.Fatalf("no IPv4 address on %s", iface)
	return ""
}

// TestCA is a certificate authority for upstream test servers.
type TestCA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
}

// NewTestCA makes a fresh CA.
func NewTestCA(t testing.TB) *TestCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "airut test upstream CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &TestCA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Leaf issues a server certificate for names.
func (ca *TestCA) Leaf(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: names, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// Echo is what EchoServer answers: the request as the upstream saw it.
// Authorization values are answered as SHA-256 hashes, so a real credential
// the proxy injected never travels back into the sandbox through the test
// upstream; Requests() has them in clear for assertions.
type Echo struct {
	Method        string   `json:"method"`
	Host          string   `json:"host"`
	Path          string   `json:"path"` // raw, undecoded, with query
	Authorization []string `json:"authorization"`
	Body          string   `json:"body"`
}

// HashValue is how an Echo answer shows an Authorization value.
func HashValue(v string) string {
	sum := sha256.Sum256([]byte(v))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// EchoServer is an HTTPS upstream on 0.0.0.0 that echoes each request as
// JSON and remembers them.
type EchoServer struct {
	Addr string // host-reachable ip:port
	Port string
	mu   sync.Mutex
	seen []Echo
}

// NewEchoServer starts an echo upstream with a certificate for names.
func NewEchoServer(t testing.TB, ca *TestCA, hostIP string, names ...string) *EchoServer {
	t.Helper()
	s := &EchoServer{}
	s.Port = ServeTLS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		e := Echo{Method: r.Method, Host: r.Host, Path: r.RequestURI, Authorization: r.Header.Values("Authorization"), Body: string(body)}
		s.mu.Lock()
		s.seen = append(s.seen, e)
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		answer := e
		answer.Authorization = nil
		for _, a := range e.Authorization {
			answer.Authorization = append(answer.Authorization, HashValue(a))
		}
		_ = json.NewEncoder(w).Encode(answer)
	}), ca.Leaf(t, names...))
	s.Addr = net.JoinHostPort(hostIP, s.Port)
	return s
}

// Requests returns every request the server has seen.
func (s *EchoServer) Requests() []Echo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Echo(nil), s.seen...)
}

// DNSServer is an upstream resolver on 0.0.0.0 (UDP) that answers A
// queries from a fixed table and counts every question it gets, so tests
// can prove a name never reached it.
type DNSServer struct {
	Addr string
	mu   sync.Mutex
	qs   []string
}

// NewDNSServer starts a resolver answering names in table (name → IPv4).
func NewDNSServer(t testing.TB, hostIP string, table map[string]string) *DNSServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(pc.LocalAddr().String())
	s := &DNSServer{Addr: net.JoinHostPort(hostIP, port)}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, q := range r.Question {
			s.mu.Lock()
			s.qs = append(s.qs, dns.TypeToString[q.Qtype]+" "+strings.TrimSuffix(q.Name, "."))
			s.mu.Unlock()
			if ip, ok := table[strings.TrimSuffix(strings.ToLower(q.Name), ".")]; ok && q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: net.ParseIP(ip)})
			}
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return s
}

// Questions returns "TYPE name" for every question received.
func (s *DNSServer) Questions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.qs...)
}

// RandomHex returns n random bytes as hex, for secrets and markers.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// AnthropicUpstream is the fake Messages API served over TLS on 0.0.0.0
// with a certificate for api.anthropic.com, for the proxy to reach through
// network.resolve as if it were the real service.
type AnthropicUpstream struct {
	API  *fakeapi.Server
	Addr string // host-reachable ip:port
}

// AnthropicHost is the real API's host name: what the CLI dials and what
// the allowlist and masked secret scopes name.
const AnthropicHost = "api.anthropic.com"

// NewAnthropicUpstream starts the fake API accepting keys.
func NewAnthropicUpstream(t testing.TB, ca *TestCA, hostIP string, keys ...string) *AnthropicUpstream {
	t.Helper()
	api := fakeapi.New(keys...)
	port := ServeTLS(t, api, ca.Leaf(t, AnthropicHost))
	return &AnthropicUpstream{API: api, Addr: net.JoinHostPort(hostIP, port)}
}

// ServeTLS serves h over TLS on 0.0.0.0 (reachable from containers) until
// the test ends, and returns the port.
func ServeTLS(t testing.TB, h http.Handler, cert tls.Certificate) string {
	t.Helper()
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.ServeTLS(l, "", "") }()
	t.Cleanup(func() { srv.Close() })
	return port
}
