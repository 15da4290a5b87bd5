// Package migrations holds the SQL schema as goose migrations embedded in the
// binary, and the few calls the rest of the program needs to apply them.
//
// Migrations run over a direct PostgreSQL connection (DATABASE_DIRECT_URL):
// goose serialises concurrent runs with a session advisory lock, which
// PgBouncer's transaction pooling cannot carry.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed *.sql
var files embed.FS

// Migrator applies the embedded migrations to one database.
type Migrator struct {
	db       *sql.DB
	provider *goose.Provider
}

// Open connects to url and prepares the embedded migrations. Close it when done.
func Open(url string) (*Migrator, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("migrations: open database: %w", err)
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("migrations: session locker: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, files, goose.WithSessionLocker(locker))
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return &Migrator{db: db, provider: p}, nil
}

// Close releases the connection.
func (m *Migrator) Close() error { return m.db.Close() }

// Up applies every pending migration and returns how many it applied.
func (m *Migrator) Up(ctx context.Context) (int, error) {
	res, err := m.provider.Up(ctx)
	if err != nil {
		return len(res), fmt.Errorf("migrations: up: %w", err)
	}
	return len(res), nil
}

// Down rolls back the newest n applied migrations (n <= 0 means all of them).
func (m *Migrator) Down(ctx context.Context, n int) (int, error) {
	if n <= 0 {
		res, err := m.provider.DownTo(ctx, 0)
		if err != nil {
			return len(res), fmt.Errorf("migrations: down: %w", err)
		}
		return len(res), nil
	}
	done := 0
	for range n {
		_, err := m.provider.Down(ctx)
		if errors.Is(err, goose.ErrNoNextVersion) {
			break
		}
		if err != nil {
			return done, fmt.Errorf("migrations: down: %w", err)
		}
		done++
	}
	return done, nil
}

// Status is the state of one migration.
type Status struct {
	Version int64
	Name    string
	Applied bool
}

// Status lists every embedded migration and whether it is applied.
func (m *Migrator) Status(ctx context.Context) ([]Status, error) {
	st, err := m.provider.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrations: status: %w", err)
	}
	out := make([]Status, 0, len(st))
	for _, s := range st {
		out = append(out, Status{
			Version: s.Source.Version,
			Name:    s.Source.Path,
			Applied: s.State == goose.StateApplied,
		})
	}
	return out, nil
}

// Versions returns the database's current version and the newest embedded one.
func (m *Migrator) Versions(ctx context.Context) (current, latest int64, err error) {
	current, latest, err = m.provider.GetVersions(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("migrations: read schema version: %w", err)
	}
	return current, latest, nil
}

var _ = stdlib.GetDefaultDriver // registers the "pgx" database/sql driver
