// Command import benchmarks `vectabase import-supabase` against the
// baseline any operator could use instead: pg_dump -Fc of the same source
// and pg_restore into a fresh database, measured in the same run on the
// same server. It loads generate.sql at -scale users (20000 gives about
// 1.05 million rows), then prints both times, their ratio, rows per second
// and the importer's peak resident memory.
//
//	go run ./bench/import [-scale 20000] [-rounds 3]
//
// The source is the repository's own fixture (store/supabase/supabasetest).
//
// The server is BENCH_DATABASE_URL (a role that may create databases) or a
// throwaway cluster from the system's PostgreSQL binaries. The goal is at
// most 2x the dump-and-restore time and under 200 MB peak memory.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/vectabase/vectabase/store/supabase/supabasetest"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/migrations"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgcluster"
	"github.com/vectabase/vectabase/store/supabase"
)

func main() {
	if err := realMain(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/import:", err)
		os.Exit(1)
	}
}

func realMain() error {
	scale := flag.Int("scale", 20000, "generate.sql scale (users)")
	nRounds := flag.Int("rounds", 3, "rounds of baseline and import")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()

	tmp, err := os.MkdirTemp("", "vectabase-bench-import-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	server, binDir, stop, err := startServer(ctx)
	if err != nil {
		return err
	}
	defer stop()
	dbURL := func(name string) string {
		u, _ := url.Parse(server)
		u.Path = "/" + name
		return u.String()
	}
	admin, err := pgx.Connect(ctx, server)
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	suffix := fmt.Sprint(time.Now().UnixNano())
	createDB := func(name string) error {
		_, err := admin.Exec(ctx, "CREATE DATABASE "+name)
		return err
	}
	dropDB := func(name string) {
		_, _ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	}
	src := "bench_src_" + suffix
	if err := createDB(src); err != nil {
		return err
	}
	defer dropDB(src)

	// The source: schema.sql and generate.sql at the scale asked.
	fmt.Printf("loading generate.sql at scale %d ...\n", *scale)
	t0 := time.Now()
	schema, genSQL := supabasetest.Schema, supabasetest.Generate(*scale)
	sc, err := pgx.Connect(ctx, dbURL(src))
	if err != nil {
		return err
	}
	for _, s := range []string{schema, genSQL} {
		if _, err := sc.Exec(ctx, s); err != nil {
			sc.Close(ctx)
			return fmt.Errorf("load source: %w", err)
		}
	}
	var sourceRows int64
	err = sc.QueryRow(ctx, `SELECT (SELECT count(*) FROM auth.users) + (SELECT count(*) FROM auth.identities) + (SELECT count(*) FROM vault.secrets)
		+ (SELECT sum((xpath('/row/c/text()', query_to_xml('SELECT count(*) AS c FROM public.' || quote_ident(tablename), false, true, '')))[1]::text::bigint)
		   FROM pg_tables WHERE schemaname = 'public')`).Scan(&sourceRows)
	sc.Close(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("source: %d rows, loaded in %s\n\n", sourceRows, time.Since(t0).Round(time.Millisecond))

	keyPath := filepath.Join(tmp, "master.key")
	if err := local.GenerateKeyFile(keyPath); err != nil {
		return err
	}
	kek, err := local.NewFromFile(keyPath)
	if err != nil {
		return err
	}

	// Rounds alternate the baseline and the import, each into a fresh
	// database, so both see the same machine; medians damp the noise of a
	// shared host.
	var rounds []round
	var last *supabase.Report
	for i := 1; i <= *nRounds; i++ {
		var r round
		restored, target := fmt.Sprintf("bench_restore_%s_%d", suffix, i), fmt.Sprintf("bench_target_%s_%d", suffix, i)

		// Baseline: pg_dump -Fc, then pg_restore into a fresh database.
		if err := createDB(restored); err != nil {
			return err
		}
		dump := filepath.Join(tmp, "source.dump")
		t1 := time.Now()
		if out, err := exec.CommandContext(ctx, filepath.Join(binDir, "pg_dump"), "-Fc", "-f", dump, "-d", dbURL(src)).CombinedOutput(); err != nil {
			return fmt.Errorf("pg_dump: %v: %s", err, out)
		}
		r.dump = time.Since(t1)
		t2 := time.Now()
		if out, err := exec.CommandContext(ctx, filepath.Join(binDir, "pg_restore"), "--no-owner", "-d", dbURL(restored), dump).CombinedOutput(); err != nil {
			return fmt.Errorf("pg_restore: %v: %s", err, out)
		}
		r.restore = time.Since(t2)
		dropDB(restored)
		_ = os.Remove(dump)

		// The import, into a migrated database with a local keyring.
		if err := createDB(target); err != nil {
			return err
		}
		rep, peak, took, err := importOnce(ctx, dbURL(target), dbURL(src), kek)
		dropDB(target)
		if err != nil {
			return err
		}
		r.imp, r.peakKB, last = took, peak, rep
		rounds = append(rounds, r)
		fmt.Printf("round %d: dump %s + restore %s = %s; import %s (%.2fx); import peak RSS %.1f MB\n", i,
			r.dump.Round(time.Millisecond), r.restore.Round(time.Millisecond), (r.dump + r.restore).Round(time.Millisecond),
			r.imp.Round(time.Millisecond), r.imp.Seconds()/(r.dump+r.restore).Seconds(), float64(r.peakKB)/1024)
	}

	med := func(f func(round) float64) float64 {
		v := make([]float64, len(rounds))
		for i, r := range rounds {
			v[i] = f(r)
		}
		sort.Float64s(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	dumpS := med(func(r round) float64 { return r.dump.Seconds() })
	restoreS := med(func(r round) float64 { return r.restore.Seconds() })
	baseS := med(func(r round) float64 { return (r.dump + r.restore).Seconds() })
	impS := med(func(r round) float64 { return r.imp.Seconds() })
	ratio := med(func(r round) float64 { return r.imp.Seconds() / (r.dump + r.restore).Seconds() })
	var peak int64
	for _, r := range rounds {
		peak = max(peak, r.peakKB)
	}
	rows := last.Rows()
	fmt.Printf("\nmedians over %d rounds          %12s %14s\n", len(rounds), "time", "rows/s")
	fmt.Printf("%-34s %11.3fs %14.0f\n", "baseline: pg_dump -Fc", dumpS, float64(sourceRows)/dumpS)
	fmt.Printf("%-34s %11.3fs %14.0f\n", "baseline: pg_restore", restoreS, float64(sourceRows)/restoreS)
	fmt.Printf("%-34s %11.3fs %14.0f\n", "baseline: dump + restore", baseS, float64(sourceRows)/baseS)
	fmt.Printf("%-34s %11.3fs %14.0f\n", "vectabase import-supabase", impS, float64(rows)/impS)
	fmt.Printf("\nimport / (dump + restore), median of per-round ratios = %.2fx (goal <= 2x): %s\n", ratio, verdict(ratio <= 2))
	fmt.Printf("import peak RSS (VmHWM), largest round = %.1f MB (goal < 200 MB): %s\n", float64(peak)/1024, verdict(peak < 200*1024))
	failed := 0
	for _, c := range last.Checks {
		if !c.OK {
			failed++
		}
	}
	var read, skipped int64
	for _, t := range last.Tables {
		read, skipped = read+t.Read, skipped+t.Skipped
	}
	fmt.Printf("source rows %d; import read %d (Vault secrets twice: secrets and versions), wrote %d, skipped %d (email identities); %d checks, %d failed; committed %v\n",
		sourceRows, read, rows, skipped, len(last.Checks), failed, last.Committed)
	fmt.Println("\nper table (last round):")
	for _, t := range last.Tables {
		fmt.Printf("  %-56s %9d rows %9s\n", t.Source+" -> "+t.Target, t.Written, (time.Duration(t.DurationMS) * time.Millisecond).String())
	}
	return nil
}

type round struct {
	dump, restore, imp time.Duration
	peakKB             int64
}

// importOnce migrates target, opens a keyring on it and imports src,
// returning the report, the import's peak RSS (kB) and its time.
func importOnce(ctx context.Context, target, src string, kek keyring.KEK) (*supabase.Report, int64, time.Duration, error) {
	m, err := migrations.Open(target)
	if err != nil {
		return nil, 0, 0, err
	}
	_, err = m.Up(ctx)
	m.Close()
	if err != nil {
		return nil, 0, 0, err
	}
	db, err := store.Open(ctx, store.Config{URL: target, MaxConns: 2}, zerolog.Nop(), nil)
	if err != nil {
		return nil, 0, 0, err
	}
	defer db.Close()
	kr, err := keyring.Open(ctx, store.NewKeysets(db.Pool), kek)
	if err != nil {
		return nil, 0, 0, err
	}
	conn, err := pgx.Connect(ctx, target)
	if err != nil {
		return nil, 0, 0, err
	}
	defer conn.Close(context.Background())
	runtime.GC()
	// Reset the peak so it measures the import alone, not the set-up.
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	t := time.Now()
	rep, err := supabase.Import(ctx, conn, kr, supabase.Options{Source: src})
	took := time.Since(t)
	peak := vm("VmHWM")
	if err != nil {
		return nil, 0, 0, fmt.Errorf("import: %w", err)
	}
	return rep, peak, took, nil
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// vm reads a memory figure (kB) of this process from /proc/self/status.
func vm(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), field+":"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kb)
			return kb
		}
	}
	return 0
}

// startServer returns BENCH_DATABASE_URL, or boots a throwaway cluster.
func startServer(ctx context.Context) (serverURL, binDir string, stop func(), err error) {
	bin, err := pgcluster.FindBinDir()
	if err != nil {
		return "", "", nil, err
	}
	if u := os.Getenv("BENCH_DATABASE_URL"); u != "" {
		return u, bin, func() {}, nil
	}
	// The same settings serve both sides of the comparison.
	c, stop, err := pgcluster.StartThrowaway(ctx, map[string]string{"shared_buffers": "128MB", "max_wal_size": "2GB"})
	if err != nil {
		return "", "", nil, err
	}
	return c.URL("postgres"), c.BinDir(), stop, nil
}
