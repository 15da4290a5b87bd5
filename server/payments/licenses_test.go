package payments_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/server/marketplace"
	"github.com/vectabase/vectabase/server/payments"
	"github.com/vectabase/vectabase/store"
)

// auditLog records audit events in memory.
type auditLog struct {
	mu  sync.Mutex
	evs []vectabase.AuditEvent
}

func (a *auditLog) Record(_ context.Context, ev vectabase.AuditEvent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.evs = append(a.evs, ev)
	return nil
}

func (a *auditLog) actions(resourceID string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, ev := range a.evs {
		if ev.ResourceID == resourceID {
			out = append(out, ev.Action)
		}
	}
	return out
}

// licEnv is an env with the marketplace mounted beside the Stripe area (for
// the whitelist check and /api/me/licenses), an in-memory auditor, and a
// shop whose product licenses a whitelist system.
type licEnv struct {
	*env
	shop
	audit  *auditLog
	system string
	apiKey string // the shop owner's key with whitelist:read
}

func newLicEnv(t testing.TB, cfg payments.Config) *licEnv {
	t.Helper()
	e := newEnv(t, cfg, nil)
	aud := &auditLog{}
	e.svc.SetAuditor(aud)
	mk := marketplace.New(e.db, e.kr, aud, marketplace.Config{RequestLogBuffer: 1024, RequestLogBatch: 100, RequestLogFlush: 50 * time.Millisecond}, zerolog.Nop(), nil)
	t.Cleanup(func() { _ = mk.Close(context.Background()) })
	e.srv.Mount(mk.Routes(marketplace.Auth{RequireUser: e.auth.RequireUser(), OptionalUser: e.auth.OptionalUser(), UserID: auth.UserID}))
	le := &licEnv{env: e, shop: newShopTB(t, e), audit: aud}
	ctx := context.Background()
	name := "Loader"
	sys, err := e.market.CreateWhitelistSystem(ctx, le.owner, store.WhitelistSystemFields{Name: &name})
	if err != nil {
		t.Fatalf("CreateWhitelistSystem err = %v", err)
	}
	le.system = sys.ID
	if r := le.call(t, "PATCH", "/api/products/"+le.shop.product, le.owner, map[string]any{"whitelistSystemId": sys.ID}); r.Status != 200 || r.Body["whitelistSystemId"] != sys.ID {
		t.Fatalf("link the product to the system = %d %s", r.Status, r.Raw)
	}
	k, err := mk.CreateAPIKey(ctx, le.owner, marketplace.APIKeyInput{Name: &name, Scopes: []string{marketplace.ScopeWLRead}, RateLimitPerMinute: ptr(1_000_000)})
	if err != nil {
		t.Fatalf("CreateAPIKey err = %v", err)
	}
	le.apiKey = k.Key
	return le
}

func ptr[T any](v T) *T { return &v }

// keySealed reports whether the license sale saleID issued has its key
// sealed under a personal key (its keyring layer is the inner ciphertext)
// rather than encrypted by the keyring alone.
func (e *licEnv) keySealed(t fataler, saleID string) bool {
	var id string
	var ct []byte
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT id, license_key FROM whitelist_users WHERE sale_id = $1`, saleID).Scan(&id, &ct); err != nil {
		t.Fatalf("the sale's license: %v", err)
	}
	inner, err := e.kr.Decrypt(context.Background(), keyring.Location{Table: "whitelist_users", Column: "license_key", RowID: id}, ct)
	if err != nil {
		t.Fatalf("Decrypt(license_key) err = %v, want nil", err)
	}
	return keyring.IsPersonallySealed(inner)
}

// check asks /api/whitelist/check with the shop owner's API key.
func (e *licEnv) check(t fataler, body map[string]any) resp {
	t.Helper()
	raw := string(mustJSON(t, body))
	req := httptest.NewRequest("POST", "/api/whitelist/check", strings.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", e.apiKey)
	r := e.do(t, req)
	if r.Status != 200 {
		t.Fatalf("check %s = %d %s, want 200", raw, r.Status, r.Raw)
	}
	return r
}

func mustJSON(t fataler, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}

// myLicenses returns the buyer's licenses as /api/me/licenses shows them.
func (e *licEnv) myLicenses(t fataler, who string) []map[string]any {
	t.Helper()
	r := e.call(t, "GET", "/api/me/licenses", who, nil)
	if r.Status != 200 {
		t.Fatalf("/api/me/licenses = %d %s", r.Status, r.Raw)
	}
	items, _ := r.Body["items"].([]any)
	out := make([]map[string]any, 0, len(items))
	for _, it := range items {
		out = append(out, it.(map[string]any))
	}
	return out
}

// deliverOK signs and delivers payload and fails unless it is answered 200.
func (e *licEnv) deliverOK(t fataler, payload []byte) string {
	t.Helper()
	r := e.deliver(t, payload, sign(payload, testWebhookSecret, time.Now()))
	if r.Status != 200 {
		t.Fatalf("webhook = %d %s, want 200", r.Status, r.Raw)
	}
	res, _ := r.Body["result"].(string)
	return res
}

func (e *licEnv) licenses(t fataler, where string, args ...any) int {
	t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM licenses WHERE `+where, args...).Scan(&n); err != nil {
		t.Fatalf("count licenses: %v", err)
	}
	return n
}

