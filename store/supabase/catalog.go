package supabase

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// catalog is what the import needs to know about the target schema, read
// from pg_catalog so that a migration adding a table, a column or a foreign
// key needs no change here.
type catalog struct {
	tables map[string]*tgtTable
	fks    []foreignKey
}

type tgtTable struct {
	Name    string
	Columns []column
	PK      []string
}

func (t *tgtTable) column(name string) (column, bool) {
	for _, c := range t.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return column{}, false
}

type foreignKey struct {
	Name          string
	Child, Parent string
	ChildCols     []string
	ParentCols    []string
	Def           string // pg_get_constraintdef, to re-create it
}

func readCatalog(ctx context.Context, tx pgx.Tx) (*catalog, error) {
	c := &catalog{tables: map[string]*tgtTable{}}
	rows, err := tx.Query(ctx, `
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       a.atthasdef OR a.attidentity <> '', a.attgenerated <> ''
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY c.relname, a.attnum`)
	if err != nil {
		return nil, fmt.Errorf("target: read the catalog: %w", err)
	}
	for rows.Next() {
		var table string
		var col column
		if err := rows.Scan(&table, &col.Name, &col.Type, &col.notNull, &col.hasDefault, &col.generated); err != nil {
			rows.Close()
			return nil, fmt.Errorf("target: read the catalog: %w", err)
		}
		t := c.tables[table]
		if t == nil {
			t = &tgtTable{Name: table}
			c.tables[table] = t
		}
		t.Columns = append(t.Columns, col)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("target: read the catalog: %w", err)
	}

	rows, err = tx.Query(ctx, `
SELECT c.relname, array_agg(a.attname::text ORDER BY k.ord)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE i.indisprimary AND n.nspname = current_schema()
GROUP BY c.relname`)
	if err != nil {
		return nil, fmt.Errorf("target: read primary keys: %w", err)
	}
	for rows.Next() {
		var table string
		var cols []string
		if err := rows.Scan(&table, &cols); err != nil {
			rows.Close()
			return nil, fmt.Errorf("target: read primary keys: %w", err)
		}
		if t := c.tables[table]; t != nil {
			t.PK = cols
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("target: read primary keys: %w", err)
	}

	rows, err = tx.Query(ctx, `
SELECT con.conname, c.relname, p.relname,
       (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(con.conkey) WITH ORDINALITY AS k(n, ord)
          JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n),
       (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(con.confkey) WITH ORDINALITY AS k(n, ord)
          JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n),
       pg_get_constraintdef(con.oid)
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_class p ON p.oid = con.confrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_namespace pn ON pn.oid = p.relnamespace
WHERE con.contype = 'f' AND n.nspname = current_schema() AND pn.nspname = current_schema()
ORDER BY c.relname, con.conname`)
	if err != nil {
		return nil, fmt.Errorf("target: read foreign keys: %w", err)
	}
	for rows.Next() {
		var fk foreignKey
		if err := rows.Scan(&fk.Name, &fk.Child, &fk.Parent, &fk.ChildCols, &fk.ParentCols, &fk.Def); err != nil {
			rows.Close()
			return nil, fmt.Errorf("target: read foreign keys: %w", err)
		}
		c.fks = append(c.fks, fk)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("target: read foreign keys: %w", err)
	}
	return c, nil
}

// loadOrder sorts tables so that every table comes after the tables its
// foreign keys reference (Kahn's algorithm, ties by name so the order is
// stable). Self-references and references to tables outside the set do not
// constrain the order. A cycle is an error naming its tables.
func (c *catalog) loadOrder(tables []string) ([]string, error) {
	in := map[string]bool{}
	for _, t := range tables {
		in[t] = true
	}
	deps := map[string]map[string]bool{} // child -> parents
	for _, t := range tables {
		deps[t] = map[string]bool{}
	}
	for _, fk := range c.fks {
		if in[fk.Child] && in[fk.Parent] && fk.Child != fk.Parent {
			deps[fk.Child][fk.Parent] = true
		}
	}
	var order []string
	done := map[string]bool{}
	for len(order) < len(tables) {
		var ready []string
		for _, t := range tables {
			if done[t] {
				continue
			}
			ok := true
			for p := range deps[t] {
				if !done[p] {
					ok = false
					break
				}
			}
			if ok {
				ready = append(ready, t)
			}
		}
		if len(ready) == 0 {
			var rest []string
			for _, t := range tables {
				if !done[t] {
					rest = append(rest, t)
				}
			}
			sort.Strings(rest)
			return nil, fmt.Errorf("target: foreign keys form a cycle among %s", strings.Join(rest, ", "))
		}
		sort.Strings(ready)
		for _, t := range ready {
			done[t] = true
		}
		order = append(order, ready...)
	}
	return order, nil
}

// referencing returns tables plus every table whose foreign keys reach one
// of them, directly or not: emptying tables needs them all emptied at once.
func (c *catalog) referencing(tables []string) []string {
	set := map[string]bool{}
	for _, t := range tables {
		set[t] = true
	}
	for changed := true; changed; {
		changed = false
		for _, fk := range c.fks {
			if set[fk.Parent] && !set[fk.Child] {
				set[fk.Child] = true
				changed = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for t := range set {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}
