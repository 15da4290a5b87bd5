package pgcluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestReapThrowawaysRemovesOnlyOrphans(t *testing.T) {
	root := t.TempDir()
	mk := func(name string, owned bool) string {
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
			t.Fatal(err)
		}
		if owned {
			if err := os.WriteFile(filepath.Join(dir, ownerFile), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	// live: its owner (this test) holds the lock; orphan: nobody does, as
	// after its owner died.
	live := mk(throwawayPrefix+"live", false)
	lock, err := lockOwner(live)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	orphan := mk(throwawayPrefix+"orphan", true)
	legacyOld := mk(throwawayPrefix+"legacyold", false)
	old := time.Now().Add(-2 * legacyOrphanAge)
	if err := os.Chtimes(legacyOld, old, old); err != nil {
		t.Fatal(err)
	}
	legacyNew := mk(throwawayPrefix+"legacynew", false)
	other := mk("someone-else", true)

	if n := ReapThrowaways(context.Background(), root); n != 2 {
		t.Errorf("ReapThrowaways = %d, want 2 (the unlocked and the old legacy directory)", n)
	}
	for dir, want := range map[string]bool{live: true, orphan: false, legacyOld: false, legacyNew: true, other: true} {
		_, err := os.Stat(dir)
		if got := err == nil; got != want {
			t.Errorf("%s exists = %v, want %v", filepath.Base(dir), got, want)
		}
	}
}

// A test process killed while its cluster runs (go test -timeout, SIGKILL)
// leaves the server running; the next StartThrowaway's reaping stops it
// and removes its directory.
func TestReapThrowawaysStopsTheServerOfAKilledProcess(t *testing.T) {
	if os.Getenv("PGCLUSTER_REAP_CHILD") == "1" {
		c, _, err := StartThrowaway(context.Background(), nil)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Printf("port %d dir %s\n", c.Port, filepath.Dir(c.DataDir))
		time.Sleep(time.Minute) // killed before this ends
		os.Exit(0)
	}
	if _, err := FindBinDir(); err != nil {
		t.Skip("no PostgreSQL server binaries:", err)
	}
	// The postgres user must reach the clusters' parent (t.TempDir is 0700).
	root, err := os.MkdirTemp("", "pgcluster-reap-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReapThrowawaysStopsTheServerOfAKilledProcess$")
	cmd.Env = append(os.Environ(), "PGCLUSTER_REAP_CHILD=1", "TMPDIR="+root)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var port int
	var dir string
	buf := make([]byte, 4096)
	n, _ := out.Read(buf)
	if _, err := fmt.Sscanf(strings.TrimSpace(string(buf[:n])), "port %d dir %s", &port, &dir); err != nil {
		_ = cmd.Process.Kill()
		t.Fatalf("child said %q: %v", buf[:n], err)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err != nil {
		t.Fatalf("the killed process's server is not running (%v): nothing to reap", err)
	} else {
		c.Close()
	}

	if n := ReapThrowaways(context.Background(), root); n != 1 {
		t.Errorf("ReapThrowaways = %d, want 1", n)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still there after reaping (%v)", dir, err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("a server still listens on %s after reaping", addr)
	}
}
