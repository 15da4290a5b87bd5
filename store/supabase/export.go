package supabase

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"
)

// The export format: a directory with manifest.json and one file per table,
// <schema>.<table>.json, each a single JSON object
//
//	{"schema":"public","table":"stores","columns":[{"name":"id","type":"uuid"},...],
//	 "rows":[["5000…",null,…],…],
//	 "count":2}
//
// whose row values are PostgreSQL's text form of each value (null for NULL).
// It is written and read a row at a time, so an export of any size streams.
// An export holds the source's plaintext (sensitive columns, Vault secrets,
// password hashes): files are created 0600 in a 0700 directory.
const (
	exportFormat  = "vectabase-supabase-export"
	exportVersion = 1
	manifestName  = "manifest.json"
	// maxExportValue bounds one value read from an export, so a corrupt or
	// hostile file cannot make the reader hold gigabytes.
	maxExportValue = 64 << 20
)

type manifest struct {
	Format        string          `json:"format"`
	Version       int             `json:"version"`
	ExportedAt    time.Time       `json:"exportedAt"`
	Source        string          `json:"source"`
	RefreshTokens int64           `json:"refreshTokens"`
	Tables        []manifestTable `json:"tables"`
}

type manifestTable struct {
	srcTable
	File string `json:"file"`
	Rows int64  `json:"rows"`
}

// exporter writes the tables an import reads into a directory, as it reads
// them.
type exporter struct {
	dir    string
	tables []manifestTable
	done   map[string]bool
}

func newExporter(dir string) (*exporter, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, manifestName)); err == nil {
		return nil, fmt.Errorf("export: %s already holds an export (%s); choose an empty directory", dir, manifestName)
	}
	return &exporter{dir: dir, done: map[string]bool{}}, nil
}

// tableWriter streams one table into its file.
type tableWriter struct {
	f    *os.File
	w    *bufio.Writer
	t    srcTable
	rows int64
	buf  []byte
}

// table starts the file of t, or returns nil when t was exported already
// (a table read twice, like Vault's secrets, is written once).
func (e *exporter) table(t srcTable) (*tableWriter, error) {
	if e == nil || e.done[t.qualified()] {
		return nil, nil
	}
	e.done[t.qualified()] = true
	name := t.qualified() + ".json"
	f, err := os.OpenFile(filepath.Join(e.dir, name), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	tw := &tableWriter{f: f, w: bufio.NewWriterSize(f, 256<<10), t: t}
	head, _ := json.Marshal(struct {
		Schema  string   `json:"schema"`
		Table   string   `json:"table"`
		Columns []column `json:"columns"`
	}{t.Schema, t.Name, t.Columns})
	tw.w.Write(head[:len(head)-1])
	tw.w.WriteString(",\"rows\":[")
	return tw, nil
}

func (tw *tableWriter) write(row [][]byte) error {
	if tw == nil {
		return nil
	}
	b := tw.buf[:0]
	if tw.rows > 0 {
		b = append(b, ',')
	}
	b = append(b, "\n["...)
	for i, v := range row {
		if i > 0 {
			b = append(b, ',')
		}
		if v == nil {
			b = append(b, "null"...)
			continue
		}
		if !utf8.Valid(v) {
			return fmt.Errorf("export: %s column %s holds text that is not valid UTF-8", tw.t.qualified(), tw.t.Columns[i].Name)
		}
		b = appendJSONString(b, v)
	}
	b = append(b, ']')
	tw.buf = b
	tw.rows++
	_, err := tw.w.Write(b)
	return err
}

// finish closes the file and records it in the manifest.
func (e *exporter) finish(tw *tableWriter) error {
	if tw == nil {
		return nil
	}
	fmt.Fprintf(tw.w, "\n],\"count\":%d}\n", tw.rows)
	err := tw.w.Flush()
	if cerr := tw.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	e.tables = append(e.tables, manifestTable{srcTable: tw.t, File: tw.t.qualified() + ".json", Rows: tw.rows})
	return nil
}

// abort closes a table's file after a failure; the manifest never names it.
func (tw *tableWriter) abort() {
	if tw != nil {
		_ = tw.f.Close()
	}
}

// writeManifest is the last step of an export: without it, a directory is
// not an export, so a failed run never leaves one that looks complete.
func (e *exporter) writeManifest(source string, refreshTokens int64) error {
	if e == nil {
		return nil
	}
	m := manifest{Format: exportFormat, Version: exportVersion, ExportedAt: time.Now().UTC(), Source: source, RefreshTokens: refreshTokens, Tables: e.tables}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(e.dir, manifestName), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

func appendJSONString(b, s []byte) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// dirSource reads an export made by exporter.
type dirSource struct {
	dir string
	m   manifest
}

func openDirSource(dir string) (*dirSource, error) {
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("--from-dir %s: no %s: not an export made with --export-dir (or the export did not finish)", dir, manifestName)
		}
		return nil, fmt.Errorf("--from-dir: %w", err)
	}
	m, err := parseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("--from-dir %s: %w", dir, err)
	}
	return &dirSource{dir: dir, m: m}, nil
}

