package discord_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/server/discord"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const (
	botToken   = "test-bot-token-7f3a"
	guildID    = "100000000000000001"
	adminID    = "200000000000000001" // a member with ADMINISTRATOR
	memberID   = "200000000000000002" // a member with no permissions
	buyerID    = "200000000000000003"
	otherID    = "200000000000000004"
	staffRole  = "300000000000000001"
	buyerRole  = "300000000000000002"
	adminPerms = "8"    // ADMINISTRATOR
	plainPerms = "1024" // VIEW_CHANNEL only
	robloxName = "Builder_Bob"
	robloxID   = int64(1234567)
)

// recorded is one request a double received.
type recorded struct {
	Method, Path, Auth, ContentType string
	Body                            []byte
}

// discordDouble is a local stand-in for Discord's REST API, following its
// documented shapes: role changes (PUT/DELETE
// /guilds/{guild}/members/{user}/roles/{role}) answer 204, or status when
// set, or failN 500s first; PATCH /webhooks/{app}/{token}/messages/@original
// records the follow-up and answers the message; the OAuth2 token endpoint
// and /users/@me/guilds answer from code and guilds.
type discordDouble struct {
	*httptest.Server
	mu        sync.Mutex
	reqs      []recorded
	followups map[string][]byte // interaction token -> PATCH body
	status    int
	failN     int // role changes answered 500 before the next succeeds
	code      string
	token     string
	guilds    []map[string]any
	oauth     *oauthGuild
}

type oauthGuild struct{ ID, Name string }

func newDiscordDouble(t testing.TB) *discordDouble {
	d := &discordDouble{status: http.StatusNoContent, followups: map[string][]byte{}}
	d.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		d.mu.Lock()
		defer d.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasPrefix(r.URL.Path, "/webhooks/"):
			parts := strings.Split(r.URL.Path, "/")
			if r.Method != http.MethodPatch || len(parts) != 6 || parts[4] != "messages" || parts[5] != "@original" {
				w.WriteHeader(http.StatusNotFound)
				return
			}
			d.followups[parts[3]] = b
			_, _ = w.Write([]byte(`{"id":"700000000000000001","type":0,"content":"","flags":64}`))
			return
		case r.URL.Path == "/oauth2/token":
			_ = r.ParseForm()
			form, _ := url.ParseQuery(string(b))
			if r.Method != http.MethodPost || form.Get("grant_type") != "authorization_code" || form.Get("code") != d.code || d.code == "" {
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(`{"error":"invalid_grant"}`))
				return
			}
			out := map[string]any{"access_token": d.token, "token_type": "Bearer", "expires_in": 604800, "refresh_token": "r", "scope": "bot applications.commands identify guilds"}
			if d.oauth != nil {
				out["guild"] = map[string]any{"id": d.oauth.ID, "name": d.oauth.Name}
			}
			_ = json.NewEncoder(w).Encode(out)
			return
		case r.URL.Path == "/users/@me/guilds":
			if r.Header.Get("Authorization") != "Bearer "+d.token {
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = w.Write([]byte(`{"message":"401: Unauthorized","code":0}`))
				return
			}
			_ = json.NewEncoder(w).Encode(d.guilds)
			return
		}
		d.reqs = append(d.reqs, recorded{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), b})
		status := d.status
		if d.failN > 0 && status/100 == 2 {
			d.failN--
			status = http.StatusInternalServerError
		}
		if status/100 != 2 {
			if status == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", "0.05")
			}
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"message": "Missing Permissions", "code": 50013}`))
			return
		}
		if r.URL.Path != "" && strings.HasSuffix(r.URL.Path, "/commands") {
			_, _ = w.Write(b)
			return
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(d.Close)
	return d
}

func (d *discordDouble) setStatus(s int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.status = s
}

func (d *discordDouble) failNext(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failN = n
}

// requests are the role and command requests (not follow-ups or OAuth).
func (d *discordDouble) requests() []recorded {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]recorded(nil), d.reqs...)
}

// followUp waits (up to 20 s) for the follow-up edit of interaction token
// and returns its content.
func (d *discordDouble) followUp(t testing.TB, token string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		d.mu.Lock()
		b, ok := d.followups[token]
		d.mu.Unlock()
		if ok {
			var m struct {
				Content         string `json:"content"`
				AllowedMentions struct {
					Parse []string `json:"parse"`
				} `json:"allowed_mentions"`
			}
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("follow-up body %s: %v", b, err)
			}
			if m.AllowedMentions.Parse == nil || len(m.AllowedMentions.Parse) != 0 {
				t.Errorf("follow-up allowed_mentions = %s, want parse [] (never ping)", b)
			}
			return m.Content
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no follow-up for the deferred reply within 20 s")
	return ""
}

// robloxDouble answers POST /v1/usernames/users from a fixed set of users,
// as Roblox's users API documents it; delay holds every answer back, and
// the first throttle requests get 429 with Retry-After: 1.
type robloxDouble struct {
	*httptest.Server
	mu       sync.Mutex
	reqs     []recorded
	delay    time.Duration
	throttle int
}

func newRobloxDouble(t testing.TB, users map[string]int64) *robloxDouble {
	d := &robloxDouble{}
	d.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		d.mu.Lock()
		d.reqs = append(d.reqs, recorded{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), b})
		delay, throttled := d.delay, d.throttle > 0
		if throttled {
			d.throttle--
		}
		d.mu.Unlock()
		if throttled {
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"errors":[{"code":0,"message":"Too many requests"}]}`))
			return
		}
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		if r.Method != http.MethodPost || r.URL.Path != "/v1/usernames/users" {
			http.NotFound(w, r)
			return
		}
		var in struct {
			Usernames          []string `json:"usernames"`
			ExcludeBannedUsers bool     `json:"excludeBannedUsers"`
		}
		if err := json.Unmarshal(b, &in); err != nil {
			http.Error(w, `{"errors":[{"code":0,"message":"bad request"}]}`, http.StatusBadRequest)
			return
		}
		type user struct {
			RequestedUsername string `json:"requestedUsername"`
			HasVerifiedBadge  bool   `json:"hasVerifiedBadge"`
			ID                int64  `json:"id"`
			Name              string `json:"name"`
			DisplayName       string `json:"displayName"`
		}
		out := struct {
			Data []user `json:"data"`
		}{Data: []user{}}
		for _, n := range in.Usernames {
			for name, id := range users {
				if strings.EqualFold(name, n) {
					out.Data = append(out.Data, user{RequestedUsername: n, ID: id, Name: name, DisplayName: name})
				}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(d.Close)
	return d
}

func (d *robloxDouble) requests() []recorded {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]recorded(nil), d.reqs...)
}

