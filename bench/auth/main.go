// Command auth benchmarks authentication over loopback HTTP, each figure
// beside a baseline measured in the same run:
//
//   - login requests/s beside raw argon2id verifications/s (OWASP
//     parameters): login does one verification plus its database work and
//     audit row, so the ratio says what that costs (goal: at least 0.90).
//     Each is measured at its best: raw verifications one per core, logins
//     at saturation (four clients per core), where the server's hash slots
//     (AUTH_MAX_CONCURRENT_HASHES, one per core) always have a login
//     waiting. -max-hashes shows what the slots are worth;
//   - refresh requests/s (goal: at least 2,000 on 2 cores) beside GET
//     /healthz requests/s, the cost of an HTTP round trip that does nothing.
//
// It uses DATABASE_URL when set (the database is migrated and written to:
// use a throwaway one), else a private PostgreSQL cluster in a temporary
// directory, removed at the end. Every run is bounded in time and count.
//
//	go run ./bench/auth [-rounds 9] [-login-duration 2s] [-refresh-duration 3s] [-login-concurrency 8] [-max-hashes 0]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase/bench/benchenv"
	"github.com/vectabase/vectabase/bench/load"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/vault/audit"
)

func main() {
	if err := realMain(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "bench/auth:", err)
		os.Exit(1)
	}
}

type flags struct {
	rounds          int
	loginDuration   time.Duration
	refreshDuration time.Duration
	loginConc       int
	hashConc        int
	maxHashes       int
	refreshConc     int
}

