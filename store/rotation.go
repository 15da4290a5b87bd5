package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/policies"
)

// Rotation job kinds and states (migration 00007_rotation.sql).
const (
	RotationDEK = "dek"
	RotationKEK = "kek"

	JobRunning    = "running"
	JobDone       = "done"
	JobFailed     = "failed"
	JobSuperseded = "superseded"
)

// RotationJob is one key rotation and, for a DEK rotation, the progress of
// re-encrypting every stored value to its target key.
type RotationJob struct {
	ID             string     `json:"jobId"`
	Kind           string     `json:"kind"`
	TargetKeyID    uint32     `json:"targetKeyId,omitempty"`
	State          string     `json:"state"`
	RequestedBy    string     `json:"requestedBy"`
	PendingAtStart int64      `json:"pendingAtStart"`
	Pass           int        `json:"pass"`
	PassStartedAt  time.Time  `json:"passStartedAt"`
	SettleUntil    time.Time  `json:"settleUntil"`
	Error          string     `json:"error,omitempty"`
	CreatedAt      time.Time  `json:"createdAt"`
	FinishedAt     *time.Time `json:"finishedAt,omitempty"`

	// Sums over the job's units.
	Reencrypted int64 `json:"reencrypted"`
	Failed      int64 `json:"failed"`
	Units       int   `json:"units"`
	UnitsDone   int   `json:"unitsDone"`
}

// RotationUnit is the progress of one sensitive column within a job.
type RotationUnit struct {
	Table           string   `json:"table"`
	Column          string   `json:"column"`
	Shard           int      `json:"shard"`
	RangeLo         *string  `json:"-"`
	RangeHi         *string  `json:"-"`
	LastKey         []string `json:"-"`
	Pass            int      `json:"pass"`
	Done            bool     `json:"done"`
	PassReencrypted int64    `json:"passReencrypted"`
	Reencrypted     int64    `json:"reencrypted"`
	Failed          int64    `json:"failed"`
}

// Reencryptor is what re-encryption needs of the keyring: *keyring.Keyring.
type Reencryptor interface {
	Decrypt(ctx context.Context, loc keyring.Location, ciphertext []byte) ([]byte, error)
	Encrypt(ctx context.Context, loc keyring.Location, plaintext []byte) ([]byte, error)
}

// Rotations stores rotation jobs and runs the re-encryption batches. Every
// statement is transaction scoped (row locks, no session locks), so it works
// behind PgBouncer in transaction mode.
type Rotations struct {
	pool *pgxpool.Pool
}

// NewRotations returns the rotation repository on pool.
func NewRotations(pool *pgxpool.Pool) *Rotations { return &Rotations{pool: pool} }

// ExistingColumns returns the columns of cols whose table exists in the
// database, so a binary whose policy lists a table another area's migration
// has not created yet still rotates the rest.
func ExistingColumns(ctx context.Context, q Querier, cols []policies.Column) ([]policies.Column, error) {
	var out []policies.Column
	for _, c := range cols {
		rows, err := q.Query(ctx, `SELECT to_regclass($1) IS NOT NULL`, "public."+c.Table)
		if err != nil {
			return nil, fmt.Errorf("store: look up table %s: %w", c.Table, err)
		}
		ok, err := pgx.CollectExactlyOneRow(rows, pgx.RowTo[bool])
		if err != nil {
			return nil, fmt.Errorf("store: look up table %s: %w", c.Table, err)
		}
		if ok {
			out = append(out, c)
		}
	}
	return out, nil
}

const jobColumns = `j.id::text, j.kind, j.target_key_id, j.state, j.requested_by, j.pending_at_start,
	j.pass, j.pass_started_at, j.settle_until, j.error, j.created_at, j.finished_at,
	coalesce(sum(p.reencrypted), 0)::bigint, coalesce(sum(p.failed), 0)::bigint,
	count(p.table_name)::int, (count(p.table_name) FILTER (WHERE p.done))::int`

func scanJob(row pgx.Row) (RotationJob, error) {
	var j RotationJob
	var target int64
	err := row.Scan(&j.ID, &j.Kind, &target, &j.State, &j.RequestedBy, &j.PendingAtStart,
		&j.Pass, &j.PassStartedAt, &j.SettleUntil, &j.Error, &j.CreatedAt, &j.FinishedAt,
		&j.Reencrypted, &j.Failed, &j.Units, &j.UnitsDone)
	j.TargetKeyID = uint32(target)
	if errors.Is(err, pgx.ErrNoRows) {
		return j, ErrNotFound
	}
	return j, err
}

