package store

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// RequestLog is one row of api_request_logs: an API-key request.
type RequestLog struct {
	RequestID string
	APIKeyID  string // "" when the key was unknown
	Method    string
	Path      string
	Status    int
	Latency   time.Duration
	IP        string
	At        time.Time
}

// RequestLogConfig sizes the request-log writer.
type RequestLogConfig struct {
	Buffer int           // rows held in memory waiting for a flush
	Batch  int           // rows per COPY
	Every  time.Duration // longest a row waits before its flush
}

func (c RequestLogConfig) withDefaults() RequestLogConfig {
	if c.Buffer <= 0 {
		c.Buffer = 1 << 16
	}
	if c.Batch <= 0 {
		c.Batch = 1000
	}
	if c.Every <= 0 {
		c.Every = 200 * time.Millisecond
	}
	return c
}

// RequestLogWriter writes api_request_logs off the request path: Add hands a
// row to a buffered channel and one goroutine COPYs them in batches, also
// moving each key's last_used_at forward. Close drains the buffer, so a
// clean shutdown loses nothing.
type RequestLogWriter struct {
	db  *DB
	cfg RequestLogConfig
	log zerolog.Logger

	mu     sync.RWMutex // Add holds it for reading; Close for writing
	closed bool
	ch     chan RequestLog
	done   chan struct{}

	written prometheus.Counter
	dropped prometheus.Counter
}

// NewRequestLogWriter starts the writer on db. reg may be nil.
func NewRequestLogWriter(db *DB, cfg RequestLogConfig, log zerolog.Logger, reg prometheus.Registerer) *RequestLogWriter {
	cfg = cfg.withDefaults()
	w := &RequestLogWriter{
		db: db, cfg: cfg, log: log,
		ch:   make(chan RequestLog, cfg.Buffer),
		done: make(chan struct{}),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vectabase_api_request_logs_written_total", Help: "API-key request log rows written.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vectabase_api_request_logs_dropped_total", Help: "API-key request log rows lost (buffer full past the request deadline, or the database refused them).",
		}),
	}
	if reg != nil {
		reg.MustRegister(w.written, w.dropped)
	}
	go w.run()
	return w
}

// Add queues l. When the buffer is full it waits (back-pressure rather than
// loss) until ctx ends, and only then drops the row and counts it. After
// Close it drops the row.
func (w *RequestLogWriter) Add(ctx context.Context, l RequestLog) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.dropped.Inc()
		return
	}
	select {
	case w.ch <- l:
		return
	default:
	}
	select {
	case w.ch <- l:
	case <-ctx.Done():
		w.dropped.Inc()
	}
}

// Close stops accepting rows and waits until every queued row is written or
// ctx ends.
func (w *RequestLogWriter) Close(ctx context.Context) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.ch)
	}
	w.mu.Unlock()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *RequestLogWriter) run() {
	defer close(w.done)
	t := time.NewTicker(w.cfg.Every)
	defer t.Stop()
	batch := make([]RequestLog, 0, w.cfg.Batch)
	for {
		select {
		case l, ok := <-w.ch:
			if !ok {
				w.flush(batch)
				return
			}
			batch = append(batch, l)
			if len(batch) >= w.cfg.Batch {
				w.flush(batch)
				batch = batch[:0]
			}
		case <-t.C:
			if len(batch) > 0 {
				w.flush(batch)
				batch = batch[:0]
			}
		}
	}
}

// flush writes batch, retrying a few times while the database is away.
func (w *RequestLogWriter) flush(batch []RequestLog) {
	if len(batch) == 0 {
		return
	}
	delay := 100 * time.Millisecond
	var err error
	for try := 0; try < 5; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = w.write(ctx, batch)
		cancel()
		if err == nil {
			w.written.Add(float64(len(batch)))
			return
		}
		time.Sleep(delay)
		delay *= 2
	}
	w.dropped.Add(float64(len(batch)))
	w.log.Error().Str("error", err.Error()).Int("rows", len(batch)).Msg("api request logs lost")
}

func (w *RequestLogWriter) write(ctx context.Context, batch []RequestLog) error {
	lastUse := map[string]time.Time{}
	rows := make([][]any, len(batch))
	for i, l := range batch {
		var keyID any
		if l.APIKeyID != "" {
			keyID = l.APIKeyID
			if l.At.After(lastUse[l.APIKeyID]) {
				lastUse[l.APIKeyID] = l.At
			}
		}
		var ip any
		if a, err := netip.ParseAddr(l.IP); err == nil {
			ip = a
		}
		rows[i] = []any{l.RequestID, keyID, l.Method, l.Path, l.Status, int(l.Latency.Milliseconds()), ip, l.At}
	}
	ids := make([]string, 0, len(lastUse))
	ats := make([]time.Time, 0, len(lastUse))
	for id, at := range lastUse {
		ids = append(ids, id)
		ats = append(ats, at)
	}
	return w.db.InTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"api_request_logs"},
			[]string{"request_id", "api_key_id", "method", "path", "status_code", "latency_ms", "ip_address", "created_at"},
			pgx.CopyFromRows(rows))
		if err != nil || len(ids) == 0 {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE developer_api_keys k SET last_used_at = v.at
			FROM unnest($1::uuid[], $2::timestamptz[]) AS v(id, at)
			WHERE k.id = v.id AND (k.last_used_at IS NULL OR k.last_used_at < v.at)`, ids, ats)
		return err
	})
}
