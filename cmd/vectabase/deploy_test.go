package main

import (
	"bufio"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/store/pgtest"
)

// deployDir is the repository's deploy/ folder, from this package's folder.
const deployDir = "../../deploy"

func readDeploy(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// unitDirectives parses a systemd unit into section -> key -> values (a key
// may repeat).
func unitDirectives(t *testing.T, text string) map[string]map[string][]string {
	t.Helper()
	out := map[string]map[string][]string{}
	section := ""
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("line %d %q is not Key=Value inside a section", i+1, line)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	return out
}

// The units carry what the issue asks of them, and systemd itself finds
// nothing to say about them (systemd-analyze verify, where installed),
// with ExecStart pointed at the binary the tests built.
func TestSystemdUnits(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"vectabase.service", "vectabase@.service"} {
		text := readDeploy(t, name)
		u := unitDirectives(t, text)
		svc := u["Service"]
		want := map[string]string{
			"NoNewPrivileges":       "yes",
			"ProtectSystem":         "strict",
			"PrivateTmp":            "yes",
			"CapabilityBoundingSet": "",
			"AmbientCapabilities":   "",
			"StateDirectory":        "vectabase",
			"User":                  "vectabase",
			"ExecStart":             "/usr/local/bin/vectabase serve",
		}
		for k, v := range want {
			if got := svc[k]; len(got) != 1 || got[0] != v {
				t.Errorf("%s: [Service] %s = %q, want exactly %q", name, k, got, v)
			}
		}
		if len(svc["MemoryMax"]) != 1 || svc["MemoryMax"][0] == "" {
			t.Errorf("%s: no MemoryMax", name)
		}
		if ef := svc["EnvironmentFile"]; len(ef) == 0 || ef[0] != "/etc/vectabase/vectabase.env" {
			t.Errorf("%s: EnvironmentFile = %q, want /etc/vectabase/vectabase.env first", name, ef)
		}
		// Whatever the server writes must be inside what the unit makes
		// writable: BACKUP_DIR of the env example is under the state dir.
		if !strings.Contains(readDeploy(t, "vectabase.env.example"), "BACKUP_DIR='/var/lib/vectabase/") {
			t.Errorf("the env example's BACKUP_DIR is not under StateDirectory /var/lib/vectabase")
		}

		sa, err := exec.LookPath("systemd-analyze")
		if err != nil {
			t.Logf("systemd-analyze not installed: %s checked by parsing only", name)
			continue
		}
		dir := t.TempDir()
		file := name
		if strings.Contains(name, "@") {
			file = strings.Replace(name, "@", "@1", 1)
		}
		if err := os.WriteFile(filepath.Join(dir, file), []byte(strings.ReplaceAll(text, "/usr/local/bin/vectabase", binary)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(sa, "verify", filepath.Join(dir, file)).CombinedOutput()
		// systemd-analyze exits 0 on unknown keys but says so: any output
		// is a finding.
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", name, err, out)
		}
	}
}

// systemdEnv reads an EnvironmentFile as systemd does, for the subset the
// example uses: comment lines, KEY=VALUE, a value in single or double
// quotes taken without them.
func systemdEnv(t *testing.T, text string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || !regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`).MatchString(k) {
			t.Fatalf("env example line %d %q is not NAME=value", i+1, line)
		}
		if len(v) >= 2 && (v[0] == '\'' || v[0] == '"') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		} else if strings.ContainsAny(v, "&;|<>$`\\\"' ") {
			t.Errorf("env example line %d: unquoted value with shell syntax: %q", i+1, line)
		}
		out[k] = v
	}
	return out
}

// The env example means the same to systemd and to a POSIX shell
// (`set -a; . file`), the two ways the README reads it.
func TestEnvExampleReadsTheSameInSystemdAndShell(t *testing.T) {
	t.Parallel()
	path, _ := filepath.Abs(filepath.Join(deployDir, "vectabase.env.example"))
	want := systemdEnv(t, readDeploy(t, "vectabase.env.example"))
	if len(want) < 5 {
		t.Fatalf("env example has %d variables", len(want))
	}
	cmd := exec.Command("sh", "-c", `set -eu; set -a; . "$1"; set +a; env`, "sh", path)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sh reading the env example: %v", err)
	}
	got := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		got[k] = v
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: systemd reads %q, sh reads %q", k, v, got[k])
		}
	}
	// Every variable is one the README documents.
	documented := readmeVariables(t)
	for k := range want {
		if !documented[k] {
			t.Errorf("the env example sets %s, which the README's table does not list", k)
		}
	}
	// And the binary accepts it as configuration.
	if _, err := parseConfig(want); err != nil {
		t.Errorf("parseConfig(env example) = %v", err)
	}
}

