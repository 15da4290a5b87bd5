package vectabase_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestNothingReadsOutsideTheModule holds the promise a fresh clone depends
// on: no test, benchmark harness or CI script names a path that leaves the
// repository. A user's clone has nothing beside it, so a test that reads
// the team's shared folder beside it (or any absolute path of a developer's
// machine) passes here and
// fails for everyone else.
//
// Every string literal of every Go file is resolved against its package's
// folder (where `go test` runs) and, for the harnesses under bench/, against
// the module root too (where `go run ./bench/...` runs); leaving the module
// is a failure. The shell scripts and the justfile are read as text.
func TestNothingReadsOutsideTheModule(t *testing.T) {
	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") && name != ".ci" || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			// A nested module is its own repository root as far as `go test`
			// is concerned, but it is still inside this one: keep walking.
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		switch {
		case rel == "module_test.go":
			// The checker's own table of paths that leave.
		case strings.HasSuffix(path, ".go"):
			bad = append(bad, goLiteralsLeaving(t, root, path, rel)...)
		case strings.HasSuffix(path, ".sh") || rel == filepath.Join(".ci", "run") || rel == "justfile":
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for i, line := range strings.Split(string(b), "\n") {
				if leavesByText(line) {
					bad = append(bad, rel+":"+strconv.Itoa(i+1)+": "+strings.TrimSpace(line))
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bad {
		t.Errorf("names a path outside the repository: %s", b)
	}
}

// sharedDir is the team's folder beside the repository, spelt in two
// pieces so that this file does not itself name what it forbids.
const sharedDir = ".." + "/shared"

// leavesByText reports lines of scripts that name the team's shared folder
// or a developer's work tree.
func leavesByText(line string) bool {
	if strings.HasPrefix(strings.TrimSpace(line), "#") {
		return false
	}
	return strings.Contains(line, sharedDir) || strings.Contains(line, "/work/")
}

func goLiteralsLeaving(t *testing.T, root, path, rel string) []string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatalf("parse %s: %v", rel, err)
	}
	dir := filepath.Dir(path)
	var bad []string
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil || strings.ContainsAny(s, "\n") {
			return true
		}
		if pathLeaves(root, dir, s) || strings.HasPrefix(rel, "bench"+string(filepath.Separator)) && pathLeaves(root, root, s) {
			bad = append(bad, rel+":"+strconv.Itoa(fset.Position(lit.Pos()).Line)+": "+lit.Value)
		}
		return true
	})
	return bad
}

// pathLeaves reports whether s, read as a file path from dir, leaves root;
// and whether it is an absolute path into a developer's work tree or names
// the shared fixtures.
func pathLeaves(root, dir, s string) bool {
	if strings.Contains(s, "shared/fixtures") || strings.HasPrefix(s, "/work/") {
		return true
	}
	if filepath.IsAbs(s) || !strings.Contains(s, "..") {
		return false
	}
	p := filepath.Clean(filepath.Join(dir, s))
	r, err := filepath.Rel(root, p)
	return err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator))
}

// The checker itself must catch what it is for.
func TestPathLeaves(t *testing.T) {
	root := "/repo"
	for _, c := range []struct {
		dir, s string
		want   bool
	}{
		{"/repo/store/supabase", "../../" + sharedDir + "/fixtures/supabase/", true},
		{"/repo/bench/import", sharedDir + "/fixtures/supabase", true},
		{"/repo", sharedDir, true},
		{"/repo/store/backup", "../etc/passwd", false},
		{"/repo/cmd/vectabase", "/work/shared/fixtures/supabase/sample.sql", true},
		{"/repo/cmd/vectabase", "../..", false},
		{"/repo/cmd/vectabase", "../../migrations", false},
		{"/repo/cmd/vectabase", "../../..", true},
		{"/repo/store", "testdata/x.sql", false},
		{"/repo/store", "/usr/lib/postgresql", false},
		{"/repo/store", "a..b", false},
	} {
		if got := pathLeaves(root, c.dir, c.s); got != c.want {
			t.Errorf("pathLeaves(%q, %q) = %v, want %v", c.dir, c.s, got, c.want)
		}
	}
}
