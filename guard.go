package callback

import (
	"fmt"
	"net/netip"
	"syscall"
)

// SSRFGuard keeps callbacks away from the IM server's own network. When
// apps supply their callback URLs, an App could point its URL at an
// internal service (a database's HTTP port, an admin API, a cloud metadata
// service) and have the IM server call it on every message: server-side
// request forgery.
//
// The guard refuses to connect to loopback (127.0.0.0/8, ::1), private
// (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7), shared
// (100.64.0.0/10, where some clouds put their metadata service),
// link-local (169.254.0.0/16, fe80::/10, which hold the cloud metadata
// address 169.254.169.254), unspecified, multicast, broadcast and other
// reserved addresses, IPv4 addresses written as IPv6 (::ffff:a.b.c.d,
// NAT64 64:ff9b::/96) included. It checks the address about to be dialled,
// after DNS resolution, so a name that resolves to an internal address,
// or starts to (DNS rebinding), is refused too. With the guard on, the
// Dispatcher uses no proxy from the environment, since the guard could not
// see the address behind it.
type SSRFGuard struct {
	// Allow lists networks that may be dialled even though the guard
	// refuses them otherwise, for an App backend on the internal network,
	// for example 10.1.2.0/24. Only addresses can be allowed, not names:
	// the guard sees the address being dialled.
	Allow []netip.Prefix
}

// refused lists the networks the guard refuses beyond what netip.Addr's
// predicates cover (loopback, private, link-local, multicast, unspecified).
var refused = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),         // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),     // shared address space (carrier-grade NAT; Alibaba Cloud metadata 100.100.100.200)
	netip.MustParsePrefix("192.0.0.0/24"),      // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),      // documentation (TEST-NET-1)
	netip.MustParsePrefix("198.18.0.0/15"),     // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"),   // documentation (TEST-NET-2)
	netip.MustParsePrefix("203.0.113.0/24"),    // documentation (TEST-NET-3)
	netip.MustParsePrefix("240.0.0.0/4"),       // reserved, and 255.255.255.255 broadcast
	netip.MustParsePrefix("100::/64"),          // IPv6 discard-only
	netip.MustParsePrefix("2001:db8::/32"),     // IPv6 documentation
	netip.MustParsePrefix("fec0::/10"),         // IPv6 site-local (deprecated)
	netip.MustParsePrefix("fd00:ec2::254/128"), // AWS metadata over IPv6 (inside fc00::/7 too)
}

// nat64 lists the IPv6 prefixes whose last 32 bits are an IPv4 address.
var nat64 = []netip.Prefix{
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
}

// validate checks the guard's allow-list.
func (g *SSRFGuard) validate() error {
	if g == nil {
		return nil
	}
	for i, p := range g.Allow {
		if !p.IsValid() {
			return fmt.Errorf("%w: SSRFGuard.Allow[%d] is not a valid network", ErrInvalidConfig, i)
		}
	}
	return nil
}

// control is a net.Dialer.Control: it runs after DNS resolution and before
// the connection is made, with the address about to be dialled.
func (g *SSRFGuard) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s %q is not an IP address", ErrForbiddenAddress, network, address)
	}
	if g.permits(ap.Addr()) {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrForbiddenAddress, ap.Addr())
}

// permits reports whether the guard lets a connection to a go through.
func (g *SSRFGuard) permits(a netip.Addr) bool {
	a = a.WithZone("").Unmap()
	for _, p := range g.Allow {
		if p.Contains(a) {
			return true
		}
	}
	return !internal(a)
}

// internal reports whether a is an address the guard refuses by default.
func internal(a netip.Addr) bool {
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsUnspecified() ||
		a.IsLinkLocalUnicast() || a.IsMulticast() {
		return true
	}
	for _, p := range refused {
		if p.Contains(a) {
			return true
		}
	}
	for _, p := range nat64 {
		if p.Contains(a) {
			b := a.As16()
			return internal(netip.AddrFrom4([4]byte(b[12:])))
		}
	}
	return false
}
