package payments_test

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/policies"
	"github.com/vectabase/vectabase/server/payments"
	"github.com/vectabase/vectabase/vault"
)

var maskedAccount = regexp.MustCompile(`^acct_\*\*\*\*[A-Za-z0-9]{4}$`)

// mockEnv is an env whose Stripe API is stripe-mock behind a recorder.
func mockEnv(t *testing.T) (*env, *recorder) {
	t.Helper()
	rec := newRecorder(t, stripeMock(t))
	return newEnv(t, payments.Config{SecretKey: testSecretKey, WebhookSecret: testWebhookSecret, APIBase: rec.URL}, nil), rec
}

func TestOnboardCreatesAccountOnceAndStoresItEncrypted(t *testing.T) {
	t.Parallel()
	e, rec := mockEnv(t)
	owner := e.user(t)
	storeID := e.storeOf(t, owner)
	in := map[string]any{"storeId": storeID, "returnUrl": "https://shop.example/return", "refreshUrl": "https://shop.example/refresh"}

	r := e.call(t, "POST", "/api/stripe/onboard", owner, in)
	if r.Status != 200 {
		t.Fatalf("onboard = %d %s, want 200", r.Status, r.Raw)
	}
	if u, _ := r.Body["url"].(string); !strings.HasPrefix(u, "https://") {
		t.Fatalf("onboard url = %q, want an https account link", r.Body["url"])
	}
	account := e.decrypt(t, "stores", "stripe_account_id", storeID)
	if !strings.HasPrefix(account, "acct_") {
		t.Fatalf("stored account = %q, want an acct_ id", account)
	}
	creates := rec.requests("POST", "/v1/accounts")
	if len(creates) != 1 || creates[0].Form.Get("type") != "express" || creates[0].Form.Get("metadata[vectabase_store_id]") != storeID {
		t.Fatalf("account creations = %+v, want one express account tagged with the store", creates)
	}
	if creates[0].Header.Get("Idempotency-Key") == "" {
		t.Error("account creation has no Idempotency-Key")
	}
	links := rec.requests("POST", "/v1/account_links")
	if len(links) != 1 || links[0].Form.Get("account") != account || links[0].Form.Get("type") != "account_onboarding" ||
		links[0].Form.Get("return_url") != in["returnUrl"] || links[0].Form.Get("refresh_url") != in["refreshUrl"] {
		t.Fatalf("account links = %+v, want one onboarding link for the stored account", links)
	}
	var raw []byte
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT stripe_account_id FROM stores WHERE id = $1`, storeID).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(account)) {
		t.Fatal("stores.stripe_account_id holds the account id in clear")
	}

	// A second onboarding reuses the account: one more link, no new account.
	if r := e.call(t, "POST", "/api/stripe/onboard", owner, in); r.Status != 200 {
		t.Fatalf("second onboard = %d %s", r.Status, r.Raw)
	}
	if n := len(rec.requests("POST", "/v1/accounts")); n != 1 {
		t.Fatalf("accounts created = %d after two onboardings, want 1", n)
	}
	if got := e.decrypt(t, "stores", "stripe_account_id", storeID); got != account {
		t.Fatalf("account after second onboard = %q, want %q", got, account)
	}
	if strings.Contains(e.logs.String(), account) {
		t.Fatal("logs hold the full account id")
	}
}

func TestStatusShowsMaskedAccount(t *testing.T) {
	t.Parallel()
	e, _ := mockEnv(t)
	owner := e.user(t)
	storeID := e.storeOf(t, owner)

	r := e.call(t, "GET", "/api/stripe/status?storeId="+storeID, owner, nil)
	if r.Status != 200 || r.Body["accountId"] != nil || r.Body["chargesEnabled"] != false {
		t.Fatalf("status before onboarding = %d %s, want 200 with accountId null", r.Status, r.Raw)
	}

	const account = "acct_1PgafTB7WZ01zgkW"
	e.onboarded(t, storeID, account, 500)
	r = e.call(t, "GET", "/api/stripe/status?storeId="+storeID, owner, nil)
	if r.Status != 200 {
		t.Fatalf("status = %d %s", r.Status, r.Raw)
	}
	id, _ := r.Body["accountId"].(string)
	if !maskedAccount.MatchString(id) || !strings.HasSuffix(id, account[len(account)-4:]) {
		t.Fatalf("accountId = %q, want acct_****%s", id, account[len(account)-4:])
	}
	if bytes.Contains(r.Raw, []byte(account)) {
		t.Fatal("status response holds the full account id")
	}
	for _, k := range []string{"chargesEnabled", "payoutsEnabled", "detailsSubmitted"} {
		if _, ok := r.Body[k].(bool); !ok {
			t.Errorf("status %s = %v, want a boolean", k, r.Body[k])
		}
	}
	// stripe-mock's account has charges disabled: the flag follows Stripe.
	var onboarded bool
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT stripe_onboarded FROM stores WHERE id = $1`, storeID).Scan(&onboarded); err != nil {
		t.Fatal(err)
	}
	if onboarded != (r.Body["chargesEnabled"] == true && r.Body["detailsSubmitted"] == true) {
		t.Errorf("stripe_onboarded = %v, does not follow the status Stripe gave", onboarded)
	}
}

