package server_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	fws "github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/vectabase/vectabase/server"
)

// TestConnectionLimitsConfigured: the HTTP_* variables reach fasthttp, and
// a Config built in code gets the same defaults as the environment's.
func TestConnectionLimitsConfigured(t *testing.T) {
	t.Parallel()
	cfg := server.Config{
		ReadHeaderTimeout: 3 * time.Second, ReadTimeout: 7 * time.Second, WriteTimeout: 11 * time.Second,
		IdleTimeout: 13 * time.Second, MaxHeaderBytes: 8192, MaxConns: 77, MaxConnsPerIP: 5,
	}
	check := func(name string, fs *fasthttp.Server, want server.Config) {
		t.Helper()
		if fs.ReadTimeout != want.ReadHeaderTimeout || fs.WriteTimeout != want.WriteTimeout || fs.IdleTimeout != want.IdleTimeout {
			t.Errorf("%s: fasthttp read %s write %s idle %s, want %s %s %s", name, fs.ReadTimeout, fs.WriteTimeout, fs.IdleTimeout,
				want.ReadHeaderTimeout, want.WriteTimeout, want.IdleTimeout)
		}
		if fs.HeaderReceived == nil || fs.HeaderReceived(&fasthttp.RequestHeader{}).ReadTimeout != want.ReadTimeout {
			t.Errorf("%s: the body's read timeout is not %s", name, want.ReadTimeout)
		}
		// The per-IP cap is the listener's (TestConnectionCapsAnswerInTheContractShape);
		// fasthttp's own stays off (see server.New).
		if fs.ReadBufferSize != want.MaxHeaderBytes || fs.Concurrency != want.MaxConns || fs.MaxConnsPerIP != 0 {
			t.Errorf("%s: header buffer %d conns %d per IP %d, want %d %d 0", name, fs.ReadBufferSize, fs.Concurrency, fs.MaxConnsPerIP,
				want.MaxHeaderBytes, want.MaxConns)
		}
		if fs.MaxRequestBodySize != server.MaxBodyBytes {
			t.Errorf("%s: MaxRequestBodySize %d, want %d", name, fs.MaxRequestBodySize, server.MaxBodyBytes)
		}
		if !fs.DisablePreParseMultipartForm {
			t.Errorf("%s: multipart forms are pre-parsed (spooled to disk)", name)
		}
	}
	check("configured", server.New(cfg, zerolog.Nop(), prometheus.NewRegistry()).App().Server(), cfg)
	defaults := server.Config{ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		IdleTimeout: 120 * time.Second, MaxHeaderBytes: 16 << 10, MaxConns: 20000}
	check("defaults", server.New(server.Config{}, zerolog.Nop(), prometheus.NewRegistry()).App().Server(), defaults)
	for _, bad := range []server.Config{{MaxConns: -1}, {MaxHeaderBytes: 100}, {ReadTimeout: -time.Second}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", bad)
		}
	}
}

// TestSlowHeadersAreCutOff: a client that sends its headers a byte at a
// time (slowloris) is disconnected once HTTP_READ_HEADER_TIMEOUT passes,
// though it never stops sending.
func TestSlowHeadersAreCutOff(t *testing.T) {
	t.Parallel()
	s := server.New(server.Config{ReadHeaderTimeout: 300 * time.Millisecond}, zerolog.Nop(), prometheus.NewRegistry())
	addr, stop := serve(t, s)
	defer stop()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_, _ = io.Copy(io.Discard, conn) // returns when the server closes
	}()
	head := "GET /healthz HTTP/1.1\r\nHost: x\r\n"
	// A byte every 50 ms, for at most 60 s; the server must end it first.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(60 * time.Second)
	for i := 0; ; i++ {
		select {
		case <-closed:
			return
		case <-deadline:
			t.Fatalf("a slow client was still connected after 60 s with HTTP_READ_HEADER_TIMEOUT=300ms")
		case <-tick.C:
			b := head[i%len(head)]
			if i >= len(head) {
				b = 'X' // an endless header line
			}
			if _, err := conn.Write([]byte{b}); err != nil {
				return
			}
		}
	}
}

// TestOversizedHeadersGet431: headers past HTTP_MAX_HEADER_BYTES get the
// contract's error body with 431.
func TestOversizedHeadersGet431(t *testing.T) {
	t.Parallel()
	s := server.New(server.Config{MaxHeaderBytes: 4096}, zerolog.Nop(), prometheus.NewRegistry())
	addr, stop := serve(t, s)
	defer stop()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 8192))
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if eb := checkErrorBody(t, resp, body); eb.Error != "REQUEST_HEADERS_TOO_LARGE" {
		t.Fatalf("code %s, want REQUEST_HEADERS_TOO_LARGE", eb.Error)
	}
}

