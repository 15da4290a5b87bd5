package pgcluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Throwaway clusters live in directories named throwawayPrefix+random under
// the system's temporary directory, with the id of the process that made
// them in ownerFile. A process that dies without stopping its cluster (a
// test binary killed by `go test -timeout`, SIGKILL, a crash) leaves the
// server running and its directory behind; the next StartThrowaway on the
// machine stops the server and removes the directory.
const (
	throwawayPrefix = "vectabase-pg-"
	ownerFile       = "owner.pid"
	// legacyOrphanAge: a directory without ownerFile (made before it
	// existed) is taken for an orphan once this old.
	legacyOrphanAge = time.Hour
)

// writeOwner records this process as dir's owner.
func writeOwner(dir string) error {
	return os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
}

// ReapThrowaways stops the servers of throwaway clusters under root whose
// owning process is gone and removes their directories; it returns how
// many it removed. Clusters of live processes (other test binaries running
// now) are left alone. Errors are skipped: reaping is best effort.
func ReapThrowaways(ctx context.Context, root string) int {
	entries, err := os.ReadDir(root)
	if err != nil {
		return 0
	}
	reaped := 0
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), throwawayPrefix) {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if !orphaned(dir) {
			continue
		}
		data := filepath.Join(dir, "data")
		if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err == nil {
			if c, err := New(data, 0); err == nil {
				sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				// Immediate: nothing in a throwaway cluster is worth a
				// checkpoint.
				_, _ = c.run(sctx, "pg_ctl", "-D", c.DataDir, "-m", "immediate", "-w", "stop")
				cancel()
			}
		}
		if os.RemoveAll(dir) == nil {
			reaped++
		}
	}
	return reaped
}

// orphaned reports whether the throwaway cluster in dir has lost its owner.
func orphaned(dir string) bool {
	raw, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if errors.Is(err, os.ErrNotExist) {
		info, err := os.Stat(dir)
		return err == nil && time.Since(info.ModTime()) > legacyOrphanAge
	}
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 0 {
		return false
	}
	return !alive(pid)
}

// alive reports whether a process with id pid exists (one we may not
// signal counts: it exists).
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
