package server_test

import (
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/server"
)

var testTrusted = mustTrusted("10.0.0.0/8", "192.168.1.1", "2001:db8::/32")

func mustTrusted(list ...string) []netip.Prefix {
	p, err := server.ParseTrustedProxies(list)
	if err != nil {
		panic(err)
	}
	return p
}

func TestClientAddr(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		peer string
		xff  []string // header lines
		want string
	}{
		{"untrusted peer: header ignored", "203.0.113.5", []string{"1.2.3.4"}, "203.0.113.5"},
		{"trusted peer, no header", "10.0.0.1", nil, "10.0.0.1"},
		{"one hop", "10.0.0.1", []string{"1.2.3.4"}, "1.2.3.4"},
		{"forged left entry ignored", "10.0.0.1", []string{"6.6.6.6, 1.2.3.4"}, "1.2.3.4"},
		{"many forged entries", "10.0.0.1", []string{"6.6.6.6, 7.7.7.7, 8.8.8.8, 1.2.3.4"}, "1.2.3.4"},
		{"trusted hops skipped", "10.0.0.1", []string{"1.2.3.4, 10.0.0.2, 192.168.1.1"}, "1.2.3.4"},
		{"rightmost untrusted wins", "10.0.0.1", []string{"1.2.3.4, 7.7.7.7"}, "7.7.7.7"},
		{"all trusted: leftmost", "10.0.0.1", []string{"10.0.0.3, 10.0.0.2"}, "10.0.0.3"},
		{"malformed rightmost: the peer", "10.0.0.1", []string{"1.2.3.4, garbage"}, "10.0.0.1"},
		{"malformed left of the client", "10.0.0.1", []string{"garbage, 1.2.3.4"}, "1.2.3.4"},
		{"malformed left of a trusted hop", "10.0.0.1", []string{"1.2.3.4, garbage, 10.0.0.2"}, "10.0.0.2"},
		{"empty entry", "10.0.0.1", []string{"1.2.3.4,,10.0.0.2"}, "10.0.0.2"},
		{"empty header", "10.0.0.1", []string{""}, "10.0.0.1"},
		{"trailing comma", "10.0.0.1", []string{"1.2.3.4,"}, "10.0.0.1"},
		{"spaces and tabs", "10.0.0.1", []string{" 1.2.3.4 ,\t10.0.0.2 "}, "1.2.3.4"},
		{"IPv4 with port", "10.0.0.1", []string{"1.2.3.4:5678"}, "1.2.3.4"},
		{"IPv6 with port", "10.0.0.1", []string{"[2001:db9::1]:443"}, "2001:db9::1"},
		{"IPv6 in brackets", "10.0.0.1", []string{"[2001:db9::1]"}, "2001:db9::1"},
		{"IPv6 bare", "10.0.0.1", []string{"2001:db9::1"}, "2001:db9::1"},
		{"IPv4-mapped entry", "10.0.0.1", []string{"::ffff:1.2.3.4"}, "1.2.3.4"},
		{"IPv4-mapped trusted entry skipped", "10.0.0.1", []string{"1.2.3.4, ::ffff:10.0.0.9"}, "1.2.3.4"},
		{"IPv4-mapped peer is trusted", "::ffff:10.0.0.1", []string{"1.2.3.4"}, "1.2.3.4"},
		{"zone refused", "10.0.0.1", []string{"1.2.3.4, fe80::1%eth0"}, "10.0.0.1"},
		{"hostname refused", "10.0.0.1", []string{"evil.example"}, "10.0.0.1"},
		{"unknown refused", "10.0.0.1", []string{"unknown"}, "10.0.0.1"},
		{"two header lines, in order", "10.0.0.1", []string{"6.6.6.6", "1.2.3.4, 10.0.0.2"}, "1.2.3.4"},
		{"two header lines, client on the first", "10.0.0.1", []string{"1.2.3.4", "10.0.0.2"}, "1.2.3.4"},
		{"IPv6 trusted peer", "2001:db8::5", []string{"2001:db9::1"}, "2001:db9::1"},
		{"very long entry refused", "10.0.0.1", []string{strings.Repeat("1", 100)}, "10.0.0.1"},
	}
	for _, tc := range cases {
		var xff [][]byte
		for _, h := range tc.xff {
			xff = append(xff, []byte(h))
		}
		got := server.ClientAddr(netip.MustParseAddr(tc.peer), xff, testTrusted)
		if got.String() != tc.want {
			t.Errorf("%s: ClientAddr(%s, %q) = %s, want %s", tc.name, tc.peer, tc.xff, got, tc.want)
		}
	}
}

