package payments_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server/payments"
)

// recordingAuditor keeps the events it is given.
type recordingAuditor struct {
	mu     sync.Mutex
	events []vectabase.AuditEvent
	fail   bool
}

func (a *recordingAuditor) Record(_ context.Context, ev vectabase.AuditEvent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail {
		return context.DeadlineExceeded
	}
	a.events = append(a.events, ev)
	return nil
}

func (a *recordingAuditor) actions() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, ev := range a.events {
		out = append(out, ev.Action)
	}
	return out
}

func (a *recordingAuditor) setFail(f bool) {
	a.mu.Lock()
	a.fail = f
	a.mu.Unlock()
}

const proPrice = "price_pro_monthly"

// billingEnv is a webhook env that maps proPrice to the pro plan and
// audits into a recordingAuditor.
func billingEnv(t *testing.T) (*env, *recordingAuditor) {
	t.Helper()
	e := newEnv(t, payments.Config{WebhookSecret: testWebhookSecret, PlanPrices: map[string]string{proPrice: "pro"}}, nil)
	aud := &recordingAuditor{}
	e.svc.SetAuditor(aud)
	return e, aud
}

// subscription is a Stripe subscription object as Stripe sends it.
func subscription(id, customer, developer, price, status string, periodEnd time.Time) map[string]any {
	return map[string]any{
		"id": id, "object": "subscription", "customer": customer, "status": status,
		"current_period_end": periodEnd.Unix(), "metadata": map[string]any{"developerId": developer},
		"items": map[string]any{"object": "list", "data": []any{
			map[string]any{"id": "si_1", "object": "subscription_item", "price": map[string]any{"id": price, "object": "price"}},
		}},
	}
}

func invoice(sub string, periodEnd time.Time) map[string]any {
	return map[string]any{
		"id": newID("in_"), "object": "invoice", "subscription": sub,
		"lines": map[string]any{"object": "list", "data": []any{
			map[string]any{"id": "il_1", "object": "line_item", "period": map[string]any{"start": periodEnd.Add(-30 * 24 * time.Hour).Unix(), "end": periodEnd.Unix()}},
		}},
	}
}

type subRow struct {
	id, plan, status string
	end              *time.Time
}

