// Command serve measures a started `vectabase serve` from the outside, as
// an operator sees it: the built binary in its own process against a
// throwaway database, so its CPU and memory are its own and not the load
// generator's.
//
//   - idle RSS: VmRSS of the server a few seconds after it became ready
//     (goal: under 40 MB), and its RSS under the read load below;
//   - CPU per audited secret read, GET /api/secrets/:name as the admin
//     (bearer token, policy, decryption, hash-chained audit row): the
//     server process plus the PostgreSQL backends serving its database
//     (goal: at most 350 µs; HashiCorp Vault KV v2 with a file audit device
//     used 433 µs on this machine, issue 19), beside the same figures for
//     GET /healthz, an HTTP round trip that does nothing, measured in
//     alternating rounds of the same run. Medians are reported.
//
// It uses DATABASE_URL when set (migrated and written to: use a throwaway
// one), else a private PostgreSQL cluster in a temporary directory, removed
// at the end. Every run is bounded in time and count. Run it from the
// repository root:
//
//	go run ./bench/serve [-rounds 5] [-requests 3000] [-concurrency 16] [-settle 3s]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/bench/benchenv"
	"github.com/vectabase/vectabase/bench/load"
)

const (
	adminEmail    = "bench-serve@example.com"
	adminPassword = "bench-serve-password-1"
)

func main() {
	if err := realMain(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "bench/serve:", err)
		os.Exit(1)
	}
}

func realMain(ctx context.Context) error {
	rounds := flag.Int("rounds", 5, "alternating rounds of each side; medians are reported")
	requests := flag.Int("requests", 3000, "requests per round and side")
	conc := flag.Int("concurrency", 16, "concurrent clients")
	settle := flag.Duration("settle", 3*time.Second, "wait after ready before reading idle RSS")
	flag.Parse()
	if _, err := os.Stat("go.mod"); err != nil {
		return errors.New("run from the repository root: go run ./bench/serve")
	}

	srv, err := benchenv.Boot(ctx, "bench-serve",
		"ADMIN_EMAIL="+adminEmail, "ADMIN_PASSWORD="+adminPassword,
	)
	if err != nil {
		return err
	}
	defer srv.Close()
	dbURL := srv.DatabaseURL
	time.Sleep(*settle)
	idle := load.RSS(srv.PID())
	idleParts := rssParts(srv.PID())

	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer db.Close(context.Background())

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: *conc, MaxConnsPerHost: *conc}}
	token, err := benchenv.Login(ctx, client, srv.Base, adminEmail, adminPassword)
	if err != nil {
		return err
	}
	if code, err := do(ctx, client, "PUT", srv.Base+"/api/secrets/bench_serve_key", token, `{"value":"`+strings.Repeat("s", 64)+`"}`); err != nil || code != 201 {
		return fmt.Errorf("PUT secret = %d, %v", code, err)
	}
	call := func(method, url, tok string) func(context.Context) error {
		return func(ctx context.Context) error {
			code, err := do(ctx, client, method, url, tok, "")
			if err != nil {
				return err
			}
			if code != 200 {
				return fmt.Errorf("%s %s = %d", method, url, code)
			}
			return nil
		}
	}
	read := call("GET", srv.Base+"/api/secrets/bench_serve_key", token)
	health := call("GET", srv.Base+"/healthz", "")
	opts := load.Options{Concurrency: *conc, Requests: *requests, Duration: time.Minute}
	// Warm up: the server's pool opens its connections, so the backends
	// listed below are all of them.
	load.Run(ctx, load.Options{Concurrency: *conc, Requests: 20 * *conc, Duration: time.Minute}, read)

	type side struct {
		proc, pg, rps []float64
		last          load.Result
	}
	var reads, healths side
	var peak int64
	run := func(s *side, fn func(context.Context) error) error {
		pids, err := backendPIDs(ctx, db)
		if err != nil {
			return err
		}
		c0, p0 := load.PIDsCPU([]int{srv.PID()}), load.PIDsCPU(pids)
		r := load.Run(ctx, opts, fn)
		c1, p1 := load.PIDsCPU([]int{srv.PID()}), load.PIDsCPU(pids)
		if r.Errors > 0 {
			return fmt.Errorf("%d errors, first %v", r.Errors, r.FirstError)
		}
		n := float64(r.Requests)
		s.proc = append(s.proc, float64(c1-c0)/n/1e3)
		s.pg = append(s.pg, float64(p1-p0)/n/1e3)
		s.rps = append(s.rps, r.RPS)
		s.last = r
		peak = max(peak, load.RSS(srv.PID()))
		return nil
	}
	for i := range *rounds {
		first, second := &reads, &healths
		f1, f2 := read, health
		if i%2 == 1 {
			first, second, f1, f2 = second, first, f2, f1
		}
		if err := run(first, f1); err != nil {
			return err
		}
		if err := run(second, f2); err != nil {
			return err
		}
		fmt.Printf("round %d: read %.0f µs + PostgreSQL %.0f µs, %.0f req/s | healthz %.0f µs + %.0f µs, %.0f req/s\n", i+1,
			reads.proc[i], reads.pg[i], reads.rps[i], healths.proc[i], healths.pg[i], healths.rps[i])
	}
	var rows int64
	_ = db.QueryRow(ctx, `SELECT count(*) FROM audit_logs WHERE action = 'secret.read'`).Scan(&rows)
	m := load.Median
	rp, rg, hp := m(reads.proc), m(reads.pg), m(healths.proc)
	fmt.Printf("CPU per audited secret read (median of %d rounds): server %.0f µs + PostgreSQL %.0f µs = %.0f µs (goal <= 350; Vault 433) | GET /healthz %.0f µs | read/healthz %.2f\n",
		*rounds, rp, rg, rp+rg, hp, rp/max(hp, 1))
	fmt.Printf("throughput (median): reads %.0f req/s, healthz %.0f req/s, ratio %.2f; secret.read audit rows %d\n",
		m(reads.rps), m(healths.rps), m(reads.rps)/max(m(healths.rps), 1), rows)
	fmt.Printf("RSS: idle %.1f MB (goal < 40 MB; %s), under load peak %.1f MB\n", float64(idle)/1e6, idleParts, float64(peak)/1e6)
	return nil
}

func do(ctx context.Context, c *http.Client, method, url, token, body string) (int, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// backendPIDs are the PostgreSQL backends connected to the server's
// database, leaving out this harness's own connection.
func backendPIDs(ctx context.Context, db *pgx.Conn) ([]int, error) {
	rows, err := db.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int])
}

// rssParts is the split of a process's RSS from /proc/<pid>/status: anonymous
// memory (heap, stacks) and file pages (the binary's code and data).
func rssParts(pid int) string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "no /proc"
	}
	var parts []string
	for _, line := range strings.Split(string(raw), "\n") {
		for _, k := range []string{"RssAnon:", "RssFile:"} {
			if rest, ok := strings.CutPrefix(line, k); ok {
				parts = append(parts, strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(k, "Rss"), ":"))+" "+strings.Join(strings.Fields(rest), " "))
			}
		}
	}
	return strings.Join(parts, ", ")
}