func TestAnotherUsersStoreIsNotFound(t *testing.T) {
	t.Parallel()
	e, rec := mockEnv(t)
	owner, other := e.user(t), e.user(t)
	storeID := e.storeOf(t, owner)
	e.onboarded(t, storeID, "acct_1OwnerAccount0001", 500)
	in := map[string]any{"storeId": storeID, "returnUrl": "https://a.example/", "refreshUrl": "https://a.example/"}

	checkErrorBody(t, "onboard another's store", e.call(t, "POST", "/api/stripe/onboard", other, in), 404, "NOT_FOUND")
	checkErrorBody(t, "status of another's store", e.call(t, "GET", "/api/stripe/status?storeId="+storeID, other, nil), 404, "NOT_FOUND")
	in["storeId"] = uuid.NewString()
	checkErrorBody(t, "onboard a missing store", e.call(t, "POST", "/api/stripe/onboard", owner, in), 404, "NOT_FOUND")
	checkErrorBody(t, "onboard without a token", e.call(t, "POST", "/api/stripe/onboard", "", in), 401, "UNAUTHORIZED")
	if n := len(rec.req); n != 0 {
		t.Fatalf("refused calls reached Stripe %d times", n)
	}
}

func TestCheckoutIsADestinationChargeWithThePlatformFee(t *testing.T) {
	t.Parallel()
	e, rec := mockEnv(t)
	owner, buyer := e.user(t), e.user(t)
	storeID := e.storeOf(t, owner)
	const account = "acct_1SellerAccount42"
	e.onboarded(t, storeID, account, 750) // 7.5 %
	productID := e.product(t, owner, storeID, 1999, true)

	r := e.call(t, "POST", "/api/stripe/checkout", buyer, map[string]any{
		"productId": productID, "successUrl": "https://shop.example/ok?s={CHECKOUT_SESSION_ID}", "cancelUrl": "https://shop.example/no", "robloxUserId": 12345,
	})
	if r.Status != 200 {
		t.Fatalf("checkout = %d %s, want 200", r.Status, r.Raw)
	}
	if id, _ := r.Body["sessionId"].(string); !strings.HasPrefix(id, "cs_") {
		t.Errorf("sessionId = %v, want a cs_ id", r.Body["sessionId"])
	}
	if u, _ := r.Body["url"].(string); !strings.HasPrefix(u, "https://") {
		t.Errorf("url = %v, want an https checkout page", r.Body["url"])
	}
	sent := rec.requests("POST", "/v1/checkout/sessions")
	if len(sent) != 1 {
		t.Fatalf("checkout sessions created = %d, want 1", len(sent))
	}
	f := sent[0].Form
	want := map[string]string{
		"mode":                                            "payment",
		"line_items[0][quantity]":                         "1",
		"line_items[0][price_data][unit_amount]":          "1999",
		"line_items[0][price_data][currency]":             "usd",
		"payment_intent_data[application_fee_amount]":     "149", // 1999 * 750 / 10000, rounded down
		"payment_intent_data[transfer_data][destination]": account,
		"metadata[vectabase_product_id]":                  productID,
		"metadata[vectabase_store_id]":                    storeID,
		"metadata[vectabase_buyer_id]":                    buyer,
		"metadata[vectabase_roblox_user_id]":              "12345",
		"metadata[vectabase_platform_fee_cents]":          "149",
		"client_reference_id":                             buyer,
	}
	for k, v := range want {
		if got := f.Get(k); got != v {
			t.Errorf("checkout form %s = %q, want %q", k, got, v)
		}
	}

	// Anonymous buyers may check out too.
	r = e.call(t, "POST", "/api/stripe/checkout", "", map[string]any{"productId": productID, "successUrl": "https://a.example/", "cancelUrl": "https://a.example/"})
	if r.Status != 200 {
		t.Fatalf("anonymous checkout = %d %s, want 200", r.Status, r.Raw)
	}
}

