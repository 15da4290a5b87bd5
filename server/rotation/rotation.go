// Package rotation rotates Vectabase's keys while it serves (contract
// section 4): a DEK rotation makes a new primary data key and re-encrypts
// every sensitive value and secret version to it in the background; a KEK
// rotation re-wraps the keysets without touching data; destroy-old removes
// data keys no stored ciphertext uses any more. Every step is audited.
//
// The re-encryption worker runs inside `vectabase serve` (Service.Run) and
// standalone (`vectabase keys reencrypt`, Service.RunJob). Any number of
// workers may share a job: they claim work units with FOR UPDATE SKIP LOCKED
// and record progress in the transaction of each batch (store.Rotations).
package rotation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/policies"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/vault/alerts"
)

// Config tunes the worker. It is filled from the environment in cmd/.
type Config struct {
	// BatchSize is how many values one transaction re-encrypts.
	BatchSize int `env:"ROTATION_BATCH_SIZE" envDefault:"200"`
	// BatchPause is the worker's pause between batches, so the API keeps
	// its latency while a rotation runs.
	BatchPause time.Duration `env:"ROTATION_BATCH_PAUSE" envDefault:"20ms"`
	// ReloadInterval is how often a serving instance re-reads the keysets,
	// so it picks up a rotation made by another instance.
	ReloadInterval time.Duration `env:"ROTATION_RELOAD_INTERVAL" envDefault:"10s"`
	// Settle is how long after a rotation every instance is assumed to have
	// reloaded its keysets; the pass that ends a job starts after it. Keep
	// it above ReloadInterval.
	Settle time.Duration `env:"ROTATION_SETTLE" envDefault:"30s"`
	// PollInterval is how often an idle worker looks for a job.
	PollInterval time.Duration `env:"ROTATION_POLL_INTERVAL" envDefault:"5s"`
	// Workers is how many batches this process runs at once (each on its
	// own unit, so on different columns or key ranges).
	Workers int `env:"ROTATION_WORKERS" envDefault:"1"`
	// ShardRows splits a column into one key range per this many rows (at
	// most store.MaxShards), so several workers can share a large table.
	ShardRows int `env:"ROTATION_SHARD_ROWS" envDefault:"50000"`
	// Disabled keeps `serve` from running the worker (keys reencrypt still
	// works).
	Disabled bool `env:"ROTATION_WORKER_DISABLED" envDefault:"false"`
	// StallAfter is how long a running job may go without progress before
	// `serve` raises an alert (0: never).
	StallAfter time.Duration `env:"ROTATION_STALL_AFTER" envDefault:"15m"`
}

func (c Config) withDefaults() Config {
	if c.BatchSize <= 0 {
		c.BatchSize = 200
	}
	if c.ReloadInterval <= 0 {
		c.ReloadInterval = 10 * time.Second
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 5 * time.Second
	}
	if c.Settle < 0 {
		c.Settle = 0
	}
	if c.Workers <= 0 {
		c.Workers = 1
	}
	return c
}

// Auditor records audit events; vault/audit implements it. Record failing
// fails the operation it records where the operation has not happened yet.
type Auditor interface {
	Record(ctx context.Context, ev vectabase.AuditEvent) error
}

// Actor is who asks for a key operation, for the audit trail.
type Actor struct {
	Type      string // vectabase.Actor*
	ID        string
	IP        string
	RequestID string
}

// LocalOperator is the actor of the command line.
var LocalOperator = Actor{Type: vectabase.ActorLocalOperator}

// Service performs key operations and runs the re-encryption worker.
type Service struct {
	cfg     Config
	db      *store.DB
	rot     *store.Rotations
	kr      *keyring.Keyring
	aud     Auditor
	log     zerolog.Logger
	metrics *metrics
	// kekRotator, when set, rotates the KEK in place (Vault transit: a new
	// key version) and returns the KEK to re-wrap with.
	kekRotator func(context.Context) (keyring.KEK, error)
	backend    string
	// alerter raises alerts for failed rotations (nil: none).
	alerter Alerter
}

