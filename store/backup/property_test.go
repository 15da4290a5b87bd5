package backup_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/policies"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/backup"
	"github.com/vectabase/vectabase/store/pgtest"
)

var property13Seed = flag.Uint64("p13.seed", 0, "seed of TestProperty13_BackupIntegrity's cases (0: a new one, logged)")

// checkN runs prop on n random cases, each a subtest, drawing through
// rapid's generators as rapid.Check does but with a fixed count: rapid's
// own count is one flag for the whole package, and a case here costs
// seconds. A failing case logs every draw, and the seed reruns them all.
func checkN(t *testing.T, n int, seed uint64, prop func(*testing.T, *rapid.T)) {
	t.Helper()
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (rerun these cases with -p13.seed=%d)", seed, seed)
	r := rand.New(rand.NewPCG(seed, 13))
	for i := range n {
		// 2 MiB of draws: far more than a case takes.
		input := make([]byte, 2<<20)
		for j := 0; j < len(input); j += 8 {
			binary.LittleEndian.PutUint64(input[j:], r.Uint64())
		}
		t.Run(fmt.Sprintf("case%02d", i), func(st *testing.T) {
			rapid.MakeFuzz(func(rt *rapid.T) { prop(st, rt) })(st, input)
		})
	}
}

// column is one column of the live schema, as the generator needs it.
type column struct {
	name, typ string // typ: information_schema udt_name
	nullable  bool
	serial    bool     // filled by its default (a sequence)
	ref       string   // "table.column" this column references, if any
	allowed   []string // text values a CHECK constraint lists
	checked   bool     // some CHECK constraint names the column
}

type table struct {
	name string
	cols []column
}

