package auth_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vectabase/vectabase/store"
)

func (e *env) count(t *testing.T, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := e.db.Pool.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// DELETE /api/auth/me: a wrong or missing password is refused (and
// audited); the right one deletes the account, ends its sessions, keeps
// the user's purchases in the seller's sales without the buyer, records the
// ledger entry and audits the deletion. An admin is refused; a seller with
// sales is not, and their store stays closed and anonymised.
func TestDeleteMeWithPassword(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, testConfig())
	buyer := e.register("buyer@example.com", "password-123")
	seller := e.register("seller@example.com", "password-456")
	var storeID, product string
	if err := e.db.Pool.QueryRow(ctx, `INSERT INTO stores (owner_id, name, slug) VALUES ($1, 's', 'shop') RETURNING id`, seller.ID).Scan(&storeID); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Pool.QueryRow(ctx, `INSERT INTO products (store_id, name, price_cents) VALUES ($1, 'p', 700) RETURNING id`, storeID).Scan(&product); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := e.db.Pool.Exec(ctx, `INSERT INTO sales (product_id, store_id, buyer_id, buyer_email, amount_cents, platform_fee_cents)
			VALUES ($1, $2, $3, 'buyer@example.com', 700, 35)`, product, storeID, buyer.ID); err != nil {
			t.Fatal(err)
		}
	}
	tok := e.login("buyer@example.com", "password-123")

	for name, body := range map[string]any{"no body": nil, "empty password": map[string]string{"password": ""}, "wrong password": map[string]string{"password": "not-it-at-all"}} {
		if r := e.do("DELETE", "/api/auth/me", body, bearer(tok.Token)...); r.Status != 400 || r.code() != "VALIDATION_FAILED" {
			t.Errorf("%s = %d %s, want 400 VALIDATION_FAILED", name, r.Status, r.Body)
		}
	}
	if r := e.do("DELETE", "/api/auth/me", `{"password":"password-123","extra":1}`, bearer(tok.Token)...); r.Status != 400 {
		t.Errorf("unknown field = %d, want 400", r.Status)
	}
	if r := e.do("DELETE", "/api/auth/me", map[string]string{"password": "password-123"}); r.Status != 401 {
		t.Errorf("without a token = %d, want 401", r.Status)
	}
	if n := e.aud.count("auth.account_delete"); n != 3 {
		t.Errorf("audited refusals = %d, want 3 (one per wrong password)", n)
	}

	// An admin is refused.
	st := e.login("seller@example.com", "password-456")
	if _, err := e.db.Pool.Exec(ctx, `UPDATE profiles SET role = 'admin' WHERE id = $1`, seller.ID); err != nil {
		t.Fatal(err)
	}
	if r := e.do("DELETE", "/api/auth/me", map[string]string{"password": "password-456"}, bearer(st.Token)...); r.Status != 403 {
		t.Errorf("admin = %d %s, want 403", r.Status, r.Body)
	}
	if _, err := e.db.Pool.Exec(ctx, `UPDATE profiles SET role = 'user' WHERE id = $1`, seller.ID); err != nil {
		t.Fatal(err)
	}

	if r := e.do("DELETE", "/api/auth/me", map[string]string{"password": "password-123"}, bearer(tok.Token)...); r.Status != 204 {
		t.Fatalf("delete with the password = %d %s, want 204", r.Status, r.Body)
	}
	if r := e.do("GET", "/api/auth/me", nil, bearer(tok.Token)...); r.Status != 401 {
		t.Errorf("the deleted user's token = %d, want 401", r.Status)
	}
	if r := e.do("POST", "/api/auth/refresh", map[string]string{"refreshToken": tok.RefreshToken}); r.Status != 401 {
		t.Errorf("the deleted user's refresh token = %d, want 401", r.Status)
	}
	if r := e.do("POST", "/api/auth/login", map[string]string{"email": "buyer@example.com", "password": "password-123"}); r.Status != 401 {
		t.Errorf("login after deletion = %d, want 401", r.Status)
	}
	if n := e.count(t, `SELECT count(*) FROM sales WHERE store_id = $1 AND buyer_id IS NULL AND buyer_email IS NULL AND amount_cents = 700`, storeID); n != 2 {
		t.Errorf("anonymised sales kept for the seller = %d, want 2", n)
	}
	if n := e.count(t, `SELECT count(*) FROM shredded_users WHERE user_id = $1`, buyer.ID); n != 1 {
		t.Errorf("ledger entries = %d, want 1", n)
	}
	var ok bool
	for _, ev := range e.aud.events {
		if ev.Action == "auth.account_delete" && ev.Result == "success" && ev.ResourceID == buyer.ID {
			ok = ev.Details["salesAnonymised"] == int64(2)
			for _, v := range ev.Details {
				if s, isStr := v.(string); isStr && strings.Contains(s, "@") {
					t.Errorf("deletion audit row holds %q", s)
				}
			}
		}
	}
	if !ok {
		t.Errorf("audit = %v, want auth.account_delete:success with salesAnonymised 2", e.aud.actions())
	}
	// The address is free again: it names no one.
	e.register("buyer@example.com", "password-789")

	// A seller with sales deletes their account too: the store stays,
	// closed and anonymised, with its sales for the buyers' records.
	if r := e.do("DELETE", "/api/auth/me", map[string]string{"password": "password-456"}, bearer(st.Token)...); r.Status != 204 {
		t.Fatalf("seller with sales = %d %s, want 204", r.Status, r.Body)
	}
	if n := e.count(t, `SELECT count(*) FROM stores WHERE id = $1 AND owner_id IS NULL AND name = 'Deleted store'`, storeID); n != 1 {
		t.Errorf("the seller's store kept ownerless and anonymised = %d, want 1", n)
	}
	if n := e.count(t, `SELECT count(*) FROM products WHERE id = $1 AND NOT is_active`, product); n != 1 {
		t.Errorf("the seller's product closed = %d, want 1", n)
	}
	if n := e.count(t, `SELECT coalesce(sum(amount_cents), 0) FROM sales WHERE store_id = $1`, storeID); n != 1400 {
		t.Errorf("sales amounts kept = %d, want 1400", n)
	}
	var closed bool
	for _, ev := range e.aud.events {
		if ev.Action == "auth.account_delete" && ev.Result == "success" && ev.ResourceID == seller.ID {
			closed = ev.Details["storesClosed"] == int64(1)
		}
	}
	if !closed {
		t.Errorf("audit = %v, want the seller's auth.account_delete:success with storesClosed 1", e.aud.actions())
	}
}

