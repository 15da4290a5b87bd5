package server

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vectabase/vectabase"
)

// connLimiter caps the connections open at once, in all (HTTP_MAX_CONNS)
// and per peer address (HTTP_MAX_CONNS_PER_IP), and answers a connection
// past a cap with the contract's error body (503 UNAVAILABLE or 429
// RATE_LIMITED, with Retry-After) before closing it, where fasthttp's own
// caps answer in plain text. A connection counts from Accept to Close, an
// upgraded WebSocket included.
type connLimiter struct {
	net.Listener
	max, perIP int

	mu    sync.Mutex
	total int
	byIP  map[netip.Addr]int
}

func newConnLimiter(ln net.Listener, max, perIP int) *connLimiter {
	return &connLimiter{Listener: ln, max: max, perIP: perIP, byIP: map[netip.Addr]int{}}
}

// Accept returns the next connection within the caps; those past them are
// answered and closed in the background.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := connAddr(c)
		l.mu.Lock()
		var refuse *vectabase.Error
		switch {
		case l.max > 0 && l.total >= l.max:
			refuse = vectabase.Errorf(vectabase.EUNAVAILABLE, "the server has too many connections open; retry later")
		case l.perIP > 0 && l.byIP[ip] >= l.perIP:
			refuse = vectabase.Errorf(vectabase.ERATELIMITED, "too many connections from this address")
		default:
			l.total++
			l.byIP[ip]++
		}
		l.mu.Unlock()
		if refuse != nil {
			go refuseConn(c, refuse)
			continue
		}
		return &countedConn{Conn: c, release: func() { l.release(ip) }}, nil
	}
}

func (l *connLimiter) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byIP[ip]--; l.byIP[ip] <= 0 {
		delete(l.byIP, ip)
	}
}

func connAddr(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

// refuseConn writes e as a whole HTTP response and closes c. It waits at
// most a second for the client to take it.
func refuseConn(c net.Conn, e *vectabase.Error) {
	defer c.Close()
	id := newRequestID()
	body, _ := json.Marshal(ErrorBody{Error: e.Code, Message: e.Message, RequestID: id, Timestamp: time.Now().UTC().Format(time.RFC3339)})
	status := StatusOf(e.Code)
	_ = c.SetDeadline(time.Now().Add(time.Second))
	_, _ = fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s: %s\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s",
		status, statusText(status), len(body), HeaderRequestID, id, body)
}

func statusText(status int) string {
	switch status {
	case 429:
		return "Too Many Requests"
	case 503:
		return "Service Unavailable"
	}
	return "Error"
}

// countedConn releases its slot once, on its first Close.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
