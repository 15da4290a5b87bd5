// Package audit is Vectabase's audit trail: rows in audit_logs that form a
// hash chain keyed by a keyring MAC key, written by group commit.
//
// Record returns only once the event's row is committed; callers fail
// closed on its error (a secret read whose audit row could not be written
// returns no value). One writer goroutine per Log takes queued events and
// commits them in one transaction per batch, so concurrent accesses share a
// commit and auditing does not cap throughput. Across server instances the
// chain head row, locked FOR UPDATE in each batch, orders the writers.
//
// Verify walks the chain and names the first row that was changed, deleted,
// inserted or reordered; the head row, MACed with the row count, catches the
// deletion of the newest rows; the head's MAC also covers the Merkle tree's
// size and root. Deleting every row and the head together, truncating, or
// restoring an older backup leaves a chain that verifies on its own: those
// are caught against a signed checkpoint kept outside the database (see
// checkpoints, published to witnesses, and Log.VerifyCheckpoint).
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/vault/alerts"
)

// ErrClosed is returned by Record after Close.
var ErrClosed = errors.New("audit: log is closed")

// ErrSaturated is in the chain of Record's error when the writer is
// saturated: the queue stayed full for the enqueue timeout, or the writer
// has been stuck on one batch for longer than that. Its code is
// UNAVAILABLE, so the access it fails answers 503.
var ErrSaturated = errors.New("audit: the audit writer is saturated")

// Config is the audit writer's configuration, filled from the environment
// in cmd/.
type Config struct {
	// EnqueueTimeout is the longest Record waits for room in the queue; past
	// it, or while the writer has been stuck on one batch for longer than
	// it, Record fails at once with UNAVAILABLE instead of waiting.
	EnqueueTimeout time.Duration `env:"AUDIT_ENQUEUE_TIMEOUT" envDefault:"2s"`
	// QueueSize bounds the events waiting for the writer.
	QueueSize int `env:"AUDIT_QUEUE_SIZE" envDefault:"4096"`
	// Checkpoints configures signed checkpoints and their witnesses.
	Checkpoints CheckpointConfig
	// Retention: rows older than this are archived (0: never).
	Retention Age `env:"AUDIT_RETENTION" envDefault:"0"`
	// ArchiveDir holds the archive segments (empty: BACKUP_DIR/audit).
	ArchiveDir string `env:"AUDIT_ARCHIVE_DIR"`
}

// Options turns c into New's options.
func (c Config) Options() []Option {
	return []Option{WithEnqueueTimeout(c.EnqueueTimeout), WithQueueSize(c.QueueSize)}
}

// Recorder is what services that audit need: Record returns nil only once
// the event is durably stored.
type Recorder interface {
	Record(ctx context.Context, ev vectabase.AuditEvent) error
}

var _ Recorder = (*Log)(nil)

// Option configures New.
type Option func(*Log)

// WithLinger sets how long the writer waits for more events after the first
// of a batch. The default, zero, adds no wait: a batch is what queued while
// the previous one was being written (plus what goroutines about to run add
// once the writer yields), which grows with load by itself. A short linger
// is rounded up by the runtime's timers to about a millisecond on an idle
// machine, which every audited request would then wait.
func WithLinger(d time.Duration) Option { return func(l *Log) { l.linger = d } }

// WithoutMerkleTree makes the writer skip the Merkle tree: the log as it
// was before checkpoints, kept only so benchmarks can measure what the tree
// and checkpoints cost. Checkpoints and proofs of such a log are wrong
// until a writer with the tree rebuilds it (it does on its first locked
// write, seeing the tree behind the chain).
func WithoutMerkleTree() Option { return func(l *Log) { l.noTree = true } }

// WithMaxBatch bounds the events per transaction (default 256).
func WithMaxBatch(n int) Option {
	return func(l *Log) {
		if n > 0 {
			l.maxBatch = n
		}
	}
}

// WithEnqueueTimeout bounds how long Record waits for room in a full queue
// (default 2 s), and how long the writer may be stuck on one batch before
// Record refuses new events at once (both: UNAVAILABLE, ErrSaturated).
func WithEnqueueTimeout(d time.Duration) Option {
	return func(l *Log) {
		if d > 0 {
			l.enqueueTimeout = d
		}
	}
}

