// Package pgcluster runs a private PostgreSQL cluster from the system's
// server binaries: the embedded default of `vectabase dev` and the throwaway
// clusters of the test harness. As root it runs the binaries as the
// `postgres` user, since initdb and postgres refuse to run as root.
package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Cluster is one PostgreSQL data directory and the server serving it on
// 127.0.0.1:Port. The superuser is "postgres" with trust authentication on
// loopback only.
type Cluster struct {
	DataDir string
	Port    int
	// Password, when set, is the superuser's password: initdb then sets
	// scram-sha-256 authentication instead of trust.
	Password string
	// Settings are extra server settings passed as -c name=value.
	Settings map[string]string

	binDir string
	cred   *syscall.Credential // run as this user (set when we are root)
}

// FindBinDir locates the PostgreSQL server binaries: pg_ctl on PATH, then
// `pg_config --bindir`, then the newest /usr/lib/postgresql/*/bin.
func FindBinDir() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if hasServer(dir) {
			return dir, nil
		}
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if hasServer(dir) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, dir := range dirs {
		if hasServer(dir) {
			return dir, nil
		}
	}
	return "", errors.New("pgcluster: PostgreSQL server binaries not found (looked for pg_ctl on PATH, pg_config --bindir, /usr/lib/postgresql/*/bin); install PostgreSQL (e.g. apt-get install postgresql) or set DATABASE_URL")
}

func pgMajor(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

func hasServer(dir string) bool {
	for _, b := range []string{"pg_ctl", "initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return false
		}
	}
	return true
}

// New prepares a cluster in dataDir (not yet created or started).
func New(dataDir string, port int) (*Cluster, error) {
	bin, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	c := &Cluster{DataDir: abs, Port: port, binDir: bin, Settings: map[string]string{}}
	if os.Geteuid() == 0 {
		u, err := postgresUser()
		if err != nil {
			return nil, err
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	return c, nil
}

// Initialized reports whether the data directory holds a cluster.
func (c *Cluster) Initialized() bool {
	_, err := os.Stat(filepath.Join(c.DataDir, "PG_VERSION"))
	return err == nil
}

// Init creates the cluster with initdb.
func (c *Cluster) Init(ctx context.Context) error {
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return fmt.Errorf("pgcluster: create %s: %w", c.DataDir, err)
	}
	if err := c.chown(c.DataDir); err != nil {
		return err
	}
	args := []string{"-D", c.DataDir, "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"}
	if c.Password != "" {
		// initdb wants an empty data directory: the password file sits
		// beside it, readable by the server's user only.
		pw, err := os.CreateTemp(filepath.Dir(c.DataDir), ".pgpw-")
		if err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
		tmp := pw.Name()
		defer os.Remove(tmp)
		_, werr := pw.WriteString(c.Password + "\n")
		pw.Close()
		if werr != nil {
			return fmt.Errorf("pgcluster: %w", werr)
		}
		if err := c.chown(tmp); err != nil {
			return err
		}
		args = append(args, "--auth=scram-sha-256", "--pwfile="+tmp)
	} else {
		args = append(args, "--auth=trust")
	}
	if _, err := c.run(ctx, "initdb", args...); err != nil {
		// A half-made cluster would be taken for a made one next time.
		entries, _ := os.ReadDir(c.DataDir)
		for _, e := range entries {
			_ = os.RemoveAll(filepath.Join(c.DataDir, e.Name()))
		}
		return err
	}
	return nil
}

// Start starts the server and waits until it accepts connections.
func (c *Cluster) Start(ctx context.Context) error {
	opts := []string{
		"-p " + strconv.Itoa(c.Port),
		"-c listen_addresses=127.0.0.1",
		"-c unix_socket_directories=''",
	}
	keys := make([]string, 0, len(c.Settings))
	for k := range c.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		opts = append(opts, fmt.Sprintf("-c %s=%s", k, c.Settings[k]))
	}
	logFile := filepath.Join(c.DataDir, "server.log")
	_, err := c.run(ctx, "pg_ctl", "-D", c.DataDir, "-l", logFile, "-o", strings.Join(opts, " "), "-w", "-t", "60", "start")
	if err != nil {
		return fmt.Errorf("%w (server log: %s)", err, logFile)
	}
	return nil
}

// Running reports whether a server is running on the data directory.
func (c *Cluster) Running(ctx context.Context) bool {
	_, err := c.run(ctx, "pg_ctl", "-D", c.DataDir, "status")
	return err == nil
}

// Stop stops the server (fast shutdown: sessions are disconnected, work is
// not lost) and waits for it to exit.
func (c *Cluster) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := c.run(ctx, "pg_ctl", "-D", c.DataDir, "-m", "fast", "-w", "stop")
	return err
}

