package backup

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/vectabase/vectabase/store/pgcluster"
)

// libpqParams are the URL query parameters libpq understands. pgx accepts
// more (pool_max_conns, statement_cache_capacity, ...) that would make
// pg_dump refuse the URL, so only these are passed on.
var libpqParams = map[string]bool{
	"host": true, "hostaddr": true, "port": true, "dbname": true, "user": true,
	"connect_timeout": true, "client_encoding": true, "options": true,
	"application_name": true, "fallback_application_name": true,
	"keepalives": true, "keepalives_idle": true, "keepalives_interval": true,
	"keepalives_count": true, "tcp_user_timeout": true, "sslmode": true,
	"sslcompression": true, "sslcert": true, "sslkey": true, "sslrootcert": true,
	"sslcrl": true, "sslcrldir": true, "sslsni": true, "requirepeer": true,
	"ssl_min_protocol_version": true, "ssl_max_protocol_version": true,
	"gssencmode": true, "krbsrvname": true, "gsslib": true, "service": true,
	"target_session_attrs": true, "load_balance_hosts": true,
	"channel_binding": true, "require_auth": true, "sslnegotiation": true,
}

// conn is a database as the PostgreSQL command-line tools reach it: a URL
// without the password, which goes in PGPASSWORD so that it never shows in
// the process list.
type conn struct {
	url      url.URL
	password string
}

func parseConn(raw string) (conn, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return conn{}, fmt.Errorf("backup: the direct database connection must be a postgres:// URL")
	}
	c := conn{url: *u}
	if u.User != nil {
		c.password, _ = u.User.Password()
		c.url.User = url.User(u.User.Username())
	}
	q := url.Values{}
	for k, v := range u.Query() {
		switch {
		case k == "password":
			c.password = v[0]
		case libpqParams[k]:
			q[k] = v
		}
	}
	c.url.RawQuery = q.Encode()
	return c, nil
}

// database is the same server with another database name.
func (c conn) database(name string) conn {
	c.url.Path = "/" + name
	return c
}

// pgxURL is the URL with its password, for pgx.
func (c conn) pgxURL() string {
	u := c.url
	if c.password != "" {
		u.User = url.UserPassword(u.User.Username(), c.password)
	}
	return u.String()
}

func (c conn) dbname() string { return strings.TrimPrefix(c.url.Path, "/") }

// tools finds pg_dump, pg_restore and psql: beside the server binaries
// (pgcluster.FindBinDir), else on PATH.
type tools struct{ dir string }

func findTools(dir string) (tools, error) {
	if dir == "" {
		if d, err := pgcluster.FindBinDir(); err == nil {
			dir = d
		}
	}
	if dir == "" {
		p, err := exec.LookPath("pg_dump")
		if err != nil {
			return tools{}, fmt.Errorf("backup: pg_dump not found (looked beside the PostgreSQL server binaries and on PATH); install the PostgreSQL client tools")
		}
		dir = filepath.Dir(p)
	}
	for _, b := range []string{"pg_dump", "pg_restore", "psql"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return tools{}, fmt.Errorf("backup: %s not found in %s; install the PostgreSQL client tools", b, dir)
		}
	}
	return tools{dir: dir}, nil
}

// command builds a tool's command for database c. The password travels in
// the environment, never on the command line.
// A nil c runs the tool without a database (pg_restore writing SQL).
func (t tools) command(name string, c *conn, args ...string) (*exec.Cmd, *stderrTail) {
	if c != nil {
		args = append(args, "--no-password", "--dbname="+c.url.String())
	}
	cmd := exec.Command(filepath.Join(t.dir, name), args...)
	// The operator's PG* variables (PGSSLROOTCERT, a PGPASSWORD for a URL
	// without one) still apply; the URL's own parts win over them, and a
	// password from the URL comes last so it wins too.
	env := os.Environ()
	if c != nil && c.password != "" {
		env = append(env, "PGPASSWORD="+c.password)
	}
	cmd.Env = env
	tail := &stderrTail{tool: name}
	cmd.Stderr = tail
	return cmd, tail
}

// stderrTail keeps the first error line a tool printed. Only that line is
// ever shown: DETAIL, CONTEXT and "Command was" lines can quote row data.
type stderrTail struct {
	tool string
	mu   sync.Mutex
	buf  bytes.Buffer
}

func (s *stderrTail) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.buf.Len() < 64<<10 {
		s.buf.Write(p)
	}
	return len(p), nil
}

// err describes how the tool failed, from its first error line.
func (s *stderrTail) err(runErr error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	line := ""
	for _, l := range strings.Split(s.buf.String(), "\n") {
		if strings.Contains(l, "ERROR:") || strings.Contains(l, "FATAL:") || strings.Contains(l, "error:") {
			line = strings.TrimSpace(l)
			break
		}
	}
	if len(line) > 300 {
		line = line[:300] + "..."
	}
	if line == "" {
		return fmt.Errorf("%s failed: %v", s.tool, runErr)
	}
	return fmt.Errorf("%s failed: %s", s.tool, line)
}
