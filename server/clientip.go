package server

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// ParseTrustedProxies parses TRUSTED_PROXIES: IP addresses (a single host)
// or CIDR prefixes. An entry that is neither is an error naming it.
func ParseTrustedProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("TRUSTED_PROXIES: %q is not an IP address or CIDR prefix", s)
			}
			if p.Addr().Is4In6() {
				// ::ffff:10.0.0.0/104 means 10.0.0.0/8: addresses are
				// compared unmapped.
				if p.Bits() < 96 {
					return nil, fmt.Errorf("TRUSTED_PROXIES: %q is an IPv4-mapped prefix shorter than /96", s)
				}
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("TRUSTED_PROXIES: %q is not an IP address or CIDR prefix", s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func trustedAddr(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientAddr is the client's address as nginx's real_ip module with
// real_ip_recursive on finds it. When the direct peer is a trusted proxy,
// the X-Forwarded-For list (its header lines in order, each a
// comma-separated list) is walked from the right, past every trusted
// proxy, and the first address that is not one is the client. A malformed
// entry stops the walk: nothing left of it can be believed, so the client
// is the last trusted hop that handed it on. When every entry is a trusted
// proxy, the leftmost is the client. An untrusted peer's header is ignored.
func ClientAddr(peer netip.Addr, xff [][]byte, trusted []netip.Prefix) netip.Addr {
	peer = peer.Unmap().WithZone("")
	if len(trusted) == 0 || !trustedAddr(peer, trusted) {
		return peer
	}
	addr := peer
	for i := len(xff) - 1; i >= 0; i-- {
		list := xff[i]
		for len(list) > 0 {
			j := bytes.LastIndexByte(list, ',')
			entry := list[j+1:]
			if j < 0 {
				list = nil
			} else {
				list = list[:j]
			}
			a, ok := parseForwardedAddr(entry)
			if !ok {
				return addr
			}
			addr = a
			if !trustedAddr(a, trusted) {
				return a
			}
		}
	}
	return addr
}

// parseForwardedAddr parses one X-Forwarded-For entry: an IPv4 or IPv6
// address, optionally with a port (1.2.3.4:5, [::1]:5) or in brackets.
// Zones are refused (they mean nothing off the proxy's host).
func parseForwardedAddr(b []byte) (netip.Addr, bool) {
	s := strings.Trim(string(b), " \t")
	if s == "" || len(s) > 64 {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, perr := netip.ParseAddrPort(s)
		switch {
		case perr == nil:
			a = ap.Addr()
		case len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']':
			if a, err = netip.ParseAddr(s[1 : len(s)-1]); err != nil {
				return netip.Addr{}, false
			}
		default:
			return netip.Addr{}, false
		}
	}
	if a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// clientIPMiddleware finds the request's client address once (ClientAddr
// over TRUSTED_PROXIES) for ClientIP.
func clientIPMiddleware(trusted []netip.Prefix) fiber.Handler {
	return func(c *fiber.Ctx) error {
		peer := peerAddr(c)
		ip := peer
		if len(trusted) > 0 && trustedAddr(peer, trusted) {
			var xff [][]byte
			c.Request().Header.VisitAll(func(k, v []byte) {
				if strings.EqualFold(string(k), fiber.HeaderXForwardedFor) {
					xff = append(xff, v)
				}
			})
			ip = ClientAddr(peer, xff, trusted)
		}
		c.Locals(localClientIP, ip.String())
		return c.Next()
	}
}

func peerAddr(c *fiber.Ctx) netip.Addr {
	a, ok := netip.AddrFromSlice(c.Context().RemoteIP())
	if !ok {
		return netip.IPv4Unspecified()
	}
	return a.Unmap()
}

// ClientIP is the address of the client that sent the request: the direct
// peer, or with TRUSTED_PROXIES the address ClientAddr finds in
// X-Forwarded-For. Everything that records or limits by address (login
// and register limits, audit rows, sessions, request logs) uses it. The
// string is the request's own copy: it may outlive the handler.
func ClientIP(c *fiber.Ctx) string {
	if ip, ok := c.Locals(localClientIP).(string); ok {
		return ip
	}
	return peerAddr(c).String()
}

// IPBucket is the subject under which per-IP limits count an address
// (ClientIP's result): IPv6 clients by /64, since one host usually holds a
// whole /64; anything unparsable shares "unknown".
func IPBucket(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return "unknown"
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
