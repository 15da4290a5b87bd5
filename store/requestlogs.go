package store

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

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

	// SpoolDir, when set, is where each row is appended before Add
	// returns (requestlogspool.go), so rows outlive a killed process; ""
	// keeps rows in memory only.
	SpoolDir string
	// SegmentBytes: a spool segment is sealed past this size (4 MiB).
	SegmentBytes int64
	// ReplayEvery is how often the spool directory is scanned for the
	// segments of instances that are gone (10 s).
	ReplayEvery time.Duration
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
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = 4 << 20
	}
	if c.ReplayEvery <= 0 {
		c.ReplayEvery = 10 * time.Second
	}
	return c
}

// queued is a row waiting in memory, with its place in its spool segment
// (seg nil: the row is in memory only).
type queued struct {
	seg *segment
	seq uint64
	RequestLog
}

// RequestLogWriter writes api_request_logs off the request path: Add hands a
// row to a buffered channel and one goroutine COPYs them in batches, also
// moving each key's last_used_at forward. Close drains the buffer, so a
// clean shutdown loses nothing.
//
// With a spool directory, Add first appends the row to this instance's
// spool segment, so a row whose request was answered survives a kill -9
// of the process: the next instance to start on that directory (or one
// already running, within ReplayEvery) replays the segment. A row that
// cannot be written anywhere is counted in
// vectabase_request_logs_lost_total.
type RequestLogWriter struct {
	db  *DB
	cfg RequestLogConfig
	log zerolog.Logger

	// mu: Add holds it for reading without a spool (rows wait for room in
	// the channel side by side), for writing with one (a row's append
	// and its place in the channel are in the same order); Close for
	// writing.
	mu     sync.RWMutex
	closed bool
	ch     chan *queued // pointers: a full-size buffer of values would be 9 MB held from the start
	done   chan struct{}

	// The spool (dir "" when off), guarded by mu.
	dir       string
	cur       *segment
	buf       []byte
	sealed    []*segment // sealed segments the writer has not taken yet
	openAfter time.Time  // no new segment before (after a failed open)

	pending []*segment // the writer goroutine's sealed segments

	written     prometheus.Counter
	lost        prometheus.Counter
	spoolErrors prometheus.Counter
}

// NewRequestLogWriter starts the writer on db. reg may be nil. With a spool
// directory it first replays the segments left there by instances that are
// gone (for at most 30 s; what is left is tried again every ReplayEvery).
// A spool directory that cannot be made is logged and the writer runs
// without one.
func NewRequestLogWriter(db *DB, cfg RequestLogConfig, log zerolog.Logger, reg prometheus.Registerer) *RequestLogWriter {
	cfg = cfg.withDefaults()
	w := &RequestLogWriter{
		db: db, cfg: cfg, log: log,
		ch:   make(chan *queued, cfg.Buffer),
		done: make(chan struct{}),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vectabase_api_request_logs_written_total", Help: "API-key request log rows written.",
		}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vectabase_request_logs_lost_total",
			Help: "API-key request log rows lost: unreadable in a replayed spool segment, or, with no spool, dropped (buffer full past the request deadline, the database refusing them, a shutdown that timed out).",
		}),
		spoolErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vectabase_request_log_spool_errors_total",
			Help: "Appends to the request-log spool that failed (the row stayed in memory only).",
		}),
	}
	if reg != nil {
		reg.MustRegister(w.written, w.lost, w.spoolErrors)
	}
	if cfg.SpoolDir != "" {
		if err := os.MkdirAll(cfg.SpoolDir, 0o700); err != nil {
			log.Error().Str("error", err.Error()).Msg("api request log spool off: rows are kept in memory only")
		} else {
			w.dir = cfg.SpoolDir
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			w.claimOrphans(ctx)
			cancel()
			w.mu.Lock()
			w.openLocked()
			w.mu.Unlock()
		}
	}
	go w.run()
	return w
}

// Add queues l. With a spool it appends l there first and never waits:
// when the channel is full the row is replayed from the segment instead.
// Without one, when the buffer is full it waits (back-pressure rather than
// loss) until ctx ends, and only then drops the row and counts it. After
// Close it drops the row and counts it.
func (w *RequestLogWriter) Add(ctx context.Context, l RequestLog) {
	if w.dir != "" {
		w.addSpooled(l)
		return
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.lost.Inc()
		return
	}
	select {
	case w.ch <- &queued{RequestLog: l}:
		return
	default:
	}
	select {
	case w.ch <- &queued{RequestLog: l}:
	case <-ctx.Done():
		w.lost.Inc()
	}
}

