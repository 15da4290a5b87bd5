package payments_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/vectabase/vectabase/server/bodytest"
	"github.com/vectabase/vectabase/server/payments"
)

// TestAnonymousCheckoutIsLimitedPerIP: past STRIPE_CHECKOUT_MAX_PER_IP in
// the window, checkouts from one address get 429 RATE_LIMITED with
// Retry-After and never reach Stripe; a signed-in buyer counts under their
// own user, not the address.
func TestAnonymousCheckoutIsLimitedPerIP(t *testing.T) {
	t.Parallel()
	rec := newRecorder(t, stripeMock(t))
	e := newEnv(t, payments.Config{SecretKey: testSecretKey, WebhookSecret: testWebhookSecret, APIBase: rec.URL,
		CheckoutMaxPerIP: 3, CheckoutWindow: time.Hour}, nil)
	owner, buyer := e.user(t), e.user(t)
	storeID := e.storeOf(t, owner)
	e.onboarded(t, storeID, "acct_1LimitedAccount01", 500)
	productID := e.product(t, owner, storeID, 500, true)
	body := map[string]any{"productId": productID, "successUrl": "https://a.example/", "cancelUrl": "https://a.example/"}

	for i := range 3 {
		if r := e.call(t, "POST", "/api/stripe/checkout", "", body); r.Status != 200 {
			t.Fatalf("anonymous checkout %d = %d %s, want 200", i+1, r.Status, r.Raw)
		}
	}
	// Malformed or not, a call past the limit is refused before anything.
	for _, b := range []any{body, map[string]any{"nope": true}} {
		raw, _ := json.Marshal(b)
		req := httptest.NewRequest("POST", "/api/stripe/checkout", bytes.NewReader(raw))
		req.Header.Set("Content-Type", "application/json")
		res, err := e.srv.App().Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("checkout past the limit = %d, want 429", res.StatusCode)
		}
		if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || s < 1 || s > 3600 {
			t.Fatalf("Retry-After = %q, want 1..3600 seconds", res.Header.Get("Retry-After"))
		}
	}
	r := e.call(t, "POST", "/api/stripe/checkout", "", body)
	checkErrorBody(t, "anonymous past the limit", r, 429, "RATE_LIMITED")
	if n := len(rec.requests("POST", "/v1/checkout/sessions")); n != 3 {
		t.Fatalf("Stripe saw %d checkout sessions, want the 3 allowed", n)
	}
	// The signed-in buyer from the same address has their own count.
	if r := e.call(t, "POST", "/api/stripe/checkout", buyer, body); r.Status != 200 {
		t.Fatalf("signed-in checkout = %d %s, want 200", r.Status, r.Raw)
	}
}

// TestWebhookVerifiesTheDecodedBody: a gzip webhook delivery is checked
// against the signature of its decoded bytes, and a gzip bomb to the
// webhook is 413 before any signature work.
func TestWebhookVerifiesTheDecodedBody(t *testing.T) {
	t.Parallel()
	e := webhookEnv(t)
	payload := event(t, "evt_gzip_1", "customer.created", map[string]any{"id": "cus_1", "object": "customer"})
	for _, tc := range []struct {
		name string
		body []byte
		want int
	}{
		{"gzip of the signed bytes", bodytest.GzipOf(payload), 200},
		{"gzip bomb", bodytest.Gzip(64 << 20), 413},
	} {
		req := httptest.NewRequest(http.MethodPost, "/api/stripe/webhook", bytes.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Content-Encoding", "gzip")
		req.Header.Set("Stripe-Signature", sign(payload, testWebhookSecret, time.Now()))
		if r := e.do(t, req); r.Status != tc.want {
			t.Errorf("%s: status %d %s, want %d", tc.name, r.Status, r.Raw, tc.want)
		}
	}
}
