package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

// BenchmarkPoolModes is the cost of DB_PGBOUNCER: one small parameterised
// query (the shape of an API key or session lookup) on a direct pool with
// pgx's prepared-statement cache (the default, the baseline), on a direct
// pool in the exec mode DB_PGBOUNCER selects, and through a real PgBouncer
// in transaction mode. Each round runs the query once on each pool, in a
// rotating order, so that a busy machine slows all three alike; it reports
// each mode's median and its ratio to the baseline's:
//
//	go test ./store -run '^$' -bench BenchmarkPoolModes -benchtime 3000x
func BenchmarkPoolModes(b *testing.B) {
	direct := pgtest.URL(b)
	pooled := pgtest.PgBouncer(b, direct, "")
	ctx := context.Background()
	modes := []struct {
		name string
		cfg  store.Config
	}{
		{"direct-prepared", store.Config{URL: direct, MaxConns: 2, SlowQueryMS: -1}},
		{"direct-exec", store.Config{URL: direct, MaxConns: 2, PgBouncer: true, SlowQueryMS: -1}},
		{"pgbouncer-exec", store.Config{URL: pooled, MaxConns: 2, PgBouncer: true, SlowQueryMS: -1}},
	}
	dbs := make([]*store.DB, len(modes))
	for i, m := range modes {
		db, err := store.Open(ctx, m.cfg, zerolog.Nop(), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		dbs[i] = db
	}
	took := make([][]time.Duration, len(modes))
	round := 0
	for b.Loop() {
		for k := range modes {
			i := (round + k) % len(modes)
			var n int
			start := time.Now()
			if err := dbs[i].Pool.QueryRow(ctx, "SELECT count(*) FROM users WHERE email = $1", "a@example.com").Scan(&n); err != nil {
				b.Fatal(err)
			}
			took[i] = append(took[i], time.Since(start))
		}
		round++
	}
	median := func(d []time.Duration) float64 {
		s := slices.Clone(d)
		slices.Sort(s)
		return float64(s[len(s)/2].Microseconds())
	}
	base := median(took[0])
	for i, m := range modes {
		b.ReportMetric(median(took[i]), m.name+"-median-µs")
		if i > 0 && base > 0 {
			b.ReportMetric(median(took[i])/base, m.name+"/prepared")
		}
	}
}