func (e *env) subOf(t *testing.T, dev string) subRow {
	t.Helper()
	var r subRow
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT id, plan, status, current_period_end FROM developer_subscriptions WHERE developer_id = $1`, dev).
		Scan(&r.id, &r.plan, &r.status, &r.end); err != nil {
		t.Fatalf("read subscription: %v", err)
	}
	return r
}

func TestWebhookSubscriptionLifecycle(t *testing.T) {
	t.Parallel()
	e, aud := billingEnv(t)
	dev := e.user(t)
	subID, cus := newID("sub_"), newID("cus_")
	end := time.Now().Add(30 * 24 * time.Hour).Truncate(time.Second)

	created := event(t, newID("evt_"), "customer.subscription.created", subscription(subID, cus, dev, proPrice, "active", end))
	e.send(t, created, "processed")
	e.send(t, created, "duplicate")
	r := e.subOf(t, dev)
	if r.plan != "pro" || r.status != "active" || r.end == nil || !r.end.Equal(end) {
		t.Fatalf("subscription = %+v, want pro active until %v", r, end)
	}
	if got := e.decrypt(t, "developer_subscriptions", "stripe_subscription_id", r.id); got != subID {
		t.Fatalf("stripe_subscription_id decrypts to %q", got)
	}
	if got := e.decrypt(t, "developer_subscriptions", "stripe_customer_id", r.id); got != cus {
		t.Fatalf("stripe_customer_id decrypts to %q", got)
	}
	if n := e.count(t, `SELECT count(*) FROM developer_subscriptions`); n != 1 {
		t.Fatalf("subscriptions = %d after a duplicate, want 1", n)
	}

	// A failed payment: past due, the period unchanged (the plan holds
	// until its end, see marketplace.Plans).
	e.send(t, event(t, newID("evt_"), "invoice.payment_failed", invoice(subID, end.Add(time.Hour))), "processed")
	if r := e.subOf(t, dev); r.status != "past_due" || !r.end.Equal(end) {
		t.Fatalf("after invoice.payment_failed = %+v, want past_due until %v", r, end)
	}
	// The payment goes through: active, for the next period.
	next := end.Add(30 * 24 * time.Hour)
	e.send(t, event(t, newID("evt_"), "invoice.paid", invoice(subID, next)), "processed")
	if r := e.subOf(t, dev); r.status != "active" || !r.end.Equal(next) {
		t.Fatalf("after invoice.paid = %+v, want active until %v", r, next)
	}
	// An older invoice delivered late does not shorten the period.
	e.send(t, event(t, newID("evt_"), "invoice.paid", invoice(subID, end)), "processed")
	if r := e.subOf(t, dev); !r.end.Equal(next) {
		t.Fatalf("a late invoice moved the period end to %v", r.end)
	}
	// Deleted: canceled, and a late update cannot revive it.
	e.send(t, event(t, newID("evt_"), "customer.subscription.deleted", subscription(subID, cus, dev, proPrice, "canceled", next)), "processed")
	e.send(t, event(t, newID("evt_"), "customer.subscription.updated", subscription(subID, cus, dev, proPrice, "active", next)), "ignored")
	if r := e.subOf(t, dev); r.status != "canceled" || r.plan != "pro" {
		t.Fatalf("after deletion = %+v, want canceled", r)
	}
	want := []string{"subscription.create", "subscription.update", "subscription.update", "subscription.update", "subscription.update"}
	if got := aud.actions(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("audited %v, want %v", got, want)
	}
	for _, ev := range aud.events {
		if strings.Contains(ev.ResourceID, "sub_") || ev.Details["developerId"] != dev {
			t.Fatalf("audit event %+v names a Stripe id or not the developer", ev)
		}
	}
	for _, id := range []string{subID, cus} {
		if strings.Contains(e.logs.String(), id) {
			t.Fatalf("logs hold the Stripe id %s", id[:4])
		}
	}
	if e.metric("customer.subscription.created", "processed") != 1 || e.metric("invoice.paid", "processed") != 2 {
		t.Fatal("vectabase_stripe_webhooks_total does not count the billing events by type")
	}
}

func TestWebhookSubscriptionIgnoredWithoutDeveloper(t *testing.T) {
	t.Parallel()
	e, aud := billingEnv(t)
	end := time.Now().Add(time.Hour)
	// No such user, no metadata, and an invoice for an unknown subscription.
	e.send(t, event(t, newID("evt_"), "customer.subscription.created", subscription(newID("sub_"), newID("cus_"), "00000000-0000-0000-0000-000000000001", proPrice, "active", end)), "ignored")
	e.send(t, event(t, newID("evt_"), "customer.subscription.created", subscription(newID("sub_"), newID("cus_"), "", proPrice, "active", end)), "ignored")
	e.send(t, event(t, newID("evt_"), "invoice.paid", invoice(newID("sub_"), end)), "ignored")
	e.send(t, event(t, newID("evt_"), "invoice.paid", map[string]any{"id": newID("in_"), "object": "invoice"}), "ignored")
	if n := e.count(t, `SELECT count(*) FROM developer_subscriptions`); n != 0 || len(aud.actions()) != 0 {
		t.Fatalf("subscriptions = %d, audit %v; want none", n, aud.actions())
	}
	// An unmapped price falls back to the metadata's plan, then to free.
	dev := e.user(t)
	sub := subscription(newID("sub_"), newID("cus_"), dev, "price_unknown", "trialing", end)
	e.send(t, event(t, newID("evt_"), "customer.subscription.created", sub), "processed")
	if r := e.subOf(t, dev); r.plan != "free" || r.status != "trialing" {
		t.Fatalf("unmapped price: %+v, want free trialing", r)
	}
}

// TestWebhookSubscriptionAuditFailureRollsBack: a change whose audit row
// cannot be written is not kept, and the redelivery applies it.
func TestWebhookSubscriptionAuditFailureRollsBack(t *testing.T) {
	t.Parallel()
	e, aud := billingEnv(t)
	dev := e.user(t)
	payload := event(t, newID("evt_"), "customer.subscription.created", subscription(newID("sub_"), newID("cus_"), dev, proPrice, "active", time.Now().Add(time.Hour)))
	aud.setFail(true)
	if r := e.deliver(t, payload, sign(payload, testWebhookSecret, time.Now())); r.Status != 500 {
		t.Fatalf("delivery with a failing audit = %d %s, want 500", r.Status, r.Raw)
	}
	if n := e.count(t, `SELECT count(*) FROM developer_subscriptions`); n != 0 {
		t.Fatalf("subscriptions = %d after a failed audit, want 0", n)
	}
	aud.setFail(false)
	e.send(t, payload, "processed")
	if r := e.subOf(t, dev); r.plan != "pro" {
		t.Fatalf("redelivery: %+v", r)
	}
}

// creditPack makes s's product a pack of units credits.
func (e *env) creditPack(t *testing.T, s shop, units int) {
	t.Helper()
	if _, err := e.db.Pool.Exec(context.Background(), `UPDATE products SET credit_units = $2 WHERE id = $1`, s.product, units); err != nil {
		t.Fatal(err)
	}
}

func (e *env) balance(t *testing.T, dev string) int {
	t.Helper()
	b, err := e.market.CreditBalance(context.Background(), dev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWebhookCreditPackGrantsOnce: a credit pack's checkout grants its
// credits to the buyer in the sale's transaction, once however often and
// however concurrently the event arrives, and the grant is audited.
func TestWebhookCreditPackGrantsOnce(t *testing.T) {
	t.Parallel()
	e, aud := billingEnv(t)
	s := newShop(t, e)
	e.creditPack(t, s, 500)
	if _, err := e.market.GrantCredits(context.Background(), s.buyer, 42, "imported"); err != nil {
		t.Fatal(err)
	}
	evt := newID("evt_")
	payload := event(t, evt, "checkout.session.completed", s.session(newID("cs_test_"), newID("pi_")))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.deliver(t, payload, sign(payload, testWebhookSecret, time.Now()))
			if r.Status != 200 {
				t.Errorf("concurrent delivery = %d %s", r.Status, r.Raw)
			}
		}()
	}
	wg.Wait()
	if b := e.balance(t, s.buyer); b != 542 {
		t.Fatalf("buyer's balance = %d, want 42 + 500 once", b)
	}
	if n := e.count(t, `SELECT count(*) FROM obfuscation_credit_grants WHERE stripe_event_id = $1 AND audited_at IS NOT NULL`, evt); n != 1 {
		t.Fatalf("audited grants of the event = %d, want 1", n)
	}
	if got := aud.actions(); len(got) != 1 || got[0] != "credits.grant" || aud.events[0].Details["units"] != 500 {
		t.Fatalf("audited %v, want one credits.grant of 500", aud.events)
	}
	// An ordinary product grants nothing; an anonymous buyer gets nothing.
	plain := newShop(t, e)
	e.send(t, event(t, newID("evt_"), "checkout.session.completed", plain.session(newID("cs_test_"), newID("pi_"))), "processed")
	anon := newShop(t, e)
	e.creditPack(t, anon, 10)
	sess := anon.session(newID("cs_test_"), newID("pi_"))
	delete(sess["metadata"].(map[string]any), "vectabase_buyer_id")
	e.send(t, event(t, newID("evt_"), "checkout.session.completed", sess), "processed")
	if b := e.balance(t, plain.buyer); b != 0 {
		t.Fatalf("a plain product granted %d credits", b)
	}
	if n := e.count(t, `SELECT count(*) FROM obfuscation_credit_grants WHERE source = 'purchase'`); n != 1 {
		t.Fatalf("purchase grants = %d, want only the first", n)
	}
}

// TestWebhookCreditPackGrantAuditRetried: when the grant's audit fails the
// delivery is answered 500; the grant is kept (it is the sale's) and the
// redelivery, a duplicate, writes the missing audit row.
func TestWebhookCreditPackGrantAuditRetried(t *testing.T) {
	t.Parallel()
	e, aud := billingEnv(t)
	s := newShop(t, e)
	e.creditPack(t, s, 5)
	payload := event(t, newID("evt_"), "checkout.session.completed", s.session(newID("cs_test_"), newID("pi_")))
	aud.setFail(true)
	if r := e.deliver(t, payload, sign(payload, testWebhookSecret, time.Now())); r.Status != 500 {
		t.Fatalf("delivery with a failing audit = %d %s, want 500", r.Status, r.Raw)
	}
	aud.setFail(false)
	e.send(t, payload, "duplicate")
	if b := e.balance(t, s.buyer); b != 5 || len(aud.actions()) != 1 {
		t.Fatalf("balance %d, audit %v; want 5 and one credits.grant", b, aud.actions())
	}
}

// TestWebhookCreditPackAsyncPayment: a pack paid by a delayed method
// grants when the payment settles, not before.
func TestWebhookCreditPackAsyncPayment(t *testing.T) {
	t.Parallel()
	e, _ := billingEnv(t)
	s := newShop(t, e)
	e.creditPack(t, s, 7)
	sessID, pi := newID("cs_test_"), newID("pi_")
	sess := s.session(sessID, pi)
	sess["payment_status"] = "unpaid"
	e.send(t, event(t, newID("evt_"), "checkout.session.completed", sess), "processed")
	if b := e.balance(t, s.buyer); b != 0 {
		t.Fatalf("unpaid pack granted %d", b)
	}
	settled := map[string]any{"id": sessID, "object": "checkout.session", "payment_intent": pi, "amount_total": 2500, "currency": "usd", "payment_status": "paid"}
	e.send(t, event(t, newID("evt_"), "checkout.session.async_payment_succeeded", settled), "processed")
	if b := e.balance(t, s.buyer); b != 7 {
		t.Fatalf("settled pack: balance %d, want 7", b)
	}
}

// TestCheckoutOfCreditPackGrantsThroughTheWebhook: a buyer checks a credit
// pack out (stripe-mock), Stripe sends back the session with the metadata
// our checkout put on it (signed), and the buyer's balance grows by the pack.
func TestCheckoutOfCreditPackGrantsThroughTheWebhook(t *testing.T) {
	t.Parallel()
	e, rec := mockEnv(t)
	aud := &recordingAuditor{}
	e.svc.SetAuditor(aud)
	s := newShopTB(t, e)
	e.creditPack(t, s, 250)
	r := e.call(t, "POST", "/api/stripe/checkout", s.buyer, map[string]any{
		"productId": s.product, "successUrl": "https://shop.example/ok", "cancelUrl": "https://shop.example/no",
	})
	if r.Status != 200 {
		t.Fatalf("checkout = %d %s", r.Status, r.Raw)
	}
	sent := rec.requests("POST", "/v1/checkout/sessions")
	if len(sent) != 1 {
		t.Fatalf("checkout sessions created = %d, want 1", len(sent))
	}
	meta := map[string]any{}
	for k, v := range sent[0].Form {
		if name, ok := strings.CutPrefix(k, "metadata["); ok {
			meta[strings.TrimSuffix(name, "]")] = v[0]
		}
	}
	sess := map[string]any{
		"id": r.Body["sessionId"], "object": "checkout.session", "mode": "payment", "status": "complete",
		"payment_status": "paid", "amount_total": 2500, "currency": "usd", "payment_intent": newID("pi_"), "metadata": meta,
	}
	e.send(t, event(t, newID("evt_"), "checkout.session.completed", sess), "processed")
	if b := e.balance(t, s.buyer); b != 250 {
		t.Fatalf("buyer's balance after the pack's checkout = %d, want 250", b)
	}
	if got := aud.actions(); len(got) != 1 || got[0] != "credits.grant" {
		t.Fatalf("audited %v, want one credits.grant", got)
	}
}

// TestAnonymousCheckoutOfCreditPackIsRefused: credits need an account.
func TestAnonymousCheckoutOfCreditPackIsRefused(t *testing.T) {
	t.Parallel()
	e, rec := mockEnv(t)
	s := newShopTB(t, e)
	e.creditPack(t, s, 10)
	r := e.call(t, "POST", "/api/stripe/checkout", "", map[string]any{"productId": s.product, "successUrl": "https://a.example/", "cancelUrl": "https://a.example/"})
	checkErrorBody(t, "anonymous credit pack checkout", r, 401, "UNAUTHORIZED")
	if n := len(rec.requests("POST", "/v1/checkout/sessions")); n != 0 {
		t.Fatalf("checkout sessions created = %d, want 0", n)
	}
}

// FuzzBillingWebhook throws signed subscription and invoice events of any
// shape at the webhook: each is answered 200 (processed, ignored or
// duplicate) or a contract 4xx, never a 5xx, and a recorded subscription's
// status is always a token Stripe could send.
func FuzzBillingWebhook(f *testing.F) {
	e := newEnv(f, payments.Config{WebhookSecret: testWebhookSecret, PlanPrices: map[string]string{proPrice: "pro"}}, nil)
	e.svc.SetAuditor(&recordingAuditor{})
	dev := e.user(f)
	for _, s := range []string{
		`{"id":"sub_1","status":"active","current_period_end":1900000000,"metadata":{"developerId":"` + dev + `"},"items":{"data":[{"price":{"id":"price_pro_monthly"}}]}}`,
		`{"id":"sub_1","status":"past_due","current_period_end":-1,"metadata":{"developerId":"` + dev + `","plan":"\u0000"}}`,
		`{"id":"sub_2","status":"","metadata":{"developerId":"not-a-uuid"}}`,
		`{"id":"in_1","subscription":"sub_1","lines":{"data":[{"period":{"end":99999999999}}]}}`,
		`{"id":"in_2","subscription":{"id":"sub_1"},"lines":{"data":[null]}}`,
		`{"subscription":null}`, `[]`, `null`, `"sub_1"`,
	} {
		for _, typ := range []string{"customer.subscription.updated", "invoice.paid"} {
			f.Add(typ, s)
		}
	}
	types := []string{"customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted", "invoice.paid", "invoice.payment_failed"}
	f.Fuzz(func(t *testing.T, typ, object string) {
		if len(typ) > 0 {
			typ = types[int(typ[0])%len(types)]
		} else {
			typ = types[0]
		}
		body := []byte(`{"id":"` + newID("evt_") + `","object":"event","type":"` + typ + `","data":{"object":` + object + `}}`)
		r := e.deliver(t, body, sign(body, testWebhookSecret, time.Now()))
		if r.Status != 200 && (r.Status < 400 || r.Status >= 500 || r.Body["error"] == nil) {
			t.Fatalf("%s %q = %d %s, want 200 or a contract 4xx", typ, object, r.Status, r.Raw)
		}
		var bad int
		if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM developer_subscriptions WHERE status !~ '^[!-~]+$' OR plan = ''`).Scan(&bad); err != nil || bad != 0 {
			t.Fatalf("subscriptions with an unprintable status or empty plan: %d, %v", bad, err)
		}
	})
}

// TestWebhookSubscriptionMetadataNames: the developer may be named under
// the checkout's vectabase_ metadata names too.
func TestWebhookSubscriptionMetadataNames(t *testing.T) {
	t.Parallel()
	e, _ := billingEnv(t)
	for _, key := range []string{"vectabase_developer_id", "vectabase_user_id", "userId"} {
		dev := e.user(t)
		sub := subscription(newID("sub_"), newID("cus_"), "", "price_other", "active", time.Now().Add(time.Hour))
		sub["metadata"] = map[string]any{key: dev, "vectabase_plan": "team"}
		e.send(t, event(t, newID("evt_"), "customer.subscription.created", sub), "processed")
		if r := e.subOf(t, dev); r.plan != "team" || r.status != "active" {
			t.Fatalf("metadata %s: %+v, want team active", key, r)
		}
	}
}
