package supabase

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
)

// maxCopyBytes flushes a COPY early when rows are large.
const maxCopyBytes = 8 << 20

// batchCopier sends rows to the target in one COPY per batch, on its own
// goroutine: while the target ingests one batch, the source is read and the
// next batch encrypted, so the two servers work at the same time. Two
// buffers go round between the stages, which bounds memory. Each batch
// remembers its rows' names so that an error on "line N" names the row.
type batchCopier struct {
	imp   *importer
	sql   string
	label string
	total int64
	rep   *TableReport // Written is the writer's: read it after finish

	cur        *chunk
	free, full chan *chunk
	done       chan struct{}
	err        error // the writer's first error; read after done
	cancel     context.CancelFunc
}

type chunk struct {
	buf   bytes.Buffer
	names []string
	read  int64 // source rows read up to the end of this batch
}

// newCopier starts the writer. Reading the source must use the returned
// context: a target failure cancels it, so the reader stops too.
func (imp *importer) newCopier(ctx context.Context, label, sql string, total int64, rep *TableReport) (*batchCopier, context.Context) {
	rctx, cancel := context.WithCancel(ctx)
	b := &batchCopier{imp: imp, sql: sql, label: label, total: total, rep: rep,
		free: make(chan *chunk, 2), full: make(chan *chunk, 2), done: make(chan struct{}), cancel: cancel}
	b.cur = &chunk{}
	b.free <- &chunk{}
	go b.write(ctx)
	return b, rctx
}

func (b *batchCopier) write(ctx context.Context) {
	defer close(b.done)
	for c := range b.full {
		if b.err == nil {
			if _, err := b.imp.tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(c.buf.Bytes()), b.sql); err != nil {
				b.err = rowErr{b.imp.targetError(b.label, c.names, err)}
				b.cancel()
			} else {
				b.rep.Written += int64(len(c.names))
				if b.imp.opts.Progress != nil {
					b.imp.opts.Progress(Progress{Table: b.label, Done: c.read, Total: b.total})
				}
			}
		}
		c.buf.Reset()
		c.names = c.names[:0]
		b.free <- c
	}
}

// buf is where the next row is encoded.
func (b *batchCopier) buf() *bytes.Buffer { return &b.cur.buf }

// add ends the row just encoded, named name, read as the read-th row.
func (b *batchCopier) add(ctx context.Context, name string, read int64) error {
	b.cur.names = append(b.cur.names, name)
	b.cur.read = read
	if len(b.cur.names) >= b.imp.opts.BatchSize || b.cur.buf.Len() >= maxCopyBytes {
		return b.send(ctx)
	}
	return nil
}