// URL is the connection URL of database name as the superuser.
func (c *Cluster) URL(name string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     "127.0.0.1:" + strconv.Itoa(c.Port),
		Path:     "/" + name,
		RawQuery: "sslmode=disable",
	}
	if c.Password != "" {
		u.User = url.UserPassword("postgres", c.Password)
	}
	return u.String()
}

// BinDir is where the server binaries were found (pg_dump lives there too).
func (c *Cluster) BinDir() string { return c.binDir }

func (c *Cluster) chown(path string) error {
	if c.cred == nil {
		return nil
	}
	if err := os.Chown(path, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
		return fmt.Errorf("pgcluster: chown %s to postgres: %w", path, err)
	}
	return nil
}

func (c *Cluster) run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, name), args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.Dir = c.DataDir
	if _, err := os.Stat(cmd.Dir); err != nil {
		cmd.Dir = "/"
	}
	// Keep our own process group's signals (Ctrl-C) away from the server, so
	// that we stop it in order instead of it dying under us.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if c.cred != nil {
		cmd.SysProcAttr.Credential = c.cred
		cmd.Env = append(os.Environ(), "HOME="+c.DataDir)
	}
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if i := strings.LastIndex(msg, "\n"); i >= 0 && len(msg) > 400 {
			msg = msg[i+1:]
		}
		return out.String(), fmt.Errorf("pgcluster: %s: %v: %s", name, err, msg)
	}
	return out.String(), nil
}

// FreePort asks the kernel for a free loopback TCP port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgcluster: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// PortFree reports whether port is free on 127.0.0.1.
func PortFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// PrepareParent makes sure the postgres user can reach dir: when running as
// root, a private temp directory must be owned by postgres.
func (c *Cluster) PrepareParent(dir string) error { return c.chown(dir) }

// postgresUser looks up the user the server runs as when we are root.
func postgresUser() (*user.User, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, errors.New("pgcluster: no `postgres` user to run PostgreSQL as (PostgreSQL refuses to run as root)")
	}
	return u, nil
}

// PostgresHome is the postgres user's home directory.
func PostgresHome() (string, error) {
	u, err := postgresUser()
	if err != nil {
		return "", err
	}
	if u.HomeDir == "" || u.HomeDir == "/" {
		return "", errors.New("pgcluster: the postgres user has no home directory")
	}
	return u.HomeDir, nil
}

// Reachable reports whether the postgres user can traverse every directory
// from / down to dir (search permission on each).
func Reachable(dir string) bool {
	u, err := postgresUser()
	if err != nil {
		return false
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return false
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return false
		}
		mode := fi.Mode().Perm()
		var can bool
		switch {
		case int(st.Uid) == uid:
			can = mode&0o100 != 0
		case int(st.Gid) == gid:
			can = mode&0o010 != 0
		default:
			can = mode&0o001 != 0
		}
		if !can {
			return false
		}
		if d == "/" || d == "." {
			return true
		}
	}
}

// ChownToPostgres gives path to the postgres user (when we are root).
func ChownToPostgres(path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := postgresUser()
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(path, uid, gid); err != nil {
		return fmt.Errorf("pgcluster: chown %s to postgres: %w", path, err)
	}
	return nil
}

// NoDurability are server settings for clusters whose data does not need to
// survive a crash (tests, benchmarks): they make writes much cheaper.
func NoDurability() map[string]string {
	return map[string]string{"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
}

// StartThrowaway creates and starts a cluster in a new temporary directory
// with the given settings on top of NoDurability. stop stops the server and
// removes the directory.
//
// Clusters an earlier process left behind when it died without stopping
// them are stopped and removed first (ReapThrowaways).
func StartThrowaway(ctx context.Context, settings map[string]string) (c *Cluster, stop func(), err error) {
	ReapThrowaways(ctx, os.TempDir())
	dir, err := os.MkdirTemp("", throwawayPrefix)
	if err != nil {
		return nil, nil, fmt.Errorf("pgcluster: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	owner, err := lockOwner(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("pgcluster: %w", err)
	}
	defer func() {
		if err != nil {
			owner.Close()
		}
	}()
	port, err := FreePort()
	if err != nil {
		return nil, nil, err
	}
	c, err = New(filepath.Join(dir, "data"), port)
	if err != nil {
		return nil, nil, err
	}
	if err := c.PrepareParent(dir); err != nil {
		return nil, nil, err
	}
	c.Settings = NoDurability()
	for k, v := range settings {
		c.Settings[k] = v
	}
	if err := c.Init(ctx); err != nil {
		return nil, nil, err
	}
	if err := c.Start(ctx); err != nil {
		return nil, nil, err
	}
	return c, func() {
		_ = c.Stop()
		_ = os.RemoveAll(dir)
		owner.Close()
	}, nil
}