func TestParseTrustedProxies(t *testing.T) {
	t.Parallel()
	good := []string{"10.0.0.1", " 10.0.0.0/8 ", "::1", "2001:db8::/32", "::ffff:10.0.0.0/104", ""}
	got, err := server.ParseTrustedProxies(good)
	if err != nil {
		t.Fatalf("ParseTrustedProxies(%q) err = %v", good, err)
	}
	if len(got) != 5 || got[4].String() != "10.0.0.0/8" {
		t.Fatalf("ParseTrustedProxies(%q) = %v", good, got)
	}
	for _, bad := range []string{"10.0.0.256", "10.0.0.0/33", "proxy.internal", "fe80::1%eth0", "::ffff:0.0.0.0/64"} {
		if _, err := server.ParseTrustedProxies([]string{bad}); err == nil || !strings.Contains(err.Error(), "TRUSTED_PROXIES") {
			t.Errorf("ParseTrustedProxies(%q) err = %v, want a TRUSTED_PROXIES error", bad, err)
		}
	}
	if err := (server.Config{TrustedProxies: []string{"nope"}}).Validate(); err == nil {
		t.Errorf("Config.Validate accepted TRUSTED_PROXIES=nope")
	}
}

// TestClientIPOverSocket: the one ClientIP every area uses follows
// TRUSTED_PROXIES on a real connection (peer 127.0.0.1), and the request
// log line records it.
func TestClientIPOverSocket(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		trusted []string
		xff     string
		want    string
	}{
		{[]string{"127.0.0.1"}, "6.6.6.6, 1.2.3.4", "1.2.3.4"},
		{[]string{"127.0.0.0/8"}, "1.2.3.4, 127.0.0.5", "1.2.3.4"},
		{[]string{"10.0.0.0/8"}, "1.2.3.4", "127.0.0.1"},
		{nil, "1.2.3.4", "127.0.0.1"},
	} {
		var logs syncBuffer
		s := server.New(server.Config{TrustedProxies: tc.trusted}, zerolog.New(&logs), prometheus.NewRegistry())
		s.Mount([]server.Route{{Method: fiber.MethodGet, Path: "/api/ip", Handler: func(c *fiber.Ctx) error {
			return c.SendString(server.ClientIP(c))
		}}})
		addr, stop := serve(t, s)
		req, _ := http.NewRequest("GET", "http://"+addr+"/api/ip", nil)
		req.Header.Set("X-Forwarded-For", tc.xff)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		stop()
		if string(body) != tc.want {
			t.Errorf("TRUSTED_PROXIES=%q X-Forwarded-For %q: ClientIP = %q, want %s", tc.trusted, tc.xff, body, tc.want)
		}
		if !strings.Contains(logs.String(), `"ip":"`+tc.want+`"`) {
			t.Errorf("TRUSTED_PROXIES=%q: log line lacks ip %s: %s", tc.trusted, tc.want, logs.String())
		}
	}
}

