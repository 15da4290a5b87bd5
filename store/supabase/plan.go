package supabase

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/policies"
)

// opKind says how one target column's value is made from a source row.
type opKind int

const (
	opCopy        opKind = iota // the source text as it is
	opCopyOr                    // the source text, or def when NULL
	opNullIfEmpty               // the source text, NULL when NULL or ''
	opConst                     // def
	opEncrypt                   // keyring ciphertext bound to (table, column, row id)
	opBlindIndex                // keyring blind index of the source value
	opMAC                       // keyed hash of the source value
	opPrefix                    // the first n characters of the source value
)

type colOp struct {
	kind   opKind
	target string
	src    int    // index into tablePlan.cols
	def    []byte // opCopyOr, opConst
	// opEncrypt: Table and Column of the Location; opBlindIndex: the
	// sensitive column indexed.
	loc keyring.Location
	// opEncrypt: the Location's row id is cols[rowID] (canonical) + suffix.
	rowID  int
	suffix string
	n      int    // opPrefix
	mac    string // opMAC purpose
	sum    *digest
}

// tablePlan is how one source table fills one target table.
type tablePlan struct {
	src     srcTable // with only the columns read
	target  string
	cols    []string
	ops     []colOp
	idCols  []int // source indexes naming a row in messages
	uuidCol []bool
	skip    func(row [][]byte) string
	dropped []string
	// checks verify, after the load, what was encrypted or hashed.
	checks []*valueCheck
}

// valueCheck recomputes, from the target, a digest of (row id, plaintext)
// or (row id, hash) pairs that the load computed from the source.
type valueCheck struct {
	table, column string
	decrypt       bool   // decrypt before digesting; else digest the stored hash
	query         string // yields (location row id text, value bytea[, blind index bytea])
	bidx          string // blind index column checked beside the value, if any
	sum           *digest
}

// sensitivity is the declarative policy in the shape the planner needs.
type sensitivity map[string]policies.Column

func loadSensitivity() (sensitivity, error) {
	cols, err := policies.SensitiveColumns()
	if err != nil {
		return nil, err
	}
	s := sensitivity{}
	for _, c := range cols {
		s[c.String()] = c
	}
	return s, nil
}

// hashedColumns are source columns that become a keyed hash and a visible
// prefix instead of ciphertext, so existing keys keep working.
var hashedColumns = map[string]struct {
	hash, prefix, purpose string
	n                     int
}{
	"developer_api_keys.api_key": {hash: "key_hash", prefix: "key_prefix", purpose: "api_key", n: 12},
}

// indexForm is the form of a value its blind index is computed over: the
// same form the API normalises a presented value to before looking it up,
// or imported values with another spelling would never be found. License
// keys are matched case-insensitively and without surrounding spaces (as
// server/marketplace's normalizeLicenseKey does). The ciphertext keeps the
// value exactly as it was.
func indexForm(table, column string, v []byte) []byte {
	if column == "license_key" {
		return bytes.ToUpper(bytes.TrimSpace(v))
	}
	return v
}

// reservedTargets are filled from GoTrue and Vault, or belong to the
// platform itself; a public table of the same name has no place in them.
var reservedTargets = map[string]bool{
	"users": true, "sessions": true, "secrets": true, "secret_versions": true,
	"audit_logs": true, "keyring_keysets": true, "keyring_meta": true, "goose_db_version": true,
}

// allowDrop holds the --allow-drop entries: "table.column", or "table.*"
// (or "table") for a whole table.
type allowDrop map[string]bool

func (a allowDrop) column(table, col string) bool {
	return a[table+"."+col] || a[table+".*"] || a[table]
}

func (a allowDrop) table(table string) bool { return a[table+".*"] || a[table] }

