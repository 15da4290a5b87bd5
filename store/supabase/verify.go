package supabase

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
)

// verify runs every check inside the import's transaction, before commit:
// row counts per table, every foreign key resolvable (then re-created), and
// every encrypted value decrypting to its source value (and every hash and
// blind index matching). Each check goes into the report; the first failure
// stops the import.
func (imp *importer) verify(ctx context.Context, order []string, plans map[string][]*tablePlan, fks []foreignKey) error {
	fail := func(c Check) error {
		imp.rep.Checks = append(imp.rep.Checks, c)
		return vectabase.Errorf(vectabase.EVALIDATION, "verification failed: %s %s: %s", c.Name, c.Subject, c.Detail)
	}
	pass := func(c Check) { c.OK = true; imp.rep.Checks = append(imp.rep.Checks, c) }

	// Row counts: what the target holds is what was written, and what was
	// written is what was read less what was skipped for a stated reason.
	for _, t := range order {
		var want int64
		for _, r := range imp.rep.Tables {
			if r.Target == t && r.Source != "auth.identities" {
				want += r.Written
				if r.Read != r.Written+r.Skipped {
					return fail(Check{Name: "row count", Subject: r.Source + " -> " + t, Detail: fmt.Sprintf("read %d, wrote %d, skipped %d", r.Read, r.Written, r.Skipped)})
				}
			}
		}
		var got int64
		if err := imp.tx.QueryRow(ctx, "SELECT count(*) FROM "+quoteIdent(t)).Scan(&got); err != nil {
			return fmt.Errorf("verify: count %s: %w", t, err)
		}
		c := Check{Name: "row count", Subject: t, Detail: fmt.Sprintf("%d rows written, %d in the target", want, got)}
		if got != want {
			return fail(c)
		}
		pass(c)
	}
	for _, r := range imp.rep.Tables {
		if r.Source != "auth.identities" {
			continue
		}
		var got int64
		if err := imp.tx.QueryRow(ctx, "SELECT count(*) FROM users WHERE discord_id IS NOT NULL").Scan(&got); err != nil {
			return fmt.Errorf("verify: count Discord users: %w", err)
		}
		c := Check{Name: "row count", Subject: "users.discord_id", Detail: fmt.Sprintf("%d Discord identities carried, %d users with a Discord id", r.Written, got)}
		if got != r.Written {
			return fail(c)
		}
		pass(c)
	}

	// Foreign keys: an anti-join per constraint names the first orphan.
	for _, fk := range fks {
		child := imp.cat.tables[fk.Child]
		name := "ctid::text"
		if len(child.PK) > 0 {
			parts := make([]string, len(child.PK))
			for i, k := range child.PK {
				parts[i] = "c." + quoteIdent(k) + "::text"
			}
			name = "concat_ws('/', " + strings.Join(parts, ", ") + ")"
		}
		var notNull, match, vals []string
		for i := range fk.ChildCols {
			cc, pc := quoteIdent(fk.ChildCols[i]), quoteIdent(fk.ParentCols[i])
			notNull = append(notNull, "c."+cc+" IS NOT NULL")
			match = append(match, "p."+pc+" = c."+cc)
			vals = append(vals, "c."+cc+"::text")
		}
		q := fmt.Sprintf("SELECT %s, concat_ws(', ', %s) FROM %s c WHERE %s AND NOT EXISTS (SELECT 1 FROM %s p WHERE %s) LIMIT 1",
			name, strings.Join(vals, ", "), quoteIdent(fk.Child), strings.Join(notNull, " AND "), quoteIdent(fk.Parent), strings.Join(match, " AND "))
		var row, key string
		err := imp.tx.QueryRow(ctx, q).Scan(&row, &key)
		c := Check{Name: "foreign key " + fk.Name, Subject: fk.Child, Detail: fmt.Sprintf("every %s.(%s) is in %s", fk.Child, strings.Join(fk.ChildCols, ", "), fk.Parent)}
		switch {
		case err == nil:
			c.Detail = fmt.Sprintf("%s row %s references %s (%s), which does not exist", fk.Child, row, fk.Parent, key)
			return fail(c)
		case !isNoRows(err):
			return fmt.Errorf("verify: foreign key %s: %w", fk.Name, err)
		}
		if _, err := imp.tx.Exec(ctx, "ALTER TABLE "+quoteIdent(fk.Child)+" ADD CONSTRAINT "+quoteIdent(fk.Name)+" "+fk.Def); err != nil {
			c.Detail = "re-creating the constraint failed: " + flatten(err)
			return fail(c)
		}
		pass(c)
	}

	// Encrypted and hashed values, read back from the target.
	for _, t := range order {
		for _, p := range plans[t] {
			for _, vc := range p.checks {
				if err := imp.verifyValues(ctx, vc, pass, fail); err != nil {
					return err
				}
			}
		}
	}
	return imp.countLicenses(ctx, pass, fail)
}