// WithQueueSize bounds the events waiting for the writer (default 4096);
// Record waits for room at most the enqueue timeout (or its context's
// deadline, if sooner).
func WithQueueSize(n int) Option {
	return func(l *Log) {
		if n > 0 {
			l.queueSize = n
		}
	}
}

// Log is the audit trail. It is safe for concurrent use.
type Log struct {
	db *store.DB
	kr *keyring.Keyring
	// wpool is the writer's own small pool: callers may hold every
	// connection of the shared pool while they wait for their audit row
	// (a write transaction commits only after it), so the writer must never
	// queue behind them.
	wpool *pgxpool.Pool
	log   zerolog.Logger

	linger time.Duration
	// head is the chain head as this writer last left it (nil: unknown).
	// Only the writer goroutine touches it.
	head      *store.AuditHead
	maxBatch  int
	queueSize int
	// enqueueTimeout: see WithEnqueueTimeout.
	enqueueTimeout time.Duration
	// busySince is when the writer started the batch it is committing, in
	// Unix nanoseconds (0: idle). Record reads it to fail fast while the
	// writer is stuck (a lock held on the chain head, a database that
	// stopped answering) instead of queueing behind it.
	busySince atomic.Int64

	mu     sync.RWMutex // guards closed against sends on a closed queue
	closed bool
	queue  chan *pending
	done   chan struct{}

	writeFailures   prometheus.Counter
	enqueueTimeouts prometheus.Counter

	// alerter raises an alert when a verification fails (nil: none).
	alerter Alerter
	// noTree: see WithoutMerkleTree.
	noTree bool
	// archiveDir holds archive segments; archiveKeys signs and checks them
	// (SetArchive).
	archiveDir  string
	archiveKeys *Checkpointer
	// cache is the Merkle tree proofs are made from (treecache.go).
	cache treeCache
}

// Alerter raises an alert without waiting for it (alerts.(*Service)).
type Alerter interface {
	Raise(a alerts.Alert)
}

// SetAlerter makes failed verifications raise alerts through a; call it
// before the Log is used.
func (l *Log) SetAlerter(a Alerter) { l.alerter = a }

// alertBroken raises the alert of a failed verification, once per
// finding: finding names it stably (the same broken log checked again, a
// few rows later, is no new event); reason is the operator's message.
func (l *Log) alertBroken(finding, reason string) {
	if l.alerter == nil {
		return
	}
	sum := sha256.Sum256([]byte(finding))
	l.alerter.Raise(alerts.Alert{
		Key: "audit_verify:" + hex.EncodeToString(sum[:16]), Kind: alerts.KindAuditVerify,
		Message: "audit log verification failed: " + reason, ResourceType: "audit_log",
	})
}

type pending struct {
	row  store.AuditRow
	done chan error
}

// New starts the audit writer. Close stops it after flushing what is queued.
// reg may be nil; otherwise the Log counts failed writes on it as
// vectabase_audit_write_failures_total, events refused because the writer
// was saturated as vectabase_audit_enqueue_timeouts_total, and shows the
// queue's length as vectabase_audit_queue_length.
func New(db *store.DB, kr *keyring.Keyring, log zerolog.Logger, reg prometheus.Registerer, opts ...Option) *Log {
	l := &Log{db: db, kr: kr, log: log, maxBatch: 256, queueSize: 4096, enqueueTimeout: 2 * time.Second}
	for _, o := range opts {
		o(l)
	}
	l.writeFailures = registerCounter(reg, prometheus.CounterOpts{
		Name: "vectabase_audit_write_failures_total",
		Help: "Audit events whose row could not be written (the access they record failed closed).",
	})
	l.enqueueTimeouts = registerCounter(reg, prometheus.CounterOpts{
		Name: "vectabase_audit_enqueue_timeouts_total",
		Help: "Audit events refused because the writer was saturated (queue full for AUDIT_ENQUEUE_TIMEOUT, or the writer stuck longer than that); the access answered 503.",
	})
	l.wpool = db.Pool
	pcfg := db.Pool.Config()
	pcfg.MaxConns, pcfg.MinConns = 2, 0
	if p, err := pgxpool.NewWithConfig(context.Background(), pcfg); err == nil {
		l.wpool = p
	} else {
		log.Warn().Str("error", err.Error()).Msg("audit: no dedicated writer pool; sharing the main pool")
	}
	l.queue = make(chan *pending, l.queueSize)
	l.done = make(chan struct{})
	if reg != nil {
		// A second Log on one registry (tests) keeps the first one's gauge.
		_ = reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vectabase_audit_queue_length",
			Help: "Audit events waiting for the writer (bounded by AUDIT_QUEUE_SIZE).",
		}, func() float64 { return float64(len(l.queue)) }))
	}
	go l.writer()
	return l
}