type nopAuditor struct{}

func (nopAuditor) Record(context.Context, vectabase.AuditEvent) error { return nil }

// recordingAuditor keeps every event; fail makes Record fail.
type recordingAuditor struct {
	mu     sync.Mutex
	events []vectabase.AuditEvent
	fail   bool
}

func (a *recordingAuditor) Record(_ context.Context, ev vectabase.AuditEvent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail {
		return errors.New("audit trail unavailable")
	}
	a.events = append(a.events, ev)
	return nil
}

func (a *recordingAuditor) all() []vectabase.AuditEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]vectabase.AuditEvent(nil), a.events...)
}

// env is one bot on its own database, with doubles for Discord and Roblox.
type env struct {
	t       testing.TB
	db      *store.DB
	kr      *keyring.Keyring
	repo    *store.Bot
	srv     *server.Server
	priv    ed25519.PrivateKey
	now     time.Time
	discord *discordDouble
	roblox  *robloxDouble
	audit   *recordingAuditor
	bot     *discord.Service
	server  store.DiscordServer
	product store.BotProduct
	owner   string
	system  string
	storeID string
	prodID  string
	logs    *syncBuffer

	auth        *auth.Service
	sellerToken string
	reg         *prometheus.Registry
}

// newEnv registers guild guildID with a whitelist system and one product
// whose role is buyerRole.
func newEnv(t testing.TB) *env {
	t.Helper()
	logs := &syncBuffer{}
	return newEnvWith(t, envOptions{log: zerolog.New(logs), logs: logs, reg: prometheus.NewRegistry(), token: botToken, webhook: "https://discord.com/api/webhooks/1/secret-webhook-token"})
}

// envOptions are what a leak test plants or watches.
type envOptions struct {
	log     zerolog.Logger
	logs    *syncBuffer // may be nil
	reg     *prometheus.Registry
	token   string
	webhook string
	// seller: the guild is not registered; the bot is configured for the
	// install flow and mounted with the real bearer authentication, and
	// the store's owner is a signed-in user (sellerToken).
	seller bool
}

