package server_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/bodytest"
)

// seen records the largest body a handler was given.
type seen struct {
	mu    sync.Mutex
	calls int
	max   int
	last  []byte
}

func (s *seen) handler(c *fiber.Ctx) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	s.max = max(s.max, len(c.Body()))
	s.last = append([]byte(nil), c.Body()...)
	return c.SendStatus(fiber.StatusNoContent)
}

func (s *seen) get() (calls, maxLen int, last []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls, s.max, s.last
}

const smallLimit = 1 << 10

// bodyServer mounts a route with the default limit (/api/big) and one
// with a 1 KiB limit (/api/small), both recording what they see.
func bodyServer(t testing.TB) (*server.Server, *seen, *seen) {
	t.Helper()
	s := server.New(server.Config{}, zerolog.Nop(), prometheus.NewRegistry())
	big, small := &seen{}, &seen{}
	s.Mount([]server.Route{
		{Method: fiber.MethodPost, Path: "/api/big", Handler: big.handler},
		{Method: fiber.MethodPost, Path: "/api/small", BodyLimit: smallLimit, Handler: small.handler},
	})
	return s, big, small
}

func post(t fataler, s *server.Server, path string, body []byte, encodings ...string) (int, server.ErrorBody) {
	t.Helper()
	req := httptest.NewRequest("POST", path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for _, e := range encodings {
		req.Header.Add("Content-Encoding", e)
	}
	resp, raw := do(t, s, req)
	if resp.StatusCode < 400 {
		return resp.StatusCode, server.ErrorBody{}
	}
	return resp.StatusCode, checkErrorBody(t, resp, raw)
}

// TestCompressionBombsAreRefused: a body whose decoded form passes the
// route's limit gets 413, an unknown or stacked coding 415, a corrupt one
// 400, and the handler never sees a byte past its limit.
func TestCompressionBombsAreRefused(t *testing.T) {
	t.Parallel()
	s, big, small := bodyServer(t)
	const bomb = 64 << 20
	cases := []struct {
		name     string
		path     string
		body     []byte
		enc      []string
		wantCode string
	}{
		{"gzip bomb", "/api/big", bodytest.Gzip(bomb), []string{"gzip"}, "PAYLOAD_TOO_LARGE"},
		{"x-gzip bomb", "/api/big", bodytest.Gzip(bomb), []string{"x-gzip"}, "PAYLOAD_TOO_LARGE"},
		{"deflate bomb", "/api/big", bodytest.Deflate(bomb), []string{"deflate"}, "PAYLOAD_TOO_LARGE"},
		{"brotli bomb", "/api/big", bodytest.Brotli(16<<20, 22), []string{"br"}, "PAYLOAD_TOO_LARGE"},
		{"brotli 16 MiB window", "/api/big", bodytest.Brotli(1<<10, 24), []string{"br"}, "PAYLOAD_TOO_LARGE"},
		{"gzip past a small limit", "/api/small", bodytest.GzipOf(bytes.Repeat([]byte("a"), smallLimit+1)), []string{"GZIP"}, "PAYLOAD_TOO_LARGE"},
		{"deflate past a small limit", "/api/small", bodytest.DeflateOf(bytes.Repeat([]byte("a"), smallLimit+1)), []string{"deflate"}, "PAYLOAD_TOO_LARGE"},
		{"brotli past a small limit", "/api/small", bodytest.BrotliOf(bytes.Repeat([]byte("a"), smallLimit+1)), []string{"br"}, "PAYLOAD_TOO_LARGE"},
		{"triple gzip, 4 GiB", "/api/big", bodytest.NestedGzip(3, 4<<30), []string{"gzip, gzip, gzip"}, "UNSUPPORTED_MEDIA_TYPE"},
		{"stacked on two lines", "/api/big", bodytest.NestedGzip(2, 1<<20), []string{"gzip", "gzip"}, "UNSUPPORTED_MEDIA_TYPE"},
		{"gzip then br", "/api/big", []byte("x"), []string{"gzip, br"}, "UNSUPPORTED_MEDIA_TYPE"},
		{"zstd", "/api/big", []byte("x"), []string{"zstd"}, "UNSUPPORTED_MEDIA_TYPE"},
		{"compress", "/api/small", []byte("x"), []string{"compress"}, "UNSUPPORTED_MEDIA_TYPE"},
		{"garbage coding", "/api/small", []byte("x"), []string{"gzip;q=1"}, "UNSUPPORTED_MEDIA_TYPE"},
		{"corrupt gzip", "/api/big", []byte("\x1f\x8bnot gzip at all"), []string{"gzip"}, "BAD_REQUEST"},
		{"truncated gzip", "/api/big", bodytest.GzipOf([]byte(`{"a":1}`))[:12], []string{"gzip"}, "BAD_REQUEST"},
		{"corrupt deflate", "/api/big", []byte("xx"), []string{"deflate"}, "BAD_REQUEST"},
		{"corrupt brotli", "/api/big", []byte{0x1a, 0xff, 0xff, 0xff, 0xff}, []string{"br"}, "BAD_REQUEST"},
		{"plain past a small limit", "/api/small", bytes.Repeat([]byte("a"), smallLimit+1), nil, "PAYLOAD_TOO_LARGE"},
	}
	for _, tc := range cases {
		status, eb := post(t, s, tc.path, tc.body, tc.enc...)
		if eb.Error != tc.wantCode {
			t.Errorf("%s: status %d code %q, want %s", tc.name, status, eb.Error, tc.wantCode)
		}
	}
	if calls, _, _ := big.get(); calls != 0 {
		t.Errorf("/api/big handler ran %d times for refused bodies", calls)
	}
	if calls, _, _ := small.get(); calls != 0 {
		t.Errorf("/api/small handler ran %d times for refused bodies", calls)
	}
}

// TestEncodedBodiesWithinTheLimitAreDecoded: each coding's body, up to
// exactly the route's limit once decoded, reaches the handler decoded.
func TestEncodedBodiesWithinTheLimitAreDecoded(t *testing.T) {
	t.Parallel()
	s, _, small := bodyServer(t)
	exact := bytes.Repeat([]byte("z"), smallLimit)
	for _, tc := range []struct {
		enc  string
		body []byte
	}{
		{"gzip", bodytest.GzipOf(exact)},
		{"deflate", bodytest.DeflateOf(exact)},
		{"br", bodytest.BrotliOf(exact)},
		{"identity", exact},
		{"gzip, identity", bodytest.GzipOf(exact)},
		{"", exact},
	} {
		status, eb := post(t, s, "/api/small", tc.body, tc.enc)
		if status != fiber.StatusNoContent {
			t.Errorf("%q: status %d (%+v), want 204", tc.enc, status, eb)
			continue
		}
		if _, _, last := small.get(); !bytes.Equal(last, exact) {
			t.Errorf("%q: handler saw %d bytes, want the %d decoded", tc.enc, len(last), len(exact))
		}
	}
	if _, maxLen, _ := small.get(); maxLen > smallLimit {
		t.Errorf("handler saw %d bytes, limit %d", maxLen, smallLimit)
	}
}

// TestDecodeJSONReadsDecodedBodies: a gzip JSON body decodes as JSON
// through the ordinary route path (DecodeJSON never sees the coding).
func TestDecodeJSONReadsDecodedBodies(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	raw, _ := json.Marshal(echoBody{Email: "a@b.c", Count: 3})
	req := httptest.NewRequest("POST", "/api/echo", bytes.NewReader(bodytest.GzipOf(raw)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")
	resp, body := do(t, s, req)
	if resp.StatusCode != 201 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var got echoBody
	if err := json.Unmarshal(body, &got); err != nil || got.Email != "a@b.c" || got.Count != 3 {
		t.Fatalf("echo = %s (%v)", body, err)
	}
}

// FuzzEncodedBody: any body in any Content-Encoding gets either the
// handler (with at most the limit, decoded) or a contract error, never a
// 500.
func FuzzEncodedBody(f *testing.F) {
	f.Add([]byte(`{"a":1}`), "gzip", true)
	f.Add(bodytest.GzipOf([]byte(`{"email":"a@b.c"}`)), "gzip", false)
	f.Add(bodytest.DeflateOf(bytes.Repeat([]byte("q"), 2000)), "deflate", false)
	f.Add(bodytest.BrotliOf([]byte("hello")), "br", false)
	f.Add(bodytest.Brotli(4096, 24), "br", false)
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}, "gzip", false)
	f.Add([]byte("x"), "gzip, deflate", false)
	f.Add([]byte("x"), " , identity ,", false)
	s, _, small := bodyServer(f)
	f.Fuzz(func(t *testing.T, body []byte, enc string, compress bool) {
		if compress {
			body = bodytest.GzipOf(body)
		}
		req := httptest.NewRequest("POST", "/api/small", bytes.NewReader(body))
		req.Header.Set("Content-Encoding", enc)
		resp, raw := do(t, s, req)
		switch {
		case resp.StatusCode == fiber.StatusNoContent:
		case resp.StatusCode >= 500:
			t.Fatalf("status %d for %q: %s", resp.StatusCode, enc, raw)
		default:
			checkErrorBody(t, resp, raw)
		}
		if _, maxLen, _ := small.get(); maxLen > smallLimit {
			t.Fatalf("handler saw %d bytes past its %d limit", maxLen, smallLimit)
		}
	})
}

// TestChunkedBodyPastTheLimitOverSocket: a chunked body (no
// Content-Length to refuse up front) is cut off once it passes the
// global limit, with the contract's 413, while the client still sends.
func TestChunkedBodyPastTheLimitOverSocket(t *testing.T) {
	t.Parallel()
	s, big, _ := bodyServer(t)
	addr, stop := serve(t, s)
	defer stop()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /api/big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
	go func() {
		// Up to 10 MiB, in 64 KiB chunks; the server closes long before.
		piece := bytes.Repeat([]byte("a"), 64<<10)
		for range 160 {
			if _, err := fmt.Fprintf(conn, "%x\r\n%s\r\n", len(piece), piece); err != nil {
				return
			}
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if eb := checkErrorBody(t, resp, body); eb.Error != "PAYLOAD_TOO_LARGE" {
		t.Fatalf("code %s, want PAYLOAD_TOO_LARGE", eb.Error)
	}
	if calls, _, _ := big.get(); calls != 0 {
		t.Fatalf("handler ran for a body past the limit")
	}
}