func TestCheckoutRefusals(t *testing.T) {
	t.Parallel()
	e, rec := mockEnv(t)
	owner := e.user(t)
	ready := e.storeOf(t, owner)
	e.onboarded(t, ready, "acct_1ReadyAccount001", 500)
	notReady := e.storeOf(t, owner)
	inactive := e.product(t, owner, ready, 500, false)
	unsold := e.product(t, owner, notReady, 500, true)
	free := e.product(t, owner, ready, 0, true)
	active := e.product(t, owner, ready, 500, true)
	body := func(id string) map[string]any {
		return map[string]any{"productId": id, "successUrl": "https://a.example/", "cancelUrl": "https://a.example/"}
	}
	checkErrorBody(t, "inactive product", e.call(t, "POST", "/api/stripe/checkout", "", body(inactive)), 404, "NOT_FOUND")
	checkErrorBody(t, "missing product", e.call(t, "POST", "/api/stripe/checkout", "", body(uuid.NewString())), 404, "NOT_FOUND")
	checkErrorBody(t, "store not onboarded", e.call(t, "POST", "/api/stripe/checkout", "", body(unsold)), 409, "CONFLICT")
	checkErrorBody(t, "free product", e.call(t, "POST", "/api/stripe/checkout", "", body(free)), 400, "VALIDATION_FAILED")
	checkErrorBody(t, "not a uuid", e.call(t, "POST", "/api/stripe/checkout", "", body("42")), 400, "VALIDATION_FAILED")
	bad := body(active)
	bad["successUrl"] = "javascript:alert(1)"
	checkErrorBody(t, "bad success url", e.call(t, "POST", "/api/stripe/checkout", "", bad), 400, "VALIDATION_FAILED")
	bad = body(active)
	bad["robloxUserId"] = -1
	checkErrorBody(t, "negative roblox id", e.call(t, "POST", "/api/stripe/checkout", "", bad), 400, "VALIDATION_FAILED")
	bad = body(active)
	bad["price"] = 1
	checkErrorBody(t, "unknown field", e.call(t, "POST", "/api/stripe/checkout", "", bad), 400, "BAD_REQUEST")
	if n := len(rec.requests("POST", "/v1/checkout/sessions")); n != 0 {
		t.Fatalf("refused checkouts reached Stripe %d times", n)
	}
}

// emptyVault answers every credential with "": nothing configured.
type emptyVault struct{}

func (emptyVault) Credential(_ context.Context, env, _ string) (string, error) { return env, nil }

