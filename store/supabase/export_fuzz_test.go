package supabase

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

var fuzzTable = srcTable{Schema: "public", Name: "stores", Columns: []column{{Name: "id", Type: "uuid"}, {Name: "name", Type: "text"}}}

// FuzzReadTableFile feeds arbitrary bytes to the --from-dir table reader: it
// must never panic, and whatever it accepts has the declared shape.
func FuzzReadTableFile(f *testing.F) {
	f.Add([]byte(`{"schema":"public","table":"stores","columns":[{"name":"id","type":"uuid"},{"name":"name","type":"text"}],"rows":[
["5","a"],
["6",null]
],"count":2}`))
	f.Add([]byte(`{"schema":"public","table":"stores","columns":[{"name":"id","type":"uuid"},{"name":"name","type":"text"}],"rows":[],"count":0}`))
	f.Add([]byte(`{"schema":"public","table":"stores","columns":[{"name":"id","type":"uuid"},{"name":"name","type":"text"}],"rows":[["5","a"]],"count":2}`))
	f.Add([]byte(`{"rows":[["5","a"]]}`))
	f.Add([]byte(`{"schema":"public","table":"stores","columns":[{"name":"id","type":"uuid"},{"name":"name","type":"text"}],"rows":[[5,true]],"count":1}`))
	f.Add([]byte(`{"schema":"public","table":"stores","columns":[{"name":"id","type":"uuid"},{"name":"name","type":"text"}],"rows":[["5","a"]],"count":1}{}`))
	f.Add([]byte(`[`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		calls := int64(0)
		n, err := readTableFile(bytes.NewReader(data), fuzzTable, []string{"name", "id"}, func(row [][]byte) error {
			calls++
			if len(row) != 2 {
				t.Fatalf("row has %d values, want 2", len(row))
			}
			return nil
		})
		if n != calls {
			t.Fatalf("readTableFile returned %d rows after %d calls", n, calls)
		}
		_ = err
	})
}

// FuzzExportRoundTrip writes values through the exporter and reads them
// back: every value (NULL, empty, any valid UTF-8) survives unchanged.
func FuzzExportRoundTrip(f *testing.F) {
	f.Add("a", "", false)
	f.Add("line one\nline two", "tab\there \"quoted\" \\ back", true)
	f.Add("zoë 🔑 \x01\x1f", "\u2028", false)
	f.Fuzz(func(t *testing.T, a, b string, bNull bool) {
		if !utf8.ValidString(a) || !utf8.ValidString(b) {
			t.Skip()
		}
		dir := t.TempDir()
		e, err := newExporter(dir)
		if err != nil {
			t.Fatal(err)
		}
		tw, err := e.table(fuzzTable)
		if err != nil {
			t.Fatal(err)
		}
		var bv []byte
		if !bNull {
			bv = []byte(b)
		}
		in := [][]byte{[]byte(a), bv}
		if err := tw.write(in); err != nil {
			t.Fatal(err)
		}
		if err := tw.write([][]byte{nil, []byte{}}); err != nil {
			t.Fatal(err)
		}
		if err := e.finish(tw); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(filepath.Join(dir, "public.stores.json"))
		if err != nil {
			t.Fatal(err)
		}
		var got [][][]byte
		_, err = readTableFile(bytes.NewReader(raw), fuzzTable, []string{"id", "name"}, func(row [][]byte) error {
			got = append(got, [][]byte{row[0], row[1]})
			return nil
		})
		if err != nil {
			t.Fatalf("read back: %v\n%s", err, raw)
		}
		want := [][][]byte{in, {nil, {}}}
		if len(got) != len(want) {
			t.Fatalf("read back %d rows, want %d", len(got), len(want))
		}
		for i := range want {
			for j := range want[i] {
				if (want[i][j] == nil) != (got[i][j] == nil) || !bytes.Equal(want[i][j], got[i][j]) {
					t.Errorf("row %d value %d = %q (nil %v), want %q (nil %v)", i, j, got[i][j], got[i][j] == nil, want[i][j], want[i][j] == nil)
				}
			}
		}
		if strings.Count(string(raw), "\n") < 3 {
			t.Errorf("export is not one row per line:\n%s", raw)
		}
	})
}

// TestParseManifestRefusesEscapes checks that a manifest cannot point the
// reader outside its directory.
func TestParseManifestRefusesEscapes(t *testing.T) {
	for _, file := range []string{"../x.json", "/etc/passwd", "public.other.json", `a\b.json`} {
		m := `{"format":"vectabase-supabase-export","version":1,"tables":[{"schema":"public","table":"stores","columns":[{"name":"id","type":"uuid"}],"file":"` + strings.ReplaceAll(file, `\`, `\\`) + `","rows":0}]}`
		if _, err := parseManifest([]byte(m)); err == nil {
			t.Errorf("parseManifest(file %q) err = nil, want refusal", file)
		}
	}
}