func newEnvWith(t testing.TB, o envOptions) *env {
	t.Helper()
	if o.logs == nil {
		o.logs = &syncBuffer{}
	}
	ctx := context.Background()
	db := pgtest.New(t)
	kr := keyringtest.New(t, db.Pool)
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, db: db, kr: kr, repo: store.NewBot(db, kr), priv: priv,
		now:     time.Unix(1_790_000_000, 0),
		discord: newDiscordDouble(t), roblox: newRobloxDouble(t, map[string]int64{robloxName: robloxID}),
		audit: &recordingAuditor{}, logs: o.logs}
	if o.seller {
		e.auth, err = auth.New(ctx, auth.Config{Argon2: auth.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32},
			MaxAttemptsPerIP: 1 << 20, MaxFailuresPerIP: 1 << 20}, db, kr, nopAuditor{}, o.log, o.reg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.auth.Register(ctx, "seller@example.com", "correct horse battery", auth.RequestMeta{IP: "127.0.0.1"}); err != nil {
			t.Fatal(err)
		}
		res, err := e.auth.Login(ctx, "seller@example.com", "correct horse battery", auth.RequestMeta{IP: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		e.owner, e.sellerToken = res.User.ID, res.Token
	} else {
		u, err := db.CreateUser(ctx, store.NewUser{Email: "owner@example.com", Role: "developer"})
		if err != nil {
			t.Fatal(err)
		}
		e.owner = u.ID
	}
	var storeID, productID string
	if err := db.Pool.QueryRow(ctx, `INSERT INTO stores (owner_id, name, slug) VALUES ($1, 'Shop', 'shop') RETURNING id`, e.owner).Scan(&storeID); err != nil {
		t.Fatal(err)
	}
	if err := db.Pool.QueryRow(ctx, `INSERT INTO products (store_id, name, price_cents) VALUES ($1, 'Admin Script', 500) RETURNING id`, storeID).Scan(&productID); err != nil {
		t.Fatal(err)
	}
	if err := db.Pool.QueryRow(ctx, `INSERT INTO whitelist_systems (owner_id, store_id, name) VALUES ($1, $2, 'Main') RETURNING id`, e.owner, storeID).Scan(&e.system); err != nil {
		t.Fatal(err)
	}
	e.storeID, e.prodID, e.reg = storeID, productID, o.reg
	cfg := discord.Config{
		PublicKey: hex.EncodeToString(pub), BotToken: o.token,
		APIBase: e.discord.URL, RobloxAPIBase: e.roblox.URL,
	}
	opts := []discord.Option{discord.WithClock(func() time.Time { return e.now }), discord.WithRegisterer(o.reg)}
	var a discord.Auth
	if o.seller {
		cfg.ApplicationID, cfg.ClientSecret, cfg.InstallRedirectURI = "500000000000000001", "client-secret-9d2f", "https://shop.example/api/discord/install/callback"
		opts = append(opts, discord.WithStore(db, kr))
		a = discord.Auth{RequireUser: e.auth.RequireUser(), UserID: auth.UserID}
	} else {
		e.server, err = e.repo.CreateDiscordServer(ctx, store.NewDiscordServer{GuildID: guildID, OwnerID: e.owner, StoreID: &storeID, WhitelistSystemID: &e.system, WebhookURL: o.webhook})
		if err != nil {
			t.Fatal(err)
		}
		role := buyerRole
		e.product, err = e.repo.CreateBotProduct(ctx, e.server.ID, productID, &role)
		if err != nil {
			t.Fatal(err)
		}
	}
	bot, err := discord.New(cfg, e.repo, e.audit, o.log, opts...)
	if err != nil {
		t.Fatal(err)
	}
	e.bot = bot
	t.Cleanup(func() { _ = bot.Close(context.Background()) })
	e.srv = server.New(server.Config{}, o.log, o.reg)
	if e.auth != nil {
		e.srv.Mount(e.auth.Routes())
	}
	e.srv.Mount(bot.Routes(a))
	return e
}

// signedRequest is body signed with the bot's key, timestamped now.
func signedRequest(e *env, body []byte) *http.Request {
	return e.signedAt(body, e.now, nil)
}

// signedAt is body with timestamp ts, signed by sign (nil: the bot's key).
func (e *env) signedAt(body []byte, ts time.Time, sign func([]byte) []byte) *http.Request {
	tsStr := strconv.FormatInt(ts.Unix(), 10)
	req := httptest.NewRequest(http.MethodPost, "/api/discord/interactions", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Signature-Timestamp", tsStr)
	if sign == nil {
		sign = func(msg []byte) []byte { return ed25519.Sign(e.priv, msg) }
	}
	req.Header.Set("X-Signature-Ed25519", hex.EncodeToString(sign(append([]byte(tsStr), body...))))
	return req
}

// postAt sends body signed by sign at timestamp ts.
func (e *env) postAt(body []byte, ts time.Time, sign func([]byte) []byte) *http.Response {
	e.t.Helper()
	res, err := e.srv.App().Test(e.signedAt(body, ts, sign), -1)
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// reply is a decoded interaction response.
type reply struct {
	deferred bool // answered with type 5, content from the follow-up
	Type     int  `json:"type"`
	Data     *struct {
		Content         string `json:"content"`
		Flags           int    `json:"flags"`
		AllowedMentions struct {
			Parse []string `json:"parse"`
		} `json:"allowed_mentions"`
	} `json:"data"`
}

// run sends a signed interaction and decodes its 200 reply; every command
// reply must be ephemeral.
func (e *env) run(body []byte) reply {
	e.t.Helper()
	res := e.postAt(body, e.now, nil)
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		e.t.Fatalf("POST interaction = %d %s, want 200", res.StatusCode, b)
	}
	var r reply
	if err := json.Unmarshal(b, &r); err != nil {
		e.t.Fatalf("reply %s: %v", b, err)
	}
	if (r.Type == 4 || r.Type == 5) && (r.Data == nil || r.Data.Flags != 64) {
		e.t.Fatalf("reply %s is not ephemeral (flags 64)", b)
	}
	if r.Type == 5 {
		// Deferred: the answer is the follow-up edit of the original.
		var in struct {
			Token string `json:"token"`
		}
		_ = json.Unmarshal(body, &in)
		content := e.discord.followUp(e.t, in.Token)
		r.Type = 4
		r.Data.Content = content
		r.Data.AllowedMentions.Parse = []string{}
		r.deferred = true
	}
	return r
}

func (r reply) content() string {
	if r.Data == nil {
		return ""
	}
	return r.Data.Content
}

// interactionSeq makes every interaction's id and token unique, as
// Discord's are.
var interactionSeq atomic.Int64

// opt is an interaction option.
type opt map[string]any

// command builds an application command interaction from caller with
// roles and permissions.
func command(guild, caller, perms string, roles []string, name string, options []opt) []byte {
	if roles == nil {
		roles = []string{}
	}
	n := interactionSeq.Add(1)
	in := map[string]any{
		"id": strconv.FormatInt(400000000000000000+n, 10), "application_id": "500000000000000001", "type": 2,
		"token":   "interaction-token-" + strconv.FormatInt(n, 10),
		"version": 1, "locale": "en-US",
		"member": map[string]any{
			"user":        map[string]any{"id": caller, "username": "u" + caller[len(caller)-2:], "discriminator": "0"},
			"roles":       roles,
			"permissions": perms,
			"joined_at":   "2024-01-01T00:00:00+00:00",
		},
		"data": map[string]any{"id": "600000000000000001", "name": name, "type": 1, "options": options},
	}
	if guild != "" {
		in["guild_id"] = guild
	}
	b, _ := json.Marshal(in)
	return b
}

func sub(name string, options ...opt) []opt {
	return []opt{{"type": 1, "name": name, "options": options}}
}

func userOpt(id string) opt     { return opt{"type": 6, "name": "user", "value": id} }
func strOpt(name, v string) opt { return opt{"type": 3, "name": name, "value": v} }
func (e *env) add(caller, perms string, roles []string, target, roblox string) reply {
	return e.run(command(guildID, caller, perms, roles, "whitelist", sub("add", userOpt(target), strOpt("roblox", roblox))))
}

func (e *env) count(query string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// licenseKeyOf decrypts the license key of discordID's whitelist entry.
func (e *env) licenseKeyOf(discordID string) string {
	e.t.Helper()
	var id string
	var ct []byte
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT id, license_key FROM whitelist_users WHERE discord_id = $1`, discordID).Scan(&id, &ct); err != nil {
		e.t.Fatal(err)
	}
	pt, err := e.kr.Decrypt(context.Background(), keyring.Location{Table: "whitelist_users", Column: "license_key", RowID: id}, ct)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(pt)
}

// newSellerEnv is an env for the install flow: no guild registered yet,
// the seller signed in.
func newSellerEnv(t testing.TB) *env {
	t.Helper()
	logs := &syncBuffer{}
	return newEnvWith(t, envOptions{log: zerolog.New(logs), logs: logs, reg: prometheus.NewRegistry(), token: botToken, seller: true})
}

// syncBuffer is a log sink that deferred commands may write to while a
// test reads it.
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

// commandsCounted is vectabase_discord_commands_total{command,outcome}.
func (e *env) commandsCounted(command, outcome string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "vectabase_discord_commands_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["command"] == command && labels["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