// QueueLength is how many events wait for the writer.
func (l *Log) QueueLength() int { return len(l.queue) }

// saturated returns ErrSaturated, as UNAVAILABLE, and counts it.
func (l *Log) saturated(why string) error {
	l.enqueueTimeouts.Inc()
	l.writeFailures.Inc()
	return vectabase.WrapError(vectabase.EUNAVAILABLE, "the audit trail is overloaded; try again shortly",
		fmt.Errorf("%w: %s", ErrSaturated, why))
}

// registerCounter registers c on reg, reusing a counter already registered
// under the same name (two Logs on one registry in tests and benchmarks).
func registerCounter(reg prometheus.Registerer, opts prometheus.CounterOpts) prometheus.Counter {
	c := prometheus.NewCounter(opts)
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(prometheus.Counter); ok {
				return existing
			}
		}
	}
	return c
}

// Record appends ev to the trail and returns once its row is committed. Any
// error means the row may not be stored: the caller must fail closed. Time
// defaults to now; strings are made storable (valid UTF-8, no NUL, at most
// 1 KiB each); Details must marshal to a JSON object and must hold no
// secret values.
func (l *Log) Record(ctx context.Context, ev vectabase.AuditEvent) error {
	row, err := prepare(ev)
	if err != nil {
		l.writeFailures.Inc()
		return err
	}
	if b := l.busySince.Load(); b != 0 && time.Since(time.Unix(0, b)) > l.enqueueTimeout {
		// The writer is stuck: queueing behind it would only pile up
		// waiting requests.
		return l.saturated("the writer has been stuck on one batch longer than the enqueue timeout")
	}
	p := &pending{row: row, done: make(chan error, 1)}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		l.writeFailures.Inc()
		return ErrClosed
	}
	select {
	case l.queue <- p:
		l.mu.RUnlock()
	default:
		// Full: wait for room, but not longer than the enqueue timeout.
		t := time.NewTimer(l.enqueueTimeout)
		select {
		case l.queue <- p:
			l.mu.RUnlock()
			t.Stop()
		case <-t.C:
			l.mu.RUnlock()
			return l.saturated("the queue stayed full for the enqueue timeout")
		case <-ctx.Done():
			l.mu.RUnlock()
			t.Stop()
			l.writeFailures.Inc()
			return fmt.Errorf("audit: queue full: %w", ctx.Err())
		}
	}
	// Wait for the commit, but give up once the writer has been stuck on
	// one batch past the enqueue timeout: an event queued just before the
	// writer stalled must not wait out the batch's own 10 s deadline.
	t := time.NewTimer(l.enqueueTimeout)
	defer t.Stop()
	for {
		select {
		case err := <-p.done:
			return err
		case <-ctx.Done():
			// The row may still be committed; the access fails anyway.
			return fmt.Errorf("audit: waiting for commit: %w", ctx.Err())
		case <-t.C:
			if b := l.busySince.Load(); b != 0 && time.Since(time.Unix(0, b)) > l.enqueueTimeout {
				// As above: the row may still be committed later.
				return l.saturated("the writer has been stuck on one batch longer than the enqueue timeout")
			}
			t.Reset(l.enqueueTimeout)
		}
	}
}