// countLicenses counts the licenses the import carried, through the
// licenses view the whitelist check reads (so a row the view would leave
// out fails the import), into the report.
func (imp *importer) countLicenses(ctx context.Context, pass func(Check), fail func(Check) error) error {
	var l LicenseCounts
	err := imp.tx.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE kind = 'system'), count(*) FILTER (WHERE kind = 'product'),
			count(*) FILTER (WHERE status = 'active'), count(*) FILTER (WHERE status = 'revoked'),
			count(*) FILTER (WHERE status = 'expired'), count(*) FILTER (WHERE hwid_bound)
		FROM licenses`).Scan(&l.Total, &l.System, &l.Product, &l.Active, &l.Revoked, &l.Expired, &l.HWIDBound)
	if err != nil {
		return fmt.Errorf("verify: count licenses: %w", err)
	}
	imp.rep.Licenses = &l
	var rows int64
	if err := imp.tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM whitelist_users) + (SELECT count(*) FROM whitelist_entries)`).Scan(&rows); err != nil {
		return fmt.Errorf("verify: count license rows: %w", err)
	}
	c := Check{Name: "licenses", Subject: "licenses", Detail: fmt.Sprintf("%d whitelist_users and whitelist_entries rows, %d licenses the check sees", rows, l.Total)}
	if rows != l.Total {
		return fail(c)
	}
	pass(c)
	return nil
}

func (imp *importer) verifyValues(ctx context.Context, vc *valueCheck, pass func(Check), fail func(Check) error) error {
	name := "hash matches source"
	if vc.decrypt {
		name = "decrypts to source"
	}
	subject := vc.table + "." + vc.column
	rows, err := imp.tx.Query(ctx, vc.query)
	if err != nil {
		return fmt.Errorf("verify %s: %w", subject, err)
	}
	defer rows.Close()
	got := &digest{}
	var bad *Check
	for rows.Next() {
		var id string
		var val, bidx []byte
		dest := []any{&id, &val}
		if vc.bidx != "" {
			dest = append(dest, &bidx)
		}
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("verify %s: %w", subject, err)
		}
		if val == nil {
			continue
		}
		if !vc.decrypt {
			got.add(id, val)
			continue
		}
		pt, err := imp.kr.Decrypt(ctx, keyring.Location{Table: vc.table, Column: vc.column, RowID: id}, val)
		if err != nil {
			detail := fmt.Sprintf("row %s does not decrypt", id)
			if !errors.Is(err, keyring.ErrDecrypt) {
				detail += ": " + err.Error()
			}
			bad = &Check{Name: name, Subject: subject, Detail: detail}
			break
		}
		if vc.bidx != "" {
			want, err := imp.kr.BlindIndex(vc.table, vc.column, indexForm(vc.table, vc.column, pt))
			if err != nil || !bytes.Equal(want, bidx) {
				bad = &Check{Name: "blind index matches", Subject: vc.table + "." + vc.bidx, Detail: fmt.Sprintf("row %s has a blind index that does not match its value", id)}
				break
			}
		}
		got.add(id, pt)
	}
	rows.Close()
	if bad != nil {
		return fail(*bad)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("verify %s: %w", subject, err)
	}
	c := Check{Name: name, Subject: subject, Detail: fmt.Sprintf("%d values", got.n)}
	if !got.equal(vc.sum) {
		c.Detail = fmt.Sprintf("the target's %d values differ from the source's %d", got.n, vc.sum.n)
		return fail(c)
	}
	pass(c)
	if vc.bidx != "" {
		pass(Check{Name: "blind index matches", Subject: vc.table + "." + vc.bidx, Detail: fmt.Sprintf("%d values", got.n)})
	}
	return nil
}

func isNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }
