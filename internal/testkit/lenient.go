package testkit

import (
	"compress/gzip"
	"compress/zlib"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c" //lint:ignore SA1019 net/http's unencrypted HTTP/2 has no Upgrade: h2c, which this upstream must honour
	"golang.org/x/net/websocket"
	"golang.org/x/text/unicode/norm"
)

// Lenient is an upstream built to be lenient on purpose, the way real
// servers are, so that tests can show what reaches it through the proxy:
// it echoes request headers back (in headers, bodies, encoded, compressed
// whatever the request asked, dripped a byte at a time, cut short),
// honours "Upgrade: h2c", answers any upgrade with a 101 and then reads
// the tunnel as HTTP, normalises paths the way Tomcat, Spring and Windows
// servers do, and honours method-override headers and parameters. It
// serves HTTPS and plain HTTP on 0.0.0.0 and records every request.
//
// Routes (by path prefix):
//
//	/reflect[/raw|/b64|/b64url|/json|/html|/gzip|/deflate|/br|/drip|/trailer|/truncate?n=N]
//	/ws[?reflect=1] a correct WebSocket echo (greeting with the credential)
//	/loose-ws    101 to any upgrade, with a wrong accept, then HTTP inside
//	/files/…     answers with the path as the normalising server reads it
//	/override    answers with the method an overriding framework would run
//	anything else: a JSON echo of the request
type Lenient struct {
	TLSAddr, HTTPAddr string // host-reachable ip:port
	TLSPort, HTTPPort string

	mu   sync.Mutex
	seen []LenientRequest
}

// LenientRequest is one request as the lenient upstream read it.
type LenientRequest struct {
	Method    string      `json:"method"`
	Host      string      `json:"host"`
	Target    string      `json:"target"` // raw request target
	Proto     string      `json:"proto"`
	Header    http.Header `json:"header"`
	Body      string      `json:"body"`
	Effective string      `json:"effective,omitempty"` // /override: the method it ran
	Resolved  string      `json:"resolved,omitempty"`  // /files: the path it served
	Tunnelled bool        `json:"tunnelled,omitempty"` // read inside a /loose-ws tunnel or an h2c connection
	Upgraded  string      `json:"upgraded,omitempty"`  // the protocol it switched to
	Rejected  string      `json:"rejected,omitempty"`  // why it refused to serve it
}

// NewLenient starts a lenient upstream with a certificate for names.
func NewLenient(t testing.TB, ca *TestCA, hostIP string, names ...string) *Lenient {
	t.Helper()
	u := &Lenient{}
	listen := func() (net.Listener, string) {
		l, err := net.Listen("tcp", "0.0.0.0:0")
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(l.Addr().String())
		return l, port
	}
	tl, tport := listen()
	hl, hport := listen()
	u.TLSPort, u.HTTPPort = tport, hport
	u.TLSAddr, u.HTTPAddr = net.JoinHostPort(hostIP, tport), net.JoinHostPort(hostIP, hport)
	// The RFC 7540 "Upgrade: h2c" dance, which RFC 9113 deprecates and
	// net/http does not offer, is what a lenient upstream honours.
	h2s := &http2.Server{}                                    //lint:ignore SA1019 see above
	handler := h2c.NewHandler(http.HandlerFunc(u.serve), h2s) //lint:ignore SA1019 see above
	mk := func() *http.Server {
		return &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second,
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{ca.Leaf(t, names...)}, NextProtos: []string{"http/1.1"}}}
	}
	ts, hs := mk(), mk()
	go func() { _ = ts.ServeTLS(tl, "", "") }()
	go func() { _ = hs.Serve(hl) }()
	t.Cleanup(func() { ts.Close(); hs.Close() })
	return u
}

// Requests returns every request seen so far.
func (u *Lenient) Requests() []LenientRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.seen)
}

// Take returns and forgets the requests seen so far.
func (u *Lenient) Take() []LenientRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	r := u.seen
	u.seen = nil
	return r
}

func (u *Lenient) record(lr LenientRequest) {
	u.mu.Lock()
	u.seen = append(u.seen, lr)
	u.mu.Unlock()
}

func newLenientRequest(r *http.Request) LenientRequest {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	lr := LenientRequest{Method: r.Method, Host: r.Host, Target: r.RequestURI, Proto: r.Proto, Header: r.Header.Clone(), Body: string(body)}
	if r.ProtoMajor == 2 {
		// Only reachable through h2c: the TLS listener offers no h2.
		lr.Tunnelled, lr.Upgraded = true, "h2c"
	}
	return lr
}

// dump is every request header as "Name: value" lines, sorted.
func dump(h http.Header) string {
	var b strings.Builder
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range h {
			if !yield(k) {
				return
			}
		}
	}) {
		for _, v := range h[k] {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	return b.String()
}

func (u *Lenient) serve(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/ws":
		lr := newLenientRequest(r)
		u.record(lr)
		websocket.Server{Handler: func(c *websocket.Conn) {
			if r.URL.Query().Get("reflect") != "" {
				// A debugging socket that greets with the handshake's credential.
				if websocket.Message.Send(c, "hello "+r.Header.Get("Authorization")) != nil {
					return
				}
			}
			for {
				var msg string
				if websocket.Message.Receive(c, &msg) != nil || websocket.Message.Send(c, msg) != nil {
					return
				}
			}
		}, Handshake: func(*websocket.Config, *http.Request) error { return nil }}.ServeHTTP(w, r)
		return
	case p == "/loose-ws":
		u.looseUpgrade(w, r)
		return
	}
	lr := newLenientRequest(r)
	switch {
	case p == "/reflect" || strings.HasPrefix(p, "/reflect/"):
		u.record(lr)
		reflect(w, r, strings.TrimPrefix(strings.TrimPrefix(p, "/reflect"), "/"))
	case strings.HasPrefix(r.RequestURI, "/files/") || strings.HasPrefix(r.RequestURI, "/files;"):
		lr.Resolved = normalisePath(r.RequestURI)
		u.record(lr)
		_, _ = io.WriteString(w, "served "+lr.Resolved+"\n")
	case p == "/override":
		lr.Effective = overriddenMethod(r, lr.Body)
		u.record(lr)
		_, _ = io.WriteString(w, "ran "+lr.Effective+"\n")
	default:
		u.record(lr)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(struct {
			Method, Host, Target, Proto string
			Tunnelled                   bool
		}{lr.Method, lr.Host, lr.Target, lr.Proto, lr.Tunnelled})
	}
}