func prepare(ev vectabase.AuditEvent) (store.AuditRow, error) {
	t := ev.Time
	if t.IsZero() {
		t = time.Now()
	}
	var details []byte
	if len(ev.Details) > 0 {
		raw, err := json.Marshal(ev.Details)
		if err != nil {
			return store.AuditRow{}, fmt.Errorf("audit: details of %s: %w", ev.Action, err)
		}
		if details, err = canonicalJSON(raw); err != nil {
			return store.AuditRow{}, err
		}
	} else {
		details = []byte("{}")
	}
	ip := ""
	if a, err := netip.ParseAddr(ev.IP); err == nil {
		ip = a.Unmap().String()
	}
	if ev.ActorType == "" || ev.Action == "" || ev.Result == "" {
		return store.AuditRow{}, errors.New("audit: an event needs an actor type, an action and a result")
	}
	return store.AuditRow{
		// PostgreSQL keeps microseconds: hash what will be read back.
		OccurredAt:   t.UTC().Truncate(time.Microsecond),
		ActorType:    clip(ev.ActorType),
		ActorID:      clip(ev.ActorID),
		Action:       clip(ev.Action),
		ResourceType: clip(ev.ResourceType),
		ResourceID:   clip(ev.ResourceID),
		Result:       clip(ev.Result),
		IP:           ip,
		RequestID:    clip(ev.RequestID),
		Details:      details,
	}, nil
}

// Close stops accepting events, commits those already queued and waits for
// the writer to finish.
func (l *Log) Close() {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.queue)
	}
	l.mu.Unlock()
	<-l.done
	if l.wpool != l.db.Pool {
		l.wpool.Close()
	}
}

// writer is the single goroutine that commits batches.
func (l *Log) writer() {
	defer close(l.done)
	batch := make([]*pending, 0, l.maxBatch)
	var timer *time.Timer
	for first := range l.queue {
		batch = append(batch[:0], first)
		// Take whatever is already waiting, then maybe linger for more.
		open := l.take(&batch)
		if open && len(batch) < l.maxBatch {
			// Let goroutines that are ready to run add their events.
			runtime.Gosched()
			open = l.take(&batch)
		}
		if open && l.linger > 0 && len(batch) < l.maxBatch {
			if timer == nil {
				timer = time.NewTimer(l.linger)
			} else {
				timer.Reset(l.linger)
			}
		linger:
			for len(batch) < l.maxBatch {
				select {
				case p, ok := <-l.queue:
					if !ok {
						break linger
					}
					batch = append(batch, p)
				case <-timer.C:
					break linger
				}
			}
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
		l.commit(batch)
	}
}

// take appends what is queued to batch, up to maxBatch, without waiting;
// false means the queue is closed.
func (l *Log) take(batch *[]*pending) bool {
	for len(*batch) < l.maxBatch {
		select {
		case p, ok := <-l.queue:
			if !ok {
				return false
			}
			*batch = append(*batch, p)
		default:
			return true
		}
	}
	return true
}

// commit writes batch in one transaction and tells each waiter the outcome.
// When a batch fails, each event is retried alone, so one unstorable event
// cannot fail the accesses it happened to share a batch with.
func (l *Log) commit(batch []*pending) {
	l.busySince.Store(time.Now().UnixNano())
	defer l.busySince.Store(0)
	err := l.write(batch)
	if err != nil && len(batch) > 1 {
		for _, p := range batch {
			l.finish([]*pending{p}, l.write([]*pending{p}))
		}
		return
	}
	l.finish(batch, err)
}

func (l *Log) finish(batch []*pending, err error) {
	if err != nil {
		l.writeFailures.Add(float64(len(batch)))
		l.log.Error().Str("error", err.Error()).Int("events", len(batch)).Msg("audit write failed")
		err = fmt.Errorf("audit: write: %w", err)
	}
	for _, p := range batch {
		p.done <- err
	}
}

// write appends batch to the chain. The writer remembers the head it last
// wrote, so usually the batch goes in one statement that moves the head only
// if no other instance moved it since (compare-and-swap). When one did, or
// the head is not known yet, the batch is written in a transaction holding
// the head's row lock.
func (l *Log) write(batch []*pending) error {
	// Not a request's context: a batch serves many requests.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if prev := l.head; prev != nil {
		l.head = nil
		ids := make([]int64, len(batch))
		for i := range ids {
			ids[i] = prev.LastID + int64(i) + 1
		}
		rows, next, err := l.chain(*prev, ids, batch)
		if err != nil {
			return err
		}
		ok, err := store.AppendAudit(ctx, l.wpool, *prev, next, rows)
		if err != nil {
			// The head stays unknown: the next write reads it under its
			// lock, whether or not this statement took effect.
			return err
		}
		if ok {
			l.head = &next
			return nil
		}
		// Another instance appended since: nothing was written.
	}
	var next store.AuditHead
	err := pgx.BeginFunc(ctx, l.wpool, func(tx pgx.Tx) error {
		head, err := store.LockAuditHead(ctx, tx)
		if err != nil {
			return err
		}
		if err := l.checkHead(head); err != nil {
			return err
		}
		if head.TreeSize != head.RowCount && !l.noTree {
			// Rows written before the Merkle tree existed (migration
			// 00025): build the tree over them once, under the lock.
			if head, err = rebuildTree(ctx, tx, head); err != nil {
				return err
			}
		}
		ids, err := store.NextAuditIDs(ctx, tx, len(batch))
		if err != nil {
			return err
		}
		var rows []store.AuditRow
		if rows, next, err = l.chain(head, ids, batch); err != nil {
			return err
		}
		if err := store.InsertAuditRows(ctx, tx, rows); err != nil {
			return err
		}
		return store.SaveAuditHead(ctx, tx, next)
	})
	if err == nil {
		l.head = &next
	}
	return err
}

