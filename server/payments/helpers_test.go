package payments_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/server/payments"
	"github.com/vectabase/vectabase/server/payments/stripemock"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m, mock.Close) }

// fataler is what the helpers need of *testing.T and *rapid.T alike.
type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

type nopAuditor struct{}

func (nopAuditor) Record(context.Context, vectabase.AuditEvent) error { return nil }

// syncBuffer collects log lines written from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var fastArgon2 = auth.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

const (
	testSecretKey     = "sk_test_vectabase123456"
	testWebhookSecret = "whsec_test_vectabase_secret"
)

// env is one server with the Stripe area mounted on a fresh database.
type env struct {
	db     *store.DB
	kr     *keyring.Keyring
	auth   *auth.Service
	srv    *server.Server
	svc    *payments.Service
	market *store.Marketplace
	pay    *store.Payments
	logs   *syncBuffer
	reg    *prometheus.Registry

	mu     sync.Mutex
	tokens map[string]string
}

// newEnv builds the area with cfg (the webhook secret is filled in unless
// cfg says otherwise through noSecrets) and creds.
func newEnv(t testing.TB, cfg payments.Config, creds payments.Credentials) *env {
	t.Helper()
	db := pgtest.New(t)
	kr := keyringtest.New(t, db.Pool)
	return newEnvOn(t, db, kr, cfg, creds)
}

func newEnvOn(t testing.TB, db *store.DB, kr *keyring.Keyring, cfg payments.Config, creds payments.Credentials) *env {
	t.Helper()
	logs := &syncBuffer{}
	log := zerolog.New(logs)
	reg := prometheus.NewRegistry()
	srv := server.New(server.Config{}, log, reg)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	a, err := auth.New(ctx, auth.Config{Argon2: fastArgon2, MaxAttemptsPerIP: 1 << 20, MaxFailuresPerIP: 1 << 20}, db, kr, nopAuditor{}, log, reg)
	if err != nil {
		t.Fatalf("auth.New err = %v", err)
	}
	srv.Mount(a.Routes())
	svc := payments.New(db, kr, cfg, creds, log, reg)
	srv.Mount(svc.Routes(payments.Auth{RequireUser: a.RequireUser(), OptionalUser: a.OptionalUser(), UserID: auth.UserID}))
	return &env{
		db: db, kr: kr, auth: a, srv: srv, svc: svc, logs: logs, reg: reg,
		market: store.NewMarketplace(db, kr), pay: store.NewPayments(db, kr),
		tokens: map[string]string{},
	}
}

// webhookEnv is an env with only the webhook secret: enough for every
// webhook test, no Stripe double needed.
func webhookEnv(t testing.TB) *env {
	return newEnv(t, payments.Config{WebhookSecret: testWebhookSecret}, nil)
}

// user registers and logs in a new user and returns its id.
func (e *env) user(t fataler) string {
	t.Helper()
	ctx := context.Background()
	email, pw := uuid.NewString()+"@example.com", "correct horse battery"
	if _, err := e.auth.Register(ctx, email, pw, auth.RequestMeta{IP: "127.0.0.1"}); err != nil {
		t.Fatalf("Register err = %v", err)
	}
	res, err := e.auth.Login(ctx, email, pw, auth.RequestMeta{IP: "127.0.0.1"})
	if err != nil {
		t.Fatalf("Login err = %v", err)
	}
	e.mu.Lock()
	e.tokens[res.User.ID] = res.Token
	e.mu.Unlock()
	return res.User.ID
}

// storeOf creates a store owned by owner.
func (e *env) storeOf(t fataler, owner string) string {
	t.Helper()
	name := "Shop " + uuid.NewString()[:8]
	slug := "shop-" + uuid.NewString()
	st, err := e.market.CreateStore(context.Background(), owner, store.StoreFields{Name: &name, Slug: &slug})
	if err != nil {
		t.Fatalf("CreateStore err = %v", err)
	}
	return st.ID
}

// product creates a product of storeID priced cents.
func (e *env) product(t fataler, owner, storeID string, cents int, active bool) string {
	t.Helper()
	name, cur := "Sword", "usd"
	p, err := e.market.CreateProduct(context.Background(), owner, storeID, store.ProductFields{Name: &name, PriceCents: &cents, Currency: &cur, IsActive: &active})
	if err != nil {
		t.Fatalf("CreateProduct err = %v", err)
	}
	return p.ID
}

// onboarded links account to storeID and marks it able to take payments,
// as a completed onboarding would.
func (e *env) onboarded(t fataler, storeID, account string, commissionBps int) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.pay.SetStripeAccount(ctx, storeID, account); err != nil {
		t.Fatalf("SetStripeAccount err = %v", err)
	}
	if err := e.pay.SetOnboarded(ctx, storeID, true); err != nil {
		t.Fatalf("SetOnboarded err = %v", err)
	}
	if _, err := e.db.Pool.Exec(ctx, `UPDATE stores SET commission_bps = $2 WHERE id = $1`, storeID, commissionBps); err != nil {
		t.Fatalf("set commission: %v", err)
	}
}

type resp struct {
	Status int
	Body   map[string]any
	Raw    []byte
}