// readmeVariables are the variables named in the README's configuration
// table (first column).
func readmeVariables(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	name := regexp.MustCompile("`([A-Z][A-Z0-9_]+)`")
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first := strings.SplitN(line, "|", 3)[1]
		for _, m := range name.FindAllStringSubmatch(first, -1) {
			out[m[1]] = true
		}
	}
	return out
}

// PgBouncer's configuration pools by transaction (what DB_PGBOUNCER means)
// and the example userlist has PgBouncer's shape. TestServeThroughPgBouncer
// runs a PgBouncer from it.
func TestPgBouncerConfig(t *testing.T) {
	t.Parallel()
	ini := readDeploy(t, "pgbouncer/pgbouncer.ini")
	settings := map[string]string{}
	section := ""
	for _, line := range strings.Split(ini, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == ';' || line[0] == '#' {
			continue
		}
		if line[0] == '[' {
			section = strings.Trim(line, "[]")
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		settings[section+"."+strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	for k, v := range map[string]string{"pgbouncer.pool_mode": "transaction", "pgbouncer.listen_port": "6432", "pgbouncer.auth_type": "scram-sha-256"} {
		if settings[k] != v {
			t.Errorf("pgbouncer.ini %s = %q, want %q", k, settings[k], v)
		}
	}
	env := systemdEnv(t, readDeploy(t, "vectabase.env.example"))
	if !strings.Contains(env["DATABASE_URL"], ":6432/") || env["DB_PGBOUNCER"] != "true" || !strings.Contains(env["DATABASE_DIRECT_URL"], ":5432/") {
		t.Errorf("env example: DATABASE_URL %q (want PgBouncer's 6432), DB_PGBOUNCER %q, DATABASE_DIRECT_URL %q (want PostgreSQL's 5432)",
			env["DATABASE_URL"], env["DB_PGBOUNCER"], env["DATABASE_DIRECT_URL"])
	}
	ul := strings.TrimSpace(readDeploy(t, "pgbouncer/userlist.txt.example"))
	if !regexp.MustCompile(`^"[a-z_]+" "SCRAM-SHA-256\$[^"]+"$`).MatchString(ul) {
		t.Errorf("userlist example %q is not \"user\" \"SCRAM-SHA-256$...\"", ul)
	}
}

// Every setting of the PostgreSQL configuration is one the server knows,
// with a value of its type (asked of a real server through pg_settings).
func TestPostgreSQLSettings(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	line := regexp.MustCompile(`^([a-z_]+) = ('[^']*'|[A-Za-z0-9.\-]+)$`)
	n := 0
	for i, l := range strings.Split(readDeploy(t, "postgresql/vectabase.conf"), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' {
			continue
		}
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("vectabase.conf:%d %q is not name = value", i+1, l)
			continue
		}
		n++
		var vartype string
		var unit, enumvals *string
		err := db.Pool.QueryRow(ctx, `SELECT vartype, unit, array_to_string(enumvals, ',') FROM pg_settings WHERE name = $1`, m[1]).Scan(&vartype, &unit, &enumvals)
		if err != nil {
			t.Errorf("vectabase.conf:%d: %s is not a PostgreSQL setting (%v)", i+1, m[1], err)
			continue
		}
		v := strings.Trim(m[2], "'")
		switch vartype {
		case "bool":
			if !regexp.MustCompile(`^(on|off|true|false)$`).MatchString(v) {
				t.Errorf("%s = %s: not a bool", m[1], v)
			}
		case "integer", "real":
			if !regexp.MustCompile(`^-?[0-9.]+(kB|MB|GB|TB|ms|s|min|h|d)?$`).MatchString(v) {
				t.Errorf("%s = %s: not a number with a unit", m[1], v)
			}
		case "enum":
			if enumvals != nil && !strings.Contains(","+*enumvals+",", ","+v+",") {
				t.Errorf("%s = %s: not one of %s", m[1], v, *enumvals)
			}
		}
	}
	if n < 10 {
		t.Fatalf("only %d settings read", n)
	}
}

// The reverse proxy example sends X-Forwarded-For from an address the env
// example's TRUSTED_PROXIES lists, and health-checks /readyz.
func TestCaddyMatchesTrustedProxies(t *testing.T) {
	t.Parallel()
	caddy := readDeploy(t, "caddy/Caddyfile")
	env := systemdEnv(t, readDeploy(t, "vectabase.env.example"))
	if !strings.Contains(","+env["TRUSTED_PROXIES"]+",", ",127.0.0.1,") {
		t.Errorf("TRUSTED_PROXIES %q lacks 127.0.0.1, the proxy's address", env["TRUSTED_PROXIES"])
	}
	if !strings.Contains(caddy, "reverse_proxy "+env["HTTP_ADDR"]) {
		t.Errorf("the Caddyfile does not proxy to HTTP_ADDR %s", env["HTTP_ADDR"])
	}
	if !strings.Contains(caddy, "health_uri /readyz") {
		t.Errorf("the Caddyfile does not health-check /readyz")
	}
}

// metricNames is what a real `serve` exports once the usual paths have run:
// base names (a histogram's _bucket, _sum and _count under its own name).
func metricNames(t *testing.T) map[string]bool {
	t.Helper()
	dbURL := pgtest.URL(t)
	keyFile := filepath.Join(tempDir(t), "master.key")
	if err := local.GenerateKeyFile(keyFile); err != nil {
		t.Fatal(err)
	}
	s := startServe(t, baseEnv("DATABASE_URL="+dbURL, "KEYRING_MASTER_KEY_FILE="+keyFile,
		"ADMIN_EMAIL=ops@example.com", "ADMIN_PASSWORD=correct horse battery staple", "BACKUP_DIR="+filepath.Join(tempDir(t), "b")))
	c := &apiClient{t: t, base: "http://" + s.addr}
	tok := c.login("ops@example.com", "correct horse battery staple")
	c.do("PUT", "/api/secrets/ops-canary", tok, `{"value":"v"}`, 201)
	c.do("GET", "/api/secrets/ops-canary", tok, "", 200)
	c.do("GET", "/readyz", "", "", 200)
	resp, err := http.Get("http://" + s.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 3 && f[0] == "#" && (f[1] == "TYPE" || f[1] == "HELP") {
			names[f[2]] = true
		}
	}
	return names
}

// exprMetrics parses a PromQL expression with Prometheus's parser and
// returns the metric names it selects.
func exprMetrics(expr string) ([]string, error) {
	e, err := parser.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs.Name)
		}
		return nil
	})
	return out, nil
}