// Alerter raises an alert without waiting for it (alerts.(*Service)).
type Alerter interface {
	Raise(a alerts.Alert)
}

// WithAlerter makes failed rotations raise alerts through a: a failed KEK
// rotation once per job, a failing re-encryption batch once per DEK job.
func WithAlerter(a Alerter) Option { return func(s *Service) { s.alerter = a } }

func (s *Service) alert(kind, key, msg string) {
	if s.alerter != nil {
		s.alerter.Raise(alerts.Alert{Key: key, Kind: kind, Message: msg, ResourceType: "keyring"})
	}
}

// Option configures New.
type Option func(*Service)

// WithKEKRotator lets POST /api/admin/keys/rotate {kind:"kek"} rotate the
// KEK: for Vault, rotate the transit key and re-wrap under its new version.
func WithKEKRotator(f func(context.Context) (keyring.KEK, error)) Option {
	return func(s *Service) { s.kekRotator = f }
}

// New builds the service. reg may be nil.
func New(cfg Config, db *store.DB, kr *keyring.Keyring, aud Auditor, log zerolog.Logger, reg prometheus.Registerer, opts ...Option) (*Service, error) {
	if db == nil || kr == nil || aud == nil {
		return nil, errors.New("rotation: New needs a database, a keyring and an auditor")
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg.withDefaults(), db: db, rot: store.NewRotations(db.Pool), kr: kr, aud: aud,
		log: log.With().Str("component", "rotation").Logger(), metrics: m}
	for _, o := range opts {
		o(s)
	}
	if s.cfg.Settle < s.cfg.ReloadInterval {
		// A job could then end while an instance still writes with the
		// old primary; the next `keys reencrypt` would have to catch it.
		s.log.Warn().Dur("settle", s.cfg.Settle).Dur("reloadInterval", s.cfg.ReloadInterval).
			Msg("ROTATION_SETTLE is below ROTATION_RELOAD_INTERVAL: a rotation may end before every instance writes under the new key")
	}
	return s, nil
}

func (s *Service) audit(ctx context.Context, a Actor, action, resType, resID, result string, details map[string]any) error {
	return s.aud.Record(ctx, vectabase.AuditEvent{
		Time: time.Now(), ActorType: a.Type, ActorID: a.ID, Action: action,
		ResourceType: resType, ResourceID: resID, Result: result,
		IP: a.IP, RequestID: a.RequestID, Details: details,
	})
}

func (a Actor) String() string {
	if a.ID == "" {
		return a.Type
	}
	return a.Type + ":" + a.ID
}

// columns returns the sensitive columns present in the database.
func (s *Service) columns(ctx context.Context) ([]policies.Column, error) {
	cols, err := policies.SensitiveColumns()
	if err != nil {
		return nil, err
	}
	return store.ExistingColumns(ctx, s.db.Pool, cols)
}

// CiphertextCounts counts the stored ciphertexts per data key id.
func (s *Service) CiphertextCounts(ctx context.Context) (map[uint32]int64, error) {
	cols, err := s.columns(ctx)
	if err != nil {
		return nil, err
	}
	return store.CountCiphertextsByKeyID(ctx, s.db.Pool, cols)
}