// checkHead checks the MAC of the head a locked write is about to extend
// (a placeholder for an empty chain has none). A head that does not verify
// was changed by someone without the MAC key (its end, its length, or its
// Merkle tree's size or root): the write goes on, so audited accesses keep
// working, but the finding is logged and raised as an alert before this
// write seals the head again, so it is not silently laundered.
func (l *Log) checkHead(head store.AuditHead) error {
	if head.LastID == 0 && head.RowCount == 0 && len(head.MAC) == 0 {
		return nil
	}
	sealed, err := headSeal(l.kr, head)
	if err != nil || sealed != sealBroken {
		return err
	}
	reason := fmt.Sprintf("the chain head (row %d, %d rows, Merkle tree of %d leaves) does not match its MAC: it was changed outside the audit writer",
		head.LastID, head.RowCount, head.TreeSize)
	l.log.Error().Int64("lastId", head.LastID).Int64("treeSize", head.TreeSize).Msg("audit: " + reason)
	l.alertBroken(fmt.Sprintf("head %d %d %d %x", head.LastID, head.RowCount, head.TreeSize, head.TreeRoot), reason)
	return nil
}

// rebuildTree returns head with the Merkle tree over every row in tx.
func rebuildTree(ctx context.Context, tx pgx.Tx, head store.AuditHead) (store.AuditHead, error) {
	rng := rangeFactory.NewEmptyRange(0)
	err := store.WalkAuditRows(ctx, tx, func(r store.AuditRow) error {
		r, err := canonicalRow(r)
		if err != nil {
			return err
		}
		return rng.Append(LeafHash(r), nil)
	})
	if err != nil {
		return head, err
	}
	if int64(rng.End()) != head.RowCount {
		return head, fmt.Errorf("audit: cannot build the Merkle tree: %d rows, the chain head says %d", rng.End(), head.RowCount)
	}
	head.TreeSize, head.TreeRange = int64(rng.End()), rng.Hashes()
	head.TreeRoot, err = rootOf(rng)
	return head, err
}

// chain links batch after head under ids: each row's hash covers the one
// before it, and the new head's MAC covers the last.
func (l *Log) chain(head store.AuditHead, ids []int64, batch []*pending) ([]store.AuditRow, store.AuditHead, error) {
	rows := make([]store.AuditRow, len(batch))
	prev := head.LastHash
	for i, p := range batch {
		r := p.row
		r.ID = ids[i]
		r.PrevHash = prev
		var err error
		if r.Hash, err = rowHash(l.kr, prev, r); err != nil {
			return nil, store.AuditHead{}, err
		}
		rows[i], prev = r, r.Hash
	}
	next := store.AuditHead{LastID: ids[len(ids)-1], RowCount: head.RowCount + int64(len(rows)), LastHash: prev}
	var err error
	if l.noTree {
		next.TreeSize, next.TreeRoot, next.TreeRange = head.TreeSize, head.TreeRoot, head.TreeRange
	} else if next.TreeSize, next.TreeRoot, next.TreeRange, err = treeAfter(head, rows); err != nil {
		return nil, store.AuditHead{}, err
	}
	if next.MAC, err = headMAC(l.kr, next); err != nil {
		return nil, store.AuditHead{}, err
	}
	return rows, next, nil
}
