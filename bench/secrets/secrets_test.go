// Package secrets benchmarks secret reads over HTTP with the audit trail on
// (each read waits for its group-committed, hash-chained audit row) beside
// the same reads with the audit write skipped, in one run on one database,
// through the real bearer authentication. Goal: audited throughput at least
// half the unaudited.
//
// It also gives the CPU per audited read: this process (server and load
// generator, so an upper bound on the server's share) plus the PostgreSQL
// backends serving the benchmark's database, medians over the rounds.
// Goal: at most 350 µs (HashiCorp Vault KV v2 with a file audit device
// used 433 µs per read on this machine, see issue 19). The server logs
// every request at info through the redactor, as `serve` does.
// -cpuprofile gives the profile of the whole run.
//
//	go test -run '^$' -bench . -benchtime 1x ./bench/secrets/
//
// BENCH_SECRETS_REQUESTS (default 3000 per round, 5 rounds per side) and
// BENCH_SECRETS_CONCURRENCY (default 32) tune it.
package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/bench/load"
	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/policies"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/server/redact"
	"github.com/vectabase/vectabase/server/secrets"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
	"github.com/vectabase/vectabase/vault"
	"github.com/vectabase/vectabase/vault/audit"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// skipAudit is the baseline's recorder: it stores nothing.
type skipAudit struct{}

func (skipAudit) Record(context.Context, vectabase.AuditEvent) error { return nil }

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

func serve(b *testing.B, routes []server.Route) string {
	b.Helper()
	// The production logger: one JSON line per request through the
	// redactor, discarded.
	log := zerolog.New(redact.NewWriter(io.Discard)).With().Timestamp().Logger()
	srv := server.New(server.Config{}, log, prometheus.NewRegistry())
	srv.Mount(routes)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return "http://" + ln.Addr().String()
}

