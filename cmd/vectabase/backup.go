package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/kekconfig"
	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/migrations"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/admin"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/backup"
	"github.com/vectabase/vectabase/vault/alerts"
	"github.com/vectabase/vectabase/vault/audit"
)

func newBackupCmd() *cobra.Command {
	var asJSON, yes bool
	jsonFlag := func(c *cobra.Command) *cobra.Command {
		c.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON on stdout")
		return c
	}
	create := jsonFlag(&cobra.Command{
		Use:   "create",
		Short: "Dump the database into a new encrypted backup file in BACKUP_DIR",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withBackups(cmd.Context(), auditFirst, func(ctx context.Context, svc *backup.Service) error {
				p := newBackupProgress(os.Stderr)
				b, err := svc.Create(ctx, backup.LocalOperator, p.update)
				p.finish(err)
				if err != nil {
					return err
				}
				if asJSON {
					return writeBackupJSON(b)
				}
				fmt.Printf("backup %s created: %s dump, %d tables, %d rows, schema version %d\n",
					b.ID, humanBytes(b.DumpSize), len(b.RowCounts), totalRows(b.RowCounts), b.SchemaVersion)
				return nil
			})
		},
	})
	list := jsonFlag(&cobra.Command{
		Use:   "list",
		Short: "List the backups in BACKUP_DIR, newest first",
		Long: `List the backups in BACKUP_DIR, newest first. The figures come from each
file's manifest, read without the KEK; 'verify' authenticates them. KIND is
scheduled (counted by BACKUP_KEEP) or manual (kept until deleted); KEK names
the key-encryption key that wraps the backup's key.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withBackups(cmd.Context(), auditNone, func(ctx context.Context, svc *backup.Service) error {
				items, err := svc.List(ctx)
				if err != nil {
					return err
				}
				if asJSON {
					return writeBackupJSON(map[string]any{"items": items})
				}
				if len(items) == 0 {
					fmt.Printf("no backups in %s\n", svc.Config().Dir)
					return nil
				}
				w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "ID\tCREATED\tKIND\tDUMP\tFILE\tSCHEMA\tTABLES\tROWS\tKEK\tPROBLEM")
				for _, b := range items {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", b.ID, b.CreatedAt.UTC().Format(time.RFC3339), b.Kind,
						humanBytes(b.DumpSize), humanBytes(b.FileSize), b.SchemaVersion, len(b.RowCounts), totalRows(b.RowCounts), b.KEK, b.Problem)
				}
				return w.Flush()
			})
		},
	})
	verify := jsonFlag(&cobra.Command{
		Use:   "verify ID",
		Short: "Decrypt a backup, check its checksum, restore it into a scratch database and compare row counts",
		Long: `Decrypt a backup, check its SHA-256, restore it into a temporary database on
the same server (the database role needs CREATEDB) and compare the row
counts with the manifest. The temporary database is dropped afterwards.
Exits 1 when any check fails.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withBackups(cmd.Context(), auditFirst, func(ctx context.Context, svc *backup.Service) error {
				p := newBackupProgress(os.Stderr)
				res, err := svc.Verify(ctx, backup.LocalOperator, args[0], p.update)
				p.finish(err)
				if err != nil {
					return err
				}
				if asJSON {
					return writeBackupJSON(res)
				}
				fmt.Printf("backup %s OK: checksum matches, %d tables and %d rows restored as the manifest says\n", res.ID, res.Tables, res.Rows)
				return nil
			})
		},
	})
	restore := jsonFlag(&cobra.Command{
		Use:   "restore ID --yes",
		Short: "Replace the live database's contents with a backup (asks for --yes)",
		Long: `Replace everything in the live database with the backup's contents, in one
transaction: on any failure (wrong KEK, a damaged file, an SQL error,
Ctrl-C) nothing changes. Stop the servers using the database first, or
restart them afterwards. Needs --yes.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return usagef("restore replaces all data in the database: run 'vectabase backup restore %s --yes' to confirm", args[0])
			}
			return withBackups(cmd.Context(), auditAfter, func(ctx context.Context, svc *backup.Service) error {
				p := newBackupProgress(os.Stderr)
				res, err := svc.Restore(ctx, backup.LocalOperator, args[0], p.update)
				p.finish(err)
				if err != nil {
					return err
				}
				if asJSON {
					return writeBackupJSON(res)
				}
				fmt.Printf("backup %s restored: %d tables, %d rows, schema version %d\n", res.ID, res.Tables, res.Rows, res.SchemaVersion)
				return nil
			})
		},
	})
	restore.Flags().BoolVar(&yes, "yes", false, "confirm that the live data is to be replaced")
	del := jsonFlag(&cobra.Command{
		Use:   "delete ID",
		Short: "Delete a backup file",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withBackups(cmd.Context(), auditFirst, func(ctx context.Context, svc *backup.Service) error {
				if err := svc.Delete(ctx, backup.LocalOperator, args[0]); err != nil {
					return err
				}
				if asJSON {
					return writeBackupJSON(map[string]any{"id": args[0], "deleted": true})
				}
				fmt.Printf("backup %s deleted\n", args[0])
				return nil
			})
		},
	})
	return groupCmd("backup", "Encrypted database backups: create, list, verify, restore, delete", create, list, verify, restore, del)
}

// How a backup command records on the audit trail.
type auditMode int

const (
	auditNone  auditMode = iota // list: reads files only
	auditFirst                  // open the keyring and trail before the work
	auditAfter                  // restore: open them on the restored database
)

// withBackups opens the database and the backup service from the
// configuration, runs fn, and closes everything. Operations are audited as
// the local operator, failing closed: an operation whose row cannot be
// written reports it. A *vectabase.Error comes back as its client-safe
// message only.
func withBackups(ctx context.Context, mode auditMode, fn func(context.Context, *backup.Service) error) error {
	cfg, err := loadConfig(false)
	if err != nil {
		return err
	}
	log, err := toolLogger(cfg, os.Stderr)
	if err != nil {
		return err
	}
	db, err := store.Open(ctx, toolStore(cfg.Store, cfg.Store.DirectConnString(), 2), log, nil)
	if err != nil {
		return err
	}
	// The keyring and the trail register metrics: on a registry of their
	// own here, which nothing serves.
	d := &deps{cfg: cfg, log: log, db: db, reg: prometheus.NewRegistry()}
	defer db.Close()
	defer d.close()
	// After a restore, connections opened before it may hold plans of the
	// replaced tables: drop them before anything else (the audit trail)
	// uses the pool.
	opts := []backup.Option{backup.WithAfterRestore(func(context.Context) error {
		db.Pool.Reset()
		return nil
	}), backup.WithRestoreEpilogue(db.ShredReplaySQL)}
	if mode != auditNone {
		aud := &cliAuditor{d: d}
		if mode == auditFirst {
			// The keyring opening also proves that the configured KEK is
			// the database's, so no backup is made under a stranger.
			if err := aud.open(ctx); err != nil {
				return err
			}
		}
		opts = append(opts, backup.WithAuditor(aud))
	}
	svc, err := newBackupService(ctx, d, opts...)
	if err != nil {
		return err
	}
	if err := fn(ctx, svc); err != nil {
		var ve *vectabase.Error
		if errors.As(err, &ve) {
			// The operator sees why a dependency is unavailable; other
			// messages already say all that is safe to say.
			if ve.Code == vectabase.EUNAVAILABLE && ve.Err != nil {
				return fmt.Errorf("%s: %v", ve.Message, ve.Err)
			}
			return errors.New(ve.Message)
		}
		return err
	}
	return nil
}

// cliAuditor is the audit trail of a backup command, opened on first use:
// for a restore that is after it, on the restored database, whose keyring
// and trail are the ones the row belongs to.
type cliAuditor struct {
	d    *deps
	once sync.Once
	err  error
}

func (a *cliAuditor) open(ctx context.Context) error {
	a.once.Do(func() {
		kr, err := openKeyring(ctx, a.d)
		if err != nil {
			a.err = err
			return
		}
		a.d.kr = kr
		a.d.auditLog = audit.New(a.d.db, kr, a.d.log, nil)
		a.d.closers = append(a.d.closers, a.d.auditLog.Close)
	})
	return a.err
}

func (a *cliAuditor) Record(ctx context.Context, ev vectabase.AuditEvent) error {
	if err := a.open(ctx); err != nil {
		return err
	}
	return a.d.auditLog.Record(ctx, ev)
}

// mountBackups starts the backups (startBackups) with the server's audit
// trail and keyring, and mounts the admin routes.
func mountBackups(ctx context.Context, d *deps, srv *server.Server) error {
	err := startBackups(ctx, d,
		backup.WithAuditor(d.audit),
		backup.WithAfterRestore(func(ctx context.Context) error {
			// The restore replaced the tables and the keysets: drop
			// pooled connections and load the restored keysets.
			d.db.Pool.Reset()
			return d.kr.Reload(ctx)
		}),
		// Accounts deleted since the backup stay deleted (issue 17).
		backup.WithRestoreEpilogue(d.db.ShredReplaySQL),
		// A failed backup (disk full, pg_dump error) is an operator alert,
		// sent once per backup across instances.
		backup.WithOnFailure(func(id string, err error) {
			if d.alerts == nil {
				return
			}
			d.alerts.Raise(alerts.Alert{Key: "backup_failed:" + id, Kind: alerts.KindBackupFailed,
				Message:      "backup " + id + " failed; the server log and the audit row backup.create say why",
				ResourceType: "backup", ResourceID: id})
		}))
	if err != nil {
		return err
	}
	srv.Mount(admin.BackupRoutes(d.backups, d.auth.RequireAdmin()))
	return nil
}

// startBackups builds the backup service for serve (d.backups, for the
// admin routes) and runs BACKUP_SCHEDULE until ctx ends. A schedule needs
// pg_dump: serve refuses to start with a schedule it cannot run.
func startBackups(ctx context.Context, d *deps, opts ...backup.Option) error {
	if err := d.cfg.Backup.Validate(); err != nil {
		return err
	}
	sched, err := backup.ParseSchedule(d.cfg.Backup.Schedule)
	if err != nil {
		return err
	}
	svc, err := newBackupService(ctx, d, opts...)
	if err != nil {
		return err
	}
	if !sched.Off() {
		if err := svc.CheckTools(); err != nil {
			return fmt.Errorf("BACKUP_SCHEDULE is %s: %w", sched, err)
		}
		go svc.RunSchedule(ctx, sched, d.cfg.Backup.Keep)
	}
	d.backups = svc
	return nil
}

// newBackupService builds the backup service on d's database, with the KEK
// the configuration names. The audit trail joins through opts
// (backup.WithAuditor) where the area that owns it is wired.
//
// A passphrase KEK is derived with a salt kept in the database; backups
// carry that salt in their header, so the passphrase alone opens them, also
// on a new machine whose database has no salt (or no schema) yet.
func newBackupService(ctx context.Context, d *deps, opts ...backup.Option) (*backup.Service, error) {
	kc := d.cfg.Keyring
	passphrase := kc.Backend == "local" && kc.MasterKeyFile == "" && kc.Passphrase != ""
	st := store.NewKeysets(d.db.Pool)
	var base []backup.Option
	kek, err := kekconfig.New(ctx, kc, st, kekconfig.WithRegisterer(d.reg))
	switch {
	case err != nil && !passphrase:
		return nil, err
	case err != nil:
		// No salt to read: restore and verify still work from the
		// backup's own salt; create says why it cannot wrap a key.
		kek = unusableKEK{err: err}
	case passphrase:
		salt, err := keyring.PassphraseSalt(ctx, st)
		if err != nil {
			return nil, err
		}
		base = append(base, backup.WithKEKParams(salt))
	}
	if passphrase {
		base = append(base, backup.WithKEKForParams(func(_ context.Context, salt []byte) (keyring.KEK, error) {
			return local.NewFromPassphrase(kc.Passphrase, salt)
		}))
	}
	if c, ok := kek.(io.Closer); ok {
		d.closers = append(d.closers, func() { _ = c.Close() })
	}
	direct := d.cfg.Store.DirectConnString()
	base = append(base, backup.WithLogger(d.log), backup.WithVersion(version))
	if latest := latestSchemaVersion(ctx, direct); latest > 0 {
		base = append(base, backup.WithSchemaVersion(latest))
	}
	if d.reg != nil {
		base = append(base, backup.WithRegisterer(d.reg))
	}
	return backup.New(d.cfg.Backup, direct, kek, append(base, opts...)...)
}

// unusableKEK stands for a KEK that could not be built: every use says why.
type unusableKEK struct{ err error }

func (k unusableKEK) Encrypt(context.Context, []byte, []byte) ([]byte, error) { return nil, k.err }
func (k unusableKEK) Decrypt(context.Context, []byte, []byte) ([]byte, error) { return nil, k.err }

// latestSchemaVersion is the newest migration this binary has (0 when it
// cannot be read: restore then skips the check).
func latestSchemaVersion(ctx context.Context, url string) int64 {
	m, err := migrations.Open(url)
	if err != nil {
		return 0
	}
	defer m.Close()
	_, latest, err := m.Versions(ctx)
	if err != nil {
		return 0
	}
	return latest
}

func writeBackupJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func totalRows(counts map[string]int64) int64 {
	var n int64
	for _, c := range counts {
		n += c
	}
	return n
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// backupProgress shows progress: a bar on a terminal, otherwise a plain
// line when a phase starts, every few seconds, and when it ends.
type backupProgress struct {
	w     io.Writer
	tty   bool
	mu    sync.Mutex
	phase string
	bar   *progressbar.ProgressBar
	last  time.Time
	done  int64
	total int64
}

func newBackupProgress(f *os.File) *backupProgress {
	return &backupProgress{w: f, tty: term.IsTerminal(int(f.Fd()))}
}

var phaseLabel = map[string]string{"dump": "dumping", "verify": "verifying", "restore": "restoring"}

func (p *backupProgress) update(pr backup.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pr.Phase != p.phase {
		p.end()
		p.phase = pr.Phase
		if p.tty {
			p.bar = progressbar.NewOptions64(pr.Total,
				progressbar.OptionSetWriter(p.w),
				progressbar.OptionSetDescription(phaseLabel[pr.Phase]),
				progressbar.OptionShowBytes(true),
				progressbar.OptionSetWidth(30),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionSpinnerType(14),
				progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }),
			)
		} else {
			fmt.Fprintf(p.w, "backup: %s...\n", phaseLabel[pr.Phase])
			p.last = time.Now()
		}
	}
	p.done, p.total = pr.Done, pr.Total
	if p.bar != nil {
		_ = p.bar.Set64(pr.Done)
		return
	}
	if time.Since(p.last) >= 5*time.Second {
		p.last = time.Now()
		fmt.Fprintf(p.w, "backup: %s %s\n", phaseLabel[p.phase], p.figure())
	}
}

func (p *backupProgress) figure() string {
	if p.total > 0 {
		return fmt.Sprintf("%s of %s (%d%%)", humanBytes(p.done), humanBytes(p.total), p.done*100/p.total)
	}
	return humanBytes(p.done)
}

// end closes the current phase's bar or line.
func (p *backupProgress) end() { p.stop(nil) }

func (p *backupProgress) stop(err error) {
	switch {
	case p.phase == "":
	case p.bar != nil && err == nil:
		_ = p.bar.Finish()
	case p.bar != nil:
		_ = p.bar.Exit()
		fmt.Fprintln(p.w)
	case err == nil:
		fmt.Fprintf(p.w, "backup: %s %s done\n", phaseLabel[p.phase], humanBytes(p.done))
	default:
		fmt.Fprintf(p.w, "backup: %s stopped after %s\n", phaseLabel[p.phase], humanBytes(p.done))
	}
	p.bar = nil
	p.phase = ""
}

// finish ends the progress display; err says whether the work failed.
func (p *backupProgress) finish(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stop(err)
}
