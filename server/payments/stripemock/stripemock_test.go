package stripemock

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeGo puts a `go` on PATH (and nothing else) that records each call in
// calls and, unless fail, "installs" a stripe-mock script into $GOBIN.
func fakeGo(t *testing.T, fail bool) (calls string) {
	t.Helper()
	bin := t.TempDir()
	calls = filepath.Join(t.TempDir(), "calls")
	body := `#!/bin/sh
echo "$@" >> "` + calls + `"
sleep 0.3
`
	if fail {
		body += "echo 'go: module lookup disabled' >&2\nexit 1\n"
	} else {
		body += "printf '#!/bin/sh\\necho stripe-mock\\n' > \"$GOBIN/stripe-mock\"\nchmod 755 \"$GOBIN/stripe-mock\"\n"
	}
	if err := os.WriteFile(filepath.Join(bin, "go"), []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":/usr/bin:/bin") // the shell tools, and no stripe-mock
	return calls
}

// Test processes that need stripe-mock at the same moment build it once:
// the others wait on the lock and find the finished binary.
func TestBuildRunsOnceUnderTheLock(t *testing.T) {
	calls := fakeGo(t, false)
	dir := filepath.Join(t.TempDir(), "cache")
	var wg sync.WaitGroup
	paths := make([]string, 4)
	errs := make([]error, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths[i], errs[i] = build(dir)
		}()
	}
	wg.Wait()
	for i := range 4 {
		if errs[i] != nil || paths[i] != filepath.Join(dir, "stripe-mock") {
			t.Errorf("build #%d = %q, %v; want %s/stripe-mock, nil", i, paths[i], errs[i], dir)
		}
	}
	raw, _ := os.ReadFile(calls)
	if got := strings.Count(string(raw), "\n"); got != 1 {
		t.Fatalf("go ran %d times (%q), want once", got, raw)
	}
	if !strings.Contains(string(raw), "install "+Module+"@"+Version) {
		t.Errorf("go was called as %q, want install %s@%s", raw, Module, Version)
	}
	// A later process finds it cached and runs nothing.
	if _, err := build(dir); err != nil {
		t.Fatal(err)
	}
	if raw2, _ := os.ReadFile(calls); string(raw2) != string(raw) {
		t.Errorf("a cached binary was built again: %q", raw2)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "build-*"))
	if len(left) != 0 {
		t.Errorf("build folders left behind: %v", left)
	}
}

// When stripe-mock cannot be built, the test asking for it is skipped with
// the reason, and the count of skipped tests is kept for Close's line.
func TestSharedSkipsWithTheReason(t *testing.T) {
	fakeGo(t, true)
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("HOME", t.TempDir())
	var s Shared
	for i := range 2 {
		skipped := false
		t.Run("needs stripe-mock", func(t *testing.T) {
			t.Cleanup(func() { skipped = t.Skipped() })
			s.URL(t)
			t.Error("URL returned without stripe-mock")
		})
		if !skipped {
			t.Errorf("test #%d was not skipped", i)
		}
	}
	if s.skipped != 2 {
		t.Errorf("skipped = %d, want 2", s.skipped)
	}
	if s.err == nil || !strings.Contains(s.err.Error(), "module lookup disabled") || !strings.Contains(s.err.Error(), "none is on PATH") {
		t.Errorf("err = %v, want the build's failure and that none is on PATH", s.err)
	}
	s.Close()
}

// When the pinned version cannot be built, a stripe-mock on PATH is used.
func TestBinaryFallsBackToPATH(t *testing.T) {
	fakeGo(t, true)
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	onPath := t.TempDir()
	bin := filepath.Join(onPath, "stripe-mock")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", os.Getenv("PATH")+":"+onPath)
	if got, err := Binary(); err != nil || got != bin {
		t.Fatalf("Binary() = %q, %v; want %s", got, err, bin)
	}
}
