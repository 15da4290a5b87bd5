package marketplace_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/server/payments"
	"github.com/vectabase/vectabase/store/pgtest"
	"github.com/vectabase/vectabase/store/supabase"
	"github.com/vectabase/vectabase/store/supabase/supabasetest"
)

// TestImportedCreditsAndSubscriptionArriveIntact imports the Supabase
// fixture and uses what it carried: alice's 4200 credits and two usage rows
// (GET /api/developer/credits), her imported key (scopes whitelist:read and
// obfuscate, 120/min) consuming credits, her pro subscription capping
// nothing below 120, and a Stripe event for the imported subscription
// (found through the blind index the importer wrote) dropping her to free.
func TestImportedCreditsAndSubscriptionArriveIntact(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := pgtest.EmptyURL(t)
	sc, err := pgx.Connect(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close(ctx)
	for _, s := range []string{supabasetest.Schema, supabasetest.Sample} {
		if _, err := sc.Exec(ctx, s); err != nil {
			t.Fatalf("load the fixture: %v", err)
		}
	}
	url := pgtest.URL(t)
	db := pgtest.Open(t, url)
	kr := newKeyring(t, db)
	tc, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close(ctx)
	if _, err := supabase.Import(ctx, tc, kr, supabase.Options{Source: src}); err != nil {
		t.Fatalf("Import err = %v", err)
	}
	e := newInstance(t, db, kr)
	defer e.close(t)
	res, err := e.auth.Login(ctx, "alice@example.com", "correct horse battery staple", auth.RequestMeta{IP: "127.0.0.1"})
	if err != nil {
		t.Fatalf("alice's imported password: %v", err)
	}
	alice := res.User.ID
	allTokens.set(alice, res.Token)

	credits := e.must(t, 200, "GET", "/api/developer/credits", alice, nil)
	items := credits["items"].([]any)
	if credits["balance"] != float64(4200) || len(items) != 2 {
		t.Fatalf("imported credits = %v, want balance 4200 and 2 usage rows", credits)
	}
	units := 0
	for _, it := range items {
		units += int(it.(map[string]any)["units"].(float64))
	}
	if units != 15 {
		t.Fatalf("imported usage adds up to %d units, want 10 + 5", units)
	}
	sub := e.must(t, 200, "GET", "/api/developer/subscription", alice, nil)
	if sub["plan"] != "pro" || sub["status"] != "active" || !strings.HasPrefix(sub["currentPeriodEnd"].(string), "2026-12-31") {
		t.Fatalf("imported subscription = %v", sub)
	}

	const key = "vb_live_4f1d2c3b4a5968778695a4b3c2d1e0f1"
	r := e.consume(t, key, "import-1", `{"units":10}`)
	if r.Status != 201 || r.Body["balance"] != float64(4190) || r.Header.Get("X-RateLimit-Limit") != "120" {
		t.Fatalf("consumption with the imported key = %d %s (limit %s), want 201 balance 4190 under 120/min", r.Status, r.Raw, r.Header.Get("X-RateLimit-Limit"))
	}

	// Stripe cancels the imported subscription with its period over: the
	// webhook finds the row by the importer's blind index, and the key
	// drops to the free plan's 60.
	pay := payments.New(db, kr, payments.Config{WebhookSecret: "whsec_import"}, nil, zerolog.Nop(), nil)
	pay.SetAuditor(nopAuditor{})
	e.srv.Mount(pay.Routes(payments.Auth{RequireUser: e.auth.RequireUser(), OptionalUser: e.auth.OptionalUser(), UserID: auth.UserID}))
	payload, _ := json.Marshal(map[string]any{
		"id": "evt_import_cancel", "object": "event", "type": "customer.subscription.deleted", "api_version": "2023-10-16",
		"created": time.Now().Unix(), "data": map[string]any{"object": map[string]any{
			"id": "sub_Fixture0001", "object": "subscription", "customer": "cus_Alice0001", "status": "canceled",
			"current_period_end": time.Now().Add(-time.Hour).Unix(), "metadata": map[string]any{},
		}},
	})
	req := httptest.NewRequest("POST", "/api/stripe/webhook", strings.NewReader(string(payload)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: "whsec_import", Timestamp: time.Now()}).Header)
	if w := e.do(t, req); w.Status != 200 || w.Body["result"] != "processed" {
		t.Fatalf("cancel the imported subscription = %d %s, want processed", w.Status, w.Raw)
	}
	if got := e.call(t, "POST", "/api/developer/verify", "key:"+key, "{}").Header.Get("X-RateLimit-Limit"); got != "60" {
		t.Fatalf("limit after the cancellation = %s, want the free plan's 60", got)
	}
	if sub := e.must(t, 200, "GET", "/api/developer/subscription", alice, nil); sub["status"] != "canceled" || sub["effectivePlan"] != "free" {
		t.Fatalf("subscription after the cancellation = %v", sub)
	}
}