func (w *RequestLogWriter) addSpooled(l RequestLog) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		w.lost.Inc()
		return
	}
	seg := w.cur
	if seg == nil {
		seg = w.openLocked()
	}
	q := queued{RequestLog: l}
	if seg != nil {
		seq := seg.last + 1
		w.buf = appendSpoolRecord(w.buf[:0], seq, l)
		if _, err := seg.f.Write(w.buf); err != nil {
			// A full disk, say: this row stays in memory only, and the
			// segment, whole up to its last good row, is sealed so no
			// torn record sits among good ones.
			w.spoolErrors.Inc()
			_ = seg.f.Truncate(seg.size)
			w.sealLocked()
			w.openAfter = time.Now().Add(time.Second)
			w.log.Error().Str("error", err.Error()).Msg("api request log spool append failed")
		} else {
			seg.last, seg.size = seq, seg.size+int64(len(w.buf))
			q.seg, q.seq = seg, seq
			if seg.broken.Load() {
				// The segment is replayed from its file anyway.
				w.sealIfFullLocked()
				return
			}
		}
	}
	select {
	case w.ch <- &q:
	default:
		if q.seg == nil {
			w.lost.Inc()
			return
		}
		// Memory is full: the row is safe in the segment, which is
		// replayed from there once sealed.
		q.seg.broken.Store(true)
	}
	w.sealIfFullLocked()
}

// openLocked opens a new current segment (nil, and no new try for a
// second, when that fails).
func (w *RequestLogWriter) openLocked() *segment {
	if w.closed || time.Now().Before(w.openAfter) {
		return nil
	}
	seg, err := openSegment(w.dir)
	if err != nil {
		w.openAfter = time.Now().Add(time.Second)
		w.log.Error().Str("error", err.Error()).Msg("api request log spool")
		return nil
	}
	w.cur = seg
	return seg
}

// sealLocked seals the current segment; the next Add opens a new one.
func (w *RequestLogWriter) sealLocked() {
	if w.cur == nil {
		return
	}
	w.cur.sealed = true
	w.sealed = append(w.sealed, w.cur)
	w.cur = nil
}

func (w *RequestLogWriter) sealIfFullLocked() {
	if w.cur != nil && w.cur.size >= w.cfg.SegmentBytes {
		w.sealLocked()
	}
}

// Close stops accepting rows and waits until every queued row is written or
// ctx ends. With a spool, rows not written by then stay in the segment and
// are replayed by the next instance; without one they are counted lost.
func (w *RequestLogWriter) Close(ctx context.Context) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		w.sealLocked()
		close(w.ch)
	}
	w.mu.Unlock()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		if w.dir == "" {
			w.lost.Add(float64(len(w.ch)))
		}
		return ctx.Err()
	}
}

func (w *RequestLogWriter) run() {
	defer close(w.done)
	t := time.NewTicker(w.cfg.Every)
	defer t.Stop()
	lastScan := time.Now()
	batch := make([]queued, 0, w.cfg.Batch)
	for {
		select {
		case q, ok := <-w.ch:
			if !ok {
				w.flush(batch)
				w.tend(true)
				return
			}
			if q.seg != nil && q.seg.broken.Load() {
				continue // replayed from its segment
			}
			batch = append(batch, *q)
			if len(batch) >= w.cfg.Batch {
				w.flush(batch)
				batch = batch[:0]
				w.tend(false)
			}
		case <-t.C:
			if len(batch) > 0 {
				w.flush(batch)
				batch = batch[:0]
			}
			w.tend(false)
			if w.dir != "" && time.Since(lastScan) >= w.cfg.ReplayEvery {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				w.claimOrphans(ctx)
				cancel()
				lastScan = time.Now()
			}
		}
	}
}

// flush writes batch, retrying a few times while the database is away.
// When it cannot, the batch's spooled rows are replayed from their
// segments later; rows in memory only are lost and counted.
func (w *RequestLogWriter) flush(batch []queued) {
	// Rows whose segment broke after they were queued are replayed from
	// it: drop them here.
	live := batch[:0]
	for _, q := range batch {
		if q.seg == nil || !q.seg.broken.Load() {
			live = append(live, q)
		}
	}
	batch = live
	if len(batch) == 0 {
		return
	}
	marks := map[*segment]uint64{}
	for _, q := range batch {
		if q.seg != nil {
			marks[q.seg] = max(marks[q.seg], q.seq)
		}
	}
	delay := 100 * time.Millisecond
	var err error
	for try := 0; try < 5; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = w.write(ctx, batch, marks)
		cancel()
		if err == nil {
			w.written.Add(float64(len(batch)))
			for seg, m := range marks {
				seg.committed = max(seg.committed, m)
			}
			return
		}
		time.Sleep(delay)
		delay *= 2
	}
	memOnly := 0
	for _, q := range batch {
		if q.seg == nil {
			memOnly++
		}
	}
	w.lost.Add(float64(memOnly))
	if len(marks) > 0 {
		w.mu.Lock()
		for seg := range marks {
			seg.broken.Store(true)
		}
		w.mu.Unlock()
	}
	w.log.Error().Str("error", err.Error()).Int("rows", len(batch)).Int("spooled", len(batch)-memOnly).
		Msg("api request logs not written; spooled rows are replayed from their segments")
}

