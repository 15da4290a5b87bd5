package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/supabase"
	"github.com/vectabase/vectabase/vault"
	"github.com/vectabase/vectabase/vault/audit"
)

func newImportSupabaseCmd() *cobra.Command {
	var (
		opts       supabase.Options
		reportFile string
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "import-supabase (--source URL | --from-dir DIR)",
		Short: "Move a Supabase project (users, application tables, Vault secrets) into Vectabase",
		Long: `Import a Supabase project into this Vectabase database (DATABASE_URL):
auth.users with their bcrypt hashes and Discord identities, every application
table in public with the same ids (sensitive columns encrypted with the
keyring, API keys as keyed hashes), and Supabase Vault's secrets into the
secrets vault. Everything lands in one transaction, which commits only after
row counts, foreign keys and every encrypted value have been verified.

--source is a Supabase connection string with the postgres role; --from-dir
reads an export written earlier with --export-dir (which holds plaintext:
keep it safe and delete it after use). A non-empty target is refused unless
--replace. A source column with no place in the target stops the import
unless --allow-drop table.column (or table.* for a whole table).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (opts.Source == "") == (opts.FromDir == "") {
				return usagef("give exactly one of --source and --from-dir")
			}
			if opts.FromDir != "" && opts.ExportDir != "" {
				return usagef("--export-dir goes with --source, not --from-dir")
			}
			return runImportSupabase(cmd.Context(), opts, reportFile, asJSON, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Source, "source", "", "Supabase PostgreSQL connection string (role postgres)")
	f.StringVar(&opts.FromDir, "from-dir", "", "import from a JSON export made with --export-dir")
	f.StringVar(&opts.ExportDir, "export-dir", "", "also write every table read to this directory as JSON (plaintext: keep it safe)")
	f.BoolVar(&opts.DryRun, "dry-run", false, "do everything, verify, and roll back instead of committing")
	f.BoolVar(&opts.Replace, "replace", false, "empty the target's data tables first (in the same transaction)")
	f.StringArrayVar(&opts.AllowDrop, "allow-drop", nil, "leave this source column behind: table.column, or table.* (repeatable)")
	f.StringVar(&reportFile, "report", "", "write the report as JSON to this file")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON on stdout instead of the summary")
	return cmd
}

func runImportSupabase(ctx context.Context, opts supabase.Options, reportFile string, asJSON bool, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(false)
	if err != nil {
		return err
	}
	log, err := toolLogger(cfg, stderr)
	if err != nil {
		return err
	}
	direct := cfg.Store.DirectConnString()
	db, err := store.Open(ctx, toolStore(cfg.Store, direct, 2), log, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	// The same keyring the server uses, its keysets in the target.
	d := &deps{cfg: cfg, log: log, reg: prometheus.NewRegistry(), db: db}
	defer d.close()
	kr, err := openKeyring(ctx, d)
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, direct)
	if err != nil {
		return fmt.Errorf("target %s: %w", store.Redact(direct), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	pr := newImportProgress(stderr)
	opts.Progress = pr.update
	opts.ValidSecretName = vault.ValidName
	rep, ierr := supabase.Import(ctx, conn, kr, opts)
	pr.close()

	// The import is an operator action: it goes into the audit trail, with
	// counts only.
	result := vectabase.ResultSuccess
	if ierr != nil {
		result = vectabase.ResultFailure
	}
	rec := audit.New(db, kr, log, nil)
	aerr := rec.Record(context.WithoutCancel(ctx), vectabase.AuditEvent{
		ActorType: vectabase.ActorLocalOperator, Action: "import.supabase", ResourceType: "database", Result: result,
		Details: map[string]any{"source": rep.Source, "dryRun": rep.DryRun, "replace": rep.Replace, "committed": rep.Committed, "rows": rep.Rows(), "tables": len(rep.Tables)},
	})
	rec.Close()
	if aerr != nil && ierr == nil {
		ierr = fmt.Errorf("the import finished (committed: %v) but its audit row could not be written: %w", rep.Committed, aerr)
	}

	// Imported personal values (a buyer's license keys and hardware ids,
	// Stripe customer ids) arrive keyring-only: seal them under their
	// owners' keys now, so an account deleted later is shredded whole.
	// Reads accept both forms, so a failure here loses nothing: the
	// operator runs `vectabase keys seal-personal` again.
	if ierr == nil && rep.Committed {
		srec := audit.New(db, kr, log, nil)
		d.kr, d.audit = kr, srec
		if _, err := sealPersonal(ctx, d, vectabase.ActorLocalOperator, 500, nil); err != nil {
			ierr = fmt.Errorf("the import committed, but sealing its personal values stopped (run vectabase keys seal-personal): %w", err)
		}
		srec.Close()
	}

	// A refusal (a non-empty target without --replace, a column with no
	// place, a bad option) comes before any row moved: its one line on
	// stderr says it all, and a report of empty tables would only bury it.
	if ierr != nil && refusedBeforeAnyRow(rep) {
		return importError(ierr)
	}
	if reportFile != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(reportFile, append(b, '\n'), 0o600); err != nil && ierr == nil {
			ierr = fmt.Errorf("write the report: %w", err)
		}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		rep.WriteText(stdout)
	}
	return importError(ierr)
}

// importError is the import's failure as one line for the operator.
func importError(err error) error {
	var ve *vectabase.Error
	if errors.As(err, &ve) {
		return errors.New(ve.Message)
	}
	return err
}

// refusedBeforeAnyRow reports whether an import stopped before reading a
// row or running a check.
func refusedBeforeAnyRow(rep *supabase.Report) bool {
	for _, t := range rep.Tables {
		if t.Read > 0 || t.Written > 0 {
			return false
		}
	}
	return len(rep.Checks) == 0
}

// importProgress shows one progress bar per table on a terminal, and plain
// lines (at most one per table every few seconds) otherwise.
type importProgress struct {
	w     io.Writer
	tty   bool
	bar   *progressbar.ProgressBar
	table string
	last  time.Time
}

func newImportProgress(w io.Writer) *importProgress {
	p := &importProgress{w: w}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
	}
	return p
}

func (p *importProgress) update(ev supabase.Progress) {
	if !p.tty {
		if ev.Finished || time.Since(p.last) >= 2*time.Second || ev.Table != p.table {
			state := ""
			if ev.Finished {
				state = " done"
			}
			fmt.Fprintf(p.w, "import: %s %d/%d rows%s\n", ev.Table, ev.Done, ev.Total, state)
			p.last, p.table = time.Now(), ev.Table
		}
		return
	}
	if ev.Table != p.table || p.bar == nil {
		p.close()
		p.table = ev.Table
		p.bar = progressbar.NewOptions64(ev.Total,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetDescription(ev.Table),
			progressbar.OptionShowCount(),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }),
		)
	}
	_ = p.bar.Set64(ev.Done)
	if ev.Finished {
		p.close()
	}
}

func (p *importProgress) close() {
	if p.bar != nil {
		_ = p.bar.Finish()
		p.bar = nil
	}
}