// planPublic maps an application table onto the target table of the same
// name: each source column must have a place (a column of the same name,
// encrypted when the policy lists it; or a hash) unless --allow-drop names
// it, and each target column left out must have a default.
func planPublic(src srcTable, tgt *tgtTable, sens sensitivity, allow allowDrop) (*tablePlan, error) {
	p := &tablePlan{target: tgt.Name, src: srcTable{Schema: src.Schema, Name: src.Name}}
	idIdx := -1
	written := map[string]bool{}
	addSrc := func(c column) int {
		p.cols = append(p.cols, c.Name)
		p.src.Columns = append(p.src.Columns, c)
		p.uuidCol = append(p.uuidCol, c.Type == "uuid")
		return len(p.cols) - 1
	}
	// Every source column is read, so an export holds the whole table.
	for _, c := range src.Columns {
		i := addSrc(c)
		if c.Name == "id" {
			idIdx = i
		}
	}
	var problems []string
	for i, c := range src.Columns {
		key := tgt.Name + "." + c.Name
		if h, ok := hashedColumns[key]; ok {
			if _, has := tgt.column(h.hash); has {
				sum := &digest{}
				p.ops = append(p.ops,
					colOp{kind: opMAC, target: h.hash, src: i, mac: h.purpose, sum: sum},
					colOp{kind: opPrefix, target: h.prefix, src: i, n: h.n})
				written[h.hash], written[h.prefix] = true, true
				p.checks = append(p.checks, &valueCheck{table: tgt.Name, column: h.hash, sum: sum,
					query: fmt.Sprintf("SELECT id::text, %s FROM %s", quoteIdent(h.hash), quoteIdent(tgt.Name))})
				continue
			}
		}
		tc, ok := tgt.column(c.Name)
		switch {
		case !ok:
			if allow.column(src.Name, c.Name) {
				p.dropped = append(p.dropped, c.Name)
				continue
			}
			problems = append(problems, src.Name+"."+c.Name)
			continue
		case tc.generated:
			// The target computes it from the other columns.
			p.dropped = append(p.dropped, c.Name+" (computed by the target)")
			continue
		}
		if pc, ok := sens[key]; ok {
			if idIdx < 0 {
				return nil, vectabase.Errorf(vectabase.EVALIDATION, "%s.%s is sensitive but the table has no id column to bind its ciphertext to", src.Name, c.Name)
			}
			sum := &digest{}
			p.ops = append(p.ops, colOp{kind: opEncrypt, target: c.Name, src: i, rowID: idIdx, sum: sum,
				loc: keyring.Location{Table: tgt.Name, Column: c.Name}})
			written[c.Name] = true
			vc := &valueCheck{table: tgt.Name, column: c.Name, decrypt: true, sum: sum}
			if pc.BlindIndex != "" {
				if _, has := tgt.column(pc.BlindIndex); has {
					p.ops = append(p.ops, colOp{kind: opBlindIndex, target: pc.BlindIndex, src: i, loc: keyring.Location{Table: tgt.Name, Column: c.Name}})
					written[pc.BlindIndex] = true
					vc.bidx = pc.BlindIndex
				}
			}
			if vc.bidx != "" {
				vc.query = fmt.Sprintf("SELECT id::text, %s, %s FROM %s", quoteIdent(c.Name), quoteIdent(vc.bidx), quoteIdent(tgt.Name))
			} else {
				vc.query = fmt.Sprintf("SELECT id::text, %s FROM %s", quoteIdent(c.Name), quoteIdent(tgt.Name))
			}
			p.checks = append(p.checks, vc)
			continue
		}
		if tc.Type == "bytea" && c.Type != "bytea" {
			// A bytea column outside the policy would receive plaintext.
			return nil, vectabase.Errorf(vectabase.EVALIDATION, "%s.%s (%s) would land in the bytea column %s.%s, which policies/sensitive_columns.json does not list as sensitive", src.Name, c.Name, c.Type, tgt.Name, c.Name)
		}
		p.ops = append(p.ops, colOp{kind: opCopy, target: c.Name, src: i})
		written[c.Name] = true
	}
	if len(problems) > 0 {
		return nil, vectabase.Errorf(vectabase.EVALIDATION, "source column %s has no place in the target (use --allow-drop %s to leave it behind)",
			strings.Join(problems, ", "), problems[0])
	}
	if err := checkUnwritten(tgt, written); err != nil {
		return nil, err
	}
	p.idCols = rowNameColumns(p.cols, tgt.PK)
	return p, nil
}

// checkUnwritten refuses a plan that leaves out a target column that needs
// a value.
func checkUnwritten(tgt *tgtTable, written map[string]bool) error {
	for _, c := range tgt.Columns {
		if !written[c.Name] && c.notNull && !c.hasDefault && !c.generated {
			return vectabase.Errorf(vectabase.EVALIDATION, "target column %s.%s needs a value and the source has none for it", tgt.Name, c.Name)
		}
	}
	return nil
}

// rowNameColumns picks the columns that name a row in messages: id, else
// the target's primary key, else the first column.
func rowNameColumns(cols []string, pk []string) []int {
	idx := func(name string) int {
		for i, c := range cols {
			if c == name {
				return i
			}
		}
		return -1
	}
	if i := idx("id"); i >= 0 {
		return []int{i}
	}
	var out []int
	for _, k := range pk {
		if i := idx(k); i >= 0 {
			out = append(out, i)
		}
	}
	if len(out) == 0 && len(cols) > 0 {
		out = []int{0}
	}
	return out
}

// need returns the indexes of the named columns of t, or an error naming
// the first one the source lacks.
func need(t srcTable, names ...string) ([]column, error) {
	out := make([]column, len(names))
	for i, n := range names {
		j := t.index(n)
		if j < 0 {
			return nil, vectabase.Errorf(vectabase.EVALIDATION, "source table %s has no column %s", t.qualified(), n)
		}
		out[i] = t.Columns[j]
	}
	return out, nil
}

