package store_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgcluster"
	"github.com/vectabase/vectabase/store/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// syncBuffer is a log sink safe for the pool's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestProperty14_SlowQueriesLoggedAndCounted claims: a statement slower than
// SLOW_QUERY_MS leaves one slow-query log entry (its shape, never its
// parameters) and one counter increment; a faster one leaves neither.
func TestProperty14_SlowQueriesLoggedAndCounted(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	var logs syncBuffer
	reg := prometheus.NewRegistry()
	db, err := store.Open(context.Background(), store.Config{URL: url, SlowQueryMS: 100, MaxConns: 2},
		zerolog.New(&logs), reg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	counter := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "vectabase_db_slow_queries_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		t.Fatal("vectabase_db_slow_queries_total not registered")
		return 0
	}
	const canary = "canary-param-7f3a"
	rapid.Check(t, func(t *rapid.T) {
		slow := rapid.Bool().Draw(t, "slow")
		sleepMS := 0
		if slow {
			sleepMS = rapid.IntRange(120, 160).Draw(t, "sleepMS")
		}
		beforeCount := counter()
		beforeLines := strings.Count(logs.String(), "slow query")
		var out string
		err := db.Pool.QueryRow(context.Background(),
			"SELECT $2::text FROM pg_sleep($1::float8 / 1000)", sleepMS, canary).Scan(&out)
		if err != nil {
			t.Fatal(err)
		}
		gotCount := counter() - beforeCount
		gotLines := strings.Count(logs.String(), "slow query") - beforeLines
		want := 0.0
		if slow {
			want = 1
		}
		if gotCount != want || float64(gotLines) != want {
			t.Fatalf("sleep %d ms: counter +%v, log lines +%d; want %v each", sleepMS, gotCount, gotLines, want)
		}
	})
	if strings.Contains(logs.String(), canary) {
		t.Fatalf("slow-query log holds a parameter value: %s", logs.String())
	}
	if !strings.Contains(logs.String(), `"sql":"SELECT $n::text FROM pg_sleep($n::float8 / ?)"`) {
		t.Fatalf("slow-query log lacks the statement shape: %s", logs.String())
	}
}

func TestQueryShapeDropsLiterals(t *testing.T) {
	t.Parallel()
	got := store.QueryShape("SELECT *\n  FROM users WHERE email = 'a@b.c' AND n > 42 AND id = $1")
	want := "SELECT * FROM users WHERE email = ? AND n > ? AND id = $n"
	if got != want {
		t.Fatalf("QueryShape() = %q, want %q", got, want)
	}
}

// A database that comes up after the server starts is reached by the retry.
func TestOpenRetriesUntilDatabaseIsUp(t *testing.T) {
	t.Parallel()
	if pgtest.Cluster() == nil {
		t.Skip("needs a throwaway cluster (TEST_DATABASE_URL is set)")
	}
	port, err := pgcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir(): its parent is private to root, and the server runs as postgres.
	dir, err := os.MkdirTemp("", "vectabase-retry-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c, err := pgcluster.New(dir+"/data", port)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.PrepareParent(dir); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Init(ctx); err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() {
		time.Sleep(1500 * time.Millisecond)
		started <- c.Start(ctx)
	}()
	t.Cleanup(func() { _ = c.Stop() })

	var logs syncBuffer
	db, err := store.Open(ctx, store.Config{URL: c.URL("postgres"), RetryFirst: 500 * time.Millisecond}, zerolog.New(&logs), nil)
	if err := <-started; err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	if err != nil {
		t.Fatalf("Open() err = %v, want nil after the database came up", err)
	}
	db.Close()
	if !strings.Contains(logs.String(), "database not ready") {
		t.Fatalf("no retry was logged: %s", logs.String())
	}
}

// A database that never comes up ends in one clear error after the tries.
func TestOpenGivesUpWithClearError(t *testing.T) {
	t.Parallel()
	port, err := pgcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := store.Config{
		URL:        "postgres://vectabase_admin:hunter2-secret@127.0.0.1:" + itoa(port) + "/vectabase?sslmode=disable",
		RetryTries: 3, RetryFirst: 50 * time.Millisecond,
	}
	_, err = store.Open(context.Background(), cfg, zerolog.Nop(), nil)
	if err == nil {
		t.Fatal("Open() err = nil, want an error")
	}
	msg := err.Error()
	if !strings.Contains(msg, "cannot connect") || strings.Contains(msg, "hunter2-secret") || strings.Contains(msg, "\n") {
		t.Fatalf("Open() err = %q, want one line naming the cause without the password", msg)
	}
}

func TestOpenBadURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"postgres://u:pw-secret@[::1:5432/x", "mysql://nope", "host=127.0.0.1 port=notaport password=pw-secret"} {
		_, err := store.Open(context.Background(), store.Config{URL: u, RetryTries: 1}, zerolog.Nop(), nil)
		if err == nil {
			t.Errorf("Open(%q) err = nil, want error", u)
			continue
		}
		if strings.Contains(err.Error(), "pw-secret") {
			t.Errorf("Open(%q) err = %q leaks the password", u, err)
		}
	}
}

// An unknown database is not worth waiting for: the error comes at once,
// after one try. The test counts the tries by the retry log line, not by
// the time taken, which a busy machine could stretch.
func TestOpenUnknownDatabaseFailsFast(t *testing.T) {
	t.Parallel()
	_ = pgtest.URL(t) // boots the server
	url := pgtest.DatabaseURL("no_such_database_x")
	var logs syncBuffer
	_, err := store.Open(context.Background(), store.Config{URL: url}, zerolog.New(&logs), nil)
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Open(%s) err = %v, want 'does not exist'", url, err)
	}
	if strings.Contains(logs.String(), "database not ready") {
		t.Fatalf("Open() retried an unknown database: %s", logs.String())
	}
}

func TestMapError(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `INSERT INTO users (email) VALUES ('a@example.com')`)
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Pool.Exec(ctx, `INSERT INTO users (email) VALUES ('A@example.com')`)
	if err := store.MapError(err); !isErr(err, store.ErrConflict) {
		t.Fatalf("MapError(duplicate) = %v, want ErrConflict", err)
	}
	var id string
	err = db.Pool.QueryRow(ctx, `SELECT id FROM users WHERE email = 'none'`).Scan(&id)
	if err := store.MapError(err); !isErr(err, store.ErrNotFound) {
		t.Fatalf("MapError(no rows) = %v, want ErrNotFound", err)
	}
}

func TestPoolMetricsRegistered(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	db, err := store.Open(context.Background(), store.Config{URL: pgtest.URL(t), MaxConns: 3}, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n, err := testutil.GatherAndCount(reg, "pgxpool_max_conns", "pgxpool_acquired_conns"); err != nil || n != 2 {
		t.Fatalf("pool gauges: %d, %v; want 2", n, err)
	}
}
