package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrPooler is wrapped when a connection that must reach PostgreSQL itself
// leads to a connection pooler (PgBouncer, or another that hides the
// server's process id), or when the pool lacks DB_PGBOUNCER behind one.
var ErrPooler = errors.New("store: the connection goes through a connection pooler")

// behindPooler reports whether conn talks to PostgreSQL through a
// connection pooler. PostgreSQL announces its backend's process id in
// BackendKeyData at start-up, and pg_backend_pid() returns the same number;
// PgBouncer (in every pool mode) hands the client a cancel key of its own
// making, so the two differ. The probe uses the simple protocol: it must
// not itself trip over the prepared statements it is there to protect.
func behindPooler(ctx context.Context, conn *pgx.Conn) (bool, error) {
	var pid uint32
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()", pgx.QueryExecModeSimpleProtocol).Scan(&pid); err != nil {
		return false, fmt.Errorf("store: ask the backend's process id: %w", err)
	}
	return pid != conn.PgConn().PID(), nil
}

// checkPooler refuses a pool behind a pooler unless cfg says so
// (DB_PGBOUNCER), and a Direct pool behind one always. Without DB_PGBOUNCER pgx prepares named statements, which
// PgBouncer's transaction mode hands to whichever server connection comes
// next, and the server fails later, on some request, with "prepared
// statement does not exist". Failing at start-up says what to change.
func checkPooler(ctx context.Context, pool *pgxpool.Pool, cfg Config) error {
	if cfg.PgBouncer && !cfg.Direct {
		return nil
	}
	c, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer c.Release()
	behind, err := behindPooler(ctx, c.Conn())
	if err != nil {
		return err
	}
	if behind && cfg.Direct {
		return fmt.Errorf("%w at %s: DATABASE_DIRECT_URL (DATABASE_URL when it is unset) must reach PostgreSQL itself, for migrations, LISTEN/NOTIFY, session locks and backups", ErrPooler, Redact(cfg.ConnString()))
	}
	if behind {
		return fmt.Errorf("%w at %s, but DB_PGBOUNCER is not true: set DB_PGBOUNCER=true for PgBouncer in transaction mode (and DATABASE_DIRECT_URL to PostgreSQL itself), or point the URL at PostgreSQL", ErrPooler, Redact(cfg.ConnString()))
	}
	return nil
}