// TestProperty19_ForgedForwardedForNeverChangesTheClient claims: behind
// any chain of trusted proxies that each append the address they received
// from, whatever the client itself puts in X-Forwarded-For (addresses,
// trusted addresses, garbage) ClientAddr returns the client's real
// address. 100 iterations (rapid's default; -rapid.checks for more).
func TestProperty19_ForgedForwardedForNeverChangesTheClient(t *testing.T) {
	t.Parallel()
	entry := rapid.OneOf(
		rapid.SampledFrom([]string{"6.6.6.6", "10.0.0.7", "192.168.1.1", "2001:db8::9", "garbage", "", "[::1]:80", "1.2.3.4:1", "::ffff:10.1.1.1", "fe80::1%lo"}),
		rapid.StringMatching(`[0-9a-f:.\[\]% ]{0,20}`),
	)
	untrustedV4 := rapid.Custom(func(t *rapid.T) netip.Addr {
		b := rapid.SliceOfN(rapid.Byte(), 4, 4).Draw(t, "client")
		a := netip.AddrFrom4([4]byte(b))
		if a.Is4() && trustedIn(a) {
			a = netip.MustParseAddr("203.0.113.9")
		}
		return a
	})
	proxy := rapid.SampledFrom([]string{"10.0.0.1", "10.200.3.4", "192.168.1.1", "2001:db8::1", "2001:db8:ffff::2"})
	rapid.Check(t, func(t *rapid.T) {
		client := untrustedV4.Draw(t, "client")
		forged := rapid.SliceOfN(entry, 0, 6).Draw(t, "forged")
		hops := rapid.SliceOfN(proxy, 1, 4).Draw(t, "hops")
		// The client sends its forged header; the first proxy appends the
		// client's address, each next proxy the previous proxy's.
		list := append([]string{}, forged...)
		list = append(list, client.String())
		list = append(list, hops[:len(hops)-1]...)
		xff := [][]byte{[]byte(strings.Join(list, ", "))}
		if rapid.Bool().Draw(t, "split header") && len(forged) > 0 {
			// The client's own header line, then the proxies' line.
			xff = [][]byte{[]byte(strings.Join(forged, ", ")), []byte(strings.Join(list[len(forged):], ", "))}
		}
		peer := netip.MustParseAddr(hops[len(hops)-1])
		if got := server.ClientAddr(peer, xff, testTrusted); got != client {
			t.Fatalf("ClientAddr(%s, %q) = %s, want the client %s", peer, xff, got, client)
		}
	})
}

func trustedIn(a netip.Addr) bool {
	for _, p := range testTrusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// FuzzClientAddr: any header from any peer gives either the peer or an
// address written in the header, never a panic; an untrusted peer always
// gets itself.
func FuzzClientAddr(f *testing.F) {
	f.Add([]byte{10, 0, 0, 1}, "6.6.6.6, 1.2.3.4", "")
	f.Add([]byte{10, 0, 0, 1}, "[2001:db9::1]:443,,", "10.0.0.2")
	f.Add([]byte{203, 0, 113, 5}, "1.2.3.4", "")
	f.Add([]byte{10, 0, 0, 1}, "fe80::1%eth0, ::ffff:1.2.3.4", "garbage")
	f.Fuzz(func(t *testing.T, peerB []byte, h1, h2 string) {
		peer, ok := netip.AddrFromSlice(peerB)
		if !ok {
			return
		}
		got := server.ClientAddr(peer, [][]byte{[]byte(h1), []byte(h2)}, testTrusted)
		if !got.IsValid() {
			t.Fatalf("ClientAddr gave an invalid address")
		}
		if !trustedIn(peer.Unmap()) && got != peer.Unmap() {
			t.Fatalf("untrusted peer %s: ClientAddr = %s", peer, got)
		}
		if got != peer.Unmap() && !strings.Contains(h1+","+h2, strings.TrimPrefix(got.String(), "::ffff:")) {
			// The header may spell it differently (mapped, brackets,
			// leading zeros in IPv6): parse every entry to be sure.
			found := false
			for _, e := range strings.Split(h1+","+h2, ",") {
				if a, ok := parseAny(e); ok && a == got {
					found = true
				}
			}
			if !found {
				t.Fatalf("ClientAddr = %s, neither the peer %s nor in %q %q", got, peer, h1, h2)
			}
		}
	})
}

func parseAny(s string) (netip.Addr, bool) {
	s = strings.Trim(s, " \t")
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}