// TestReadyzCachesTheKEKCheck: with CacheFor (READYZ_KEK_CACHE) a flood of
// /readyz runs the check once per period, and a failure is cached too.
func TestReadyzCachesTheKEKCheck(t *testing.T) {
	t.Parallel()
	s := server.New(server.Config{}, zerolog.Nop(), prometheus.NewRegistry())
	var calls atomic.Int32
	var fail atomic.Bool
	s.AddReadyCheck(server.ReadyCheck{Name: "keyring", CacheFor: time.Hour, Check: func(context.Context) error {
		calls.Add(1)
		if fail.Load() {
			return errors.New("vault sealed")
		}
		return nil
	}})
	var uncached atomic.Int32
	s.AddReadyCheck(server.ReadyCheck{Name: "database", Check: func(context.Context) error {
		uncached.Add(1)
		return nil
	}})
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := do(t, s, httptest.NewRequest("GET", "/readyz", nil))
			if resp.StatusCode != 200 {
				t.Errorf("readyz = %d, want 200", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("50 /readyz ran the cached check %d times, want 1", n)
	}
	if n := uncached.Load(); n != 50 {
		t.Fatalf("50 /readyz ran the uncached check %d times, want 50", n)
	}
	fail.Store(true) // within the period the cached success stands
	if resp, _ := do(t, s, httptest.NewRequest("GET", "/readyz", nil)); resp.StatusCode != 200 {
		t.Fatalf("readyz within the cache period = %d, want the cached 200", resp.StatusCode)
	}

	// A failure is cached as well.
	s2 := server.New(server.Config{}, zerolog.Nop(), prometheus.NewRegistry())
	var calls2 atomic.Int32
	s2.AddReadyCheck(server.ReadyCheck{Name: "keyring", CacheFor: time.Hour, Check: func(context.Context) error {
		calls2.Add(1)
		return errors.New("vault sealed")
	}})
	for range 5 {
		resp, body := do(t, s2, httptest.NewRequest("GET", "/readyz", nil))
		if eb := checkErrorBody(t, resp, body); eb.Error != "UNAVAILABLE" {
			t.Fatalf("readyz with a failing check = %s", body)
		}
	}
	if n := calls2.Load(); n != 1 {
		t.Fatalf("5 /readyz ran the failing cached check %d times, want 1", n)
	}
}

// TestWebSocketOutlivesTheTimeouts: a hijacked connection (the realtime
// socket) is free of the HTTP timeouts: with every one of them at 200 ms,
// a socket idle for 1.5 s still carries messages both ways.
func TestWebSocketOutlivesTheTimeouts(t *testing.T) {
	t.Parallel()
	short := 200 * time.Millisecond
	s := server.New(server.Config{ReadHeaderTimeout: short, ReadTimeout: short, WriteTimeout: short, IdleTimeout: short},
		zerolog.Nop(), prometheus.NewRegistry())
	s.Mount([]server.Route{{Method: fiber.MethodGet, Path: "/api/ws", Handler: fws.New(func(c *fws.Conn) {
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(mt, msg); err != nil {
				return
			}
		}
	})}})
	addr, stop := serve(t, s)
	defer stop()
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/api/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range 2 {
		time.Sleep(1500 * time.Millisecond)
		if err := conn.WriteMessage(websocket.TextMessage, []byte("ping")); err != nil {
			t.Fatalf("write after %d idle periods: %v", i+1, err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, msg, err := conn.ReadMessage(); err != nil || string(msg) != "ping" {
			t.Fatalf("echo after %d idle periods = %q, %v", i+1, msg, err)
		}
	}
}

// TestConnectionCapsAnswerInTheContractShape: past HTTP_MAX_CONNS a new
// connection gets 503 UNAVAILABLE, past HTTP_MAX_CONNS_PER_IP 429
// RATE_LIMITED with Retry-After, both in the contract's body; a closed
// connection frees its slot.
func TestConnectionCapsAnswerInTheContractShape(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		cfg    server.Config
		code   string
		status int
	}{
		{"total", server.Config{MaxConns: 2}, "UNAVAILABLE", 503},
		{"per IP", server.Config{MaxConns: 100, MaxConnsPerIP: 2}, "RATE_LIMITED", 429},
	} {
		s := server.New(tc.cfg, zerolog.Nop(), prometheus.NewRegistry())
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = s.Serve(ln) }()
		addr := ln.Addr().String()
		var held []net.Conn
		for range 2 {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, c)
		}
		// The two held connections are accepted (and counted) once they
		// have been served a request.
		for _, c := range held {
			fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("%s: held connection: %v %v", tc.name, resp, err)
			}
			resp.Body.Close()
		}
		third, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = third.SetReadDeadline(time.Now().Add(30 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(third), nil)
		if err != nil {
			t.Fatalf("%s: connection past the cap: %v", tc.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		third.Close()
		if eb := checkErrorBody(t, resp, body); eb.Error != tc.code || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: past the cap = %d %s (Retry-After %q), want %d %s", tc.name, resp.StatusCode, body, resp.Header.Get("Retry-After"), tc.status, tc.code)
		}
		// Closing one frees its slot: a new connection is served.
		held[0].Close()
		var ok bool
		for range 100 {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			c.Close()
			if err == nil && resp.StatusCode == 200 {
				ok = true
				break
			}
			time.Sleep(20 * time.Millisecond) // the server sees the close a moment later
		}
		if !ok {
			t.Errorf("%s: a closed connection did not free its slot", tc.name)
		}
		held[1].Close()
		_ = s.Shutdown(context.Background())
	}
}