func charge(pi string, amount, refunded int64) map[string]any {
	return map[string]any{"id": newID("ch_"), "object": "charge", "amount": amount, "amount_refunded": refunded,
		"refunded": refunded >= amount, "currency": "usd", "payment_intent": pi}
}

// A purchase of a product linked to a whitelist system gives its buyer a
// license in that system: the buyer sees it with its key, the shop owner's
// game server's check accepts it by key and by player, and its issue is
// audited without the key. A full refund revokes it before the webhook
// answers.
func TestPurchaseIssuesALicenseAndAFullRefundRevokesIt(t *testing.T) {
	t.Parallel()
	e := newLicEnv(t, configWithSecret())
	sess, pi := newID("cs_test_"), newID("pi_")
	if got := e.deliverOK(t, event(t, newID("evt_"), "checkout.session.completed", e.session(sess, pi))); got != "processed" {
		t.Fatalf("checkout result = %s", got)
	}
	mine := e.myLicenses(t, e.buyer)
	if len(mine) != 1 {
		t.Fatalf("buyer's licenses = %v, want 1", mine)
	}
	l := mine[0]
	key, _ := l["licenseKey"].(string)
	if !strings.HasPrefix(key, "VB-") || l["kind"] != "system" || l["systemId"] != e.system || l["status"] != "active" || l["robloxUserId"] != float64(987654) {
		t.Fatalf("license = %v, want an active system license with a VB- key for player 987654", l)
	}
	if other := e.myLicenses(t, e.owner); len(other) != 0 {
		t.Fatalf("the shop owner sees %d licenses at /api/me/licenses, want none (they bought nothing)", len(other))
	}
	// The signed-in buyer's key is theirs: sealed under their personal key.
	if sale, _ := l["saleId"].(string); !e.keySealed(t, sale) {
		t.Error("the buyer's license key is keyring-only, want it sealed under the buyer's key")
	}
	for _, body := range []map[string]any{
		{"licenseKey": key},
		{"licenseKey": strings.ToLower(key)},
		{"systemId": e.system, "robloxUserId": 987654},
	} {
		if r := e.check(t, body); r.Body["whitelisted"] != true {
			t.Fatalf("check %v = %s, want whitelisted", body, r.Raw)
		}
	}
	id := l["id"].(string)
	if got := e.audit.actions(id); len(got) != 1 || got[0] != "license.issued" {
		t.Fatalf("audit of the license = %v, want [license.issued]", got)
	}
	e.audit.mu.Lock()
	for _, ev := range e.audit.evs {
		if strings.Contains(fmt.Sprint(ev), key) {
			t.Errorf("an audit event holds the license key: %+v", ev)
		}
	}
	e.audit.mu.Unlock()
	if strings.Contains(e.logs.String(), key) {
		t.Fatal("the logs hold the license key")
	}

	// A partial refund keeps the license.
	if got := e.deliverOK(t, event(t, newID("evt_"), "charge.refunded", charge(pi, 2500, 1000))); got != "processed" {
		t.Fatalf("partial refund result = %s", got)
	}
	if r := e.check(t, map[string]any{"licenseKey": key}); r.Body["whitelisted"] != true {
		t.Fatalf("after a partial refund check = %s, want whitelisted", r.Raw)
	}
	// The full refund revokes it before the webhook's answer.
	if got := e.deliverOK(t, event(t, newID("evt_"), "charge.refunded", charge(pi, 2500, 2500))); got != "processed" {
		t.Fatalf("full refund result = %s", got)
	}
	for _, body := range []map[string]any{{"licenseKey": key}, {"systemId": e.system, "robloxUserId": 987654}} {
		if r := e.check(t, body); r.Body["whitelisted"] != false || r.Body["reason"] != "revoked" {
			t.Fatalf("after a full refund check %v = %s, want whitelisted false, reason revoked", body, r.Raw)
		}
	}
	if got := e.audit.actions(id); len(got) != 2 || got[1] != "license.revoked" {
		t.Fatalf("audit of the license = %v, want issued then revoked", got)
	}
	if mine := e.myLicenses(t, e.buyer); mine[0]["status"] != "revoked" || mine[0]["revokedReason"] != "refund" {
		t.Fatalf("buyer's license after the refund = %v", mine[0])
	}
}