// A Discord-only account (no password) deletes itself within
// RecentSignInWindow of signing in, and not after.
func TestDeleteMeDiscordOnlyNeedsRecentSignIn(t *testing.T) {
	t.Parallel()
	e, f := discordEnv(t)
	f.grant("c1", map[string]any{"id": "81111111111111111", "username": "late"})
	f.grant("c2", map[string]any{"id": "82222222222222222", "username": "fresh"})
	var late, fresh loginBody
	e.callback("c1", e.authorize(t, f.srv.URL)).json(t, &late)
	e.clock.advance(6 * time.Minute)
	e.callback("c2", e.authorize(t, f.srv.URL)).json(t, &fresh)
	if r := e.do("DELETE", "/api/auth/me", map[string]string{}, bearer(late.Token)...); r.Status != 403 || r.code() != "FORBIDDEN" {
		t.Errorf("sign-in 6 minutes old = %d %s, want 403", r.Status, r.Body)
	}
	// A refresh is not a sign-in.
	var refreshed loginBody
	e.do("POST", "/api/auth/refresh", map[string]string{"refreshToken": late.RefreshToken}).json(t, &refreshed)
	if r := e.do("DELETE", "/api/auth/me", nil, bearer(refreshed.Token)...); r.Status != 403 {
		t.Errorf("after a refresh of an old sign-in = %d, want 403", r.Status)
	}
	if r := e.do("DELETE", "/api/auth/me", nil, bearer(fresh.Token)...); r.Status != 204 {
		t.Fatalf("fresh Discord sign-in = %d %s, want 204", r.Status, r.Body)
	}
	if _, err := e.db.UserByDiscordID(context.Background(), "82222222222222222"); err == nil {
		t.Error("the Discord user still exists")
	}
}

// linkStart calls GET /api/auth/discord/link as the bearer of tok and
// records the flow like authorize does.
func (e *env) linkStart(t *testing.T, tok string) string {
	t.Helper()
	r := e.do("GET", "/api/auth/discord/link", nil, bearer(tok)...)
	var out struct{ URL string }
	r.json(t, &out)
	if r.Status != 200 || out.URL == "" {
		t.Fatalf("GET /api/auth/discord/link = %d %s, want 200 {url}", r.Status, r.Body)
	}
	u, err := url.Parse(out.URL)
	if err != nil {
		t.Fatal(err)
	}
	var cookie string
	for _, c := range (&http.Response{Header: r.Header}).Cookies() {
		if c.Name == "vb_discord_oauth" {
			cookie = c.Value
		}
	}
	if e.flows == nil {
		e.flows = map[string]browser{}
	}
	st := u.Query().Get("state")
	e.flows[st] = browser{cookie: cookie, challenge: u.Query().Get("code_challenge")}
	return st
}