func BenchmarkSecretReadsHTTP(b *testing.B) {
	ctx := context.Background()
	db := pgtest.New(b)
	kr := keyringtest.New(b, db.Pool)
	al := audit.New(db, kr, zerolog.Nop(), nil)
	b.Cleanup(al.Close)
	pol, err := policies.AccessPolicy()
	if err != nil {
		b.Fatal(err)
	}
	audited := vault.New(db, kr, al, pol, vault.Config{}, nil)
	unaudited := vault.New(db, kr, skipAudit{}, pol, vault.Config{}, nil)
	a, err := auth.New(ctx, auth.Config{
		AccessTTL: time.Hour, RefreshTTL: time.Hour, Issuer: "vectabase",
		Argon2:        auth.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32},
		FailureWindow: time.Minute, AttemptWindow: time.Minute,
	}, db, kr, skipAudit{}, zerolog.Nop(), nil)
	if err != nil {
		b.Fatal(err)
	}
	withAudit := serve(b, append(a.Routes(), secrets.Routes(audited, a.RequireUser())...))
	withoutAudit := serve(b, secrets.Routes(unaudited, a.RequireUser()))

	concurrency := envInt("BENCH_SECRETS_CONCURRENCY", 32)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency, MaxConnsPerHost: concurrency}, Timeout: 10 * time.Second}
	post := func(path, body string, out any) {
		resp, err := client.Post(withAudit+path, "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode >= 300 {
			raw, _ := io.ReadAll(resp.Body)
			b.Fatalf("POST %s = %d %s", path, resp.StatusCode, raw)
		}
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	var reg struct{ User struct{ ID string } }
	post("/api/auth/register", `{"email":"bench@example.com","password":"bench-password-1"}`, &reg)
	if _, err := db.Pool.Exec(ctx, `UPDATE profiles SET role = 'admin' WHERE id = $1`, reg.User.ID); err != nil {
		b.Fatal(err)
	}
	var login struct{ Token string }
	post("/api/auth/login", `{"email":"bench@example.com","password":"bench-password-1"}`, &login)
	if _, err := audited.Put(ctx, vault.LocalOperator, "bench/api_key", []byte(strings.Repeat("s", 64)), nil); err != nil {
		b.Fatal(err)
	}

	read := func(base string) func(context.Context) error {
		return func(ctx context.Context) error {
			req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/secrets/bench%2Fapi_key", nil)
			req.Header.Set("Authorization", "Bearer "+login.Token)
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return errors.New(resp.Status)
			}
			return nil
		}
	}
	// Rounds end by request count, not by time: a time limit cancels the
	// requests in flight, and the torn-down connections stalled the next
	// round for seconds on this sandbox's loopback.
	opts := load.Options{Concurrency: concurrency, Requests: envInt("BENCH_SECRETS_REQUESTS", 3000), Duration: time.Minute, Warmup: 100}
	before := auditRows(b, db)
	// Alternate rounds so drift on a shared machine hits both sides alike;
	// report medians.
	const rounds = 5
	var rpsA, rpsU, p99A, p99U []float64
	var procA, pgA, procU, pgU []float64
	// run is one side's round with its CPU per call: this process, and
	// the database's backends (the pool's connections, opened by the
	// warm-up).
	run := func(base string, proc, pg *[]float64) load.Result {
		pids := backendPIDs(b, db)
		c0, p0 := load.SelfCPU(), load.PIDsCPU(pids)
		r := load.Run(ctx, opts, read(base))
		c1, p1 := load.SelfCPU(), load.PIDsCPU(pids)
		n := float64(r.Requests + opts.Warmup)
		*proc = append(*proc, float64(c1-c0)/n)
		*pg = append(*pg, float64(p1-p0)/n)
		return r
	}
	// Open the pool's connections before the first measured round, so
	// backendPIDs sees all of them.
	for _, base := range []string{withAudit, withoutAudit} {
		load.Run(ctx, load.Options{Concurrency: concurrency, Requests: 4 * concurrency, Duration: time.Minute}, read(base))
	}
	for round := range rounds {
		// Swap which side goes first every round, so neither always runs
		// on the warmer (or the more crowded) half.
		var u, w load.Result
		if round%2 == 0 {
			u = run(withoutAudit, &procU, &pgU)
			w = run(withAudit, &procA, &pgA)
		} else {
			w = run(withAudit, &procA, &pgA)
			u = run(withoutAudit, &procU, &pgU)
		}
		if u.Errors > 0 || w.Errors > 0 {
			b.Fatalf("errors: unaudited %d (%v), audited %d (%v)", u.Errors, u.FirstError, w.Errors, w.FirstError)
		}
		load.Print(os.Stdout, fmt.Sprintf("round %d audited reads", round+1), w, u)
		rpsA, rpsU = append(rpsA, w.RPS), append(rpsU, u.RPS)
		p99A, p99U = append(p99A, float64(w.P99)), append(p99U, float64(u.P99))
	}
	ra, ru := load.Median(rpsA), load.Median(rpsU)
	fmt.Printf("median over %d rounds, %d connections: audited %.0f req/s p99 %v | unaudited %.0f req/s p99 %v | ratio %.2f (goal >= 0.50)\n",
		rounds, concurrency, ra, time.Duration(load.Median(p99A)).Round(time.Microsecond), ru,
		time.Duration(load.Median(p99U)).Round(time.Microsecond), ra/ru)
	us := func(v []float64) float64 { return load.Median(v) / 1e3 }
	fmt.Printf("CPU per read (median): audited %.0f µs in this process + %.0f µs in PostgreSQL = %.0f µs (goal <= 350; Vault 433) | unaudited %.0f + %.0f = %.0f µs\n",
		us(procA), us(pgA), us(procA)+us(pgA), us(procU), us(pgU), us(procU)+us(pgU))
	b.ReportMetric(us(procA)+us(pgA), "audited-cpu-µs/read")
	rows := auditRows(b, db) - before
	var txs int
	_ = db.Pool.QueryRow(ctx, `SELECT count(DISTINCT xmin::text) FROM audit_logs`).Scan(&txs)
	fmt.Printf("audit rows written %d in about %d transactions (%.1f rows per commit)\n", rows, txs, float64(rows)/float64(max(txs, 1)))
	b.ReportMetric(ra, "audited-req/s")
	b.ReportMetric(ru, "unaudited-req/s")
	b.ReportMetric(ra/ru, "ratio")
	if res, err := al.Verify(ctx); err != nil || !res.OK {
		b.Fatalf("audit chain after the run: %+v, %v", res, err)
	}
}

// backendPIDs are the PostgreSQL backends connected to the benchmark's
// database: its share of the server's CPU, without the other databases
// and clusters of a shared machine.
func backendPIDs(b *testing.B, db *store.DB) []int {
	b.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	var pids []int
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			b.Fatal(err)
		}
		pids = append(pids, pid)
	}
	return pids
}

func auditRows(b *testing.B, db *store.DB) int {
	b.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_logs`).Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}
