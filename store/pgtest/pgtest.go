// Package pgtest gives each test its own fresh PostgreSQL database: a copy of
// a template migrated once per test process. The server is TEST_DATABASE_URL
// when set (its role needs CREATEDB); otherwise one throwaway cluster per
// `go test` process, booted from the system's PostgreSQL binaries on first
// use and removed by Main when the tests end.
//
// Use it from a package's tests with
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase/migrations"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgcluster"
)

var (
	once        sync.Once
	bootErr     error
	serverURL   *url.URL // any database on the server, as a role that may create databases
	template    string
	cluster     *pgcluster.Cluster
	stopCluster func()
)

// Main runs the tests and then removes what the harness created; cleanups
// run after that, before the process exits.
func Main(m *testing.M, cleanups ...func()) {
	code := m.Run()
	shutdown()
	for _, c := range cleanups {
		c()
	}
	os.Exit(code)
}

func boot() error {
	once.Do(func() { bootErr = start() })
	return bootErr
}

func start() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if raw := os.Getenv("TEST_DATABASE_URL"); raw != "" {
		u, err := url.Parse(raw)
		if err != nil {
			return fmt.Errorf("pgtest: TEST_DATABASE_URL: %w", err)
		}
		serverURL = u
	} else {
		// A throwaway cluster needs no durability; that makes it fast.
		c, stop, err := pgcluster.StartThrowaway(ctx, map[string]string{
			"max_connections": "300",
			"shared_buffers":  "64MB",
		})
		if err != nil {
			return err
		}
		stopCluster = stop
		cluster = c
		u, _ := url.Parse(c.URL("postgres"))
		serverURL = u
	}
	template = "vb_tmpl_" + randomName()
	if err := exec(ctx, "CREATE DATABASE "+template); err != nil {
		return err
	}
	m, err := migrations.Open(DatabaseURL(template))
	if err != nil {
		return err
	}
	defer m.Close()
	if _, err := m.Up(ctx); err != nil {
		return err
	}
	return nil
}

func shutdown() {
	if bootErr != nil || serverURL == nil {
		return
	}
	if cluster != nil {
		stopCluster()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = exec(ctx, "DROP DATABASE IF EXISTS "+template+" WITH (FORCE)")
}

// DatabaseURL is the URL of database name on the test server.
func DatabaseURL(name string) string {
	u := *serverURL
	u.Path = "/" + name
	return u.String()
}

func exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, serverURL.String())
	if err != nil {
		return fmt.Errorf("pgtest: connect to the test server: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("pgtest: %s: %w", sql, err)
	}
	return nil
}

func randomName() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newDatabase(t testing.TB, fromTemplate bool) string {
	t.Helper()
	if err := boot(); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	name := "vb_test_" + randomName()
	sql := "CREATE DATABASE " + name
	if fromTemplate {
		sql += " TEMPLATE " + template
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := exec(ctx, sql); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("pgtest: %v", err)
		}
	})
	return DatabaseURL(name)
}

// URL returns the URL of a fresh database with the whole schema migrated,
// dropped when the test ends.
func URL(t testing.TB) string { return newDatabase(t, true) }

// EmptyURL returns the URL of a fresh empty database (no migrations), for
// tests of migrations themselves or of an import source.
func EmptyURL(t testing.TB) string { return newDatabase(t, false) }

// New returns a pool on a fresh migrated database, closed when the test ends.
func New(t testing.TB) *store.DB {
	t.Helper()
	return Open(t, URL(t))
}

// Open opens a small pool on url, closed when the test ends.
func Open(t testing.TB, url string) *store.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := store.Open(ctx, store.Config{URL: url, MaxConns: 8}, zerolog.Nop(), nil)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(db.Close)
	return db
}

// Cluster returns the throwaway cluster, or nil when TEST_DATABASE_URL is used.
func Cluster() *pgcluster.Cluster {
	if err := boot(); err != nil {
		return nil
	}
	return cluster
}
