package sandbox_test

import (
	"context"
	"encoding/base64"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airut/airut/internal/proxy"
	"github.com/airut/airut/internal/sandbox"
	"github.com/airut/airut/internal/secrets"
	"github.com/airut/airut/internal/testkit"
)

// The proxy's second hardening round (SPEC S4, S5.2), class by class, in
// the real sandbox: the real airut-proxy binary in its FROM scratch image
// on a real internal network, tkhttp in the agent container, and an
// upstream that is lenient on purpose (testkit.Lenient). Every section of
// one container run is checked three ways: what the upstream received,
// what the agent received, and the network log records.

const hardeningAllowlist = `domains:
  - api.scoped.test
  - http.scoped.test
  - api.open.test
  - http.open.test
url_prefixes:
  - host: rules.open.test
    path: /override*
    methods: [GET, POST]
  - host: rules.open.test
    path: /files/pub/*
    methods: [GET]
`

type hardeningEnv struct {
	*env
	up       *testkit.Lenient
	provider *sandbox.ProxyNetwork
	smap     *secrets.Map
	real     string
	mu       sync.Mutex
	lines    []string
}

func newHardeningEnv(t *testing.T) *hardeningEnv {
	t.Helper()
	e := newEnv(t)
	hostIP := testkit.HostIP(t)
	ca := testkit.NewTestCA(t)
	up := testkit.NewLenient(t, ca, hostIP, "api.scoped.test", "api.open.test", "rules.open.test")
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
		"GH_TOKEN": {Value: real, Scopes: []string{"*.scoped.test"}, Headers: []string{"Authorization"}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	taskImage, releaseTask, err := e.cache.Ensure(context.Background(), buildContext(e.base, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(releaseTask)
	e.base = taskImage
	he := &hardeningEnv{env: e, up: up, smap: smap, real: real}
	he.provider = &sandbox.ProxyNetwork{
		Runner: e.runner, ProxyImage: proxyImage, Allowlist: []byte(hardeningAllowlist), Secrets: smap,
		Resolve: map[string]string{
			"api.scoped.test": up.TLSAddr, "api.open.test": up.TLSAddr, "rules.open.test": up.TLSAddr,
			"http.scoped.test": up.HTTPAddr, "http.open.test": up.HTTPAddr,
		},
		UpstreamCA: ca.CertPEM,
		NetworkLog: func(l string) { he.mu.Lock(); he.lines = append(he.lines, l); he.mu.Unlock() },
	}
	t.Cleanup(func() { _ = exec.Command(e.engine, "network", "rm", "-f", he.provider.EgressNetwork()).Run() })
	return he
}

// records parses every network log line: each must be one record.
func (he *hardeningEnv) records(t *testing.T) []proxy.Record {
	t.Helper()
	he.mu.Lock()
	defer he.mu.Unlock()
	var out []proxy.Record
	for _, l := range he.lines {
		r, err := proxy.ParseRecord(l)
		if err != nil {
			t.Errorf("network log line is not one record: %v", err)
			continue
		}
		out = append(out, r)
	}
	return out
}

// section is one step of the agent's script and what it must show.
type section struct {
	name, script string
}

func (he *hardeningEnv) run(t *testing.T, sections []section) (map[string]string, string) {
	t.Helper()
	var b strings.Builder
	for _, s := range sections {
		b.WriteString("echo '=== " + s.name + "'\n" + s.script + " 2>&1\n")
	}
	res, out, errOut := he.env.run(t, sandbox.Spec{Network: sandbox.NetworkSandboxed, Provider: providerFor(t, he.provider),
		Env: he.smap.Env(), Command: []string{"sh", "-c", b.String()}, Limits: sandbox.Limits{Timeout: 5 * time.Minute}})
	if res.Outcome != sandbox.OutcomeSuccess && res.Outcome != sandbox.OutcomeError {
		t.Fatalf("outcome %s (%s): %q %q", res.Outcome, res.Reason, out, errOut)
	}
	got := map[string]string{}
	cur := ""
	for _, l := range out {
		if name, ok := strings.CutPrefix(l, "=== "); ok {
			cur = name
			continue
		}
		got[cur] += l + "\n"
	}
	return got, strings.Join(append(out, errOut...), "\n")
}

// upstreamFor returns the requests whose target carries the marker m=name.
func (he *hardeningEnv) upstreamFor(name string) []testkit.LenientRequest {
	var out []testkit.LenientRequest
	for _, r := range he.up.Requests() {
		if strings.Contains(r.Target, "m="+name) && !strings.Contains(r.Target, "m="+name+"-") {
			out = append(out, r)
		}
	}
	return out
}

func recordsFor(recs []proxy.Record, marker string) []proxy.Record {
	var out []proxy.Record
	for _, r := range recs {
		if strings.Contains(r.URL, "m="+marker) && !strings.Contains(r.URL, "m="+marker+"-") {
			out = append(out, r)
		}
	}
	return out
}

// realForms are the forms of the real value that must never reach the
// agent: raw, and 24 characters from inside its base64 at every alignment,
// standard and URL-safe (so a Basic pair too).
func realForms(real string) []string {
	forms := []string{real}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for k := range 3 {
			s := enc.EncodeToString([]byte(strings.Repeat("a", k) + real))
			start := (k+2)/3*4 + 4 // past every character the padding touches
			forms = append(forms, s[start:start+24])
		}
	}
	return forms
}

func TestProxyHardening(t *testing.T) {
	he := newHardeningEnv(t)
	sur := he.smap.Env()["GH_TOKEN"]
	const own = "ghp_0wn0wn0wn0wn0wn0wn0wn0wn0wn0wn0wn0wn0"
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	wsUpgrade := `Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ` + key + `\r\n`
	h2cUpgrade := `Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n`
	protoFlags := [][2]string{{"--h1", "h1"}, {"", "h2"}}
	reflectModes := []string{"raw", "b64", "b64url", "json", "html", "gzip", "deflate", "drip", "trailer"}

	var sections []section
	add := func(name, script string) { sections = append(sections, section{name, script}) }
	// 1. Credentials in the clear.
	add("plain-bearer", `tkhttp -H "Authorization: Bearer $GH_TOKEN" 'http://http.scoped.test/reflect?m=plain-bearer'`)
	add("plain-basic", `tkhttp -u "x-access-token:$GH_TOKEN" 'http://http.scoped.test/reflect?m=plain-basic'`)
	add("tls-bearer", `tkhttp -H "Authorization: Bearer $GH_TOKEN" 'https://api.scoped.test/reflect?m=tls-bearer'`)
	// 2. Reflection, every form, HTTP/1.1 and HTTP/2, Bearer and Basic.
	for _, mode := range reflectModes {
		for _, proto := range []string{"h1", "h2"} {
			flag := ""
			if proto == "h1" {
				flag = "--h1 "
			}
			add("refl-"+mode+"-"+proto, `tkhttp -i `+flag+`-H "Authorization: Bearer $GH_TOKEN" -H 'Accept-Encoding: gzip, br' 'https://api.scoped.test/reflect/`+mode+`?m=refl-`+mode+`-`+proto+`'`)
			add("reflb-"+mode+"-"+proto, `tkhttp -i `+flag+`-u "x-access-token:$GH_TOKEN" 'https://api.scoped.test/reflect/`+mode+`?m=reflb-`+mode+`-`+proto+`'`)
		}
	}
	add("refl-truncate", `tkhttp -i -H "Authorization: Bearer $GH_TOKEN" 'https://api.scoped.test/reflect/truncate?n=70&m=refl-truncate'`)
	add("refl-br", `tkhttp -i -H "Authorization: Bearer $GH_TOKEN" 'https://api.scoped.test/reflect/br?m=refl-br'`)
	add("refl-ws", `tkhttp ws --greeting -H "Authorization: Bearer $GH_TOKEN" 'wss://api.scoped.test/ws?reflect=1&m=refl-ws'`)
	add("refl-unscoped", `tkhttp -H "Authorization: Bearer $GH_TOKEN" 'https://api.open.test/reflect?m=refl-unscoped'`)
	// 3. Foreign credentials beside the surrogate.
	for i, auth := range []string{"-H \"Authorization: Bearer " + own + ", Bearer $GH_TOKEN\"", "-H \"Authorization: Bearer $GH_TOKEN " + own + "\"", "-u \"" + own + ":$GH_TOKEN\""} {
		for _, pv := range protoFlags {
			name := "foreign" + strconv.Itoa(i) + "-" + pv[1]
			add(name, `tkhttp `+pv[0]+` `+auth+` 'https://api.scoped.test/x?m=`+name+`'`)
		}
	}
	// 4. Path forms upstreams normalise differently.
	paths := []struct {
		name, target, resolved string
	}{
		{"pf-tomcat", "/files/pub/..;/..;/secret", ""},
		{"pf-semicolon", "/files/pub/..%3B/secret", ""},
		{"pf-escaped", "/files/pub/%252e%252e/secret", ""},
		{"pf-fullwidth", "/files/pub/%EF%BC%8E%EF%BC%8E/secret", ""},
		{"pf-fwslash", "/files/pub%EF%BC%8F..%EF%BC%8Fsecret", ""},
		{"pf-leader", "/files/pub/%E2%80%A5/secret", ""},
		{"pf-overlong", "/files/pub/%C0%AE%C0%AE/secret", ""},
		{"pf-invalid", "/files/pub/%FF", ""},
		{"pf-dotspace", "/files/pub/..%20/secret", ""},
		{"pf-utf8", "/files/pub/%E6%97%A5.txt", "/files/pub/日.txt"},
	}
	for _, p := range paths {
		target := p.target + "?m=" + p.name
		add(p.name+"-h1", `tkhttp raw --tls rules.open.test rules.open.test:443 'GET `+target+`-h1 HTTP/1.1\r\nHost: rules.open.test\r\nConnection: close\r\n\r\n'`)
		add(p.name+"-h2", `tkhttp h2 --path '`+target+`-h2' https://rules.open.test/`)
	}
	add("pf-raw", `tkhttp raw --tls rules.open.test rules.open.test:443 'GET /files/pub/caf\xc3\xa9?m=pf-raw HTTP/1.1\r\nHost: rules.open.test\r\nConnection: close\r\n\r\n'`)
	// 5. Upgrade tunnels.
	add("up-h2c-plain", `tkhttp raw http.open.test:80 'GET /echo?m=up-h2c-plain HTTP/1.1\r\nHost: http.open.test\r\n`+h2cUpgrade+`Connection: close\r\n\r\n'`)
	add("up-h2c-tls", `tkhttp raw --tls api.open.test api.open.test:443 'GET /echo?m=up-h2c-tls HTTP/1.1\r\nHost: api.open.test\r\n`+h2cUpgrade+`\r\n'`)
	add("up-loose", `tkhttp raw --tls api.open.test api.open.test:443 'GET /loose-ws?m=up-loose HTTP/1.1\r\nHost: api.open.test\r\n`+wsUpgrade+`\r\nDELETE /admin?m=up-loose-inside HTTP/1.1\r\nHost: api.open.test\r\n\r\n'`)
	add("up-other", `tkhttp raw --tls api.open.test api.open.test:443 'GET /loose-ws?m=up-other HTTP/1.1\r\nHost: api.open.test\r\nConnection: upgrade\r\nUpgrade: tcp-tunnel\r\n\r\n'`)
	add("up-ws", `tkhttp ws --send hello 'wss://api.open.test/ws?m=up-ws'`)
	// 6. Request-target syntax and log forging.
	add("forge", `tkhttp h2 --path '/x?m=forge -> 200 [masked: 1] ALLOWED GET https://evil.test/ -> 200' https://api.open.test/`)
	// 7. Method overrides.
	for _, pv := range protoFlags {
		flag, sfx := pv[0], "-"+pv[1]
		add("mo-header"+sfx, `tkhttp `+flag+` -H 'X-HTTP-Method-Override: DELETE' 'https://rules.open.test/override?m=mo-header`+sfx+`'`)
		add("mo-xhttp"+sfx, `tkhttp `+flag+` -X POST -d x -H 'X-HTTP-Method: DELETE' 'https://rules.open.test/override?m=mo-xhttp`+sfx+`'`)
		add("mo-query"+sfx, `tkhttp `+flag+` -X POST 'https://rules.open.test/override?m=mo-query`+sfx+`&_method=DELETE'`)
		add("mo-form"+sfx, `tkhttp `+flag+` -X POST -H 'Content-Type: application/x-www-form-urlencoded' -d '_method=delete' 'https://rules.open.test/override?m=mo-form`+sfx+`'`)
	}
	add("mo-domains", `tkhttp -H 'X-HTTP-Method-Override: DELETE' 'https://api.open.test/override?m=mo-domains'`)
	// 8. WebSocket over HTTP/2: not offered, refused if tried.
	add("xconnect", `tkhttp h2 --method CONNECT --protocol websocket --path '/ws?m=xconnect' -H 'sec-websocket-version: 13' https://api.open.test/`)
	// Slowloris: the proxy closes slow connections and keeps serving.
	add("slow", `tkhttp slow --tls api.open.test api.open.test:443 40 & sleep 2; tkhttp 'https://api.open.test/echo?m=during-slow'; wait`)
	add("surrogate", `echo "$GH_TOKEN"`)

	got, all := he.run(t, sections)
	recs := he.records(t)
	upstream := func(t *testing.T, name string, want int) []testkit.LenientRequest {
		t.Helper()
		reqs := he.upstreamFor(name)
		if len(reqs) != want {
			t.Fatalf("upstream saw %d requests for %s; want %d: %+v", len(reqs), name, want, reqs)
		}
		return reqs
	}
	one := func(t *testing.T, marker string) proxy.Record {
		t.Helper()
		rs := recordsFor(recs, marker)
		if len(rs) != 1 {
			t.Fatalf("records for %s = %+v; want one", marker, rs)
		}
		return rs[0]
	}
	strippedOn := func(host, why string) int {
		n := 0
		for _, r := range recs {
			if r.Verdict == proxy.VerdictStripped && r.Header == "Authorization" && r.Host == host && r.Why == why {
				n++
			}
		}
		return n
	}
	if strings.TrimSpace(got["surrogate"]) != sur {
		t.Fatalf("container sees %q; want the surrogate %q", got["surrogate"], sur)
	}

	t.Run("real value never reaches the agent", func(t *testing.T) {
		for _, f := range realForms(he.real) {
			if strings.Contains(all, f) {
				t.Fatalf("agent output holds %q, a form of the real value:\n%s", f, all)
			}
		}
		for name, out := range got {
			if strings.Contains(name, "b64") {
				for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding} {
					for _, line := range strings.Split(out, "\n") {
						if d, err := enc.DecodeString(line); err == nil {
							for _, f := range realForms(he.real) {
								if strings.Contains(string(d), f) {
									t.Errorf("%s: decoded body holds the real value", name)
								}
							}
						}
					}
				}
			}
		}
	})
	t.Run("1 plain HTTP strips", func(t *testing.T) {
		for _, name := range []string{"plain-bearer", "plain-basic"} {
			if r := upstream(t, name, 1)[0]; r.Header.Get("Authorization") != "" {
				t.Errorf("%s: upstream got Authorization %q over plain HTTP", name, r.Header.Get("Authorization"))
			}
			if rec := one(t, name); rec.Verdict != proxy.VerdictAllowed || rec.Masked != 0 {
				t.Errorf("%s: record %+v; want ALLOWED, nothing masked", name, rec)
			}
		}
		if n := strippedOn("http.scoped.test", "plain http"); n != 2 {
			t.Errorf("%d STRIPPED Authorization on http.scoped.test (plain http) records; want 2", n)
		}
		if r := upstream(t, "tls-bearer", 1)[0]; r.Header.Get("Authorization") != "Bearer "+he.real {
			t.Errorf("over TLS upstream got %q; want the real token", r.Header.Get("Authorization"))
		}
	})
	t.Run("2 reflection redacted", func(t *testing.T) {
		for _, mode := range reflectModes {
			for _, proto := range []string{"h1", "h2"} {
				for _, kind := range []string{"refl", "reflb"} {
					name := kind + "-" + mode + "-" + proto
					out := got[name]
					if !strings.HasPrefix(out, "STATUS 200") && !strings.HasPrefix(out, "STATUS 401") {
						t.Errorf("%s: %q; want the upstream's answer", name, out)
						continue
					}
					if proto == "h2" && !strings.HasPrefix(out, "STATUS 200 HTTP/2.0") && !strings.HasPrefix(out, "STATUS 401 HTTP/2.0") {
						t.Errorf("%s: %q; want HTTP/2", name, out)
					}
					reqs := upstream(t, name, 1)
					if reqs[0].Header.Get("Accept-Encoding") != "identity" || reqs[0].Header.Get("Authorization") == "" {
						t.Errorf("%s: upstream header %v; want identity encoding and the real credential", name, reqs[0].Header)
					}
					rec := one(t, name)
					if rec.Verdict != proxy.VerdictAllowed || rec.Masked != 1 || rec.Redacted == 0 {
						t.Errorf("%s: record %+v; want ALLOWED [masked: 1] [redacted: N]", name, rec)
					}
				}
			}
		}
		if !strings.Contains(got["refl-raw-h1"], "Authorization: Bearer "+sur) {
			t.Errorf("raw echo %q; want the surrogate in place of the real value", got["refl-raw-h1"])
		}
		if !strings.Contains(got["refl-ws"], "WS RECV hello Bearer "+sur) {
			t.Errorf("websocket greeting %q; want the surrogate", got["refl-ws"])
		}
		if rs := recordsFor(recs, "refl-ws"); len(rs) != 2 || rs[1].Redacted != 1 {
			t.Errorf("websocket records %+v; want the switch and the close with [redacted: 1]", rs)
		}
		if rec := one(t, "refl-truncate"); rec.Redacted == 0 {
			t.Errorf("cut-short echo record %+v; want something redacted", rec)
		}
		if !strings.HasPrefix(got["refl-br"], "STATUS 502") {
			t.Errorf("undecodable compression: %q; want 502", got["refl-br"])
		}
		if rec := one(t, "refl-br"); rec.Verdict != proxy.VerdictError || !strings.Contains(rec.Reason, "compressed") {
			t.Errorf("undecodable compression record %+v; want ERROR", rec)
		}
		if rec := one(t, "refl-unscoped"); rec.Redacted != 0 || !strings.Contains(got["refl-unscoped"], "Bearer "+sur) {
			t.Errorf("unscoped host: record %+v, agent %q; want the surrogate echoed untouched", rec, got["refl-unscoped"])
		}
	})
	t.Run("3 foreign beside the surrogate stripped", func(t *testing.T) {
		for i := range 3 {
			for _, sfx := range []string{"h1", "h2"} {
				name := "foreign" + strconv.Itoa(i) + "-" + sfx
				if r := upstream(t, name, 1)[0]; len(r.Header.Values("Authorization")) != 0 {
					t.Errorf("%s: upstream got Authorization %q", name, r.Header.Values("Authorization"))
				}
			}
		}
		if n := strippedOn("api.scoped.test", ""); n < 6 {
			t.Errorf("%d STRIPPED Authorization on api.scoped.test records; want 6", n)
		}
	})
	t.Run("4 path forms blocked", func(t *testing.T) {
		for _, p := range paths {
			for _, proto := range []string{"h1", "h2"} {
				name := p.name + "-" + proto
				out := got[name]
				if p.resolved == "" {
					if !strings.Contains(out, "403") {
						t.Errorf("%s: %q; want 403", name, out)
					}
					upstream(t, name, 0)
					if rec := one(t, name); rec.Verdict != proxy.VerdictBlocked {
						t.Errorf("%s: record %+v; want BLOCKED", name, rec)
					}
					continue
				}
				if r := upstream(t, name, 1)[0]; r.Resolved != p.resolved {
					t.Errorf("%s: upstream served %q; want %q", name, r.Resolved, p.resolved)
				}
			}
		}
		if !strings.Contains(got["pf-raw"], "403") {
			t.Errorf("raw non-ASCII target: %q; want 403", got["pf-raw"])
		}
		upstream(t, "pf-raw", 0)
		if rec := one(t, "pf-raw"); !strings.Contains(rec.URL, "caf%C3%A9") {
			t.Errorf("raw non-ASCII record %+v; want the byte escaped", rec)
		}
	})
	t.Run("5 only websocket upgrades", func(t *testing.T) {
		for _, name := range []string{"up-h2c-plain", "up-h2c-tls"} {
			if !strings.HasPrefix(got[name], "HTTP/1.1 200") {
				t.Errorf("%s: %q; want a plain HTTP/1.1 200, no 101", name, got[name])
			}
			r := upstream(t, name, 1)[0]
			if r.Upgraded != "" || r.Header.Get("Upgrade") != "" || r.Header.Get("Http2-Settings") != "" {
				t.Errorf("%s: upstream saw %+v; want no upgrade", name, r)
			}
			if rec := one(t, name); rec.Upgrade != "h2c" {
				t.Errorf("%s: record %+v; want [upgrade refused: h2c]", name, rec)
			}
		}
		if !strings.HasPrefix(got["up-loose"], "HTTP/1.1 502") {
			t.Errorf("loose 101: %q; want 502", got["up-loose"])
		}
		upstream(t, "up-loose", 1)
		// The request written behind the handshake is read by the proxy as
		// the next request on the connection, checked like any other: it
		// never went through a tunnel.
		if r := upstream(t, "up-loose-inside", 1)[0]; r.Tunnelled {
			t.Errorf("a request went through the refused tunnel: %+v", r)
		}
		if rec := one(t, "up-loose-inside"); rec.Verdict != proxy.VerdictAllowed || rec.Method != "DELETE" {
			t.Errorf("the request behind the handshake: record %+v; want it decided on its own", rec)
		}
		if rec := one(t, "up-loose"); rec.Verdict != proxy.VerdictError || !strings.Contains(rec.Reason, "Sec-WebSocket-Accept") {
			t.Errorf("loose 101 record %+v; want ERROR naming the accept", rec)
		}
		if r := upstream(t, "up-other", 1)[0]; r.Upgraded != "" || !strings.HasPrefix(got["up-other"], "HTTP/1.1 400") {
			t.Errorf("other upgrade: upstream %+v, agent %q; want the upgrade removed", r, got["up-other"])
		}
		if !strings.Contains(got["up-ws"], "WS RECV hello") {
			t.Errorf("websocket echo: %q", got["up-ws"])
		}
	})
	t.Run("6 one request one record", func(t *testing.T) {
		if !strings.Contains(got["forge"], "STATUS 403") {
			t.Errorf("forged :path: %q; want 403", got["forge"])
		}
		upstream(t, "forge", 0)
		rec := one(t, "forge")
		if rec.Verdict != proxy.VerdictBlocked || rec.URL != "https://api.open.test/x?m=forge%20->%20200%20[masked:%201]%20ALLOWED%20GET%20https://evil.test/%20->%20200" {
			t.Errorf("record %+v; want one BLOCKED with the spaces escaped", rec)
		}
		for _, r := range recs {
			if strings.Contains(r.URL, "evil.test") && r.Verdict == proxy.VerdictAllowed {
				t.Errorf("forged ALLOWED record %+v", r)
			}
		}
	})
	t.Run("7 method overrides", func(t *testing.T) {
		for _, sfx := range []string{"-h1", "-h2"} {
			if r := upstream(t, "mo-header"+sfx, 1)[0]; r.Effective != "GET" {
				t.Errorf("override header: upstream ran %s; want GET", r.Effective)
			}
			if r := upstream(t, "mo-xhttp"+sfx, 1)[0]; r.Effective != "POST" {
				t.Errorf("X-HTTP-Method: upstream ran %s; want POST", r.Effective)
			}
			for _, name := range []string{"mo-query" + sfx, "mo-form" + sfx} {
				upstream(t, name, 0)
				if !strings.HasPrefix(got[name], "STATUS 403") {
					t.Errorf("%s: %q; want 403", name, got[name])
				}
			}
		}
		if r := upstream(t, "mo-domains", 1)[0]; r.Effective != "DELETE" {
			t.Errorf("a domains entry allows every method: upstream ran %s; want DELETE", r.Effective)
		}
	})
	t.Run("8 no extended CONNECT", func(t *testing.T) {
		out := got["xconnect"]
		if !strings.Contains(out, "SETTINGS ") || strings.Contains(out, "ENABLE_CONNECT_PROTOCOL") {
			t.Errorf("server settings: %q; want SETTINGS without ENABLE_CONNECT_PROTOCOL", out)
		}
		if strings.Contains(out, "STATUS 200") {
			t.Errorf("extended CONNECT succeeded: %q", out)
		}
		upstream(t, "xconnect", 0)
	})
	t.Run("slowloris", func(t *testing.T) {
		m := regexp.MustCompile(`SLOW 40 closed, the last after (\d+)s`).FindStringSubmatch(got["slow"])
		if m == nil {
			t.Fatalf("slow connections: %q; want all 40 closed by the proxy", got["slow"])
		}
		if s, _ := strconv.Atoi(m[1]); s > 60 {
			t.Errorf("slow connections lived %ss; want them closed at the header timeout", m[1])
		}
		if !strings.Contains(got["slow"], "STATUS 200") {
			t.Errorf("request during the slowloris: %q; want 200", got["slow"])
		}
		upstream(t, "during-slow", 1)
	})
	if t.Failed() {
		he.mu.Lock()
		lines := slices.Clone(he.lines)
		he.mu.Unlock()
		t.Logf("network log:\n%s", strings.Join(lines, "\n"))
	}
}
