package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	dnsTimeout  = 5 * time.Second
	dialTimeout = 10 * time.Second
)

// ErrAddressDenied is matched (errors.Is) when an allowed name resolves to
// an address the proxy refuses to dial: loopback, link-local (cloud
// metadata), private, CGNAT and the like, or the proxy itself.
var ErrAddressDenied = errors.New("address denied")

// deniedPrefixes are never dialled unless pinned or explicitly allowed:
// reaching them would let an allowed name (or a name whose DNS the agent's
// author controls) open the operator's own network to the agent.
var deniedPrefixes = mustPrefixes(
	"0.0.0.0/8",       // "this network", unspecified
	"10.0.0.0/8",      // private
	"100.64.0.0/10",   // CGNAT
	"127.0.0.0/8",     // loopback
	"169.254.0.0/16",  // link-local, cloud metadata
	"172.16.0.0/12",   // private
	"192.0.0.0/24",    // IETF protocol assignments
	"192.0.2.0/24",    // documentation
	"192.168.0.0/16",  // private
	"198.18.0.0/15",   // benchmarking
	"198.51.100.0/24", // documentation
	"203.0.113.0/24",  // documentation
	"224.0.0.0/4",     // multicast
	"240.0.0.0/4",     // reserved, broadcast
	"::/128",          // unspecified
	"::1/128",         // loopback
	"::/96",           // IPv4-compatible (deprecated), would embed any v4
	"100::/64",        // discard
	"2001::/32",       // Teredo: embeds an obfuscated IPv4
	"2001:db8::/32",   // documentation
	"fc00::/7",        // unique local
	"fe80::/10",       // link-local
	"fec0::/10",       // site-local (deprecated)
	"ff00::/8",        // multicast
)

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// guard decides which upstream addresses may be dialled.
type guard struct {
	allow []netip.Prefix // operator-allowed ranges
	self  []netip.Addr   // the proxy's own addresses
}

// check returns nil if ip may be dialled.
func (g *guard) check(ip netip.Addr) error {
	ip = ip.WithZone("")
	for _, p := range g.allow {
		if p.Contains(ip.Unmap()) || p.Contains(ip) {
			return nil
		}
	}
	for _, a := range embeddedV4(ip) {
		if err := g.check(a); err != nil {
			return fmt.Errorf("%w: %s embeds %s", ErrAddressDenied, ip, a)
		}
	}
	ip = ip.Unmap()
	for _, s := range g.self {
		if s == ip {
			return fmt.Errorf("%w: %s is the proxy itself", ErrAddressDenied, ip)
		}
	}
	for _, p := range deniedPrefixes {
		if p.Contains(ip) {
			return fmt.Errorf("%w: %s is in %s", ErrAddressDenied, ip, p)
		}
	}
	if !ip.IsGlobalUnicast() {
		return fmt.Errorf("%w: %s is not a global unicast address", ErrAddressDenied, ip)
	}
	return nil
}

var (
	nat64      = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour  = netip.MustParsePrefix("2002::/16")
)

// embeddedV4 returns the IPv4 addresses an IPv6 address routes to by
// construction (NAT64, 6to4), which must pass the guard too. IPv4-mapped
// addresses are unmapped by the caller.
func embeddedV4(ip netip.Addr) []netip.Addr {
	if !ip.Is6() || ip.Is4In6() {
		return nil
	}
	b := ip.As16()
	switch {
	case nat64.Contains(ip), nat64Local.Contains(ip):
		return []netip.Addr{netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})}
	case sixToFour.Contains(ip):
		return []netip.Addr{netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})}
	}
	return nil
}

// ownAddresses lists the addresses of this host's interfaces, so the proxy
// cannot be made to dial itself through a name that resolves to it.
func ownAddresses(extra ...netip.Addr) []netip.Addr {
	out := append([]netip.Addr(nil), extra...)
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return out
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap().WithZone(""))
		}
	}
	return out
}

// dialer resolves, checks and dials upstream addresses.
type dialer struct {
	guard    guard
	pins     map[string]string // lower-case host → IP, IP:port or name[:port]
	resolver *net.Resolver
	guarded  net.Dialer // Control re-checks the address actually dialled
	pinned   net.Dialer
}

func newDialer(g guard, pins map[string]string, upstreamDNS string) *dialer {
	d := &dialer{guard: g, pins: pins, resolver: net.DefaultResolver}
	d.guarded = net.Dialer{
		Timeout: dialTimeout,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: unparsable %q", ErrAddressDenied, address)
			}
			return d.guard.check(ap.Addr())
		},
	}
	d.pinned = net.Dialer{Timeout: dialTimeout}
	if upstreamDNS != "" {
		var nd net.Dialer
		d.resolver = &net.Resolver{
			PreferGo: true,
			Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return nd.DialContext(ctx, network, upstreamDNS)
			},
		}
	}
	return d
}

// DialContext dials addr ("host:port" from the upstream URL). A pinned host
// goes to its pinned address, unchecked: pinning is the operator's
// explicit choice. Any other host is resolved with a timeout, every
// address checked (one denied address refuses the name: a name that mixes
// public and private answers is a rebinding attempt or a mistake), and
// the checked addresses dialled, each checked again by Control.
func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if pin, ok := d.pins[strings.ToLower(host)]; ok {
		target, err := pinTarget(pin, port)
		if err != nil {
			return nil, err
		}
		return d.pinned.DialContext(ctx, network, target)
	}
	ips, err := d.lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	for _, ip := range ips {
		if err := d.guard.check(ip); err != nil {
			return nil, fmt.Errorf("%s: %w", host, err)
		}
	}
	var errs []error
	for _, ip := range ips {
		c, err := d.guarded.DialContext(ctx, network, netip.AddrPortFrom(ip, mustPort(port)).String())
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func (d *dialer) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, dnsTimeout)
	defer cancel()
	ips, err := d.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("resolve %s: no addresses", host)
	}
	return ips, nil
}

// pinTarget turns a pin ("10.0.0.5", "10.0.0.5:8443", "[::1]:8443",
// "host.internal") into a dial address, keeping the request's port when the
// pin has none.
func pinTarget(pin, port string) (string, error) {
	if ip, err := netip.ParseAddr(pin); err == nil {
		return netip.AddrPortFrom(ip, mustPort(port)).String(), nil
	}
	if h, p, err := net.SplitHostPort(pin); err == nil {
		return net.JoinHostPort(h, p), nil
	}
	if pin == "" {
		return "", errors.New("empty pinned address")
	}
	return net.JoinHostPort(pin, port), nil
}

// mustPort parses a port the proxy itself put in the upstream URL; a bad
// one yields port 0, which no dial succeeds on.
func mustPort(p string) uint16 {
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return 0
	}
	return uint16(n)
}