// tend finishes the sealed segments: one whose rows are all committed is
// removed; a broken one is replayed from its file. A broken current
// segment is sealed a second after it opened, so its replay can start,
// unless an earlier broken segment is still owed its replay.
// final (shutdown): segments left over are closed, for the next instance.
func (w *RequestLogWriter) tend(final bool) {
	if w.dir == "" {
		return
	}
	w.mu.Lock()
	// While a broken segment from an earlier pass still waits for its
	// replay (the database is likely away), the current one, broken too, is
	// kept for the rows that follow: a long outage fills one segment up to
	// SegmentBytes instead of leaving a small one per pass.
	replayOwed := slices.ContainsFunc(w.pending, func(seg *segment) bool { return seg.broken.Load() })
	if c := w.cur; c != nil && c.broken.Load() && time.Since(c.opened) >= time.Second && (!replayOwed || final) {
		w.sealLocked()
	}
	w.pending = append(w.pending, w.sealed...)
	w.sealed = nil
	w.mu.Unlock()
	keep := w.pending[:0]
	replayFailed := false // one failed replay a pass: the database is likely away
	for _, seg := range w.pending {
		switch {
		case seg.broken.Load():
			if replayFailed || time.Now().Before(seg.nextReplay) && !final {
				keep = append(keep, seg)
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			done := w.replay(ctx, seg)
			cancel()
			if !done {
				keep = append(keep, seg)
				replayFailed = true
			}
		case seg.committed >= seg.last:
			w.finish(seg)
		default:
			keep = append(keep, seg)
		}
	}
	w.pending = keep
	if final {
		for _, seg := range w.pending {
			seg.f.Close() // the next instance replays it
		}
		w.pending = nil
	}
}

// claimOrphans replays every segment in the spool directory that no live
// process holds, and removes segment files that never got their name.
func (w *RequestLogWriter) claimOrphans(ctx context.Context) {
	for _, path := range orphanPaths(w.dir) {
		if ctx.Err() != nil {
			return
		}
		seg := claimSegment(path)
		if seg == nil {
			continue
		}
		if !w.replay(ctx, seg) {
			seg.f.Close() // tried again at the next scan
		}
	}
	// A crash between creating a segment and naming it leaves an empty
	// file: no row is ever appended before the rename.
	tmps, _ := filepath.Glob(filepath.Join(w.dir, "*"+spoolTmpExt))
	for _, p := range tmps {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			os.Remove(p)
		}
		f.Close()
	}
}

