package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

const (
	// dnsTTL is short so a client re-asks soon after a task's proxy is
	// replaced; every answer is the same address anyway.
	dnsTTL = 10
	// dnsTCPIdle bounds how long a TCP DNS client may hold a connection.
	dnsTCPIdle = 10 * time.Second
	// dnsMaxTCPQueries bounds the queries on one TCP connection.
	dnsMaxTCPQueries = 64
	maxDNSMessage    = 4096
)

// The responder is written on miekg/dns's codec but not its Server, because
// its rules need the raw packet: a question name must not use compression
// pointers (a legitimate query's only name is the first in the packet,
// nothing to point back to), and a packet that breaks any rule gets no
// answer at all — not even FORMERR, which would tell a prober its packet
// was parsed. A query that is well-formed gets an answer: A → this proxy's
// address, anything else → NOTIMP. Nothing is ever forwarded.

// errDNSDrop explains why a query got no answer.
type errDNSDrop struct{ reason string }

func (e errDNSDrop) Error() string { return e.reason }

func drop(format string, args ...any) error { return errDNSDrop{fmt.Sprintf(format, args...)} }

// answerDNS builds the response to one raw query, or returns an
// errDNSDrop. The log record is returned with it.
func (p *Proxy) answerDNS(raw []byte) ([]byte, Record, error) {
	if err := checkRawQuery(raw); err != nil {
		return nil, Record{}, err
	}
	var q dns.Msg
	if err := q.Unpack(raw); err != nil {
		return nil, Record{}, drop("malformed: %v", err)
	}
	if q.Response || q.Opcode != dns.OpcodeQuery || len(q.Question) != 1 || len(q.Answer) != 0 || len(q.Ns) != 0 {
		return nil, Record{}, drop("not a plain query")
	}
	for _, rr := range q.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			return nil, Record{}, drop("unexpected additional record")
		}
	}
	question := q.Question[0]
	name := strings.TrimSuffix(strings.ToLower(question.Name), ".")
	if name == "" {
		name = "."
	}
	typ := dns.TypeToString[question.Qtype]
	if typ == "" {
		typ = fmt.Sprintf("TYPE%d", question.Qtype)
	}
	resp := new(dns.Msg)
	resp.SetReply(&q)
	resp.Authoritative = true
	resp.RecursionAvailable = true
	rec := Record{Verdict: VerdictDNS, QType: typ, Name: name}
	if question.Qtype == dns.TypeA && question.Qclass == dns.ClassINET {
		resp.Answer = []dns.RR{&dns.A{
			Hdr: dns.RR_Header{Name: question.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: dnsTTL},
			A:   p.listenIP.AsSlice(),
		}}
		rec.Answer = p.listenIP.String()
	} else {
		resp.Rcode = dns.RcodeNotImplemented
		rec.Answer = "NOTIMP"
	}
	out, err := resp.Pack()
	if err != nil {
		return nil, Record{}, drop("pack: %v", err)
	}
	return out, rec, nil
}

// checkRawQuery enforces what miekg's unpacker tolerates but a real stub
// resolver never sends: exactly one question, no answer or authority
// records, at most the EDNS OPT record, and a question name written out in
// plain labels.
func checkRawQuery(raw []byte) error {
	if len(raw) < 12+5 {
		return drop("short packet")
	}
	qd := binary.BigEndian.Uint16(raw[4:])
	an := binary.BigEndian.Uint16(raw[6:])
	ns := binary.BigEndian.Uint16(raw[8:])
	ar := binary.BigEndian.Uint16(raw[10:])
	switch {
	case raw[2]&0x80 != 0:
		return drop("response, not a query")
	case qd != 1:
		return drop("%d questions", qd)
	case an != 0 || ns != 0 || ar > 1:
		return drop("unexpected records")
	}
	off, total := 12, 0
	for {
		if off >= len(raw) {
			return drop("truncated name")
		}
		l := int(raw[off])
		if l == 0 {
			off++
			break
		}
		if l&0xC0 != 0 {
			return drop("compressed or extended label in question")
		}
		total += l + 1
		if total > 254 {
			return drop("name too long")
		}
		off += 1 + l
	}
	if off+4 > len(raw) {
		return drop("truncated question")
	}
	return nil
}

// ServeDNS answers DNS on pc (UDP) and l (TCP); either may be nil. It
// returns when both are closed by Shutdown.
func (p *Proxy) ServeDNS(pc net.PacketConn, l net.Listener) error {
	if pc == nil && l == nil {
		return errors.New("serve dns: no listener")
	}
	errc := make(chan error, 2)
	n := 0
	if pc != nil {
		n++
		p.track(pc)
		go func() { errc <- p.serveDNSUDP(pc) }()
	}
	if l != nil {
		n++
		p.track(l)
		go func() { errc <- p.serveDNSTCP(l) }()
	}
	var errs []error
	for range n {
		if err := <-errc; err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (p *Proxy) serveDNSUDP(pc net.PacketConn) error {
	buf := make([]byte, maxDNSMessage)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			if p.closing() {
				return nil
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return fmt.Errorf("serve dns udp: %w", err)
		}
		resp, rec, err := p.answerDNS(buf[:n])
		if err != nil {
			p.logDNSDrop(addr, err)
			continue
		}
		// Logged before the reply, so a client that got an answer finds it
		// in the log already.
		p.netlog.record(rec)
		if _, err := pc.WriteTo(resp, addr); err != nil {
			p.logger.Warn("dns reply failed", "peer", addr.String(), "err", err)
		}
	}
}

func (p *Proxy) serveDNSTCP(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if p.closing() {
				return nil
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return fmt.Errorf("serve dns tcp: %w", err)
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serveDNSConn(c)
		}()
	}
}

func (p *Proxy) serveDNSConn(c net.Conn) {
	p.track(c)
	defer p.untrack(c)
	defer c.Close()
	var lenBuf [2]byte
	for range dnsMaxTCPQueries {
		if err := c.SetDeadline(time.Now().Add(dnsTCPIdle)); err != nil {
			return
		}
		if _, err := io.ReadFull(c, lenBuf[:]); err != nil {
			return
		}
		msg := make([]byte, binary.BigEndian.Uint16(lenBuf[:]))
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		resp, rec, err := p.answerDNS(msg)
		if err != nil {
			// A TCP client that sent garbage gets the connection closed:
			// the same silence as on UDP.
			p.logDNSDrop(c.RemoteAddr(), err)
			return
		}
		out := make([]byte, 2+len(resp))
		binary.BigEndian.PutUint16(out, uint16(len(resp)))
		copy(out[2:], resp)
		p.netlog.record(rec)
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

func (p *Proxy) logDNSDrop(peer net.Addr, err error) {
	p.netlog.record(Record{Verdict: VerdictDNS, QType: dnsDropped, Reason: err.Error()})
	peerStr := ""
	if peer != nil {
		peerStr = peer.String()
	}
	p.logger.Info("dns query dropped", "peer", peerStr, "reason", err.Error())
}
