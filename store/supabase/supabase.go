// Package supabase moves a Supabase project into Vectabase: GoTrue's users
// and Discord identities, every application table in public, and Supabase
// Vault's secrets. Sensitive columns are encrypted through the keyring on
// the way in, API keys become keyed hashes, and everything lands in one
// target transaction that commits only after row counts, foreign keys and
// every encrypted value have been checked against the source.
//
// Rows stream from the source a batch at a time (a cursor on PostgreSQL, a
// JSON token stream for an export) into COPY on the target, so memory stays
// flat however large a table is.
package supabase

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
)

// Options say where to read from and how to import.
type Options struct {
	// Source is the Supabase connection string (role postgres). Exactly one
	// of Source and FromDir is set.
	Source string
	// FromDir imports a JSON export made earlier with ExportDir.
	FromDir string
	// ExportDir, when set, receives every table read, as JSON.
	ExportDir string
	// DryRun does everything but commit.
	DryRun bool
	// Replace empties the target's data tables (inside the same
	// transaction) instead of refusing a non-empty target.
	Replace bool
	// AllowDrop names source columns ("table.column", or "table.*" for a
	// whole table) that may be left behind.
	AllowDrop []string
	// BatchSize is the rows per cursor fetch and per COPY (default 5000).
	BatchSize int
	// IndexRebuildRows is the table size from which a load drops the
	// table's plain (non-unique) indexes and builds them again after it,
	// as pg_restore does: one sort per index is much cheaper than keeping
	// it up to date row by row (default 50000).
	IndexRebuildRows int64
	// ValidSecretName is the secrets vault's rule for names; a Vault
	// secret whose name breaks it is skipped, with the reason in the
	// report. Nil accepts any name.
	ValidSecretName func(name string) error
	// Progress, when set, is called after every batch and when a table is
	// done.
	Progress func(Progress)
}

// Progress reports how far the import of one table is.
type Progress struct {
	Table       string // "public.sales -> sales"
	Done, Total int64
	Finished    bool
}

// Import runs the migration into target, a direct connection to the
// Vectabase database (not through PgBouncer: it uses COPY, a temporary
// table and one long transaction). It always returns a report, also on
// failure, when the report's Error says why and the target is unchanged.
// Refusals are *vectabase.Error: ECONFLICT for a non-empty target without
// Replace, EVALIDATION for a source that does not fit the target.
func Import(ctx context.Context, target *pgx.Conn, kr *keyring.Keyring, opts Options) (*Report, error) {
	rep := &Report{DryRun: opts.DryRun, Replace: opts.Replace, StartedAt: time.Now().UTC(), Tables: []*TableReport{}, Checks: []Check{}}
	err := runImport(ctx, target, kr, opts, rep)
	rep.FinishedAt = time.Now().UTC()
	rep.DurationMS = rep.FinishedAt.Sub(rep.StartedAt).Milliseconds()
	if err != nil {
		rep.Committed = false
		rep.Error = err.Error()
		return rep, err
	}
	return rep, nil
}

