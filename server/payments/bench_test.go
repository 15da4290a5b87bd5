package payments_test

import (
	"testing"
	"time"
)

// BenchmarkWebhook measures one signed delivery through the whole app:
// an acknowledged unknown type (signature, claim of the event id), a
// checkout that records a sale and a transaction (three encryptions, two
// blind indexes, an advisory lock), and a duplicate delivery (refused by the
// event ledger). Compare the three: the first is the floor the others add to.
//
//	go test ./server/payments -run XXX -bench Webhook -benchtime 300x -count 5
func BenchmarkWebhook(b *testing.B) {
	e := webhookEnv(b)
	s := newShopTB(b, e)
	b.Run("unknown-type", func(b *testing.B) {
		payloads := make([][]byte, b.N)
		for i := range payloads {
			payloads[i] = event(b, newID("evt_"), "customer.created", map[string]any{"id": newID("cus_")})
		}
		b.ResetTimer()
		for i := range b.N {
			if r := e.deliver(b, payloads[i], sign(payloads[i], testWebhookSecret, time.Now())); r.Status != 200 {
				b.Fatalf("delivery = %d %s", r.Status, r.Raw)
			}
		}
	})
	b.Run("checkout", func(b *testing.B) {
		payloads := make([][]byte, b.N)
		for i := range payloads {
			payloads[i] = event(b, newID("evt_"), "checkout.session.completed", s.session(newID("cs_test_"), newID("pi_")))
		}
		b.ResetTimer()
		for i := range b.N {
			if r := e.deliver(b, payloads[i], sign(payloads[i], testWebhookSecret, time.Now())); r.Status != 200 || r.Body["result"] != "processed" {
				b.Fatalf("delivery = %d %s", r.Status, r.Raw)
			}
		}
	})
	b.Run("duplicate", func(b *testing.B) {
		payload := event(b, newID("evt_"), "checkout.session.completed", s.session(newID("cs_test_"), newID("pi_")))
		e.deliver(b, payload, sign(payload, testWebhookSecret, time.Now()))
		b.ResetTimer()
		for range b.N {
			if r := e.deliver(b, payload, sign(payload, testWebhookSecret, time.Now())); r.Status != 200 || r.Body["result"] != "duplicate" {
				b.Fatalf("delivery = %d %s", r.Status, r.Raw)
			}
		}
	})
}
