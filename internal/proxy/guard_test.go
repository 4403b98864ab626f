package proxy

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

func TestGuardCheck(t *testing.T) {
	g := guard{
		allow: []netip.Prefix{netip.MustParsePrefix("10.42.0.0/16")},
		self:  []netip.Addr{netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("8.8.4.4")},
	}
	tests := []struct {
		ip      string
		allowed bool
	}{
		{"93.184.216.34", true},
		{"2606:2800:220:1:248:1893:25c8:1946", true},
		{"127.0.0.1", false},
		{"127.1.2.3", false},
		{"::1", false},
		{"10.0.0.5", false},
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"172.32.0.1", true},
		{"192.168.1.1", false},
		{"100.64.0.1", false},
		{"100.127.255.255", false},
		{"169.254.169.254", false},
		{"fe80::1", false},
		{"fd00:ec2::254", false},
		{"fc00::1", false},
		{"0.0.0.0", false},
		{"::", false},
		{"224.0.0.1", false},
		{"ff02::1", false},
		{"255.255.255.255", false},
		{"::ffff:127.0.0.1", false},
		{"::ffff:169.254.169.254", false},
		{"::ffff:93.184.216.34", true},
		{"::127.0.0.1", false},
		{"64:ff9b::a9fe:a9fe", false},  // NAT64 of 169.254.169.254
		{"64:ff9b::5db8:d822", true},   // NAT64 of 93.184.216.34
		{"2002:7f00:1::1", false},      // 6to4 of 127.0.0.1
		{"2002:5db8:d822::1", true},    // 6to4 of 93.184.216.34
		{"2001:0:4136:e378::1", false}, // Teredo
		{"8.8.4.4", false},             // the proxy itself
		{"10.42.1.1", true},            // operator-allowed range
		{"::ffff:10.42.1.1", true},
		{"fe80::1%eth0", false},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			err := g.check(netip.MustParseAddr(tt.ip))
			if got := err == nil; got != tt.allowed {
				t.Errorf("check(%s) = %v; want allowed=%t", tt.ip, err, tt.allowed)
			}
			if err != nil && !errors.Is(err, ErrAddressDenied) {
				t.Errorf("error %v does not match ErrAddressDenied", err)
			}
		})
	}
}

// startUpstreamDNS serves a tiny zone on loopback, standing in for
// network.upstream_dns.
func startUpstreamDNS(t *testing.T, zone map[string][]string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		addrs, ok := zone[strings.ToLower(q.Name)]
		if !ok {
			m.Rcode = dns.RcodeNameError
		}
		for _, a := range addrs {
			ip := net.ParseIP(a)
			switch {
			case q.Qtype == dns.TypeA && ip.To4() != nil && !strings.Contains(a, ":"):
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: ip})
			case q.Qtype == dns.TypeAAAA && strings.Contains(a, ":"):
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: 1}, AAAA: ip})
			}
		}
		_ = w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: mux}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

func TestSSRFGuard(t *testing.T) {
	upstreamDNS := startUpstreamDNS(t, map[string][]string{
		"loop.ssrf.test.":     {"127.0.0.1"},
		"private.ssrf.test.":  {"10.0.0.5"},
		"metadata.ssrf.test.": {"169.254.169.254"},
		"cgnat.ssrf.test.":    {"100.64.1.1"},
		"mapped.ssrf.test.":   {"::ffff:127.0.0.1"},
		"ula.ssrf.test.":      {"fd00::1"},
		"mixed.ssrf.test.":    {"93.184.216.34", "10.0.0.5"},
		"self.ssrf.test.":     {testListenIP},
		"opened.ssrf.test.":   {"127.0.0.1"},
	})
	e := newEnv(t, func(c *Config) {
		c.UpstreamDNS = upstreamDNS
		// The operator opened one loopback address: the guard lets it be
		// dialled (nothing listens on its port 80, so the dial fails).
		c.AllowRanges = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		// Pinning exempts a name; this one would otherwise be refused.
		c.Resolve["pinned.ssrf.test"] = c.Resolve["plain.example.com"]
	})
	tests := []struct {
		host   string
		status int
		line   string
	}{
		{"private.ssrf.test", 403, "BLOCKED GET http://private.ssrf.test/ -> 403"},
		{"metadata.ssrf.test", 403, "BLOCKED GET http://metadata.ssrf.test/ -> 403"},
		{"cgnat.ssrf.test", 403, "BLOCKED GET http://cgnat.ssrf.test/ -> 403"},
		{"ula.ssrf.test", 403, "BLOCKED GET http://ula.ssrf.test/ -> 403"},
		{"mixed.ssrf.test", 403, "BLOCKED GET http://mixed.ssrf.test/ -> 403"},
		{"self.ssrf.test", 403, "BLOCKED GET http://self.ssrf.test/ -> 403"},
		{"pinned.ssrf.test", 200, "ALLOWED GET http://pinned.ssrf.test/ -> 200"},
		{"nxdomain.ssrf.test", 502, "ERROR GET http://nxdomain.ssrf.test/ -> "},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			e.px.log.take()
			resp, body := e.px.raw(t, nil, "GET / HTTP/1.1\r\nHost: "+tt.host+"\r\n\r\n")
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d; want %d (%s)", resp.StatusCode, tt.status, body)
			}
			lines := e.px.log.take()
			if len(lines) != 1 || !strings.HasPrefix(lines[0], tt.line) {
				t.Errorf("network log = %q; want one line starting %q", lines, tt.line)
			}
		})
	}
	t.Run("loopback unless opened", func(t *testing.T) {
		e2 := newEnv(t, func(c *Config) { c.UpstreamDNS = upstreamDNS })
		for _, host := range []string{"loop.ssrf.test", "mapped.ssrf.test"} {
			resp, _ := e2.px.raw(t, nil, "GET / HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
			if resp.StatusCode != 403 {
				t.Errorf("%s: status = %d; want 403", host, resp.StatusCode)
			}
			if diff := cmp.Diff([]string{"BLOCKED GET http://" + host + "/ -> 403"}, e2.px.log.take()); diff != "" {
				t.Errorf("%s: network log mismatch (-want +got):\n%s", host, diff)
			}
		}
	})
	t.Run("opened range is dialled", func(t *testing.T) {
		e.px.log.take()
		resp, _ := e.px.raw(t, nil, "GET / HTTP/1.1\r\nHost: opened.ssrf.test\r\n\r\n")
		lines := e.px.log.take()
		// Dialled, not refused by the guard: whatever answers (or
		// nothing) on 127.0.0.1:80, the request is not BLOCKED.
		if resp.StatusCode == 403 || len(lines) != 1 || strings.HasPrefix(lines[0], "BLOCKED") {
			t.Errorf("status %d, log %q; want the address dialled", resp.StatusCode, lines)
		}
	})
}
