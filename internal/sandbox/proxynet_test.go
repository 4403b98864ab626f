package sandbox_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airut/airut/internal/sandbox"
	"github.com/airut/airut/internal/secrets"
	"github.com/airut/airut/internal/testkit"
)

const testAllowlist = `domains:
  - other.example.test
  - private.example.test
  - loopback.example.test
  - metadata.example.test
url_prefixes:
  - host: api.example.test
    path: /echo*
  - host: api.example.test
    path: /repos/acme/*
    methods: [GET]
`

// netEnv is a network sandbox wired to local upstreams: api.example.test and
// other.example.test are pinned to an HTTPS echo server on the host; the
// private/loopback/metadata names are left to an upstream resolver that
// maps them into ranges the proxy must refuse.
type netEnv struct {
	*env
	hostIP   string
	echo     *testkit.EchoServer
	dns      *testkit.DNSServer
	provider *sandbox.ProxyNetwork
	smap     *secrets.Map
	real     string
	logMu    sync.Mutex
	netLog   []string
}

func newNetEnv(t testing.TB) *netEnv {
	t.Helper()
	e := newEnv(t)
	hostIP := testkit.HostIP(t)
	ca := testkit.NewTestCA(t)
	echo := testkit.NewEchoServer(t, ca, hostIP, "api.example.test", "other.example.test")
	dnsSrv := testkit.NewDNSServer(t, hostIP, map[string]string{
		"private.example.test": "10.0.0.1", "loopback.example.test": "127.0.0.1", "metadata.example.test": "169.254.169.254",
	})
	bins, err := testkit.BuildBinaries()
	if err != nil {
		t.Fatal(err)
	}
	proxyImage, release, err := e.cache.EnsureProxy(context.Background(), filepath.Join(bins, "airut-proxy"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	real := "ghp_" + testkit.RandomHex(18)
	smap, err := secrets.NewMap(map[string]secrets.Masked{
		"GH_TOKEN": {Value: real, Scopes: []string{"api.example.test"}, Headers: []string{"Authorization"}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The task image: base plus the overlay whose entrypoint trusts the CA.
	taskImage, releaseTask, err := e.cache.Ensure(context.Background(), buildContext(e.base, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(releaseTask)
	e.base = taskImage
	ne := &netEnv{env: e, hostIP: hostIP, echo: echo, dns: dnsSrv, smap: smap, real: real}
	ne.provider = &sandbox.ProxyNetwork{
		Runner: e.runner, ProxyImage: proxyImage, Allowlist: []byte(testAllowlist), Secrets: smap,
		Resolve:    map[string]string{"api.example.test": echo.Addr, "other.example.test": echo.Addr},
		UpstreamCA: ca.CertPEM, UpstreamDNS: dnsSrv.Addr,
		NetworkLog: func(l string) { ne.logMu.Lock(); ne.netLog = append(ne.netLog, l); ne.logMu.Unlock() },
	}
	t.Cleanup(func() {
		// The egress network is shared by design; this test's prefix owns it.
		_ = exec.Command(e.engine, "network", "rm", "-f", ne.provider.EgressNetwork()).Run()
	})
	return ne
}

func (ne *netEnv) log() []string {
	ne.logMu.Lock()
	defer ne.logMu.Unlock()
	return append([]string(nil), ne.netLog...)
}

// script runs sections of shell in one sandboxed container; each section's
// output is returned under its name.
func (ne *netEnv) script(t *testing.T, sections [][2]string) (map[string]string, []string, sandbox.Result) {
	t.Helper()
	var b strings.Builder
	for _, s := range sections {
		b.WriteString("echo '=== " + s[0] + "'\n" + s[1] + " 2>&1\n")
	}
	res, out, errOut := ne.run(t, sandbox.Spec{Network: sandbox.NetworkSandboxed, Provider: providerFor(t, ne.provider),
		Env: ne.smap.Env(), Command: []string{"sh", "-c", b.String()}, Limits: sandbox.Limits{Timeout: 5 * time.Minute}})
	got := map[string]string{}
	cur := ""
	for _, l := range out {
		if name, ok := strings.CutPrefix(l, "=== "); ok {
			cur = name
			continue
		}
		got[cur] += l + "\n"
	}
	return got, append(out, errOut...), res
}

func echoOf(t *testing.T, out string) testkit.Echo {
	t.Helper()
	_, body, ok := strings.Cut(out, "\n")
	var e testkit.Echo
	if !strings.HasPrefix(out, "STATUS 200") || !ok || json.Unmarshal([]byte(body), &e) != nil {
		t.Fatalf("not an echo response: %q", out)
	}
	return e
}

func TestNetworkSandbox(t *testing.T) {
	ne := newNetEnv(t)
	hostListener := startHostListener(t)
	// The egress network's gateway is the host's address on the bridge the
	// proxy uses: the agent must not reach it either.
	if out, err := exec.Command(ne.engine, "network", "create", ne.provider.EgressNetwork()).CombinedOutput(); err != nil {
		t.Fatalf("create egress network: %v %s", err, out)
	}
	gw, err := exec.Command(ne.engine, "network", "inspect", "--format", "{{range .Subnets}}{{.Gateway}}{{end}}", ne.provider.EgressNetwork()).Output()
	if err != nil || strings.TrimSpace(string(gw)) == "" {
		t.Fatalf("egress gateway: %v %q", err, gw)
	}
	egressGateway := strings.TrimSpace(string(gw))
	got, all, res := ne.script(t, [][2]string{
		{"allowed", "tkhttp https://api.example.test/echo?x=1"},
		{"h2", "tkhttp https://api.example.test/echo/h2"},
		{"blocked-host", "tkhttp https://evil.example.test/upload"},
		{"blocked-method", "tkhttp -X DELETE https://api.example.test/repos/acme/app"},
		{"blocked-path", "tkhttp https://api.example.test/admin"},
		{"allowed-get", "tkhttp https://api.example.test/repos/acme/app"},
		{"dotdot", "tkhttp 'https://api.example.test/repos/acme/%2e%2e/%2e%2e/admin'"},
		{"backslash", "tkhttp 'https://api.example.test/echo%5c..%5cadmin'"},
		{"trailing-dot", "tkhttp https://api.example.test./echo/dot"},
		{"trace", "tkhttp -X TRACE https://api.example.test/echo"},
		{"ip-literal", "tkhttp tcp " + ne.echo.Addr + "; tkhttp https://" + ne.echo.Addr + "/echo"},
		{"sni-mismatch", "tkhttp --host other.example.test https://api.example.test/echo"},
		{"dns-other-types", "nslookup -type=AAAA leak1.example.test; nslookup -type=TXT leak2.example.test; nslookup -type=MX leak3.example.test"},
		{"dns-a", "nslookup leak4.example.test"},
		{"tcp-host", "tkhttp tcp " + ne.hostIP + ":" + hostListener},
		{"tcp-outside", "tkhttp tcp 1.1.1.1:443"},
		{"tcp-gateway", "tkhttp tcp " + egressGateway + ":" + hostListener},
		{"ipv6", "cat /proc/sys/net/ipv6/conf/all/disable_ipv6"},
		{"bearer", `tkhttp -H "Authorization: Bearer $GH_TOKEN" https://api.example.test/echo/bearer`},
		{"basic", `tkhttp -u "x-access-token:$GH_TOKEN" https://api.example.test/echo/basic`},
		{"out-of-scope", `tkhttp -H "Authorization: Bearer $GH_TOKEN" https://other.example.test/echo`},
		{"foreign", `tkhttp -H "Authorization: Bearer my-own-token" https://api.example.test/echo/foreign`},
		{"duplicate", `tkhttp -H "Authorization: Bearer $GH_TOKEN" -H "Authorization: Bearer $GH_TOKEN" https://api.example.test/echo/dup`},
		{"ssrf-private", "tkhttp https://private.example.test/"},
		{"ssrf-loopback", "tkhttp https://loopback.example.test/"},
		{"ssrf-metadata", "tkhttp http://metadata.example.test/latest/meta-data/"},
		{"surrogate", `echo "$GH_TOKEN"`},
		{"inside", "env; cat /etc/airut/proxy-ca.pem; cat /etc/resolv.conf; ls -la /etc/airut /tmp"},
	})
	if res.Outcome != sandbox.OutcomeSuccess && res.Outcome != sandbox.OutcomeError {
		t.Fatalf("outcome %s (%s): %q", res.Outcome, res.Reason, all)
	}
	netLog := ne.log()
	hasLog := func(want string) bool {
		for _, l := range netLog {
			if strings.Contains(l, want) {
				return true
			}
		}
		return false
	}

	t.Run("allowed", func(t *testing.T) {
		e := echoOf(t, got["allowed"])
		if e.Path != "/echo?x=1" || e.Method != "GET" {
			t.Errorf("upstream saw %+v", e)
		}
		if !hasLog("ALLOWED GET https://api.example.test/echo?x=1 -> 200") {
			t.Errorf("no ALLOWED line in %q", netLog)
		}
		if !strings.HasPrefix(got["h2"], "STATUS 200 HTTP/2.0") {
			t.Errorf("HTTP/2 client: %q", got["h2"])
		}
		echoOf(t, got["allowed-get"])
		if e := echoOf(t, got["trailing-dot"]); e.Path != "/echo/dot" {
			t.Errorf("trailing dot: %+v", e)
		}
	})
	blocked := map[string]string{
		"blocked-host":   "BLOCKED POST https://evil.example.test/upload",
		"blocked-method": "BLOCKED DELETE https://api.example.test/repos/acme/app -> 403",
		"blocked-path":   "BLOCKED GET https://api.example.test/admin -> 403",
		"dotdot":         "BLOCKED GET https://api.example.test/repos/acme/%2e%2e/%2e%2e/admin -> 403",
		"trace":          "BLOCKED TRACE https://api.example.test/echo -> 403",
		"sni-mismatch":   "BLOCKED GET https://api.example.test/echo -> 403",
	}
	for name, line := range blocked {
		t.Run(name, func(t *testing.T) {
			if !strings.HasPrefix(got[name], "STATUS 403") || !strings.Contains(got[name], `"error":"blocked_by_network_allowlist"`) {
				t.Errorf("got %q; want a 403 with the allowlist JSON body", got[name])
			}
			if name != "blocked-host" && !hasLog(line) {
				t.Errorf("no %q in network log %q", line, netLog)
			}
		})
	}
	if !hasLog("BLOCKED GET https://evil.example.test/upload -> 403") {
		t.Errorf("blocked host not logged: %q", netLog)
	}
	if !strings.Contains(got["blocked-method"], "method") {
		t.Errorf("blocked method body does not say the method is the problem: %q", got["blocked-method"])
	}
	t.Run("backslash", func(t *testing.T) {
		if !strings.HasPrefix(got["backslash"], "STATUS 403") {
			t.Errorf("got %q", got["backslash"])
		}
	})
	t.Run("ip-literal", func(t *testing.T) {
		if !strings.Contains(got["ip-literal"], "CONNECT FAILED") {
			t.Errorf("direct TCP to the upstream's IP connected: %q", got["ip-literal"])
		}
	})
	t.Run("dns", func(t *testing.T) {
		for _, q := range ne.dns.Questions() {
			if strings.Contains(q, "leak") {
				t.Errorf("upstream resolver saw %q: DNS leaks", q)
			}
		}
		if strings.Contains(got["dns-other-types"], "Address") && strings.Contains(got["dns-other-types"], "::") {
			t.Errorf("AAAA answered: %q", got["dns-other-types"])
		}
		for _, l := range []string{"DNS AAAA leak1.example.test -> NOTIMP", "DNS TXT leak2.example.test -> NOTIMP", "DNS MX leak3.example.test -> NOTIMP", "DNS A leak4.example.test -> 10."} {
			if !hasLog(l) {
				t.Errorf("no %q in %q", l, netLog)
			}
		}
	})
	t.Run("no-other-route", func(t *testing.T) {
		if strings.TrimSpace(got["ipv6"]) != "1" {
			t.Errorf("IPv6 not disabled in the agent container: %q", got["ipv6"])
		}
		for _, name := range []string{"tcp-host", "tcp-outside", "tcp-gateway"} {
			if !strings.Contains(got[name], "CONNECT FAILED") {
				t.Errorf("%s: %q; want the connection to fail", name, got[name])
			}
		}
	})
	t.Run("credentials", func(t *testing.T) {
		surrogate := strings.TrimSpace(got["surrogate"])
		if surrogate == "" || surrogate == ne.real || !strings.HasPrefix(surrogate, "ghp_") || len(surrogate) != len(ne.real) {
			t.Fatalf("container sees %q; want a ghp_ surrogate of the real length", surrogate)
		}
		h := testkit.HashValue
		if e := echoOf(t, got["bearer"]); len(e.Authorization) != 1 || e.Authorization[0] != h("Bearer "+ne.real) {
			t.Errorf("scoped bearer: upstream saw %q; want the real value", e.Authorization)
		}
		wantBasic := "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+ne.real))
		if e := echoOf(t, got["basic"]); len(e.Authorization) != 1 || e.Authorization[0] != h(wantBasic) {
			t.Errorf("scoped basic: upstream saw %q; want %q", e.Authorization, wantBasic)
		}
		if e := echoOf(t, got["out-of-scope"]); len(e.Authorization) != 1 || e.Authorization[0] != h("Bearer "+surrogate) {
			t.Errorf("out of scope: upstream saw %q; want the surrogate", e.Authorization)
		}
		if e := echoOf(t, got["foreign"]); len(e.Authorization) != 0 {
			t.Errorf("foreign token reached upstream: %q", e.Authorization)
		}
		if !hasLog("STRIPPED Authorization on api.example.test") {
			t.Errorf("no STRIPPED line in %q", netLog)
		}
		if e := echoOf(t, got["duplicate"]); len(e.Authorization) != 1 || e.Authorization[0] != h("Bearer "+ne.real) {
			t.Errorf("duplicates: upstream saw %q; want one real header", e.Authorization)
		}
		if !hasLog("[masked: 1]") {
			t.Errorf("no [masked: 1] tag in %q", netLog)
		}
	})
	t.Run("ssrf", func(t *testing.T) {
		for _, name := range []string{"ssrf-private", "ssrf-loopback", "ssrf-metadata"} {
			if strings.HasPrefix(got[name], "STATUS 200") {
				t.Errorf("%s reached: %q", name, got[name])
			}
		}
		for _, host := range []string{"private.example.test", "loopback.example.test", "metadata.example.test"} {
			found := false
			for _, l := range netLog {
				if strings.Contains(l, host) && (strings.HasPrefix(l, "ERROR") || strings.HasPrefix(l, "BLOCKED")) {
					found = true
				}
			}
			if !found {
				t.Errorf("no refusal of %s logged: %q", host, netLog)
			}
		}
	})
	t.Run("real-secret-nowhere", func(t *testing.T) {
		for _, l := range append(all, netLog...) {
			if strings.Contains(l, ne.real) {
				t.Fatalf("real secret visible: %q", l)
			}
		}
		if !strings.Contains(got["inside"], "BEGIN CERTIFICATE") || !strings.Contains(got["inside"], "SSL_CERT_FILE=") {
			t.Errorf("CA not installed: %q", got["inside"])
		}
	})
}

// startHostListener opens a TCP listener on every host address; the
// sandbox must not be able to reach it.
func startHostListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

func TestProxyDeathCutsNetwork(t *testing.T) {
	ne := newNetEnv(t)
	ws := t.TempDir()
	var once sync.Once
	var mu sync.Mutex
	var lines []string
	spec := sandbox.Spec{Network: sandbox.NetworkSandboxed, Provider: ne.provider, Image: ne.base, Context: "death",
		Mounts: []sandbox.Mount{{Source: ws, Target: "/workspace"}}, Limits: sandbox.Limits{Timeout: 3 * time.Minute},
		Command: []string{"sh", "-c", `tkhttp https://api.example.test/echo/before; echo READY
while [ ! -f /workspace/go ]; do sleep 0.1; done
tkhttp https://api.example.test/echo/after; tkhttp tcp ` + ne.echo.Addr + `; nslookup api.example.test; echo DONE`}}
	spec.Stdout = func(l []byte) {
		mu.Lock()
		lines = append(lines, string(l))
		mu.Unlock()
		if string(l) == "READY" {
			once.Do(func() {
				out, err := exec.Command(ne.engine, "ps", "--filter", "name=^"+ne.prefix+"-death-.*-proxy$", "--format", "{{.Names}}").Output()
				if err != nil || strings.TrimSpace(string(out)) == "" {
					t.Errorf("proxy container not found: %v %q", err, out)
				}
				for _, n := range strings.Fields(string(out)) {
					_ = exec.Command(ne.engine, "kill", n).Run()
				}
				_ = os.WriteFile(filepath.Join(ws, "go"), nil, 0o644)
			})
		}
	}
	res := ne.runner.Run(context.Background(), spec)
	all := strings.Join(lines, "\n")
	if !strings.Contains(all, "READY") || !strings.Contains(all, "DONE") {
		t.Fatalf("script did not run through (outcome %s %s): %s", res.Outcome, res.Reason, all)
	}
	before, after, _ := strings.Cut(all, "READY")
	if !strings.Contains(before, "STATUS 200") {
		t.Fatalf("request before the proxy died failed: %s", before)
	}
	if strings.Contains(after, "STATUS") || strings.Contains(after, "CONNECTED") {
		t.Fatalf("network still usable after the proxy died: %s", after)
	}
}

// TestNetworkLogFollowsProxyOutput: the network log comes from the proxy's
// standard output, every line in order, the last request's line included
// by the time Run returns; and the proxy runs under its CPU and memory
// limits.
func TestNetworkLogFollowsProxyOutput(t *testing.T) {
	ne := newNetEnv(t)
	var b strings.Builder
	const n = 12
	for i := range n {
		fmt.Fprintf(&b, "tkhttp https://api.example.test/echo/seq-%02d >/dev/null\n", i)
	}
	// The last request is the command's last act: its log line is written
	// as the command exits, and must not be lost at teardown.
	b.WriteString("echo inspect; tkhttp https://api.example.test/echo/last >/dev/null\n")
	var limits string
	spec := sandbox.Spec{Image: ne.base, Network: sandbox.NetworkSandboxed, Provider: ne.provider, Context: "netlog",
		Command: []string{"sh", "-c", b.String()},
		Limits:  sandbox.Limits{Timeout: 3 * time.Minute}}
	spec.Stdout = func(l []byte) {
		if string(l) != "inspect" {
			return
		}
		out, err := exec.Command(ne.engine, "ps", "--filter", "name=^"+ne.prefix+"-netlog-.*-proxy$",
			"--format", "{{.Names}}").Output()
		if err != nil || strings.TrimSpace(string(out)) == "" {
			limits = fmt.Sprintf("no proxy: %v", err)
			return
		}
		lim, _ := exec.Command(ne.engine, "inspect", "--format", "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}",
			strings.TrimSpace(string(out))).Output()
		limits = strings.TrimSpace(string(lim))
	}
	res := ne.runner.Run(context.Background(), spec)
	if res.Outcome != sandbox.OutcomeSuccess {
		t.Fatalf("outcome %s (%s)", res.Outcome, res.Reason)
	}
	var got []string
	for _, l := range ne.log() {
		if strings.HasPrefix(l, "ALLOWED GET https://api.example.test/echo/") {
			got = append(got, strings.Fields(l)[2])
		}
	}
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("https://api.example.test/echo/seq-%02d", i))
	}
	want = append(want, "https://api.example.test/echo/last")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("network log requests:\n%s\nwant, in order:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	host := sandbox.ProbeHost(context.Background(), ne.runner.Runtime())
	if want := fmt.Sprintf("1000000000 %d %d", 512<<20, sandbox.DefaultProxyPids); limits != want && host.LimitsEnforceable {
		t.Errorf("proxy limits (nano-cpus memory pids) = %q; want %q", limits, want)
	}
}