// do sends req through the app and decodes a JSON body.
func (e *env) do(t fataler, req *http.Request) resp {
	t.Helper()
	res, err := e.srv.App().Test(req, -1)
	if err != nil {
		t.Fatalf("app.Test(%s %s) err = %v", req.Method, req.URL.Path, err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	r := resp{Status: res.StatusCode, Raw: raw}
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &r.Body); err != nil {
			t.Fatalf("%s %s: body is not JSON: %v", req.Method, req.URL.Path, err)
		}
	}
	return r
}

// call sends a JSON request as user who ("" for none).
func (e *env) call(t fataler, method, path, who string, body any) resp {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		rd = bytes.NewReader(raw)
	}
	req := httptest.NewRequest(method, path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if who != "" {
		e.mu.Lock()
		req.Header.Set("Authorization", "Bearer "+e.tokens[who])
		e.mu.Unlock()
	}
	return e.do(t, req)
}

// deliver posts payload to the webhook with header as Stripe-Signature.
func (e *env) deliver(t fataler, payload []byte, header string) resp {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/stripe/webhook", bytes.NewReader(payload))
	req.Header.Set("Content-Type", "application/json")
	if header != "" {
		req.Header.Set("Stripe-Signature", header)
	}
	return e.do(t, req)
}

// sign signs payload with secret at ts, as Stripe does.
func sign(payload []byte, secret string, ts time.Time) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: secret, Timestamp: ts}).Header
}

// event renders a Stripe event of type typ around object.
func event(t fataler, id, typ string, object any) []byte {
	t.Helper()
	raw, err := json.Marshal(map[string]any{
		"id": id, "object": "event", "type": typ, "api_version": "2023-10-16", "created": time.Now().Unix(),
		"livemode": false, "pending_webhooks": 1, "data": map[string]any{"object": object},
	})
	if err != nil {
		t.Fatalf("marshal event: %v", err)
	}
	return raw
}

// checkErrorBody fails unless r is a contract error body with status want
// and code.
func checkErrorBody(t fataler, what string, r resp, want int, code string) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("%s: status %d %s, want %d", what, r.Status, r.Raw, want)
	}
	for _, k := range []string{"error", "message", "requestId", "timestamp"} {
		if s, _ := r.Body[k].(string); s == "" {
			t.Fatalf("%s: body %s lacks %q", what, r.Raw, k)
		}
	}
	if r.Body["error"] != code {
		t.Fatalf("%s: error = %v, want %s", what, r.Body["error"], code)
	}
}

// decrypt reads table.column of row id and decrypts it where it lives.
func (e *env) decrypt(t fataler, table, column, id string) string {
	t.Helper()
	var ct []byte
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT `+column+` FROM `+table+` WHERE id = $1`, id).Scan(&ct); err != nil {
		t.Fatalf("read %s.%s: %v", table, column, err)
	}
	if ct == nil {
		return ""
	}
	pt, err := e.kr.Decrypt(context.Background(), keyring.Location{Table: table, Column: column, RowID: id}, ct)
	if err != nil {
		t.Fatalf("Decrypt(%s.%s row %s) err = %v, want nil", table, column, id, err)
	}
	if keyring.IsPersonallySealed(pt) && table == "developer_subscriptions" {
		// A developer's own value: sealed under the developer's key too.
		err := e.db.InTx(context.Background(), func(tx pgx.Tx) error {
			var dev string
			if err := tx.QueryRow(context.Background(), `SELECT developer_id FROM developer_subscriptions WHERE id = $1`, id).Scan(&dev); err != nil {
				return err
			}
			pt, err = store.OpenPersonal(context.Background(), tx, e.kr, dev, keyring.Location{Table: table, Column: column, RowID: id}, ct)
			return err
		})
		if err != nil {
			t.Fatalf("OpenPersonal(%s.%s row %s) err = %v, want nil", table, column, id, err)
		}
	}
	return string(pt)
}

// mock is stripe-mock, Stripe's own API double, started once for the
// package on a loopback port the system chooses (built the first time the
// machine needs it: see stripemock).
var mock stripemock.Shared

// stripeMock returns stripe-mock's base URL; only when it can be neither
// built nor found is the test skipped, saying why.
func stripeMock(t testing.TB) string {
	t.Helper()
	return mock.URL(t)
}

// recorder is a loopback proxy in front of stripe-mock that keeps the form
// of every request, since stripe-mock answers canned fixtures and does not
// show what it was sent.
type recorder struct {
	URL string
	mu  sync.Mutex
	req []recorded
}

type recorded struct {
	Method, Path string
	Form         url.Values
	Header       http.Header
}

func newRecorder(t testing.TB, base string) *recorder {
	t.Helper()
	target, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		rec.mu.Lock()
		rec.req = append(rec.req, recorded{Method: r.Method, Path: r.URL.Path, Form: form, Header: r.Header.Clone()})
		rec.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	rec.URL = hs.URL
	return rec
}

// requests returns the recorded requests to path.
func (r *recorder) requests(method, path string) []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []recorded
	for _, q := range r.req {
		if q.Method == method && q.Path == path {
			out = append(out, q)
		}
	}
	return out
}
