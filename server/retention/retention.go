// Package retention deletes what the database need not keep forever: old
// api_request_logs rows, processed Stripe events, expired or revoked
// sessions, stale throttle counters and used OAuth states. Audit rows are
// never pruned here.
//
// One instance at a time runs a pass: it takes a session advisory lock on
// its own direct connection (DATABASE_DIRECT_URL; PgBouncer's transaction
// mode cannot carry session locks), and an instance that does not get it
// skips the pass. Rows go in small batches (RETENTION_BATCH_SIZE, one short
// statement each, skipping rows a request holds, with a pause between), so
// no batch holds many locks for long.
package retention

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/store"
)

// Duration is a time.Duration that also reads whole days ("30d", "90d"),
// as retention periods are usually written.
type Duration time.Duration

// UnmarshalText reads "30d" or any Go duration ("720h", "90m").
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		// At most 100 years: more would overflow a time.Duration.
		if err != nil || n < 0 || n > 36500 {
			return fmt.Errorf("%q is not a number of days (0 to 36500)", s)
		}
		*d = Duration(time.Duration(n) * 24 * time.Hour)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a duration (like 30d or 12h)", s)
	}
	*d = Duration(v)
	return nil
}

// Config is the retention configuration, filled from the environment in
// cmd/. A zero period keeps that kind of row forever.
type Config struct {
	// Interval is how often a pass runs (0: never).
	Interval time.Duration `env:"RETENTION_INTERVAL" envDefault:"1h"`
	// APIRequestLogs is how long api_request_logs rows are kept.
	APIRequestLogs Duration `env:"API_REQUEST_LOG_RETENTION" envDefault:"30d"`
	// StripeEvents is how long processed Stripe event ids are kept (Stripe
	// redelivers for 3 days; a redelivery after this is processed again).
	StripeEvents Duration `env:"STRIPE_EVENT_RETENTION" envDefault:"90d"`
	// Sessions is how long a session is kept after it expired or was
	// revoked (its refresh token is refused either way).
	Sessions Duration `env:"SESSION_RETENTION" envDefault:"1d"`
	// Throttle is how long a login/register throttle counter is kept after
	// its window started; cmd raises it to twice the longest AUTH_* window.
	Throttle Duration `env:"THROTTLE_RETENTION" envDefault:"1h"`
	// BatchSize is the rows one statement deletes at most.
	BatchSize int `env:"RETENTION_BATCH_SIZE" envDefault:"1000"`
	// BatchPause is the pause between two batches.
	BatchPause time.Duration `env:"RETENTION_BATCH_PAUSE" envDefault:"50ms"`
}

// lockKey names the advisory lock one pass holds.
const lockKey = "vectabase.retention"

// ErrBusy is RunOnce's error when another instance holds the lock.
var ErrBusy = errors.New("retention: another instance is running a pass")

// Auditor records the pass (one row per pass that deleted anything).
type Auditor interface {
	Record(ctx context.Context, ev vectabase.AuditEvent) error
}

// Worker runs retention passes.
type Worker struct {
	cfg       Config
	directURL string
	aud       Auditor
	log       zerolog.Logger

	deleted *prometheus.CounterVec
	lastRun prometheus.Gauge
}

// New returns a worker that connects to directURL for each pass. aud may
// be nil; reg (may be nil) gets vectabase_retention_deleted_total{table}
// and vectabase_retention_last_success_timestamp_seconds.
func New(cfg Config, directURL string, aud Auditor, log zerolog.Logger, reg prometheus.Registerer) (*Worker, error) {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	w := &Worker{cfg: cfg, directURL: directURL, aud: aud, log: log}
	var err error
	if w.deleted, err = server.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vectabase_retention_deleted_total",
		Help: "Rows deleted by retention, by table.",
	}, []string{"table"})); err != nil {
		return nil, err
	}
	if w.lastRun, err = server.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "vectabase_retention_last_success_timestamp_seconds",
		Help: "When this instance last completed a retention pass.",
	})); err != nil {
		return nil, err
	}
	return w, nil
}

// Run runs a pass now and then every Interval until ctx is done. A pass
// that fails is logged and tried again at the next tick.
func (w *Worker) Run(ctx context.Context) {
	if w.cfg.Interval <= 0 {
		return
	}
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := w.RunOnce(ctx); err != nil && !errors.Is(err, ErrBusy) && ctx.Err() == nil {
			w.log.Warn().Str("error", err.Error()).Msg("retention pass failed")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// targets lists what a pass prunes and how old a row must be; a zero age
// is skipped.
func (w *Worker) targets() []struct {
	table string
	age   time.Duration
} {
	return []struct {
		table string
		age   time.Duration
	}{
		{store.PruneAPIRequestLogs, time.Duration(w.cfg.APIRequestLogs)},
		// A spool segment's mark outlives its rows by no more than they live.
		{store.PruneRequestLogSegments, time.Duration(w.cfg.APIRequestLogs)},
		{store.PruneStripeEvents, time.Duration(w.cfg.StripeEvents)},
		{store.PruneSessions, time.Duration(w.cfg.Sessions)},
		{store.PruneAuthThrottle, time.Duration(w.cfg.Throttle)},
		// A used OAuth state only matters until it expires.
		{store.PruneOAuthStates, time.Nanosecond},
	}
}

// RunOnce runs one pass and returns the rows deleted per table. ErrBusy
// when another instance holds the lock (nothing is done).
func (w *Worker) RunOnce(ctx context.Context) (map[string]int64, error) {
	conn, err := pgx.Connect(ctx, w.directURL)
	if err != nil {
		return nil, fmt.Errorf("retention: connect: %s", store.Redact(err.Error()))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext($1))`, lockKey).Scan(&got); err != nil {
		return nil, fmt.Errorf("retention: lock: %w", err)
	}
	if !got {
		return nil, ErrBusy
	}
	// Closing the connection releases the lock too; unlock anyway so a
	// pooled direct connection could be reused.
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtext($1))`, lockKey) //nolint:errcheck
	// A batch never waits long behind a lock it did not skip.
	if _, err := conn.Exec(ctx, `SET lock_timeout = '2s'`); err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, tg := range w.targets() {
		if tg.age <= 0 {
			continue
		}
		for {
			n, err := store.PruneBatch(ctx, conn, tg.table, tg.age, w.cfg.BatchSize)
			if err != nil {
				return out, fmt.Errorf("retention: %s: %w", tg.table, err)
			}
			out[tg.table] += n
			w.deleted.WithLabelValues(tg.table).Add(float64(n))
			if n < int64(w.cfg.BatchSize) {
				break
			}
			select {
			case <-ctx.Done():
				return out, ctx.Err()
			case <-time.After(w.cfg.BatchPause):
			}
		}
	}
	w.lastRun.SetToCurrentTime()
	var total int64
	details := map[string]any{}
	for k, v := range out {
		total += v
		details[k] = v
	}
	if total > 0 && w.aud != nil {
		if err := w.aud.Record(ctx, vectabase.AuditEvent{ActorType: vectabase.ActorSystem, Action: "retention.prune",
			ResourceType: "tables", Result: vectabase.ResultSuccess, Details: details}); err != nil {
			w.log.Warn().Str("error", err.Error()).Msg("retention pass not audited")
		}
	}
	w.log.Info().Int64("deleted", total).Msg("retention pass done")
	return out, nil
}
