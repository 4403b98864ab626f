package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// spareProxy starts the real binary as a spare: --wait-config in dir.
type spareProxy struct {
	dir                          string
	httpPort, httpsPort, dnsPort int
	exited                       chan struct{}
	exitErr                      error
	stderr                       *bytes.Buffer
}

func startSpare(t *testing.T, bin string) *spareProxy {
	t.Helper()
	sp := &spareProxy{dir: t.TempDir(), httpPort: freePort(t), httpsPort: freePort(t), dnsPort: freePort(t),
		exited: make(chan struct{}), stderr: &bytes.Buffer{}}
	cmd := exec.Command(bin, "--listen-ip", "127.0.0.1",
		"--wait-config", filepath.Join(sp.dir, "claim.json"), "--wait-signal", filepath.Join(sp.dir, "waiting"),
		"--dns-port", strconv.Itoa(sp.dnsPort), "--http-port", strconv.Itoa(sp.httpPort), "--https-port", strconv.Itoa(sp.httpsPort))
	cmd.Stderr = sp.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { sp.exitErr = cmd.Wait(); close(sp.exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-sp.exited })
	sp.waitFile(t, "waiting")
	return sp
}

func (sp *spareProxy) waitFile(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(sp.dir, name)); err == nil {
			return
		}
		select {
		case <-sp.exited:
			t.Fatalf("proxy exited before %s: %v\n%s", name, sp.exitErr, sp.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 30s\n%s", name, sp.stderr)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// claim writes files and then the claim naming them, atomically.
func (sp *spareProxy) claim(t *testing.T, files map[string]string, claim string) {
	t.Helper()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(sp.dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(sp.dir, ".claim.tmp")
	if err := os.WriteFile(tmp, []byte(claim), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(sp.dir, "claim.json")); err != nil {
		t.Fatal(err)
	}
}

// assertRefusesAll: a spare binds nothing, so every port refuses.
func (sp *spareProxy) assertRefusesAll(t *testing.T) {
	t.Helper()
	for _, port := range []int{sp.httpPort, sp.httpsPort, sp.dnsPort} {
		if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second); err == nil {
			c.Close()
			t.Errorf("an unclaimed proxy accepted a connection on port %d", port)
		}
	}
	if _, err := os.Stat(filepath.Join(sp.dir, "ca.pem")); err == nil {
		t.Error("an unclaimed proxy wrote a CA")
	}
}

// TestSpareWaitsForClaim: a spare proxy answers nothing until its claim
// appears; then it generates its CA, binds its listeners and enforces the
// claim's allowlist, and only that.
func TestSpareWaitsForClaim(t *testing.T) {
	bin := buildBinary(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "upstream "+r.Host) }))
	defer up.Close()
	sp := startSpare(t, bin)
	time.Sleep(50 * time.Millisecond) // a few claim polls
	sp.assertRefusesAll(t)

	args, _ := json.Marshal(map[string][]string{"args": {
		"--allowlist", filepath.Join(sp.dir, "allowlist.yaml"), "--ca-cert-out", filepath.Join(sp.dir, "ca.pem"),
		"--resolve", "allowed.test=" + up.Listener.Addr().String(), "--resolve", "other.test=" + up.Listener.Addr().String(),
	}})
	sp.claim(t, map[string]string{"allowlist.yaml": "domains: [allowed.test]\n"}, string(args))
	sp.waitFile(t, "ca.pem")
	get := func(host string) (int, string) {
		req, _ := http.NewRequest("GET", "http://127.0.0.1:"+strconv.Itoa(sp.httpPort)+"/x", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("allowed.test"); code != 200 || body != "upstream allowed.test" {
		t.Errorf("allowed host: %d %q", code, body)
	}
	if code, body := get("other.test"); code != 403 || !strings.Contains(body, "blocked_by_network_allowlist") {
		t.Errorf("host outside the claim's allowlist: %d %q", code, body)
	}
}

// TestSpareRefusesBadClaim: a claim that does not parse, that names an
// unknown field, or that tries to move the proxy's address or ports makes
// the proxy exit with an error, never serve.
func TestSpareRefusesBadClaim(t *testing.T) {
	bin := buildBinary(t)
	tests := []struct{ name, claim, want string }{
		{"not json", "{args:", "claim"},
		{"unknown field", `{"args": [], "allowlist": "x"}`, "unknown field"},
		{"moves the address", `{"args": ["--listen-ip", "10.0.0.1"]}`, "--listen-ip is fixed"},
		{"moves a port", `{"args": ["--http-port=8080"]}`, "--http-port is fixed"},
		{"nested wait", `{"args": ["-wait-config", "/x"]}`, "--wait-config is fixed"},
		{"stop on eof", `{"args": ["--stop-on-eof"]}`, "--stop-on-eof is fixed"},
		{"missing allowlist", `{"args": ["--ca-cert-out", "/nonexistent/ca.pem"]}`, "--allowlist"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sp := startSpare(t, bin)
			sp.claim(t, nil, tc.claim)
			select {
			case <-sp.exited:
			case <-time.After(30 * time.Second):
				t.Fatal("the proxy kept running on a bad claim")
			}
			if sp.exitErr == nil || !strings.Contains(sp.stderr.String(), tc.want) {
				t.Errorf("exit %v, stderr %q; want an error naming %q", sp.exitErr, sp.stderr, tc.want)
			}
			sp.assertRefusesAll(t)
		})
	}
}
