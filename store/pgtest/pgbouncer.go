package pgtest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/url"
	"os"
	osexec "os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vectabase/vectabase/store/pgcluster"
)

// PgBouncerBinary finds the pgbouncer executable: on PATH, or where
// Debian's package puts it. It returns "" when there is none.
func PgBouncerBinary() string {
	if p, err := osexec.LookPath("pgbouncer"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer", "/usr/local/bin/pgbouncer"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	return ""
}

// PgBouncer starts a PgBouncer in front of the database at directURL, for
// the test only, and returns the URL of the same database through it (the
// password "pgtest"). baseINI is a pgbouncer.ini whose [pgbouncer] settings
// are kept (pool_mode, pool sizes, auth_type, ...) except those that place
// it: listen address and port, files and the unix socket, which the
// harness sets; "" means transaction mode with PgBouncer's defaults. The
// test is skipped, saying why, when PgBouncer is not installed. PgBouncer
// refuses to run as root, so as root it runs as the postgres user. It is
// stopped when the test ends.
func PgBouncer(t testing.TB, directURL, baseINI string) string {
	t.Helper()
	bin := PgBouncerBinary()
	if bin == "" {
		t.Skip("pgbouncer is not installed (Debian: apt-get install pgbouncer; .ci/run installs it)")
	}
	target, err := url.Parse(directURL)
	if err != nil {
		t.Fatalf("pgtest: pgbouncer target: %v", err)
	}
	dir, err := os.MkdirTemp("", "pgtest-pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	port, err := pgcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	userName := target.User.Username()
	const password = "pgtest"
	ini := pgbouncerINI(baseINI, map[string]string{
		"listen_addr":     "127.0.0.1",
		"listen_port":     strconv.Itoa(port),
		"unix_socket_dir": "",
		"auth_file":       filepath.Join(dir, "userlist.txt"),
		"logfile":         "",
		"pidfile":         "",
		"admin_users":     userName,
	}, fmt.Sprintf("* = host=%s port=%s", target.Hostname(), target.Port()))
	if !strings.Contains(ini, "pool_mode") {
		ini = strings.Replace(ini, "[pgbouncer]\n", "[pgbouncer]\npool_mode = transaction\n", 1)
	}
	files := map[string]string{
		"pgbouncer.ini": ini,
		"userlist.txt":  fmt.Sprintf("%q %q\n", userName, password),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := osexec.Command(bin, filepath.Join(dir, "pgbouncer.ini"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("pgtest: pgbouncer refuses to run as root and there is no postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		for _, p := range []string{dir, filepath.Join(dir, "pgbouncer.ini"), filepath.Join(dir, "userlist.txt")} {
			if err := pgcluster.ChownToPostgres(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	var out syncWriter
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("pgtest: start pgbouncer: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-done:
			t.Fatalf("pgtest: pgbouncer exited at start:\n%s", out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgtest: pgbouncer not listening on %s within 20 s:\n%s", addr, out.String())
		}
	}
	pooled := *target
	pooled.Host = addr
	pooled.User = url.UserPassword(userName, password)
	return pooled.String()
}

// pgbouncerINI rewrites base: the [databases] section becomes databases,
// and each key of set replaces base's own (an empty value drops the key
// and so keeps PgBouncer's default).
func pgbouncerINI(base string, set map[string]string, databases string) string {
	var out strings.Builder
	out.WriteString("[databases]\n" + databases + "\n\n[pgbouncer]\n")
	for k, v := range set {
		if v != "" {
			fmt.Fprintf(&out, "%s = %s\n", k, v)
		}
	}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(base))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			section = strings.Trim(line, "[] ")
			continue
		}
		if section != "pgbouncer" || line == "" || strings.HasPrefix(line, ";") || strings.HasPrefix(line, "#") {
			continue
		}
		key, _, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if _, placed := set[strings.TrimSpace(key)]; placed {
			continue
		}
		out.WriteString(line + "\n")
	}
	return out.String()
}

// syncWriter collects a child's output for a failure message.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
