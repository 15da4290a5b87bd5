// Command credits benchmarks obfuscation credit consumption,
// POST /api/developer/obfuscation/usage, over loopback HTTP with everything
// on (API-key look-up with the plan join, the shared rate-limit counter,
// the consumption function, its audit row through the group-committed
// audit log, request logs, metrics), from 16 concurrent callers on ONE key
// and one balance, each request with its own Idempotency-Key. Beside it, in
// alternating rounds of the same run, it measures POST /api/developer/verify
// on the same key and server: the cheapest API-key route, the baseline.
// Medians of the rounds are reported.
//
// Goal: at least 2,000 consumptions/s, and the balance exact afterwards
// (start - units of every 201 = end, and one usage row per 201).
//
// The per-key rate limit would stop 2,000/s on one key at any realistic
// limit (2,000/s is 120,000/min): the bench key is created with
// rateLimitPerMinute 1,000,000 and its developer has no subscription (no
// PLAN_DEFAULT), so the counter still runs on every request but never
// refuses one. A production developer needing this rate needs a plan and
// key limit that allow it.
//
// It uses DATABASE_URL when set (migrated and written to: use a throwaway
// database), else a private PostgreSQL cluster in a temporary directory,
// removed at the end. Every run is bounded in time and count.
//
//	go run ./bench/credits [-rounds 3] [-duration 3s] [-concurrency 16]
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
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

// goal is the target for consumptions per second on one key.
const goal = 2000

func main() {
	if err := realMain(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "bench/credits:", err)
		os.Exit(1)
	}
}

func realMain(ctx context.Context) error {
	rounds := flag.Int("rounds", 3, "alternating rounds of each measurement; medians are reported")
	duration := flag.Duration("duration", 3*time.Second, "length of each round")
	conc := flag.Int("concurrency", 16, "concurrent clients, all on one key")
	conns := flag.Int("conns", 8, "database pool size")
	flag.Parse()

	env, cleanup, err := benchenv.Open(ctx, int32(*conns))
	if err != nil {
		return err
	}
	defer cleanup()
	db, kr := env.DB, env.KR
	log := zerolog.New(io.Discard)
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

	u, err := db.CreateUser(ctx, store.NewUser{Email: "bench@example.com"})
	if err != nil {
		return err
	}
	limit := 1_000_000
	created, err := svc.CreateAPIKey(ctx, u.ID, marketplace.APIKeyInput{Name: ptr("bench"), Scopes: []string{marketplace.ScopeObfuscate}, RateLimitPerMinute: &limit})
	if err != nil {
		return err
	}
	repo := store.NewMarketplace(db, kr)
	const funds = 100_000_000
	if _, err := repo.GrantCredits(ctx, u.ID, funds, "bench"); err != nil {
		return err
	}

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute,
	}}
	var seq, consumed atomic.Int64
	// Requests run to completion on their own context: a consumption cut
	// off by the round's deadline may still commit, and the balance check
	// must count it.
	consume := func(context.Context) error {
		rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		idem := "bench-" + strconv.FormatInt(seq.Add(1), 10)
		err := post(rctx, client, base+"/api/developer/obfuscation/usage", created.Key, idem, []byte(`{"units":1}`), http.StatusCreated, `"units":1`)
		if err == nil {
			consumed.Add(1)
		}
		return err
	}
	verify := func(ctx context.Context) error {
		return post(ctx, client, base+"/api/developer/verify", created.Key, "", []byte("{}"), http.StatusOK, `"valid":true`)
	}

	fmt.Printf("bench/credits: GOMAXPROCS=%d NumCPU=%d, concurrency %d on one key, pool %d, %d rounds of %s, medians\n",
		runtime.GOMAXPROCS(0), runtime.NumCPU(), *conc, *conns, *rounds, *duration)
	var uses, verifies []load.Result
	for range *rounds {
		opts := load.Options{Concurrency: *conc, Requests: 1 << 20, Duration: *duration, Warmup: 20}
		verifies = append(verifies, load.Run(ctx, opts, verify))
		uses = append(uses, load.Run(ctx, opts, consume))
	}
	use, base0 := load.MedianRound(uses), load.MedianRound(verifies)
	load.Print(os.Stdout, "POST obfuscation/usage", use, base0)
	fmt.Printf("  baseline: POST /api/developer/verify on the same key and server\n")
	if use.FirstError != nil || base0.FirstError != nil {
		fmt.Printf("  first errors: usage %v; verify %v\n", use.FirstError, base0.FirstError)
	}
	rps := make([]float64, len(uses))
	for i, r := range uses {
		rps[i] = r.RPS
	}
	verdict := "MET"
	if load.Median(rps) < goal {
		verdict = "NOT MET"
	}
	fmt.Printf("  goal >= %d consumptions/s on one key: median %.0f/s (rounds %s): %s\n", goal, load.Median(rps), roundsOf(uses), verdict)

	// The balance is exact: every 201 consumed one unit, once.
	bal, err := repo.CreditBalance(ctx, u.ID)
	if err != nil {
		return err
	}
	var rows int64
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM obfuscation_usage WHERE developer_id = $1`, u.ID).Scan(&rows); err != nil {
		return err
	}
	n := consumed.Load()
	exact := int64(bal) == funds-n && rows == n
	fmt.Printf("  balance: %d granted, %d consumptions answered 201, %d usage rows, balance %d: exact %v\n", funds, n, rows, bal, exact)
	if !exact {
		return fmt.Errorf("balance %d and %d usage rows after %d consumptions of 1 from %d", bal, rows, n, funds)
	}
	return nil
}

func roundsOf(rs []load.Result) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%.0f", r.RPS))
	}
	return strings.Join(parts, ", ")
}

func refuse(*fiber.Ctx) error { return fiber.ErrUnauthorized }
func pass(c *fiber.Ctx) error { return c.Next() }
func ptr[T any](v T) *T       { return &v }

func post(ctx context.Context, c *http.Client, url, key, idem string, body []byte, status int, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", key)
	if idem != "" {
		req.Header.Set("Idempotency-Key", idem)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != status || !strings.Contains(string(raw), want) {
		return fmt.Errorf("%s: %d %s", req.URL.Path, resp.StatusCode, strings.TrimSpace(string(raw)))
	}
	return nil
}
