package audit_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
	"github.com/vectabase/vectabase/vault/audit"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func newLog(t *testing.T) (*audit.Log, *store.DB, *prometheus.Registry) {
	t.Helper()
	db := pgtest.New(t)
	kr := keyringtest.New(t, db.Pool)
	reg := prometheus.NewRegistry()
	l := audit.New(db, kr, zerolog.Nop(), reg)
	t.Cleanup(l.Close)
	return l, db, reg
}

func event(i int) vectabase.AuditEvent {
	return vectabase.AuditEvent{
		ActorType: vectabase.ActorUser, ActorID: fmt.Sprintf("user-%d", i),
		Action: "secret.read", ResourceType: "secret", ResourceID: fmt.Sprintf("s%d", i),
		Result: vectabase.ResultAllowed, IP: "10.0.0.1", RequestID: "req",
		Details: map[string]any{"version": i, "ratio": 0.25, "note": "x\x00y\xff ü <&>", "big": 1e21,
			"tiny": 1.5e-7, "negzero": math.Copysign(0, -1), "huge": uint64(12345678901234567890),
			"nested": []any{map[string]any{"b": 2.50, "a": nil}, true}},
	}
}

// record writes n events from n goroutines at once and returns the ids of
// the rows in order.
func record(t *testing.T, l *audit.Log, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- l.Record(context.Background(), event(i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Record err = %v, want nil", err)
		}
	}
}

func verify(t *testing.T, l *audit.Log) audit.VerifyResult {
	t.Helper()
	res, err := l.Verify(context.Background())
	if err != nil {
		t.Fatalf("Verify err = %v, want nil", err)
	}
	return res
}

func ids(t *testing.T, db *store.DB) []int64 {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT id FROM audit_logs ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		out = append(out, id)
	}
	return out
}

