package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/kekconfig"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/admin"
	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/server/console"
	"github.com/vectabase/vectabase/server/mail"
	"github.com/vectabase/vectabase/server/marketplace"
	"github.com/vectabase/vectabase/server/openapi"
	"github.com/vectabase/vectabase/server/payments"
	"github.com/vectabase/vectabase/server/realtime"
	"github.com/vectabase/vectabase/server/retention"
	"github.com/vectabase/vectabase/server/rotation"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/backup"
	"github.com/vectabase/vectabase/vault"
	"github.com/vectabase/vectabase/vault/alerts"
	"github.com/vectabase/vectabase/vault/audit"
)

// deps is what the areas of the server are built from. Each area adds the
// services it builds here, so that later areas can use them.
type deps struct {
	cfg Config
	log zerolog.Logger
	reg *prometheus.Registry
	db  *store.DB

	backups  *backup.Service
	kr       *keyring.Keyring
	kek      keyring.KEK
	audit    auth.Auditor
	auditLog *audit.Log
	// checkpoints signs and serves the audit log's checkpoints.
	checkpoints *audit.Checkpointer
	// alerts raises and delivers operator alerts.
	alerts *alerts.Service
	auth   *auth.Service
	vault  *vault.Service
	rot    *rotation.Service

	closers []func()
}

func (d *deps) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

// mountAreas builds each area's service and mounts its route table, in
// dependency order: keyring, audit, auth, then the areas that use them.
func mountAreas(ctx context.Context, d *deps, srv *server.Server) error {
	// Configuration errors first, before any area starts a worker.
	if err := d.cfg.Backup.Validate(); err != nil {
		return err
	}
	if err := d.cfg.Marketplace.Validate(); err != nil {
		return err
	}
	if d.kr == nil {
		kr, err := openKeyring(ctx, d)
		if err != nil {
			return err
		}
		d.kr = kr
	}
	if d.audit == nil {
		// The hash-chained, group-committed audit trail; Close flushes it
		// after the server has drained.
		d.auditLog = audit.New(d.db, d.kr, d.log, d.reg, d.cfg.Audit.Options()...)
		d.closers = append(d.closers, d.auditLog.Close)
		d.audit = d.auditLog
	}
	startCheckpoints(ctx, d)
	startAlerts(ctx, d)
	startRefusals(ctx, d, srv)
	if err := openVault(ctx, d); err != nil {
		return err
	}
	a, err := mountAuth(ctx, d, srv)
	if err != nil {
		return err
	}
	if err := mountSecrets(d, srv); err != nil {
		return err
	}
	if err := mountBackups(ctx, d, srv); err != nil {
		return err
	}

	mk := marketplace.New(d.db, d.kr, d.audit, d.cfg.Marketplace, d.log, d.reg)
	// Runs after the HTTP server has drained, so every request's log row
	// is queued before the final flush.
	d.closers = append(d.closers, func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := mk.Close(cctx); err != nil {
			d.log.Error().Str("error", err.Error()).Msg("flush api request logs")
		}
	})
	srv.Mount(mk.Routes(marketplace.Auth{RequireUser: a.RequireUser(), OptionalUser: a.OptionalUser(), UserID: auth.UserID}))
	srv.Mount(mk.AdminRoutes(a.RequireAdmin()))

	if err := mountDiscord(ctx, d, srv); err != nil {
		return err
	}
	mountStripe(d, srv)

	srv.Mount(openapi.Routes())
	if err := mountRealtime(ctx, d, srv); err != nil {
		return err
	}

	// With Vault the check is a transit round trip: reuse its result for
	// READYZ_KEK_CACHE, so a flood of /readyz is not a flood of Vault calls.
	srv.AddReadyCheck(server.ReadyCheck{Name: "keyring", Check: d.kr.CheckKEK, CacheFor: d.cfg.Server.ReadyzKEKCache})
	// One check per KEK backend in use: the current KEK and each
	// decrypt-only previous one, named kek:<backend>:<n> (n counts from 0,
	// the current KEK), so an operator sees which KMS is failing.
	for i, kek := range keyring.KEKsOf(d.kek) {
		backend, _ := keyring.Describe(kek)
		srv.AddReadyCheck(server.ReadyCheck{
			Name:     fmt.Sprintf("kek:%s:%d", backend, i),
			Check:    func(ctx context.Context) error { return keyring.CheckHealth(ctx, kek) },
			CacheFor: d.cfg.Server.ReadyzKEKCache,
		})
	}
	rot, err := newRotationService(d)
	if err != nil {
		return err
	}
	srv.Mount(admin.KeyRoutes(rot, a.RequireAdmin()))
	mountConsole(d, srv)
	startRotationWorker(ctx, d)
	startSealPersonal(ctx, d)
	return startRetention(ctx, d)
}

