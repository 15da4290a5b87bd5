package realtime_test

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vectabase/vectabase/policies"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

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
	records := map[string]any{
		"stores":            store.ChangedStore{},
		"products":          store.ChangedProduct{},
		"sales":             store.ChangedSale{},
		"whitelist_systems": store.ChangedWhitelistSystem{},
		"whitelist_users":   store.ChangedWhitelistUser{},
	}
	for table, rec := range records {
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
		var got []string
		rt := reflect.TypeOf(rec)
		for i := range rt.NumField() {
			name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
			got = append(got, name)
		}
		slices.Sort(want)
		slices.Sort(got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s record fields (-want +got):\n%s", table, diff)
		}
	}
}
