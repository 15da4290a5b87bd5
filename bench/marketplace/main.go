// Command marketplace benchmarks the two hot paths game servers call,
// POST /api/developer/verify and POST /api/whitelist/check, over loopback
// HTTP with everything on: API-key look-up by keyed hash, the shared
// rate-limit counter upsert, X-RateLimit headers, batched api_request_logs
// rows, the request log line and metrics. Each is measured beside a bare
// Fiber handler (no middleware) doing the same single indexed SELECT on an
// equal pool, alternating rounds in the same run; medians are reported.
// Then each endpoint runs open-loop at half of its measured peak to read
// its p99 there.
//
// Goals: at least 60% of the bare handler's requests/s; p99 under 10 ms at
// half of peak load. With -spool (the default) each endpoint is also
// measured with the request-log spool on against off, alternating rounds:
// the ratio is what the durable request log costs.
//
// It uses DATABASE_URL when set (migrated and written to: use a throwaway
// database), else a private PostgreSQL cluster in a temporary directory,
// removed at the end. Every run is bounded in time and count.
//
//	go run ./bench/marketplace [-rounds 3] [-duration 3s] [-concurrency 16]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase/bench/benchenv"
	"github.com/vectabase/vectabase/bench/load"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/marketplace"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/vault/audit"
)

func main() {
	if err := realMain(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "bench/marketplace:", err)
		os.Exit(1)
	}
}