func (r *Rotations) queryJob(ctx context.Context, where string, args ...any) (RotationJob, error) {
	j, err := scanJob(r.pool.QueryRow(ctx, `SELECT `+jobColumns+`
		FROM rotation_jobs j LEFT JOIN rotation_progress p ON p.job_id = j.id
		WHERE `+where+` GROUP BY j.id ORDER BY j.created_at DESC LIMIT 1`, args...))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return j, fmt.Errorf("store: rotation job: %w", err)
	}
	return j, err
}

// Job returns the job with id, or ErrNotFound.
func (r *Rotations) Job(ctx context.Context, id string) (RotationJob, error) {
	if !uuidRE.MatchString(id) {
		return RotationJob{}, ErrNotFound
	}
	return r.queryJob(ctx, `j.id = $1::uuid`, id)
}

// RunningJob returns the running job of kind, or ErrNotFound.
func (r *Rotations) RunningJob(ctx context.Context, kind string) (RotationJob, error) {
	return r.queryJob(ctx, `j.kind = $1 AND j.state = 'running'`, kind)
}

// LatestJob returns the newest job of kind, or ErrNotFound.
func (r *Rotations) LatestJob(ctx context.Context, kind string) (RotationJob, error) {
	return r.queryJob(ctx, `j.kind = $1`, kind)
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// Units returns the units of job, ordered by table and column.
func (r *Rotations) Units(ctx context.Context, jobID string) ([]RotationUnit, error) {
	rows, err := r.pool.Query(ctx, `
		SELECT table_name, column_name, shard, last_key, pass, done, pass_reencrypted, reencrypted, failed
		FROM rotation_progress WHERE job_id = $1::uuid ORDER BY table_name, column_name, shard`, jobID)
	if err != nil {
		return nil, fmt.Errorf("store: rotation units: %w", err)
	}
	units, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RotationUnit, error) {
		var u RotationUnit
		err := row.Scan(&u.Table, &u.Column, &u.Shard, &u.LastKey, &u.Pass, &u.Done, &u.PassReencrypted, &u.Reencrypted, &u.Failed)
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: rotation units: %w", err)
	}
	return units, nil
}

// MaxShards bounds how many key ranges one column is split into.
const MaxShards = 16

