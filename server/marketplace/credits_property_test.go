package marketplace_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/server/marketplace"
	"github.com/vectabase/vectabase/store"
)

// TestProperty22_CreditsLedgerBalanceEqualsGrantsMinusDistinctConsumptions
// claims: for any interleaving of concurrent consumptions (over HTTP, with
// or without an Idempotency-Key, retries included, some with another body)
// and grants, run by real goroutines against a real database, the balance
// ends equal to what was granted minus the units of the distinct
// consumptions answered 201, never goes below zero, each Idempotency-Key
// consumes at most once (every 201 for it names the same usage), and
// every answer is 201, 402 INSUFFICIENT_CREDITS or 409 (key reused with
// another body). 100 iterations (rapid's default), each small.
func TestProperty22_CreditsLedgerBalanceEqualsGrantsMinusDistinctConsumptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dev := e.user(t)
	_, key := e.newKey(t, dev, 1_000_000, marketplace.ScopeObfuscate)
	repo := store.NewMarketplace(e.db, e.kr)
	ctx := context.Background()
	iteration := 0
	rapid.Check(t, func(rt *rapid.T) {
		iteration++
		type op struct {
			grant int    // > 0: a grant of this many units
			units int    // a consumption of this many units
			idem  string // its Idempotency-Key ("" none)
		}
		initial := rapid.IntRange(0, 20).Draw(rt, "initialGrant")
		ops := rapid.SliceOfN(rapid.Custom(func(rt *rapid.T) op {
			if rapid.IntRange(0, 4).Draw(rt, "isGrant") == 0 {
				return op{grant: rapid.IntRange(1, 10).Draw(rt, "grant")}
			}
			o := op{units: rapid.IntRange(1, 8).Draw(rt, "units")}
			if k := rapid.IntRange(0, 3).Draw(rt, "idem"); k > 0 {
				o.idem = fmt.Sprintf("it%d-k%d", iteration, k) // few keys: retries are common
			}
			return o
		}), 1, 12).Draw(rt, "ops")

		start, err := repo.CreditBalance(ctx, dev)
		if err != nil {
			rt.Fatalf("CreditBalance err = %v", err)
		}
		granted := 0
		if initial > 0 {
			if _, err := repo.GrantCredits(ctx, dev, initial, "test"); err != nil {
				rt.Fatalf("GrantCredits err = %v", err)
			}
			granted += initial
		}
		results := make([]resp, len(ops))
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for i, o := range ops {
			if o.grant > 0 {
				granted += o.grant
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				if o.grant > 0 {
					if _, err := repo.GrantCredits(ctx, dev, o.grant, "test"); err != nil {
						rt.Errorf("GrantCredits err = %v", err)
					}
					return
				}
				req := httptest.NewRequest("POST", "/api/developer/obfuscation/usage", strings.NewReader(fmt.Sprintf(`{"units":%d}`, o.units)))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-API-Key", key)
				if o.idem != "" {
					req.Header.Set("Idempotency-Key", o.idem)
				}
				results[i] = e.do(rt, req)
			}()
		}
		close(gate)
		wg.Wait()

		consumed := map[string]int{} // usage id -> units
		byKey := map[string]string{} // Idempotency-Key -> usage id
		for i, o := range ops {
			if o.grant > 0 {
				continue
			}
			r := results[i]
			switch r.Status {
			case 201:
				id, _ := r.Body["id"].(string)
				units := int(r.Body["units"].(float64))
				if bal := r.Body["balance"].(float64); bal < 0 {
					rt.Fatalf("op %d answered balance %v", i, bal)
				}
				if prev, ok := consumed[id]; ok && prev != units {
					rt.Fatalf("usage %s answered %d and %d units", id, prev, units)
				}
				consumed[id] = units
				if o.idem != "" {
					if prev, ok := byKey[o.idem]; ok && prev != id {
						rt.Fatalf("Idempotency-Key %s consumed twice: usages %s and %s", o.idem, prev, id)
					}
					byKey[o.idem] = id
				}
			case 402:
				if r.Body["error"] != "INSUFFICIENT_CREDITS" {
					rt.Fatalf("op %d = 402 %s", i, r.Raw)
				}
			case 409:
				if o.idem == "" || r.Body["error"] != "CONFLICT" {
					rt.Fatalf("op %d (key %q) = 409 %s", i, o.idem, r.Raw)
				}
			default:
				rt.Fatalf("op %d = %d %s, want 201, 402 or 409", i, r.Status, r.Raw)
			}
		}
		spent := 0
		for _, u := range consumed {
			spent += u
		}
		end, err := repo.CreditBalance(ctx, dev)
		if err != nil {
			rt.Fatalf("CreditBalance err = %v", err)
		}
		if want := start + granted - spent; end != want || end < 0 {
			rt.Fatalf("balance %d, want %d (start %d + granted %d - distinct consumptions %d)", end, want, start, granted, spent)
		}
		var rows int
		if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM obfuscation_usage WHERE developer_id = $1 AND idempotency_key LIKE $2`,
			dev, fmt.Sprintf("it%d-%%", iteration)).Scan(&rows); err != nil {
			rt.Fatal(err)
		}
		if rows != len(byKey) {
			rt.Fatalf("usage rows with this iteration's Idempotency-Keys = %d, want %d (one per key that consumed)", rows, len(byKey))
		}
	})
}
