package marketplace_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/store/pgtest"
)

// TestStoreProductFlow walks the owner's path: a store, a product with a
// download URL, public reads without it, updates, paging, deletes.
func TestStoreProductFlow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	owner := e.user(t)

	st := e.must(t, 201, "POST", "/api/stores", owner, map[string]any{"name": "Shop", "slug": "Shop-1", "description": "d"})
	storeID := st["id"].(string)
	if st["slug"] != "shop-1" || st["ownerId"] != owner || st["commissionBps"].(float64) != 500 {
		t.Fatalf("store = %v", st)
	}
	if r := e.call(t, "POST", "/api/stores", owner, map[string]any{"name": "Other", "slug": "shop-1"}); r.Status != 409 {
		t.Fatalf("duplicate slug = %d %s, want 409", r.Status, r.Raw)
	}
	e.must(t, 200, "PATCH", "/api/stores/"+storeID, owner, map[string]any{"name": "Shop 2"})
	if got := e.must(t, 200, "GET", "/api/stores/"+storeID, owner, nil); got["name"] != "Shop 2" {
		t.Fatalf("after PATCH name = %v", got["name"])
	}

	p := e.must(t, 201, "POST", "/api/products", owner, map[string]any{
		"storeId": storeID, "name": "Gun", "priceCents": 499, "downloadUrl": "https://cdn.example.com/gun.rbxm", "metadata": map[string]any{"tier": 1},
	})
	pid := p["id"].(string)
	if p["downloadUrl"] != "https://cdn.example.com/gun.rbxm" || p["currency"] != "usd" || p["isActive"] != true {
		t.Fatalf("product = %v", p)
	}
	var stored []byte
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT download_url FROM products WHERE id = $1`, pid).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(stored), "cdn.example.com") {
		t.Fatal("download_url is stored in clear")
	}
	// Anonymous and other users see the active product without its URL.
	other := e.user(t)
	for _, who := range []string{"", other} {
		got := e.must(t, 200, "GET", "/api/products/"+pid, who, nil)
		if _, ok := got["downloadUrl"]; ok {
			t.Fatalf("GET as %q shows downloadUrl", who)
		}
	}
	e.must(t, 200, "PATCH", "/api/products/"+pid, owner, map[string]any{"isActive": false, "downloadUrl": nil})
	e.must(t, 404, "GET", "/api/products/"+pid, "", nil)
	got := e.must(t, 200, "GET", "/api/products/"+pid, owner, nil)
	if _, ok := got["downloadUrl"]; ok || got["isActive"] != false {
		t.Fatalf("after clearing: %v", got)
	}

	// Paging: 5 products, pages of 2.
	for i := 0; i < 4; i++ {
		e.must(t, 201, "POST", "/api/products", owner, map[string]any{"storeId": storeID, "name": "P", "priceCents": i})
	}
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		path := "/api/products?limit=2"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		b := e.must(t, 200, "GET", path, owner, nil)
		for _, it := range b["items"].([]any) {
			id := it.(map[string]any)["id"].(string)
			if seen[id] {
				t.Fatalf("product %s on two pages", id)
			}
			seen[id] = true
		}
		next, _ := b["nextCursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(seen) != 5 {
		t.Fatalf("paged through %d products, want 5", len(seen))
	}
	// The public list shows the 4 active ones only, to anyone; the owner's
	// own list of the store shows all 5.
	for who, want := range map[string]int{"": 4, other: 4, owner: 5} {
		if b := e.must(t, 200, "GET", "/api/products?storeId="+storeID, who, nil); len(b["items"].([]any)) != want {
			t.Fatalf("list of the store as %q has %d items, want %d", who, len(b["items"].([]any)), want)
		}
	}
	if b := e.must(t, 200, "GET", "/api/products", other, nil); len(b["items"].([]any)) != 0 {
		t.Fatalf("another user's own list has %d items, want 0", len(b["items"].([]any)))
	}

	e.must(t, 204, "DELETE", "/api/products/"+pid, owner, nil)
	e.must(t, 404, "GET", "/api/products/"+pid, owner, nil)
	e.must(t, 204, "DELETE", "/api/stores/"+storeID, owner, nil)
	e.must(t, 404, "GET", "/api/stores/"+storeID, owner, nil)
}

// TestSalesList checks filters by store and time and that a store with
// sales cannot be deleted.
func TestSalesList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	owner := e.user(t)
	ctx := context.Background()
	s1 := e.must(t, 201, "POST", "/api/stores", owner, map[string]any{"name": "A", "slug": "a-" + uuid.NewString()[:8]})["id"].(string)
	s2 := e.must(t, 201, "POST", "/api/stores", owner, map[string]any{"name": "B", "slug": "b-" + uuid.NewString()[:8]})["id"].(string)
	p1 := e.must(t, 201, "POST", "/api/products", owner, map[string]any{"storeId": s1, "name": "x", "priceCents": 100})["id"].(string)
	p2 := e.must(t, 201, "POST", "/api/products", owner, map[string]any{"storeId": s2, "name": "y", "priceCents": 100})["id"].(string)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 6; i++ {
		sid, pid := s1, p1
		if i%2 == 1 {
			sid, pid = s2, p2
		}
		if _, err := e.db.Pool.Exec(ctx, `INSERT INTO sales (product_id, store_id, amount_cents, created_at) VALUES ($1, $2, 100, $3)`,
			pid, sid, base.Add(time.Duration(i)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	count := func(q string) int {
		return len(e.must(t, 200, "GET", "/api/sales"+q, owner, nil)["items"].([]any))
	}
	if n := count(""); n != 6 {
		t.Fatalf("all sales = %d, want 6", n)
	}
	if n := count("?storeId=" + s1); n != 3 {
		t.Fatalf("sales of s1 = %d, want 3", n)
	}
	if n := count("?from=2026-01-01T02:00:00Z&to=2026-01-01T04:00:00Z"); n != 2 {
		t.Fatalf("sales in [2h,4h) = %d, want 2", n)
	}
	if n := count("?since=2026-01-01T04:00:00Z&storeId=" + s2); n != 1 {
		t.Fatalf("sales of s2 since 4h = %d, want 1", n)
	}
	if n := len(e.must(t, 200, "GET", "/api/sales", e.user(t), nil)["items"].([]any)); n != 0 {
		t.Fatalf("another user sees %d sales", n)
	}
	if r := e.call(t, "DELETE", "/api/stores/"+s1, owner, nil); r.Status != 409 {
		t.Fatalf("delete store with sales = %d %s, want 409", r.Status, r.Raw)
	}
	if r := e.call(t, "DELETE", "/api/products/"+p1, owner, nil); r.Status != 409 {
		t.Fatalf("delete product with sales = %d %s, want 409", r.Status, r.Raw)
	}
}

// TestWhitelistAndKeys covers whitelist entries, license keys, API keys,
// check, verify and revocation.
func TestWhitelistAndKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dev := e.user(t)
	sys := e.must(t, 201, "POST", "/api/whitelist/systems", dev, map[string]any{"name": "Game", "maxUsers": 2})["id"].(string)
	u := e.must(t, 201, "POST", "/api/whitelist/systems/"+sys+"/users", dev, map[string]any{"robloxUserId": 42, "robloxUsername": "builder_42"})
	license, _ := u["licenseKey"].(string)
	if !strings.HasPrefix(license, "VB-") {
		t.Fatalf("create response licenseKey = %q", license)
	}
	entry := u["id"].(string)
	got := e.must(t, 200, "GET", "/api/whitelist/systems/"+sys+"/users/"+entry, dev, nil)
	if _, ok := got["licenseKey"]; ok {
		t.Fatal("GET shows the license key again")
	}
	if r := e.call(t, "POST", "/api/whitelist/systems/"+sys+"/users", dev, map[string]any{"robloxUserId": 42}); r.Status != 409 {
		t.Fatalf("duplicate player = %d, want 409", r.Status)
	}
	e.must(t, 201, "POST", "/api/whitelist/systems/"+sys+"/users", dev, map[string]any{"robloxUserId": 43})
	if r := e.call(t, "POST", "/api/whitelist/systems/"+sys+"/users", dev, map[string]any{"robloxUserId": 44}); r.Status != 409 {
		t.Fatalf("past maxUsers = %d, want 409", r.Status)
	}

	kb := e.must(t, 201, "POST", "/api/developer/keys", dev, map[string]any{"name": "server", "scopes": []string{"whitelist:read"}, "rateLimitPerMinute": 1000})
	key := kb["key"].(string)
	if len(key) != 51 || !strings.HasPrefix(key, "vb_live_") || kb["prefix"] != key[:12] {
		t.Fatalf("key of %d characters, prefix %v", len(key), kb["prefix"])
	}
	list := e.must(t, 200, "GET", "/api/developer/keys", dev, nil)
	if strings.Contains(string(e.call(t, "GET", "/api/developer/keys", dev, nil).Raw), key) {
		t.Fatal("key list shows the key")
	}
	if n := len(list["items"].([]any)); n != 1 {
		t.Fatalf("key list has %d items", n)
	}

	check := func(body map[string]any) map[string]any {
		return e.must(t, 200, "POST", "/api/whitelist/check", "key:"+key, body)
	}
	if r := check(map[string]any{"systemId": sys, "robloxUserId": 42}); r["whitelisted"] != true {
		t.Fatalf("check by system = %v", r)
	}
	if r := check(map[string]any{"licenseKey": strings.ToLower(license)}); r["whitelisted"] != true {
		t.Fatalf("check by license key = %v", r)
	}
	if r := check(map[string]any{"systemId": sys, "robloxUserId": 7}); r["whitelisted"] != false {
		t.Fatalf("check of unknown player = %v", r)
	}
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	e.must(t, 200, "PATCH", "/api/whitelist/systems/"+sys+"/users/"+entry, dev, map[string]any{"expiresAt": past})
	if r := check(map[string]any{"licenseKey": license}); r["whitelisted"] != false || r["expiresAt"] == nil {
		t.Fatalf("check of expired entry = %v", r)
	}

	// Another developer's key sees nothing of this developer's systems.
	other := e.user(t)
	_, okey := e.newKey(t, other, 100, "whitelist:read")
	e.must(t, 200, "PATCH", "/api/whitelist/systems/"+sys+"/users/"+entry, dev, map[string]any{"expiresAt": nil})
	if r := e.must(t, 200, "POST", "/api/whitelist/check", "key:"+okey, map[string]any{"licenseKey": license}); r["whitelisted"] != false {
		t.Fatalf("other developer's check = %v", r)
	}
	// A key without the scope is refused.
	_, noscope := e.newKey(t, dev, 100)
	if r := e.call(t, "POST", "/api/whitelist/check", "key:"+noscope, map[string]any{"licenseKey": license}); r.Status != 403 {
		t.Fatalf("check without scope = %d, want 403", r.Status)
	}

	v := e.must(t, 200, "POST", "/api/developer/verify", "key:"+key, map[string]any{})
	rl := v["rateLimit"].(map[string]any)
	if v["valid"] != true || v["keyId"] != kb["id"] || v["developerId"] != dev || rl["limit"].(float64) != 1000 {
		t.Fatalf("verify = %v", v)
	}
	e.must(t, 204, "DELETE", "/api/developer/keys/"+kb["id"].(string), dev, nil)
	if r := e.call(t, "POST", "/api/developer/verify", "key:"+key, map[string]any{}); r.Status != 401 {
		t.Fatalf("verify after revoke = %d, want 401", r.Status)
	}
	// Neither keys nor license keys reach the logs.
	if logs := e.logs.String(); strings.Contains(logs, key) || strings.Contains(logs, license) {
		t.Fatal("a key appears in the logs")
	}
}

// TestRevocationIsImmediateOnEveryInstance revokes a key through one
// instance and uses it at once through another: nothing caches keys.
func TestRevocationIsImmediateOnEveryInstance(t *testing.T) {
	t.Parallel()
	url, kek := pgtest.URL(t), newKEKFile(t)
	dbA, dbB := pgtest.Open(t, url), pgtest.Open(t, url)
	a := newInstance(t, dbA, openKeyring(t, dbA, kek))
	b := newInstance(t, dbB, openKeyring(t, dbB, kek))
	defer a.close(t)
	defer b.close(t)
	dev := a.user(t)
	id, key := a.newKey(t, dev, 100)
	b.must(t, 200, "POST", "/api/developer/verify", "key:"+key, nil)
	a.must(t, 204, "DELETE", "/api/developer/keys/"+id, dev, nil)
	if r := b.call(t, "POST", "/api/developer/verify", "key:"+key, nil); r.Status != 401 || r.Body["error"] != "UNAUTHORIZED" {
		t.Fatalf("verify on the other instance right after revoke = %d %s, want 401", r.Status, r.Raw)
	}
	if r := a.call(t, "DELETE", "/api/developer/keys/"+id, dev, nil); r.Status != 404 {
		t.Fatalf("second revoke = %d, want 404", r.Status)
	}
}

// TestMetricsCarryNoSecrets scrapes the registry after key and whitelist
// traffic: no key, license key or key hash prefix appears in it.
func TestMetricsCarryNoSecrets(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dev := e.user(t)
	_, key := e.newKey(t, dev, 1, "whitelist:read")
	sys := e.must(t, 201, "POST", "/api/whitelist/systems", dev, map[string]any{"name": "s"})["id"].(string)
	lic := e.must(t, 201, "POST", "/api/whitelist/systems/"+sys+"/users", dev, map[string]any{"robloxUserId": 9})["licenseKey"].(string)
	e.call(t, "POST", "/api/whitelist/check", "key:"+key, map[string]any{"licenseKey": lic})
	e.call(t, "POST", "/api/whitelist/check", "key:"+key, map[string]any{"licenseKey": lic}) // 429
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, mf := range mfs {
		text.WriteString(mf.String())
	}
	if s := text.String(); strings.Contains(s, key) || strings.Contains(s, key[8:20]) || strings.Contains(s, lic) {
		t.Fatal("metrics hold a key or license key")
	}
	if !strings.Contains(text.String(), "vectabase_ratelimit_rejected_total") {
		t.Fatal("vectabase_ratelimit_rejected_total is not registered")
	}
}

// TestLenientInput covers what callers commonly send: a store without a
// slug (made from the name, unique), Roblox ids as strings.
func TestLenientInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.user(t)
	s1 := e.must(t, 201, "POST", "/api/stores", u, map[string]any{"name": "My Cool Shop!"})
	s2 := e.must(t, 201, "POST", "/api/stores", u, map[string]any{"name": "My Cool Shop!"})
	if s1["slug"] != "my-cool-shop" || !strings.HasPrefix(s2["slug"].(string), "my-cool-shop-") {
		t.Fatalf("derived slugs = %v, %v", s1["slug"], s2["slug"])
	}
	if got := e.must(t, 201, "POST", "/api/stores", u, map[string]any{"name": "???"})["slug"]; got != "store" {
		t.Fatalf("slug of a name without letters = %v", got)
	}
	sys := e.must(t, 201, "POST", "/api/whitelist/systems", u, map[string]any{"name": "s"})["id"].(string)
	e.must(t, 201, "POST", "/api/whitelist/systems/"+sys+"/users", u, `{"robloxUserId":"123456789"}`)
	_, key := e.newKey(t, u, 100, "whitelist:read")
	if r := e.must(t, 200, "POST", "/api/whitelist/check", "key:"+key, `{"systemId":"`+sys+`","robloxUserId":"123456789"}`); r["whitelisted"] != true {
		t.Fatalf("check with a string id = %v", r)
	}
	if r := e.call(t, "POST", "/api/whitelist/check", "key:"+key, `{"systemId":"`+sys+`","robloxUserId":"12x"}`); r.Status != 400 || !strings.Contains(r.Body["message"].(string), "robloxUserId") {
		t.Fatalf("check with a malformed id = %d %s", r.Status, r.Raw)
	}
}

// TestStripeAccountIsMasked stores a Stripe account id the way the Stripe
// area does (encrypted) and checks the store shows only its last four.
func TestStripeAccountIsMasked(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.user(t)
	id := e.must(t, 201, "POST", "/api/stores", u, map[string]any{"name": "Stripe"})["id"].(string)
	ctx := context.Background()
	const acct = "acct_1Nv0FGQ9RKHgCVdK"
	ct, err := e.kr.Encrypt(ctx, keyring.Location{Table: "stores", Column: "stripe_account_id", RowID: id}, []byte(acct))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Pool.Exec(ctx, `UPDATE stores SET stripe_account_id = $1 WHERE id = $2`, ct, id); err != nil {
		t.Fatal(err)
	}
	r := e.call(t, "GET", "/api/stores/"+id, u, nil)
	if r.Body["stripeAccountId"] != "acct_****CVdK" || strings.Contains(string(r.Raw), acct) {
		t.Fatalf("store shows %s", r.Raw)
	}
}