// parseManifest checks a manifest strictly: known format and version, file
// names that stay inside the directory, tables named once.
func parseManifest(b []byte) (manifest, error) {
	var m manifest
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, fmt.Errorf("%s: %v", manifestName, err)
	}
	if m.Format != exportFormat || m.Version != exportVersion {
		return m, fmt.Errorf("%s: format %q version %d, want %q version %d", manifestName, m.Format, m.Version, exportFormat, exportVersion)
	}
	seen := map[string]bool{}
	for _, t := range m.Tables {
		if t.Schema == "" || t.Name == "" || len(t.Columns) == 0 {
			return m, fmt.Errorf("%s: a table without schema, name or columns", manifestName)
		}
		if t.File != t.qualified()+".json" || t.File != filepath.Base(t.File) || strings.ContainsAny(t.File, `/\`) {
			return m, fmt.Errorf("%s: table %s has file %q, want %q", manifestName, t.qualified(), t.File, t.qualified()+".json")
		}
		if seen[t.qualified()] {
			return m, fmt.Errorf("%s: table %s listed twice", manifestName, t.qualified())
		}
		seen[t.qualified()] = true
		cols := map[string]bool{}
		for _, c := range t.Columns {
			if c.Name == "" || cols[c.Name] {
				return m, fmt.Errorf("%s: table %s has an empty or repeated column name", manifestName, t.qualified())
			}
			cols[c.Name] = true
		}
		if t.Rows < 0 {
			return m, fmt.Errorf("%s: table %s has a negative row count", manifestName, t.qualified())
		}
	}
	return m, nil
}

func (d *dirSource) String() string { return "export " + d.dir }

func (d *dirSource) close(context.Context) {}

func (d *dirSource) tables(context.Context) ([]srcTable, error) {
	out := make([]srcTable, len(d.m.Tables))
	for i, t := range d.m.Tables {
		out[i] = t.srcTable
	}
	return out, nil
}

func (d *dirSource) find(t srcTable) (manifestTable, bool) {
	for _, mt := range d.m.Tables {
		if mt.qualified() == t.qualified() {
			return mt, true
		}
	}
	return manifestTable{}, false
}

func (d *dirSource) count(_ context.Context, t srcTable) (int64, error) {
	mt, ok := d.find(t)
	if !ok {
		return 0, fmt.Errorf("export has no table %s", t.qualified())
	}
	return mt.Rows, nil
}

func (d *dirSource) refreshTokens(context.Context) (int64, error) { return d.m.RefreshTokens, nil }

func (d *dirSource) scan(ctx context.Context, t srcTable, cols []string, fn func(row [][]byte) error) error {
	mt, ok := d.find(t)
	if !ok {
		return fmt.Errorf("export has no table %s", t.qualified())
	}
	f, err := os.Open(filepath.Join(d.dir, mt.File))
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := readTableFile(bufio.NewReaderSize(f, 256<<10), mt.srcTable, cols, fn)
	if err != nil {
		return fmt.Errorf("%s: %w", mt.File, err)
	}
	if n != mt.Rows {
		return fmt.Errorf("%s: %d rows, the manifest says %d", mt.File, n, mt.Rows)
	}
	return nil
}

// readTableFile streams the rows of one exported table file, checking that
// it describes want (same schema, table and columns), and calls fn with the
// values of cols in that order. It returns the number of rows. Any
// malformed input is an error naming what is wrong; it never panics.
func readTableFile(r io.Reader, want srcTable, cols []string, fn func(row [][]byte) error) (int64, error) {
	dec := json.NewDecoder(r)
	expectDelim := func(d json.Delim) error {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("malformed JSON: %v", err)
		}
		if got, ok := tok.(json.Delim); !ok || got != d {
			return fmt.Errorf("malformed export: want %q, got %v", d, tok)
		}
		return nil
	}
	if err := expectDelim('{'); err != nil {
		return 0, err
	}
	var (
		schema, table string
		columns       []column
		pick          []int
		rows          int64
		count         int64 = -1
		sawRows       bool
	)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return rows, fmt.Errorf("malformed JSON: %v", err)
		}
		key, _ := tok.(string)
		switch key {
		case "schema":
			err = dec.Decode(&schema)
		case "table":
			err = dec.Decode(&table)
		case "columns":
			err = dec.Decode(&columns)
			if err == nil {
				pick, err = pickColumns(want, schema, table, columns, cols)
			}
		case "count":
			err = dec.Decode(&count)
		case "rows":
			if pick == nil {
				return rows, errors.New("malformed export: rows before schema, table and columns")
			}
			if sawRows {
				return rows, errors.New("malformed export: rows given twice")
			}
			sawRows = true
			if err := expectDelim('['); err != nil {
				return rows, err
			}
			out := make([][]byte, len(pick))
			for dec.More() {
				var vals []*string
				if err := dec.Decode(&vals); err != nil {
					return rows, fmt.Errorf("row %d: %v", rows+1, err)
				}
				if len(vals) != len(columns) {
					return rows, fmt.Errorf("row %d has %d values for %d columns", rows+1, len(vals), len(columns))
				}
				for i, j := range pick {
					switch v := vals[j]; {
					case v == nil:
						out[i] = nil
					case len(*v) > maxExportValue:
						return rows, fmt.Errorf("row %d: a value of column %s is larger than %d bytes", rows+1, columns[j].Name, maxExportValue)
					default:
						out[i] = append([]byte{}, *v...)
					}
				}
				rows++
				if err := fn(out); err != nil {
					return rows, err
				}
			}
			if err := expectDelim(']'); err != nil {
				return rows, err
			}
		default:
			return rows, fmt.Errorf("malformed export: unknown key %v", tok)
		}
		if err != nil {
			return rows, fmt.Errorf("malformed export: %s: %v", key, err)
		}
	}
	if err := expectDelim('}'); err != nil {
		return rows, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return rows, errors.New("malformed export: data after the end of the table")
	}
	if !sawRows {
		return rows, errors.New("malformed export: no rows array")
	}
	if count != rows {
		return rows, fmt.Errorf("malformed export: %d rows but count says %d (truncated file?)", rows, count)
	}
	return rows, nil
}

// pickColumns checks a file's header against the manifest's table and maps
// the wanted columns to their positions.
func pickColumns(want srcTable, schema, table string, got []column, cols []string) ([]int, error) {
	if schema != want.Schema || table != want.Name {
		return nil, fmt.Errorf("file holds %s.%s, want %s", schema, table, want.qualified())
	}
	if len(got) != len(want.Columns) {
		return nil, fmt.Errorf("file has %d columns, the manifest %d", len(got), len(want.Columns))
	}
	for i := range got {
		if got[i].Name != want.Columns[i].Name || got[i].Type != want.Columns[i].Type {
			return nil, fmt.Errorf("file column %d is %s %s, the manifest says %s %s", i+1, got[i].Name, got[i].Type, want.Columns[i].Name, want.Columns[i].Type)
		}
	}
	pick := make([]int, len(cols))
	for i, c := range cols {
		pick[i] = want.index(c)
		if pick[i] < 0 {
			return nil, fmt.Errorf("no column %s", c)
		}
	}
	return pick, nil
}