// A dispute revokes the license at once; a charge.refunded whose
// amount_refunded equals the amount is a full refund even when Stripe's
// refunded flag is missing.
func TestDisputeRevokesTheLicense(t *testing.T) {
	t.Parallel()
	e := newLicEnv(t, configWithSecret())
	sess, pi := newID("cs_test_"), newID("pi_")
	e.deliverOK(t, event(t, newID("evt_"), "checkout.session.completed", e.session(sess, pi)))
	if r := e.check(t, map[string]any{"systemId": e.system, "robloxUserId": 987654}); r.Body["whitelisted"] != true {
		t.Fatalf("check = %s, want whitelisted", r.Raw)
	}
	dispute := map[string]any{"id": newID("dp_"), "object": "dispute", "amount": 2500, "currency": "usd",
		"charge": newID("ch_"), "payment_intent": pi, "reason": "fraudulent", "status": "needs_response"}
	evt := event(t, newID("evt_"), "charge.dispute.created", dispute)
	if got := e.deliverOK(t, evt); got != "processed" {
		t.Fatalf("dispute result = %s", got)
	}
	if got := e.deliverOK(t, evt); got != "duplicate" {
		t.Fatalf("dispute redelivery result = %s", got)
	}
	if r := e.check(t, map[string]any{"systemId": e.system, "robloxUserId": 987654}); r.Body["whitelisted"] != false || r.Body["reason"] != "revoked" {
		t.Fatalf("after a dispute check = %s, want revoked", r.Raw)
	}
	if n := e.licenses(t, `status = 'revoked' AND revoked_reason = 'dispute'`); n != 1 {
		t.Fatalf("licenses revoked by the dispute = %d, want 1", n)
	}
	var status string
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT status FROM sales WHERE store_id = $1`, e.store).Scan(&status); err != nil || status != "disputed" {
		t.Fatalf("sale status = %q (%v), want disputed", status, err)
	}

	// Another sale, refunded in full with only the amounts to tell.
	sess2, pi2 := newID("cs_test_"), newID("pi_")
	s2 := e.session(sess2, pi2)
	s2["metadata"].(map[string]any)["vectabase_roblox_user_id"] = "555"
	e.deliverOK(t, event(t, newID("evt_"), "checkout.session.completed", s2))
	ch := charge(pi2, 2500, 2500)
	delete(ch, "refunded")
	e.deliverOK(t, event(t, newID("evt_"), "charge.refunded", ch))
	if r := e.check(t, map[string]any{"systemId": e.system, "robloxUserId": 555}); r.Body["whitelisted"] != false {
		t.Fatalf("after amount_refunded == amount check = %s, want false", r.Raw)
	}
}

// However often and however concurrently Stripe delivers a completed
// checkout (the same event again, or another event for the same session),
// the sale issues one license.
func TestConcurrentDeliveriesIssueOneLicense(t *testing.T) {
	t.Parallel()
	e := newLicEnv(t, configWithSecret())
	sess, pi := newID("cs_test_"), newID("pi_")
	same := event(t, newID("evt_"), "checkout.session.completed", e.session(sess, pi))
	var wg sync.WaitGroup
	results := make(chan string, 16)
	for i := range 16 {
		payload := same
		if i%4 == 0 {
			// The Connect endpoint's copy: another event id, same session.
			payload = event(t, newID("evt_"), "checkout.session.completed", e.session(sess, pi))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.deliver(t, payload, sign(payload, testWebhookSecret, time.Now()))
			if r.Status != 200 {
				t.Errorf("delivery = %d %s", r.Status, r.Raw)
			}
			res, _ := r.Body["result"].(string)
			results <- res
		}()
	}
	wg.Wait()
	close(results)
	processed := 0
	for r := range results {
		if r == "processed" {
			processed++
		}
	}
	if processed != 1 {
		t.Fatalf("deliveries processed = %d, want exactly 1", processed)
	}
	if n := e.licenses(t, `buyer_id = $1`, e.buyer); n != 1 {
		t.Fatalf("licenses = %d after 16 concurrent deliveries, want 1", n)
	}
	if n := e.count(t, `SELECT count(*) FROM sales`); n != 1 {
		t.Fatalf("sales = %d, want 1", n)
	}
}

// A checkout paid by a delayed method completes unpaid: no license until
// checkout.session.async_payment_succeeded, which issues it once.
func TestAsyncPaymentIssuesTheLicenseWhenItSettles(t *testing.T) {
	t.Parallel()
	e := newLicEnv(t, configWithSecret())
	sess, pi := newID("cs_test_"), newID("pi_")
	unpaid := e.session(sess, pi)
	unpaid["payment_status"] = "unpaid"
	e.deliverOK(t, event(t, newID("evt_"), "checkout.session.completed", unpaid))
	if n := e.licenses(t, `true`); n != 0 {
		t.Fatalf("licenses while unpaid = %d, want 0", n)
	}
	if r := e.check(t, map[string]any{"systemId": e.system, "robloxUserId": 987654}); r.Body["whitelisted"] != false || r.Body["reason"] != "not_found" {
		t.Fatalf("check while unpaid = %s, want not_found", r.Raw)
	}
	settled := event(t, newID("evt_"), "checkout.session.async_payment_succeeded", e.session(sess, pi))
	if got := e.deliverOK(t, settled); got != "processed" {
		t.Fatalf("settlement result = %s", got)
	}
	e.deliverOK(t, settled)
	if n := e.licenses(t, `buyer_id = $1 AND status = 'active'`, e.buyer); n != 1 {
		t.Fatalf("licenses after settlement = %d, want 1", n)
	}
	if r := e.check(t, map[string]any{"systemId": e.system, "robloxUserId": 987654}); r.Body["whitelisted"] != true {
		t.Fatalf("check after settlement = %s, want whitelisted", r.Raw)
	}
}

// An anonymous buyer gets the key once, on the success page's look-up by
// Checkout Session id; the next look-up shows the license without it. An
// unknown session is 404.
func TestCheckoutLookupRevealsTheKeyOnce(t *testing.T) {
	t.Parallel()
	e := newLicEnv(t, configWithSecret())
	sess, pi := newID("cs_test_"), newID("pi_")
	anon := e.session(sess, pi)
	delete(anon["metadata"].(map[string]any), "vectabase_buyer_id")
	anon["metadata"].(map[string]any)["vectabase_discord_id"] = "123456789012345678"
	e.deliverOK(t, event(t, newID("evt_"), "checkout.session.completed", anon))

	first := e.call(t, "GET", "/api/stripe/checkout/"+sess, "", nil)
	if first.Status != 200 {
		t.Fatalf("first look-up = %d %s", first.Status, first.Raw)
	}
	lic, _ := first.Body["license"].(map[string]any)
	key, _ := lic["licenseKey"].(string)
	if first.Body["status"] != "completed" || !strings.HasPrefix(key, "VB-") {
		t.Fatalf("first look-up = %s, want the completed sale and its key", first.Raw)
	}
	second := e.call(t, "GET", "/api/stripe/checkout/"+sess, "", nil)
	if lic2, _ := second.Body["license"].(map[string]any); second.Status != 200 || lic2 == nil || lic2["licenseKey"] != nil {
		t.Fatalf("second look-up = %d %s, want the license without its key", second.Status, second.Raw)
	}
	if r := e.check(t, map[string]any{"licenseKey": key}); r.Body["whitelisted"] != true {
		t.Fatalf("check of the revealed key = %s", r.Raw)
	}
	if got := e.audit.actions(lic["id"].(string)); len(got) != 2 || got[1] != "license.key_revealed" {
		t.Fatalf("audit of the license = %v, want issued then key_revealed", got)
	}
	var discord *string
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT discord_id FROM licenses WHERE id = $1`, lic["id"]).Scan(&discord); err != nil ||
		discord == nil || *discord != "123456789012345678" {
		t.Fatalf("license discord_id = %v (%v), want the buyer's", discord, err)
	}
	checkErrorBody(t, "unknown session", e.call(t, "GET", "/api/stripe/checkout/"+newID("cs_test_"), "", nil), 404, "NOT_FOUND")
	checkErrorBody(t, "junk session", e.call(t, "GET", "/api/stripe/checkout/%00%01", "", nil), 404, "NOT_FOUND")
}

