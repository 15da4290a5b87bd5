package realtime_test

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/policies"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

// recordTypes are the feed's record types, by table.
var recordTypes = map[string]any{
	"stores":            store.ChangedStore{},
	"products":          store.ChangedProduct{},
	"sales":             store.ChangedSale{},
	"whitelist_systems": store.ChangedWhitelistSystem{},
	"whitelist_users":   store.ChangedWhitelistUser{},
	"whitelist_entries": store.ChangedWhitelistEntry{},
}

// jsonNames returns the JSON names of a struct's fields, sorted.
func jsonNames(v any) []string {
	var names []string
	rt := reflect.TypeOf(v)
	for i := range rt.NumField() {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func camel(snake string) string {
	parts := strings.Split(snake, "_")
	for i := 1; i < len(parts); i++ {
		if parts[i] != "" {
			parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
		}
	}
	return strings.Join(parts, "")
}

// Each record the feed sends carries exactly its table's columns under
// camelCase names, minus every column of policies/sensitive_columns.json,
// its blind index, and any other bytea column: checked against the live
// schema, so a column added later is a decision, not an accident.
func TestRecordsAreTheTablesColumnsMinusSecrets(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	sensitive, err := policies.SensitiveColumns()
	if err != nil {
		t.Fatal(err)
	}
	hidden := map[string]bool{}
	for _, c := range sensitive {
		hidden[c.Table+"."+c.Column] = true
		if c.BlindIndex != "" {
			hidden[c.Table+"."+c.BlindIndex] = true
		}
	}
	for table, rec := range recordTypes {
		rows, err := db.Pool.Query(context.Background(),
			`SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1`, table)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for rows.Next() {
			var col, typ string
			if err := rows.Scan(&col, &typ); err != nil {
				t.Fatal(err)
			}
			if hidden[table+"."+col] || typ == "bytea" {
				continue
			}
			want = append(want, camel(col))
		}
		rows.Close()
		got := jsonNames(rec)
		slices.Sort(want)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s record fields (-want +got):\n%s", table, diff)
		}
	}
}

// The record each trigger announces has exactly the keys of the feed's
// record type for its table: a typo in the migration would otherwise show
// as a field that is always null.
func TestAnnouncedRecordsMatchTheRecordTypes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.URL(t)
	db := pgtest.Open(t, url)
	listener, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(ctx)
	if _, err := listener.Exec(ctx, "LISTEN vectabase_changes"); err != nil {
		t.Fatal(err)
	}
	owner, storeID, product, system, devProduct := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	ct := append([]byte{1}, make([]byte, 40)...) // shaped like keyring ciphertext, to pass the columns' checks
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO users (id, email) VALUES ($1, $2)`, []any{owner, owner + "@example.com"}},
		{`INSERT INTO stores (id, owner_id, name, slug, description, logo_url) VALUES ($1, $2, 'n', $3, 'd', 'l')`, []any{storeID, owner, "s-" + storeID}},
		{`INSERT INTO products (id, store_id, name, description, price_cents, roblox_asset_id) VALUES ($1, $2, 'n', 'd', 1, 7)`, []any{product, storeID}},
		{`INSERT INTO sales (product_id, store_id, buyer_id, buyer_email, roblox_user_id, amount_cents) VALUES ($1, $2, $3, 'b@example.com', 7, 1)`, []any{product, storeID, owner}},
		{`INSERT INTO whitelist_systems (id, owner_id, store_id, name, description, max_users) VALUES ($1, $2, $3, 'n', 'd', 5)`, []any{system, owner, storeID}},
		{`INSERT INTO whitelist_users (system_id, roblox_user_id, roblox_username, discord_id, license_key, license_key_bidx, expires_at) VALUES ($1, 7, 'u', 'd', $2, $3, now())`, []any{system, ct, make([]byte, 32)}},
		{`INSERT INTO developer_products (id, developer_id, name) VALUES ($1, $2, 'p')`, []any{devProduct, owner}},
		{`INSERT INTO whitelist_entries (developer_product_id, roblox_user_id, license_key, license_key_bidx) VALUES ($1, 7, $2, $3)`, []any{devProduct, ct, make([]byte, 32)}},
	} {
		if _, err := db.Pool.Exec(ctx, q.sql, q.args...); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}
	seen := map[string]bool{}
	for len(seen) < len(recordTypes) {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		n, err := listener.WaitForNotification(wctx)
		cancel()
		if err != nil {
			t.Fatalf("waiting for notifications (seen %v): %v", seen, err)
		}
		var p struct {
			Table  string
			Record map[string]json.RawMessage
		}
		if err := json.Unmarshal([]byte(n.Payload), &p); err != nil {
			t.Fatal(err)
		}
		var got []string
		for k := range p.Record {
			got = append(got, k)
		}
		slices.Sort(got)
		if diff := cmp.Diff(jsonNames(recordTypes[p.Table]), got); diff != "" {
			t.Errorf("%s announced record keys (-want +got):\n%s", p.Table, diff)
		}
		seen[p.Table] = true
	}
}
