package benchenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/vectabase/vectabase/keyring/local"
)

// Serve is a `vectabase serve` process a harness runs against, in its own
// process as in production (so its RSS, CPU and goroutines are its own).
type Serve struct {
	cmd     *exec.Cmd
	Base    string // http://127.0.0.1:port of the API
	Metrics string // the metrics listener's /metrics URL
	done    chan struct{}
	stderr  *bytes.Buffer
}

// BuildBinary builds ./cmd/vectabase into dir (run from the repository
// root) and returns its path.
func BuildBinary(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "vectabase")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/vectabase").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build: %v\n%s", err, out)
	}
	return bin, nil
}

// StartServe starts `bin serve --migrate` in dir on free loopback ports,
// with env added to a minimal environment, and waits (at most 60 s) for
// /readyz.
func StartServe(ctx context.Context, bin, dir string, env []string) (*Serve, error) {
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	metricsAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "--migrate")
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "HTTP_ADDR=" + httpAddr, "METRICS_ADDR=" + metricsAddr}, env...)
	s := &Serve{cmd: cmd, Base: "http://" + httpAddr, Metrics: "http://" + metricsAddr + "/metrics", done: make(chan struct{}), stderr: &bytes.Buffer{}}
	// The server logs every request (through its redactor, as in
	// production); keep the first MiB for diagnosis.
	cmd.Stderr = &limitedWriter{w: s.stderr, n: 1 << 20}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(s.Base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s, nil
			}
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("serve exited:\n%s", s.stderr.String())
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	s.Stop()
	return nil, errors.New("serve not ready within 60 s")
}

// PID is the server's process id.
func (s *Serve) PID() int { return s.cmd.Process.Pid }

// Stop interrupts the server (as Ctrl-C) and kills it after 30 s.
func (s *Serve) Stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Login signs in with a password and returns the access token.
func Login(ctx context.Context, c *http.Client, base, email, password string) (string, error) {
	body, _ := json.Marshal(map[string]string{"email": email, "password": password})
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/api/auth/login", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || out.Token == "" {
		return "", fmt.Errorf("login = %d (%v)", resp.StatusCode, err)
	}
	return out.Token, nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// limitedWriter keeps the first n bytes written and drops the rest.
type limitedWriter struct {
	mu sync.Mutex
	w  io.Writer
	n  int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n > 0 {
		k := min(len(p), l.n)
		_, _ = l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

// Booted is a `vectabase serve` on its own database (DATABASE_URL's, or a
// throwaway cluster) with a fresh local master key: what a harness that
// drives one server needs.
type Booted struct {
	*Serve
	DatabaseURL string
	stop        []func()
}

// Close stops the server, removes its folder and stops the database.
func (b *Booted) Close() {
	for i := len(b.stop) - 1; i >= 0; i-- {
		b.stop[i]()
	}
}

// Boot builds ./cmd/vectabase into a temporary folder named after name,
// makes a local master key there and starts `serve` on the harness's
// database (Database), with env added to DATABASE_URL and
// KEYRING_MASTER_KEY_FILE. The caller closes what it returns.
func Boot(ctx context.Context, name string, env ...string) (b *Booted, err error) {
	b = &Booted{}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	dbURL, stopDB, err := Database(ctx)
	if err != nil {
		return nil, err
	}
	b.DatabaseURL, b.stop = dbURL, append(b.stop, stopDB)
	tmp, err := os.MkdirTemp("", "vectabase-"+name+"-")
	if err != nil {
		return nil, err
	}
	b.stop = append(b.stop, func() { _ = os.RemoveAll(tmp) })
	bin, err := BuildBinary(ctx, tmp)
	if err != nil {
		return nil, err
	}
	keyFile := filepath.Join(tmp, "master.key")
	if err := local.GenerateKeyFile(keyFile); err != nil {
		return nil, err
	}
	srv, err := StartServe(ctx, bin, tmp, append([]string{"DATABASE_URL=" + dbURL, "KEYRING_MASTER_KEY_FILE=" + keyFile}, env...))
	if err != nil {
		return nil, err
	}
	b.Serve, b.stop = srv, append(b.stop, srv.Stop)
	return b, nil
}

// ServeApp serves app on a free loopback port, for a baseline handler
// beside the real one, and returns its base URL and how to stop it.
func ServeApp(app *fiber.App) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	go func() { _ = app.Listener(ln) }()
	return "http://" + ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = app.ShutdownWithContext(ctx)
	}, nil
}
