package store

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// AuditRow is one row of audit_logs as stored. Details is the canonical
// JSON text of the details object. Empty strings stand for NULL.
type AuditRow struct {
	ID           int64
	OccurredAt   time.Time
	ActorType    string
	ActorID      string
	Action       string
	ResourceType string
	ResourceID   string
	Result       string
	IP           string
	RequestID    string
	Details      []byte
	PrevHash     []byte
	Hash         []byte
}

// AuditHead is the row of audit_chain_head: where the chain ends, how many
// rows it has, and a MAC over both (migration 00003_secrets.sql).
type AuditHead struct {
	LastID   int64
	RowCount int64
	LastHash []byte
	MAC      []byte
	// TreeSize, TreeRoot and TreeRange are the RFC 6962 Merkle tree over
	// the rows (migration 00025): its leaf count, root hash, and the compact
	// range [0, TreeSize) the writer appends to. TreeSize equals RowCount
	// once the tree has caught up with the chain.
	TreeSize  int64
	TreeRoot  []byte
	TreeRange [][]byte
}

// LockAuditHead returns the chain head locked FOR UPDATE until tx ends, so
// audit writers of every server instance append one after another. On an
// empty chain it creates a placeholder head (zero count, no MAC) that the
// caller must overwrite with SaveAuditHead before committing.
func LockAuditHead(ctx context.Context, tx pgx.Tx) (AuditHead, error) {
	const sel = `SELECT ` + auditHeadColumns + ` FROM audit_chain_head WHERE id = 1 FOR UPDATE`
	var h AuditHead
	err := scanAuditHead(tx.QueryRow(ctx, sel), &h)
	if err == nil {
		return h, nil
	}
	if err != pgx.ErrNoRows {
		return h, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO audit_chain_head (id, last_id, row_count, last_hash, mac)
		VALUES (1, 0, 0, '', '') ON CONFLICT (id) DO NOTHING`); err != nil {
		return h, err
	}
	err = scanAuditHead(tx.QueryRow(ctx, sel), &h)
	return h, err
}

const auditHeadColumns = `last_id, row_count, last_hash, mac, tree_size, tree_root, tree_range`

func scanAuditHead(row pgx.Row, h *AuditHead) error {
	return row.Scan(&h.LastID, &h.RowCount, &h.LastHash, &h.MAC, &h.TreeSize, &h.TreeRoot, &h.TreeRange)
}

// treeRoot is a root as stored: never NULL.
func treeRoot(r []byte) []byte {
	if r == nil {
		return []byte{}
	}
	return r
}

// treeRange is a compact range as stored: never NULL.
func treeRange(r [][]byte) [][]byte {
	if r == nil {
		return [][]byte{}
	}
	return r
}

// SaveAuditHead overwrites the chain head; call it in the transaction that
// appended the rows it covers.
func SaveAuditHead(ctx context.Context, tx pgx.Tx, h AuditHead) error {
	_, err := tx.Exec(ctx, `UPDATE audit_chain_head
		SET last_id = $1, row_count = $2, last_hash = $3, mac = $4, tree_size = $5, tree_root = $6,
			tree_range = $7, updated_at = now() WHERE id = 1`,
		h.LastID, h.RowCount, h.LastHash, h.MAC, h.TreeSize, treeRoot(h.TreeRoot), treeRange(h.TreeRange))
	return err
}

// NextAuditIDs reserves n audit row ids, ascending. Called while holding the
// head lock, the ids of successive batches increase in chain order.
func NextAuditIDs(ctx context.Context, tx pgx.Tx, n int) ([]int64, error) {
	rows, err := tx.Query(ctx, `SELECT nextval(pg_get_serial_sequence('audit_logs', 'id')) FROM generate_series(1, $1)`, n)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	if len(ids) != n {
		return nil, fmt.Errorf("store: reserved %d audit ids, want %d", len(ids), n)
	}
	slices.Sort(ids)
	return ids, nil
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func inet(s string) any {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return nil
	}
	return netip.PrefixFrom(a, a.BitLen())
}

// InsertAuditRows appends rows (ids, hashes and all) with COPY.
func InsertAuditRows(ctx context.Context, tx pgx.Tx, rows []AuditRow) error {
	src := make([][]any, len(rows))
	for i, r := range rows {
		src[i] = []any{r.ID, r.OccurredAt, r.ActorType, nullable(r.ActorID), r.Action,
			nullable(r.ResourceType), nullable(r.ResourceID), r.Result, inet(r.IP),
			nullable(r.RequestID), string(r.Details), r.PrevHash, r.Hash}
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_logs"},
		[]string{"id", "occurred_at", "actor_type", "actor_id", "action", "resource_type", "resource_id",
			"result", "ip_address", "request_id", "details", "prev_hash", "hash"},
		pgx.CopyFromRows(src))
	return err
}

// RowQuerier is a pool, a connection or a transaction, for statements
// that return one row.
type RowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// AppendAudit appends rows to the chain whose head was prev, in one
// statement (one round trip, its own transaction when q is a pool): the head
// becomes next only if it still is prev, and the rows are inserted only if
// it did. ok is false when another writer moved the head first; then nothing
// was written. Row ids must follow prev.LastID; the id sequence is moved up
// to next.LastID so that ids it hands out later stay ascending.
func AppendAudit(ctx context.Context, q RowQuerier, prev, next AuditHead, rows []AuditRow) (ok bool, err error) {
	n := len(rows)
	ids, times := make([]int64, n), make([]time.Time, n)
	actorTypes, actorIDs, actions := make([]string, n), make([]string, n), make([]string, n)
	resTypes, resIDs, results := make([]string, n), make([]string, n), make([]string, n)
	ips, reqIDs, details := make([]string, n), make([]string, n), make([]string, n)
	prevs, hashes := make([][]byte, n), make([][]byte, n)
	for i, r := range rows {
		ids[i], times[i] = r.ID, r.OccurredAt
		actorTypes[i], actorIDs[i], actions[i] = r.ActorType, r.ActorID, r.Action
		resTypes[i], resIDs[i], results[i] = r.ResourceType, r.ResourceID, r.Result
		if a, err := netip.ParseAddr(r.IP); err == nil {
			ips[i] = a.String()
		}
		reqIDs[i], details[i] = r.RequestID, string(r.Details)
		prevs[i], hashes[i] = r.PrevHash, r.Hash
	}
	var inserted int64
	head := []any{next.LastID, next.RowCount, next.LastHash, next.MAC, prev.LastID, prev.RowCount, prev.LastHash}
	tree := []any{next.TreeSize, treeRoot(next.TreeRoot), treeRange(next.TreeRange)}
	if n == 1 {
		// One row (a quiet moment) binds plain values: no arrays to encode
		// and unnest.
		err = q.QueryRow(ctx, appendAuditOne, append(head, ids[0], times[0], actorTypes[0], actorIDs[0], actions[0],
			resTypes[0], resIDs[0], results[0], ips[0], reqIDs[0], details[0], prevs[0], hashes[0], tree[0], tree[1], tree[2])...).Scan(&inserted, nil)
	} else {
		err = q.QueryRow(ctx, appendAuditMany, append(head, ids, times, actorTypes, actorIDs, actions,
			resTypes, resIDs, results, ips, reqIDs, details, prevs, hashes, tree[0], tree[1], tree[2])...).Scan(&inserted, nil)
	}
	if err != nil {
		return false, err
	}
	if inserted != 0 && inserted != int64(n) {
		return false, fmt.Errorf("store: appended %d audit rows, want %d", inserted, n)
	}
	return inserted == int64(n), nil
}

// appendAuditSQL is AppendAudit's statement with rows, a FROM item giving
// the rows to insert from $8..$20 as r(id, t, at, aid, act, rt, rid, res,
// ip, req, d, ph, h); $21..$23 are the Merkle tree's new size, root and
// compact range, moved with the head.
func appendAuditSQL(rows string) string {
	return `WITH head AS (
			UPDATE audit_chain_head SET last_id = $1, row_count = $2, last_hash = $3, mac = $4,
				tree_size = $21, tree_root = $22, tree_range = $23, updated_at = now()
			WHERE id = 1 AND last_id = $5 AND row_count = $6 AND last_hash = $7
			RETURNING last_id
		), ins AS (
			INSERT INTO audit_logs (id, occurred_at, actor_type, actor_id, action, resource_type, resource_id,
				result, ip_address, request_id, details, prev_hash, hash)
			SELECT r.id, r.t, r.at, NULLIF(r.aid, ''), r.act, NULLIF(r.rt, ''), NULLIF(r.rid, ''),
				r.res, NULLIF(r.ip, '')::inet, NULLIF(r.req, ''), r.d::jsonb, r.ph, r.h
			FROM ` + rows + `
			WHERE EXISTS (SELECT 1 FROM head)
			RETURNING 1
		)
		SELECT (SELECT count(*) FROM ins),
			(SELECT setval(pg_get_serial_sequence('audit_logs', 'id'), last_id) FROM head)`
}

var (
	appendAuditOne = appendAuditSQL(`(VALUES ($8::bigint, $9::timestamptz, $10::text, $11::text, $12::text,
		$13::text, $14::text, $15::text, $16::text, $17::text, $18::text, $19::bytea, $20::bytea))
		AS r(id, t, at, aid, act, rt, rid, res, ip, req, d, ph, h)`)
	// The arrays enter through scalar subqueries, which hide their length
	// from the planner, so that the statement keeps a generic plan instead
	// of being planned again for each batch size (see useAPIKeyBatch).
	appendAuditMany = appendAuditSQL(`unnest((SELECT $8::bigint[]), (SELECT $9::timestamptz[]), (SELECT $10::text[]),
		(SELECT $11::text[]), (SELECT $12::text[]), (SELECT $13::text[]), (SELECT $14::text[]), (SELECT $15::text[]),
		(SELECT $16::text[]), (SELECT $17::text[]), (SELECT $18::text[]), (SELECT $19::bytea[]), (SELECT $20::bytea[]))
		AS r(id, t, at, aid, act, rt, rid, res, ip, req, d, ph, h)`)
)

const auditColumns = `id, occurred_at, actor_type, COALESCE(actor_id, ''), action,
	COALESCE(resource_type, ''), COALESCE(resource_id, ''), result,
	COALESCE(host(ip_address), ''), COALESCE(request_id, ''), details::text,
	COALESCE(prev_hash, ''::bytea), COALESCE(hash, ''::bytea)`

func scanAuditRow(row pgx.Row) (AuditRow, error) {
	var r AuditRow
	var details string
	err := row.Scan(&r.ID, &r.OccurredAt, &r.ActorType, &r.ActorID, &r.Action, &r.ResourceType,
		&r.ResourceID, &r.Result, &r.IP, &r.RequestID, &details, &r.PrevHash, &r.Hash)
	r.Details = []byte(details)
	return r, err
}

// auditSnapshot begins the read-only, repeatable-read transaction an audit
// walk reads in and reads the chain head in it (found false when there is
// none). The caller rolls tx back.
func (db *DB) auditSnapshot(ctx context.Context) (tx pgx.Tx, h AuditHead, found bool, err error) {
	tx, err = db.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, h, false, err
	}
	err = scanAuditHead(tx.QueryRow(ctx, `SELECT `+auditHeadColumns+` FROM audit_chain_head WHERE id = 1`), &h)
	if err != nil && err != pgx.ErrNoRows {
		_ = tx.Rollback(ctx)
		return nil, h, false, err
	}
	return tx, h, err == nil, nil
}

// WalkAuditChain reads the chain head (ok false when there is none) and then
// every audit row in id order, all from one snapshot, so a walk racing with
// writers sees a consistent chain. fn's error stops the walk and is returned.
//
// segs gets the archive segments (oldest first) in the same snapshot, so
// rows archived during the walk are neither lost nor seen twice.
func (db *DB) WalkAuditChain(ctx context.Context, head func(h AuditHead, ok bool, segs []AuditSegment) error, fn func(AuditRow) error) error {
	tx, h, found, err := db.auditSnapshot(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	segs, err := auditSegments(ctx, tx)
	if err != nil {
		return err
	}
	if err := head(h, found, segs); err != nil {
		return err
	}
	return WalkAuditRows(ctx, tx, fn)
}

// AuditFilter selects audit rows; zero fields match everything. Rows come
// newest first; BeforeID (when > 0) continues a listing after its last row.
type AuditFilter struct {
	ActorType, ActorID, Action, ResourceType, ResourceID, Result string
	Since, Until                                                 time.Time
	BeforeID                                                     int64
	Limit                                                        int
}

// QueryAuditLogs returns up to f.Limit rows matching f, newest first.
func (db *DB) QueryAuditLogs(ctx context.Context, f AuditFilter) ([]AuditRow, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	for _, c := range []struct{ col, v string }{
		{"actor_type", f.ActorType}, {"actor_id", f.ActorID}, {"action", f.Action},
		{"resource_type", f.ResourceType}, {"resource_id", f.ResourceID}, {"result", f.Result},
	} {
		if c.v != "" {
			add(c.col+" = $%d", c.v)
		}
	}
	if !f.Since.IsZero() {
		add("occurred_at >= $%d", f.Since)
	}
	if !f.Until.IsZero() {
		add("occurred_at < $%d", f.Until)
	}
	if f.BeforeID > 0 {
		add("id < $%d", f.BeforeID)
	}
	q := `SELECT ` + auditColumns + ` FROM audit_logs`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, f.Limit)
	q += fmt.Sprintf(` ORDER BY id DESC LIMIT $%d`, len(args))
	rows, err := db.Pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditRow, error) { return scanAuditRow(r) })
}

// WalkAuditRows calls fn with every audit row in id order, read in tx.
func WalkAuditRows(ctx context.Context, tx pgx.Tx, fn func(AuditRow) error) error {
	rows, err := tx.Query(ctx, `SELECT `+auditColumns+` FROM audit_logs ORDER BY id`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanAuditRow(rows)
		if err != nil {
			return err
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

// AuditRowByID returns one audit row, or ErrNotFound.
func (db *DB) AuditRowByID(ctx context.Context, id int64) (AuditRow, error) {
	r, err := scanAuditRow(db.Pool.QueryRow(ctx, `SELECT `+auditColumns+` FROM audit_logs WHERE id = $1`, id))
	return r, MapError(err)
}

// AuditSegment is a row of audit_archive_segments.
type AuditSegment struct {
	Seq        int
	FirstID    int64
	LastID     int64
	FirstIndex int64
	RowCount   int64
	LastHash   []byte
	File       string
	FileSHA256 []byte
}

// AuditSegments returns the archive segments, oldest first.
func (db *DB) AuditSegments(ctx context.Context) ([]AuditSegment, error) {
	s, err := auditSegments(ctx, db.Pool)
	return s, MapError(err)
}

func auditSegments(ctx context.Context, tx Querier) ([]AuditSegment, error) {
	rows, err := tx.Query(ctx, `SELECT seq, first_id, last_id, first_index, row_count, last_hash, file, file_sha256
		FROM audit_archive_segments ORDER BY seq`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditSegment, error) {
		var s AuditSegment
		err := r.Scan(&s.Seq, &s.FirstID, &s.LastID, &s.FirstIndex, &s.RowCount, &s.LastHash, &s.File, &s.FileSHA256)
		return s, err
	})
}

// ArchiveAudit moves the oldest audit rows, those written before cutoff
// (at most limit, a prefix of the chain), into an archive segment: write
// gets the next segment's number, first leaf index and rows, writes the
// file and returns its name and SHA-256; then the segment is recorded and
// the rows deleted, in one transaction holding the chain head's lock. n is
// 0 when no row is old enough.
func (db *DB) ArchiveAudit(ctx context.Context, cutoff time.Time, limit int,
	write func(seq int, firstIndex int64, rows []AuditRow) (file string, sum []byte, err error)) (n int, err error) {
	err = db.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := LockAuditHead(ctx, tx); err != nil {
			return err
		}
		var seq int
		var firstIndex int64
		if err := tx.QueryRow(ctx, `SELECT COALESCE(max(seq), 0) + 1, COALESCE(sum(row_count), 0)::bigint
			FROM audit_archive_segments`).Scan(&seq, &firstIndex); err != nil {
			return err
		}
		q, err := tx.Query(ctx, `SELECT `+auditColumns+` FROM audit_logs ORDER BY id LIMIT $1`, limit)
		if err != nil {
			return err
		}
		all, err := pgx.CollectRows(q, func(r pgx.CollectableRow) (AuditRow, error) { return scanAuditRow(r) })
		if err != nil {
			return err
		}
		var rows []AuditRow
		for _, r := range all {
			if !r.OccurredAt.Before(cutoff) {
				break // a prefix of the chain only
			}
			rows = append(rows, r)
		}
		if len(rows) == 0 {
			return nil
		}
		file, sum, err := write(seq, firstIndex, rows)
		if err != nil {
			return err
		}
		first, last := rows[0], rows[len(rows)-1]
		if _, err := tx.Exec(ctx, `INSERT INTO audit_archive_segments
			(seq, first_id, last_id, first_index, row_count, last_hash, file, file_sha256)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, seq, first.ID, last.ID, firstIndex, len(rows), last.Hash, file, sum); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM audit_logs WHERE id BETWEEN $1 AND $2`, first.ID, last.ID); err != nil {
			return err
		}
		n = len(rows)
		return nil
	})
	return n, MapError(err)
}

// WalkAuditChainAfter reads the chain head (ok false when there is none)
// and then the audit rows with ids above afterID in id order, from one
// snapshot: what a reader who has the rows up to afterID needs to catch
// up. (Rows commit in chain order, so a snapshot holds a prefix of it.)
func (db *DB) WalkAuditChainAfter(ctx context.Context, afterID int64, head func(h AuditHead, ok bool) error, fn func(AuditRow) error) error {
	tx, h, found, err := db.auditSnapshot(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if err := head(h, found); err != nil {
		return err
	}
	// In pages: with a LIMIT the statement's generic plan (the one pgx's
	// prepared statement gets after a few runs) stays an index scan from
	// afterID, where `id > $1` alone is planned for a third of the table:
	// a sequential scan and a sort of every row to find the few new ones.
	const page = 5000
	for {
		rows, err := tx.Query(ctx, `SELECT `+auditColumns+` FROM audit_logs WHERE id > $1 ORDER BY id LIMIT $2`, afterID, page)
		if err != nil {
			return err
		}
		n := 0
		for rows.Next() {
			r, err := scanAuditRow(rows)
			if err == nil {
				err = fn(r)
			}
			if err != nil {
				rows.Close()
				return err
			}
			n, afterID = n+1, r.ID
		}
		rows.Close()
		if err := rows.Err(); err != nil || n < page {
			return err
		}
	}
}
