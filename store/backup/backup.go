// Package backup makes, lists, verifies, restores and prunes encrypted
// backups of the database. A backup is one file: a pg_dump custom-format
// dump, encrypted by Tink streaming AEAD under a fresh backup key that the
// KEK wraps in the file's header, with an authenticated manifest (time,
// sizes, SHA-256, schema version, row counts per table). Only the KEK is
// needed to restore it on another machine. See format.go for the layout.
//
// The dump never sits in memory or on disk in plaintext: pg_dump's output
// streams through the encrypting writer into the file, and the file
// streams through the decrypting reader into pg_restore.
package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
	"github.com/tink-crypto/tink-go/v2/streamingaead"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
)

// Config is the backups' configuration, filled from the environment in cmd/.
type Config struct {
	// Dir holds the backup files (created with mode 0700).
	Dir string `env:"BACKUP_DIR" envDefault:"./.vectabase/backups"`
	// Schedule is empty or "off" (no scheduled backups), a Go duration
	// ("24h": every 24 hours from start), "@hourly" or "@daily" (at the top
	// of each UTC hour or day). See ParseSchedule.
	Schedule string `env:"BACKUP_SCHEDULE"`
	// Keep is how many backups a scheduled run leaves: the newest Keep.
	Keep int `env:"BACKUP_KEEP" envDefault:"14"`
}

// Auditor is what backups need of the audit trail (vault/audit.Log).
type Auditor interface {
	Record(ctx context.Context, ev vectabase.AuditEvent) error
}

// Actor is who asks for a backup operation, for the audit trail.
type Actor struct {
	Type      string // vectabase.Actor*
	ID        string
	IP        string
	RequestID string
}

// LocalOperator is the actor of the command line.
var LocalOperator = Actor{Type: vectabase.ActorLocalOperator}

// System is the actor of scheduled backups.
var System = Actor{Type: vectabase.ActorSystem, ID: "backup-schedule"}

// Progress reports long work: Done of Total bytes of the dump (Total is -1
// while unknown, as during create).
type Progress struct {
	Phase string // "dump", "verify", "restore"
	Done  int64
	Total int64
}

// ProgressFunc receives progress; it may be nil.
type ProgressFunc func(Progress)

// Backup is one backup as list shows it. Its fields come from the file's
// manifest, which list reads without the KEK; verify authenticates it.
type Backup struct {
	Manifest
	// FileSize is the size of the backup file in bytes.
	FileSize int64 `json:"fileSize"`
	// KEK names the key-encryption key that wraps the backup's key
	// ("local:3f2a…", "vault:…"), from the file's header; keys rotate-kek
	// re-wraps kept backups under the new one.
	KEK string `json:"kek"`
	// Problem is set when the file cannot be read as a backup.
	Problem string `json:"problem,omitempty"`
}

// Scheduled reports whether retention counts the backup.
func (b Backup) Scheduled() bool { return b.Kind == KindScheduled }

// VerifyResult is what verify found.
type VerifyResult struct {
	ID            string `json:"id"`
	OK            bool   `json:"ok"`
	DumpSHA256    string `json:"sha256"`
	Tables        int    `json:"tables"`
	Rows          int64  `json:"rows"`
	SchemaVersion int64  `json:"schemaVersion"`
}

// RestoreResult is what restore did.
type RestoreResult struct {
	ID            string `json:"id"`
	Tables        int    `json:"tables"`
	Rows          int64  `json:"rows"`
	SchemaVersion int64  `json:"schemaVersion"`
}

// Service runs backups of one database. Operations that read or write the
// database (create, verify, restore) run one at a time per Service.
type Service struct {
	cfg Config
	db  conn
	kek keyring.KEK
	// kekParams go into new headers; kekFor derives the KEK of a backup
	// from its header's parameters (a passphrase KEK and its salt).
	kekParams []byte
	kekFor    func(ctx context.Context, params []byte) (keyring.KEK, error)
	tools     tools
	// toolsErr is why pg_dump, pg_restore or psql cannot be used.
	toolsErr error
	log      zerolog.Logger
	aud      Auditor
	version  string
	latest   int64 // newest schema version this binary knows; 0: unchecked
	after    func(context.Context) error
	epilogue func(context.Context) (string, error)
	tmpl     *tinkpb.KeyTemplate
	now      func() time.Time

	lastSuccess prometheus.Gauge
	// failures counts backups that failed to be made (nil: not exported).
	failures prometheus.Counter
	// onFailure is told each backup that failed (WithOnFailure).
	onFailure func(id string, err error)
	// lastMu guards lastSeen, the gauge's value: the newest good backup
	// this process made or found in the directory.
	lastMu   sync.Mutex
	lastSeen float64
	busy     sync.Mutex
}