// RotateDEK makes a new primary data key and starts the job that
// re-encrypts every stored value to it. From the moment it returns, this
// instance encrypts under the new key; others follow within
// ReloadInterval. Refused (audited) when the audit record cannot be written
// beforehand.
func (s *Service) RotateDEK(ctx context.Context, a Actor) (store.RotationJob, error) {
	if err := s.audit(ctx, a, "keys.rotate_dek", "keyset", keyring.KeysetData, vectabase.ResultSuccess,
		map[string]any{"stage": "requested", "oldPrimaryKeyId": s.kr.PrimaryKeyID()}); err != nil {
		return store.RotationJob{}, fmt.Errorf("rotation: audit: %w", err)
	}
	id, err := s.kr.RotateDEK(ctx)
	if err != nil {
		_ = s.audit(ctx, a, "keys.rotate_dek", "keyset", keyring.KeysetData, vectabase.ResultFailure, map[string]any{"stage": "rotate"})
		return store.RotationJob{}, err
	}
	job, err := s.startJob(ctx, a, id)
	if err != nil {
		return store.RotationJob{}, err
	}
	if err := s.audit(ctx, a, "keys.rotate_dek", "rotation_job", job.ID, vectabase.ResultSuccess,
		map[string]any{"stage": "rotated", "newPrimaryKeyId": id, "pendingValues": job.PendingAtStart}); err != nil {
		s.log.Error().Err(err).Str("jobId", job.ID).Msg("audit of a DEK rotation failed after the rotation")
	}
	return job, nil
}

func (s *Service) startJob(ctx context.Context, a Actor, target uint32) (store.RotationJob, error) {
	cols, err := s.columns(ctx)
	if err != nil {
		return store.RotationJob{}, err
	}
	counts, err := store.CountCiphertextsByKeyID(ctx, s.db.Pool, cols)
	if err != nil {
		return store.RotationJob{}, err
	}
	var pending int64
	for id, n := range counts {
		if id != target {
			pending += n
		}
	}
	job, err := s.rot.CreateDEKJob(ctx, target, a.String(), pending, s.cfg.Settle, cols, s.cfg.ShardRows)
	if err != nil {
		return store.RotationJob{}, err
	}
	s.metrics.pending.Set(float64(pending))
	return job, nil
}

// EnsureJob returns the running DEK job, or starts one when stored values
// are not under the primary key (a rotation whose job was never recorded,
// or values written by an instance with old keysets after a job ended).
// It returns store.ErrNotFound when there is nothing to do.
func (s *Service) EnsureJob(ctx context.Context, a Actor) (store.RotationJob, error) {
	if err := s.reload(ctx); err != nil {
		return store.RotationJob{}, err
	}
	job, err := s.rot.RunningJob(ctx, store.RotationDEK)
	if err == nil || !errors.Is(err, store.ErrNotFound) {
		return job, err
	}
	counts, err := s.CiphertextCounts(ctx)
	if err != nil {
		return store.RotationJob{}, err
	}
	primary := s.kr.PrimaryKeyID()
	for id, n := range counts {
		if id != primary && n > 0 {
			job, err := s.startJob(ctx, a, primary)
			if err != nil {
				return job, err
			}
			if err := s.audit(ctx, a, "keys.reencrypt_start", "rotation_job", job.ID, vectabase.ResultSuccess,
				map[string]any{"targetKeyId": primary, "pendingValues": job.PendingAtStart}); err != nil {
				s.log.Error().Err(err).Msg("audit of a re-encryption start failed")
			}
			return job, nil
		}
	}
	return store.RotationJob{}, store.ErrNotFound
}

// reload picks up keysets another instance changed (one small query when
// nothing changed).
func (s *Service) reload(ctx context.Context) error {
	_, err := s.kr.Status(ctx)
	return err
}

// Progress is the state of the newest DEK rotation job.
type Progress struct {
	Job            *store.RotationJob   `json:"job"`
	Units          []store.RotationUnit `json:"units,omitempty"`
	PendingValues  int64                `json:"pendingValues"`
	PrimaryKeyID   uint32               `json:"primaryKeyId"`
	PercentDone    float64              `json:"percentDone"`
	ReencryptedNow int64                `json:"reencrypted"`
}

// Progress reports the newest DEK job (Job is nil when there never was one).
func (s *Service) Progress(ctx context.Context) (Progress, error) {
	p := Progress{PrimaryKeyID: s.kr.PrimaryKeyID()}
	job, err := s.rot.LatestJob(ctx, store.RotationDEK)
	if errors.Is(err, store.ErrNotFound) {
		return p, nil
	}
	if err != nil {
		return p, err
	}
	return s.progressOf(ctx, job)
}

