package retention_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server/retention"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

type events struct {
	mu  sync.Mutex
	evs []vectabase.AuditEvent
}

func (e *events) Record(_ context.Context, ev vectabase.AuditEvent) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evs = append(e.evs, ev)
	return nil
}

func exec(t *testing.T, db *store.DB, sql string, args ...any) {
	t.Helper()
	if _, err := db.Pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func count(t *testing.T, db *store.DB, sql string) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// A pass deletes, in batches, exactly the rows past each retention period
// (old request logs, old processed Stripe events, sessions expired or
// revoked a day ago, stale throttle counters, expired OAuth states), keeps
// everything younger and every audit row, counts what it deleted per table,
// and does nothing while another instance holds the advisory lock.
func TestRetentionPass(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.URL(t)
	db := pgtest.Open(t, url)

	exec(t, db, `INSERT INTO api_request_logs (request_id, method, path, status_code, latency_ms, created_at)
		SELECT gen_random_uuid(), 'POST', '/api/developer/verify', 200, 1, now() - interval '31 days' FROM generate_series(1, 2500)`)
	exec(t, db, `INSERT INTO api_request_logs (request_id, method, path, status_code, latency_ms, created_at)
		SELECT gen_random_uuid(), 'POST', '/api/developer/verify', 200, 1, now() - interval '29 days' FROM generate_series(1, 3)`)
	exec(t, db, `INSERT INTO stripe_events (id, type, result, processed_at) VALUES
		('evt_old1', 'charge.refunded', 'processed', now() - interval '91 days'),
		('evt_old2', 'account.updated', 'ignored', now() - interval '100 days'),
		('evt_new', 'charge.refunded', 'processed', now() - interval '89 days')`)
	u, err := db.CreateUser(ctx, store.NewUser{Email: "r@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	exec(t, db, `INSERT INTO sessions (user_id, family_id, refresh_token_hash, expires_at, revoked_at) VALUES
		($1, gen_random_uuid(), 'h1', now() - interval '2 days', NULL),
		($1, gen_random_uuid(), 'h2', now() + interval '20 days', now() - interval '2 days'),
		($1, gen_random_uuid(), 'h3', now() - interval '1 hour', NULL),
		($1, gen_random_uuid(), 'h4', now() + interval '20 days', now() - interval '1 hour'),
		($1, gen_random_uuid(), 'h5', now() + interval '20 days', NULL)`, u.ID)
	exec(t, db, `INSERT INTO auth_throttle (bucket, window_start, hits) VALUES
		('ip:old', now() - interval '2 hours', 5), ('ip:new', now(), 5)`)
	exec(t, db, `INSERT INTO oauth_used_states (nonce, expires_at) VALUES ('old', now() - interval '1 minute'), ('new', now() + interval '5 minutes')`)
	exec(t, db, `INSERT INTO api_request_log_segments (segment_id, committed_seq, updated_at) VALUES
		(gen_random_uuid(), 7, now() - interval '31 days'), (gen_random_uuid(), 7, now())`)
	exec(t, db, `INSERT INTO audit_logs (occurred_at, actor_type, action, result) VALUES (now() - interval '5 years', 'system', 'x', 'success')`)

	reg := prometheus.NewRegistry()
	aud := &events{}
	cfg := retention.Config{Interval: time.Hour, APIRequestLogs: retention.Duration(30 * 24 * time.Hour),
		StripeEvents: retention.Duration(90 * 24 * time.Hour), Sessions: retention.Duration(24 * time.Hour),
		Throttle: retention.Duration(time.Hour), BatchSize: 1000, BatchPause: time.Millisecond}
	w, err := retention.New(cfg, url, aud, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}

	// Another instance holds the lock: this one skips the pass.
	other, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	if _, err := other.Exec(ctx, `SELECT pg_advisory_lock(hashtext('vectabase.retention'))`); err != nil {
		t.Fatal(err)
	}
	if _, err := w.RunOnce(ctx); !errors.Is(err, retention.ErrBusy) {
		t.Fatalf("RunOnce while another instance holds the lock err = %v, want ErrBusy", err)
	}
	if n := count(t, db, `SELECT count(*) FROM api_request_logs`); n != 2503 {
		t.Fatalf("a skipped pass deleted rows: %d request logs left, want 2503", n)
	}
	if _, err := other.Exec(ctx, `SELECT pg_advisory_unlock(hashtext('vectabase.retention'))`); err != nil {
		t.Fatal(err)
	}

	got, err := w.RunOnce(ctx)
	if err != nil {
		t.Fatalf("RunOnce err = %v, want nil", err)
	}
	want := map[string]int64{"api_request_logs": 2500, "stripe_events": 2, "sessions": 2, "auth_throttle": 1, "oauth_used_states": 1, "api_request_log_segments": 1}
	for table, n := range want {
		if got[table] != n {
			t.Errorf("deleted from %s = %d, want %d", table, got[table], n)
		}
		if m := testutil.ToFloat64(mustCounter(t, reg, table)); m != float64(n) {
			t.Errorf("vectabase_retention_deleted_total{table=%q} = %v, want %d", table, m, n)
		}
	}
	for _, c := range []struct {
		sql  string
		want int
	}{
		{`SELECT count(*) FROM api_request_logs`, 3},
		{`SELECT count(*) FROM stripe_events WHERE id = 'evt_new'`, 1},
		{`SELECT count(*) FROM sessions WHERE refresh_token_hash IN ('h3', 'h4', 'h5')`, 3},
		{`SELECT count(*) FROM sessions`, 3},
		{`SELECT count(*) FROM auth_throttle WHERE bucket = 'ip:new'`, 1},
		{`SELECT count(*) FROM oauth_used_states WHERE nonce = 'new'`, 1},
		{`SELECT count(*) FROM api_request_log_segments`, 1},
		{`SELECT count(*) FROM audit_logs`, 1},
	} {
		if n := count(t, db, c.sql); n != c.want {
			t.Errorf("%s = %d, want %d", c.sql, n, c.want)
		}
	}
	if len(aud.evs) != 1 || aud.evs[0].Action != "retention.prune" || aud.evs[0].ActorType != vectabase.ActorSystem {
		t.Errorf("audit events = %+v, want one retention.prune by system", aud.evs)
	}
	// A second pass finds nothing and audits nothing.
	if got, err := w.RunOnce(ctx); err != nil || len(got) == 0 {
		t.Fatalf("second RunOnce = %v, %v", got, err)
	}
	if len(aud.evs) != 1 {
		t.Errorf("a pass that deleted nothing was audited: %+v", aud.evs)
	}
}

func mustCounter(t *testing.T, reg *prometheus.Registry, table string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	for _, mf := range mfs {
		if mf.GetName() != "vectabase_retention_deleted_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == table {
				c.Add(m.GetCounter().GetValue())
			}
		}
	}
	return c
}

// Durations read whole days as well as Go durations.
func TestDurationReadsDays(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{"30d": 30 * 24 * time.Hour, "90d": 90 * 24 * time.Hour, "12h": 12 * time.Hour, "0": 0} {
		var d retention.Duration
		if err := d.UnmarshalText([]byte(in)); err != nil || time.Duration(d) != want {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", in, time.Duration(d), err, want)
		}
	}
	for _, bad := range []string{"", "d", "-1d", "xd", "1w"} {
		var d retention.Duration
		if err := d.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("UnmarshalText(%q) = %v, want an error", bad, time.Duration(d))
		}
	}
}

// FuzzDuration: any text either parses to a non-negative duration or is
// refused; it never panics.
func FuzzDuration(f *testing.F) {
	for _, s := range []string{"30d", "90d", "12h", "0", "", "d", "-1d", "99999999999999d", "1h30m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var d retention.Duration
		if err := d.UnmarshalText([]byte(s)); err == nil && d < 0 {
			t.Fatalf("UnmarshalText(%q) = %v, want a non-negative duration or an error", s, time.Duration(d))
		}
	})
}