// Option configures New.
type Option func(*Service)

// WithAuditor records every operation on a.
func WithAuditor(a Auditor) Option { return func(s *Service) { s.aud = a } }

// WithOnFailure calls fn, without waiting for it, when a backup could not
// be made (scheduled or manual): serve raises an operator alert with it.
// err is the cause, for logs; it never holds a key.
func WithOnFailure(fn func(id string, err error)) Option {
	return func(s *Service) { s.onFailure = fn }
}

// WithLogger logs scheduled runs and failures on l.
func WithLogger(l zerolog.Logger) Option { return func(s *Service) { s.log = l } }

// WithVersion names the vectabase version in new manifests.
func WithVersion(v string) Option { return func(s *Service) { s.version = v } }

// WithSchemaVersion makes restore refuse backups whose schema is newer than
// latest, the newest migration this binary has.
func WithSchemaVersion(latest int64) Option { return func(s *Service) { s.latest = latest } }

// WithAfterRestore runs fn after a restore has committed: the server uses
// it to drop pooled connections and reload the keyring, whose keysets the
// restore replaced.
func WithAfterRestore(fn func(context.Context) error) Option {
	return func(s *Service) { s.after = fn }
}

// WithRestoreEpilogue makes restore ask fn, before it drops anything, for
// SQL to run after the dump and before COMMIT, in the restore's own
// transaction: the server re-applies the shredding ledger with it
// (store.DB.ShredReplaySQL), so a restored database never holds an account
// deleted since the backup. An error from fn, or from its SQL, leaves the
// database as it was.
func WithRestoreEpilogue(fn func(context.Context) (string, error)) Option {
	return func(s *Service) { s.epilogue = fn }
}

// WithRegisterer exports vectabase_backup_last_success_timestamp_seconds:
// the time of the newest good backup, whoever made it. Besides this
// service's own successful creates, the backup directory is read when the
// service starts and again on every scrape, so a backup that
// `vectabase backup create` (another process) wrote beside a running server
// shows too.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(s *Service) {
		if reg == nil {
			return
		}
		g := prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vectabase_backup_last_success_timestamp_seconds",
			Help: "Unix time of the newest backup that completed (0: none yet).",
		})
		if err := reg.Register(scrapedGauge{Gauge: g, refresh: s.refreshLastSuccess}); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				if existing, ok := are.ExistingCollector.(scrapedGauge); ok {
					g = existing.Gauge
				}
			}
		}
		s.lastSuccess = g
		// Failures are counted too, so an alert sees a backup that failed
		// (a full disk, the database gone) at once rather than when the
		// last success grows old.
		c := prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vectabase_backup_failures_total",
			Help: "Backups this process failed to make (disk full, database unreachable, ...); each is also in the audit log.",
		})
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				if existing, ok := are.ExistingCollector.(prometheus.Counter); ok {
					c = existing
				}
			}
		}
		s.failures = c
	}
}

// scrapedGauge is a gauge that refresh brings up to date before each
// collection.
type scrapedGauge struct {
	prometheus.Gauge
	refresh func()
}

func (g scrapedGauge) Collect(ch chan<- prometheus.Metric) {
	g.refresh()
	g.Gauge.Collect(ch)
}

// noteSuccess raises the last-success gauge to t when t is newer.
func (s *Service) noteSuccess(t time.Time) {
	if s.lastSuccess == nil {
		return
	}
	s.lastMu.Lock()
	defer s.lastMu.Unlock()
	if v := float64(t.Unix()); v > s.lastSeen {
		s.lastSeen = v
		s.lastSuccess.Set(v)
	}
}

// refreshLastSuccess reads the backup directory's manifests (a few bytes
// per file, without the KEK) and notes the newest readable backup.
func (s *Service) refreshLastSuccess() {
	list, err := s.List(context.Background())
	if err != nil {
		return
	}
	for _, b := range list {
		if b.Problem == "" {
			s.noteSuccess(b.CreatedAt)
			return
		}
	}
}