func (b *batchCopier) send(ctx context.Context) error {
	select {
	case b.full <- b.cur:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case b.cur = <-b.free:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// finish sends the last batch, waits for the writer and returns the error
// that came first in cause: the target's over the reader's (a target
// failure cancels the reader).
func (b *batchCopier) finish(ctx context.Context, readErr error) error {
	if readErr == nil && len(b.cur.names) > 0 {
		readErr = b.send(ctx)
	}
	close(b.full)
	<-b.done
	b.cancel()
	if b.err != nil {
		return b.err
	}
	return readErr
}

var copyLine = regexp.MustCompile(`COPY [^,]+, line (\d+)`)

// targetError turns an error of the target into one line naming the table
// and, when PostgreSQL says which COPY line failed, the row. It keeps
// PostgreSQL's message (constraint names, types) but never its detail,
// which can quote values.
func (imp *importer) targetError(label string, names []string, err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return fmt.Errorf("import %s: target: %w", label, err)
	}
	row := ""
	if m := copyLine.FindStringSubmatch(pgErr.Where); m != nil {
		if n, _ := strconv.Atoi(m[1]); n >= 1 && n <= len(names) {
			row = " row " + names[n-1]
		}
	}
	code := vectabase.EVALIDATION
	if pgErr.Code == "23505" {
		code = vectabase.ECONFLICT
	}
	return vectabase.WrapError(code, fmt.Sprintf("import %s%s: the target refused it: %s (SQLSTATE %s)", label, row, pgErr.Message, pgErr.Code), err)
}

func (imp *importer) sourceError(label, lastRow string, err error) error {
	after := "before its first row"
	if lastRow != "" {
		after = "after row " + lastRow
	}
	return vectabase.WrapError(vectabase.EUNAVAILABLE, fmt.Sprintf("import %s: reading the source failed %s: %v", label, after, flatten(err)), errSourceLost)
}

// flatten keeps a vendor error to one line without wrapping its type.
func flatten(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Message + " (SQLSTATE " + pgErr.Code + ")"
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

// load streams one source table into its target table.
func (imp *importer) load(ctx context.Context, p *tablePlan) error {
	start := time.Now()
	label := p.src.qualified() + " -> " + p.target
	rep := &TableReport{Source: p.src.qualified(), Target: p.target, Dropped: p.dropped}
	imp.rep.Tables = append(imp.rep.Tables, rep)
	total, err := imp.src.count(ctx, p.src)
	if err != nil {
		return imp.sourceError(label, "", err)
	}
	tw, err := imp.exp.table(p.src)
	if err != nil {
		return err
	}
	defer func() { tw.abort() }()
	var indexes []string
	if total >= imp.opts.IndexRebuildRows {
		if indexes, err = imp.dropPlainIndexes(ctx, p.target); err != nil {
			return err
		}
	}

	cols := make([]string, len(p.ops))
	for i, op := range p.ops {
		cols[i] = quoteIdent(op.target)
	}
	bc, rctx := imp.newCopier(ctx, label, "COPY "+quoteIdent(p.target)+" ("+strings.Join(cols, ", ")+") FROM STDIN", total, rep)
	var last string
	var scratch []byte
	err = imp.src.scan(rctx, p.src, p.cols, func(row [][]byte) error {
		rep.Read++
		if err := tw.write(row); err != nil {
			return rowErr{err}
		}
		name := p.rowName(row)
		last = name
		if p.skip != nil {
			if why := p.skip(row); why != "" {
				rep.skip(why)
				return nil
			}
		}
		var err error
		if scratch, err = imp.encodeRow(rctx, p, row, bc.buf(), scratch); err != nil {
			return rowErr{fmt.Errorf("import %s row %s: %w", label, name, err)}
		}
		return bc.add(rctx, name, rep.Read)
	})
	if err = bc.finish(rctx, err); err != nil {
		if isRowErr(err) {
			return errors.Unwrap(err)
		}
		return imp.sourceError(label, last, err)
	}
	if err := imp.exp.finish(tw); err != nil {
		return err
	}
	tw = nil
	for _, def := range indexes {
		if _, err := imp.tx.Exec(ctx, def); err != nil {
			return vectabase.WrapError(vectabase.EVALIDATION, "import "+label+": re-creating an index: "+flatten(err), err)
		}
	}
	rep.DurationMS = time.Since(start).Milliseconds()
	if imp.opts.Progress != nil {
		imp.opts.Progress(Progress{Table: label, Done: rep.Read, Total: total, Finished: true})
	}
	return nil
}

// dropPlainIndexes drops, inside the transaction, table's indexes that
// back no constraint and enforce no uniqueness (unique indexes stay, so a
// duplicate is refused on its COPY line and named), and returns the
// statements that re-create them.
func (imp *importer) dropPlainIndexes(ctx context.Context, table string) ([]string, error) {
	rows, err := imp.tx.Query(ctx, `
SELECT quote_ident(n.nspname) || '.' || quote_ident(ic.relname), pg_get_indexdef(i.indexrelid)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relname = $1
  AND NOT i.indisunique AND NOT i.indisprimary
  AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid)
ORDER BY ic.relname`, table)
	if err != nil {
		return nil, fmt.Errorf("target: indexes of %s: %w", table, err)
	}
	var names, defs []string
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			rows.Close()
			return nil, err
		}
		names, defs = append(names, name), append(defs, def)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, name := range names {
		if _, err := imp.tx.Exec(ctx, "DROP INDEX "+name); err != nil {
			return nil, fmt.Errorf("target: %w", err)
		}
	}
	return defs, nil
}

// rowName is how messages name a row: its id (or primary key).
func (p *tablePlan) rowName(row [][]byte) string {
	parts := make([]string, 0, len(p.idCols))
	for _, i := range p.idCols {
		parts = append(parts, p.canonical(row, i))
	}
	return strings.Join(parts, "/")
}

// canonical is the text of a value as the target will print it back: a
// uuid from a hand-edited export may be upper case, but the Location a
// ciphertext is bound to must match the row id the application reads.
func (p *tablePlan) canonical(row [][]byte, i int) string {
	v := row[i]
	if v == nil {
		return "NULL"
	}
	if p.uuidCol[i] {
		if u, err := uuid.ParseBytes(v); err == nil {
			return u.String()
		}
	}
	return string(v)
}

// encodeRow appends one row in COPY text format.
func (imp *importer) encodeRow(ctx context.Context, p *tablePlan, row [][]byte, buf *bytes.Buffer, scratch []byte) ([]byte, error) {
	for i, op := range p.ops {
		if i > 0 {
			buf.WriteByte('\t')
		}
		var v []byte
		if op.kind != opConst {
			v = row[op.src]
		}
		switch op.kind {
		case opCopy:
			writeCopyValue(buf, v)
		case opCopyOr:
			if v == nil {
				v = op.def
			}
			writeCopyValue(buf, v)
		case opNullIfEmpty:
			if len(v) == 0 {
				v = nil
			}
			writeCopyValue(buf, v)
		case opConst:
			writeCopyValue(buf, op.def)
		case opEncrypt:
			if v == nil {
				buf.WriteString(`\N`)
				continue
			}
			rowID := p.canonical(row, op.rowID) + op.suffix
			loc := keyring.Location{Table: op.loc.Table, Column: op.loc.Column, RowID: rowID}
			ct, err := imp.kr.Encrypt(ctx, loc, v)
			if err != nil {
				return scratch, fmt.Errorf("%s does not encrypt: %w", op.target, err)
			}
			op.sum.add(rowID, v)
			writeCopyBytea(buf, ct)
		case opBlindIndex:
			if v == nil {
				buf.WriteString(`\N`)
				continue
			}
			bi, err := imp.kr.BlindIndex(op.loc.Table, op.loc.Column, indexForm(op.loc.Table, op.loc.Column, v))
			if err != nil {
				return scratch, fmt.Errorf("%s: %w", op.target, err)
			}
			writeCopyBytea(buf, bi)
		case opMAC:
			if v == nil {
				buf.WriteString(`\N`)
				continue
			}
			mac, err := imp.kr.MAC(op.mac, v)
			if err != nil {
				return scratch, fmt.Errorf("%s: %w", op.target, err)
			}
			op.sum.add(p.rowName(row), mac)
			writeCopyBytea(buf, mac)
		case opPrefix:
			if v == nil {
				buf.WriteString(`\N`)
				continue
			}
			writeCopyValue(buf, prefix(v, op.n))
		}
	}
	buf.WriteByte('\n')
	return scratch, nil
}

// prefix returns the first n characters of v.
func prefix(v []byte, n int) []byte {
	for i := range string(v) {
		if n == 0 {
			return v[:i]
		}
		n--
	}
	return v
}

// writeCopyValue writes v in COPY text format: \N for NULL, backslash,
// newline, carriage return and tab escaped.
func writeCopyValue(buf *bytes.Buffer, v []byte) {
	if v == nil {
		buf.WriteString(`\N`)
		return
	}
	start := 0
	for i, c := range v {
		var esc string
		switch c {
		case '\\':
			esc = `\\`
		case '\n':
			esc = `\n`
		case '\r':
			esc = `\r`
		case '\t':
			esc = `\t`
		default:
			continue
		}
		buf.Write(v[start:i])
		buf.WriteString(esc)
		start = i + 1
	}
	buf.Write(v[start:])
}

// writeCopyBytea writes b as a bytea literal (\x…) in COPY text format,
// where the backslash itself is escaped.
func writeCopyBytea(buf *bytes.Buffer, b []byte) {
	buf.WriteString(`\\x`)
	buf.Grow(hex.EncodedLen(len(b)))
	buf.Write(hex.AppendEncode(buf.AvailableBuffer(), b))
}

// loadIdentities carries Discord identities into users.discord_id and
// discord_username. The identities stream through COPY into a temporary
// table and one UPDATE joins them in, so neither side is held in memory.
// Other providers' identities have nothing to carry: email identities
// repeat users.email.
func (imp *importer) loadIdentities(ctx context.Context, t srcTable) error {
	start := time.Now()
	label := t.qualified() + " -> users"
	src := srcTable{Schema: t.Schema, Name: t.Name}
	for _, c := range identityColumns {
		src.Columns = append(src.Columns, t.Columns[t.index(c)])
	}
	rep := &TableReport{Source: t.qualified(), Target: "users"}
	imp.rep.Tables = append(imp.rep.Tables, rep)
	if _, err := imp.tx.Exec(ctx, `CREATE TEMP TABLE vectabase_import_discord
		(identity_id text, user_id uuid, discord_id text, discord_username text, updated_at timestamptz) ON COMMIT DROP`); err != nil {
		return fmt.Errorf("target: %w", err)
	}
	total, err := imp.src.count(ctx, src)
	if err != nil {
		return imp.sourceError(label, "", err)
	}
	tw, err := imp.exp.table(src)
	if err != nil {
		return err
	}
	defer func() { tw.abort() }()
	discord := &TableReport{}
	bc, rctx := imp.newCopier(ctx, label, "COPY vectabase_import_discord (identity_id, user_id, discord_id, discord_username) FROM STDIN", total, discord)
	var last string
	err = imp.src.scan(rctx, src, identityColumns, func(row [][]byte) error {
		rep.Read++
		if err := tw.write(row); err != nil {
			return rowErr{err}
		}
		last = string(row[0])
		provider := string(row[2])
		if provider != "discord" {
			rep.skip(provider + " identity: nothing to carry over (users.email holds the address)")
			return nil
		}
		if len(row[3]) == 0 {
			rep.skip("discord identity without a provider id")
			return nil
		}
		buf := bc.buf()
		writeCopyValue(buf, row[0])
		buf.WriteByte('\t')
		writeCopyValue(buf, row[1])
		buf.WriteByte('\t')
		writeCopyValue(buf, row[3])
		buf.WriteByte('\t')
		writeCopyValue(buf, discordUsername(row[4]))
		buf.WriteByte('\n')
		return bc.add(rctx, last, rep.Read)
	})
	if err = bc.finish(rctx, err); err != nil {
		if isRowErr(err) {
			return errors.Unwrap(err)
		}
		return imp.sourceError(label, last, err)
	}
	if err := imp.exp.finish(tw); err != nil {
		return err
	}
	tw = nil
	// A user with two Discord identities (rare; GoTrue links one per
	// provider) keeps the one listed last by id, deterministically.
	tag, err := imp.tx.Exec(ctx, `UPDATE users u SET discord_id = d.discord_id, discord_username = d.discord_username
		FROM (SELECT DISTINCT ON (user_id) user_id, discord_id, discord_username
		      FROM vectabase_import_discord ORDER BY user_id, identity_id DESC) d
		WHERE u.id = d.user_id`)
	if err != nil {
		return vectabase.WrapError(vectabase.EVALIDATION, "import "+label+": Discord identities: "+flatten(err), err)
	}
	rep.Written = tag.RowsAffected()
	if extra := discord.Written - rep.Written; extra > 0 {
		rep.Skipped += extra
		if rep.SkipReasons == nil {
			rep.SkipReasons = map[string]int64{}
		}
		rep.SkipReasons["another Discord identity of the same user was used, or its user is not in auth.users"] += extra
	}
	rep.DurationMS = time.Since(start).Milliseconds()
	if imp.opts.Progress != nil {
		imp.opts.Progress(Progress{Table: label, Done: rep.Read, Total: total, Finished: true})
	}
	return nil
}

// discordUsername picks the Discord username from GoTrue's identity_data:
// "name" without the "#0" that Discord's new usernames carry, else
// "full_name". A value that is not a JSON object gives NULL.
func discordUsername(data []byte) []byte {
	var d struct {
		Name     string `json:"name"`
		FullName string `json:"full_name"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil
	}
	name := strings.TrimSuffix(d.Name, "#0")
	if name == "" {
		name = d.FullName
	}
	if name == "" || !utf8.ValidString(name) {
		return nil
	}
	return []byte(name)
}

// digest is an order-independent commitment to a set of (row id, value)
// pairs: the sum modulo 2^256 of SHA-256 over each pair, and their number.
// The load adds what it read from the source; verification adds what it
// reads back from the target; equal digests mean equal sets, with no table
// held in memory on either side.
type digest struct {
	s       [4]uint64
	n       int64
	scratch []byte
}

func (d *digest) add(id string, v []byte) {
	b := d.scratch[:0]
	b = binary.AppendUvarint(b, uint64(len(id)))
	b = append(b, id...)
	b = binary.AppendUvarint(b, uint64(len(v)))
	b = append(b, v...)
	d.scratch = b
	h := sha256.Sum256(b)
	var carry uint64
	for i := 0; i < 4; i++ {
		d.s[i], carry = bits.Add64(d.s[i], binary.LittleEndian.Uint64(h[i*8:]), carry)
	}
	d.n++
}

func (d *digest) equal(o *digest) bool { return d.s == o.s && d.n == o.n }