func exec(t *testing.T, db *store.DB, sql string, args ...any) {
	t.Helper()
	if _, err := db.Pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func TestEmptyChainVerifies(t *testing.T) {
	t.Parallel()
	l, _, _ := newLog(t)
	if res := verify(t, l); !res.OK || res.Rows != 0 {
		t.Fatalf("Verify() = %+v, want OK with 0 rows", res)
	}
}

func TestConcurrentRecordsFormOneChain(t *testing.T) {
	t.Parallel()
	l, db, _ := newLog(t)
	record(t, l, 200)
	record(t, l, 50)
	if res := verify(t, l); !res.OK || res.Rows != 250 {
		t.Fatalf("Verify() = %+v, want OK with 250 rows", res)
	}
	// Group commit: far fewer transactions than events. Each batch shares one
	// head update, so count distinct commit times as a proxy is brittle; the
	// xmin of rows written in one transaction is the same.
	var txs int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(DISTINCT xmin::text) FROM audit_logs`).Scan(&txs); err != nil {
		t.Fatal(err)
	}
	if txs >= 250 {
		t.Errorf("250 concurrent events took %d transactions, want batching", txs)
	}
	t.Logf("250 events in %d transactions", txs)
}

func TestTamperingNamesFirstBrokenRow(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		tamper func(t *testing.T, db *store.DB, ids []int64)
		broken func(ids []int64) int64
	}{
		{"update action", func(t *testing.T, db *store.DB, ids []int64) {
			exec(t, db, `UPDATE audit_logs SET action = 'secret.list' WHERE id = $1`, ids[4])
		}, func(ids []int64) int64 { return ids[4] }},
		{"update details", func(t *testing.T, db *store.DB, ids []int64) {
			exec(t, db, `UPDATE audit_logs SET details = '{"version": 99}' WHERE id = $1`, ids[6])
		}, func(ids []int64) int64 { return ids[6] }},
		{"update time", func(t *testing.T, db *store.DB, ids []int64) {
			exec(t, db, `UPDATE audit_logs SET occurred_at = occurred_at - interval '1 day' WHERE id = $1`, ids[2])
		}, func(ids []int64) int64 { return ids[2] }},
		{"update ip", func(t *testing.T, db *store.DB, ids []int64) {
			exec(t, db, `UPDATE audit_logs SET ip_address = '10.9.9.9' WHERE id = $1`, ids[3])
		}, func(ids []int64) int64 { return ids[3] }},
		{"delete middle", func(t *testing.T, db *store.DB, ids []int64) {
			exec(t, db, `DELETE FROM audit_logs WHERE id = $1`, ids[5])
		}, func(ids []int64) int64 { return ids[6] }},
		{"delete first", func(t *testing.T, db *store.DB, ids []int64) {
			exec(t, db, `DELETE FROM audit_logs WHERE id = $1`, ids[0])
		}, func(ids []int64) int64 { return ids[1] }},
		{"delete last", func(t *testing.T, db *store.DB, ids []int64) {
			exec(t, db, `DELETE FROM audit_logs WHERE id = $1`, ids[len(ids)-1])
		}, func(ids []int64) int64 { return ids[len(ids)-1] }},
		{"delete last three", func(t *testing.T, db *store.DB, ids []int64) {
			exec(t, db, `DELETE FROM audit_logs WHERE id >= $1`, ids[len(ids)-3])
		}, func(ids []int64) int64 { return ids[len(ids)-1] }},
		{"delete last and rewind head", func(t *testing.T, db *store.DB, ids []int64) {
			exec(t, db, `DELETE FROM audit_logs WHERE id = $1`, ids[len(ids)-1])
			exec(t, db, `UPDATE audit_chain_head SET last_id = $1, row_count = row_count - 1,
				last_hash = (SELECT hash FROM audit_logs WHERE id = $1)`, ids[len(ids)-2])
		}, func(ids []int64) int64 { return ids[len(ids)-2] }},
		{"delete everything but the head", func(t *testing.T, db *store.DB, ids []int64) {
			exec(t, db, `DELETE FROM audit_logs`)
		}, func(ids []int64) int64 { return ids[len(ids)-1] }},
		{"swap two rows' ids", func(t *testing.T, db *store.DB, ids []int64) {
			exec(t, db, `UPDATE audit_logs SET id = -1 WHERE id = $1`, ids[3])
			exec(t, db, `UPDATE audit_logs SET id = $1 WHERE id = $2`, ids[3], ids[7])
			exec(t, db, `UPDATE audit_logs SET id = $1 WHERE id = -1`, ids[7])
		}, func(ids []int64) int64 { return ids[3] }},
		{"move a row to the end", func(t *testing.T, db *store.DB, ids []int64) {
			exec(t, db, `UPDATE audit_logs SET id = $1 WHERE id = $2`, ids[len(ids)-1]+100, ids[5])
		}, func(ids []int64) int64 { return ids[6] }},
		{"append a forged row", func(t *testing.T, db *store.DB, ids []int64) {
			last := ids[len(ids)-1]
			exec(t, db, `INSERT INTO audit_logs (id, actor_type, action, result, prev_hash, hash)
				SELECT $1, 'user', 'secret.read', 'allowed', hash, hash FROM audit_logs WHERE id = $2`, last+1, last)
		}, func(ids []int64) int64 { return ids[len(ids)-1] + 1 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, db, _ := newLog(t)
			for i := range 10 {
				if err := l.Record(context.Background(), event(i)); err != nil {
					t.Fatal(err)
				}
			}
			before := ids(t, db)
			if res := verify(t, l); !res.OK || res.Rows != 10 {
				t.Fatalf("Verify() before tampering = %+v, want OK with 10 rows", res)
			}
			tc.tamper(t, db, before)
			res := verify(t, l)
			if res.OK {
				t.Fatalf("Verify() after %s = %+v, want not OK", tc.name, res)
			}
			if tc.broken != nil && res.FirstBroken != tc.broken(before) {
				t.Errorf("Verify() after %s: FirstBroken = %d, want %d (%s)", tc.name, res.FirstBroken, tc.broken(before), res.Reason)
			}
			if !strings.Contains(res.Reason, fmt.Sprint(res.FirstBroken)) {
				t.Errorf("Reason %q does not name row %d", res.Reason, res.FirstBroken)
			}
		})
	}
}

func TestUnwritableTableFailsRecord(t *testing.T) {
	t.Parallel()
	l, db, reg := newLog(t)
	exec(t, db, `CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'audit_logs is read-only'; END $$`)
	exec(t, db, `CREATE TRIGGER refuse BEFORE INSERT ON audit_logs FOR EACH STATEMENT EXECUTE FUNCTION refuse()`)
	err := l.Record(context.Background(), event(1))
	if err == nil {
		t.Fatal("Record on an unwritable table err = nil, want an error")
	}
	if got := testutil.ToFloat64(counter(t, reg, "vectabase_audit_write_failures_total")); got != 1 {
		t.Errorf("vectabase_audit_write_failures_total = %v, want 1", got)
	}
	// Writing works again once the table is writable, and the chain holds.
	exec(t, db, `DROP TRIGGER refuse ON audit_logs`)
	if err := l.Record(context.Background(), event(2)); err != nil {
		t.Fatalf("Record err = %v, want nil", err)
	}
	if res := verify(t, l); !res.OK || res.Rows != 1 {
		t.Fatalf("Verify() = %+v, want OK with 1 row", res)
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			c := prometheus.NewCounter(prometheus.CounterOpts{Name: name})
			c.Add(mf.GetMetric()[0].GetCounter().GetValue())
			return c
		}
	}
	t.Fatalf("metric %s not registered", name)
	return nil
}

func TestRecordAfterCloseFails(t *testing.T) {
	t.Parallel()
	l, _, _ := newLog(t)
	if err := l.Record(context.Background(), event(1)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if err := l.Record(context.Background(), event(2)); err == nil {
		t.Fatal("Record after Close err = nil, want ErrClosed")
	}
}

func TestQueryFiltersAndPages(t *testing.T) {
	t.Parallel()
	l, _, _ := newLog(t)
	ctx := context.Background()
	for i := range 7 {
		ev := event(i)
		if i%2 == 1 {
			ev.Result = vectabase.ResultDenied
		}
		if err := l.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	var got []int64
	cursor := ""
	for range 10 {
		p, err := l.Query(ctx, audit.Filter{Result: vectabase.ResultAllowed, Limit: 3, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Items {
			if e.Result != vectabase.ResultAllowed {
				t.Errorf("entry %d result %q, want allowed", e.ID, e.Result)
			}
			got = append(got, e.ID)
		}
		if p.NextCursor == nil {
			break
		}
		cursor = *p.NextCursor
	}
	if len(got) != 4 {
		t.Fatalf("paged through %d allowed entries, want 4: %v", len(got), got)
	}
	for i := 1; i < len(got); i++ {
		if got[i] >= got[i-1] {
			t.Fatalf("entries not newest first: %v", got)
		}
	}
	p, err := l.Query(ctx, audit.Filter{ActorID: "user-3", Since: time.Now().Add(-time.Hour)})
	if err != nil || len(p.Items) != 1 || p.Items[0].ResourceID != "s3" || p.Items[0].IPAddress != "10.0.0.1" {
		t.Fatalf("Query(actor user-3) = %+v, %v; want one entry on s3", p, err)
	}
	if _, err := l.Query(ctx, audit.Filter{Cursor: "garbage!"}); vectabase.ErrorCode(err) != vectabase.EVALIDATION {
		t.Errorf("Query(bad cursor) err = %v, want VALIDATION_FAILED", err)
	}
	if _, err := l.Query(ctx, audit.Filter{Limit: 100000}); vectabase.ErrorCode(err) != vectabase.EVALIDATION {
		t.Errorf("Query(huge limit) err = %v, want VALIDATION_FAILED", err)
	}
}

// TestTwoInstancesShareOneChain: two server instances (two Logs with their
// own pools and writers) on one database append to one intact chain.
func TestTwoInstancesShareOneChain(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	db1, db2 := pgtest.Open(t, url), pgtest.Open(t, url)
	kr1 := keyringtest.New(t, db1.Pool)
	// The second instance loads the same keysets with the same KEK: reuse
	// the first's keyring, as both would after Open on one store.
	l1 := audit.New(db1, kr1, zerolog.Nop(), nil)
	l2 := audit.New(db2, kr1, zerolog.Nop(), nil)
	t.Cleanup(l1.Close)
	t.Cleanup(l2.Close)
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := l1
			if i%2 == 1 {
				l = l2
			}
			if err := l.Record(context.Background(), event(i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if res := verify(t, l2); !res.OK || res.Rows != 100 {
		t.Fatalf("Verify() = %+v, want OK with 100 rows", res)
	}
}

// A writer appends after the head it remembers in one statement; when
// another instance moved the head meanwhile, nothing is written by that
// statement and the batch goes after the new head instead. Alternating
// single events between two instances makes every write but the first of
// each a stale-head case, single and batched.
func TestStaleHeadFallsBack(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	db1, db2 := pgtest.Open(t, url), pgtest.Open(t, url)
	kr := keyringtest.New(t, db1.Pool)
	l1 := audit.New(db1, kr, zerolog.Nop(), nil)
	l2 := audit.New(db2, kr, zerolog.Nop(), nil)
	t.Cleanup(l1.Close)
	t.Cleanup(l2.Close)
	for i := range 10 {
		l := l1
		if i%2 == 1 {
			l = l2
		}
		if i < 6 {
			if err := l.Record(context.Background(), event(i)); err != nil {
				t.Fatal(err)
			}
		} else {
			record(t, l, 5)
		}
	}
	if res := verify(t, l1); !res.OK || res.Rows != 26 {
		t.Fatalf("Verify() = %+v, want OK with 26 rows", res)
	}
	got := ids(t, db1)
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("ids not ascending: %v", got)
		}
	}
	// Rows added by the column default later still get fresh ids.
	var next int64
	if err := db1.Pool.QueryRow(context.Background(), `SELECT nextval(pg_get_serial_sequence('audit_logs', 'id'))`).Scan(&next); err != nil {
		t.Fatal(err)
	}
	if next <= got[len(got)-1] {
		t.Fatalf("sequence hands out %d, at or below the last id %d", next, got[len(got)-1])
	}
}
