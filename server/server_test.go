package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/server"
)

type echoBody struct {
	Email string `json:"email"`
	Count int    `json:"count"`
}

// newTestServer is a server with a few routes that exercise the shared
// machinery: strict JSON, a panic, an internal error, a small body limit.
func newTestServer(t testing.TB, logs io.Writer) *server.Server {
	t.Helper()
	if logs == nil {
		logs = io.Discard
	}
	s := server.New(server.Config{}, zerolog.New(logs), prometheus.NewRegistry())
	s.Mount([]server.Route{
		{Method: fiber.MethodPost, Path: "/api/echo", Handler: func(c *fiber.Ctx) error {
			var b echoBody
			if err := server.DecodeJSON(c, &b); err != nil {
				return err
			}
			if !strings.Contains(b.Email, "@") {
				return vectabase.Errorf(vectabase.EVALIDATION, "email: must be a valid address")
			}
			return c.Status(fiber.StatusCreated).JSON(b)
		}},
		{Method: fiber.MethodGet, Path: "/api/panic", Handler: func(c *fiber.Ctx) error {
			panic("boom: secret-panic-value")
		}},
		{Method: fiber.MethodGet, Path: "/api/internal", Handler: func(c *fiber.Ctx) error {
			return errors.New("pq: relation \"users\" does not exist")
		}},
		{Method: fiber.MethodPost, Path: "/api/small", BodyLimit: 16, Handler: func(c *fiber.Ctx) error {
			return c.SendStatus(fiber.StatusNoContent)
		}},
	})
	return s
}

