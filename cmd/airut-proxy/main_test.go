package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/elf"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/airut/airut/internal/proxy"
	"github.com/airut/airut/internal/secrets"
	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

// buildBinary builds the static binary the proxy container runs.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "airut-proxy")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	// A port free for TCP and UDP at once, for DNS.
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", l.Addr().String())
		l.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

func upstreamTLS(t *testing.T, names ...string) (*httptest.Server, []byte, chan http.Header) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ca, &leafKey.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	headers := make(chan http.Header, 10)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		headers <- r.Header.Clone()
		io.WriteString(w, "hello from upstream")
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), headers
}

func TestBinaryEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	t.Run("static", func(t *testing.T) {
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Error("binary has an ELF interpreter; want a static binary")
			}
		}
	})

	for _, eof := range []bool{false, true} {
		name := "stopped by SIGTERM"
		if eof {
			name = "stopped by the end of its input"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			up, upCA, upHeaders := upstreamTLS(t, "api.github.com")
			write := func(name string, data []byte) string {
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, data, 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			}
			const real = "ghp_RealToken000000000000000000000000000"
			m, err := secrets.NewMap(map[string]secrets.Masked{
				"GH_TOKEN": {Value: real, Scopes: []string{"api.github.com"}, Headers: []string{"Authorization"}},
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			replPath := filepath.Join(dir, "replacements.json")
			if err := m.WriteReplacementFile(replPath); err != nil {
				t.Fatal(err)
			}
			surrogate := m.Env()["GH_TOKEN"]
			caOut := filepath.Join(dir, "ca.pem")
			logPath := filepath.Join(dir, "network-sandbox.log")
			httpPort, httpsPort, dnsPort := freePort(t), freePort(t), freePort(t)
			var stdout, stderr bytes.Buffer
			args := []string{
				"--listen-ip", "127.0.0.1",
				"--allowlist", write("allowlist.yaml", []byte("domains: [api.github.com]\n")),
				"--replacements", replPath,
				"--ca-cert-out", caOut,
				"--network-log", logPath,
				"--resolve", "api.github.com=" + up.Listener.Addr().String(),
				"--upstream-ca", write("upstream-ca.pem", upCA),
				"--dns-port", strconv.Itoa(dnsPort),
				"--http-port", strconv.Itoa(httpPort),
				"--https-port", strconv.Itoa(httpsPort),
			}
			if eof {
				args = append(args, "--stop-on-eof")
			}
			cmd := exec.Command(bin, args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{})
			var exitErr error
			go func() { exitErr = cmd.Wait(); close(exited) }()
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
			})

			// Readiness: the CA file appears once every listener is bound.
			var caPEM []byte
			deadline := time.Now().Add(30 * time.Second)
			for caPEM == nil {
				select {
				case <-exited:
					t.Fatalf("proxy exited early: %v\n%s", exitErr, stderr.String())
				default:
				}
				if b, err := os.ReadFile(caOut); err == nil {
					caPEM = b
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no CA file after 30s\n%s", stderr.String())
				}
				time.Sleep(20 * time.Millisecond)
			}

			t.Run("dns", func(t *testing.T) {
				q := new(dns.Msg)
				q.SetQuestion("api.github.com.", dns.TypeA)
				resp, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(q, net.JoinHostPort("127.0.0.1", strconv.Itoa(dnsPort)))
				if err != nil {
					t.Fatal(err)
				}
				if len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "127.0.0.1" {
					t.Errorf("answer = %v; want api.github.com -> 127.0.0.1", resp.Answer)
				}
			})

			t.Run("https through the proxy", func(t *testing.T) {
				roots := x509.NewCertPool()
				roots.AppendCertsFromPEM(caPEM)
				c := &http.Client{Transport: &http.Transport{
					TLSClientConfig: &tls.Config{RootCAs: roots},
					DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
						var d net.Dialer
						return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", strconv.Itoa(httpsPort)))
					},
				}}
				req, _ := http.NewRequest("GET", "https://api.github.com/repos/acme/app", nil)
				req.Header.Set("Authorization", "token "+surrogate)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(body) != "hello from upstream" {
					t.Fatalf("got %d %q; want 200 from upstream", resp.StatusCode, body)
				}
				if got := (<-upHeaders).Get("Authorization"); got != "token "+real {
					t.Errorf("upstream Authorization = %q; want the real token", got)
				}
				resp, err = c.Get("https://evil.com/")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 403 {
					t.Errorf("evil.com: status %d; want 403", resp.StatusCode)
				}
			})

			how := "SIGTERM"
			if eof {
				// The sandbox's way: the end of its input stops it.
				how = "the end of its input"
				if err := stdin.Close(); err != nil {
					t.Fatal(err)
				}
			} else if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case <-exited:
				if exitErr != nil {
					t.Errorf("exit after %s: %v; want status 0\n%s", how, exitErr, stderr.String())
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("proxy did not exit after %s", how)
			}
			logData, err := os.ReadFile(logPath)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{
				"DNS A api.github.com -> 127.0.0.1",
				"ALLOWED GET https://api.github.com/repos/acme/app -> 200 [masked: 1]",
				"BLOCKED GET https://evil.com/ -> 403",
			}
			if diff := cmp.Diff(want, strings.Split(strings.TrimSpace(string(logData)), "\n")); diff != "" {
				t.Errorf("network log file mismatch (-want +got):\n%s", diff)
			}
			wantOut := string(logData)
			if eof {
				// Only standard output ends with the end-of-log line; the file
				// is the log alone.
				wantOut += proxy.EndOfLog + "\n"
			}
			if stdout.String() != wantOut {
				t.Errorf("stdout = %q; want %q", stdout.String(), wantOut)
			}
			if strings.Contains(stderr.String()+stdout.String(), real) {
				t.Error("the real token appears in the proxy's output")
			}
		})
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no flags", nil, "missing required flags: --allowlist, --ca-cert-out, --listen-ip"},
		{"bad resolve", []string{"--resolve", "nohost"}, `want HOST=ADDR, got "nohost"`},
		{"stray argument", []string{"--listen-ip", "1.2.3.4", "--allowlist", "a", "--ca-cert-out", "b", "extra"}, `unexpected arguments: ["extra"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := proxy.Main(context.Background(), tt.args, nil, io.Discard, io.Discard)
			if !errors.Is(err, proxy.ErrUsage) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v; want a usage error containing %q", err, tt.want)
			}
		})
	}
}
