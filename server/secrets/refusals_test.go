package secrets_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/vault/audit"
)

// 10,000 anonymous refusals (a missing token on a 1000-character secret
// name, a bad bearer token) write no audit row each: once flushed, at most a
// handful of aggregate rows (one per address and minute) whose counts add up
// to 10,000. Past the per-address limit the refusals answer 429 with
// Retry-After, in the contract's error body. (A signed-in caller refused by
// the policy is still audited row by row: TestSecretsAPI.)
func TestAnonymousRefusalsAreAggregated(t *testing.T) {
	t.Parallel()
	const limit, total = 100, 10000
	e := newEnvConfig(t, server.Config{Refusals: server.RefusalConfig{LimitPerMinute: limit}})
	e.srv.Refusals().SetRecorder(e.al)
	before := e.auditCount()
	long := "/api/secrets/" + strings.Repeat("n", 1000)
	statuses := map[int]int{}
	for i := range total {
		req := httptest.NewRequest("GET", long, nil)
		if i%2 == 1 {
			req.Header.Set("Authorization", "Bearer not-a-token")
		}
		resp, err := e.srv.App().Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		statuses[resp.StatusCode]++
		if resp.StatusCode == 429 {
			var b server.ErrorBody
			_ = json.NewDecoder(resp.Body).Decode(&b)
			if b.Error != vectabase.ERATELIMITED || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("throttled refusal = %+v Retry-After %q, want RATE_LIMITED with Retry-After", b, resp.Header.Get("Retry-After"))
			}
		}
		resp.Body.Close()
	}
	if statuses[401] < limit || statuses[429] == 0 || statuses[401]+statuses[429] != total {
		t.Fatalf("statuses = %v, want %d refusals: 401 up to the limit of %d per minute, then 429", statuses, total, limit)
	}
	if got := e.auditCount(); got != before {
		t.Fatalf("%d anonymous refusals wrote %d audit rows before the flush, want 0", total, got-before)
	}
	if sum := refusalsTotal(t, e); sum != total {
		t.Errorf("vectabase_refusals_total = %v, want %d", sum, total)
	}

	e.srv.Refusals().Flush(context.Background(), true)
	rows, err := e.db.Pool.Query(context.Background(),
		`SELECT (details->>'count')::int, resource_id FROM audit_logs WHERE action = $1`, server.ActionRefused)
	if err != nil {
		t.Fatal(err)
	}
	n, counted := 0, 0
	for rows.Next() {
		var c int
		var addr string
		if err := rows.Scan(&c, &addr); err != nil {
			t.Fatal(err)
		}
		n++
		counted += c
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	// One address; the run may straddle a minute boundary or two.
	if n < 1 || n > 3 || counted != total {
		t.Fatalf("aggregate rows = %d counting %d, want 1 to 3 rows counting %d", n, counted, total)
	}
	if got := e.auditCount(); got-before != n {
		t.Fatalf("audit rows after the flush = %d, want only the %d aggregates", got-before, n)
	}
}

// refusalsTotal sums vectabase_refusals_total over its reasons.
func refusalsTotal(t *testing.T, e *env) float64 {
	t.Helper()
	mfs, err := e.h.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == "vectabase_refusals_total" {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// With the audit writer blocked (an outside transaction holds the chain
// head's row lock), secret reads answer 503 UNAVAILABLE in the contract's
// body, without their value, instead of waiting for the lock; once it goes,
// reads succeed again.
func TestBlockedAuditWriterAnswers503(t *testing.T) {
	t.Parallel()
	e := newEnvConfig(t, server.Config{}, audit.WithEnqueueTimeout(200*time.Millisecond))
	_, admin := e.user("admin", e.h.Password())
	value := e.h.Secret()
	if r := e.do("PUT", "/api/secrets/blocked", map[string]any{"value": value}, admin...); r.Status != 201 {
		t.Fatalf("PUT = %d %s", r.Status, r.Body)
	}
	ctx := context.Background()
	tx, err := e.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM audit_chain_head WHERE id = 1 FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	// The first read's row waits behind the lock; once the writer has been
	// stuck past the enqueue timeout, reads are refused at once.
	first := make(chan resp, 1)
	go func() { first <- e.reveal("GET", "/api/secrets/blocked", value, admin...) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := e.do("GET", "/api/secrets/blocked", nil, admin...)
		if r.Status == 503 {
			if errCode(r) != vectabase.EUNAVAILABLE || strings.Contains(string(r.Body), value) {
				t.Fatalf("blocked read = %s, want UNAVAILABLE without the value", r.Body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reads never answered 503 while the audit writer was blocked (last %d)", r.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-first; r.Status != 200 && r.Status != 503 {
		t.Errorf("the read held behind the lock = %d, want 200 or 503", r.Status)
	}
	for {
		r := e.reveal("GET", "/api/secrets/blocked", value, admin...)
		if r.Status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reads did not recover after the lock went (last %d %s)", r.Status, r.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// BenchmarkRefusal compares, in one run, what an anonymous refusal costs
// now (counted in memory, no audit row) with a refusal that is audited row
// by row (a signed-in user the policy refuses): the ratio of the two is
// the figure to read, not either time alone.
func BenchmarkRefusal(b *testing.B) {
	e := newEnvConfig(b, server.Config{})
	_, plain := e.user("user", e.h.Password())
	run := func(b *testing.B, header ...string) {
		for b.Loop() {
			req := httptest.NewRequest("GET", "/api/secrets/some-name", nil)
			for i := 0; i+1 < len(header); i += 2 {
				req.Header.Set(header[i], header[i+1])
			}
			resp, err := e.srv.App().Test(req, -1)
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
		}
	}
	b.Run("anonymous_aggregated", func(b *testing.B) { run(b) })
	b.Run("signed_in_denied_audited", func(b *testing.B) { run(b, plain...) })
}
