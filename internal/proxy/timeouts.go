package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Timeouts bound every phase of a request on both sides (STYLE rule 10,
// smokescreen's model), so a slow or stalled agent or upstream cannot pin
// the proxy's connections and goroutines. A zero field takes its default.
type Timeouts struct {
	// Header bounds the TLS handshake and the read of a request's headers
	// from the agent. Default 20s.
	Header time.Duration
	// Idle bounds an agent's idle keep-alive connection. Default 90s.
	Idle time.Duration
	// Body bounds each read of a request body from the agent and each write
	// of a response to it: an agent that stalls longer is dropped.
	// Default 2m.
	Body time.Duration
	// UpstreamHeader bounds the wait for an upstream's response headers.
	// Default 10m: a model API may compute a whole answer before it sends
	// them.
	UpstreamHeader time.Duration
	// UpstreamIdle bounds silence on an upstream connection, and on both
	// sides of a WebSocket tunnel. Default 10m.
	UpstreamIdle time.Duration
}

func (t Timeouts) withDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Header, 20*time.Second)
	def(&t.Idle, 90*time.Second)
	def(&t.Body, 2*time.Minute)
	def(&t.UpstreamHeader, 10*time.Minute)
	def(&t.UpstreamIdle, 10*time.Minute)
	return t
}

// DefaultMaxConns caps the agent's concurrent connections to the proxy;
// more wait in the listen queue until one closes.
const DefaultMaxConns = 1024

// idleConn bounds silence on a connection once armed: every read and write
// pushes its deadline idle into the future. Unarmed it is transparent, so
// an agent connection can carry it while http.Server manages its deadlines
// and be armed when the server lets go of it (a WebSocket tunnel).
type idleConn struct {
	net.Conn
	idle atomic.Int64 // nanoseconds; 0 = unarmed
}

func (c *idleConn) arm(d time.Duration) { c.idle.Store(int64(d)) }

func (c *idleConn) push() {
	if d := c.idle.Load(); d > 0 {
		_ = c.Conn.SetDeadline(time.Now().Add(time.Duration(d)))
	}
}

func (c *idleConn) Read(b []byte) (int, error) {
	c.push()
	return c.Conn.Read(b)
}

func (c *idleConn) Write(b []byte) (int, error) {
	c.push()
	return c.Conn.Write(b)
}

// idleListener wraps every accepted connection in an unarmed idleConn.
type idleListener struct{ net.Listener }

func (l idleListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &idleConn{Conn: c}, nil
}

// agentConn finds the agent's idleConn under the connection http.Server
// gave the request (a *tls.Conn for HTTPS).
func agentConn(ctx context.Context) *idleConn {
	c, _ := ctx.Value(connKey{}).(net.Conn)
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	ic, _ := c.(*idleConn)
	return ic
}

// agentWriter is the ResponseWriter the handler and ReverseProxy write to:
// each write to the agent has a deadline (a client that stops reading is
// dropped, and the upstream connection with it), and 1xx headers from a
// scoped host are redacted like final ones (ReverseProxy forwards them
// through WriteHeader).
type agentWriter struct {
	http.ResponseWriter
	rc   *http.ResponseController
	p    *Proxy
	st   *reqState
	body time.Duration
	// h2: HTTP/2 write deadlines are timers that reset the stream when
	// they fire, write or no write, so they are set around each write
	// only; HTTP/1's apply to the next write and can stay.
	h2 bool
}

func (p *Proxy) agentWriter(rw http.ResponseWriter, r *http.Request, st *reqState) *agentWriter {
	rc := http.NewResponseController(rw)
	// A deadline the previous request on this connection left behind.
	_ = rc.SetWriteDeadline(time.Time{})
	return &agentWriter{ResponseWriter: rw, rc: rc, p: p, st: st, body: p.timeouts.Body, h2: r.ProtoMajor == 2}
}

func (w *agentWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 && w.st.scoped {
		if rd := w.p.redactor(); rd != nil {
			w.st.redacted.Add(int64(rd.redactHeader(w.Header())))
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *agentWriter) Write(b []byte) (int, error) {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.body))
	n, err := w.ResponseWriter.Write(b)
	w.release()
	return n, err
}

// FlushError is what http.ResponseController (and so ReverseProxy's
// streaming flushes) calls.
func (w *agentWriter) FlushError() error {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.body))
	err := w.rc.Flush()
	w.release()
	return err
}

func (w *agentWriter) release() {
	if w.h2 {
		_ = w.rc.SetWriteDeadline(time.Time{})
	}
}

func (w *agentWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// agentBody gives each read of the request body a deadline, cleared at its
// end: net/http reads the connection in the background once the body is
// done, and a deadline firing there would cancel the request. After a
// timeout the deadline stays, so net/http's attempt to drain the rest of
// the body fails at once and the connection is closed.
type agentBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	body time.Duration
}

func (p *Proxy) agentBody(r *http.Request, w *agentWriter) {
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	r.Body = &agentBody{ReadCloser: r.Body, rc: w.rc, body: p.timeouts.Body}
}

func (b *agentBody) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.body))
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