// CreateDEKJob starts re-encryption to target over cols: it supersedes a
// running DEK job (whose work the new job repeats, to the newer key) and
// records the units, in one transaction. A column whose table is keyed by
// uuid and holds more than rowsPerShard rows (planner estimate) is split
// into up to MaxShards key ranges, so several workers share it; others are
// one unit. Its last pass may not start before settle has passed, the time
// every instance needs to reload its keysets and write under target.
func (r *Rotations) CreateDEKJob(ctx context.Context, target uint32, requestedBy string, pending int64, settle time.Duration, cols []policies.Column, rowsPerShard int) (RotationJob, error) {
	var id string
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE rotation_jobs SET state = 'superseded', finished_at = now()
			WHERE kind = 'dek' AND state = 'running'`); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `
			INSERT INTO rotation_jobs (kind, target_key_id, state, requested_by, pending_at_start, settle_until)
			VALUES ('dek', $1, 'running', $2, $3, now() + make_interval(secs => $4))
			RETURNING id::text`, int64(target), requestedBy, pending, settle.Seconds()).Scan(&id)
		if err != nil {
			return err
		}
		for _, c := range cols {
			n, err := shardsOf(ctx, tx, c.Table, rowsPerShard)
			if err != nil {
				return err
			}
			for i, b := range shardRanges(n) {
				if _, err := tx.Exec(ctx, `INSERT INTO rotation_progress (job_id, table_name, column_name, shard, range_lo, range_hi)
					VALUES ($1::uuid, $2, $3, $4, $5::uuid, $6::uuid)`, id, c.Table, c.Column, i, b[0], b[1]); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return RotationJob{}, fmt.Errorf("store: create rotation job: %w", err)
	}
	return r.Job(ctx, id)
}

// shardsOf decides how many key ranges table's units get: one per
// rowsPerShard rows by the planner's estimate, at most MaxShards, and one
// for a table not keyed by uuid.
func shardsOf(ctx context.Context, tx pgx.Tx, table string, rowsPerShard int) (int, error) {
	key := "id"
	if table == "secret_versions" {
		key = "secret_id"
	}
	var typ string
	var rows float64
	err := tx.QueryRow(ctx, `SELECT format_type(a.atttypid, a.atttypmod), c.reltuples::float8
		FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
		WHERE c.oid = $1::regclass AND a.attname = $2 AND NOT a.attisdropped`, "public."+table, key).Scan(&typ, &rows)
	if err != nil {
		return 0, fmt.Errorf("key of %s: %w", table, err)
	}
	if typ != "uuid" || rowsPerShard <= 0 || rows <= float64(rowsPerShard) {
		return 1, nil
	}
	return min(MaxShards, int(rows)/rowsPerShard+1), nil
}

// shardRanges splits the uuid space into n ranges by the key's first byte:
// [lo, hi) with nil for unbounded.
func shardRanges(n int) [][2]*string {
	out := make([][2]*string, n)
	bound := func(i int) *string {
		if i == 0 || i == n {
			return nil
		}
		s := fmt.Sprintf("%02x000000-0000-0000-0000-000000000000", i*256/n)
		return &s
	}
	for i := range n {
		out[i] = [2]*string{bound(i), bound(i + 1)}
	}
	return out
}

// RecordJob records a job that ran to its end at once (a KEK rotation):
// state is JobDone or JobFailed, with errMsg for a failure.
func (r *Rotations) RecordJob(ctx context.Context, kind, requestedBy, state, errMsg string) (RotationJob, error) {
	var id string
	err := r.pool.QueryRow(ctx, `
		INSERT INTO rotation_jobs (kind, state, requested_by, error, finished_at)
		VALUES ($1, $2, $3, $4, now()) RETURNING id::text`, kind, state, requestedBy, errMsg).Scan(&id)
	if err != nil {
		return RotationJob{}, fmt.Errorf("store: record rotation job: %w", err)
	}
	return r.Job(ctx, id)
}

// BatchResult is what one ReencryptBatch call did.
type BatchResult struct {
	// Claimed is false when no unit of the job was free: all done, or
	// being worked on by other workers.
	Claimed     bool
	Stopped     bool // the job is no longer running
	Table       string
	Column      string
	Scanned     int
	Reencrypted int
	Failed      int
	UnitDone    bool
}

// TinkPrefix returns the 5-byte Tink output prefix of keyID.
func TinkPrefix(keyID uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{0x01}, keyID)
}

// ReencryptBatch claims one free unit of job (FOR UPDATE SKIP LOCKED, so
// two workers never hold the same unit), reads up to n values after the
// unit's cursor that are not under target, re-encrypts each through kr to
// its primary key, writes them back with compare-and-swap, and records the
// new cursor, all in one transaction: a crash loses at most this batch's
// work, never progress it recorded. A value the API changed meanwhile fails
// the compare and keeps the API's value; a later pass re-encrypts it if the
// API wrote it under an older key.
func (r *Rotations) ReencryptBatch(ctx context.Context, jobID string, target uint32, n int, kr Reencryptor) (BatchResult, error) {
	var res BatchResult
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		var state string
		if err := tx.QueryRow(ctx, `SELECT state FROM rotation_jobs WHERE id = $1::uuid`, jobID).Scan(&state); err != nil {
			return err
		}
		if state != JobRunning {
			res.Stopped = true
			return nil
		}
		var u RotationUnit
		err := tx.QueryRow(ctx, `
			SELECT table_name, column_name, shard, range_lo::text, range_hi::text, last_key, pass
			FROM rotation_progress WHERE job_id = $1::uuid AND NOT done
			ORDER BY updated_at LIMIT 1 FOR UPDATE SKIP LOCKED`, jobID).Scan(&u.Table, &u.Column, &u.Shard, &u.RangeLo, &u.RangeHi, &u.LastKey, &u.Pass)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		res.Claimed, res.Table, res.Column = true, u.Table, u.Column
		var vals []rowValue
		if u.Table == "secret_versions" && u.Column == "value" {
			vals, err = readSecretVersions(ctx, tx, u, target, n)
		} else {
			vals, err = readColumn(ctx, tx, u, target, n)
		}
		if err != nil {
			return err
		}
		res.Scanned = len(vals)
		if len(vals) == 0 {
			res.UnitDone = true
			_, err := tx.Exec(ctx, `UPDATE rotation_progress SET done = true, updated_at = now()
				WHERE job_id = $1::uuid AND table_name = $2 AND column_name = $3 AND shard = $4`, jobID, u.Table, u.Column, u.Shard)
			return err
		}
		var ok []rowValue
		for _, v := range vals {
			loc := keyring.Location{Table: u.Table, Column: u.Column, RowID: v.rowID}
			pt, err := kr.Decrypt(ctx, loc, v.old)
			if err != nil {
				if errors.Is(err, keyring.ErrDecrypt) {
					res.Failed++
					continue
				}
				return err
			}
			v.new, err = kr.Encrypt(ctx, loc, pt)
			clear(pt)
			if err != nil {
				return err
			}
			ok = append(ok, v)
		}
		if len(ok) > 0 {
			if u.Table == "secret_versions" && u.Column == "value" {
				res.Reencrypted, err = writeSecretVersions(ctx, tx, ok)
			} else {
				res.Reencrypted, err = writeColumn(ctx, tx, u.Table, u.Column, ok)
			}
			if err != nil {
				return err
			}
		}
		last := vals[len(vals)-1].key
		_, err = tx.Exec(ctx, `UPDATE rotation_progress
			SET last_key = $4, pass_reencrypted = pass_reencrypted + $5, reencrypted = reencrypted + $5,
			    failed = failed + $6, updated_at = now()
			WHERE job_id = $1::uuid AND table_name = $2 AND column_name = $3 AND shard = $7`,
			jobID, u.Table, u.Column, last, res.Reencrypted, res.Failed, u.Shard)
		return err
	})
	if err != nil {
		return BatchResult{}, fmt.Errorf("store: re-encrypt batch of %s.%s: %w", res.Table, res.Column, err)
	}
	return res, nil
}

type rowValue struct {
	key      []string // the cursor after this row
	rowID    string   // the associated data's row id
	old, new []byte
}

var typeRE = regexp.MustCompile(`^[a-z][a-z0-9 ]*$`)

// idType returns the SQL type of table's id column, to cast the text
// cursor back to it.
func idType(ctx context.Context, tx pgx.Tx, table string) (string, error) {
	var typ string
	err := tx.QueryRow(ctx, `SELECT format_type(atttypid, atttypmod) FROM pg_attribute
		WHERE attrelid = $1::regclass AND attname = 'id' AND NOT attisdropped`, "public."+table).Scan(&typ)
	if err != nil {
		return "", fmt.Errorf("id column of %s: %w", table, err)
	}
	if !typeRE.MatchString(typ) {
		return "", fmt.Errorf("id column of %s has unsupported type %q", table, typ)
	}
	return typ, nil
}

func readColumn(ctx context.Context, tx pgx.Tx, u RotationUnit, target uint32, n int) ([]rowValue, error) {
	table, column, last := u.Table, u.Column, u.LastKey
	typ, err := idType(ctx, tx, table)
	if err != nil {
		return nil, err
	}
	t, c := pgx.Identifier{table}.Sanitize(), pgx.Identifier{column}.Sanitize()
	// Values already under target are skipped in the database; the
	// cursor still moves past them, because rows come in id order.
	where := fmt.Sprintf(`t.%[1]s IS NOT NULL AND substring(t.%[1]s FROM 1 FOR 5) <> $1`, c)
	args := []any{TinkPrefix(target), n}
	if len(last) == 1 {
		args = append(args, last[0])
		where = fmt.Sprintf(`t.id > $%d::text::%s AND `, len(args), typ) + where
	}
	if u.RangeLo != nil {
		args = append(args, *u.RangeLo)
		where = fmt.Sprintf(`t.id >= $%d::uuid AND `, len(args)) + where
	}
	if u.RangeHi != nil {
		args = append(args, *u.RangeHi)
		where = fmt.Sprintf(`t.id < $%d::uuid AND `, len(args)) + where
	}
	// ORDER BY t.id, not id: the output column id::text would sort as text.
	rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT t.id::text, t.%s FROM %s AS t WHERE %s ORDER BY t.id LIMIT $2`, c, t, where), args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (rowValue, error) {
		var v rowValue
		err := row.Scan(&v.rowID, &v.old)
		v.key = []string{v.rowID}
		return v, err
	})
}

