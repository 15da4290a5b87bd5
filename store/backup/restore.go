package backup

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase"
)

// Restore replaces the live database's contents with backup id. It runs
// as one transaction: every schema of the database is dropped, the dump is
// replayed, and COMMIT is sent only after the whole body decrypted, its
// SHA-256 matched the manifest and every statement succeeded. Any failure
// (a wrong KEK, a tampered byte, an SQL error, a cancelled context) kills
// the session before COMMIT, so PostgreSQL rolls back and the live data is
// as it was. Connections of a running server see the new data afterwards;
// WithAfterRestore resets them and reloads the keyring.
func (s *Service) Restore(ctx context.Context, a Actor, id string, progress ProgressFunc) (RestoreResult, error) {
	if err := s.lock(); err != nil {
		return RestoreResult{}, err
	}
	defer s.busy.Unlock()
	res, err := s.restore(ctx, id, progress)
	if err == nil && s.after != nil {
		if aerr := s.after(ctx); aerr != nil {
			err = fmt.Errorf("backup %s restored, but refreshing the server after it failed (restart it): %w", id, aerr)
		}
	}
	var details map[string]any
	if err == nil {
		details = map[string]any{"tables": res.Tables, "rows": res.Rows, "schemaVersion": res.SchemaVersion}
	}
	// Written after the restore, so the row lands in the restored trail.
	return res, s.audit(ctx, a, "backup.restore", id, err, details)
}

func (s *Service) restore(ctx context.Context, id string, progress ProgressFunc) (RestoreResult, error) {
	b, key, err := s.open(ctx, id)
	if err != nil {
		return RestoreResult{}, err
	}
	defer b.close()
	if s.latest > 0 && b.manifest.SchemaVersion > s.latest {
		return RestoreResult{}, vectabase.Errorf(vectabase.EVALIDATION,
			"backup %s has schema version %d, newer than this vectabase's %d: restore it with the version that made it (%s)",
			id, b.manifest.SchemaVersion, s.latest, b.manifest.VectabaseVersion)
	}
	schemas, err := s.liveSchemas(ctx)
	if err != nil {
		return RestoreResult{}, err
	}
	// Read from the live database before the drops replace it.
	var epilogue string
	if s.epilogue != nil {
		if epilogue, err = s.epilogue(ctx); err != nil {
			return RestoreResult{}, fmt.Errorf("backup %s: before restoring: %w", id, err)
		}
	}

	psql, psqlTail := s.tools.command("psql", &s.db, "-X", "-q", "-v", "ON_ERROR_STOP=1")
	psqlIn, err := psql.StdinPipe()
	if err != nil {
		return RestoreResult{}, fmt.Errorf("backup: %w", err)
	}
	pgr, pgrTail := s.tools.command("pg_restore", nil, "--no-owner", "--no-acl", "--exit-on-error", "--file=-")
	// An os.Pipe, not StdoutPipe: Wait (in feed) would close StdoutPipe's
	// read end while this goroutine may still be reading it.
	pgrOut, pgrW, err := os.Pipe()
	if err != nil {
		return RestoreResult{}, fmt.Errorf("backup: %w", err)
	}
	defer pgrOut.Close()
	pgr.Stdout = pgrW
	if err := psql.Start(); err != nil {
		return RestoreResult{}, fmt.Errorf("backup: start psql: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			// Without COMMIT the transaction dies with the session.
			_ = psql.Process.Kill()
			_ = psql.Wait()
		}
	}()

	m := newMeter("restore", b.manifest.DumpSize, progress)
	fed := make(chan error, 1)
	feedCtx, stopFeed := context.WithCancel(ctx)
	defer stopFeed()
	go func() { fed <- s.feed(feedCtx, b, key, pgr, pgrTail, m, func() { _ = pgrW.Close() }) }()

	var prelude strings.Builder
	// The drops need every table's exclusive lock: wait for a busy server
	// a while, not forever. (The dump's own SETs reset lock_timeout.)
	prelude.WriteString("BEGIN;\nSET lock_timeout = '60s';\n")
	for _, n := range schemas {
		prelude.WriteString("DROP SCHEMA " + pgx.Identifier{n}.Sanitize() + " CASCADE;\n")
	}
	prelude.WriteString("CREATE SCHEMA IF NOT EXISTS public;\n")
	_, writeErr := io.WriteString(psqlIn, prelude.String())
	if writeErr == nil {
		_, writeErr = io.Copy(psqlIn, pgrOut)
	}
	if writeErr != nil {
		// psql stopped on an SQL error: stop pg_restore and the reading
		// too, and report psql's error, the cause.
		stopFeed()
		_, _ = io.Copy(io.Discard, pgrOut)
		<-fed
		_ = psqlIn.Close()
		psqlErr := psql.Wait()
		committed = true
		if psqlErr == nil {
			psqlErr = writeErr
		}
		return RestoreResult{}, fmt.Errorf("backup %s: restore rolled back, the database is unchanged: %w", id, psqlTail.err(psqlErr))
	}
	if err := <-fed; err != nil {
		return RestoreResult{}, err
	}
	if err := checkSum(b, m); err != nil {
		return RestoreResult{}, err
	}
	// Everything decrypted, matched and ran: only now commit.
	_, writeErr = io.WriteString(psqlIn, epilogue+"COMMIT;\n")
	_ = psqlIn.Close()
	psqlErr := psql.Wait()
	committed = true // the session is over either way
	if psqlErr != nil || writeErr != nil {
		if psqlErr == nil {
			psqlErr = writeErr
		}
		return RestoreResult{}, fmt.Errorf("backup %s: restore rolled back, the database is unchanged: %w", id, psqlTail.err(psqlErr))
	}
	res := RestoreResult{ID: id, Tables: len(b.manifest.RowCounts), SchemaVersion: b.manifest.SchemaVersion}
	for _, n := range b.manifest.RowCounts {
		res.Rows += n
	}
	return res, nil
}

// liveSchemas lists the live database's schemas other than PostgreSQL's
// own: restore drops them all, so nothing of the replaced data survives
// beside the restored one.
func (s *Service) liveSchemas(ctx context.Context) ([]string, error) {
	c, err := pgx.Connect(ctx, s.db.pgxURL())
	if err != nil {
		return nil, unreachable(err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	rows, err := c.Query(ctx, `
		SELECT nspname FROM pg_namespace
		WHERE nspname NOT IN ('pg_catalog', 'information_schema')
		  AND nspname NOT LIKE 'pg\_toast%' AND nspname NOT LIKE 'pg\_temp%'
		ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("backup: list schemas: %w", flatten(err))
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("backup: list schemas: %w", flatten(err))
	}
	return names, nil
}