func do(t fataler, s *server.Server, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := s.App().Test(req, -1)
	if err != nil {
		t.Fatalf("app.Test(%s %s) err = %v", req.Method, req.URL, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, body
}

var knownCodes = map[string]int{
	"BAD_REQUEST": 400, "VALIDATION_FAILED": 400, "UNAUTHORIZED": 401, "FORBIDDEN": 403,
	"NOT_FOUND": 404, "CONFLICT": 409, "PAYLOAD_TOO_LARGE": 413, "RATE_LIMITED": 429,
	"INTERNAL": 500, "UNAVAILABLE": 503, "UNSUPPORTED_MEDIA_TYPE": 415, "REQUEST_HEADERS_TOO_LARGE": 431,
}

// checkErrorBody asserts the contract's error structure.
func checkErrorBody(t fataler, resp *http.Response, body []byte) server.ErrorBody {
	t.Helper()
	var eb server.ErrorBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&eb); err != nil {
		t.Fatalf("status %d: body %q is not the error structure: %v", resp.StatusCode, body, err)
	}
	want, ok := knownCodes[eb.Error]
	if !ok {
		t.Fatalf("error code %q is not a contract code", eb.Error)
	}
	if want != resp.StatusCode {
		t.Fatalf("code %s with status %d, want %d", eb.Error, resp.StatusCode, want)
	}
	if eb.Message == "" {
		t.Fatalf("empty message in %s", body)
	}
	if eb.RequestID == "" || eb.RequestID != resp.Header.Get("X-Request-ID") {
		t.Fatalf("requestId %q, header %q: want equal and set", eb.RequestID, resp.Header.Get("X-Request-ID"))
	}
	if _, err := time.Parse(time.RFC3339, eb.Timestamp); err != nil {
		t.Fatalf("timestamp %q: %v", eb.Timestamp, err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	return eb
}

// TestProperty11_ErrorStructure claims: any malformed request (random
// method, path, headers and body) that fails gets the contract's error
// body with a contract code matching its status, the X-Request-ID header
// equal to the body's requestId, and never a 500.
func TestProperty11_ErrorStructure(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	rapid.Check(t, func(rt *rapid.T) {
		method := rapid.SampledFrom([]string{"GET", "POST", "PUT", "PATCH", "DELETE"}).Draw(rt, "method")
		path := rapid.SampledFrom([]string{"/api/echo", "/api/small", "/api/nope", "/", "/api/echo/extra", "/x%20y", "/api/%E2%9C%93"}).Draw(rt, "path") +
			rapid.StringMatching(`[a-z0-9/]{0,8}`).Draw(rt, "suffix")
		var body []byte
		switch rapid.IntRange(0, 4).Draw(rt, "bodyKind") {
		case 0:
			body = rapid.SliceOf(rapid.Byte()).Draw(rt, "bytes")
		case 1:
			body = []byte(`{"email":` + rapid.String().Draw(rt, "raw"))
		case 2:
			body = []byte(`{"email":"a@b.c","` + rapid.StringMatching(`[a-zA-Z]{1,10}`).Draw(rt, "field") + `x":1}`)
		case 3:
			body = []byte(`{"email":` + rapid.SampledFrom([]string{"1", "true", "[]", "{}", "null"}).Draw(rt, "wrongType") + `}`)
		case 4:
			body = []byte(`{"email":"nope","count":1} {"again":true}`)
		}
		req := httptest.NewRequest(method, "http://x"+path, bytes.NewReader(body))
		if rapid.Bool().Draw(rt, "jsonCT") {
			req.Header.Set("Content-Type", "application/json")
		} else {
			req.Header.Set("Content-Type", rapid.SampledFrom([]string{"text/plain", "application/xml", ""}).Draw(rt, "ct"))
		}
		if rapid.Bool().Draw(rt, "clientID") {
			req.Header.Set("X-Request-ID", rapid.StringMatching(`[ -~]{0,40}`).Draw(rt, "rid"))
		}
		resp, out := do(rt, s, req)
		if resp.StatusCode < 400 {
			return
		}
		if resp.StatusCode >= 500 {
			rt.Fatalf("%s %s with body %q: status %d, want a 4xx", method, path, body, resp.StatusCode)
		}
		checkErrorBody(rt, resp, out)
	})
}

func TestRequestIDKeptWhenValid(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	id := uuid.NewString()
	req := httptest.NewRequest("GET", "/healthz", nil)
	req.Header.Set("X-Request-ID", id)
	resp, _ := do(t, s, req)
	if got := resp.Header.Get("X-Request-ID"); got != id {
		t.Fatalf("X-Request-ID = %q, want the client's %q", got, id)
	}
	req = httptest.NewRequest("GET", "/healthz", nil)
	req.Header.Set("X-Request-ID", "not a uuid <script>")
	resp, _ = do(t, s, req)
	if _, err := uuid.Parse(resp.Header.Get("X-Request-ID")); err != nil {
		t.Fatalf("X-Request-ID = %q, want a fresh UUID for an invalid one", resp.Header.Get("X-Request-ID"))
	}
}

func TestErrorCases(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	s := newTestServer(t, &logs)
	cases := []struct {
		name     string
		method   string
		path     string
		body     []byte
		wantCode string
	}{
		{"unknown route", "GET", "/api/does-not-exist", nil, "NOT_FOUND"},
		{"unknown field", "POST", "/api/echo", []byte(`{"email":"a@b.c","admin":true}`), "BAD_REQUEST"},
		{"malformed", "POST", "/api/echo", []byte(`{"email":`), "BAD_REQUEST"},
		{"wrong type", "POST", "/api/echo", []byte(`{"email":"a@b.c","count":"x"}`), "BAD_REQUEST"},
		{"validation", "POST", "/api/echo", []byte(`{"email":"nope"}`), "VALIDATION_FAILED"},
		{"route body limit", "POST", "/api/small", bytes.Repeat([]byte("b"), 17), "PAYLOAD_TOO_LARGE"},
		{"panic", "GET", "/api/panic", nil, "INTERNAL"},
		{"internal error", "GET", "/api/internal", nil, "INTERNAL"},
	}
	for _, tc := range cases {
		req := httptest.NewRequest(tc.method, tc.path, bytes.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/json")
		resp, body := do(t, s, req)
		eb := checkErrorBody(t, resp, body)
		if eb.Error != tc.wantCode {
			t.Errorf("%s: code %s, want %s (%s)", tc.name, eb.Error, tc.wantCode, body)
		}
		if tc.wantCode == "INTERNAL" && (eb.Message != "internal error" || strings.Contains(string(body), "secret-panic-value") || strings.Contains(string(body), "relation")) {
			t.Errorf("%s: internal details reached the client: %s", tc.name, body)
		}
	}
	if strings.Contains(logs.String(), "secret-panic-value") {
		t.Errorf("the panic value reached the log: %s", logs.String())
	}
}

func TestOversizedBodyOverSocket(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	addr, stop := serve(t, s)
	defer stop()
	// The listener answers from the Content-Length header and closes the
	// connection, so write the head and read the answer on a raw socket.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", server.MaxBodyBytes+10)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	eb := checkErrorBody(t, resp, body)
	if eb.Error != "PAYLOAD_TOO_LARGE" {
		t.Fatalf("code %s, want PAYLOAD_TOO_LARGE", eb.Error)
	}
}

func serve(t testing.TB, s *server.Server) (string, func()) {
	t.Helper()
	ln, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.App().Listener(ln) }()
	return ln.Addr().String(), func() { _ = s.Shutdown(context.Background()) }
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	failing := true
	s.AddReadyCheck(server.ReadyCheck{Name: "database", Check: func(context.Context) error {
		if failing {
			return errors.New("down")
		}
		return nil
	}})
	resp, body := do(t, s, httptest.NewRequest("GET", "/readyz", nil))
	if eb := checkErrorBody(t, resp, body); eb.Error != "UNAVAILABLE" {
		t.Fatalf("readyz while down: %s", body)
	}
	failing = false
	resp, _ = do(t, s, httptest.NewRequest("GET", "/readyz", nil))
	if resp.StatusCode != 200 {
		t.Fatalf("readyz when up: %d", resp.StatusCode)
	}
	resp, _ = do(t, s, httptest.NewRequest("GET", "/healthz", nil))
	if resp.StatusCode != 200 {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
}

// One log line per request with the contract's fields.
func TestOneLogLinePerRequest(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	s := newTestServer(t, &logs)
	req := httptest.NewRequest("POST", "/api/echo?token=secret-query-token", strings.NewReader(`{"email":"a@b.c"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, _ := do(t, s, req)
	if resp.StatusCode != 201 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d log lines, want 1: %s", len(lines), logs.String())
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"requestId", "method", "route", "status", "latency"} {
		if _, ok := ev[k]; !ok {
			t.Errorf("log line lacks %q: %s", k, lines[0])
		}
	}
	if ev["route"] != "/api/echo" || ev["requestId"] != resp.Header.Get("X-Request-ID") {
		t.Errorf("log line %s: wrong route or request id", lines[0])
	}
	if strings.Contains(logs.String(), "secret-query-token") {
		t.Errorf("query string reached the log: %s", lines[0])
	}
}

// Shutdown waits for a request in flight to finish.
func TestGracefulShutdownDrains(t *testing.T) {
	t.Parallel()
	s := server.New(server.Config{}, zerolog.Nop(), prometheus.NewRegistry())
	started := make(chan struct{})
	s.Mount([]server.Route{{Method: "GET", Path: "/slow", Handler: func(c *fiber.Ctx) error {
		close(started)
		time.Sleep(300 * time.Millisecond)
		return c.SendString("done")
	}}})
	addr, _ := serve(t, s)
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/slow")
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown() err = %v", err)
	}
	if g := <-got; g != "done" {
		t.Fatalf("in-flight request got %q, want done", g)
	}
}

// A handler error that says the database or the KEK service is unavailable (wrapped by a
// service as INTERNAL or not at all) answers 503 UNAVAILABLE, so clients
// retry a restart or failover instead of seeing a 500.
func TestUnavailableDependenciesAnswer503(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	down := &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}
	s.App().Get("/raw", func(*fiber.Ctx) error { return fmt.Errorf("stores: %w", down) })
	s.App().Get("/wrapped", func(*fiber.Ctx) error { return vectabase.WrapError(vectabase.EINTERNAL, "x", down) })
	s.App().Get("/other", func(*fiber.Ctx) error { return errors.New("boom") })
	s.App().Get("/kek", func(*fiber.Ctx) error {
		return fmt.Errorf("rotate: hcvault: Vault at https://vault administrator is sealed: %w", keyring.ErrKEKUnavailable)
	})
	for path, want := range map[string]string{"/raw": "UNAVAILABLE", "/wrapped": "UNAVAILABLE", "/other": "INTERNAL", "/kek": "UNAVAILABLE"} {
		resp, body := do(t, s, httptest.NewRequest("GET", path, nil))
		if eb := checkErrorBody(t, resp, body); eb.Error != want || strings.Contains(string(body), "administrator") {
			t.Errorf("GET %s: %d %s, want %s without the database's message", path, resp.StatusCode, body, want)
		}
	}
}
