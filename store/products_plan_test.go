package store_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

// The listing of every product a viewer may see reads one page through an
// index, whatever the table's size: before migration 00029 it read and
// sorted every product for each page, and the soak's p99 grew with the
// table (issue 18).
func TestProductListingReadsAPageNotTheTable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	u, err := db.CreateUser(ctx, store.NewUser{Email: "seller@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	var storeID string
	if err := db.Pool.QueryRow(ctx, `INSERT INTO stores (owner_id, name, slug) VALUES ($1, 's', 's') RETURNING id`, u.ID).Scan(&storeID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO products (store_id, name, price_cents, is_active)
		SELECT $1, 'p' || g, 100, g % 10 <> 0 FROM generate_series(1, 20000) g`, storeID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `ANALYZE products; ANALYZE stores`); err != nil {
		t.Fatal(err)
	}
	for _, viewer := range []string{"'" + u.ID + "'", "NULL"} {
		var plan []byte
		// A generic plan, as pgx's prepared statement gets after a few runs.
		err := db.InTx(ctx, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL plan_cache_mode = force_generic_plan`); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `PREPARE list_products AS `+store.ListProductsSQL(false)); err != nil {
				return err
			}
			err := tx.QueryRow(ctx, `EXPLAIN (FORMAT JSON) EXECUTE list_products(`+viewer+`, NULL, '`+
				time.Now().Add(time.Hour).UTC().Format(time.RFC3339)+`', '`+uuid.Max.String()+`', 21)`).Scan(&plan)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `DEALLOCATE list_products`)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		var root []struct{ Plan planNode }
		if err := json.Unmarshal(plan, &root); err != nil || len(root) != 1 {
			t.Fatalf("plan %s: %v", plan, err)
		}
		var scans []string
		root[0].Plan.walk(func(n planNode) {
			if n.Relation == "products" {
				scans = append(scans, n.Type+" "+n.Index)
			}
		})
		if len(scans) != 1 || !strings.HasPrefix(scans[0], "Index Scan products_") {
			t.Errorf("viewer %v: products read by %q, want one index scan:\n%s", viewer, scans, plan)
		}
	}
}

// planNode is a node of EXPLAIN (FORMAT JSON).
type planNode struct {
	Type     string     `json:"Node Type"`
	Relation string     `json:"Relation Name"`
	Index    string     `json:"Index Name"`
	Plans    []planNode `json:"Plans"`
}

func (n planNode) walk(fn func(planNode)) {
	fn(n)
	for _, c := range n.Plans {
		c.walk(fn)
	}
}
