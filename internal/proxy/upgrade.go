package proxy

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"

	"github.com/airut/airut/internal/allowlist"
	"golang.org/x/net/http/httpguts"
)

// After a 101 the proxy only copies bytes, so the upgrade is where the
// allowlist's path and method rules end. Only WebSocket is honoured, and
// only once the upstream has proven it speaks it: an upstream that
// honours "Upgrade: h2c" (or answers 101 to anything) would otherwise let
// the agent send any request, method and host through one allowed GET.
//
// WebSocket over HTTP/2 (RFC 8441 extended CONNECT) is not offered: the
// HTTP/2 server does not send SETTINGS_ENABLE_CONNECT_PROTOCOL, so a
// client must not use it and opens an HTTP/1.1 connection for the
// WebSocket instead (browsers, Node's ws and undici, Python websockets,
// Go's gorilla and coder websocket, curl all do); one that sends
// ":protocol" anyway gets a stream error, and a plain CONNECT is refused.

// upgradeToken is the protocol a request or response switches to, as
// ReverseProxy reads it: the Upgrade header when Connection lists
// "upgrade".
func upgradeToken(h http.Header) string {
	if !httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade") {
		return ""
	}
	return h.Get("Upgrade")
}

// checkUpgrade lets a well-formed WebSocket handshake through and turns any
// other upgrade into a plain request: the Upgrade header is removed, which
// is how a server without the protocol refuses it (RFC 9110 §7.8), so
// "curl --http2 http://…" still gets its answer over HTTP/1.1.
func (p *Proxy) checkUpgrade(r *http.Request, st *reqState) error {
	up := upgradeToken(r.Header)
	if up == "" {
		return nil
	}
	if len(r.Header.Values("Upgrade")) != 1 || !strings.EqualFold(strings.TrimSpace(up), "websocket") {
		r.Header.Del("Upgrade")
		st.rec.Upgrade = up
		return nil
	}
	keys := r.Header.Values("Sec-WebSocket-Key")
	switch {
	case r.Method != http.MethodGet:
		return refused("WebSocket handshake with method %s, not GET", r.Method)
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		return refused("WebSocket handshake with Sec-WebSocket-Version %q, not 13", r.Header.Get("Sec-WebSocket-Version"))
	case len(keys) != 1:
		return refused("WebSocket handshake with %d Sec-WebSocket-Key headers", len(keys))
	}
	if k, err := base64.StdEncoding.DecodeString(keys[0]); err != nil || len(k) != 16 {
		return refused("WebSocket handshake with a Sec-WebSocket-Key that is not 16 bytes in base64")
	}
	st.wsKey = keys[0]
	return nil
}

// websocketGUID is RFC 6455's constant for Sec-WebSocket-Accept.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func websocketAccept(key string) string {
	sum := sha1.Sum([]byte(key + websocketGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// switchProtocols checks a 101 before ReverseProxy splices the two
// connections: it must answer this request's WebSocket handshake, with the
// accept value only a WebSocket server computes. On a scoped host what the
// upstream sends through the tunnel is redacted too (frames are left
// uncompressed: the request's Sec-WebSocket-Extensions was removed).
func (p *Proxy) switchProtocols(resp *http.Response, st *reqState) error {
	switch {
	case st.wsKey == "":
		return fmt.Errorf("%w: 101 to a request that is not a WebSocket handshake", errBadSwitch)
	case !strings.EqualFold(strings.TrimSpace(upgradeToken(resp.Header)), "websocket"):
		return fmt.Errorf("%w: 101 with Upgrade %q", errBadSwitch, resp.Header.Get("Upgrade"))
	case resp.Header.Get("Sec-WebSocket-Accept") != websocketAccept(st.wsKey):
		return fmt.Errorf("%w: wrong Sec-WebSocket-Accept", errBadSwitch)
	case st.scoped && resp.Header.Get("Sec-WebSocket-Extensions") != "":
		return fmt.Errorf("%w: extension %q not requested", errBadSwitch, resp.Header.Get("Sec-WebSocket-Extensions"))
	}
	if rd := p.redactor(); st.scoped && rd != nil {
		st.redacted.Add(int64(rd.redactHeader(resp.Header)))
		back, ok := resp.Body.(io.ReadWriteCloser)
		if !ok {
			return fmt.Errorf("%w: upgraded body is not a connection", errBadSwitch)
		}
		resp.Body = &redactConn{redactReader: newRedactReader(rd, back, &st.redacted), w: back}
	}
	if c := agentConn(resp.Request.Context()); c != nil {
		// The tunnel outlives every server timeout: idle is its only bound.
		c.arm(p.timeouts.UpstreamIdle)
	}
	st.once.Do(func() { p.writeRecord(st) })
	st.tunnel = true
	return nil
}

// methodParam blocks a POST whose _method parameter (in the query or a
// form body) names a method the allowlist does not allow here: Rails,
// Laravel, Symfony and Express's method-override run that method instead
// of POST. The headers of the same kind are dropped in check; a parameter
// cannot be dropped without changing the request, so it blocks.
func (p *Proxy) methodParam(fr *Request) error {
	r := fr.HTTP
	var methods []string
	if q, err := url.ParseQuery(r.URL.RawQuery); err == nil || len(q) > 0 {
		methods = append(methods, q["_method"]...)
	}
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/x-www-form-urlencoded":
		body, err := fr.Body()
		if err != nil {
			return err
		}
		if form, err := url.ParseQuery(string(body)); err == nil || len(form) > 0 {
			methods = append(methods, form["_method"]...)
		}
	case "multipart/form-data":
		body, err := fr.Body()
		if err != nil {
			return err
		}
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for {
			part, err := mr.NextPart()
			if err != nil {
				break
			}
			if part.FormName() == "_method" {
				v, _ := io.ReadAll(io.LimitReader(part, 64))
				methods = append(methods, string(v))
			}
		}
	}
	for _, m := range methods {
		m = strings.TrimSpace(m)
		if m == "" {
			continue
		}
		if d := p.cfg.Allowlist.Match(fr.Host, fr.Path, m); d.Verdict != allowlist.Allowed {
			return fmt.Errorf("_method=%s would run %s, which the network allowlist does not allow for %s%s", m, strings.ToUpper(m), fr.Host, fr.Path)
		}
	}
	return nil
}