func realMain(ctx context.Context) error {
	var f flags
	flag.IntVar(&f.rounds, "rounds", 5, "alternating rounds of each measurement; medians are reported")
	flag.DurationVar(&f.loginDuration, "login-duration", 2*time.Second, "length of each login and argon2id round")
	flag.DurationVar(&f.refreshDuration, "refresh-duration", 3*time.Second, "length of each refresh and healthz round")
	flag.IntVar(&f.loginConc, "login-concurrency", 4*runtime.GOMAXPROCS(0), "concurrent login clients: throughput is measured at saturation, with logins queued for the server's hash slots so that a core never waits for the next one")
	flag.IntVar(&f.maxHashes, "max-hashes", 0, "the server's AUTH_MAX_CONCURRENT_HASHES (0: its default, GOMAXPROCS)")
	flag.IntVar(&f.hashConc, "hash-concurrency", runtime.GOMAXPROCS(0), "concurrent raw argon2id verifications (one per core is their best)")
	flag.IntVar(&f.refreshConc, "refresh-concurrency", 16, "concurrent refresh chains")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()

	env, cleanup, err := benchenv.Open(ctx, 20)
	if err != nil {
		return err
	}
	defer cleanup()
	log, db, kr := zerolog.Nop(), env.DB, env.KR
	al := audit.New(db, kr, log, nil)
	defer al.Close()
	cfg := auth.Config{
		AccessTTL: time.Hour, RefreshTTL: 720 * time.Hour, Issuer: "vectabase", Argon2: auth.OWASPArgon2,
		// One client IP sends everything: lift the limits, keep them counted.
		MaxAttemptsPerIP: 1 << 30, MaxFailuresPerIP: 1 << 30, MaxFailuresPerAccount: 1 << 30,
		MaxConcurrentHashes: f.maxHashes,
	}
	svc, err := auth.New(ctx, cfg, db, kr, al, log, prometheus.NewRegistry())
	if err != nil {
		return err
	}
	srv := server.New(server.Config{}, log, prometheus.NewRegistry())
	srv.Mount(svc.Routes())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	base := "http://" + ln.Addr().String()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute,
	}}

	const email, password = "bench@example.com", "bench-password-123"
	if _, err := svc.Register(ctx, email, password, auth.RequestMeta{IP: "127.0.0.1"}); err != nil {
		return err
	}
	hash, err := auth.HashPassword(password, auth.OWASPArgon2)
	if err != nil {
		return err
	}

	fmt.Printf("bench/auth: GOMAXPROCS=%d NumCPU=%d, %d rounds, medians; %d login clients, %d raw argon2id goroutines\n",
		runtime.GOMAXPROCS(0), runtime.NumCPU(), f.rounds, f.loginConc, f.hashConc)

	stopProfile, err := load.CPUProfile(*cpuprofile)
	if err != nil {
		return err
	}
	defer stopProfile()
	// Login beside raw argon2id, alternating so that load from elsewhere on
	// the machine hits both alike.
	loginBody, _ := json.Marshal(map[string]string{"email": email, "password": password})
	var logins, hashes []load.Result
	var cpuRatios []float64
	var hashBusy, loginBusy, hashSteal, loginSteal []float64
	var pgPerLogin, goPerLogin, goPerHash []float64
	for range f.rounds {
		opts := load.Options{Concurrency: f.loginConc, Requests: 1 << 20, Duration: f.loginDuration, Warmup: 1}
		hopts := opts
		hopts.Concurrency = f.hashConc
		c0, m0 := load.SelfCPU(), readMachine()
		h := load.Run(ctx, hopts, func(context.Context) error {
			_, err := auth.VerifyPassword(hash, password, auth.OWASPArgon2)
			return err
		})
		c1, m1, p1 := load.SelfCPU(), readMachine(), load.ProcessCPU("postgres")
		l := load.Run(ctx, opts, func(ctx context.Context) error {
			return post(ctx, client, base+"/api/auth/login", loginBody, nil)
		})
		c2, m2, p2 := load.SelfCPU(), readMachine(), load.ProcessCPU("postgres")
		if l.Requests > 0 {
			pgPerLogin = append(pgPerLogin, float64((p2-p1).Microseconds())/float64(l.Requests))
			goPerLogin = append(goPerLogin, float64((c2-c1).Microseconds())/float64(l.Requests))
		}
		if h.Requests > 0 {
			goPerHash = append(goPerHash, float64((c1-c0).Microseconds())/float64(h.Requests))
		}
		hashBusy, loginBusy = append(hashBusy, m1.busySince(m0)), append(loginBusy, m2.busySince(m1))
		hashSteal, loginSteal = append(hashSteal, m1.stealSince(m0)), append(loginSteal, m2.stealSince(m1))
		hashes, logins = append(hashes, h), append(logins, l)
		if h.Requests > 0 && l.Requests > 0 {
			// CPU this process spent per verification over CPU per login
			// (server and client; PostgreSQL's own CPU is not counted).
			cpuRatios = append(cpuRatios, ((c1-c0).Seconds()/float64(h.Requests))/((c2-c1).Seconds()/float64(l.Requests)))
		}
	}
	login, raw := load.MedianRound(logins), load.MedianRound(hashes)
	load.Print(os.Stdout, "login vs argon2id verify", login, raw)
	// Adjacent rounds share the machine's load from elsewhere, so the
	// median of per-round ratios is steadier than the ratio of medians.
	ratios := make([]float64, len(logins))
	for i := range logins {
		ratios[i] = logins[i].RPS / hashes[i].RPS
	}
	loginRatio := load.Median(append([]float64(nil), ratios...))

	// Refresh: each worker follows its own chain, as a client would.
	chains := make(chan *string, f.refreshConc)
	for range f.refreshConc {
		res, err := svc.Login(ctx, email, password, auth.RequestMeta{IP: "127.0.0.1"})
		if err != nil {
			return err
		}
		tok := res.RefreshToken
		chains <- &tok
	}
	var refreshes, healthz []load.Result
	var refreshFailures atomic.Int64
	for range f.rounds {
		opts := load.Options{Concurrency: f.refreshConc, Requests: 1 << 20, Duration: f.refreshDuration}
		healthz = append(healthz, load.Run(ctx, opts, func(ctx context.Context) error {
			return get(ctx, client, base+"/healthz")
		}))
		refreshes = append(refreshes, load.Run(ctx, opts, func(ctx context.Context) error {
			tok := <-chains
			defer func() { chains <- tok }()
			body, _ := json.Marshal(map[string]string{"refreshToken": *tok})
			var out struct {
				RefreshToken string `json:"refreshToken"`
			}
			// Not cut off by the round's deadline: a refresh the server
			// completes but the client drops would leave the chain on a
			// used token, and presenting it again is reuse.
			if err := post(context.WithoutCancel(ctx), client, base+"/api/auth/refresh", body, &out); err != nil {
				refreshFailures.Add(1)
				return err
			}
			*tok = out.RefreshToken
			return nil
		}))
	}
	load.Print(os.Stdout, "refresh vs GET /healthz", load.MedianRound(refreshes), load.MedianRound(healthz))
	r := load.MedianRound(refreshes)
	fmt.Printf("login/argon2id: median of per-round ratios %.2f (goal >= 0.90), rounds %s\n", loginRatio, fmtRatios(ratios))
	fmt.Printf("login/argon2id by this process's CPU per operation (steadier on a shared machine): median %.2f, rounds %s\n",
		load.Median(append([]float64(nil), cpuRatios...)), fmtRatios(cpuRatios))
	fmt.Printf("machine CPU busy (all processes, PostgreSQL's too) during argon2id %.0f%%, during login %.0f%%; stolen by the host %.0f%% and %.0f%% (medians)\n",
		100*load.Median(hashBusy), 100*load.Median(loginBusy), 100*load.Median(hashSteal), 100*load.Median(loginSteal))
	fmt.Printf("CPU per login: this process %.0fµs, PostgreSQL %.0fµs; per raw verification %.0fµs (medians)\n",
		load.Median(goPerLogin), load.Median(pgPerLogin), load.Median(goPerHash))
	fmt.Printf("refresh: median %.0f req/s (goal >= 2000), p50 %v p99 %v, rounds %s\n",
		r.RPS, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), fmtRPS(refreshes))
	if login.Errors+r.Errors > 0 {
		return fmt.Errorf("%d login and %d refresh errors; first: %v %v", login.Errors, r.Errors, login.FirstError, r.FirstError)
	}
	return nil
}