// The alert rules load with Prometheus's own rule parser, cover what the
// issue lists, and every metric they name, like every metric of the
// Grafana dashboard, is one a running server exports. The dashboard also
// covers every metric of the contract's section 9.
func TestPrometheusRulesAndDashboard(t *testing.T) {
	t.Parallel()
	known := metricNames(t)
	// Exported only once something happens (labelled series appear on
	// first use): accepted when the server's source registers the name.
	for _, n := range []string{"vectabase_stripe_webhooks_total", "vectabase_ratelimit_rejected_total", "vectabase_db_slow_queries_total"} {
		if !known[n] && sourceRegisters(t, n) {
			known[n] = true
		}
	}
	known["up"] = true // Prometheus's own, per target
	groups, errs := rulefmt.ParseFile(filepath.Join(deployDir, "prometheus/alerts.yml"), false)
	if len(errs) > 0 {
		t.Fatalf("alerts.yml: %v", errs)
	}
	alerts := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
			names, err := exprMetrics(r.Expr)
			if err != nil {
				t.Errorf("alert %s: %v", r.Alert, err)
			}
			for _, n := range names {
				if !known[n] {
					t.Errorf("alert %s names %s, which the server does not export", r.Alert, n)
				}
			}
		}
	}
	for _, a := range []string{"VectabaseRotationStalled", "VectabaseAuditWriterFailing", "VectabaseBackupTooOld", "VectabaseKEKUnreachable", "VectabaseHigh5xxRatio", "VectabaseDBPoolExhausted"} {
		if !alerts[a] {
			t.Errorf("alerts.yml has no %s", a)
		}
	}
	if !strings.Contains(readDeploy(t, "prometheus/prometheus.yml"), "alerts.yml") {
		t.Errorf("prometheus.yml does not load alerts.yml")
	}

	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal([]byte(readDeploy(t, "grafana/vectabase-dashboard.json")), &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	shown := map[string]bool{}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			names, err := exprMetrics(tg.Expr)
			if err != nil {
				t.Errorf("panel %q: %v", p.Title, err)
			}
			for _, n := range names {
				shown[strings.TrimSuffix(n, "_bucket")] = true
				if !known[strings.TrimSuffix(n, "_bucket")] {
					t.Errorf("panel %q names %s, which the server does not export", p.Title, n)
				}
			}
		}
	}
	for _, n := range []string{"http_requests_total", "http_request_duration_seconds", "pgxpool_acquired_conns", "vectabase_db_slow_queries_total",
		"vectabase_keyring_ops_total", "vectabase_secret_access_total", "vectabase_rotation_pending_values", "vectabase_rotation_reencrypted_total",
		"vectabase_audit_write_failures_total", "vectabase_ratelimit_rejected_total", "vectabase_backup_last_success_timestamp_seconds",
		"vectabase_realtime_connections", "vectabase_stripe_webhooks_total"} {
		if !shown[n] {
			t.Errorf("the dashboard shows no panel of %s (contract section 9)", n)
		}
	}
	if t.Failed() {
		var k []string
		for n := range known {
			k = append(k, n)
		}
		sort.Strings(k)
		t.Logf("exported: %s", strings.Join(k, " "))
	}
}

