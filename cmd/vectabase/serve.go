package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/vectabase/vectabase/internal/textpages"
	"github.com/vectabase/vectabase/migrations"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/store"
)

func newServeCmd() *cobra.Command {
	var migrate bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the production server: API, metrics listener and background workers",
		Long: `Run the production server. It needs DATABASE_URL (or the DB_* variables)
and a keyring backend, and refuses to start when the schema is behind the
binary unless --migrate is given.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(false)
			if err != nil {
				return err
			}
			log, err := newLogger(cfg.Log, "json", os.Stderr)
			if err != nil {
				return err
			}
			return runServer(cmd.Context(), cfg, log, runOptions{migrate: migrate})
		},
	}
	cmd.Flags().BoolVar(&migrate, "migrate", false, "apply pending migrations before starting")
	return cmd
}

type runOptions struct {
	migrate bool
	// onAdmin is told the first admin's credentials when this run created it
	// with a generated password (dev mode prints them once).
	onAdmin       func(email, password string)
	adminGenerate bool
}

// runServer opens everything the server needs, serves until ctx is done,
// then drains in-flight requests and closes.
func runServer(ctx context.Context, cfg Config, log zerolog.Logger, opts runOptions) error {
	if err := cfg.Server.Validate(); err != nil {
		return err
	}
	if err := prepareSchema(ctx, cfg.Store, log, opts.migrate); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	db, err := store.Open(ctx, cfg.Store, log, reg)
	if err != nil {
		return err
	}
	defer db.Close()

	if err := ensureAdmin(ctx, db, cfg, opts); err != nil {
		return err
	}

	srv := server.New(cfg.Server, log, reg)
	srv.AddReadyCheck(server.ReadyCheck{Name: "database", Check: db.Ping})
	d := &deps{cfg: cfg, log: log, reg: reg, db: db}
	if err := mountAreas(ctx, d, srv); err != nil {
		return err
	}
	defer d.close()
	// Start-up leaves garbage the runtime hands back to the system only
	// slowly: the argon2id hashes of the first admin and of the dummy
	// password (19 MiB each), migrations, keysets. Hand it back now, so
	// an idle server's RSS is what it keeps (issue 19: under 40 MB).
	debug.FreeOSMemory()
	// And map only the pages of the binary it runs, not whole 2 MB
	// stretches of it (see internal/textpages).
	if st, err := textpages.Release(); err != nil {
		log.Debug().Err(err).Msg("text pages: left as mapped")
	} else {
		log.Debug().Int("ranges", st.Ranges).Int64("bytes", st.Bytes).Msg("text pages: mapped page by page")
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Listen() }()
	log.Info().Str("addr", cfg.Server.HTTPAddr).Str("metrics", cfg.Server.MetricsAddr).Msg("serving")

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info().Msg("shutting down: draining in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
		log.Warn().Err(err).Msg("listener stopped")
	}
	log.Info().Msg("stopped")
	return nil
}

// prepareSchema applies migrations when asked, and otherwise refuses to go
// on with a schema behind the binary.
func prepareSchema(ctx context.Context, cfg store.Config, log zerolog.Logger, migrate bool) error {
	// Reach the database first, with the retry policy, so that a database
	// still starting is waited for and a wrong URL is one clear line.
	// Migrations, LISTEN/NOTIFY, session locks and pg_dump need a session
	// of their own, which a pooler in transaction mode does not give:
	// Direct refuses a DATABASE_DIRECT_URL that leads to one.
	db, err := store.Open(ctx, store.Config{URL: cfg.DirectConnString(), MaxConns: 1, SlowQueryMS: cfg.SlowQueryMS, Direct: true}, log, nil)
	if err != nil {
		return err
	}
	db.Close()
	m, err := migrations.Open(cfg.DirectConnString())
	if err != nil {
		return err
	}
	defer m.Close()
	if migrate {
		n, err := m.Up(ctx)
		if err != nil {
			return err
		}
		if n > 0 {
			log.Info().Int("applied", n).Msg("migrations applied")
		}
		return nil
	}
	cur, latest, err := m.Versions(ctx)
	if err != nil {
		return err
	}
	if cur < latest {
		return fmt.Errorf("the database schema is at version %d but this binary needs %d: run 'vectabase migrate up' or start with --migrate", cur, latest)
	}
	if cur > latest {
		return fmt.Errorf("the database schema is at version %d, newer than this binary's %d: upgrade vectabase", cur, latest)
	}
	return nil
}

// ensureAdmin creates the first admin when the users table is empty:
// from ADMIN_EMAIL/ADMIN_PASSWORD, or in dev with a generated password.
func ensureAdmin(ctx context.Context, db *store.DB, cfg Config, opts runOptions) error {
	email, password := cfg.AdminEmail, cfg.AdminPassword
	generated := false
	if email == "" && opts.adminGenerate {
		email = "admin@vectabase.local"
	}
	if password == "" && opts.adminGenerate {
		n, err := db.CountUsers(ctx)
		if err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		password, err = auth.RandomPassword(24)
		if err != nil {
			return err
		}
		generated = true
	}
	if email == "" || password == "" {
		return nil
	}
	hash, err := auth.HashPassword(password, auth.OWASPArgon2)
	if err != nil {
		return err
	}
	created, err := db.CreateFirstAdmin(ctx, email, hash)
	if err != nil {
		return fmt.Errorf("create the first admin: %w", err)
	}
	if created && generated && opts.onAdmin != nil {
		opts.onAdmin(email, password)
	}
	return nil
}