func realMain(ctx context.Context) error {
	rounds := flag.Int("rounds", 3, "alternating rounds of each measurement; medians are reported")
	duration := flag.Duration("duration", 3*time.Second, "length of each round")
	conc := flag.Int("concurrency", 16, "concurrent clients")
	conns := flag.Int("conns", 8, "database pool size of each side")
	only := flag.String("only", "", "measure only the endpoints whose name contains this")
	spool := flag.Bool("spool", true, "also measure each endpoint with the request-log spool (API_REQUEST_LOG_SPOOL_DIR) against without it, alternating rounds")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	stopProfile, err := load.CPUProfile(*cpuprofile)
	if err != nil {
		return err
	}
	defer stopProfile()

	env, cleanup, err := benchenv.Open(ctx, int32(*conns))
	if err != nil {
		return err
	}
	defer cleanup()
	db, kr := env.DB, env.KR
	log := zerolog.New(io.Discard)
	// The bare side gets a pool of the same size.
	bareDB, err := store.Open(ctx, store.Config{URL: env.URL, MaxConns: int32(*conns), SlowQueryMS: -1}, log, nil)
	if err != nil {
		return err
	}
	defer bareDB.Close()

	// The full server: the area's routes behind the shared middleware.
	reg := prometheus.NewRegistry()
	srv := server.New(server.Config{}, log, reg)
	al := audit.New(db, kr, log, nil)
	defer al.Close()
	svc := marketplace.New(db, kr, al, marketplace.Config{}, log, reg)
	srv.Mount(svc.Routes(marketplace.Auth{RequireUser: refuse, OptionalUser: pass, UserID: func(*fiber.Ctx) string { return "" }}))
	base, stopSrv, err := benchenv.ServeApp(srv.App())
	if err != nil {
		return err
	}
	defer stopSrv()
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = svc.Close(cctx)
	}()

	// The same area with the request-log spool on (each row appended to a
	// segment file before the answer), on its own server and registry.
	spoolDir, err := os.MkdirTemp("", "vectabase-bench-spool-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(spoolDir)
	regSpool := prometheus.NewRegistry()
	srvSpool := server.New(server.Config{}, log, regSpool)
	svcSpool := marketplace.New(db, kr, al, marketplace.Config{RequestLogSpoolDir: spoolDir}, log, regSpool)
	srvSpool.Mount(svcSpool.Routes(marketplace.Auth{RequireUser: refuse, OptionalUser: pass, UserID: func(*fiber.Ctx) string { return "" }}))
	spoolBase, stopSpool, err := benchenv.ServeApp(srvSpool.App())
	if err != nil {
		return err
	}
	defer stopSpool()
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = svcSpool.Close(cctx)
	}()

	// Fixtures: a developer, a key with a limit far above the load (the
	// counter still runs on every request), a whitelist system with a player.
	u, err := db.CreateUser(ctx, store.NewUser{Email: "bench@example.com"})
	if err != nil {
		return err
	}
	created, err := svc.CreateAPIKey(ctx, u.ID, marketplace.APIKeyInput{Name: ptr("bench"), Scopes: []string{marketplace.ScopeWLRead}, RateLimitPerMinute: ptr(1_000_000)})
	if err != nil {
		return err
	}
	sys, err := svc.CreateSystem(ctx, u.ID, marketplace.SystemInput{Name: ptr("bench")})
	if err != nil {
		return err
	}
	if _, err := svc.CreateWhitelistUser(ctx, u.ID, sys.ID, marketplace.WhitelistUserInput{RobloxUserID: ptr(marketplace.RobloxID(42))}); err != nil {
		return err
	}

	// The bare side: plain Fiber, no middleware, the same single indexed
	// SELECT each endpoint's data needs.
	bare := fiber.New(fiber.Config{DisableStartupMessage: true})
	bare.Post("/verify", func(c *fiber.Ctx) error {
		hash, err := kr.MAC("api_key", []byte(c.Get("X-API-Key")))
		if err != nil {
			return err
		}
		var id, dev string
		var scopes []string
		var limit int
		if err := bareDB.Pool.QueryRow(c.UserContext(), `SELECT id, developer_id, scopes, rate_limit_per_minute
			FROM developer_api_keys WHERE key_hash = $1 AND revoked_at IS NULL`, hash).Scan(&id, &dev, &scopes, &limit); err != nil {
			return err
		}
		return c.JSON(fiber.Map{"valid": true, "keyId": id, "developerId": dev, "scopes": scopes, "rateLimit": fiber.Map{"limit": limit}})
	})
	bare.Post("/check", func(c *fiber.Ctx) error {
		var in struct {
			SystemID     string `json:"systemId"`
			RobloxUserID int64  `json:"robloxUserId"`
		}
		if err := json.Unmarshal(c.Body(), &in); err != nil {
			return err
		}
		var exp *time.Time
		var ok bool
		err := bareDB.Pool.QueryRow(c.UserContext(), `SELECT u.expires_at, w.is_active AND (u.expires_at IS NULL OR u.expires_at > now())
			FROM whitelist_users u JOIN whitelist_systems w ON w.id = u.system_id
			WHERE u.system_id = $1 AND u.roblox_user_id = $2 AND w.owner_id = $3`, in.SystemID, in.RobloxUserID, u.ID).Scan(&exp, &ok)
		if err != nil {
			return err
		}
		return c.JSON(fiber.Map{"whitelisted": ok, "expiresAt": exp})
	})
	bareBase, stopBare, err := benchenv.ServeApp(bare)
	if err != nil {
		return err
	}
	defer stopBare()

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute,
	}}
	checkBody, _ := json.Marshal(map[string]any{"systemId": sys.ID, "robloxUserId": 42})
	call := func(url string, body []byte, want string) func(context.Context) error {
		return func(ctx context.Context) error {
			return post(ctx, client, url, created.Key, body, want)
		}
	}
	type pair struct {
		name       string
		full, bare func(context.Context) error
		spooled    func(context.Context) error
	}
	pairs := []pair{
		{"POST /api/developer/verify", call(base+"/api/developer/verify", []byte("{}"), `"valid":true`), call(bareBase+"/verify", []byte("{}"), `"valid":true`),
			call(spoolBase+"/api/developer/verify", []byte("{}"), `"valid":true`)},
		{"POST /api/whitelist/check", call(base+"/api/whitelist/check", checkBody, `"whitelisted":true`), call(bareBase+"/check", checkBody, `"whitelisted":true`),
			call(spoolBase+"/api/whitelist/check", checkBody, `"whitelisted":true`)},
	}

	fmt.Printf("bench/marketplace: GOMAXPROCS=%d NumCPU=%d, concurrency %d, pool %d per side, %d rounds of %s, medians\n",
		runtime.GOMAXPROCS(0), runtime.NumCPU(), *conc, *conns, *rounds, *duration)
	for _, p := range pairs {
		if !strings.Contains(p.name, *only) {
			continue
		}
		var fulls, bares []load.Result
		var pgFull, pgBare, goFull, goBare []float64
		for range *rounds {
			opts := load.Options{Concurrency: *conc, Requests: 1 << 20, Duration: *duration, Warmup: 50}
			c0, g0 := load.ProcessCPU("postgres"), load.SelfCPU()
			bares = append(bares, load.Run(ctx, opts, p.bare))
			c1, g1 := load.ProcessCPU("postgres"), load.SelfCPU()
			fulls = append(fulls, load.Run(ctx, opts, p.full))
			c2, g2 := load.ProcessCPU("postgres"), load.SelfCPU()
			pgBare = append(pgBare, perRequest(c1-c0, bares[len(bares)-1]))
			pgFull = append(pgFull, perRequest(c2-c1, fulls[len(fulls)-1]))
			goBare = append(goBare, perRequest(g1-g0, bares[len(bares)-1]))
			goFull = append(goFull, perRequest(g2-g1, fulls[len(fulls)-1]))
		}
		full, bareR := load.MedianRound(fulls), load.MedianRound(bares)
		load.Print(os.Stdout, p.name, full, bareR)
		fmt.Printf("  CPU per request: PostgreSQL %.0fµs (bare %.0fµs), this process with its clients %.0fµs (bare %.0fµs) (medians)\n",
			load.Median(pgFull), load.Median(pgBare), load.Median(goFull), load.Median(goBare))
		if full.FirstError != nil || bareR.FirstError != nil {
			fmt.Printf("  first errors: full %v; bare %v\n", full.FirstError, bareR.FirstError)
		}
		// Half of the full endpoint's peak, paced open-loop; the same rate
		// against the bare handler for comparison.
		rate := full.RPS / 2
		h := paced(ctx, *conc, rate, *duration, p.full)
		hb := paced(ctx, *conc, rate, *duration, p.bare)
		load.Print(os.Stdout, "  at half peak ("+fmt.Sprintf("%.0f/s", rate)+")", h, hb)
		if *spool {
			// With the spool against without it (the baseline), alternating
			// rounds; the ratio of the medians is the spool's cost.
			var with, without []load.Result
			for range *rounds {
				opts := load.Options{Concurrency: *conc, Requests: 1 << 20, Duration: *duration, Warmup: 50}
				without = append(without, load.Run(ctx, opts, p.full))
				with = append(with, load.Run(ctx, opts, p.spooled))
			}
			load.Print(os.Stdout, "  with the spool", load.MedianRound(with), load.MedianRound(without))
		}
	}
	// Let the log writer catch up, then report how many rows it wrote.
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := svc.Close(cctx); err != nil {
		return err
	}
	if err := svcSpool.Close(cctx); err != nil {
		return err
	}
	var rows int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM api_request_logs`).Scan(&rows); err != nil {
		return err
	}
	fmt.Printf("api_request_logs rows written: %d\n", rows)
	return nil
}

// perRequest is cpu per request of r, in microseconds.
func perRequest(cpu time.Duration, r load.Result) float64 {
	if r.Requests == 0 {
		return 0
	}
	return float64(cpu.Microseconds()) / float64(r.Requests)
}

// paced calls fn at rate calls per second in all, on a fixed schedule (call
// n is due at start + n/rate; a worker late for its slot sends at once, so
// the schedule catches up instead of silently slowing down), for d, from
// conc workers. Latency is measured from the send.
func paced(ctx context.Context, conc int, rate float64, d time.Duration, fn func(context.Context) error) load.Result {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	interval := time.Duration(float64(time.Second) / rate)
	limit := int64(rate*d.Seconds()) + 1
	var next atomic.Int64
	start := time.Now()
	lat := make([][]time.Duration, conc)
	errs := make([]int, conc)
	var wg sync.WaitGroup
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1) - 1
				if n >= limit {
					return
				}
				if wait := time.Until(start.Add(time.Duration(n) * interval)); wait > 0 {
					select {
					case <-time.After(wait):
					case <-ctx.Done():
						return
					}
				}
				if ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				if err := fn(ctx); err != nil {
					if ctx.Err() == nil {
						errs[w]++
					}
					continue
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	var all []time.Duration
	r := load.Result{Elapsed: time.Since(start)}
	for w := range lat {
		all = append(all, lat[w]...)
		r.Errors += errs[w]
	}
	slices.Sort(all)
	r.Requests = len(all)
	r.RPS = float64(len(all)) / r.Elapsed.Seconds()
	r.P50, r.P90, r.P99 = load.Percentile(all, 50), load.Percentile(all, 90), load.Percentile(all, 99)
	return r
}

func refuse(c *fiber.Ctx) error { return fiber.ErrUnauthorized }
func pass(c *fiber.Ctx) error   { return c.Next() }

func ptr[T any](v T) *T { return &v }

func post(ctx context.Context, c *http.Client, url, key string, body []byte, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", key)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(raw), want) {
		return fmt.Errorf("%s: %d %s", req.URL.Path, resp.StatusCode, strings.TrimSpace(string(raw)))
	}
	return nil
}