// WithKEKParams stores params in new backups' headers: what, besides the
// secret, derives the KEK. A passphrase KEK's salt lives in the database;
// kept in the backup too, the passphrase alone restores it on a new
// machine. params must not be secret.
func WithKEKParams(params []byte) Option {
	return func(s *Service) { s.kekParams = params }
}

// WithKEKForParams derives the KEK of a backup whose header holds
// parameters (see WithKEKParams), instead of using the service's KEK.
func WithKEKForParams(fn func(ctx context.Context, params []byte) (keyring.KEK, error)) Option {
	return func(s *Service) { s.kekFor = fn }
}

// WithBinDir runs pg_dump, pg_restore and psql from dir.
func WithBinDir(dir string) Option {
	return func(s *Service) { s.tools.dir = dir }
}

// New returns the backup service for the database at directURL (the direct
// connection: pg_dump needs a session, not a PgBouncer transaction), with
// backup keys wrapped by kek. It fails when the URL is not a postgres://
// URL. Missing PostgreSQL tools fail create, verify and restore (and
// CheckTools) with a message saying what to install.
func New(cfg Config, directURL string, kek keyring.KEK, opts ...Option) (*Service, error) {
	if cfg.Dir == "" {
		cfg.Dir = "./.vectabase/backups"
	}
	if cfg.Keep <= 0 {
		cfg.Keep = 14
	}
	c, err := parseConn(directURL)
	if err != nil {
		return nil, err
	}
	s := &Service{
		cfg: cfg, db: c, kek: kek, log: zerolog.Nop(), version: "dev",
		tmpl: streamingaead.AES256GCMHKDF1MBKeyTemplate(), now: time.Now,
	}
	for _, o := range opts {
		o(s)
	}
	// Without the PostgreSQL tools, list and delete still work; the
	// operations that need them say what is missing.
	if t, err := findTools(s.tools.dir); err != nil {
		s.toolsErr = vectabase.WrapError(vectabase.EUNAVAILABLE, "backups are unavailable: the PostgreSQL client tools (pg_dump, pg_restore, psql) are not installed", err)
	} else {
		s.tools = t
	}
	if s.lastSuccess != nil {
		// The gauge starts from the newest backup already on disk, so a
		// restart does not look like a missed schedule.
		s.refreshLastSuccess()
	}
	return s, nil
}

// CheckTools reports whether pg_dump, pg_restore and psql were found.
func (s *Service) CheckTools() error { return s.toolsErr }

// Config returns the service's configuration.
func (s *Service) Config() Config { return s.cfg }

func (s *Service) path(id string) string { return filepath.Join(s.cfg.Dir, id+fileSuffix) }

// lock takes the service's one operation slot, or says what holds it.
// It also refuses when the PostgreSQL tools are missing.
func (s *Service) lock() error {
	if s.toolsErr != nil {
		return s.toolsErr
	}
	if !s.busy.TryLock() {
		return vectabase.Errorf(vectabase.ECONFLICT, "another backup operation is running; try again when it ends")
	}
	return nil
}

// checkID refuses ids that are not backup ids (and so never a path).
func checkID(id string) error {
	if !ValidID(id) {
		return vectabase.Errorf(vectabase.EVALIDATION, "id: %q is not a backup id (like 20260109T120000Z-1a2b3c4d)", clip(id))
	}
	return nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// List returns the backups in the directory, newest first. A file that
// cannot be read as a backup is listed with Problem set.
func (s *Service) List(ctx context.Context) ([]Backup, error) {
	entries, err := os.ReadDir(s.cfg.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return []Backup{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("backup: read %s: %w", s.cfg.Dir, err)
	}
	out := []Backup{}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), fileSuffix)
		if !ok || !ValidID(id) || !e.Type().IsRegular() {
			continue
		}
		out = append(out, s.describe(id))
	}
	// Newest first by the manifest's time (ids carry whole seconds only),
	// then by id.
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.After(out[j].CreatedAt)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

// Get returns one backup as List shows it: ENOTFOUND when there is none.
func (s *Service) Get(ctx context.Context, id string) (Backup, error) {
	if err := checkID(id); err != nil {
		return Backup{}, err
	}
	if _, err := os.Stat(s.path(id)); errors.Is(err, os.ErrNotExist) {
		return Backup{}, vectabase.Errorf(vectabase.ENOTFOUND, "backup %s not found", id)
	}
	return s.describe(id), nil
}