// mountConsole mounts the admin console (/console) and the admin read
// APIs it needs beyond the areas' own: users and roles, request counters.
func mountConsole(d *deps, srv *server.Server) {
	srv.Mount(d.auth.AdminRoutes())
	srv.Mount(admin.StatsRoutes(d.reg, d.auth.RequireAdmin()))
	srv.Mount(console.New(d.auth, d.audit).Routes())
}

// startRetention runs the retention worker in the background until the
// server stops. Its passes take a session advisory lock, so they use the
// direct connection (DATABASE_DIRECT_URL), never PgBouncer.
func startRetention(ctx context.Context, d *deps) error {
	cfg := d.cfg.Retention
	// A throttle counter must outlive its window, or the limit resets.
	if floor := 2 * max(d.cfg.Auth.FailureWindow, d.cfg.Auth.AttemptWindow); cfg.Throttle > 0 && time.Duration(cfg.Throttle) < floor {
		cfg.Throttle = retention.Duration(floor)
	}
	w, err := retention.New(cfg, d.cfg.Store.DirectConnString(), d.audit, d.log, d.reg)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); w.Run(wctx) }()
	d.closers = append(d.closers, func() { cancel(); <-done })
	return nil
}

// startRefusals sends the server's per-address, per-minute refusal
// aggregates to the audit trail: each closed minute by a background loop,
// the last one at shutdown (before the audit log's own flush, which runs
// after it because closers run in reverse).
func startRefusals(ctx context.Context, d *deps, srv *server.Server) {
	r := srv.Refusals()
	r.SetRecorder(d.audit)
	rctx, cancel := context.WithCancel(ctx)
	go r.Run(rctx)
	d.closers = append(d.closers, func() {
		cancel()
		fctx, fcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer fcancel()
		r.Flush(fctx, true)
	})
}

// mountAuth builds authentication with its mails, starts its signing-key
// rotation and the mail outbox's worker, and mounts its routes.
func mountAuth(ctx context.Context, d *deps, srv *server.Server) (*auth.Service, error) {
	mcfg := d.cfg.Mail.WithDefaults()
	if mcfg.PublicURL == "" && d.cfg.Server.HTTPAddr != "" {
		mcfg.PublicURL = "http://" + d.cfg.Server.HTTPAddr
	}
	if err := mcfg.Validate(); err != nil {
		return nil, err
	}
	tmpl, err := mail.LoadTemplates(mcfg.TemplateDir)
	if err != nil {
		return nil, err
	}
	a, err := auth.New(ctx, d.cfg.Auth, d.db, d.kr, d.audit, d.log, d.reg, auth.WithMail(mcfg, tmpl))
	if err != nil {
		return nil, err
	}
	d.auth = a
	sender, err := mail.NewSender(mcfg, func(path string, m mail.Message) {
		// vectabase dev: the mail is a file, and its link is here to click.
		d.log.Info().Str("file", path).Str("to", m.To).Str("subject", m.Subject).Str("link", m.Link).Msg("mail written")
	})
	if err != nil {
		return nil, err
	}
	w, err := mail.NewWorker(mcfg, d.db, sender, a.PrepareMail, d.log, d.reg)
	if err != nil {
		return nil, err
	}
	go w.Run(ctx)
	go a.RunKeyRotation(ctx)
	srv.Mount(a.Routes())
	return a, nil
}

// mountStripe mounts the Stripe area. Its credentials come from the
// environment or, when unset there, from the vault at request time, so a
// server without them still starts and its Stripe routes answer 503.
func mountStripe(d *deps, srv *server.Server) {
	var creds payments.Credentials
	if d.vault != nil {
		creds = d.vault
	}
	pay := payments.New(d.db, d.kr, d.cfg.Stripe, creds, d.log, d.reg)
	pay.SetAuditor(d.audit)
	srv.Mount(pay.Routes(payments.Auth{RequireUser: d.auth.RequireUser(), OptionalUser: d.auth.OptionalUser(), UserID: auth.UserID}))
}