func fmtRatios(rs []float64) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%.2f", r)
	}
	return strings.Join(parts, " ")
}

func fmtRPS(rs []load.Result) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%.0f", r.RPS)
	}
	return strings.Join(parts, " ")
}

// machine is the CPU time counters of /proc/stat's first line, in ticks.
type machine struct{ busy, idle, steal uint64 }

// readMachine reads them; zero where /proc/stat is missing.
func readMachine() machine {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machine{}
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return machine{}
	}
	var v [8]uint64
	for i := range v {
		v[i], _ = strconv.ParseUint(f[i+1], 10, 64)
	}
	// user nice system idle iowait irq softirq steal
	return machine{busy: v[0] + v[1] + v[2] + v[5] + v[6], idle: v[3] + v[4], steal: v[7]}
}

func (m machine) total() uint64 { return m.busy + m.idle + m.steal }

// busySince is the share of the machine's CPU time spent working since a.
func (m machine) busySince(a machine) float64 {
	if d := m.total() - a.total(); d > 0 {
		return float64(m.busy-a.busy) / float64(d)
	}
	return 0
}

// stealSince is the share taken by the hypervisor for other guests since a.
func (m machine) stealSince(a machine) float64 {
	if d := m.total() - a.total(); d > 0 {
		return float64(m.steal-a.steal) / float64(d)
	}
	return 0
}

func post(ctx context.Context, c *http.Client, url string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return do(c, req, out)
}

func get(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	return do(c, req, nil)
}

func do(c *http.Client, req *http.Request, out any) error {
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, strings.TrimSpace(string(raw)))
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}