func TestRoutesAnswerUnavailableWithoutCredentials(t *testing.T) {
	t.Parallel()
	for name, creds := range map[string]payments.Credentials{"no vault": nil, "empty vault": emptyVault{}} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, payments.Config{}, creds)
			owner := e.user(t)
			storeID := e.storeOf(t, owner)
			r := e.call(t, "POST", "/api/stripe/onboard", owner, map[string]any{"storeId": storeID, "returnUrl": "https://a.example/", "refreshUrl": "https://a.example/"})
			checkErrorBody(t, "onboard", r, 503, "UNAVAILABLE")
			if msg, _ := r.Body["message"].(string); !strings.Contains(msg, "STRIPE_SECRET_KEY") || !strings.Contains(msg, "stripe_secret_key") {
				t.Errorf("message = %q, want it to name STRIPE_SECRET_KEY and the vault secret", msg)
			}
			checkErrorBody(t, "status", e.call(t, "GET", "/api/stripe/status?storeId="+storeID, owner, nil), 503, "UNAVAILABLE")
			checkErrorBody(t, "checkout", e.call(t, "POST", "/api/stripe/checkout", "", map[string]any{"productId": uuid.NewString(), "successUrl": "https://a.example/", "cancelUrl": "https://a.example/"}), 503, "UNAVAILABLE")
			payload := event(t, "evt_1", "account.updated", map[string]any{"id": "acct_1"})
			r = e.deliver(t, payload, sign(payload, testWebhookSecret, time.Now()))
			checkErrorBody(t, "webhook", r, 503, "UNAVAILABLE")
			if msg, _ := r.Body["message"].(string); !strings.Contains(msg, "STRIPE_WEBHOOK_SECRET") {
				t.Errorf("webhook message = %q, want it to name STRIPE_WEBHOOK_SECRET", msg)
			}
		})
	}
}

// TestCredentialsComeFromTheVault: with nothing in the environment the
// service reads stripe_secret_key and stripe_webhook_secret from the vault.
func TestCredentialsComeFromTheVault(t *testing.T) {
	t.Parallel()
	base := stripeMock(t)
	e0 := newEnv(t, payments.Config{}, nil)
	pol, err := policies.AccessPolicy()
	if err != nil {
		t.Fatal(err)
	}
	v := vault.New(e0.db, e0.kr, nopAuditor{}, pol, vault.Config{}, nil)
	ctx := context.Background()
	for name, value := range map[string]string{payments.SecretKeyName: testSecretKey, payments.WebhookSecretName: testWebhookSecret} {
		if _, err := v.Put(ctx, vault.LocalOperator, name, []byte(value), nil); err != nil {
			t.Fatalf("vault Put(%s) err = %v", name, err)
		}
	}
	e := newEnvOn(t, e0.db, e0.kr, payments.Config{APIBase: base}, v)
	owner := e.user(t)
	storeID := e.storeOf(t, owner)
	if r := e.call(t, "GET", "/api/stripe/status?storeId="+storeID, owner, nil); r.Status != 200 {
		t.Fatalf("status with the key in the vault = %d %s, want 200", r.Status, r.Raw)
	}
	payload := event(t, "evt_vault1", "ping.unknown", map[string]any{"id": "x"})
	if r := e.deliver(t, payload, sign(payload, testWebhookSecret, time.Now())); r.Status != 200 {
		t.Fatalf("webhook with the secret in the vault = %d %s, want 200", r.Status, r.Raw)
	}
}

// TestPropertyPlatformFeeIsTheCommissionRoundedDown claims: the fee is
// floor(price × bps / 10000), never negative and never more than the price.
// It has no seed property number (Property 1 is the import's row counts).
// rapid's default 100 iterations.
func TestPropertyPlatformFeeIsTheCommissionRoundedDown(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		price := rapid.Int64Range(0, 1<<31-1).Draw(t, "price")
		bps := rapid.IntRange(0, 10000).Draw(t, "bps")
		fee := payments.PlatformFee(price, bps)
		if want := price * int64(bps) / 10000; fee != want {
			t.Fatalf("PlatformFee(%d, %d) = %d, want %d", price, bps, fee, want)
		}
		if fee < 0 || fee > price {
			t.Fatalf("PlatformFee(%d, %d) = %d, outside [0, price]", price, bps, fee)
		}
	})
}

func TestMask(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"acct_1PgafTB7WZ01zgkW": "acct_****zgkW",
		"pi_3MtwBwLkdIwHu7ix":   "pi_****u7ix",
		"evt_1":                 "evt_****",
		"noprefix12345":         "****2345",
		"":                      "",
	} {
		if got := payments.Mask(in); got != want {
			t.Errorf("Mask(%q) = %q, want %q", in, got, want)
		}
	}
}
