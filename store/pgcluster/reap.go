package pgcluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Throwaway clusters live in directories named throwawayPrefix+random under
// the system's temporary directory. The process that made one holds an
// exclusive flock on its ownerFile for as long as it lives; the kernel
// drops the lock when the process dies, however it dies, whatever its pid
// namespace. A process that dies without stopping its cluster (a test
// binary killed by `go test -timeout`, SIGKILL, a crash) leaves the server
// running and its directory behind; the next StartThrowaway on the machine
// finds the lock free, stops the server and removes the directory.
const (
	throwawayPrefix = "vectabase-pg-"
	ownerFile       = "owner.lock"
	// legacyOrphanAge: a directory without ownerFile (made before it
	// existed) is taken for an orphan once this old.
	legacyOrphanAge = time.Hour
)

// lockOwner makes this process dir's owner until the returned file is
// closed (or the process ends).
func lockOwner(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, ownerFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
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

// orphaned reports whether the throwaway cluster in dir has lost its
// owner: its owner lock is free (taking it briefly to know), or, for a
// directory from before owner locks, it is older than legacyOrphanAge.
func orphaned(dir string) bool {
	f, err := os.Open(filepath.Join(dir, ownerFile))
	if errors.Is(err, os.ErrNotExist) {
		info, err := os.Stat(dir)
		return err == nil && time.Since(info.ModTime()) > legacyOrphanAge
	}
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return false // held: its owner lives
	}
	return true // closing f releases the lock
}
