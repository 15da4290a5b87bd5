package faults

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/migrations"
	"github.com/vectabase/vectabase/store/pgcluster"
)

var long = flag.Bool("long", false, "run the long form (10-minute soak, more kill -9 moments)")

const (
	adminEmail    = "owner@example.com"
	adminPassword = "correct horse battery staple"
)

// binary is the vectabase binary built once for the whole run.
var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		if testing.Short() {
			return m.Run()
		}
		if _, err := pgcluster.FindBinDir(); err != nil {
			fmt.Fprintln(os.Stderr, "bench/faults: skipped:", err)
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "vectabase-faults-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "vectabase")
		// The module's root is where go.mod is (go env GOMOD), wherever the
		// test runs from.
		gomod, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			fmt.Fprintln(os.Stderr, "go env GOMOD:", err)
			return 1
		}
		build := exec.Command("go", "build", "-o", binary, "./cmd/vectabase")
		build.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
		out, err := build.CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build vectabase: %v\n%s", err, out)
			return 1
		}
		code := m.Run()
		printTable(os.Stdout)
		return code
	}()
	os.Exit(code)
}

func needBinary(t *testing.T) {
	t.Helper()
	if binary == "" {
		t.Skip("no vectabase binary (short mode, or no PostgreSQL server binaries)")
	}
}

// cluster starts a private PostgreSQL cluster for one scenario: fsync off
// (the machine does not crash, only processes do), but synchronous_commit
// on, so a commit acknowledged to the server is in the WAL and survives an
// immediate shutdown or a kill -9 of the postmaster.
func startCluster(t *testing.T, settings map[string]string) (*pgcluster.Cluster, string) {
	t.Helper()
	// Not t.TempDir(): the postgres user must reach the directory.
	dir, err := os.MkdirTemp("", "vectabase-faults-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	port, err := pgcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgcluster.New(filepath.Join(dir, "data"), port)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.PrepareParent(dir); err != nil {
		t.Fatal(err)
	}
	c.Settings = map[string]string{"fsync": "off", "full_page_writes": "off", "max_connections": "100"}
	for k, v := range settings {
		c.Settings[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pgCtl(c, "stop", "-m", "immediate") }) // before the directory goes (cleanups run last first)
	url := c.URL("postgres")
	m, err := migrations.Open(url)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	return c, url
}

// pgCtl runs pg_ctl on c's data directory as the cluster's user.
func pgCtl(c *pgcluster.Cluster, args ...string) error {
	cmd := exec.Command(filepath.Join(c.BinDir(), "pg_ctl"), append([]string{"-D", c.DataDir, "-w", "-t", "60"}, args...)...)
	return runAsPostgres(cmd)
}

// startPG starts c again with its settings (pgcluster.Start).
func startPG(c *pgcluster.Cluster) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return c.Start(ctx)
}

func runAsPostgres(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if os.Geteuid() == 0 {
		u, err := lookupPostgres()
		if err != nil {
			return err
		}
		cmd.SysProcAttr.Credential = u
	}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", filepath.Base(cmd.Path), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func lookupPostgres() (*syscall.Credential, error) {
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) > 3 && f[0] == "postgres" {
			uid, _ := strconv.Atoi(f[2])
			gid, _ := strconv.Atoi(f[3])
			return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
		}
	}
	return nil, errors.New("no postgres user")
}