// openKeyring builds the KEK the configuration names (local key file,
// local passphrase, Vault transit, AWS KMS or PKCS#11, followed by the
// decrypt-only KEYRING_PREVIOUS_KEKS) and opens the keyring on it.
func openKeyring(ctx context.Context, d *deps) (*keyring.Keyring, error) {
	st := store.NewKeysets(d.db.Pool)
	kek, err := kekconfig.New(ctx, d.cfg.Keyring, st, kekconfig.WithRegisterer(d.reg))
	if err != nil {
		return nil, err
	}
	if c, ok := kek.(io.Closer); ok {
		d.closers = append(d.closers, func() { _ = c.Close() })
	}
	d.kek = kek
	kr, err := keyring.Open(ctx, st, kek, keyring.WithRegisterer(d.reg))
	if err != nil {
		return nil, err // already "keyring: ...", naming the cause
	}
	// An account deleted here stops its cached personal key at once (on
	// other instances within keyring.DefaultPersonalKeyTTL).
	d.db.OnShred(kr.ForgetPersonal)
	return kr, nil
}

// mountRealtime starts the change feed: one LISTEN connection on the direct
// database URL (LISTEN cannot pass PgBouncer's transaction mode) until ctx
// ends, and the /api/realtime socket. Closing the hub ends the sockets,
// which the HTTP server's shutdown does not wait for (they are hijacked).
func mountRealtime(ctx context.Context, d *deps, srv *server.Server) error {
	hub, err := realtime.New(d.cfg.Realtime, d.db, d.cfg.Store.DirectConnString(), d.auth, d.log, d.reg)
	if err != nil {
		return err
	}
	go func() { _ = hub.Run(ctx) }()
	d.closers = append(d.closers, hub.Close)
	srv.Mount(hub.Routes())
	return nil
}

// startCheckpoints signs audit checkpoints in the background
// (AUDIT_CHECKPOINT_EVERY) until the server stops. Instances signing the
// same tree store one checkpoint between them.
func startCheckpoints(ctx context.Context, d *deps) {
	if d.checkpoints == nil {
		d.checkpoints = audit.NewCheckpointer(d.db, d.kr, d.cfg.Audit.Checkpoints, d.log)
	}
	if d.auditLog != nil {
		d.auditLog.SetArchive(auditArchiveDir(d.cfg), d.checkpoints)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	go func() {
		defer func() { done <- struct{}{} }()
		d.checkpoints.Run(cctx)
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		if d.auditLog != nil {
			// AUDIT_RETENTION: rows past it move to signed, encrypted
			// segment files, checked every 10 minutes.
			d.auditLog.RunArchiver(cctx, time.Duration(d.cfg.Audit.Retention), 10*time.Minute)
		}
	}()
	d.closers = append(d.closers, func() { cancel(); <-done; <-done })
}

// startAlerts delivers alerts to ALERT_WEBHOOK_URL in the background until
// the server stops (every instance runs it; the outbox sends each once).
func startAlerts(ctx context.Context, d *deps) {
	if d.alerts == nil {
		d.alerts = alerts.New(d.db, d.audit, d.cfg.Alerts, d.log)
	}
	if d.auditLog != nil {
		d.auditLog.SetAlerter(d.alerts)
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	go func() {
		defer func() { done <- struct{}{} }()
		d.alerts.Run(actx)
	}()
	go func() {
		// The KEK is probed once a minute (one wrap and unwrap; a Vault
		// round trip), so an unreachable KEK alerts before a read fails.
		defer func() { done <- struct{}{} }()
		d.alerts.Watch(actx, alerts.KindKEKUnreachable, "the KEK (keyring backend)", time.Minute, d.kr.CheckKEK)
	}()
	d.closers = append(d.closers, func() { cancel(); <-done; <-done; d.alerts.Wait() })
}

// auditArchiveDir is AUDIT_ARCHIVE_DIR, by default BACKUP_DIR/audit.
func auditArchiveDir(cfg Config) string {
	if cfg.Audit.ArchiveDir != "" {
		return cfg.Audit.ArchiveDir
	}
	return filepath.Join(cfg.Backup.Dir, "audit")
}