// describe reads a file's manifest without authenticating it.
func (s *Service) describe(id string) Backup {
	b := Backup{Manifest: Manifest{ID: id}}
	if t, err := time.Parse("20060102T150405Z", id[:16]); err == nil {
		b.CreatedAt = t
	}
	f, err := openFile(s.path(id))
	if err != nil {
		b.Problem = err.Error()
		return b
	}
	defer f.close()
	b.FileSize = f.size
	if f.hdr.id != id {
		b.Problem = fmt.Sprintf("the file's header names backup %s: %v", f.hdr.id, ErrCorrupt)
		return b
	}
	b.Manifest = f.manifest
	b.KEK = f.hdr.kek
	if b.Kind == "" {
		b.Kind = KindManual
	}
	return b
}

// Delete removes a backup file: ENOTFOUND when there is none.
func (s *Service) Delete(ctx context.Context, a Actor, id string) error {
	err := s.delete(id)
	return s.audit(ctx, a, "backup.delete", id, err, nil)
}

func (s *Service) delete(id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	if err := os.Remove(s.path(id)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return vectabase.Errorf(vectabase.ENOTFOUND, "backup %s not found", id)
		}
		return fmt.Errorf("backup: delete %s: %w", id, err)
	}
	return nil
}

// Prune deletes all but the newest keep scheduled backups and returns the
// ids it deleted, oldest last. Manual backups are neither counted nor
// deleted, and neither is a file that cannot be read as a backup.
func (s *Service) Prune(ctx context.Context, a Actor, keep int) ([]string, error) {
	if keep < 1 {
		return nil, vectabase.Errorf(vectabase.EVALIDATION, "keep: must be at least 1, got %d", keep)
	}
	all, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	s.removeStalePartials()
	var deleted []string
	for _, id := range pruneCandidates(all, keep) {
		err := s.delete(id)
		if aerr := s.audit(ctx, a, "backup.delete", id, err, map[string]any{"reason": "retention", "keep": keep}); aerr != nil {
			return deleted, aerr
		}
		deleted = append(deleted, id)
	}
	return deleted, nil
}

// pruneCandidates are the backups retention deletes from list (newest
// first, as List returns it): the readable scheduled backups after the
// newest keep of them. Manual backups and unreadable files are never
// candidates.
func pruneCandidates(list []Backup, keep int) []string {
	var out []string
	n := 0
	for _, b := range list {
		if b.Problem != "" || !b.Scheduled() {
			continue
		}
		n++
		if n > keep {
			out = append(out, b.ID)
		}
	}
	return out
}

// removeStalePartials deletes the half-written files of creates that died
// with their process (a crash, a kill) more than a day ago; a running
// create's file is younger.
func (s *Service) removeStalePartials() {
	entries, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), fileSuffix+".partial") {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > 24*time.Hour {
			_ = os.Remove(filepath.Join(s.cfg.Dir, e.Name()))
		}
	}
}

// audit records an operation's outcome. The operation's own error wins; an
// audit failure after a successful operation is returned, so the caller
// knows the trail misses it.
func (s *Service) audit(ctx context.Context, a Actor, action, id string, opErr error, details map[string]any) error {
	if s.aud == nil {
		return opErr
	}
	ev := vectabase.AuditEvent{
		ActorType: a.Type, ActorID: a.ID, IP: a.IP, RequestID: a.RequestID,
		Action: action, ResourceType: "backup", ResourceID: id,
		Result: vectabase.ResultSuccess, Details: details,
	}
	if ev.ActorType == "" {
		ev.ActorType = vectabase.ActorLocalOperator
	}
	if opErr != nil {
		ev.Result = vectabase.ResultFailure
		if ev.Details == nil {
			ev.Details = map[string]any{}
		}
		ev.Details["reason"] = reason(opErr)
	}
	// The record outlives a cancelled request: the operation happened.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.aud.Record(actx, ev); err != nil {
		if opErr != nil {
			return opErr
		}
		return fmt.Errorf("backup: %s %s succeeded but its audit row could not be written: %w", action, id, err)
	}
	return opErr
}

// reason is a short, secret-free cause for the audit row.
func reason(err error) string {
	var ve *vectabase.Error
	switch {
	case errors.Is(err, ErrWrongKEK):
		return "wrong_kek"
	case errors.Is(err, ErrCorrupt):
		return "corrupt"
	case errors.As(err, &ve):
		return ve.Code
	case errors.Is(err, context.Canceled):
		return "cancelled"
	}
	return "error"
}