// A product links only to its owner's whitelist system or developer
// product, never both; checkout of a licensed product needs the Roblox
// user the license is for, and carries it and the Discord id in the
// session's metadata.
func TestProductLinksAndCheckoutOfALicensedProduct(t *testing.T) {
	t.Parallel()
	e, rec := mockEnv(t)
	aud := &auditLog{}
	e.svc.SetAuditor(aud)
	mk := marketplace.New(e.db, e.kr, aud, marketplace.Config{RequestLogBuffer: 1024, RequestLogBatch: 100, RequestLogFlush: 50 * time.Millisecond}, zerolog.Nop(), nil)
	t.Cleanup(func() { _ = mk.Close(context.Background()) })
	e.srv.Mount(mk.Routes(marketplace.Auth{RequireUser: e.auth.RequireUser(), OptionalUser: e.auth.OptionalUser(), UserID: auth.UserID}))
	s := newShopTB(t, e)
	ctx := context.Background()
	name := "sys"
	mine, err := e.market.CreateWhitelistSystem(ctx, s.owner, store.WhitelistSystemFields{Name: &name})
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := e.market.CreateWhitelistSystem(ctx, s.buyer, store.WhitelistSystemFields{Name: &name})
	if err != nil {
		t.Fatal(err)
	}
	var devProduct string
	if err := e.db.Pool.QueryRow(ctx, `INSERT INTO developer_products (developer_id, name) VALUES ($1, 'loader') RETURNING id`, s.owner).Scan(&devProduct); err != nil {
		t.Fatal(err)
	}
	path := "/api/products/" + s.product
	checkErrorBody(t, "another's system", e.call(t, "PATCH", path, s.owner, map[string]any{"whitelistSystemId": theirs.ID}), 404, "NOT_FOUND")
	checkErrorBody(t, "both targets", e.call(t, "PATCH", path, s.owner, map[string]any{"whitelistSystemId": mine.ID, "developerProductId": devProduct}), 400, "VALIDATION_FAILED")
	checkErrorBody(t, "bad id", e.call(t, "PATCH", path, s.owner, map[string]any{"developerProductId": "nope"}), 400, "VALIDATION_FAILED")
	if r := e.call(t, "PATCH", path, s.owner, map[string]any{"whitelistSystemId": mine.ID}); r.Status != 200 || r.Body["whitelistSystemId"] != mine.ID {
		t.Fatalf("link system = %d %s", r.Status, r.Raw)
	}
	// Setting the other target replaces the first; null clears it.
	if r := e.call(t, "PATCH", path, s.owner, map[string]any{"developerProductId": devProduct}); r.Status != 200 ||
		r.Body["developerProductId"] != devProduct || r.Body["whitelistSystemId"] != nil {
		t.Fatalf("switch to the developer product = %d %s", r.Status, r.Raw)
	}

	body := map[string]any{"productId": s.product, "successUrl": "https://shop.example/ok", "cancelUrl": "https://shop.example/no"}
	checkErrorBody(t, "no roblox user", e.call(t, "POST", "/api/stripe/checkout", "", body), 400, "VALIDATION_FAILED")
	body["robloxUserId"] = 4242
	body["discordId"] = "not-a-snowflake"
	checkErrorBody(t, "bad discord id", e.call(t, "POST", "/api/stripe/checkout", "", body), 400, "VALIDATION_FAILED")
	body["discordId"] = "123456789012345678"
	if r := e.call(t, "POST", "/api/stripe/checkout", "", body); r.Status != 200 {
		t.Fatalf("checkout = %d %s", r.Status, r.Raw)
	}
	sent := rec.requests("POST", "/v1/checkout/sessions")
	if len(sent) != 1 || sent[0].Form.Get("metadata[vectabase_roblox_user_id]") != "4242" ||
		sent[0].Form.Get("metadata[vectabase_discord_id]") != "123456789012345678" {
		t.Fatalf("checkout metadata = %v", sent)
	}

	// The developer product's license: the webhook issues it there, and a
	// check by productId finds it.
	sess, pi := newID("cs_test_"), newID("pi_")
	payload := event(t, newID("evt_"), "checkout.session.completed", s.session(sess, pi))
	if r := e.deliver(t, payload, sign(payload, testWebhookSecret, time.Now())); r.Status != 200 {
		t.Fatalf("webhook = %d %s", r.Status, r.Raw)
	}
	var kind string
	var product *string
	if err := e.db.Pool.QueryRow(ctx, `SELECT kind, developer_product_id::text FROM licenses WHERE buyer_id = $1`, s.buyer).Scan(&kind, &product); err != nil ||
		kind != "product" || product == nil || *product != devProduct {
		t.Fatalf("license = %s %v (%v), want one of the developer product", kind, product, err)
	}
}