func (s *Service) progressOf(ctx context.Context, job store.RotationJob) (Progress, error) {
	p := Progress{Job: &job, PrimaryKeyID: s.kr.PrimaryKeyID(), ReencryptedNow: job.Reencrypted}
	units, err := s.rot.Units(ctx, job.ID)
	if err != nil {
		return p, err
	}
	p.Units = units
	if job.State == store.JobRunning {
		p.PendingValues = max(0, job.PendingAtStart-job.Reencrypted)
	}
	switch {
	case job.State == store.JobDone:
		p.PercentDone = 100
	case job.PendingAtStart > 0:
		p.PercentDone = min(99.9, 100*float64(job.Reencrypted)/float64(job.PendingAtStart))
	}
	return p, nil
}

// RunJob works on job with Config.Workers workers until it is done,
// failed or superseded, or ctx ends. onBatch, when not nil, is told the
// progress after each batch (never by two workers at once).
func (s *Service) RunJob(ctx context.Context, jobID string, onBatch func(Progress)) (store.RotationJob, error) {
	if onBatch != nil {
		var mu sync.Mutex
		inner := onBatch
		onBatch = func(p Progress) {
			mu.Lock()
			defer mu.Unlock()
			inner(p)
		}
	}
	if s.cfg.Workers == 1 {
		return s.runJob(ctx, jobID, onBatch)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, s.cfg.Workers)
	for range s.cfg.Workers {
		go func() {
			_, err := s.runJob(wctx, jobID, onBatch)
			if err != nil {
				cancel() // one worker failing stops the others
			}
			errs <- err
		}()
	}
	var first error
	for range s.cfg.Workers {
		if err := <-errs; err != nil && (first == nil || errors.Is(first, context.Canceled)) {
			first = err
		}
	}
	if first != nil {
		return store.RotationJob{}, first
	}
	return s.rot.Job(ctx, jobID)
}