// schema reads every base table of the public schema with its columns,
// foreign keys and checks, parents before children.
func schema(t *testing.T, ctx context.Context, db *store.DB) []table {
	t.Helper()
	rows, err := db.Pool.Query(ctx, `
		SELECT c.table_name, c.column_name, c.udt_name, c.is_nullable = 'YES',
		       coalesce(c.column_default LIKE 'nextval(%', false) OR c.is_identity = 'YES' OR c.is_generated = 'ALWAYS'
		FROM information_schema.columns c
		JOIN information_schema.tables tb ON tb.table_schema = c.table_schema AND tb.table_name = c.table_name
		WHERE c.table_schema = 'public' AND tb.table_type = 'BASE TABLE'
		ORDER BY c.table_name, c.ordinal_position`)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*table{}
	var names []string
	for rows.Next() {
		var tn string
		var c column
		if err := rows.Scan(&tn, &c.name, &c.typ, &c.nullable, &c.serial); err != nil {
			t.Fatal(err)
		}
		if byName[tn] == nil {
			byName[tn] = &table{name: tn}
			names = append(names, tn)
		}
		byName[tn].cols = append(byName[tn].cols, c)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	find := func(tn, cn string) *column {
		for i := range byName[tn].cols {
			if byName[tn].cols[i].name == cn {
				return &byName[tn].cols[i]
			}
		}
		t.Fatalf("no column %s.%s", tn, cn)
		return nil
	}
	fks, err := db.Pool.Query(ctx, `
		SELECT con.conrelid::regclass::text, a.attname, con.confrelid::regclass::text, af.attname
		FROM pg_constraint con
		JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
		JOIN pg_attribute af ON af.attrelid = con.confrelid AND af.attnum = con.confkey[1]
		WHERE con.contype = 'f' AND con.connamespace = 'public'::regnamespace AND cardinality(con.conkey) = 1`)
	if err != nil {
		t.Fatal(err)
	}
	parents := map[string][]string{}
	for fks.Next() {
		var tn, cn, pt, pc string
		if err := fks.Scan(&tn, &cn, &pt, &pc); err != nil {
			t.Fatal(err)
		}
		find(tn, cn).ref = pt + "." + pc
		if pt != tn {
			parents[tn] = append(parents[tn], pt)
		}
	}
	if err := fks.Err(); err != nil {
		t.Fatal(err)
	}
	checks, err := db.Pool.Query(ctx, `
		SELECT con.conrelid::regclass::text, a.attname, pg_get_constraintdef(con.oid)
		FROM pg_constraint con
		JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = ANY (con.conkey)
		WHERE con.contype = 'c' AND con.connamespace = 'public'::regnamespace`)
	if err != nil {
		t.Fatal(err)
	}
	literal := regexp.MustCompile(`'([^']*)'::text`)
	for checks.Next() {
		var tn, cn, def string
		if err := checks.Scan(&tn, &cn, &def); err != nil {
			t.Fatal(err)
		}
		c := find(tn, cn)
		c.checked = true
		for _, m := range literal.FindAllStringSubmatch(def, -1) {
			c.allowed = append(c.allowed, m[1])
		}
	}
	if err := checks.Err(); err != nil {
		t.Fatal(err)
	}
	// Parents first.
	var out []table
	done := map[string]bool{}
	var visit func(string)
	visit = func(tn string) {
		if done[tn] {
			return
		}
		done[tn] = true
		for _, p := range parents[tn] {
			visit(p)
		}
		out = append(out, *byName[tn])
	}
	sort.Strings(names)
	for _, tn := range names {
		visit(tn)
	}
	return out
}

// notGenerated are the tables whose rows only the keyring and the audit
// log write, with a meaning a random row would break (the keysets that
// decrypt everything, the passphrase salt, the audit chain's single head
// row, and the audit checkpoint key's single row) and the migration tool's
// own table. Their contents are compared all the same.
var notGenerated = map[string]bool{
	"keyring_keysets": true, "keyring_meta": true, "audit_chain_head": true, "goose_db_version": true,
	"audit_signing_key": true,
}

// text draws any text PostgreSQL can hold: every plane of Unicode, control
// characters, but no NUL.
func text(rt *rapid.T, label string, minLen, maxLen int) string {
	r := rapid.Map(rapid.Rune(), func(r rune) rune {
		if r == 0 {
			return 'Ø'
		}
		return r
	})
	return rapid.StringOfN(r, minLen, maxLen, -1).Draw(rt, label)
}

func jsonValue(depth int) *rapid.Generator[any] {
	return rapid.Custom(func(rt *rapid.T) any {
		kinds := []string{"null", "bool", "number", "string"}
		if depth < 2 {
			kinds = append(kinds, "array", "object")
		}
		switch rapid.SampledFrom(kinds).Draw(rt, "json kind") {
		case "bool":
			return rapid.Bool().Draw(rt, "bool")
		case "number":
			return rapid.Int64Range(-1<<40, 1<<40).Draw(rt, "number")
		case "string":
			return text(rt, "string", 0, 20)
		case "array":
			return rapid.SliceOfN(jsonValue(depth+1), 0, 4).Draw(rt, "array")
		case "object":
			m := map[string]any{}
			for range rapid.IntRange(0, 4).Draw(rt, "keys") {
				m[text(rt, "key", 1, 10)] = jsonValue(depth+1).Draw(rt, "value")
			}
			return m
		}
		return nil
	})
}

// generated is one case's contents as the test wrote them: every
// sensitive value's plaintext by where it lives.
type generated map[keyring.Location][]byte

// fill writes random rows into every table of tables (but notGenerated):
// 2 to 6 rows each, every column drawn by its type, NULL in a nullable
// column one time in four, foreign keys pointing at rows written before,
// sensitive columns encrypted through the keyring at their location with
// their blind index beside them. A row the schema refuses by an integrity
// constraint (a unique key random values happened to repeat) is skipped;
// any other refusal fails the test. It returns the plaintexts and how many
// rows each table got.
func fill(t *testing.T, rt *rapid.T, ctx context.Context, db *store.DB, kr *keyring.Keyring, tables []table) (generated, map[string]int) {
	sensitive := map[string]policies.Column{}
	cols, err := policies.SensitiveColumns()
	if err != nil {
		t.Fatal(err)
	}
	blind := map[string]string{} // "table.blind_index" -> sensitive column
	for _, c := range cols {
		sensitive[c.String()] = c
		if c.BlindIndex != "" {
			blind[c.Table+"."+c.BlindIndex] = c.Column
		}
	}
	plain := generated{}
	written := map[string]int{}
	// keys holds, per "table.column", the values of rows written so far,
	// for foreign keys to point at.
	keys := map[string][]any{}
	for _, tb := range tables {
		if notGenerated[tb.name] {
			continue
		}
		for i := range rapid.IntRange(2, 6).Draw(rt, tb.name+" rows") {
			label := fmt.Sprintf("%s[%d].", tb.name, i)
			vals := map[string]any{}
			ok := true
			for _, c := range tb.cols {
				if c.serial || sensitive[tb.name+"."+c.name].Column != "" || blind[tb.name+"."+c.name] != "" {
					continue
				}
				// NULL one time in four; a nullable column a CHECK names
				// (often a check across columns, such as "at most one of
				// these is set") three times in four, so most rows pass it.
				nullOne := rapid.IntRange(0, 3).Draw(rt, label+c.name+" null")
				if c.nullable && (nullOne == 0 || c.checked && nullOne < 3) {
					vals[c.name] = nil
					continue
				}
				if c.ref != "" {
					parents := keys[c.ref]
					if len(parents) == 0 {
						if c.nullable {
							vals[c.name] = nil
							continue
						}
						ok = false
						break
					}
					vals[c.name] = rapid.SampledFrom(parents).Draw(rt, label+c.name)
					continue
				}
				vals[c.name] = draw(t, rt, tb.name, c, label+c.name)
			}
			if !ok {
				continue
			}
			// The location a sensitive value is bound to: the row id, or
			// for a secret version "<name>@<version>".
			rowID, _ := vals["id"].(string)
			if tb.name == "secret_versions" {
				var name string
				if err := db.Pool.QueryRow(ctx, `SELECT name FROM secrets WHERE id = $1`, vals["secret_id"]).Scan(&name); err != nil {
					t.Fatal(err)
				}
				rowID = fmt.Sprintf("%s@%d", name, vals["version"])
			}
			rowPlain := generated{}
			for _, c := range tb.cols {
				sc := sensitive[tb.name+"."+c.name]
				if sc.Column == "" {
					continue
				}
				nullable := c.nullable
				for _, o := range tb.cols {
					if sc.BlindIndex != "" && o.name == sc.BlindIndex {
						nullable = nullable && o.nullable
					}
				}
				if nullable && rapid.IntRange(0, 3).Draw(rt, label+c.name+" null") == 0 {
					vals[c.name] = nil
					if sc.BlindIndex != "" {
						vals[sc.BlindIndex] = nil
					}
					continue
				}
				pt := []byte(text(rt, label+c.name, 0, 80))
				loc := keyring.Location{Table: tb.name, Column: c.name, RowID: rowID}
				ct, err := kr.Encrypt(ctx, loc, pt)
				if err != nil {
					t.Fatal(err)
				}
				vals[c.name] = ct
				if sc.BlindIndex != "" {
					idx, err := kr.BlindIndex(tb.name, c.name, pt)
					if err != nil {
						t.Fatal(err)
					}
					vals[sc.BlindIndex] = idx
				}
				rowPlain[loc] = pt
			}
			names := make([]string, 0, len(vals))
			for n := range vals {
				names = append(names, n)
			}
			sort.Strings(names)
			args := make([]any, len(names))
			ph := make([]string, len(names))
			for j, n := range names {
				args[j], ph[j] = vals[n], fmt.Sprintf("$%d", j+1)
				if _, ok := vals[n].(textValue); ok {
					// Sent as text and cast by PostgreSQL.
					args[j], ph[j] = string(vals[n].(textValue)), fmt.Sprintf("$%d::text::%s", j+1, pgx.Identifier{typeOf(tb, n)}.Sanitize())
				}
				names[j] = pgx.Identifier{n}.Sanitize()
			}
			sql := fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", pgx.Identifier{tb.name}.Sanitize(), strings.Join(names, ", "), strings.Join(ph, ", "))
			if _, err := db.Pool.Exec(ctx, sql, args...); err != nil {
				var pgErr *pgconn.PgError
				if errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "23") {
					// An integrity constraint the generator does not model
					// (a unique value drawn twice, a check across columns,
					// a foreign key over several columns): this row is not
					// written, and no plaintext of it is expected. A table
					// that never gets a row fails the test below.
					continue
				}
				t.Fatalf("%s %v: %v", sql, args, err)
			}
			written[tb.name]++
			for loc, pt := range rowPlain {
				plain[loc] = pt
			}
			for n, v := range vals {
				if v != nil {
					keys[tb.name+"."+n] = append(keys[tb.name+"."+n], v)
				}
			}
		}
	}
	return plain, written
}