// planUsers turns auth.users into users: the id stays, bcrypt hashes are
// kept (NULL or the empty string becomes NULL: such users sign in only through OAuth),
// and the timestamps and metadata come along. GoTrue's other columns
// (tokens, phone, bans, ...) are read no further.
func planUsers(src srcTable, tgt *tgtTable, now string) (*tablePlan, error) {
	names := []string{"id", "email", "encrypted_password", "email_confirmed_at", "last_sign_in_at", "raw_user_meta_data", "created_at", "updated_at"}
	cols, err := need(src, names...)
	if err != nil {
		return nil, err
	}
	p := &tablePlan{target: tgt.Name, src: srcTable{Schema: src.Schema, Name: src.Name, Columns: cols}, cols: names, idCols: []int{0}}
	for _, c := range cols {
		p.uuidCol = append(p.uuidCol, c.Type == "uuid")
	}
	p.ops = []colOp{
		{kind: opCopy, target: "id", src: 0},
		{kind: opNullIfEmpty, target: "email", src: 1},
		{kind: opNullIfEmpty, target: "password_hash", src: 2},
		{kind: opCopy, target: "email_confirmed_at", src: 3},
		{kind: opCopy, target: "last_sign_in_at", src: 4},
		{kind: opCopyOr, target: "raw_user_meta_data", src: 5, def: []byte("{}")},
		{kind: opCopyOr, target: "created_at", src: 6, def: []byte(now)},
		{kind: opCopyOr, target: "updated_at", src: 7, def: []byte(now)},
	}
	written := map[string]bool{}
	for _, op := range p.ops {
		if _, ok := tgt.column(op.target); !ok {
			return nil, vectabase.Errorf(vectabase.EVALIDATION, "target table users has no column %s", op.target)
		}
		written[op.target] = true
	}
	written["discord_id"], written["discord_username"] = true, true
	return p, checkUnwritten(tgt, written)
}

// vaultColumns are what the import reads of vault.decrypted_secrets; the
// stored ciphertext, key id and nonce stay behind.
var vaultColumns = []string{"id", "name", "description", "decrypted_secret", "created_at", "updated_at"}

// skipSecret says why a Vault secret cannot become a secret, or "".
// validName is the secrets vault's own rule for names (nil: any name).
func skipSecret(validName func(string) error) func(row [][]byte) string {
	return func(row [][]byte) string {
		switch {
		case len(row[1]) == 0:
			return "Vault secret without a name (the secrets vault addresses secrets by name)"
		case row[3] == nil:
			return "Vault could not decrypt the secret (decrypted_secret is NULL)"
		case validName != nil && validName(string(row[1])) != nil:
			return "Vault secret name is not a valid secrets-vault name (rename it in Supabase Vault and import again)"
		}
		return ""
	}
}

// planSecrets turns each Vault secret into a secret at version 1.
func planSecrets(src srcTable, secrets, versions *tgtTable, now string, validName func(string) error) (*tablePlan, *tablePlan, error) {
	cols, err := need(src, vaultColumns...)
	if err != nil {
		return nil, nil, err
	}
	base := func(t *tgtTable) *tablePlan {
		p := &tablePlan{target: t.Name, src: srcTable{Schema: src.Schema, Name: src.Name, Columns: cols}, cols: vaultColumns, idCols: []int{1}, skip: skipSecret(validName)}
		for _, c := range cols {
			p.uuidCol = append(p.uuidCol, c.Type == "uuid")
		}
		return p
	}
	imp := []byte("import")
	sp := base(secrets)
	sp.ops = []colOp{
		{kind: opCopy, target: "id", src: 0},
		{kind: opCopy, target: "name", src: 1},
		{kind: opCopyOr, target: "description", src: 2, def: []byte{}},
		{kind: opConst, target: "current_version", def: []byte("1")},
		{kind: opConst, target: "created_by", def: imp},
		{kind: opConst, target: "updated_by", def: imp},
		{kind: opCopyOr, target: "created_at", src: 4, def: []byte(now)},
		{kind: opCopyOr, target: "updated_at", src: 5, def: []byte(now)},
	}
	vp := base(versions)
	sum := &digest{}
	vp.ops = []colOp{
		{kind: opCopy, target: "secret_id", src: 0},
		{kind: opConst, target: "version", def: []byte("1")},
		{kind: opEncrypt, target: "value", src: 3, rowID: 1, suffix: "@1", sum: sum,
			loc: keyring.Location{Table: versions.Name, Column: "value"}},
		{kind: opConst, target: "created_by", def: imp},
		{kind: opCopyOr, target: "created_at", src: 4, def: []byte(now)},
	}
	vp.checks = []*valueCheck{{table: versions.Name, column: "value", decrypt: true, sum: sum,
		query: "SELECT s.name || '@' || v.version, v.value FROM secret_versions v JOIN secrets s ON s.id = v.secret_id"}}
	for _, pair := range []struct {
		p *tablePlan
		t *tgtTable
	}{{sp, secrets}, {vp, versions}} {
		written := map[string]bool{}
		for _, op := range pair.p.ops {
			if _, ok := pair.t.column(op.target); !ok {
				return nil, nil, vectabase.Errorf(vectabase.EVALIDATION, "target table %s has no column %s", pair.t.Name, op.target)
			}
			written[op.target] = true
		}
		if err := checkUnwritten(pair.t, written); err != nil {
			return nil, nil, err
		}
	}
	return sp, vp, nil
}

// identityColumns are what the import reads of auth.identities.
var identityColumns = []string{"id", "user_id", "provider", "provider_id", "identity_data"}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