func (s *Service) runJob(ctx context.Context, jobID string, onBatch func(Progress)) (store.RotationJob, error) {
	for {
		job, err := s.rot.Job(ctx, jobID)
		if err != nil {
			return job, err
		}
		if job.State != store.JobRunning {
			return job, nil
		}
		if s.kr.PrimaryKeyID() != job.TargetKeyID {
			if err := s.reload(ctx); err != nil {
				return job, err
			}
			if s.kr.PrimaryKeyID() != job.TargetKeyID {
				// This job was superseded by a newer rotation that has not
				// been recorded yet, or the keysets are behind: wait.
				if err := sleep(ctx, s.cfg.PollInterval); err != nil {
					return job, err
				}
				continue
			}
		}
		res, err := s.rot.ReencryptBatch(ctx, job.ID, job.TargetKeyID, s.cfg.BatchSize, s.kr)
		if err != nil {
			return job, err
		}
		if res.Stopped {
			continue
		}
		if res.Claimed {
			s.metrics.reencrypted.Add(float64(res.Reencrypted))
			if res.Failed > 0 {
				s.log.Warn().Str("jobId", job.ID).Str("table", res.Table).Str("column", res.Column).
					Int("failed", res.Failed).Msg("values that do not decrypt were left as they are")
			}
			if onBatch != nil || res.Reencrypted > 0 {
				if p, err := s.progressOf(ctx, job); err == nil {
					s.metrics.pending.Set(float64(p.PendingValues))
					if onBatch != nil {
						onBatch(p)
					}
				}
			}
			if err := sleep(ctx, s.cfg.BatchPause); err != nil {
				return job, err
			}
			continue
		}
		out, j, err := s.rot.FinishPass(ctx, job.ID)
		if err != nil {
			return job, err
		}
		switch out {
		case store.PassDone, store.PassFailed:
			s.metrics.pending.Set(0)
			result := vectabase.ResultSuccess
			if out == store.PassFailed {
				result = vectabase.ResultFailure
			}
			if err := s.audit(ctx, Actor{Type: vectabase.ActorSystem}, "keys.reencrypt_done", "rotation_job", j.ID, result,
				map[string]any{"targetKeyId": j.TargetKeyID, "reencrypted": j.Reencrypted, "failed": j.Failed, "passes": j.Pass}); err != nil {
				s.log.Error().Err(err).Str("jobId", j.ID).Msg("audit of a finished re-encryption failed")
			}
			s.log.Info().Str("jobId", j.ID).Str("state", j.State).Int64("reencrypted", j.Reencrypted).Int("passes", j.Pass).Msg("re-encryption finished")
			if onBatch != nil {
				if p, err := s.progressOf(ctx, j); err == nil {
					onBatch(p)
				}
			}
			return j, nil
		case store.PassNext:
			continue
		case store.PassWaiting:
			wait := time.Until(j.SettleUntil)
			if wait <= 0 || wait > s.cfg.PollInterval {
				wait = min(s.cfg.PollInterval, max(wait, 50*time.Millisecond))
			}
			if err := sleep(ctx, wait); err != nil {
				return job, err
			}
		default: // busy: other workers hold the last units
			if err := sleep(ctx, min(s.cfg.PollInterval, 200*time.Millisecond)); err != nil {
				return job, err
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Run is the worker inside `serve`: it reloads the keysets every
// ReloadInterval (so this instance writes under a new primary soon after a
// rotation elsewhere) and works on any running DEK job, until ctx ends.
// Errors are logged and retried; it returns only ctx's error.
func (s *Service) Run(ctx context.Context) error {
	reload := time.NewTicker(s.cfg.ReloadInterval)
	defer reload.Stop()
	jobs := make(chan struct{}, 1)
	go func() {
		defer close(jobs)
		for ctx.Err() == nil {
			job, err := s.rot.RunningJob(ctx, store.RotationDEK)
			switch {
			case err == nil:
				if _, err := s.RunJob(ctx, job.ID, nil); err != nil && ctx.Err() == nil {
					s.log.Error().Err(err).Str("jobId", job.ID).Msg("re-encryption batch failed; retrying")
					s.alert(alerts.KindRotationFailed, "key_rotation_failed:dek:"+job.ID,
						"DEK rotation job "+job.ID+": a re-encryption batch failed; the worker keeps retrying")
					_ = sleep(ctx, s.cfg.PollInterval)
				}
			case errors.Is(err, store.ErrNotFound):
				_ = sleep(ctx, s.cfg.PollInterval)
			default:
				if ctx.Err() == nil {
					s.log.Error().Err(err).Msg("looking for a rotation job failed; retrying")
				}
				_ = sleep(ctx, s.cfg.PollInterval)
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			<-jobs
			return ctx.Err()
		case <-reload.C:
			if err := s.reload(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn().Err(err).Msg("reloading keysets failed")
			}
		}
	}
}

// KeyCount is how many stored ciphertexts one data key made.
type KeyCount struct {
	KeyID       uint32 `json:"keyId"`
	Primary     bool   `json:"primary"`
	Ciphertexts int64  `json:"ciphertexts"`
}

// KeysView is GET /api/admin/keys and `vectabase keys status`.
type KeysView struct {
	keyring.Status
	DataKeys []KeyCount `json:"dataKeys"`
	// Unknown counts ciphertexts under key ids the data keyset does not
	// hold (destroyed keys, or corrupt values).
	Unknown  []KeyCount `json:"unknownKeys,omitempty"`
	Rotation Progress   `json:"rotation"`
}

// Keys describes the keysets, the KEK and the ciphertexts per data key.
func (s *Service) Keys(ctx context.Context) (KeysView, error) {
	st, err := s.kr.Status(ctx)
	if err != nil {
		return KeysView{}, err
	}
	counts, err := s.CiphertextCounts(ctx)
	if err != nil {
		return KeysView{}, err
	}
	v := KeysView{Status: st}
	primary := s.kr.PrimaryKeyID()
	known := map[uint32]bool{}
	for _, ks := range st.Keysets {
		if ks.Name != keyring.KeysetData {
			continue
		}
		for _, k := range ks.Keys {
			known[k.KeyID] = true
			v.DataKeys = append(v.DataKeys, KeyCount{KeyID: k.KeyID, Primary: k.KeyID == primary, Ciphertexts: counts[k.KeyID]})
		}
	}
	for id, n := range counts {
		if !known[id] {
			v.Unknown = append(v.Unknown, KeyCount{KeyID: id, Ciphertexts: n})
		}
	}
	slices.SortFunc(v.Unknown, func(a, b KeyCount) int { return int(int64(a.KeyID) - int64(b.KeyID)) })
	if v.Rotation, err = s.Progress(ctx); err != nil {
		return KeysView{}, err
	}
	return v, nil
}

// DestroyResult is what DestroyOld did or would refuse.
type DestroyResult struct {
	Destroyed []uint32   `json:"destroyed"`
	InUse     []KeyCount `json:"inUse,omitempty"`
}

// ErrKeysInUse is wrapped by DestroyOld's refusal.
var ErrKeysInUse = errors.New("old data keys are still used by stored ciphertexts")

// DestroyOld removes every non-primary data key, but only when no stored
// ciphertext uses any of them and no re-encryption job is running;
// otherwise it destroys nothing and returns the counts with an error
// (*vectabase.Error CONFLICT wrapping ErrKeysInUse). Audited either way.
func (s *Service) DestroyOld(ctx context.Context, a Actor) (DestroyResult, error) {
	var res DestroyResult
	if err := s.reload(ctx); err != nil {
		return res, err
	}
	if job, err := s.rot.RunningJob(ctx, store.RotationDEK); err == nil {
		_ = s.audit(ctx, a, "keys.destroy_old", "keyset", keyring.KeysetData, vectabase.ResultDenied,
			map[string]any{"reason": "re-encryption running", "jobId": job.ID})
		return res, vectabase.Errorf(vectabase.ECONFLICT, "a re-encryption job (%s) is still running; wait for it to finish", job.ID)
	} else if !errors.Is(err, store.ErrNotFound) {
		return res, err
	}
	counts, err := s.CiphertextCounts(ctx)
	if err != nil {
		return res, err
	}
	ids := s.kr.KeyIDs()
	old := ids[1:]
	for _, id := range old {
		if counts[id] > 0 {
			res.InUse = append(res.InUse, KeyCount{KeyID: id, Ciphertexts: counts[id]})
		}
	}
	if len(res.InUse) > 0 {
		var parts []string
		details := map[string]any{}
		for _, k := range res.InUse {
			parts = append(parts, fmt.Sprintf("key %d: %d ciphertexts", k.KeyID, k.Ciphertexts))
			details[strconv.FormatUint(uint64(k.KeyID), 10)] = k.Ciphertexts
		}
		_ = s.audit(ctx, a, "keys.destroy_old", "keyset", keyring.KeysetData, vectabase.ResultDenied,
			map[string]any{"reason": "keys in use", "counts": details})
		return res, &vectabase.Error{Code: vectabase.ECONFLICT,
			Message: "refusing to destroy old data keys still in use (" + strings.Join(parts, ", ") + "); run `vectabase keys reencrypt` first",
			Err:     ErrKeysInUse}
	}
	if err := s.audit(ctx, a, "keys.destroy_old", "keyset", keyring.KeysetData, vectabase.ResultSuccess,
		map[string]any{"stage": "requested", "keyIds": old}); err != nil {
		return res, fmt.Errorf("rotation: audit: %w", err)
	}
	for _, id := range old {
		if err := s.kr.DestroyKey(ctx, id); err != nil {
			_ = s.audit(ctx, a, "keys.destroy_old", "keyset", keyring.KeysetData, vectabase.ResultFailure,
				map[string]any{"keyId": id, "destroyed": res.Destroyed})
			return res, err
		}
		res.Destroyed = append(res.Destroyed, id)
	}
	if err := s.audit(ctx, a, "keys.destroy_old", "keyset", keyring.KeysetData, vectabase.ResultSuccess,
		map[string]any{"stage": "destroyed", "keyIds": res.Destroyed}); err != nil {
		s.log.Error().Err(err).Msg("audit of destroyed keys failed after destroying them")
	}
	return res, nil
}

// ErrNoKEKRotation is returned by RotateKEKInPlace when the KEK backend
// cannot rotate itself (a local key file or passphrase needs a new one
// given on the command line).
var ErrNoKEKRotation = vectabase.Errorf(vectabase.EVALIDATION,
	"kind: the local KEK cannot rotate itself; use `vectabase keys rotate-kek --new-key-file` (or a new passphrase) on the command line")

// RotateKEKInPlace rotates a KEK that can rotate itself (Vault transit)
// and re-wraps the keysets under its new version.
func (s *Service) RotateKEKInPlace(ctx context.Context, a Actor) (store.RotationJob, error) {
	if s.kekRotator == nil {
		return store.RotationJob{}, ErrNoKEKRotation
	}
	if err := s.audit(ctx, a, "keys.rotate_kek", "kek", "", vectabase.ResultSuccess, map[string]any{"stage": "requested"}); err != nil {
		return store.RotationJob{}, fmt.Errorf("rotation: audit: %w", err)
	}
	next, err := s.kekRotator(ctx)
	if err != nil {
		return s.recordKEK(ctx, a, nil, err)
	}
	return s.recordKEK(ctx, a, next, s.kr.RotateKEK(ctx, next))
}

// RotateKEK re-wraps every keyset under next (a new key file or
// passphrase) without touching data. On failure the stored keysets are
// those of the old KEK, still readable by it.
func (s *Service) RotateKEK(ctx context.Context, a Actor, next keyring.KEK) (store.RotationJob, error) {
	if err := s.audit(ctx, a, "keys.rotate_kek", "kek", "", vectabase.ResultSuccess, map[string]any{"stage": "requested"}); err != nil {
		return store.RotationJob{}, fmt.Errorf("rotation: audit: %w", err)
	}
	return s.recordKEK(ctx, a, next, s.kr.RotateKEK(ctx, next))
}

func (s *Service) recordKEK(ctx context.Context, a Actor, next keyring.KEK, rotErr error) (store.RotationJob, error) {
	state, msg, result := store.JobDone, "", vectabase.ResultSuccess
	details := map[string]any{"stage": "rewrapped"}
	if d, ok := next.(keyring.KEKDescriber); ok {
		details["kekBackend"], details["kekKeyId"] = d.KEKBackend(), d.KEKKeyID()
	}
	if rotErr != nil {
		state, msg, result = store.JobFailed, "the keysets were not re-wrapped; every value stays readable with the old KEK", vectabase.ResultFailure
		details["stage"] = "failed"
	}
	job, err := s.rot.RecordJob(ctx, store.RotationKEK, a.String(), state, msg)
	if err != nil {
		s.log.Error().Err(err).Msg("recording a KEK rotation failed")
	}
	if aerr := s.audit(ctx, a, "keys.rotate_kek", "kek", job.ID, result, details); aerr != nil {
		s.log.Error().Err(aerr).Msg("audit of a KEK rotation failed after the rotation")
	}
	if rotErr != nil {
		s.alert(alerts.KindRotationFailed, "key_rotation_failed:kek:"+job.ID+":"+a.String(),
			"KEK rotation failed: "+msg)
		return job, rotErr
	}
	return job, err
}