// reflect echoes the request headers in the form mode asks for, and
// always in response headers too.
func reflect(w http.ResponseWriter, r *http.Request, mode string) {
	d := dump(r.Header)
	for _, a := range r.Header.Values("Authorization") {
		w.Header().Add("X-Reflected-Authorization", a)
	}
	if a := r.Header.Get("Authorization"); a != "" {
		w.Header().Set("Www-Authenticate", `Bearer realm="echo", error="invalid_token", token="`+a+`"`)
	}
	switch mode {
	case "", "raw":
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, d)
	case "b64":
		_, _ = io.WriteString(w, base64.StdEncoding.EncodeToString([]byte(d)))
	case "b64url":
		_, _ = io.WriteString(w, base64.RawURLEncoding.EncodeToString([]byte(d)))
	case "json":
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(r.Header)
	case "html":
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, "<html><body><h1>401</h1><pre>"+d+"</pre><a href=\"/login?token="+url.QueryEscape(r.Header.Get("Authorization"))+"\">retry</a></body></html>")
	case "gzip":
		// Compressed whatever Accept-Encoding said, as some servers do.
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		_, _ = io.WriteString(zw, d)
		_ = zw.Close()
	case "deflate":
		w.Header().Set("Content-Encoding", "deflate")
		zw := zlib.NewWriter(w)
		_, _ = io.WriteString(zw, d)
		_ = zw.Close()
	case "br":
		// Labelled brotli; the proxy cannot decode it and must not pass it.
		w.Header().Set("Content-Encoding", "br")
		_, _ = io.WriteString(w, d)
	case "drip":
		// One byte per chunk, flushed: the secret crosses every boundary.
		f := http.NewResponseController(w)
		for i := range len(d) {
			if _, err := w.Write([]byte{d[i]}); err != nil {
				return
			}
			_ = f.Flush()
		}
	case "trailer":
		w.Header().Set("Trailer", "X-Echo")
		_, _ = io.WriteString(w, "see trailer\n")
		w.Header().Set("X-Echo", r.Header.Get("Authorization"))
	case "truncate":
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		_, _ = io.WriteString(w, d[:min(max(n, 0), len(d))])
	default:
		http.Error(w, "unknown mode", http.StatusNotFound)
	}
}

// looseUpgrade answers any Upgrade with 101 and a made-up accept value,
// then reads what comes through the tunnel as HTTP requests, as a server
// that switches protocols carelessly would.
func (u *Lenient) looseUpgrade(w http.ResponseWriter, r *http.Request) {
	lr := newLenientRequest(r)
	up := r.Header.Get("Upgrade")
	if up == "" {
		lr.Rejected = "no upgrade"
		u.record(lr)
		http.Error(w, "want an upgrade", http.StatusBadRequest)
		return
	}
	lr.Upgraded = up
	u.record(lr)
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	accept := "bm90IHRoZSByaWdodCBhY2NlcHQ=" // not the right accept
	if r.URL.Query().Get("accept") == "right" {
		sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		accept = base64.StdEncoding.EncodeToString(sum[:])
	}
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\nSec-WebSocket-Accept: %s\r\n\r\n", up, accept)
	_ = brw.Flush()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	for {
		req, err := http.ReadRequest(brw.Reader)
		if err != nil {
			return
		}
		in := newLenientRequest(req)
		in.Tunnelled = true
		u.record(in)
		fmt.Fprintf(brw, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\ntunnelled\n")
		_ = brw.Flush()
	}
}

// normalisePath reads a raw target the way the most lenient servers do:
// path parameters cut (Tomcat, Spring), decoded twice, Unicode folded,
// backslashes as slashes, trailing dots and spaces trimmed (Windows), dot
// segments resolved.
func normalisePath(raw string) string {
	p, _, _ := strings.Cut(raw, "?")
	for range 2 {
		if d, err := url.PathUnescape(p); err == nil {
			p = d
		}
	}
	p = strings.ReplaceAll(norm.NFKC.String(p), "\\", "/")
	segs := strings.Split(p, "/")
	for i, s := range segs {
		s, _, _ = strings.Cut(s, ";")
		s = strings.TrimRight(s, " ")
		if len(s) > 2 && strings.Trim(s, ".") == "" {
			s = ".." // the most dangerous reading of "..."
		}
		segs[i] = s
	}
	return path.Clean("/" + strings.Join(segs, "/"))
}

// overriddenMethod is what Rails, Laravel, Symfony and Express's
// method-override run for a request.
func overriddenMethod(r *http.Request, body string) string {
	for _, h := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"} {
		if v := r.Header.Get(h); v != "" {
			return strings.ToUpper(v)
		}
	}
	if r.Method == http.MethodPost {
		if m := r.URL.Query().Get("_method"); m != "" {
			return strings.ToUpper(m)
		}
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			if form, err := url.ParseQuery(body); err == nil && form.Get("_method") != "" {
				return strings.ToUpper(form.Get("_method"))
			}
		}
	}
	return r.Method
}
