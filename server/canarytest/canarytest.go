// Package canarytest checks that secrets never leak. A test plants canary
// values (unique markers shaped like secret values, passwords, API keys,
// Stripe keys and tokens) wherever secrets go in, drives routes with good
// and malformed input carrying them, and then Check looks for any canary in
// everything an attacker or an operator could read: log output, response
// bodies and headers, metrics, and database tables (audit rows first).
//
// It is written for every area: build a Harness, log through h.Logger(),
// register metrics on h.Registry, send requests through h.Do (or
// h.DriveMalformed for a route table), then h.Check.
package canarytest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase/server/redact"
	"github.com/vectabase/vectabase/store"
)

// Harness collects what a test's server emitted and the canaries planted.
type Harness struct {
	t        testing.TB
	Registry *prometheus.Registry
	logs     syncBuffer

	mu       sync.Mutex
	canaries []string
	seen     []seen // responses, by where they came from
}

type seen struct {
	where string
	text  string
	// reveals are canaries this response may hold (a secret read by its
	// owner returns its value).
	reveals []string
	// known is how many canaries were planted when the response came: a
	// canary added later (a token this response issued) is not checked in
	// it, only everywhere after.
	known int
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// New returns an empty harness with its own metrics registry.
func New(t testing.TB) *Harness {
	return &Harness{t: t, Registry: prometheus.NewRegistry()}
}

// Logger logs at debug level (the most a server ever logs) into the
// harness, through the redacting writer cmd installs in production.
func (h *Harness) Logger() zerolog.Logger {
	return zerolog.New(redact.NewWriter(&h.logs)).Level(zerolog.DebugLevel).With().Timestamp().Logger()
}

// Logs returns everything logged so far.
func (h *Harness) Logs() string { return h.logs.String() }

func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (h *Harness) add(c string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.canaries = append(h.canaries, c)
	return c
}

// Add registers a value found elsewhere as a canary (an access token a
// login returned, a generated API key). Responses already received are not
// checked for it: one of them issued it.
func (h *Harness) Add(v string) string { return h.add(v) }

// Secret is a canary secret value with no recognisable shape: only code
// that never logs values keeps it out of the logs.
func (h *Harness) Secret() string { return h.add("canary" + random(12)) }

// Password is a canary password (8 to 128 characters, mixed classes).
func (h *Harness) Password() string { return h.add("Cn4ry!" + random(10)) }

// StripeKey is a canary shaped like a live Stripe secret key.
func (h *Harness) StripeKey() string { return h.add("sk_live_" + random(16)) }

// APIKey is a canary shaped like a Vectabase developer API key.
func (h *Harness) APIKey() string { return h.add("vb_live_" + random(16)) }

// JWT is a canary shaped like a JSON Web Token.
func (h *Harness) JWT() string {
	enc := base64.RawURLEncoding
	return h.add("eyJhbGciOiJFZERTQSJ9." + enc.EncodeToString([]byte(`{"sub":"`+random(8)+`"}`)) + "." + enc.EncodeToString([]byte(random(16))))
}

// Canaries returns every canary planted so far.
func (h *Harness) Canaries() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.canaries...)
}

// Response is a response read in full.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Option changes how Do treats a response.
type Option func(*seen)

// MayReveal lets this one response hold the given canaries (a secret's
// value returned to a caller allowed to read it). Everything else it holds
// is still checked.
func MayReveal(canaries ...string) Option {
	return func(s *seen) { s.reveals = append(s.reveals, canaries...) }
}

