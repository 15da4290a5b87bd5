// Package store is the PostgreSQL layer: the pgx pool, transactions, the
// slow-query tracer and the repositories the services use. It never imports
// server; sensitive columns are written and read only through the keyring.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Sentinel errors the repositories return; services map them to codes.
var (
	ErrNotFound = errors.New("store: not found")
	ErrConflict = errors.New("store: conflict")
)

// DB is the connection pool and what hangs off it.
type DB struct {
	Pool *pgxpool.Pool
	cfg  Config
	log  zerolog.Logger
	// onShred are told each user ShredUser deleted, after it commits
	// (a keyring forgets the user's cached personal key).
	shredMu sync.Mutex
	onShred []func(userID string)
}

// Open builds the pool from cfg and waits for the database, retrying with
// exponential backoff (cfg.RetryTries tries, cfg.RetryFirst first, doubling,
// at most cfg.RetryMax) while it is not up yet. Errors that waiting cannot
// fix (bad URL, wrong password, unknown database) return at once. A URL
// that leads to PgBouncer (or another pooler) without cfg.PgBouncer is
// refused with an error wrapping ErrPooler.
func Open(ctx context.Context, cfg Config, log zerolog.Logger, reg prometheus.Registerer) (*DB, error) {
	cfg = cfg.withDefaults()
	pcfg, err := pgxpool.ParseConfig(cfg.ConnString())
	if err != nil {
		return nil, fmt.Errorf("store: invalid database URL %s: %s", Redact(cfg.ConnString()), flattenParseError(err))
	}
	pcfg.MaxConns = cfg.MaxConns
	pcfg.MaxConnIdleTime = cfg.MaxConnIdleTime
	pcfg.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	if cfg.PgBouncer {
		// PgBouncer in transaction mode hands each transaction to any server
		// connection, so named prepared statements must not be used.
		pcfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
		pcfg.ConnConfig.StatementCacheCapacity = 0
		pcfg.ConnConfig.DescriptionCacheCapacity = 0
	}
	m := newMetrics(reg)
	if cfg.SlowQueryMS > 0 {
		pcfg.ConnConfig.Tracer = &slowQueryTracer{
			threshold: time.Duration(cfg.SlowQueryMS) * time.Millisecond,
			log:       log,
			counter:   m.slowQueries,
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := waitReady(ctx, pool, cfg, log); err != nil {
		pool.Close()
		return nil, err
	}
	if err := checkPooler(ctx, pool, cfg); err != nil {
		pool.Close()
		return nil, err
	}
	m.registerPool(reg, pool)
	return &DB{Pool: pool, cfg: cfg, log: log}, nil
}

func waitReady(ctx context.Context, pool *pgxpool.Pool, cfg Config, log zerolog.Logger) error {
	delay := cfg.RetryFirst
	var err error
	for try := 1; try <= cfg.RetryTries; try++ {
		err = pool.Ping(ctx)
		if err == nil {
			return nil
		}
		if !retryable(err) || try == cfg.RetryTries {
			break
		}
		log.Warn().Int("try", try).Dur("retryIn", delay).Str("cause", describeConnError(err)).Msg("database not ready")
		select {
		case <-ctx.Done():
			return fmt.Errorf("store: waiting for the database: %w", ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, cfg.RetryMax)
	}
	return fmt.Errorf("store: cannot connect to %s: %s", Redact(cfg.ConnString()), describeConnError(err))
}

// retryable reports whether waiting may help: the server is not reachable
// or is starting up, as opposed to refusing us for good.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57P03", "53300": // cannot_connect_now (starting up), too_many_connections
			return true
		}
		return false
	}
	return !errors.Is(err, context.Canceled)
}

// describeConnError flattens a pgx connection error into one line.
func describeConnError(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return fmt.Sprintf("%s (SQLSTATE %s)", pgErr.Message, pgErr.Code)
	}
	msg := err.Error()
	// pgconn prefixes "failed to connect to `user=... database=...`:"; keep the cause.
	if i := strings.LastIndex(msg, ": "); i >= 0 && strings.HasPrefix(msg, "failed to connect") {
		msg = msg[i+2:]
	}
	return msg
}

func flattenParseError(err error) string {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		// The ParseConfigError message may contain the connection string
		// with its password; say only what is wrong.
		if pe.Unwrap() != nil {
			return pe.Unwrap().Error()
		}
		return "cannot parse"
	}
	return "cannot parse"
}

// Close closes the pool.
func (db *DB) Close() { db.Pool.Close() }

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error { return db.Pool.Ping(ctx) }

// Config returns the configuration the pool was built from.
func (db *DB) Config() Config { return db.cfg }

// InTx runs fn in a transaction, committing if it returns nil and rolling
// back otherwise.
func (db *DB) InTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, db.Pool, fn)
}

// Unavailable reports whether err says the database cannot be used right
// now, as opposed to refusing this statement: it is down, shutting down,
// starting up, in recovery or read-only (a standby not yet promoted), out
// of connections, or the connection to it broke. Callers answer such
// errors with 503 UNAVAILABLE, which a client may retry, instead of 500.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"): // connection_exception
			return true
		case strings.HasPrefix(pgErr.Code, "57P"): // admin_shutdown, crash_shutdown, cannot_connect_now, database_dropped
			return true
		case pgErr.Code == "53300", // too_many_connections
			pgErr.Code == "25006": // read_only_sql_transaction: a standby, or a primary demoted
			return true
		}
		return false
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.As(err, &connErr):
		return true
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		// A caller's deadline or cancellation (context.DeadlineExceeded is
		// a net.Error too) says nothing about the database.
		return false
	case errors.As(err, &netErr):
		return true
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true
	case errors.Is(err, pgconn.ErrConnClosed):
		return true
	}
	// pgconn says so of an error that happened before anything was sent.
	return pgconn.SafeToRetry(err)
}

// MapError turns pgx errors into the package's sentinels: no rows into
// ErrNotFound, unique and exclusion violations into ErrConflict. Others pass
// through unchanged.
func MapError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505", "23P01":
			return fmt.Errorf("%w: %s", ErrConflict, pgErr.ConstraintName)
		}
	}
	return err
}