// draw draws one value for column c by its type.
func draw(t *testing.T, rt *rapid.T, tableName string, c column, label string) any {
	switch c.typ {
	case "uuid":
		return drawUUID(rt, label)
	case "text", "varchar":
		if len(c.allowed) > 0 {
			return rapid.SampledFrom(c.allowed).Draw(rt, label)
		}
		return text(rt, label, 0, 40)
	case "int2", "int4", "int8":
		if c.checked {
			// Checks on numbers here say positive, non-negative or a
			// 32-bit key id.
			return rapid.Int64Range(1, 1<<31-1).Draw(rt, label)
		}
		if c.typ == "int2" {
			return rapid.Int16().Draw(rt, label)
		}
		if c.typ == "int4" {
			return rapid.Int32().Draw(rt, label)
		}
		return rapid.Int64().Draw(rt, label)
	case "bool":
		return rapid.Bool().Draw(rt, label)
	case "timestamptz":
		us := rapid.Int64Range(0, 4102444800*1e6).Draw(rt, label) // 1970 to 2100, to the microsecond
		return time.UnixMicro(us).UTC()
	case "jsonb", "json":
		// As JSON text, so a top-level null is JSON's null, not SQL NULL.
		b, err := json.Marshal(jsonValue(0).Draw(rt, label))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	case "bytea":
		// Keyed hashes and other non-encrypted bytes.
		return rapid.SliceOfN(rapid.Byte(), 32, 32).Draw(rt, label)
	case "inet":
		if rapid.Bool().Draw(rt, label+" v6") {
			return netip.AddrFrom16([16]byte(rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(rt, label))).String()
		}
		return netip.AddrFrom4([4]byte(rapid.SliceOfN(rapid.Byte(), 4, 4).Draw(rt, label))).String()
	case "_text", "_varchar":
		return rapid.SliceOfN(rapid.Custom(func(rt *rapid.T) string { return text(rt, "element", 0, 12) }), 0, 4).Draw(rt, label)
	case "_uuid":
		return rapid.SliceOfN(rapid.Custom(func(rt *rapid.T) string { return drawUUID(rt, "element") }), 0, 4).Draw(rt, label)
	case "_int4", "_int8":
		return rapid.SliceOfN(rapid.Int32(), 0, 4).Draw(rt, label)
	case "numeric":
		return textValue(fmt.Sprintf("%d.%02d", rapid.Int64Range(0, 1<<40).Draw(rt, label), rapid.IntRange(0, 99).Draw(rt, label+" cents")))
	case "float4", "float8":
		return float64(rapid.Int32().Draw(rt, label)) / 64
	case "date":
		return textValue(time.Unix(rapid.Int64Range(0, 4102444800).Draw(rt, label), 0).UTC().Format(time.DateOnly))
	case "timestamp":
		return textValue(time.UnixMicro(rapid.Int64Range(0, 4102444800*1e6).Draw(rt, label)).UTC().Format("2006-01-02 15:04:05.999999"))
	case "interval":
		return textValue(fmt.Sprintf("%d seconds", rapid.Int64Range(0, 1<<31).Draw(rt, label)))
	case "bpchar", "citext":
		return textValue(text(rt, label, 1, 1))
	}
	t.Fatalf("no generator for %s.%s of type %s: add one", tableName, c.name, c.typ)
	return nil
}

