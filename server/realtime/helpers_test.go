package realtime_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/server/marketplace"
	"github.com/vectabase/vectabase/server/realtime"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fastArgon2 keeps logins quick in tests.
var fastArgon2 = auth.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

type nopAuditor struct{}

func (nopAuditor) Record(context.Context, vectabase.AuditEvent) error { return nil }

// syncBuffer collects everything an instance logged.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

// cluster is one database shared by server instances, as in production
// behind a load balancer.
type cluster struct {
	t       *testing.T
	url     string
	keyFile string
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "master.key")
	if err := local.GenerateKeyFile(keyFile); err != nil {
		t.Fatalf("GenerateKeyFile err = %v, want nil", err)
	}
	return &cluster{t: t, url: pgtest.URL(t), keyFile: keyFile}
}

// instance is one server process: its own pool, keyring, auth service,
// hub with its own LISTEN connection, and HTTP listener on loopback.
type instance struct {
	t    *testing.T
	db   *store.DB
	kr   *keyring.Keyring
	auth *auth.Service
	hub  *realtime.Hub
	reg  *prometheus.Registry
	logs *syncBuffer
	ws   string // ws://127.0.0.1:port/api/realtime
	http string // http://127.0.0.1:port
}

func (cl *cluster) start(cfg realtime.Config) *instance {
	t := cl.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	inst := &instance{t: t, db: pgtest.Open(t, cl.url), reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	log := zerolog.New(inst.logs).Level(zerolog.DebugLevel)
	kek, err := local.NewFromFile(cl.keyFile)
	if err != nil {
		t.Fatalf("NewFromFile err = %v, want nil", err)
	}
	inst.kr, err = keyring.Open(ctx, store.NewKeysets(inst.db.Pool), kek)
	if err != nil {
		t.Fatalf("keyring.Open err = %v, want nil", err)
	}
	inst.auth, err = auth.New(ctx, auth.Config{
		AccessTTL: time.Hour, RefreshTTL: 720 * time.Hour, Issuer: "vectabase", Argon2: fastArgon2,
		FailureWindow: 15 * time.Minute, AttemptWindow: time.Minute,
	}, inst.db, inst.kr, nopAuditor{}, log, inst.reg)
	if err != nil {
		t.Fatalf("auth.New err = %v, want nil", err)
	}
	inst.hub, err = realtime.New(cfg, inst.db, cl.url, inst.auth, log, inst.reg)
	if err != nil {
		t.Fatalf("realtime.New err = %v, want nil", err)
	}
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		_ = inst.hub.Run(ctx)
	}()
	srv := server.New(server.Config{}, log, inst.reg)
	srv.Mount(inst.auth.Routes())
	mk := marketplace.New(inst.db, inst.kr, nopAuditor{}, marketplace.Config{}, log, inst.reg)
	srv.Mount(mk.Routes(marketplace.Auth{RequireUser: inst.auth.RequireUser(), OptionalUser: inst.auth.OptionalUser(), UserID: auth.UserID}))
	srv.Mount(inst.hub.Routes())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	inst.ws = "ws://" + ln.Addr().String() + "/api/realtime"
	inst.http = "http://" + ln.Addr().String()
	t.Cleanup(func() {
		_ = mk.Close(context.Background())
		inst.hub.Close()
		cancel()
		<-runDone
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
	})
	waitFor(t, "the hub to LISTEN", inst.hub.Listening)
	return inst
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	// Generous: it bounds a hang, and a busy machine must not fail it.
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// user is a registered account with an access token.
type user struct {
	id    string
	email string
	token string
}

func (inst *instance) newUser(name string) user {
	inst.t.Helper()
	ctx := context.Background()
	email := name + "-" + uuid.NewString()[:8] + "@example.com"
	const pw = "correct horse battery"
	meta := auth.RequestMeta{IP: "192.0.2.1", UserAgent: "test", RequestID: "test"}
	if _, err := inst.auth.Register(ctx, email, pw, meta); err != nil {
		inst.t.Fatalf("Register(%s) err = %v, want nil", email, err)
	}
	res, err := inst.auth.Login(ctx, email, pw, meta)
	if err != nil {
		inst.t.Fatalf("Login(%s) err = %v, want nil", email, err)
	}
	return user{id: res.User.ID, email: email, token: res.Token}
}

// exec runs SQL through this instance's pool (its writes are the
// instance's writes).
func (inst *instance) exec(sql string, args ...any) {
	inst.t.Helper()
	if _, err := inst.db.Pool.Exec(context.Background(), sql, args...); err != nil {
		inst.t.Fatalf("exec %q err = %v, want nil", sql, err)
	}
}

func (inst *instance) seal(table, column, id, value string) []byte {
	inst.t.Helper()
	ct, err := inst.kr.Encrypt(context.Background(), keyring.Location{Table: table, Column: column, RowID: id}, []byte(value))
	if err != nil {
		inst.t.Fatalf("Encrypt err = %v, want nil", err)
	}
	return ct
}

func (inst *instance) newStore(owner user) string {
	inst.t.Helper()
	id := uuid.NewString()
	inst.exec(`INSERT INTO stores (id, owner_id, name, slug) VALUES ($1, $2, 'Shop', $3)`, id, owner.id, "shop-"+id)
	return id
}

func (inst *instance) newProduct(storeID string, active bool) string {
	inst.t.Helper()
	id := uuid.NewString()
	inst.exec(`INSERT INTO products (id, store_id, name, price_cents, is_active) VALUES ($1, $2, 'Sword', 499, $3)`, id, storeID, active)
	return id
}

// client is a WebSocket client over loopback.
type client struct {
	t    testing.TB
	conn *websocket.Conn
}

// message is any server message, with its raw bytes kept.
type message struct {
	Type         string            `json:"type"`
	Error        string            `json:"error"`
	Message      string            `json:"message"`
	Topic        string            `json:"topic"`
	Kind         string            `json:"kind"`
	Action       string            `json:"action"`
	ID           string            `json:"id"`
	Subscription string            `json:"subscription"`
	Filter       map[string]string `json:"filter"`
	UserID       string            `json:"userId"`
	Record       map[string]any    `json:"record"`
	raw          []byte
}

func (inst *instance) dial(query string) *client {
	inst.t.Helper()
	u := inst.ws
	if query != "" {
		u += "?" + query
	}
	conn, resp, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		inst.t.Fatalf("Dial(%s) err = %v, want nil", inst.ws, err)
	}
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	c := &client{t: inst.t, conn: conn}
	inst.t.Cleanup(func() { conn.Close() })
	return c
}