func runImport(ctx context.Context, target *pgx.Conn, kr *keyring.Keyring, opts Options, rep *Report) error {
	if (opts.Source == "") == (opts.FromDir == "") {
		return vectabase.Errorf(vectabase.EBADREQUEST, "give exactly one of a source URL and an export directory")
	}
	if opts.FromDir != "" && opts.ExportDir != "" {
		return vectabase.Errorf(vectabase.EBADREQUEST, "an import from an export cannot export again")
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 5000
	}
	if opts.IndexRebuildRows <= 0 {
		opts.IndexRebuildRows = 50000
	}
	allow := allowDrop{}
	for _, a := range opts.AllowDrop {
		if strings.Count(a, ".") > 1 || a == "" {
			return vectabase.Errorf(vectabase.EBADREQUEST, "--allow-drop %q: want table.column or table.*", a)
		}
		allow[a] = true
	}

	var src source
	var err error
	if opts.Source != "" {
		src, err = openPGSource(ctx, opts.Source, opts.BatchSize)
	} else {
		src, err = openDirSource(opts.FromDir)
	}
	if err != nil {
		return err
	}
	defer src.close(context.WithoutCancel(ctx))
	rep.Source = src.String()

	var exp *exporter
	if opts.ExportDir != "" {
		if exp, err = newExporter(opts.ExportDir); err != nil {
			return err
		}
	}

	tx, err := target.Begin(ctx)
	if err != nil {
		return fmt.Errorf("target: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	imp := &importer{tx: tx, kr: kr, src: src, exp: exp, opts: opts, allow: allow, rep: rep}
	if err := imp.run(ctx); err != nil {
		return err
	}
	if opts.DryRun {
		return nil
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("target: commit: %w", err)
	}
	rep.Committed = true
	return nil
}

type importer struct {
	tx    pgx.Tx
	kr    *keyring.Keyring
	src   source
	exp   *exporter
	opts  Options
	allow allowDrop
	rep   *Report
	cat   *catalog
	now   string
}

func (imp *importer) run(ctx context.Context) error {
	tx := imp.tx
	for _, s := range []string{
		"SET LOCAL DateStyle = 'ISO, MDY'", "SET LOCAL IntervalStyle = 'postgres'", "SET LOCAL TimeZone = 'UTC'",
		// One import at a time; a transaction-scoped lock, so nothing is
		// left held if the process dies.
		"SELECT pg_advisory_xact_lock(hashtext('vectabase.import-supabase'))",
	} {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("target: %w", err)
		}
	}
	imp.now = time.Now().UTC().Format("2006-01-02 15:04:05.999999Z07:00")
	cat, err := readCatalog(ctx, tx)
	if err != nil {
		return err
	}
	imp.cat = cat
	sens, err := loadSensitivity()
	if err != nil {
		return err
	}
	srcTables, err := imp.src.tables(ctx)
	if err != nil {
		return err
	}

	// Plan every table before touching anything, so a source that does not
	// fit stops the import at once.
	plans := map[string][]*tablePlan{}
	var identities *srcTable
	var usedAllow = map[string]bool{}
	for _, t := range srcTables {
		switch {
		case t.Schema == "auth" && t.Name == "users":
			p, err := planUsers(t, cat.tables["users"], imp.now)
			if err != nil {
				return err
			}
			plans["users"] = append(plans["users"], p)
		case t.Schema == "auth" && t.Name == "identities":
			t := t
			if _, err := need(t, identityColumns...); err != nil {
				return err
			}
			identities = &t
		case t.Schema == "vault" && t.Name == "decrypted_secrets":
			sp, vp, err := planSecrets(t, cat.tables["secrets"], cat.tables["secret_versions"], imp.now, imp.opts.ValidSecretName)
			if err != nil {
				return err
			}
			plans["secrets"] = append(plans["secrets"], sp)
			plans["secret_versions"] = append(plans["secret_versions"], vp)
		case t.Schema == "public":
			tgt := cat.tables[t.Name]
			if tgt == nil || reservedTargets[t.Name] {
				if imp.allow.table(t.Name) {
					usedAllow[t.Name] = true
					imp.rep.Tables = append(imp.rep.Tables, &TableReport{Source: t.qualified(), Dropped: []string{"* (whole table, --allow-drop)"}})
					continue
				}
				why := "no table of that name"
				if tgt != nil {
					why = "that name is the platform's own table"
				}
				return vectabase.Errorf(vectabase.EVALIDATION, "source table %s has no place in the target (%s); use --allow-drop %s.* to leave it behind", t.qualified(), why, t.Name)
			}
			p, err := planPublic(t, tgt, sens, imp.allow)
			if err != nil {
				return err
			}
			plans[t.Name] = append(plans[t.Name], p)
		}
	}
	if len(plans["users"]) == 0 {
		return vectabase.Errorf(vectabase.EVALIDATION, "the source has no auth.users table: not a Supabase database (or the role cannot see the auth schema)")
	}
	for _, t := range sortedKeys(imp.allow) {
		table, col, _ := strings.Cut(t, ".")
		if usedAllow[table] {
			continue
		}
		found := false
		for _, ps := range plans {
			for _, p := range ps {
				if p.src.Schema == "public" && p.src.Name == table && (col == "*" || col == "" || slices.ContainsFunc(p.dropped, func(d string) bool { return d == col })) {
					found = true
				}
			}
		}
		if !found {
			imp.rep.Notes = append(imp.rep.Notes, fmt.Sprintf("--allow-drop %s matched nothing in the source", t))
		}
	}

	targets := make([]string, 0, len(plans))
	for t := range plans {
		targets = append(targets, t)
	}
	order, err := cat.loadOrder(targets)
	if err != nil {
		return err
	}
	if err := imp.prepareTarget(ctx, targets); err != nil {
		return err
	}
	dropped, err := imp.dropForeignKeys(ctx, targets)
	if err != nil {
		return err
	}

	for _, t := range order {
		for _, p := range plans[t] {
			if err := imp.load(ctx, p); err != nil {
				return err
			}
		}
		if t == "users" && identities != nil {
			if err := imp.loadIdentities(ctx, *identities); err != nil {
				return err
			}
		}
	}
	n, err := imp.src.refreshTokens(ctx)
	if err != nil {
		return imp.sourceError("auth.refresh_tokens", "", err)
	}
	if n > 0 {
		imp.rep.Tables = append(imp.rep.Tables, &TableReport{Source: "auth.refresh_tokens", Read: n, Skipped: n,
			SkipReasons: map[string]int64{"Supabase sessions are not carried over; users sign in again": n}})
	}
	if err := imp.exp.writeManifest(imp.src.String(), n); err != nil {
		return err
	}
	if err := imp.resetSequences(ctx, targets); err != nil {
		return err
	}
	return imp.verify(ctx, order, plans, dropped)
}

// prepareTarget refuses a target that already has data, or with Replace
// empties it: the tables the import writes and every table referencing
// them. The keyring's tables, the audit trail and the migrations' own table
// are never touched.
func (imp *importer) prepareTarget(ctx context.Context, targets []string) error {
	data := imp.cat.referencing(targets)
	var full []string
	for _, t := range data {
		var has bool
		if err := imp.tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+quoteIdent(t)+")").Scan(&has); err != nil {
			return fmt.Errorf("target: %w", err)
		}
		if has {
			full = append(full, t)
		}
	}
	if len(full) == 0 {
		return nil
	}
	if !imp.opts.Replace {
		return vectabase.Errorf(vectabase.ECONFLICT, "the target database is not empty (%s hold rows); use --replace to replace its data", strings.Join(full, ", "))
	}
	quoted := make([]string, len(data))
	for i, t := range data {
		quoted[i] = quoteIdent(t)
	}
	if _, err := imp.tx.Exec(ctx, "TRUNCATE TABLE "+strings.Join(quoted, ", ")); err != nil {
		return fmt.Errorf("target: empty it for --replace: %w", err)
	}
	imp.rep.Emptied = data
	return nil
}