// apiClient makes JSON calls to a running server.
type apiClient struct {
	t    *testing.T
	base string
}

func (c *apiClient) do(method, path, token, body string, want int) map[string]any {
	c.t.Helper()
	return c.doKey(method, path, token, "", body, want)
}

func (c *apiClient) doKey(method, path, token, apiKey, body string, want int) map[string]any {
	c.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, r)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if apiKey != "" {
		req.Header.Set("X-API-Key", apiKey)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s = %d %s, want %d", method, path, resp.StatusCode, raw, want)
	}
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return out
}

func (c *apiClient) login(email, password string) string {
	c.t.Helper()
	r := c.do("POST", "/api/auth/login", "", fmt.Sprintf(`{"email":%q,"password":%q}`, email, password), 200)
	tok, _ := r["token"].(string)
	if tok == "" {
		c.t.Fatalf("login gave no token: %v", r)
	}
	return tok
}

// The Dockerfile builds a static binary and runs it as a non-root user;
// the compose file has what the issue lists (PostgreSQL 16, PgBouncer in
// transaction mode, two instances, optional Vault, Prometheus, Grafana),
// every file it mounts exists, and every variable either sets for
// vectabase is one the README's table documents and the binary accepts.
func TestContainerFiles(t *testing.T) {
	t.Parallel()
	documented := readmeVariables(t)
	docker := readDeploy(t, "Dockerfile")
	if !strings.Contains(docker, "CGO_ENABLED=0 go build") {
		t.Errorf("Dockerfile: the binary is not built static (CGO_ENABLED=0)")
	}
	var user, entry string
	var envKeys []string
	for _, line := range strings.Split(strings.ReplaceAll(docker, "\\\n", " "), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "USER":
			user = f[1]
		case "ENTRYPOINT":
			entry = strings.Join(f[1:], " ")
		case "ENV":
			for _, kv := range f[1:] {
				if k, _, ok := strings.Cut(kv, "="); ok {
					envKeys = append(envKeys, k)
				}
			}
		}
	}
	if user == "" || user == "root" || strings.HasPrefix(user, "0") {
		t.Errorf("Dockerfile: USER %q, want a non-root user", user)
	}
	if !strings.Contains(entry, "/usr/local/bin/vectabase") {
		t.Errorf("Dockerfile: ENTRYPOINT %q", entry)
	}
	for _, k := range envKeys {
		if !documented[k] {
			t.Errorf("Dockerfile sets %s, which the README's table does not list", k)
		}
	}

	var compose struct {
		Services map[string]struct {
			Image       string
			Profiles    []string
			Environment map[string]string
			Volumes     []string
			Command     []string
		}
		Secrets map[string]struct{ File string }
	}
	if err := yaml.Unmarshal([]byte(readDeploy(t, "compose.yaml")), &compose); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	svc := compose.Services
	if !strings.HasPrefix(svc["postgres"].Image, "postgres:16") {
		t.Errorf("compose: postgres image %q, want PostgreSQL 16", svc["postgres"].Image)
	}
	if svc["pgbouncer"].Environment["POOL_MODE"] != "transaction" {
		t.Errorf("compose: PgBouncer POOL_MODE %q, want transaction", svc["pgbouncer"].Environment["POOL_MODE"])
	}
	if len(svc["vault"].Profiles) == 0 {
		t.Errorf("compose: Vault is not optional (no profile)")
	}
	for _, name := range []string{"prometheus", "grafana"} {
		if svc[name].Image == "" {
			t.Errorf("compose: no %s", name)
		}
	}
	subst := regexp.MustCompile(`\$\{[A-Z_]+(:[?-][^}]*)?\}`)
	for _, name := range []string{"migrate", "vectabase-1", "vectabase-2"} {
		env := svc[name].Environment
		if len(env) == 0 {
			t.Errorf("compose: service %s has no environment", name)
			continue
		}
		resolved := map[string]string{}
		for k, v := range env {
			if !documented[k] {
				t.Errorf("compose: %s sets %s, which the README's table does not list", name, k)
			}
			resolved[k] = subst.ReplaceAllString(v, "pw")
		}
		if !strings.Contains(env["DATABASE_URL"], "@pgbouncer:6432/") || env["DB_PGBOUNCER"] != "true" || !strings.Contains(env["DATABASE_DIRECT_URL"], "@postgres:5432/") {
			t.Errorf("compose: %s does not go through PgBouncer with a direct URL to PostgreSQL: %v", name, env)
		}
		if _, err := parseConfig(resolved); err != nil {
			t.Errorf("compose: %s's environment: %v", name, err)
		}
	}
	for name, s := range svc {
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, "./") {
				if _, err := os.Stat(filepath.Join(deployDir, src)); err != nil {
					t.Errorf("compose: %s mounts %s, which deploy/ lacks", name, src)
				}
			}
		}
	}
	// The compose Prometheus loads the same rules and scrapes both instances.
	prom := readDeploy(t, "prometheus/compose.yml")
	if !strings.Contains(prom, "alerts.yml") || !strings.Contains(prom, "vectabase-1:9090") || !strings.Contains(prom, "vectabase-2:9090") {
		t.Errorf("prometheus/compose.yml does not load alerts.yml and scrape both instances")
	}
}

// sourceRegisters reports whether a non-test Go file of the module names
// metric name as a metric's Name.
func sourceRegisters(t *testing.T, name string) bool {
	t.Helper()
	found := false
	_ = filepath.WalkDir("../..", func(path string, d os.DirEntry, err error) error {
		if err != nil || found {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != "../.." {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err == nil && regexp.MustCompile(`Name:\s*"`+regexp.QuoteMeta(name)+`"`).Match(b) {
			found = true
		}
		return nil
	})
	return found
}

// The deploy path builds a static binary (Dockerfile, deploy.yml and
// deploy/README.md: CGO_ENABLED=0). Build it as they do, check that it is
// static (no program interpreter) and that it runs. The PKCS#11 backend,
// which needs cgo, is left out of such a build and says so when chosen
// (keyring/pkcs11, ErrNoCgo); before that split the static build did not
// compile at all.
func TestStaticBuildOfTheDeployPath(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the whole binary without cgo")
	}
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "vectabase")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=static-check", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("the CGO_ENABLED=0 binary asks for a program interpreter: it is not static")
		}
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "static-check") {
		t.Fatalf("static binary version = %q, %v", out, err)
	}
}
