// Package stripemock runs stripe-mock, Stripe's own API double, for tests.
// The pinned version is built from source with `go install` the first time
// any test on the machine needs it, into the user's cache directory, and
// reused from there by every later test process; a file lock keeps test
// processes that start together (go test ./... runs packages in parallel)
// from building it twice or running a half-written binary.
//
// Use one Shared per test package:
//
//	var mock stripemock.Shared
//
//	func TestMain(m *testing.M) { pgtest.Main(m, mock.Close) }
//
//	func TestX(t *testing.T) { base := mock.URL(t) ... }
//
// Only when stripe-mock can be neither built nor found on PATH does a test
// skip, saying why, and Close prints one line counting the skipped tests.
package stripemock

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vectabase/vectabase/internal/pinnedbin"
)

// Module and Version name the stripe-mock the tests are written against.
const (
	Module  = "github.com/stripe/stripe-mock"
	Version = "v0.203.0"
)

// startTimeout bounds stripe-mock's start.
const startTimeout = 60 * time.Second

var tool = pinnedbin.Tool{Module: Module, Version: Version, Name: "stripe-mock"}

// CacheDir is where the pinned binary lives:
// <os.UserCacheDir()>/vectabase/stripe-mock-<Version> (the system's
// temporary directory stands in when there is no user cache directory).
func CacheDir() string { return tool.CacheDir() }

// Binary returns the path of the pinned stripe-mock, building it first when
// this machine has none yet. When it cannot be built, a stripe-mock on PATH
// is used instead; the error says why neither was possible.
func Binary() (string, error) {
	bin, buildErr := build(CacheDir())
	if buildErr == nil {
		return bin, nil
	}
	if p, err := exec.LookPath("stripe-mock"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("stripe-mock %s could not be built (%v) and none is on PATH", Version, buildErr)
}

// build installs the pinned stripe-mock into dir (see pinnedbin).
func build(dir string) (string, error) { return tool.BuildIn(dir) }

// Server is a running stripe-mock on a loopback port the system chose.
type Server struct {
	// URL is the HTTP base URL, for STRIPE_API_BASE.
	URL  string
	cmd  *exec.Cmd
	done chan struct{}
}

// Start builds (if needed) and starts stripe-mock, and returns once it
// listens.
func Start() (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-http-addr", "127.0.0.1:", "-https-addr", "127.0.0.1:")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &Server{cmd: cmd, done: make(chan struct{})}
	found := make(chan string, 1)
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(out)
		const prefix = "Listening for HTTP at address: "
		sent := false
		for sc.Scan() {
			if line := sc.Text(); !sent && strings.HasPrefix(line, prefix) {
				found <- "http://" + strings.TrimPrefix(line, prefix)
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case s.URL = <-found:
		return s, nil
	case <-s.done:
		_ = cmd.Wait()
		return nil, fmt.Errorf("%s exited before listening", bin)
	case <-time.After(startTimeout):
		s.Close()
		return nil, fmt.Errorf("%s did not listen within %v", bin, startTimeout)
	}
}

// Close stops the server.
func (s *Server) Close() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Shared is one stripe-mock for a test package, started by the first test
// that asks for it and stopped by Close (from TestMain).
type Shared struct {
	once    sync.Once
	srv     *Server
	err     error
	mu      sync.Mutex
	skipped int
}

// URL returns the shared stripe-mock's base URL, starting it on first use.
// When it cannot run, the test is skipped with the reason.
func (s *Shared) URL(t testing.TB) string {
	t.Helper()
	s.once.Do(func() { s.srv, s.err = Start() })
	if s.err != nil {
		s.mu.Lock()
		s.skipped++
		s.mu.Unlock()
		t.Skipf("stripe-mock is unavailable: %v", s.err)
	}
	return s.srv.URL
}

// Close stops the shared stripe-mock and, when tests were skipped for want
// of it, prints one line saying how many and why.
func (s *Shared) Close() {
	s.srv.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.skipped > 0 {
		fmt.Fprintf(os.Stderr, "stripemock: %d test(s) skipped: stripe-mock is unavailable: %v\n", s.skipped, s.err)
	}
}