// dropForeignKeys drops, inside the transaction, the foreign keys of the
// tables being loaded: checking each COPY row against its parent costs
// more than the whole load. verify checks every one of them with a query
// that names an offending row, then re-creates them (which PostgreSQL
// validates again) before anything commits.
func (imp *importer) dropForeignKeys(ctx context.Context, targets []string) ([]foreignKey, error) {
	var out []foreignKey
	for _, fk := range imp.cat.fks {
		if !slices.Contains(targets, fk.Child) {
			continue
		}
		if _, err := imp.tx.Exec(ctx, "ALTER TABLE "+quoteIdent(fk.Child)+" DROP CONSTRAINT "+quoteIdent(fk.Name)); err != nil {
			return nil, fmt.Errorf("target: %w", err)
		}
		out = append(out, fk)
	}
	return out, nil
}

// resetSequences moves each serial or identity sequence of a loaded table
// past the largest imported value, so new rows do not collide.
func (imp *importer) resetSequences(ctx context.Context, targets []string) error {
	rows, err := imp.tx.Query(ctx, `
SELECT c.relname, a.attname, pg_get_serial_sequence(format('%I', c.relname), a.attname)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = current_schema() AND c.relname = ANY($1)
  AND pg_get_serial_sequence(format('%I', c.relname), a.attname) IS NOT NULL`, targets)
	if err != nil {
		return fmt.Errorf("target: find sequences: %w", err)
	}
	type seq struct{ table, col, seq string }
	var seqs []seq
	for rows.Next() {
		var s seq
		if err := rows.Scan(&s.table, &s.col, &s.seq); err != nil {
			rows.Close()
			return err
		}
		seqs = append(seqs, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, s := range seqs {
		q := fmt.Sprintf("SELECT setval($1, m) FROM (SELECT max(%s) AS m FROM %s) x WHERE m IS NOT NULL", quoteIdent(s.col), quoteIdent(s.table))
		if _, err := imp.tx.Exec(ctx, q, s.seq); err != nil {
			return fmt.Errorf("target: move sequence %s: %w", s.seq, err)
		}
	}
	return nil
}

// rowErr is a failure on one row, raised while transforming it; it tells
// scan's caller that the source itself is fine.
type rowErr struct{ err error }

func (e rowErr) Error() string { return e.err.Error() }
func (e rowErr) Unwrap() error { return e.err }

func isRowErr(err error) bool {
	var re rowErr
	return errors.As(err, &re)
}