// backupFile is an open backup with its header and manifest parsed.
type backupFile struct {
	f        *os.File
	size     int64
	hdr      header
	manifest Manifest
	rawMan   []byte
	tag      []byte
	bodyOff  int64
	bodyLen  int64
}

func (b *backupFile) close() { _ = b.f.Close() }

// openFile opens a backup and parses it, without any key: the structure
// only. authenticate checks it.
func openFile(path string) (*backupFile, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("backup: open: %w", err)
	}
	b := &backupFile{f: f}
	fail := func(err error) (*backupFile, error) { _ = f.Close(); return nil, err }
	st, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	b.size = st.Size()
	if b.hdr, err = readHeader(io.NewSectionReader(f, 0, b.size)); err != nil {
		return fail(err)
	}
	if b.size < int64(len(b.hdr.raw)+trailerSize) {
		return fail(fmt.Errorf("the file is too short (truncated?): %w", ErrCorrupt))
	}
	tr := make([]byte, trailerSize)
	if _, err := f.ReadAt(tr, b.size-trailerSize); err != nil {
		return fail(fmt.Errorf("read trailer: %w", ErrCorrupt))
	}
	mLen, tLen, err := decodeTrailer(tr)
	if err != nil {
		return fail(err)
	}
	b.bodyOff = int64(len(b.hdr.raw))
	b.bodyLen = b.size - trailerSize - mLen - tLen - b.bodyOff
	if b.bodyLen < 0 {
		return fail(fmt.Errorf("trailer lengths exceed the file: %w", ErrCorrupt))
	}
	b.rawMan = make([]byte, mLen)
	b.tag = make([]byte, tLen)
	if _, err := f.ReadAt(b.rawMan, b.bodyOff+b.bodyLen); err != nil {
		return fail(fmt.Errorf("read manifest: %w", ErrCorrupt))
	}
	if _, err := f.ReadAt(b.tag, b.bodyOff+b.bodyLen+mLen); err != nil {
		return fail(fmt.Errorf("read manifest tag: %w", ErrCorrupt))
	}
	if b.manifest, err = decodeManifest(b.rawMan); err != nil {
		return fail(err)
	}
	return b, nil
}

// open opens backup id and authenticates its header and manifest with the
// KEK, returning the key for its body. Errors wrap ErrWrongKEK or
// ErrCorrupt as vectabase.Errors (VALIDATION_FAILED) a client can read.
func (s *Service) open(ctx context.Context, id string) (*backupFile, *bodyKey, error) {
	if err := checkID(id); err != nil {
		return nil, nil, err
	}
	b, err := openFile(s.path(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, vectabase.Errorf(vectabase.ENOTFOUND, "backup %s not found", id)
	}
	if err != nil {
		return nil, nil, fileError(id, err)
	}
	fail := func(err error) (*backupFile, *bodyKey, error) { b.close(); return nil, nil, fileError(id, err) }
	if b.hdr.id != id {
		return fail(fmt.Errorf("the header names backup %s: %w", b.hdr.id, ErrCorrupt))
	}
	kek := s.kek
	if len(b.hdr.kekParams) > 0 && s.kekFor != nil {
		if kek, err = s.kekFor(ctx, b.hdr.kekParams); err != nil {
			b.close()
			return nil, nil, fmt.Errorf("backup %s: derive its KEK: %w", id, err)
		}
	}
	sa, err := openBackupKey(ctx, kek, b.hdr)
	if err != nil {
		return fail(err)
	}
	if err := checkManifestTag(sa, b.hdr.raw, b.rawMan, b.tag); err != nil {
		return fail(err)
	}
	if b.manifest.ID != id || b.manifest.BodySize != b.bodyLen {
		return fail(fmt.Errorf("the manifest does not describe this file: %w", ErrCorrupt))
	}
	return b, &bodyKey{sa: sa}, nil
}

// fileError turns a problem with a backup file into a client-facing error;
// other errors (I/O, KMS outage) pass through.
func fileError(id string, err error) error {
	if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrWrongKEK) {
		msg := err.Error()
		if !strings.Contains(msg, id) {
			msg = "backup " + id + ": " + msg
		}
		return vectabase.WrapError(vectabase.EVALIDATION, msg, err)
	}
	return err
}