// serveProc is one running `vectabase serve`.
type serveProc struct {
	cmd     *exec.Cmd
	dir     string // the working directory, the same across restarts (./.vectabase/spool is there)
	base    string
	metrics string
	env     []string
	done    chan struct{}
	stderr  *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 4<<20 {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serverEnv is what every scenario's servers share: the database, a local
// master key, the first admin.
func serverEnv(t *testing.T, dbURL string, extra ...string) []string {
	t.Helper()
	key := filepath.Join(t.TempDir(), "master.key")
	if err := local.GenerateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	return append([]string{
		"DATABASE_URL=" + dbURL, "KEYRING_MASTER_KEY_FILE=" + key,
		"ADMIN_EMAIL=" + adminEmail, "ADMIN_PASSWORD=" + adminPassword,
		"LOG_LEVEL=error", "BACKUP_DIR=" + t.TempDir(),
		// The workload logs in from one address again and again.
		"AUTH_MAX_FAILURES_PER_IP=100000",
	}, extra...)
}

// startServe starts `vectabase serve` with env and waits for /readyz.
func startServe(t *testing.T, env []string) *serveProc {
	t.Helper()
	httpAddr, metricsAddr := freeAddr(t), freeAddr(t)
	s := &serveProc{dir: t.TempDir(), base: "http://" + httpAddr, metrics: "http://" + metricsAddr + "/metrics", env: env}
	s.start(t, httpAddr, metricsAddr)
	t.Cleanup(s.stop)
	return s
}

func (s *serveProc) start(t *testing.T, httpAddr, metricsAddr string) {
	t.Helper()
	cmd := exec.Command(binary, "serve", "--migrate")
	cmd.Dir = s.dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"HTTP_ADDR=" + httpAddr, "METRICS_ADDR=" + metricsAddr}, s.env...)
	s.cmd, s.done, s.stderr = cmd, make(chan struct{}), &lockedBuffer{}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := s.done
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if s.ready() {
			return
		}
		select {
		case <-s.done:
			t.Fatalf("serve exited:\n%s", s.stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("serve not ready within 60 s:\n%s", s.stderr.String())
}

// restart starts the same server again on the same addresses (after a kill).
func (s *serveProc) restart(t *testing.T) {
	t.Helper()
	s.start(t, strings.TrimPrefix(s.base, "http://"), strings.TrimSuffix(strings.TrimPrefix(s.metrics, "http://"), "/metrics"))
}

func (s *serveProc) ready() bool {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(s.base + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// internalErrors returns up to n distinct "internal error" log lines of
// the server (their error text), for a failing scenario's message.
func (s *serveProc) internalErrors(n int) string {
	seen := map[string]bool{}
	var out []string
	for _, line := range strings.Split(s.stderr.String(), "\n") {
		if !strings.Contains(line, "internal error") {
			continue
		}
		var l struct{ Route, Error string }
		_ = json.Unmarshal([]byte(line), &l)
		k := l.Route + ": " + l.Error
		if !seen[k] && len(out) < n {
			seen[k] = true
			out = append(out, k)
		}
	}
	return strings.Join(out, "\n")
}

// kill sends SIGKILL and waits for the process to go.
func (s *serveProc) kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// stop interrupts the server (as Ctrl-C) and kills it after 30 s.
func (s *serveProc) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// vitals are the process figures the table reports.
type vitals struct {
	RSS        float64 // MiB
	Goroutines int
	OpenFDs    int
}

func (v vitals) String() string {
	return fmt.Sprintf("%.0f MiB/%d g/%d fd", v.RSS, v.Goroutines, v.OpenFDs)
}

// vitals reads the server's RSS, goroutines and open files from its
// metrics listener.
func (s *serveProc) vitals() vitals {
	m := s.scrape()
	return vitals{RSS: m["process_resident_memory_bytes"] / (1 << 20), Goroutines: int(m["go_goroutines"]), OpenFDs: int(m["process_open_fds"])}
}

// scrape returns the unlabelled and labelled samples of /metrics by their
// full name (labels included, as printed).
func (s *serveProc) scrape() map[string]float64 {
	c := http.Client{Timeout: 5 * time.Second}
	out := map[string]float64{}
	resp, err := c.Get(s.metrics)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// sumMetric adds up every sample of the metric name (any labels).
func sumMetric(m map[string]float64, name string, labelSubstr string) float64 {
	var sum float64
	for k, v := range m {
		if (k == name || strings.HasPrefix(k, name+"{")) && strings.Contains(k, labelSubstr) {
			sum += v
		}
	}
	return sum
}

// runCLI runs a vectabase subcommand with env.
func runCLI(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// api is a client of one or more servers, signed in as the admin.
type api struct {
	http    *http.Client
	bases   []string
	next    atomic.Uint64
	token   atomic.Pointer[string]
	refresh atomic.Pointer[string]
	apiKey  string
	system  string
	storeID string
}

// answer is one request's outcome.
type answer struct {
	status int
	code   string // the error body's code
	err    error  // transport error
	took   time.Duration
	body   []byte
	hdr    http.Header
}

func (a answer) header(name string) string {
	if a.hdr == nil {
		return ""
	}
	return a.hdr.Get(name)
}

func (a answer) kind() string {
	switch {
	case a.err != nil:
		var ne net.Error
		if errors.As(a.err, &ne) && ne.Timeout() {
			return "client timeout"
		}
		return "connection error"
	case a.status >= 400:
		return fmt.Sprintf("%d %s", a.status, a.code)
	default:
		return "2xx"
	}
}

func (a *api) base() string {
	return a.bases[int(a.next.Add(1))%len(a.bases)]
}

func (a *api) do(ctx context.Context, method, path string, body any, headers map[string]string) answer {
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base()+path, r)
	if err != nil {
		return answer{err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok := a.token.Load(); tok != nil && headers["X-API-Key"] == "" {
		req.Header.Set("Authorization", "Bearer "+*tok)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := a.http.Do(req)
	if err != nil {
		return answer{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	an := answer{status: resp.StatusCode, took: time.Since(start), body: b, hdr: resp.Header}
	if resp.StatusCode >= 400 {
		var eb struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
			an.code = "(no contract body)"
		} else {
			an.code = eb.Error
		}
	}
	return an
}

func newAPI(bases ...string) *api {
	return &api{bases: bases, http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
}

// setup signs in as the admin and makes the fixtures the workload uses: a
// developer key for verify and check, a whitelist system with a player, a
// store for products.
func (a *api) setup(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	if err := a.login(ctx); err != nil {
		t.Fatal(err)
	}
	must := func(an answer, want int, into any) {
		t.Helper()
		if an.err != nil || an.status != want {
			t.Fatalf("setup: %d %v %s", an.status, an.err, an.body)
		}
		if into != nil {
			if err := json.Unmarshal(an.body, into); err != nil {
				t.Fatal(err)
			}
		}
	}
	var key struct{ Key string }
	must(a.do(ctx, "POST", "/api/developer/keys", map[string]any{"name": "faults", "scopes": []string{"whitelist:read"}, "rateLimitPerMinute": 1000000}, nil), 201, &key)
	a.apiKey = key.Key
	var sys struct{ ID string }
	must(a.do(ctx, "POST", "/api/whitelist/systems", map[string]any{"name": "faults"}, nil), 201, &sys)
	a.system = sys.ID
	must(a.do(ctx, "POST", "/api/whitelist/systems/"+sys.ID+"/users", map[string]any{"robloxUserId": 42}, nil), 201, nil)
	var st struct{ ID string }
	must(a.do(ctx, "POST", "/api/stores", map[string]any{"name": "faults store"}, nil), 201, &st)
	a.storeID = st.ID
}

func (a *api) login(ctx context.Context) error {
	an := a.do(ctx, "POST", "/api/auth/login", map[string]string{"email": adminEmail, "password": adminPassword}, nil)
	if an.err != nil || an.status != 200 {
		return fmt.Errorf("login: %d %v %s", an.status, an.err, an.body)
	}
	return a.takeTokens(an)
}

func (a *api) takeTokens(an answer) error {
	var tok struct{ Token, RefreshToken string }
	if err := json.Unmarshal(an.body, &tok); err != nil {
		return err
	}
	a.token.Store(&tok.Token)
	a.refresh.Store(&tok.RefreshToken)
	return nil
}

// stats collects the workload's outcomes.
type stats struct {
	mu       sync.Mutex
	kinds    map[string]int // answer kind -> count (errors only)
	ok       int
	hangs    int // answers (or give-ups) slower than 5 s
	slowest  time.Duration
	secrets  map[string]int // secret name -> highest version answered 2xx
	stores   []string       // store ids answered 201
	products []string       // product ids answered 201
	lat      []time.Duration
	first500 string
	apiKeyOK int // verify and check answered 2xx: each owes a request-log row
	// apiKeyIDs are the X-Request-IDs of those answers.
	apiKeyIDs []string
	// windows, when window > 0: the 2xx latencies by window since start.
	start   time.Time
	window  time.Duration
	windows map[int][]time.Duration
	n5xx    int // every 5xx, 503 included
}

func newStats() *stats {
	return &stats{kinds: map[string]int{}, secrets: map[string]int{}}
}

func (s *stats) record(op string, an answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := an.kind()
	if k == "2xx" {
		if op == "verify" || op == "check" {
			s.apiKeyOK++
			s.apiKeyIDs = append(s.apiKeyIDs, an.header("X-Request-ID"))
		}
		s.ok++
		s.lat = append(s.lat, an.took)
		if s.window > 0 {
			i := int(time.Since(s.start) / s.window)
			if s.windows == nil {
				s.windows = map[int][]time.Duration{}
			}
			s.windows[i] = append(s.windows[i], an.took)
		}
	} else {
		s.kinds[k]++
		if an.status >= 500 {
			s.n5xx++
		}
		if an.status >= 500 && an.code != "UNAVAILABLE" && s.first500 == "" {
			s.first500 = op + ": " + string(an.body)
		}
	}
	if an.took > 5*time.Second {
		s.hangs++
	}
	s.slowest = max(s.slowest, an.took)
}

func (s *stats) errorsByKind() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.kinds) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(s.kinds))
	for k := range s.kinds {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s×%d", k, s.kinds[k])
	}
	return strings.Join(parts, ", ")
}

// count5xx is the number of 5xx answers other than 503 UNAVAILABLE, and
// of answers without the contract's body.
func (s *stats) bad5xx() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, v := range s.kinds {
		if strings.HasPrefix(k, "5") && k != "503 UNAVAILABLE" || strings.Contains(k, "no contract body") {
			n += v
		}
	}
	return n
}

func (s *stats) acked() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.secrets) + len(s.stores) + len(s.products)
}

// workload is the mixed workload: each worker cycles through login-free
// operations (refresh now and then), secret writes and reads, store and
// product writes, developer verify and whitelist check.
type workload struct {
	a      *api
	st     *stats
	cancel context.CancelFunc
	wg     sync.WaitGroup
	seq    atomic.Int64
	prefix string
}

// startWorkload runs workers until stop. rate bounds the calls per second
// of all workers together (0: as fast as they go).
func startWorkload(a *api, workers int, rate float64) *workload {
	return startWorkloadWindows(a, workers, rate, 0)
}

// startWorkloadWindows is startWorkload keeping the latencies by window.
func startWorkloadWindows(a *api, workers int, rate float64, window time.Duration) *workload {
	ctx, cancel := context.WithCancel(context.Background())
	st := newStats()
	st.start, st.window = time.Now(), window
	w := &workload{a: a, st: st, cancel: cancel, prefix: strconv.FormatInt(time.Now().UnixNano()%1e9, 36)}
	var tick <-chan time.Time
	if rate > 0 {
		tk := time.NewTicker(time.Duration(float64(time.Second) / rate))
		tick = tk.C
		go func() { <-ctx.Done(); tk.Stop() }()
	}
	for i := range workers {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for n := 0; ctx.Err() == nil; n++ {
				if tick != nil {
					select {
					case <-tick:
					case <-ctx.Done():
						return
					}
				}
				w.step(ctx, i, n)
			}
		}()
	}
	return w
}

func (w *workload) step(ctx context.Context, worker, n int) {
	a := w.a
	id := w.seq.Add(1)
	var op string
	var an answer
	switch n % 8 {
	case 0:
		op = "secret write"
		name := fmt.Sprintf("faults-%s-%d", w.prefix, id)
		an = a.do(ctx, "PUT", "/api/secrets/"+name, map[string]string{"value": "v" + strconv.FormatInt(id, 10)}, nil)
		if an.status/100 == 2 {
			var v struct{ Version int }
			_ = json.Unmarshal(an.body, &v)
			w.st.mu.Lock()
			w.st.secrets[name] = max(w.st.secrets[name], v.Version)
			w.st.mu.Unlock()
		}
	case 1:
		op = "secret read"
		an = a.do(ctx, "GET", "/api/secrets/faults-fixed", nil, nil)
		if an.status == 404 {
			an = a.do(ctx, "PUT", "/api/secrets/faults-fixed", map[string]string{"value": "fixed"}, nil)
		}
	case 2:
		op = "verify"
		an = a.do(ctx, "POST", "/api/developer/verify", map[string]any{}, map[string]string{"X-API-Key": a.apiKey, "X-Request-ID": uuid.NewString()})
	case 3:
		op = "check"
		an = a.do(ctx, "POST", "/api/whitelist/check", map[string]any{"systemId": a.system, "robloxUserId": 42}, map[string]string{"X-API-Key": a.apiKey, "X-Request-ID": uuid.NewString()})
	case 4:
		op = "store write"
		an = a.do(ctx, "POST", "/api/stores", map[string]any{"name": fmt.Sprintf("store %d", id)}, nil)
		if an.status == 201 {
			var v struct{ ID string }
			_ = json.Unmarshal(an.body, &v)
			w.st.mu.Lock()
			w.st.stores = append(w.st.stores, v.ID)
			w.st.mu.Unlock()
		}
	case 5:
		op = "product write"
		an = a.do(ctx, "POST", "/api/products", map[string]any{"storeId": a.storeID, "name": fmt.Sprintf("product %d", id), "priceCents": 100}, nil)
		if an.status == 201 {
			var v struct{ ID string }
			_ = json.Unmarshal(an.body, &v)
			w.st.mu.Lock()
			w.st.products = append(w.st.products, v.ID)
			w.st.mu.Unlock()
		}
	case 6:
		op = "me"
		an = a.do(ctx, "GET", "/api/auth/me", nil, nil)
	case 7:
		if worker == 0 && n%64 == 7 {
			op = "refresh"
			// One worker refreshes the shared pair; the others keep using
			// the access token, which stays valid.
			rt := a.refresh.Load()
			an = a.do(ctx, "POST", "/api/auth/refresh", map[string]string{"refreshToken": *rt}, nil)
			if an.status == 200 {
				_ = a.takeTokens(an)
			} else if an.status == 401 {
				_ = a.login(ctx)
			}
		} else {
			op = "product read"
			an = a.do(ctx, "GET", "/api/products?limit=5", nil, nil)
		}
	}
	if ctx.Err() != nil && an.err != nil {
		return // cut off by stop
	}
	w.st.record(op, an)
	if an.err != nil {
		// The server is gone (killed, restarting): do not spin.
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (w *workload) stop() *stats {
	w.cancel()
	w.wg.Wait()
	return w.st
}

// verifyAcked counts, in the database, the acknowledged writes that are
// present: secrets at (at least) the acknowledged version, stores and
// products by id.
func verifyAcked(t *testing.T, dbURL string, st *stats) (acked, present int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	st.mu.Lock()
	defer st.mu.Unlock()
	names := make([]string, 0, len(st.secrets))
	for n := range st.secrets {
		names = append(names, n)
	}
	rows, err := conn.Query(ctx, `SELECT name, current_version FROM secrets WHERE name = ANY($1)`, names)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for rows.Next() {
		var n string
		var v int
		if err := rows.Scan(&n, &v); err != nil {
			t.Fatal(err)
		}
		got[n] = v
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for n, v := range st.secrets {
		if got[n] >= v {
			present++
		}
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM stores WHERE id::text = ANY($1)`, st.stores).Scan(&n); err != nil {
		t.Fatal(err)
	}
	present += n
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM products WHERE id::text = ANY($1)`, st.products).Scan(&n); err != nil {
		t.Fatal(err)
	}
	present += n
	return len(st.secrets) + len(st.stores) + len(st.products), present
}

// auditVerify runs `vectabase audit verify`.
func auditVerify(t *testing.T, env []string) string {
	t.Helper()
	out, err := runCLI(t, env, "audit", "verify")
	if err != nil {
		t.Errorf("audit verify: %v\n%s", err, out)
		return "FAILS"
	}
	return "ok"
}

// subscribers are realtime clients subscribed to products; they reconnect
// when their connection drops and count the change events they get.
type subscribers struct {
	events atomic.Int64
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startSubscribers(a *api, n int) *subscribers {
	ctx, cancel := context.WithCancel(context.Background())
	s := &subscribers{cancel: cancel}
	for i := range n {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			base := a.bases[i%len(a.bases)]
			for ctx.Err() == nil {
				s.session(ctx, base, *a.token.Load())
				select {
				case <-ctx.Done():
				case <-time.After(500 * time.Millisecond):
				}
			}
		}()
	}
	return s
}

func (s *subscribers) session(ctx context.Context, base, token string) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	conn, _, err := d.DialContext(ctx, "ws"+strings.TrimPrefix(base, "http")+"/api/realtime?access_token="+token, nil)
	if err != nil {
		return
	}
	defer conn.Close()
	go func() { <-ctx.Done(); conn.Close() }()
	if err := conn.WriteJSON(map[string]any{"type": "subscribe", "topic": "products"}); err != nil {
		return
	}
	for {
		var m struct{ Type string }
		if err := conn.ReadJSON(&m); err != nil {
			return
		}
		if m.Type == "change" {
			s.events.Add(1)
		}
	}
}

func (s *subscribers) stop() int64 {
	s.cancel()
	s.wg.Wait()
	return s.events.Load()
}

// table is the suite's figures, printed at the end.
var table struct {
	mu   sync.Mutex
	rows [][]string
}

func report(cols ...string) {
	table.mu.Lock()
	defer table.mu.Unlock()
	table.rows = append(table.rows, cols)
}

func printTable(w io.Writer) {
	table.mu.Lock()
	defer table.mu.Unlock()
	if len(table.rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%-34s | %-60s | %-16s | %-15s | %-48s | %s\n", "fault", "errors seen by clients (by kind)", "recovery", "acked/present", "RSS/goroutines/fds before -> after", "notes")
	for _, r := range table.rows {
		fmt.Fprintf(w, "%-34s | %-60s | %-16s | %-15s | %-48s | %s\n", r[0], r[1], r[2], r[3], r[4], r[5])
	}
}

// waitUntil polls cond every 50 ms for at most d and returns how long it
// took, or -1 when it never held.
func waitUntil(d time.Duration, cond func() bool) time.Duration {
	start := time.Now()
	for time.Since(start) < d {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return -1
}