// replay writes the rows of seg's file past its committed prefix, in one
// transaction with the new prefix, then removes the file. It reports
// whether seg is done with (replayed, or given up on after five refusals
// by a database that was up, its rows counted lost).
func (w *RequestLogWriter) replay(ctx context.Context, seg *segment) bool {
	data, err := seg.readAll()
	if err != nil {
		w.log.Error().Str("error", err.Error()).Str("segment", seg.id).Msg("read api request log spool segment")
		return false
	}
	rows, bad := decodeSpool(data)
	var inserted int
	err = w.db.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO api_request_log_segments (segment_id, committed_seq) VALUES ($1, 0)
			ON CONFLICT (segment_id) DO NOTHING`, seg.id); err != nil {
			return err
		}
		var committed uint64
		if err := tx.QueryRow(ctx, `SELECT committed_seq FROM api_request_log_segments WHERE segment_id = $1 FOR UPDATE`,
			seg.id).Scan(&committed); err != nil {
			return err
		}
		var todo []queued
		top := committed
		for _, r := range rows {
			if r.Seq > committed {
				todo = append(todo, queued{seg: seg, seq: r.Seq, RequestLog: r.RequestLog})
				top = max(top, r.Seq)
			}
		}
		inserted = len(todo)
		if len(todo) == 0 {
			return nil
		}
		return w.writeTx(ctx, tx, todo, map[*segment]uint64{seg: top})
	})
	if err != nil {
		seg.nextReplay = time.Now().Add(time.Second << min(seg.replayFail, 5))
		if Unavailable(err) || ctx.Err() != nil {
			w.log.Warn().Str("error", err.Error()).Str("segment", seg.id).Msg("replay api request log spool segment; tried again later")
			return false
		}
		seg.replayFail++
		if seg.replayFail < 5 {
			w.log.Error().Str("error", err.Error()).Str("segment", seg.id).Msg("replay api request log spool segment")
			return false
		}
		w.log.Error().Str("error", err.Error()).Str("segment", seg.id).Int("rows", len(rows)).
			Msg("api request log spool segment given up after five refusals; its rows are counted lost")
		w.lost.Add(float64(len(rows) + bad)) // an over-count by the rows already committed
		w.finish(seg)
		return true
	}
	w.written.Add(float64(inserted))
	if bad > 0 {
		w.lost.Add(float64(bad))
		w.log.Error().Str("segment", seg.id).Int("lost", bad).Msg("api request log spool segment had unreadable records")
	}
	w.finish(seg)
	return true
}

// finish removes seg's file, releases it and forgets its committed prefix.
// The file goes first: a crash in between leaves a prefix row, which is
// harmless, never a file whose prefix is forgotten.
func (w *RequestLogWriter) finish(seg *segment) {
	if err := os.Remove(seg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		w.log.Error().Str("error", err.Error()).Str("segment", seg.id).Msg("remove api request log spool segment")
		seg.f.Close()
		return
	}
	seg.f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := w.db.Pool.Exec(ctx, `DELETE FROM api_request_log_segments WHERE segment_id = $1`, seg.id); err != nil {
		w.log.Warn().Str("error", err.Error()).Str("segment", seg.id).Msg("forget api request log spool segment")
	}
}

// write commits batch and, per segment, the new committed prefix, in one
// transaction.
func (w *RequestLogWriter) write(ctx context.Context, batch []queued, marks map[*segment]uint64) error {
	return w.db.InTx(ctx, func(tx pgx.Tx) error { return w.writeTx(ctx, tx, batch, marks) })
}

func (w *RequestLogWriter) writeTx(ctx context.Context, tx pgx.Tx, batch []queued, marks map[*segment]uint64) error {
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
		rows[i] = []any{l.RequestID, keyID, cleanText(l.Method), cleanText(l.Path), l.Status, int(l.Latency.Milliseconds()), ip, l.At}
	}
	ids := make([]string, 0, len(lastUse))
	ats := make([]time.Time, 0, len(lastUse))
	for id, at := range lastUse {
		ids = append(ids, id)
		ats = append(ats, at)
	}
	if len(ids) > 0 {
		// A key deleted since (its developer deleted their account) would
		// fail the whole COPY on the foreign key: its rows keep no key,
		// as ON DELETE SET NULL would have left them.
		gone, err := missingKeys(ctx, tx, ids)
		if err != nil {
			return err
		}
		if len(gone) > 0 {
			for i, l := range batch {
				if gone[l.APIKeyID] {
					rows[i][1] = nil
				}
			}
		}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"api_request_logs"},
		[]string{"request_id", "api_key_id", "method", "path", "status_code", "latency_ms", "ip_address", "created_at"},
		pgx.CopyFromRows(rows)); err != nil {
		return err
	}
	if len(ids) > 0 {
		if _, err := tx.Exec(ctx, `UPDATE developer_api_keys k SET last_used_at = v.at
			FROM unnest($1::uuid[], $2::timestamptz[]) AS v(id, at)
			WHERE k.id = v.id AND (k.last_used_at IS NULL OR k.last_used_at < v.at)`, ids, ats); err != nil {
			return err
		}
	}
	if len(marks) == 0 {
		return nil
	}
	segIDs := make([]string, 0, len(marks))
	seqs := make([]int64, 0, len(marks))
	for seg, m := range marks {
		segIDs = append(segIDs, seg.id)
		seqs = append(seqs, int64(m))
	}
	_, err := tx.Exec(ctx, `INSERT INTO api_request_log_segments (segment_id, committed_seq)
		SELECT * FROM unnest($1::uuid[], $2::bigint[])
		ON CONFLICT (segment_id) DO UPDATE SET committed_seq = GREATEST(api_request_log_segments.committed_seq, EXCLUDED.committed_seq),
			updated_at = now()`, segIDs, seqs)
	return err
}

// missingKeys returns which of ids have no developer_api_keys row.
func missingKeys(ctx context.Context, tx pgx.Tx, ids []string) (map[string]bool, error) {
	rows, err := tx.Query(ctx, `SELECT v.id::text FROM unnest($1::uuid[]) AS v(id)
		WHERE NOT EXISTS (SELECT 1 FROM developer_api_keys k WHERE k.id = v.id)`, ids)
	if err != nil {
		return nil, err
	}
	gone := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		gone[id] = true
	}
	return gone, rows.Err()
}

// cleanText makes s storable as PostgreSQL text (valid UTF-8, no NUL), so
// one odd request path cannot fail a whole batch.
func cleanText(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}