// Linking Discord to a signed-in account goes through the user-bound
// state, never an email match: the callback links (no new session), a
// Discord account linked elsewhere is a CONFLICT, and unlinking is refused
// when it would leave no way to sign in.
func TestDiscordLinkAndUnlink(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e, f := discordEnv(t)
	alice := e.register("alice@example.com", "password-123")
	at := e.login("alice@example.com", "password-123")
	if r := e.do("GET", "/api/auth/discord/link", nil); r.Status != 401 {
		t.Errorf("link without a token = %d, want 401", r.Status)
	}
	if r := e.do("DELETE", "/api/auth/discord", nil, bearer(at.Token)...); r.Status != 404 {
		t.Errorf("unlink with nothing linked = %d, want 404", r.Status)
	}
	// Discord says the email is someone else's verified address: linking
	// never looks at it.
	f.grant("l1", map[string]any{"id": "90000000000000001", "username": "alice_d", "email": "bob@example.com", "verified": true})
	sessions := e.count(t, `SELECT count(*) FROM sessions`)
	r := e.callback("l1", e.linkStart(t, at.Token))
	var linked struct {
		User   store.User
		Linked bool
	}
	r.json(t, &linked)
	if r.Status != 200 || !linked.Linked || linked.User.ID != alice.ID || linked.User.DiscordID == nil || *linked.User.DiscordID != "90000000000000001" {
		t.Fatalf("link callback = %d %s, want alice linked", r.Status, r.Body)
	}
	if n := e.count(t, `SELECT count(*) FROM sessions`); n != sessions {
		t.Errorf("sessions after linking = %d, want %d (linking signs no one in)", n, sessions)
	}
	// Signing in with that Discord account now reaches alice.
	f.grant("l2", map[string]any{"id": "90000000000000001", "username": "alice_d"})
	var signin loginBody
	e.callback("l2", e.authorize(t, f.srv.URL)).json(t, &signin)
	if signin.User.ID != alice.ID {
		t.Errorf("Discord sign-in after linking = user %s, want alice %s", signin.User.ID, alice.ID)
	}

	// bob cannot link alice's Discord account.
	e.register("bob@example.com", "password-456")
	bt := e.login("bob@example.com", "password-456")
	f.grant("l3", map[string]any{"id": "90000000000000001", "username": "alice_d"})
	if r := e.callback("l3", e.linkStart(t, bt.Token)); r.Status != 409 || r.code() != "CONFLICT" {
		t.Errorf("linking a Discord account linked to another user = %d %s, want 409", r.Status, r.Body)
	}
	// alice cannot link a second Discord account over the first.
	f.grant("l4", map[string]any{"id": "90000000000000002", "username": "alt"})
	if r := e.callback("l4", e.linkStart(t, at.Token)); r.Status != 409 {
		t.Errorf("linking a second Discord account = %d %s, want 409", r.Status, r.Body)
	}
	// A link state is spent once, like a sign-in state.
	st := e.linkStart(t, bt.Token)
	f.grant("l5", map[string]any{"id": "90000000000000005", "username": "bob_d"})
	f.grant("l6", map[string]any{"id": "90000000000000006", "username": "bob_e"})
	if r := e.callback("l5", st); r.Status != 200 {
		t.Fatalf("bob links = %d %s", r.Status, r.Body)
	}
	if r := e.callback("l6", st); r.Status != 401 {
		t.Errorf("replayed link state = %d, want 401", r.Status)
	}

	if r := e.do("DELETE", "/api/auth/discord", nil, bearer(at.Token)...); r.Status != 204 {
		t.Fatalf("alice unlinks = %d %s, want 204", r.Status, r.Body)
	}
	if u, _ := e.db.UserByID(ctx, alice.ID); u.DiscordID != nil {
		t.Errorf("alice's Discord id after unlink = %v, want none", *u.DiscordID)
	}
	// A Discord-only account cannot unlink its one way in.
	f.grant("l7", map[string]any{"id": "90000000000000007", "username": "only"})
	var only loginBody
	e.callback("l7", e.authorize(t, f.srv.URL)).json(t, &only)
	if r := e.do("DELETE", "/api/auth/discord", nil, bearer(only.Token)...); r.Status != 409 || r.code() != "CONFLICT" {
		t.Errorf("unlinking the only sign-in method = %d %s, want 409", r.Status, r.Body)
	}
	for _, a := range []string{"auth.discord_link:success", "auth.discord_link:failure", "auth.discord_unlink:success"} {
		found := false
		for _, got := range e.aud.actions() {
			found = found || got == a
		}
		if !found {
			t.Errorf("audit lacks %s: %v", a, e.aud.actions())
		}
	}
}