// connect dials with the token in the query and waits for "authenticated".
func (inst *instance) connect(u user) *client {
	inst.t.Helper()
	c := inst.dial("access_token=" + url.QueryEscape(u.token))
	if m := c.read(); m.Type != "authenticated" || m.UserID != u.id {
		inst.t.Fatalf("first message = %s, want authenticated as %s", m.raw, u.id)
	}
	return c
}

func (c *client) send(v any) {
	c.t.Helper()
	var b []byte
	switch v := v.(type) {
	case string:
		b = []byte(v)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			c.t.Fatal(err)
		}
	}
	if err := c.conn.WriteMessage(websocket.TextMessage, b); err != nil {
		c.t.Fatalf("WriteMessage err = %v, want nil", err)
	}
}

// read returns the next message, failing the test after 10 s.
func (c *client) read() message {
	c.t.Helper()
	m, err := c.tryRead(10 * time.Second)
	if err != nil {
		c.t.Fatalf("reading a message: %v", err)
	}
	return m
}

func (c *client) tryRead(d time.Duration) (message, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	_, b, err := c.conn.ReadMessage()
	if err != nil {
		return message{}, err
	}
	var m message
	if err := json.Unmarshal(b, &m); err != nil {
		return message{}, errors.New("server sent non-JSON: " + string(b))
	}
	m.raw = b
	return m, nil
}

// subscribe subscribes and waits for the acknowledgement. Change events
// that arrive meanwhile (for earlier subscriptions) are skipped: tests
// subscribe, then pass a barrier, then make the changes they check.
func (c *client) subscribe(topic string, filter map[string]string) string {
	c.t.Helper()
	msg := map[string]any{"type": "subscribe", "topic": topic}
	if filter != nil {
		msg["filter"] = filter
	}
	c.send(msg)
	for {
		m := c.read()
		if m.Type == "change" || m.Type == "resync" {
			continue
		}
		if m.Type != "subscribed" || m.Topic != topic || m.Subscription == "" {
			c.t.Fatalf("subscribe %s %v: got %s, want subscribed", topic, filter, m.raw)
		}
		return m.Subscription
	}
}

// barrier returns once every change committed before it has been
// dispatched to c, discarding those events: notifications reach the hub
// asynchronously, so a change committed before a subscription may still be
// delivered to it. It makes a change of u's own and waits for it; the
// listener dispatches in commit order.
func (inst *instance) barrier(c *client, u user) {
	inst.t.Helper()
	store := inst.newStore(u)
	sub := c.subscribe("stores", map[string]string{"id": store})
	nonce := uuid.NewString()
	inst.exec(`UPDATE stores SET name = $2 WHERE id = $1`, store, nonce)
	for {
		m := c.read()
		if m.Type == "change" && m.ID == store && m.Action == "update" && m.Record["name"] == nonce {
			break
		}
	}
	c.send(map[string]string{"type": "unsubscribe", "subscription": sub})
	if m := c.read(); m.Type != "unsubscribed" {
		inst.t.Fatalf("barrier: unsubscribe got %s", m.raw)
	}
}

// nextChange returns the next change event.
func (c *client) nextChange() message {
	c.t.Helper()
	m := c.read()
	if m.Type != "change" {
		c.t.Fatalf("got %s, want a change event", m.raw)
	}
	return m
}

// expectClosed reads until the server closes the connection and returns
// the error messages sent before and the close code.
func (c *client) expectClosed() ([]message, int) {
	c.t.Helper()
	var got []message
	for {
		m, err := c.tryRead(10 * time.Second)
		if err == nil {
			got = append(got, m)
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return got, ce.Code
		}
		c.t.Fatalf("connection ended with %v, want a close frame (messages before: %d)", err, len(got))
	}
}

// metric is the value of a gauge or counter without labels.
func (inst *instance) metric(name string) float64 {
	inst.t.Helper()
	mfs, err := inst.reg.Gather()
	if err != nil {
		inst.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) == 0 {
			continue
		}
		m := mf.GetMetric()[0]
		if g := m.GetGauge(); g != nil {
			return g.GetValue()
		}
		return m.GetCounter().GetValue()
	}
	return 0
}

// api calls the instance's HTTP API as u and decodes the JSON answer.
func (inst *instance) api(u user, method, path string, body any, out any) int {
	inst.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			inst.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, inst.http+path, rd)
	if err != nil {
		inst.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+u.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		inst.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			inst.t.Fatalf("%s %s = %d %s: %v", method, path, resp.StatusCode, raw, err)
		}
	}
	if resp.StatusCode >= 300 {
		inst.t.Logf("%s %s = %d %s", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode
}
