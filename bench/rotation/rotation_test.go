// Package rotation_test benchmarks DEK rotation (issue 8): re-encryption of
// a million 200-byte values beside a plain SQL `UPDATE t SET col = col`
// over the same rows in the same run, and the API's p99 latency while the
// throttled worker runs beside its p99 when idle.
//
// Run it once (it sizes itself, not by b.N):
//
//	go test -run '^$' -bench Rotation -benchtime 1x -timeout 30m ./bench/rotation
//
// BENCH_ROTATION_VALUES overrides the number of values (default 1,000,000).
package rotation_test

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/bench/load"
	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/rotation"
	"github.com/vectabase/vectabase/server/rotation/rotationtest"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

type nopAuditor struct{}

func (nopAuditor) Record(context.Context, vectabase.AuditEvent) error { return nil }

func BenchmarkRotation(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("BENCH_ROTATION_VALUES"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	ctx := context.Background()
	db := pgtest.New(b)
	kr := keyringtest.New(b, db.Pool)
	exec := func(sql string) {
		if _, err := db.Pool.Exec(ctx, sql); err != nil {
			b.Fatalf("%s: %v", sql, err)
		}
	}

	start := time.Now()
	f := rotationtest.Seed(b, db.Pool, kr, n, 200, 10)
	exec(`VACUUM ANALYZE products`)
	fmt.Printf("seeded %d values of 200 bytes in %v\n", n, time.Since(start).Round(time.Millisecond))

	// Baseline: rewrite every row in one statement, no crypto, no batching.
	start = time.Now()
	exec(`UPDATE products SET download_url = download_url`)
	baseline := time.Since(start)
	exec(`VACUUM ANALYZE products`)
	baseRate := float64(n) / baseline.Seconds()
	fmt.Printf("baseline UPDATE products SET download_url = download_url: %v, %.0f rows/s\n", baseline.Round(time.Millisecond), baseRate)

	// Unthrottled re-encryption, for throughput: as `vectabase keys
	// reencrypt` with ROTATION_WORKERS=2 (the machine has two cores).
	fast := rotation.Config{BatchSize: 1000, BatchPause: 0, Settle: 0, PollInterval: 50 * time.Millisecond, Workers: 2, ShardRows: 50000}
	rate, pass1 := rotate(b, db, kr, fast)
	fmt.Printf("re-encryption (2 workers, batch 1000, no pause): pass 1 %.0f values/s (%.0f%% of baseline), whole job incl. final pass %.0f values/s (%.0f%%)\n",
		pass1, 100*pass1/baseRate, rate, 100*rate/baseRate)
	exec(`VACUUM ANALYZE products`)

	// The API: read a product (and one write in ten), through the keyring.
	srv := server.New(server.Config{}, zerolog.Nop(), prometheus.NewRegistry())
	srv.Mount(apiRoutes(db, kr, f.ProductIDs))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.App().Listener(ln) }()
	defer srv.App().Shutdown()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	base := "http://" + ln.Addr().String()
	var calls atomic.Int64
	call := func(ctx context.Context) error {
		i := calls.Add(1)
		method := http.MethodGet
		if i%10 == 0 {
			method = http.MethodPost
		}
		req, _ := http.NewRequestWithContext(ctx, method, base+"/bench/products/"+strconv.Itoa(rand.IntN(n)), nil)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	// Latency is measured in alternating rounds: idle, then with the
	// throttled worker running as `serve` runs it (defaults: one worker,
	// batch 200, pause 20 ms), stopped again at the end of the round (the
	// job resumes in the next one). Each side's median round is compared,
	// so the load of a shared machine falls on both sides alike.
	const rounds = 5
	opts := load.Options{Concurrency: 8, Requests: 1 << 30, Duration: 4 * time.Second, Rate: 400, Warmup: 100}
	throttled := rotation.Config{BatchSize: 200, BatchPause: 20 * time.Millisecond, Settle: 0, PollInterval: 50 * time.Millisecond}
	if s := os.Getenv("BENCH_ROTATION_BATCH"); s != "" {
		throttled.BatchSize, _ = strconv.Atoi(s)
	}
	if s := os.Getenv("BENCH_ROTATION_PAUSE"); s != "" {
		throttled.BatchPause, _ = time.ParseDuration(s)
	}
	svc, err := rotation.New(throttled, db, kr, nopAuditor{}, zerolog.Nop(), nil)
	if err != nil {
		b.Fatal(err)
	}
	job, err := svc.RotateDEK(ctx, rotation.LocalOperator)
	if err != nil {
		b.Fatal(err)
	}
	var idleRs, duringRs []load.Result
	var workTime time.Duration
	for r := range rounds {
		res := load.Run(ctx, opts, call)
		idleRs = append(idleRs, res)
		fmt.Printf("  round %d idle:   p50 %-9v p99 %-9v %4.0f req/s, %d errors\n", r+1,
			res.P50.Round(time.Microsecond), res.P99.Round(time.Microsecond), res.RPS, res.Errors)
		wctx, cancel := context.WithCancel(ctx)
		stopped := make(chan struct{})
		start := time.Now()
		go func() {
			defer close(stopped)
			_, _ = svc.RunJob(wctx, job.ID, nil)
		}()
		res = load.Run(ctx, opts, call)
		cancel()
		<-stopped
		workTime += time.Since(start)
		duringRs = append(duringRs, res)
		fmt.Printf("  round %d during: p50 %-9v p99 %-9v %4.0f req/s, %d errors\n", r+1,
			res.P50.Round(time.Microsecond), res.P99.Round(time.Microsecond), res.RPS, res.Errors)
	}
	progress, err := svc.Progress(ctx)
	if err != nil {
		b.Fatal(err)
	}
	throttledRate := float64(progress.Job.Reencrypted) / workTime.Seconds()
	median := func(rs []load.Result) load.Result {
		rs = slices.Clone(rs)
		slices.SortFunc(rs, func(a, b load.Result) int { return cmp.Compare(a.P99, b.P99) })
		return rs[len(rs)/2]
	}
	idle, during := median(idleRs), median(duringRs)
	load.Print(os.Stdout, "API idle (median round)", idle, idle)
	load.Print(os.Stdout, "API during rotation", during, idle)
	fmt.Printf("API p99 during rotation / idle (medians of %d rounds each): %.2f (p50 %.2f)\n", rounds,
		float64(during.P99)/float64(idle.P99), float64(during.P50)/float64(idle.P50))
	fmt.Printf("throttled re-encryption (batch %d, pause %v) beside the API: %.0f values/s (%.0f%% of baseline)\n",
		throttled.BatchSize, throttled.BatchPause, throttledRate, 100*throttledRate/baseRate)

	// Finish the job (unmeasured) so the run ends with every value under
	// the new key.
	finish, err := rotation.New(fast, db, kr, nopAuditor{}, zerolog.Nop(), nil)
	if err != nil {
		b.Fatal(err)
	}
	if res, err := finish.RunJob(ctx, job.ID, nil); err != nil || res.State != store.JobDone {
		b.Fatalf("finishing the job: %s, %v", res.State, err)
	}

	b.ReportMetric(baseRate, "baseline-rows/s")
	b.ReportMetric(pass1, "reencrypt-values/s")
	b.ReportMetric(100*pass1/baseRate, "%-of-baseline")
	b.ReportMetric(float64(during.P99)/float64(idle.P99), "p99-ratio")
}

// rotate makes a new primary and runs one worker until the job is done,
// returning the whole job's and the first pass's values per second.
func rotate(b *testing.B, db *store.DB, kr *keyring.Keyring, cfg rotation.Config) (whole, pass1 float64) {
	ctx := context.Background()
	svc, err := rotation.New(cfg, db, kr, nopAuditor{}, zerolog.Nop(), nil)
	if err != nil {
		b.Fatal(err)
	}
	job, err := svc.RotateDEK(ctx, rotation.LocalOperator)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	var pass1End time.Time
	var pass1Values int64
	res, err := svc.RunJob(ctx, job.ID, func(p rotation.Progress) {
		if pass1End.IsZero() && p.Job != nil && p.Job.Pass > 1 {
			pass1End, pass1Values = time.Now(), p.Job.Reencrypted
		}
	})
	if err != nil || res.State != store.JobDone {
		b.Fatalf("RunJob = %s, %v", res.State, err)
	}
	elapsed := time.Since(start)
	if pass1End.IsZero() {
		pass1End, pass1Values = time.Now(), res.Reencrypted
	}
	return float64(res.Reencrypted) / elapsed.Seconds(), float64(pass1Values) / pass1End.Sub(start).Seconds()
}

// apiRoutes is an API-shaped handler: GET decrypts one product's
// download_url; POST writes a new one through the keyring.
func apiRoutes(db *store.DB, kr *keyring.Keyring, ids []string) []server.Route {
	loc := func(id string) keyring.Location {
		return keyring.Location{Table: "products", Column: "download_url", RowID: id}
	}
	product := func(c *fiber.Ctx) (string, error) {
		i, err := strconv.Atoi(c.Params("i"))
		if err != nil || i < 0 || i >= len(ids) {
			return "", vectabase.Errorf(vectabase.ENOTFOUND, "no such product")
		}
		return ids[i], nil
	}
	return []server.Route{
		{Method: fiber.MethodGet, Path: "/bench/products/:i", Handler: func(c *fiber.Ctx) error {
			id, err := product(c)
			if err != nil {
				return err
			}
			var ct []byte
			if err := db.Pool.QueryRow(c.UserContext(), `SELECT download_url FROM products WHERE id = $1`, id).Scan(&ct); err != nil {
				return err
			}
			pt, err := kr.Decrypt(c.UserContext(), loc(id), ct)
			if err != nil {
				return err
			}
			return c.JSON(fiber.Map{"id": id, "downloadUrlBytes": len(pt)})
		}},
		{Method: fiber.MethodPost, Path: "/bench/products/:i", Handler: func(c *fiber.Ctx) error {
			id, err := product(c)
			if err != nil {
				return err
			}
			ct, err := kr.Encrypt(c.UserContext(), loc(id), rotationtest.Value(rand.IntN(1000), 200))
			if err != nil {
				return err
			}
			if _, err := db.Pool.Exec(c.UserContext(), `UPDATE products SET download_url = $1, updated_at = now() WHERE id = $2`, ct, id); err != nil {
				return err
			}
			return c.JSON(fiber.Map{"id": id})
		}},
	}
}
