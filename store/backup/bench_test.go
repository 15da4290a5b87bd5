package backup_test

import (
	"context"
	"io"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/vectabase/vectabase/store/backup"
	"github.com/vectabase/vectabase/store/pgcluster"
	"github.com/vectabase/vectabase/store/pgtest"
)

// BenchmarkCreateVsPlainDump prices what a backup adds to pg_dump itself
// (streaming AEAD, SHA-256, the row counts, the file): alternating rounds
// of a plain `pg_dump -Fc` into nothing and a Create, over about 8 MB of
// rows, reported as medians and their ratio. Bounded: 5 rounds per run.
//
//	go test -run XXX -bench CreateVsPlainDump -benchtime 1x ./store/backup
func BenchmarkCreateVsPlainDump(b *testing.B) {
	ctx := context.Background()
	url := pgtest.URL(b)
	db := pgtest.Open(b, url)
	// 20,000 audit rows of ~400 bytes of hex each: little for zlib to win.
	if _, err := db.Pool.Exec(ctx, `
		INSERT INTO audit_logs (actor_type, action, result, details)
		SELECT 'system', 'bench', 'success',
		       jsonb_build_object('x', (SELECT string_agg(md5(i::text || '-' || j::text), '') FROM generate_series(1, 12) j))
		FROM generate_series(1, 20000) i`); err != nil {
		b.Fatal(err)
	}
	bin, err := pgcluster.FindBinDir()
	if err != nil {
		b.Skip(err)
	}
	_, kek := newKEK(b)
	svc, err := backup.New(backup.Config{Dir: b.TempDir(), Keep: 2}, url, kek)
	if err != nil {
		b.Fatal(err)
	}
	const rounds = 5
	var plain, create []time.Duration
	var size int64
	b.ResetTimer()
	for range b.N {
		for range rounds {
			start := time.Now()
			cmd := exec.Command(filepath.Join(bin, "pg_dump"), "--format=custom", "--dbname="+url)
			cmd.Stdout = io.Discard
			if err := cmd.Run(); err != nil {
				b.Fatal(err)
			}
			plain = append(plain, time.Since(start))

			start = time.Now()
			bk, err := svc.Create(ctx, backup.System, nil)
			if err != nil {
				b.Fatal(err)
			}
			create = append(create, time.Since(start))
			size = bk.DumpSize
			if _, err := svc.Prune(ctx, backup.System, 1); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	mp, mc := median(plain), median(create)
	b.ReportMetric(float64(size)/1e6, "dump-MB")
	b.ReportMetric(mp.Seconds()*1e3, "pg_dump-ms")
	b.ReportMetric(mc.Seconds()*1e3, "create-ms")
	b.ReportMetric(float64(mc)/float64(mp), "create/pg_dump")
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