func writeColumn(ctx context.Context, tx pgx.Tx, table, column string, vals []rowValue) (int, error) {
	typ, err := idType(ctx, tx, table)
	if err != nil {
		return 0, err
	}
	ids, olds, news := make([]string, len(vals)), make([][]byte, len(vals)), make([][]byte, len(vals))
	for i, v := range vals {
		ids[i], olds[i], news[i] = v.rowID, v.old, v.new
	}
	t, c := pgx.Identifier{table}.Sanitize(), pgx.Identifier{column}.Sanitize()
	tag, err := tx.Exec(ctx, fmt.Sprintf(`
		UPDATE %[1]s AS t SET %[2]s = u.new
		FROM unnest($1::text[], $2::bytea[], $3::bytea[]) AS u(id, old, new)
		WHERE t.id = u.id::%[3]s AND t.%[2]s = u.old`, t, c, typ), ids, olds, news)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

// Secret versions have no id: their key is (secret_id, version) and their
// associated data's row id is "<secret name>@<version>".
func readSecretVersions(ctx context.Context, tx pgx.Tx, u RotationUnit, target uint32, n int) ([]rowValue, error) {
	where := `substring(v.value FROM 1 FOR 5) <> $1`
	args := []any{TinkPrefix(target), n}
	if last := u.LastKey; len(last) == 2 {
		ver, err := strconv.Atoi(last[1])
		if err != nil {
			return nil, fmt.Errorf("bad cursor %q", last)
		}
		where = `(v.secret_id, v.version) > ($3::uuid, $4::integer) AND ` + where
		args = append(args, last[0], ver)
	}
	if u.RangeLo != nil {
		args = append(args, *u.RangeLo)
		where = fmt.Sprintf(`v.secret_id >= $%d::uuid AND `, len(args)) + where
	}
	if u.RangeHi != nil {
		args = append(args, *u.RangeHi)
		where = fmt.Sprintf(`v.secret_id < $%d::uuid AND `, len(args)) + where
	}
	rows, err := tx.Query(ctx, `SELECT v.secret_id::text, v.version, s.name, v.value
		FROM secret_versions v JOIN secrets s ON s.id = v.secret_id
		WHERE `+where+` ORDER BY v.secret_id, v.version LIMIT $2`, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (rowValue, error) {
		var v rowValue
		var sid, name string
		var ver int
		err := row.Scan(&sid, &ver, &name, &v.old)
		v.key = []string{sid, strconv.Itoa(ver)}
		v.rowID = name + "@" + strconv.Itoa(ver)
		return v, err
	})
}

func writeSecretVersions(ctx context.Context, tx pgx.Tx, vals []rowValue) (int, error) {
	sids, vers := make([]string, len(vals)), make([]int32, len(vals))
	olds, news := make([][]byte, len(vals)), make([][]byte, len(vals))
	for i, v := range vals {
		ver, _ := strconv.Atoi(v.key[1])
		sids[i], vers[i], olds[i], news[i] = v.key[0], int32(ver), v.old, v.new
	}
	tag, err := tx.Exec(ctx, `
		UPDATE secret_versions AS t SET value = u.new
		FROM unnest($1::uuid[], $2::integer[], $3::bytea[], $4::bytea[]) AS u(sid, ver, old, new)
		WHERE t.secret_id = u.sid AND t.version = u.ver AND t.value = u.old`, sids, vers, olds, news)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

// PassOutcome is what FinishPass decided.
type PassOutcome string

// Outcomes of FinishPass.
const (
	PassBusy    PassOutcome = "busy"    // units still being worked, or another worker is finishing
	PassWaiting PassOutcome = "waiting" // the pass is over but the settle time has not passed
	PassNext    PassOutcome = "next"    // a new pass started
	PassDone    PassOutcome = "done"    // the job is done
	PassFailed  PassOutcome = "failed"  // the job ended with values that do not decrypt
	PassStopped PassOutcome = "stopped" // the job is no longer running
)

// FinishPass is called by a worker that found no free unit. When every
// unit has finished the current pass, it ends the job if this pass started
// after the settle time and re-encrypted nothing (so nothing under an old
// key is left, even from instances that were still writing with an old
// primary), and otherwise starts the next pass once the settle time is over.
// The job row is locked with SKIP LOCKED, so one worker decides.
func (r *Rotations) FinishPass(ctx context.Context, jobID string) (PassOutcome, RotationJob, error) {
	out := PassBusy
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		var state string
		var passStarted, settleUntil, now time.Time
		err := tx.QueryRow(ctx, `SELECT state, pass_started_at, settle_until, now() FROM rotation_jobs
			WHERE id = $1::uuid FOR UPDATE SKIP LOCKED`, jobID).Scan(&state, &passStarted, &settleUntil, &now)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if state != JobRunning {
			out = PassStopped
			return nil
		}
		var notDone int
		var passRe, failed int64
		err = tx.QueryRow(ctx, `SELECT count(*) FILTER (WHERE NOT done), coalesce(sum(pass_reencrypted), 0)::bigint,
			coalesce(sum(failed), 0)::bigint FROM rotation_progress WHERE job_id = $1::uuid`, jobID).Scan(&notDone, &passRe, &failed)
		if err != nil {
			return err
		}
		if notDone > 0 {
			return nil
		}
		if !passStarted.Before(settleUntil) && passRe == 0 {
			if failed == 0 {
				out = PassDone
				_, err = tx.Exec(ctx, `UPDATE rotation_jobs SET state = 'done', finished_at = now() WHERE id = $1::uuid`, jobID)
				return err
			}
			out = PassFailed
			_, err = tx.Exec(ctx, `UPDATE rotation_jobs SET state = 'failed', finished_at = now(), error = $2 WHERE id = $1::uuid`,
				jobID, fmt.Sprintf("%d stored values do not decrypt with any key the keyring holds; they are left as they are", failed))
			return err
		}
		if now.Before(settleUntil) {
			out = PassWaiting
			return nil
		}
		out = PassNext
		if _, err := tx.Exec(ctx, `UPDATE rotation_progress SET done = false, last_key = NULL, pass = pass + 1,
			pass_reencrypted = 0, failed = 0, updated_at = now() WHERE job_id = $1::uuid`, jobID); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE rotation_jobs SET pass = pass + 1, pass_started_at = now() WHERE id = $1::uuid`, jobID)
		return err
	})
	if err != nil {
		return "", RotationJob{}, fmt.Errorf("store: finish rotation pass: %w", err)
	}
	j, err := r.Job(ctx, jobID)
	return out, j, err
}

// RotationActivity is when a running job last moved, by the database's
// clock (so every instance sees the same instant): the latest of its
// start, its pass's start, the end of its settle wait, and the last batch
// committed on any of its units.
type RotationActivity struct {
	Job RotationJob
	// LastMoved is that instant; Idle is how long ago it was (negative
	// while the job waits for its settle time on purpose).
	LastMoved time.Time
	Idle      time.Duration
}

// RunningActivity returns the activity of every running job.
func (r *Rotations) RunningActivity(ctx context.Context) ([]RotationActivity, error) {
	rows, err := r.pool.Query(ctx, `SELECT `+jobColumns+`,
			greatest(j.created_at, j.pass_started_at, j.settle_until, coalesce(max(p.updated_at), j.created_at)) AS moved,
			now()
		FROM rotation_jobs j LEFT JOIN rotation_progress p ON p.job_id = j.id
		WHERE j.state = 'running' GROUP BY j.id ORDER BY j.created_at`)
	if err != nil {
		return nil, fmt.Errorf("store: rotation activity: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RotationActivity, error) {
		var a RotationActivity
		var target int64
		var now time.Time
		j := &a.Job
		err := row.Scan(&j.ID, &j.Kind, &target, &j.State, &j.RequestedBy, &j.PendingAtStart,
			&j.Pass, &j.PassStartedAt, &j.SettleUntil, &j.Error, &j.CreatedAt, &j.FinishedAt,
			&j.Reencrypted, &j.Failed, &j.Units, &j.UnitsDone, &a.LastMoved, &now)
		j.TargetKeyID = uint32(target)
		a.Idle = now.Sub(a.LastMoved)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: rotation activity: %w", err)
	}
	return out, nil
}
