package proxy

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/airut/airut/internal/secrets"
	"github.com/airut/airut/internal/testkit"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"golang.org/x/net/websocket"
)

// The second hardening round (SPEC S4), class by class, against the
// lenient upstream of testkit: what the upstream received, what the agent
// received, and the records. internal/sandbox/proxy_hardening_test.go runs
// the same classes in the real sandbox.

const hardAllowlist = `
domains:
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

const hardReal = "ghp_HardRealToken0123456789abcdefABCDEF"

type hardEnv struct {
	px  *testProxy
	up  *testkit.Lenient
	sur string
}

func newHardEnv(t testing.TB, mod func(*Config)) *hardEnv {
	t.Helper()
	ca := testkit.NewTestCA(t)
	up := testkit.NewLenient(t, ca, "127.0.0.1", "api.scoped.test", "api.open.test", "rules.open.test")
	m, err := secrets.NewMap(map[string]secrets.Masked{
		"GH_TOKEN": {Value: hardReal, Scopes: []string{"*.scoped.test"}, Headers: []string{"Authorization"}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Allowlist:    mustAllowlist(t, hardAllowlist),
		Replacements: m.Replacements(),
		UpstreamCA:   ca.CertPEM,
		Resolve: map[string]string{
			"api.scoped.test": up.TLSAddr, "api.open.test": up.TLSAddr, "rules.open.test": up.TLSAddr,
			"http.scoped.test": up.HTTPAddr, "http.open.test": up.HTTPAddr,
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	sur, _ := m.Surrogate("GH_TOKEN")
	return &hardEnv{px: startProxy(t, cfg), up: up, sur: sur}
}

// records parses the network log lines written so far.
func (e *hardEnv) records(t testing.TB) []Record { t.Helper(); return e.px.records(t) }

var recordOpts = cmpopts.IgnoreFields(Record{}, "Reason", "Rule", "Elapsed")

func (e *hardEnv) do(t *testing.T, h2 bool, method, u string, header http.Header, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == "" {
		req.Body = http.NoBody
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := e.px.client(h2).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if h2 && strings.HasPrefix(u, "https:") && resp.ProtoMajor != 2 {
		t.Errorf("protocol %s; want HTTP/2", resp.Proto)
	}
	return resp, string(b)
}

func protos(f func(t *testing.T, h2 bool)) func(t *testing.T) {
	return func(t *testing.T) {
		t.Run("HTTP/1.1", func(t *testing.T) { f(t, false) })
		t.Run("HTTP/2", func(t *testing.T) { f(t, true) })
	}
}

// Class 1: a credential is injected only over TLS.
func TestPlainHTTPNeverInjects(t *testing.T) {
	e := newHardEnv(t, nil)
	for _, tc := range []struct {
		name, auth string
	}{
		{"bearer", "Bearer " + e.sur},
		{"basic", basicAuth("x-access-token", e.sur)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.up.Take()
			e.records(t)
			resp, body := e.do(t, false, "GET", "http://http.scoped.test/reflect", http.Header{"Authorization": {tc.auth}}, "")
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			reqs := e.up.Take()
			if len(reqs) != 1 || reqs[0].Header.Get("Authorization") != "" {
				t.Fatalf("upstream saw %+v; want one request without Authorization", reqs)
			}
			want := []Record{
				{Verdict: VerdictStripped, Header: "Authorization", Host: "http.scoped.test", Why: "plain http"},
				{Verdict: VerdictAllowed, Method: "GET", URL: "http://http.scoped.test/reflect", Status: 200},
			}
			if diff := cmp.Diff(want, e.records(t), recordOpts); diff != "" {
				t.Errorf("records mismatch (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("the same over TLS injects", func(t *testing.T) {
		e.up.Take()
		e.do(t, false, "GET", "https://api.scoped.test/x", http.Header{"Authorization": {"Bearer " + e.sur}}, "")
		if reqs := e.up.Take(); len(reqs) != 1 || reqs[0].Header.Get("Authorization") != "Bearer "+hardReal {
			t.Errorf("upstream saw %+v; want the real token over TLS", reqs)
		}
	})
}

// Class 2: an upstream that echoes the request cannot hand the real value
// back, in any form, header or body, compressed or dripped.
func TestReflectionRedacted(t *testing.T) {
	e := newHardEnv(t, nil)
	for _, mode := range []string{"raw", "b64", "b64url", "json", "html", "gzip", "deflate", "drip", "trailer", "truncate?n=200"} {
		t.Run(mode, protos(func(t *testing.T, h2 bool) {
			for auth, real := range map[string]string{
				"Bearer " + e.sur:                  "Bearer " + hardReal,
				basicAuth("x-access-token", e.sur): basicAuth("x-access-token", hardReal),
			} {
				e.up.Take()
				e.records(t)
				req, _ := http.NewRequest("GET", "https://api.scoped.test/reflect/"+mode, nil)
				req.Header.Set("Authorization", auth)
				req.Header.Set("Accept-Encoding", "gzip, br")
				resp, err := e.px.client(h2).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				reqs := e.up.Take()
				if len(reqs) != 1 || reqs[0].Header.Get("Authorization") != real {
					t.Fatalf("upstream saw %+v; want the real credential", reqs)
				}
				if got := reqs[0].Header.Get("Accept-Encoding"); got != "identity" {
					t.Errorf("upstream Accept-Encoding = %q; want identity on a scoped host", got)
				}
				seen := append([]byte(nil), raw...)
				for _, h := range []http.Header{resp.Header, resp.Trailer} {
					for k, vs := range h {
						seen = append(seen, []byte(k+": "+strings.Join(vs, ",")+"\n")...)
					}
				}
				decoded := append([]byte(nil), seen...)
				for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding} {
					if d, err := enc.DecodeString(string(raw)); err == nil {
						decoded = append(decoded, d...)
					}
				}
				if l := leaks(decoded, hardReal); l != "" {
					t.Fatalf("agent received the real value (%s): %q", l, decoded)
				}
				inPlace := e.sur
				if strings.HasPrefix(auth, "Basic ") {
					inPlace = strings.TrimPrefix(auth, "Basic ")
				}
				if mode != "truncate?n=200" && !bytes.Contains(decoded, []byte(inPlace[:partialLen])) {
					t.Errorf("agent's copy has no surrogate in place: %q", decoded)
				}
				recs := e.records(t)
				if len(recs) != 1 || recs[0].Verdict != VerdictAllowed || recs[0].Masked != 1 || recs[0].Redacted == 0 {
					t.Errorf("records = %+v; want one ALLOWED with masked 1 and redacted > 0", recs)
				}
			}
		}))
	}
	t.Run("undecodable compression refused", protos(func(t *testing.T, h2 bool) {
		e.records(t)
		resp, body := e.do(t, h2, "GET", "https://api.scoped.test/reflect/br", http.Header{"Authorization": {"Bearer " + e.sur}}, "")
		if resp.StatusCode != http.StatusBadGateway || strings.Contains(body, hardReal) {
			t.Errorf("got %d %q; want 502 without the body", resp.StatusCode, body)
		}
		recs := e.records(t)
		if len(recs) != 1 || recs[0].Verdict != VerdictError || !strings.Contains(recs[0].Reason, "compressed") {
			t.Errorf("records = %+v; want one ERROR about compression", recs)
		}
	}))
	t.Run("unscoped host is not touched", func(t *testing.T) {
		e.records(t)
		resp, body := e.do(t, false, "GET", "https://api.open.test/reflect", http.Header{"Authorization": {"Bearer " + e.sur}, "Accept-Encoding": {"gzip"}}, "")
		if resp.StatusCode != 200 || !strings.Contains(body, "Bearer "+e.sur) {
			t.Errorf("got %d %q; want the surrogate echoed as sent", resp.StatusCode, body)
		}
		if recs := e.records(t); len(recs) != 1 || recs[0].Redacted != 0 {
			t.Errorf("records = %+v; want nothing redacted", recs)
		}
	})
	t.Run("websocket greeting", func(t *testing.T) {
		e.records(t)
		ws := dialWS(t, e.px, "api.scoped.test", "/ws?reflect=1", "Bearer "+e.sur)
		var msg string
		if err := websocket.Message.Receive(ws, &msg); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(msg, hardReal) || msg != "hello Bearer "+e.sur {
			t.Errorf("greeting = %q; want the surrogate in place of the real value", msg)
		}
		ws.Close()
		waitFor(t, func() bool { return e.px.log.count() >= 2 })
		recs := e.records(t)
		want := []Record{
			{Verdict: VerdictAllowed, Method: "GET", URL: "https://api.scoped.test/ws?reflect=1", Status: 101, Masked: 1},
			{Verdict: VerdictAllowed, Method: "GET", URL: "https://api.scoped.test/ws?reflect=1", Status: 101, Masked: 1, Redacted: 1},
		}
		if diff := cmp.Diff(want, recs, recordOpts); diff != "" {
			t.Errorf("records mismatch (-want +got):\n%s", diff)
		}
	})
}

func (l *logBuffer) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func dialWS(t *testing.T, px *testProxy, host, path, auth string) *websocket.Conn {
	t.Helper()
	conn, err := tls.Dial("tcp", px.tlsAddr, &tls.Config{ServerName: host, RootCAs: px.roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := websocket.NewConfig("wss://"+host+path, "https://"+host)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		cfg.Header = http.Header{"Authorization": {auth}}
	}
	ws, err := websocket.NewClient(cfg, conn)
	if err != nil {
		conn.Close()
		t.Fatalf("websocket handshake: %v", err)
	}
	return ws
}

// Class 3: the surrogate must be the whole credential.
func TestForeignBesideSurrogate(t *testing.T) {
	e := newHardEnv(t, nil)
	for _, auth := range []string{
		"Bearer ghp_OwnOwnOwnOwnOwnOwnOwnOwnOwnOwnOwn1, Bearer " + e.sur,
		"Bearer " + e.sur + " ghp_OwnOwnOwnOwnOwnOwnOwnOwnOwnOwnOwn1",
		basicAuth("ghp_OwnOwnOwnOwnOwnOwnOwnOwnOwnOwnOwn1", e.sur),
		basicAuth(e.sur, "glpat-OwnOwnOwnOwnOwnOwn12"),
	} {
		t.Run(auth, protos(func(t *testing.T, h2 bool) {
			e.up.Take()
			e.records(t)
			e.do(t, h2, "GET", "https://api.scoped.test/x", http.Header{"Authorization": {auth}}, "")
			if reqs := e.up.Take(); len(reqs) != 1 || len(reqs[0].Header.Values("Authorization")) != 0 {
				t.Errorf("upstream saw %+v; want no Authorization", reqs)
			}
			want := []Record{
				{Verdict: VerdictStripped, Header: "Authorization", Host: "api.scoped.test"},
				{Verdict: VerdictAllowed, Method: "GET", URL: "https://api.scoped.test/x", Status: 200},
			}
			if diff := cmp.Diff(want, e.records(t), recordOpts); diff != "" {
				t.Errorf("records mismatch (-want +got):\n%s", diff)
			}
		}))
	}
}

// h2Raw sends one HTTP/2 request with a :path written by hand (spaces,
// tabs, anything hpack carries) and returns the status ("" when the
// stream was reset) and the server's SETTINGS.
func h2Raw(t *testing.T, px *testProxy, host string, fields ...hpack.HeaderField) (status string, settings map[http2.SettingID]uint32) {
	t.Helper()
	c, err := tls.Dial("tcp", px.tlsAddr, &tls.Config{ServerName: host, RootCAs: px.roots, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	_ = fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range fields {
		_ = enc.WriteField(f)
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: true}); err != nil {
		t.Fatal(err)
	}
	settings = map[http2.SettingID]uint32{}
	dec := hpack.NewDecoder(4096, func(f hpack.HeaderField) {
		if f.Name == ":status" {
			status = f.Value
		}
	})
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return status, settings
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = f.ForeachSetting(func(s http2.Setting) error { settings[s.ID] = s.Val; return nil })
				_ = fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			_, _ = dec.Write(f.HeaderBlockFragment())
			if f.StreamEnded() {
				return status, settings
			}
		case *http2.DataFrame:
			if f.StreamEnded() {
				return status, settings
			}
		case *http2.RSTStreamFrame, *http2.GoAwayFrame:
			return status, settings
		}
	}
}

func h2Get(authority, path string) []hpack.HeaderField {
	return []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "https"}, {Name: ":authority", Value: authority}, {Name: ":path", Value: path}}
}

// Classes 4 and 6: path forms upstreams normalise differently, and
// request targets that are not valid, over HTTP/1.1 and HTTP/2.
func TestRequestTargets(t *testing.T) {
	e := newHardEnv(t, nil)
	tests := []struct {
		name, target string
		allowed      bool
		resolved     string // what the normalising upstream served
	}{
		{"tomcat path parameter", "/files/pub/..;/..;/secret", false, ""},
		{"encoded semicolon", "/files/pub/..%3B/secret", false, ""},
		{"escaped escape", "/files/pub/%252e%252e/secret", false, ""},
		{"escaped slash escape", "/files/pub%252F..%252Fsecret", false, ""},
		{"full-width dots", "/files/pub/%EF%BC%8E%EF%BC%8E/secret", false, ""},
		{"full-width slash", "/files/pub%EF%BC%8F..%EF%BC%8Fsecret", false, ""},
		{"one dot leader pair", "/files/pub/%E2%80%A5/secret", false, ""},
		{"overlong dot", "/files/pub/%C0%AE%C0%AE/secret", false, ""},
		{"invalid UTF-8", "/files/pub/%FF", false, ""},
		{"trailing space dot-dot", "/files/pub/..%20/secret", false, ""},
		{"three dots", "/files/pub/.../secret", false, ""},
		{"encoded newline", "/files/pub/a%0D%0AX-Injected:%201", false, ""},
		{"UTF-8 name", "/files/pub/%E6%97%A5.txt", true, "/files/pub/日.txt"},
		{"path parameter on a name", "/files/pub/a;v=1", true, "/files/pub/a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := func(t *testing.T, status int, recs []Record) {
				t.Helper()
				reqs := e.up.Take()
				if !tt.allowed {
					if status != 403 || len(reqs) != 0 {
						t.Errorf("status %d, upstream saw %+v; want 403 and nothing upstream", status, reqs)
					}
					if len(recs) != 1 || recs[0].Verdict != VerdictBlocked {
						t.Errorf("records = %+v; want one BLOCKED", recs)
					}
					return
				}
				if status != 200 || len(reqs) != 1 || reqs[0].Resolved != tt.resolved || reqs[0].Target != tt.target {
					t.Errorf("status %d, upstream saw %+v; want 200 for %s resolved as %s", status, reqs, tt.target, tt.resolved)
				}
			}
			t.Run("HTTP/1.1", func(t *testing.T) {
				e.records(t)
				resp, _ := e.px.raw(t, ptr("rules.open.test"), "GET "+tt.target+" HTTP/1.1\r\nHost: rules.open.test\r\n\r\n")
				check(t, resp.StatusCode, e.records(t))
			})
			t.Run("HTTP/2", func(t *testing.T) {
				e.records(t)
				status, _ := h2Raw(t, e.px, "rules.open.test", h2Get("rules.open.test", tt.target)...)
				n := 0
				if status != "" {
					n = atoi(status)
				}
				check(t, n, e.records(t))
			})
		})
	}
	t.Run("HTTP/2 path with spaces cannot forge a record", func(t *testing.T) {
		e.records(t)
		e.up.Take()
		status, _ := h2Raw(t, e.px, "api.open.test", h2Get("api.open.test", "/x -> 200 [masked: 1] ALLOWED GET https://evil.test/ -> 200")...)
		if status != "403" || len(e.up.Take()) != 0 {
			t.Errorf("status %q; want 403 and nothing upstream", status)
		}
		lines := e.px.log.take()
		if len(lines) != 1 {
			t.Fatalf("lines = %q; want one", lines)
		}
		rec, err := ParseRecord(lines[0])
		if err != nil {
			t.Fatal(err)
		}
		want := Record{Verdict: VerdictBlocked, Method: "GET", URL: "https://api.open.test/x%20->%20200%20[masked:%201]%20ALLOWED%20GET%20https://evil.test/%20->%20200", Status: 403}
		if diff := cmp.Diff(want, rec, recordOpts); diff != "" {
			t.Errorf("record mismatch (-want +got):\n%s", diff)
		}
	})
	t.Run("HTTP/1.1 raw non-ASCII target", func(t *testing.T) {
		e.records(t)
		resp, _ := e.px.raw(t, ptr("api.open.test"), "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: api.open.test\r\n\r\n")
		if resp.StatusCode != 403 || len(e.up.Take()) != 0 {
			t.Errorf("status %d; want 403 and nothing upstream", resp.StatusCode)
		}
		if recs := e.records(t); len(recs) != 1 || recs[0].URL != "https://api.open.test/caf%C3%A9" {
			t.Errorf("records = %+v; want one with the target escaped", recs)
		}
	})
}

// Class 5: only WebSocket upgrades, only after a correct accept.
func TestUpgrades(t *testing.T) {
	e := newHardEnv(t, nil)
	h2cUpgrade := "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	wsHeaders := "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + "\r\n"
	tests := []struct {
		name, host, request string
		plain               bool
		status              int
		upstream            int // requests the upstream saw
		record              Record
	}{
		{"h2c over plain HTTP is refused by removing it", "http.open.test", "GET /echo HTTP/1.1\r\nHost: http.open.test\r\n" + h2cUpgrade + "\r\n", true, 200, 1,
			Record{Verdict: VerdictAllowed, Method: "GET", URL: "http://http.open.test/echo", Status: 200, Upgrade: "h2c"}},
		{"h2c over TLS", "api.open.test", "GET /echo HTTP/1.1\r\nHost: api.open.test\r\n" + h2cUpgrade + "\r\n", false, 200, 1,
			Record{Verdict: VerdictAllowed, Method: "GET", URL: "https://api.open.test/echo", Status: 200, Upgrade: "h2c"}},
		{"another protocol", "api.open.test", "GET /loose-ws HTTP/1.1\r\nHost: api.open.test\r\nConnection: upgrade\r\nUpgrade: tcp-tunnel\r\n\r\n", false, 400, 1,
			Record{Verdict: VerdictAllowed, Method: "GET", URL: "https://api.open.test/loose-ws", Status: 400, Upgrade: "tcp-tunnel"}},
		{"websocket beside h2c", "api.open.test", "GET /loose-ws HTTP/1.1\r\nHost: api.open.test\r\nConnection: upgrade\r\nUpgrade: websocket, h2c\r\n\r\n", false, 400, 1,
			Record{Verdict: VerdictAllowed, Method: "GET", URL: "https://api.open.test/loose-ws", Status: 400, Upgrade: "websocket,%20h2c"}},
		{"loose 101 without the right accept", "api.open.test", "GET /loose-ws HTTP/1.1\r\nHost: api.open.test\r\n" + wsHeaders + "\r\n", false, 502, 1,
			Record{Verdict: VerdictError, Method: "GET", URL: "https://api.open.test/loose-ws"}},
		{"websocket with POST", "api.open.test", "POST /ws HTTP/1.1\r\nHost: api.open.test\r\nContent-Length: 0\r\n" + wsHeaders + "\r\n", false, 403, 0,
			Record{Verdict: VerdictBlocked, Method: "POST", URL: "https://api.open.test/ws", Status: 403}},
		{"websocket with a short key", "api.open.test", "GET /ws HTTP/1.1\r\nHost: api.open.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n\r\n", false, 403, 0,
			Record{Verdict: VerdictBlocked, Method: "GET", URL: "https://api.open.test/ws", Status: 403}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.up.Take()
			e.records(t)
			var sni *string
			if !tt.plain {
				sni = &tt.host
			}
			resp, body := e.px.raw(t, sni, tt.request)
			if resp.StatusCode != tt.status {
				t.Errorf("status %d %q; want %d", resp.StatusCode, body, tt.status)
			}
			reqs := e.up.Take()
			if len(reqs) != tt.upstream {
				t.Fatalf("upstream saw %+v; want %d requests", reqs, tt.upstream)
			}
			for _, r := range reqs {
				if r.Tunnelled || (tt.record.Upgrade != "" && (r.Header.Get("Upgrade") != "" || r.Header.Get("Http2-Settings") != "")) {
					t.Errorf("upstream saw %+v; want a plain request, no upgrade", r)
				}
			}
			recs := e.records(t)
			if diff := cmp.Diff([]Record{tt.record}, recs, recordOpts); diff != "" {
				t.Errorf("records mismatch (-want +got):\n%s", diff)
			}
			if tt.status == 502 && !strings.Contains(recs[0].Reason, "Sec-WebSocket-Accept") {
				t.Errorf("reason %q; want it to name the accept", recs[0].Reason)
			}
		})
	}
	t.Run("a real websocket works", func(t *testing.T) {
		ws := dialWS(t, e.px, "api.open.test", "/ws", "")
		defer ws.Close()
		if err := websocket.Message.Send(ws, "ping"); err != nil {
			t.Fatal(err)
		}
		var got string
		if err := websocket.Message.Receive(ws, &got); err != nil || got != "ping" {
			t.Errorf("echo = %q, %v; want ping", got, err)
		}
	})
}

// Class 7: method overrides on a rule with methods.
func TestMethodOverride(t *testing.T) {
	e := newHardEnv(t, nil)
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	tests := []struct {
		name, method, url string
		header            http.Header
		body              string
		status            int
		effective         string // what the overriding upstream ran; "" = not reached
	}{
		{"header dropped on a GET rule", "GET", "https://rules.open.test/override", http.Header{"X-Http-Method-Override": {"DELETE"}}, "", 200, "GET"},
		{"X-HTTP-Method dropped", "POST", "https://rules.open.test/override", http.Header{"X-Http-Method": {"DELETE"}}, "x", 200, "POST"},
		{"X-Method-Override dropped", "GET", "https://rules.open.test/override", http.Header{"X-Method-Override": {"PUT"}}, "", 200, "GET"},
		{"query _method blocked", "POST", "https://rules.open.test/override?_method=DELETE", nil, "", 403, ""},
		{"form _method blocked", "POST", "https://rules.open.test/override", form, "a=1&_method=delete", 403, ""},
		{"multipart _method blocked", "POST", "https://rules.open.test/override", http.Header{"Content-Type": {"multipart/form-data; boundary=XX"}},
			"--XX\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nPATCH\r\n--XX--\r\n", 403, ""},
		{"form _method naming an allowed method", "POST", "https://rules.open.test/override", form, "_method=GET", 200, "GET"},
		{"domains rule keeps the header", "GET", "https://api.open.test/override", http.Header{"X-Http-Method-Override": {"DELETE"}}, "", 200, "DELETE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, protos(func(t *testing.T, h2 bool) {
			e.up.Take()
			resp, body := e.do(t, h2, tt.method, tt.url, tt.header, tt.body)
			if resp.StatusCode != tt.status {
				t.Errorf("status %d %q; want %d", resp.StatusCode, body, tt.status)
			}
			reqs := e.up.Take()
			switch {
			case tt.effective == "" && len(reqs) != 0:
				t.Errorf("upstream saw %+v; want nothing", reqs)
			case tt.effective != "" && (len(reqs) != 1 || reqs[0].Effective != tt.effective):
				t.Errorf("upstream saw %+v; want it to run %s", reqs, tt.effective)
			}
		}))
	}
}

// Class 8: the HTTP/2 server does not offer extended CONNECT, so clients
// fall back to a WebSocket over HTTP/1.1; one that tries anyway fails
// without reaching the upstream.
func TestNoExtendedConnect(t *testing.T) {
	e := newHardEnv(t, nil)
	status, settings := h2Raw(t, e.px, "api.open.test", []hpack.HeaderField{
		{Name: ":method", Value: "CONNECT"}, {Name: ":protocol", Value: "websocket"}, {Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: "api.open.test"}, {Name: ":path", Value: "/ws"}, {Name: "sec-websocket-version", Value: "13"},
	}...)
	if _, ok := settings[http2.SettingEnableConnectProtocol]; ok {
		t.Errorf("server SETTINGS %v offer ENABLE_CONNECT_PROTOCOL", settings)
	}
	if len(settings) == 0 {
		t.Error("no SETTINGS frame read from the server")
	}
	if status == "200" || len(e.up.Take()) != 0 {
		t.Errorf("extended CONNECT got %q and reached the upstream; want it refused", status)
	}
}

// Timeouts: a slowloris agent, a stalled upstream.
func TestSlowPeers(t *testing.T) {
	short := Timeouts{Header: 300 * time.Millisecond, Idle: 300 * time.Millisecond, Body: 400 * time.Millisecond,
		UpstreamHeader: 500 * time.Millisecond, UpstreamIdle: 500 * time.Millisecond}
	e := newEnv(t, func(c *Config) { c.Timeouts = short })
	stall := make(chan struct{})
	stallCA := newTestCA(t)
	stalled := startStallingUpstream(t, stallCA, stall)
	e2 := newEnv(t, func(c *Config) {
		c.Timeouts = short
		c.Timeouts.UpstreamIdle = 2 * time.Second // so that the header timeout is what fires first
		c.Resolve["api.example.com"] = stalled
		c.UpstreamCA = append(c.UpstreamCA, stallCA.pem...)
	})

	closedWithin := func(t *testing.T, c net.Conn, d time.Duration) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(d))
		if _, err := io.Copy(io.Discard, c); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("connection still open after %s", d)
			}
		}
	}
	t.Run("no TLS handshake", func(t *testing.T) {
		c, err := net.Dial("tcp", e.px.tlsAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		closedWithin(t, c, 5*time.Second)
	})
	t.Run("headers trickled", func(t *testing.T) {
		c, err := tls.Dial("tcp", e.px.tlsAddr, &tls.Config{ServerName: "api.example.com", RootCAs: e.px.roots})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go func() {
			for _, b := range []byte("GET / HTTP/1.1\r\nHost: api.example.com\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa") {
				if _, err := c.Write([]byte{b}); err != nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
		closedWithin(t, c, 5*time.Second)
	})
	t.Run("body stalled", func(t *testing.T) {
		e.px.log.take()
		c, err := tls.Dial("tcp", e.px.tlsAddr, &tls.Config{ServerName: "api.example.com", RootCAs: e.px.roots})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 100\r\n\r\n0123456789")
		closedWithin(t, c, 5*time.Second)
		waitFor(t, func() bool { return e.px.log.count() > 0 })
		if recs := (&hardEnv{px: e.px}).records(t); len(recs) != 1 || recs[0].Verdict != VerdictError {
			t.Errorf("records = %+v; want one ERROR", recs)
		}
		for _, s := range e.tlsUp.take() {
			if s.BodyLen == 100 {
				t.Errorf("upstream got the whole body")
			}
		}
	})
	t.Run("agent stops reading", func(t *testing.T) {
		e.px.log.take()
		c, err := tls.Dial("tcp", e.px.tlsAddr, &tls.Config{ServerName: "api.example.com", RootCAs: e.px.roots})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = io.WriteString(c, "GET /big?n="+itoa(256<<20)+" HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
		waitFor(t, func() bool { return e.px.log.count() > 0 })
		recs := (&hardEnv{px: e.px}).records(t)
		if len(recs) != 1 || !recs[0].Aborted {
			t.Errorf("records = %+v; want one aborted response", recs)
		}
	})
	t.Run("upstream never answers", func(t *testing.T) {
		e2.px.log.take()
		resp, err := e2.px.client(false).Get("https://api.example.com/never")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("status %d; want 502", resp.StatusCode)
		}
		recs := (&hardEnv{px: e2.px}).records(t)
		if len(recs) != 1 || recs[0].Verdict != VerdictError || !strings.Contains(recs[0].Reason, "timeout awaiting response headers") {
			t.Errorf("records = %+v; want one ERROR: timeout awaiting response headers", recs)
		}
	})
	t.Run("upstream stalls mid-body", func(t *testing.T) {
		e2.px.log.take()
		// The agent gets a cut-off response: no headers at all, or a
		// short body.
		if resp, err := e2.px.client(false).Get("https://api.example.com/half"); err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Errorf("body read completed; want it cut off")
			}
		}
		waitFor(t, func() bool { return e2.px.log.count() > 0 })
		if recs := (&hardEnv{px: e2.px}).records(t); len(recs) != 1 || !recs[0].Aborted {
			t.Errorf("records = %+v; want one aborted response", recs)
		}
	})
}

// startStallingUpstream is an upstream behind a pinned name that
// never answers /never and stops halfway through /half.
func startStallingUpstream(t *testing.T, ca *testCA, stall chan struct{}) string {
	t.Helper()
	defer t.Cleanup(func() { close(stall) }) // before the server's Close, which waits for its handlers
	return newUnstartedTLS(t, ca, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/never":
			<-stall
		case "/half":
			w.Header().Set("Content-Length", "1000")
			_, _ = io.WriteString(w, "half")
			http.NewResponseController(w).Flush()
			<-stall
		}
	}))
}

func TestMaxConns(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.MaxConns = 2
		c.Timeouts = Timeouts{Header: 500 * time.Millisecond}
	})
	for range 2 { // two idle connections take both slots
		c, err := net.Dial("tcp", e.px.httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	start := time.Now()
	resp, _ := e.px.raw(t, nil, "GET / HTTP/1.1\r\nHost: plain.example.com\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Errorf("status %d; want 200 once a slot frees", resp.StatusCode)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("third connection served after %s; want it to wait for the idle ones to time out", waited)
	}
}

func TestLeafCacheLRU(t *testing.T) {
	a, err := newAuthority(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a.max = 3
	get := func(name string) *tls.Certificate {
		c, err := a.getCertificate(&tls.ClientHelloInfo{ServerName: name})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	first := get("a.test")
	get("b.test")
	get("c.test")
	if get("a.test") != first {
		t.Error("a.test re-minted while cached")
	}
	get("d.test") // evicts b.test, the least recently used
	if a.cached() != 3 {
		t.Errorf("cached = %d; want the cap, 3", a.cached())
	}
	if get("a.test") != first {
		t.Error("a.test evicted; want the least recently used (b.test) out first")
	}
	for i := range 50 {
		get("flood-" + itoa(i) + ".test")
	}
	if a.cached() != 3 {
		t.Errorf("after a flood of names cached = %d; want 3", a.cached())
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func newUnstartedTLS(t *testing.T, ca *testCA, h http.Handler) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.leaf(t, "api.example.com")}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}
