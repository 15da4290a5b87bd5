// Package pinnedbin builds a pinned version of a Go command for tests (the
// API doubles the tests run against: stripe-mock, local-kms) with
// `go install` the first time any test on the machine needs it, into the
// user's cache directory, and reuses it from there in every later test
// process. A file lock keeps test processes that start together (go test
// ./... runs packages in parallel) from building it twice or running a
// half-written binary.
package pinnedbin

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// BuildTimeout bounds one `go install` (download and compile on a slow,
// busy machine).
const BuildTimeout = 8 * time.Minute

// Tool names one pinned Go command.
type Tool struct {
	// Module is the package path given to go install, e.g.
	// "github.com/stripe/stripe-mock".
	Module string
	// Version is the module version, a tag or a pseudo-version.
	Version string
	// Name is the binary's name (the last element of Module).
	Name string
}

// CacheDir is where the pinned binary lives:
// <os.UserCacheDir()>/vectabase/<Name>-<Version> (the system's temporary
// directory stands in when there is no user cache directory).
func (t Tool) CacheDir() string {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "vectabase", t.Name+"-"+t.Version)
}

// Build returns the path of the pinned binary, installing it into
// CacheDir first when this machine has none yet.
func (t Tool) Build() (string, error) { return t.BuildIn(t.CacheDir()) }

// BuildIn installs the pinned binary into dir unless it is there, under an
// exclusive lock on dir/lock. The binary is built into a private folder and
// renamed into place, so it appears whole or not at all.
func (t Tool) BuildIn(dir string) (string, error) {
	bin := filepath.Join(dir, t.Name)
	if isExecutable(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing the file unlocks too
	// Another process may have built it while this one waited.
	if isExecutable(bin) {
		return bin, nil
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("the go command is not on PATH")
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command(goTool, "install", t.Module+"@"+t.Version)
	// Outside any module or workspace, with flags of the caller's (such as
	// -mod=vendor) that `go install pkg@version` refuses left out.
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOWORK=off", "GOFLAGS=", "CGO_ENABLED=0")
	out, err := RunWithin(cmd, BuildTimeout)
	if err != nil {
		return "", fmt.Errorf("go install %s@%s: %v: %s", t.Module, t.Version, err, lastLine(out))
	}
	if err := os.Rename(filepath.Join(tmp, t.Name), bin); err != nil {
		return "", err
	}
	return bin, nil
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// RunWithin runs cmd, collecting its output, and kills it after d.
func RunWithin(cmd *exec.Cmd, d time.Duration) (string, error) {
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(d):
		_ = cmd.Process.Kill()
		<-done
		return out.String(), fmt.Errorf("still running after %v", d)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
