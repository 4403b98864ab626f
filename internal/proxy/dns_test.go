package proxy

import (
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	return m
}

func TestDNS(t *testing.T) {
	px := startProxy(t, Config{Allowlist: mustAllowlist(t, "domains: []\n")})
	tests := []struct {
		name   string
		net    string
		q      *dns.Msg
		rcode  int
		answer string // the A record's address, "" = none
		line   string
	}{
		{"A over udp", "udp", query("api.github.com", dns.TypeA), dns.RcodeSuccess, testListenIP, "DNS A api.github.com -> 10.199.1.100"},
		{"A over tcp", "tcp", query("API.GitHub.com", dns.TypeA), dns.RcodeSuccess, testListenIP, "DNS A api.github.com -> 10.199.1.100"},
		{"A for a name that does not exist", "udp", query("no-such-name.invalid", dns.TypeA), dns.RcodeSuccess, testListenIP, "DNS A no-such-name.invalid -> 10.199.1.100"},
		{"AAAA", "udp", query("x.com", dns.TypeAAAA), dns.RcodeNotImplemented, "", "DNS AAAA x.com -> NOTIMP"},
		{"TXT", "udp", query("exfil.evil.com", dns.TypeTXT), dns.RcodeNotImplemented, "", "DNS TXT exfil.evil.com -> NOTIMP"},
		{"MX", "tcp", query("x.com", dns.TypeMX), dns.RcodeNotImplemented, "", "DNS MX x.com -> NOTIMP"},
		{"A with EDNS", "udp", query("x.com", dns.TypeA).SetEdns0(1232, false), dns.RcodeSuccess, testListenIP, "DNS A x.com -> 10.199.1.100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			px.log.take()
			addr := px.dnsUDPAddr
			if tt.net == "tcp" {
				addr = px.dnsTCPAddr
			}
			c := &dns.Client{Net: tt.net, Timeout: 5 * time.Second}
			resp, _, err := c.Exchange(tt.q, addr)
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			if resp.Rcode != tt.rcode {
				t.Errorf("rcode = %s; want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
			}
			var got string
			for _, rr := range resp.Answer {
				a, ok := rr.(*dns.A)
				if !ok {
					t.Fatalf("answer %v is not an A record", rr)
				}
				got += a.A.String()
				if a.Hdr.Ttl > 60 {
					t.Errorf("TTL = %d; want a small TTL", a.Hdr.Ttl)
				}
			}
			if got != tt.answer {
				t.Errorf("answer = %q; want %q", got, tt.answer)
			}
			if len(resp.Ns) != 0 || len(resp.Extra) != 0 && tt.q.IsEdns0() == nil {
				t.Errorf("unexpected authority/additional records: %v %v", resp.Ns, resp.Extra)
			}
			if diff := cmp.Diff([]string{tt.line}, px.log.take()); diff != "" {
				t.Errorf("network log mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDNSNoAnswer sends a bad packet followed by a good one on the same
// socket: the responder works in order, so if the bad one were answered
// its reply would arrive first.
func TestDNSNoAnswer(t *testing.T) {
	px := startProxy(t, Config{Allowlist: mustAllowlist(t, "domains: []\n")})
	multi := query("a.com", dns.TypeA)
	multi.Question = append(multi.Question, dns.Question{Name: "b.com.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
	multiRaw, err := multi.Pack()
	if err != nil {
		t.Fatal(err)
	}
	// A question whose name is a compression pointer back into the header.
	compressed := []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 0x0C, 0, 1, 0, 1}
	// A pointer after a first label.
	compressedTail := []byte{0x12, 0x35, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'a', 0xC0, 0x0C, 0, 1, 0, 1}
	resp := query("x.com", dns.TypeA)
	resp.Response = true
	respRaw, _ := resp.Pack()
	withAnswer := query("x.com", dns.TypeA)
	withAnswer.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "x.com.", Rrtype: dns.TypeA, Class: dns.ClassINET}, A: net.IPv4(1, 2, 3, 4)}}
	withAnswerRaw, _ := withAnswer.Pack()
	tests := []struct {
		name   string
		packet []byte
		line   string
	}{
		{"two questions", multiRaw, "DNS DROPPED 2 questions"},
		{"no question", []byte{0x12, 0x34, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1}, "DNS DROPPED 0 questions"},
		{"compression pointer as name", compressed, "DNS DROPPED compressed or extended label in question"},
		{"compression pointer after a label", compressedTail, "DNS DROPPED compressed or extended label in question"},
		{"a response", respRaw, "DNS DROPPED response, not a query"},
		{"query carrying an answer", withAnswerRaw, "DNS DROPPED unexpected records"},
		{"truncated", []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 5, 'a'}, "DNS DROPPED short packet"},
		{"name running off the end", []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 9, 'a', 'b', 'c', 'd', 'e', 'f'}, "DNS DROPPED truncated name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			px.log.take()
			c, err := net.Dial("udp", px.dnsUDPAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tt.packet); err != nil {
				t.Fatal(err)
			}
			good := query("good.com", dns.TypeA)
			good.Id = 0xBEEF
			goodRaw, _ := good.Pack()
			if _, err := c.Write(goodRaw); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 512)
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			var got dns.Msg
			if err := got.Unpack(buf[:n]); err != nil {
				t.Fatal(err)
			}
			if got.Id != 0xBEEF {
				t.Errorf("first reply has id %#x; want the good query's 0xbeef (the bad packet was answered)", got.Id)
			}
			want := []string{tt.line, "DNS A good.com -> 10.199.1.100"}
			if diff := cmp.Diff(want, px.log.take()); diff != "" {
				t.Errorf("network log mismatch (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("tcp connection closed on a bad query", func(t *testing.T) {
		c, err := net.Dial("tcp", px.dnsTCPAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		framed := append([]byte{0, byte(len(multiRaw))}, multiRaw...)
		if _, err := c.Write(framed); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(make([]byte, 512))
		if n != 0 || err == nil {
			t.Errorf("read %d bytes, err %v; want the connection closed without a reply", n, err)
		}
	})
}