// Do sends req to app and keeps the response for Check.
func (h *Harness) Do(app *fiber.App, req *http.Request, opts ...Option) Response {
	h.t.Helper()
	resp, err := app.Test(req, -1)
	if err != nil {
		h.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var hdr strings.Builder
	_ = resp.Header.Write(&hdr)
	s := seen{where: fmt.Sprintf("response to %s %s (%d)", req.Method, req.URL.Path, resp.StatusCode),
		text: hdr.String() + "\n" + string(body)}
	for _, o := range opts {
		o(&s)
	}
	h.mu.Lock()
	s.known = len(h.canaries)
	h.seen = append(h.seen, s)
	h.mu.Unlock()
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

// Request builds a request; body may be nil, a string (sent raw) or
// []byte. headers are name, value pairs.
func Request(method, target string, body any, headers ...string) *http.Request {
	var rd io.Reader
	switch b := body.(type) {
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	}
	req := httptest.NewRequest(method, target, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return req
}

// MalformedBodies returns request bodies that carry c and are wrong in
// some way: broken JSON, wrong types, unknown fields, nesting, a huge
// value, trailing data, the wrong content.
func MalformedBodies(c string) []string {
	q := func(s string) string { return `"` + s + `"` }
	return []string{
		`{"value":` + q(c),
		`{"value":` + q(c) + `,}`,
		`{"value":[` + q(c) + `]}`,
		`{"value":{"nested":` + q(c) + `}}`,
		`{"value":` + q(c) + `,"unknown":` + q(c) + `}`,
		`{` + q(c) + `:` + q(c) + `}`,
		`{"password":` + q(c) + `,"email":` + q(c) + `}`,
		`{"value":` + q(c) + `,"expectedVersion":` + q(c) + `}`,
		`{"value":` + q(c) + `}{"value":` + q(c) + `}`,
		`[` + q(c) + `]`,
		q(c),
		c,
		// Larger than any value, smaller than the server's body limit.
		`{"value":"` + strings.Repeat(c, (600<<10)/len(c)) + `"}`,
		"\x00\xff" + c,
	}
}

// DriveMalformed sends every malformed body to method path, and the same
// route with the canary in the query string and in credential headers.
// headers (name, value pairs) go with every request, e.g. a valid bearer
// token, so requests reach the handler as well as the auth check.
func (h *Harness) DriveMalformed(app *fiber.App, method, path, canary string, headers ...string) {
	h.t.Helper()
	for _, b := range MalformedBodies(canary) {
		h.Do(app, Request(method, path, b, headers...))
	}
	q := url.Values{"token": {canary}, "access_token": {canary}, "password": {canary}, "cursor": {canary}, "limit": {canary}, "version": {canary}}
	h.Do(app, Request(method, path+"?"+q.Encode(), nil, headers...))
	for _, hv := range [][]string{
		{"Authorization", "Bearer " + canary},
		{"Authorization", canary},
		{"X-API-Key", canary},
		{"Cookie", "session=" + canary},
		{"X-Request-ID", canary},
	} {
		h.Do(app, Request(method, path, `{"value":"x"}`, hv...))
	}
}

// Check fails the test for every canary found in the logs, in any
// response (beyond what MayReveal allows it), in the metrics, or in extra
// texts (name → text) the test gathered itself.
func (h *Harness) Check(extra map[string]string) {
	h.t.Helper()
	texts := map[string]string{"logs": h.Logs(), "metrics": h.metricsText()}
	for k, v := range extra {
		texts[k] = v
	}
	canaries := h.Canaries()
	if len(canaries) == 0 {
		h.t.Fatal("canarytest: no canaries planted")
	}
	for where, text := range texts {
		for _, c := range canaries {
			if i := strings.Index(text, c); i >= 0 {
				h.t.Errorf("canary %q found in %s: …%s…", c, where, around(text, i, len(c)))
			}
		}
	}
	h.mu.Lock()
	seen := append([]seen(nil), h.seen...)
	h.mu.Unlock()
	for _, s := range seen {
	canary:
		for _, c := range canaries[:s.known] {
			for _, ok := range s.reveals {
				if ok == c {
					continue canary
				}
			}
			if i := strings.Index(s.text, c); i >= 0 {
				h.t.Errorf("canary %q found in the %s: …%s…", c, s.where, around(s.text, i, len(c)))
			}
		}
	}
}

func around(s string, i, n int) string {
	lo, hi := max(0, i-60), min(len(s), i+n+60)
	return s[lo:hi]
}

func (h *Harness) metricsText() string {
	mfs, err := h.Registry.Gather()
	if err != nil {
		h.t.Fatalf("gather metrics: %v", err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		_, _ = expfmt.MetricFamilyToText(&b, mf)
	}
	return b.String()
}

// Tables returns every row of the named tables as JSON text, bytea columns
// as hex, for Check: canaries are searched there both as text and as the
// hex of their bytes, so a plaintext value stored in a bytea column is
// found too.
func Tables(t testing.TB, db *store.DB, tables ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, table := range tables {
		rows, err := db.Pool.Query(context.Background(), `SELECT row_to_json(t)::text FROM `+quoteIdent(table)+` t`)
		if err != nil {
			t.Fatalf("dump %s: %v", table, err)
		}
		var b strings.Builder
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			b.WriteString(s)
			b.WriteByte('\n')
		}
		rows.Close()
		out["table "+table] = b.String()
	}
	return out
}

// CheckTables is Check over the named tables, with each canary looked for
// as text and as hex (bytea columns print as \x… hex).
func (h *Harness) CheckTables(db *store.DB, tables ...string) {
	h.t.Helper()
	dumps := Tables(h.t, db, tables...)
	for where, text := range dumps {
		for _, c := range h.Canaries() {
			if strings.Contains(text, c) || strings.Contains(text, hex.EncodeToString([]byte(c))) {
				h.t.Errorf("canary %q found in %s", c, where)
			}
		}
	}
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