// TestProperty23_EachPaidSessionIssuesOneLicenseAndOnlyAFullRefundRevokesIt
// claims: for generated interleavings of deliveries (completed checkouts,
// redeliveries and copies under other event ids, partial and full refunds,
// some sent concurrently), every paid session has exactly one license, and
// it is revoked exactly when a full refund of it was delivered. 100 runs.
func TestProperty23_EachPaidSessionIssuesOneLicenseAndOnlyAFullRefundRevokesIt(t *testing.T) {
	t.Parallel()
	e := newLicEnv(t, configWithSecret())
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(1, 3).Draw(rt, "sessions")
		type sale struct{ sess, pi string }
		sales := make([]sale, n)
		for i := range sales {
			sales[i] = sale{newID("cs_test_"), newID("pi_")}
		}
		var events [][]byte
		paid := map[int]bool{}
		fullRefund := map[int]bool{}
		steps := rapid.IntRange(1, 8).Draw(rt, "steps")
		firsts := map[int][]byte{}
		for range steps {
			i := rapid.IntRange(0, n-1).Draw(rt, "sale")
			switch rapid.SampledFrom([]string{"checkout", "redeliver", "copy", "partial", "full"}).Draw(rt, "kind") {
			case "checkout", "copy":
				p := event(rt, newID("evt_"), "checkout.session.completed", e.session(sales[i].sess, sales[i].pi))
				if firsts[i] == nil {
					firsts[i] = p
				}
				events, paid[i] = append(events, p), true
			case "redeliver":
				if firsts[i] != nil {
					events = append(events, firsts[i])
				}
			case "partial":
				events = append(events, event(rt, newID("evt_"), "charge.refunded", charge(sales[i].pi, 2500, 100)))
			case "full":
				events = append(events, event(rt, newID("evt_"), "charge.refunded", charge(sales[i].pi, 2500, 2500)))
				fullRefund[i] = true
			}
		}
		// Checkouts go concurrently, refunds after them in order, so the
		// expected revocation is well defined.
		var wg sync.WaitGroup
		var refunds [][]byte
		for _, p := range events {
			if strings.Contains(string(p), "charge.refunded") {
				refunds = append(refunds, p)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if r := e.deliver(rt, p, sign(p, testWebhookSecret, time.Now())); r.Status != 200 {
					rt.Errorf("delivery = %d %s", r.Status, r.Raw)
				}
			}()
		}
		wg.Wait()
		for _, p := range refunds {
			e.deliverOK(rt, p)
		}
		for i, s := range sales {
			hash, err := e.pay.SessionHash(s.sess)
			if err != nil {
				rt.Fatal(err)
			}
			var total, revoked int
			if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*), count(*) FILTER (WHERE l.status = 'revoked')
				FROM licenses l JOIN sales s ON s.id = l.sale_id WHERE s.stripe_session_hash = $1`, hash).Scan(&total, &revoked); err != nil {
				rt.Fatal(err)
			}
			want := 0
			if paid[i] {
				want = 1
			}
			if total != want {
				rt.Fatalf("session %d: %d licenses, want %d", i, total, want)
			}
			// Every checkout is delivered before any refund, so a full
			// refund of a paid session always finds its sale.
			wantRevoked := 0
			if paid[i] && fullRefund[i] {
				wantRevoked = 1
			}
			if revoked != wantRevoked {
				rt.Fatalf("session %d: %d revoked licenses, want %d (full refund delivered: %v)", i, revoked, wantRevoked, fullRefund[i])
			}
		}
	})
}

// FuzzCheckoutLookup throws arbitrary session ids at the success page's
// look-up: any answer but 200 or a contract 404 fails, and no key is ever
// shown for a session that paid for nothing.
func FuzzCheckoutLookup(f *testing.F) {
	e := newLicEnv(f, configWithSecret())
	sess := newID("cs_test_")
	payload := event(f, newID("evt_"), "checkout.session.completed", e.session(sess, newID("pi_")))
	e.deliverOK(f, payload)
	for _, s := range []string{sess, "cs_test_x", "", "%00", "..", strings.Repeat("c", 300), "cs_test_ü", sess + " "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		r := e.call(t, "GET", "/api/stripe/checkout/"+url.PathEscape(id), "", nil)
		switch {
		case r.Status == 200 && id == sess:
		case r.Status == 404 && r.Body["error"] == "NOT_FOUND" && r.Body["requestId"] != nil:
		case r.Status == 404 && r.Raw != nil && id == "":
			// "/api/stripe/checkout/" is another route's path: the app's 404.
		default:
			t.Fatalf("GET /api/stripe/checkout/%q = %d %s", id, r.Status, r.Raw)
		}
	})
}

// The license a purchase issues is announced on the realtime channel on
// the whitelist topic, routed to its buyer, without its key; so is its
// revocation.
func TestIssuedLicenseIsAnnouncedToItsBuyer(t *testing.T) {
	t.Parallel()
	e := newLicEnv(t, configWithSecret())
	ctx := context.Background()
	conn, err := e.db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN vectabase_changes"); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(context.Background(), "UNLISTEN *")
	sess, pi := newID("cs_test_"), newID("pi_")
	e.deliverOK(t, event(t, newID("evt_"), "checkout.session.completed", e.session(sess, pi)))
	e.deliverOK(t, event(t, newID("evt_"), "charge.refunded", charge(pi, 2500, 2500)))
	key := e.myLicenses(t, e.buyer)[0]["licenseKey"].(string)
	var actions []string
	for len(actions) < 2 {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		n, err := conn.Conn().WaitForNotification(wctx)
		cancel()
		if err != nil {
			t.Fatalf("waiting for the license's announcements (got %v): %v", actions, err)
		}
		var p struct {
			Topic, Table, Action, BuyerID string
			Record                        map[string]any
		}
		if err := json.Unmarshal([]byte(n.Payload), &p); err != nil {
			t.Fatal(err)
		}
		if p.Table != "whitelist_users" {
			continue
		}
		if strings.Contains(n.Payload, key) {
			t.Fatalf("the announcement holds the license key: %s", n.Payload)
		}
		if p.Topic != "whitelist" || p.BuyerID != e.buyer {
			t.Fatalf("announcement = %s, want the whitelist topic routed to the buyer", n.Payload)
		}
		actions = append(actions, p.Action+":"+fmt.Sprint(p.Record["status"]))
	}
	if actions[0] != "insert:active" || actions[1] != "update:revoked" {
		t.Fatalf("announcements = %v, want the insert and the revocation", actions)
	}
}

// GET /api/stores/:id/stats counts, per UTC day, the paid sales, their
// revenue per currency, refund and dispute events and the licenses issued,
// for the store's owner only.
func TestStoreStatsCountByDay(t *testing.T) {
	t.Parallel()
	e := newLicEnv(t, configWithSecret())
	started := time.Now().UTC().Format("2006-01-02")
	pis := []string{newID("pi_"), newID("pi_"), newID("pi_")}
	for i, pi := range pis {
		s := e.session(newID("cs_test_"), pi)
		s["metadata"].(map[string]any)["vectabase_roblox_user_id"] = fmt.Sprint(100 + i)
		e.deliverOK(t, event(t, newID("evt_"), "checkout.session.completed", s))
	}
	unpaid := e.session(newID("cs_test_"), newID("pi_"))
	unpaid["payment_status"] = "unpaid"
	e.deliverOK(t, event(t, newID("evt_"), "checkout.session.completed", unpaid))
	e.deliverOK(t, event(t, newID("evt_"), "charge.refunded", charge(pis[0], 2500, 500)))
	e.deliverOK(t, event(t, newID("evt_"), "charge.dispute.created", map[string]any{"id": newID("dp_"), "object": "dispute",
		"amount": 2500, "currency": "usd", "payment_intent": pis[1]}))

	today := time.Now().UTC().Format("2006-01-02")
	if today != started {
		t.Skip("the test crossed midnight UTC: its rows are on two days")
	}
	yesterday := time.Now().UTC().AddDate(0, 0, -1).Format("2006-01-02")
	r := e.call(t, "GET", "/api/stores/"+e.store+"/stats?from="+yesterday+"&to="+today, e.owner, nil)
	if r.Status != 200 {
		t.Fatalf("stats = %d %s", r.Status, r.Raw)
	}
	days, _ := r.Body["days"].([]any)
	if len(days) != 2 || r.Body["from"] != yesterday || r.Body["to"] != today {
		t.Fatalf("stats = %s, want two days from yesterday to today", r.Raw)
	}
	empty, last := days[0].(map[string]any), days[1].(map[string]any)
	if empty["date"] != yesterday || empty["sales"] != float64(0) || empty["licensesIssued"] != float64(0) {
		t.Fatalf("yesterday = %v, want an empty day", empty)
	}
	rev, _ := last["revenueCents"].(map[string]any)
	if last["date"] != today || last["sales"] != float64(3) || rev["usd"] != float64(7500) || last["refunds"] != float64(1) ||
		last["disputes"] != float64(1) || last["licensesIssued"] != float64(3) {
		t.Fatalf("today = %v, want 3 paid sales, 7500 usd, 1 refund, 1 dispute, 3 licenses", last)
	}
	if r := e.call(t, "GET", "/api/stores/"+e.store+"/stats", e.owner, nil); r.Status != 200 || len(r.Body["days"].([]any)) != 30 {
		t.Fatalf("default stats = %d, %d days, want 30", r.Status, len(r.Body["days"].([]any)))
	}
	checkErrorBody(t, "another owner", e.call(t, "GET", "/api/stores/"+e.store+"/stats", e.buyer, nil), 404, "NOT_FOUND")
	checkErrorBody(t, "reversed", e.call(t, "GET", "/api/stores/"+e.store+"/stats?from="+today+"&to="+yesterday, e.owner, nil), 400, "VALIDATION_FAILED")
	checkErrorBody(t, "too long", e.call(t, "GET", "/api/stores/"+e.store+"/stats?from=2020-01-01&to=2026-01-01", e.owner, nil), 400, "VALIDATION_FAILED")
	checkErrorBody(t, "bad date", e.call(t, "GET", "/api/stores/"+e.store+"/stats?from=yesterday", e.owner, nil), 400, "VALIDATION_FAILED")
}

// The seller revokes a license by hand and restores it; resetting its
// hardware id lets it run on another machine. Each is audited.
func TestSellerRevokesRestoresAndResetsALicense(t *testing.T) {
	t.Parallel()
	e := newLicEnv(t, configWithSecret())
	e.deliverOK(t, event(t, newID("evt_"), "checkout.session.completed", e.session(newID("cs_test_"), newID("pi_"))))
	lic := e.myLicenses(t, e.buyer)[0]
	id, key := lic["id"].(string), lic["licenseKey"].(string)
	ctx := context.Background()
	hct, err := e.kr.Encrypt(ctx, keyring.Location{Table: "whitelist_users", Column: "hwid", RowID: id}, []byte("HW-1"))
	if err != nil {
		t.Fatal(err)
	}
	hidx, err := e.kr.BlindIndex("whitelist_users", "hwid", []byte("HW-1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Pool.Exec(ctx, `UPDATE whitelist_users SET hwid = $2, hwid_bidx = $3 WHERE id = $1`, id, hct, hidx); err != nil {
		t.Fatal(err)
	}
	if r := e.check(t, map[string]any{"licenseKey": key, "hwid": "HW-2"}); r.Body["whitelisted"] != false || r.Body["reason"] != "hwid_mismatch" {
		t.Fatalf("check on another machine = %s, want hwid_mismatch", r.Raw)
	}
	path := "/api/whitelist/systems/" + e.system + "/users/" + id
	if r := e.call(t, "PATCH", path, e.owner, map[string]any{"resetHwid": true}); r.Status != 200 || r.Body["hwidBound"] != false {
		t.Fatalf("reset hwid = %d %s", r.Status, r.Raw)
	}
	if r := e.check(t, map[string]any{"licenseKey": key, "hwid": "HW-2"}); r.Body["whitelisted"] != true {
		t.Fatalf("check after the reset = %s, want whitelisted", r.Raw)
	}
	if r := e.call(t, "PATCH", path, e.owner, map[string]any{"status": "revoked"}); r.Status != 200 || r.Body["status"] != "revoked" || r.Body["saleId"] == nil {
		t.Fatalf("revoke = %d %s", r.Status, r.Raw)
	}
	if r := e.check(t, map[string]any{"licenseKey": key}); r.Body["whitelisted"] != false || r.Body["reason"] != "revoked" {
		t.Fatalf("check after the seller revoked = %s", r.Raw)
	}
	checkErrorBody(t, "bad status", e.call(t, "PATCH", path, e.owner, map[string]any{"status": "expired"}), 400, "VALIDATION_FAILED")
	checkErrorBody(t, "not the seller", e.call(t, "PATCH", path, e.buyer, map[string]any{"status": "active"}), 404, "NOT_FOUND")
	if r := e.call(t, "PATCH", path, e.owner, map[string]any{"status": "active"}); r.Status != 200 || r.Body["status"] != "active" {
		t.Fatalf("restore = %d %s", r.Status, r.Raw)
	}
	if r := e.check(t, map[string]any{"licenseKey": key}); r.Body["whitelisted"] != true {
		t.Fatalf("check after the restore = %s", r.Raw)
	}
	if got := e.audit.actions(id); strings.Join(got, ",") != "license.issued,license.hwid_reset,license.revoked,license.restored" {
		t.Fatalf("audit of the license = %v", got)
	}
}

// A product whose whitelist system is full cannot be bought: 409 before
// the buyer pays.
func TestCheckoutOfAFullSystemIsRefused(t *testing.T) {
	t.Parallel()
	e, _ := mockEnv(t)
	s := newShopTB(t, e)
	ctx := context.Background()
	name, one, player := "full", 1, int64(7)
	sys, err := e.market.CreateWhitelistSystem(ctx, s.owner, store.WhitelistSystemFields{Name: &name, MaxUsers: &one})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Pool.Exec(ctx, `UPDATE products SET whitelist_system_id = $2 WHERE id = $1`, s.product, sys.ID); err != nil {
		t.Fatal(err)
	}
	body := map[string]any{"productId": s.product, "successUrl": "https://shop.example/ok", "cancelUrl": "https://shop.example/no", "robloxUserId": 42}
	if r := e.call(t, "POST", "/api/stripe/checkout", "", body); r.Status != 200 {
		t.Fatalf("checkout with room = %d %s", r.Status, r.Raw)
	}
	if _, err := e.market.CreateWhitelistUser(ctx, s.owner, sys.ID, store.WhitelistUserFields{RobloxUserID: &player}, "VB-FULL"); err != nil {
		t.Fatal(err)
	}
	checkErrorBody(t, "full system", e.call(t, "POST", "/api/stripe/checkout", "", body), 409, "CONFLICT")
}

// A signed-in buyer who paid anonymously and then looks the session up
// becomes the purchase's buyer: the license appears at /api/me/licenses,
// and the claim is audited. A second user's look-up claims nothing.
func TestCheckoutLookupSignedInClaimsAnAnonymousPurchase(t *testing.T) {
	t.Parallel()
	e := newLicEnv(t, configWithSecret())
	sess := newID("cs_test_")
	anon := e.session(sess, newID("pi_"))
	delete(anon["metadata"].(map[string]any), "vectabase_buyer_id")
	e.deliverOK(t, event(t, newID("evt_"), "checkout.session.completed", anon))
	if mine := e.myLicenses(t, e.buyer); len(mine) != 0 {
		t.Fatalf("licenses before the claim = %v, want none", mine)
	}
	var anonSale string
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT sale_id FROM whitelist_users WHERE buyer_id IS NULL AND sale_id IS NOT NULL`).Scan(&anonSale); err != nil {
		t.Fatal(err)
	}
	if e.keySealed(t, anonSale) {
		t.Error("an anonymous purchase's license key is sealed before anyone claimed it")
	}
	r := e.call(t, "GET", "/api/stripe/checkout/"+sess, e.buyer, nil)
	lic, _ := r.Body["license"].(map[string]any)
	if !e.keySealed(t, anonSale) {
		t.Error("the claimed license's key is keyring-only, want it sealed under the claiming buyer's key")
	}
	if r.Status != 200 || lic == nil || lic["licenseKey"] == nil {
		t.Fatalf("look-up = %d %s, want the license and its key", r.Status, r.Raw)
	}
	mine := e.myLicenses(t, e.buyer)
	if len(mine) != 1 || mine[0]["licenseKey"] != lic["licenseKey"] {
		t.Fatalf("licenses after the claim = %v, want the purchase with its key", mine)
	}
	if got := e.audit.actions(r.Body["saleId"].(string)); len(got) != 1 || got[0] != "sale.claimed" {
		t.Fatalf("audit of the sale = %v, want [sale.claimed]", got)
	}
	other := e.user(t)
	e.call(t, "GET", "/api/stripe/checkout/"+sess, other, nil)
	if n := len(e.myLicenses(t, other)); n != 0 {
		t.Fatalf("a second user's look-up gave them %d licenses, want 0", n)
	}
}