// drawUUID draws any 128 bits as a UUID.
func drawUUID(rt *rapid.T, label string) string {
	b := rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(rt, label)
	return uuid.Must(uuid.FromBytes(b)).String()
}

// textValue is a value sent as text and cast to its column's type by
// PostgreSQL, for types pgx has no Go value for here.
type textValue string

func typeOf(tb table, column string) string {
	for _, c := range tb.cols {
		if c.name == column {
			return c.typ
		}
	}
	return "text"
}

// contents is every row of every table as JSON text, sorted, so two
// databases compare equal exactly when they hold the same rows.
func contents(t *testing.T, ctx context.Context, db *store.DB, tables []table) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, tb := range tables {
		var rows []string
		sql := fmt.Sprintf(`SELECT coalesce(array_agg(j ORDER BY j), '{}') FROM (SELECT row_to_json(x)::text AS j FROM %s x) s`, pgx.Identifier{tb.name}.Sanitize())
		if err := db.Pool.QueryRow(ctx, sql).Scan(&rows); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		out[tb.name] = rows
	}
	return out
}

// decryptAll decrypts every sensitive value stored in db with kr, by its
// location.
func decryptAll(t *testing.T, ctx context.Context, db *store.DB, kr *keyring.Keyring) generated {
	t.Helper()
	cols, err := policies.SensitiveColumns()
	if err != nil {
		t.Fatal(err)
	}
	out := generated{}
	for _, c := range cols {
		rowID := "id::text"
		from := pgx.Identifier{c.Table}.Sanitize() + " x"
		if c.Table == "secret_versions" {
			rowID, from = "s.name || '@' || x.version", "secret_versions x JOIN secrets s ON s.id = x.secret_id"
		}
		sql := fmt.Sprintf(`SELECT %s, x.%s FROM %s WHERE x.%s IS NOT NULL`, rowID, pgx.Identifier{c.Column}.Sanitize(), from, pgx.Identifier{c.Column}.Sanitize())
		rows, err := db.Pool.Query(ctx, sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		for rows.Next() {
			var id string
			var ct []byte
			if err := rows.Scan(&id, &ct); err != nil {
				t.Fatal(err)
			}
			loc := keyring.Location{Table: c.Table, Column: c.Column, RowID: id}
			pt, err := kr.Decrypt(ctx, loc, ct)
			if err != nil {
				t.Fatalf("Decrypt(%v) after restore err = %v, want nil", loc, err)
			}
			out[loc] = pt
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestProperty13_BackupIntegrity claims: for generated database contents
// (2 to 6 random rows in every application table: every column drawn by
// its type, any Unicode text, NULLs, foreign keys, sensitive columns
// encrypted at their location), create, then verify, then restore into a
// scratch database on another "machine" that has only the KEK gives
// identical contents: every row of every table is equal, and every
// sensitive value decrypts there to the plaintext that was written. 12
// cases (each a fresh database, a pg_dump, a verify that restores into a
// scratch database, and a restore: seconds apiece), drawn through rapid's
// generators; -p13.seed reruns a failing set.
func TestProperty13_BackupIntegrity(t *testing.T) {
	t.Parallel()
	const cases = 12
	checkN(t, cases, *property13Seed, func(t *testing.T, rt *rapid.T) {
		ctx := context.Background()
		f := setup(t)
		tables := schema(t, ctx, f.db)
		want, written := fill(t, rt, ctx, f.db, f.kr, tables)
		for _, tb := range tables {
			if !notGenerated[tb.name] && written[tb.name] == 0 {
				t.Fatalf("table %s got no generated rows: the generator cannot write it", tb.name)
			}
		}
		before := contents(t, ctx, f.db, tables)
		total := 0
		for _, n := range written {
			total += n
		}
		t.Logf("%d generated rows in %d tables, %d sensitive values", total, len(written), len(want))

		b, err := f.svc.Create(ctx, backup.LocalOperator, nil)
		if err != nil {
			t.Fatalf("Create err = %v, want nil", err)
		}
		if v, err := f.svc.Verify(ctx, backup.LocalOperator, b.ID, nil); err != nil || !v.OK {
			t.Fatalf("Verify = %+v, %v; want OK", v, err)
		}
		scratch := pgtest.EmptyURL(t)
		kek := loadKEK(t, f.keyPath)
		svc, err := backup.New(backup.Config{Dir: f.dir}, scratch, kek)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Restore(ctx, backup.LocalOperator, b.ID, nil); err != nil {
			t.Fatalf("Restore into a scratch database err = %v, want nil", err)
		}
		db := pgtest.Open(t, scratch)
		if diff := cmp.Diff(before, contents(t, ctx, db, tables)); diff != "" {
			t.Fatalf("contents after restore (-before +restored):\n%s", diff)
		}
		kr, err := keyring.Open(ctx, store.NewKeysets(db.Pool), kek)
		if err != nil {
			t.Fatalf("keyring.Open on the restored database err = %v, want nil", err)
		}
		got := decryptAll(t, ctx, db, kr)
		// The fixture's own secrets are there too; the generated values
		// must all be, each decrypting to what was written.
		for loc, pt := range want {
			if g, ok := got[loc]; !ok || string(g) != string(pt) {
				t.Fatalf("%v after restore = %q (present %v), want %q", loc, g, ok, pt)
			}
		}
		if len(got) != len(want)+len(f.secrets) {
			t.Fatalf("restored database holds %d sensitive values, want %d generated + %d fixture secrets", len(got), len(want), len(f.secrets))
		}
	})
}
