package store_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

func spoolRow(i int) store.RequestLog {
	return store.RequestLog{RequestID: uuid.NewString(), Method: "POST", Path: "/api/whitelist/check",
		Status: 200, Latency: time.Duration(i) * time.Microsecond, IP: "203.0.113.7", At: time.Unix(1_700_000_000, int64(i)*1000).UTC()}
}

func drawRow(rt *rapid.T, label string) store.RequestLog {
	return store.RequestLog{
		RequestID: uuid.NewString(),
		APIKeyID:  rapid.SampledFrom([]string{"", uuid.NewString()}).Draw(rt, label+"key"),
		Method:    rapid.SampledFrom([]string{"POST", "GET"}).Draw(rt, label+"method"),
		Path:      rapid.StringN(0, 300, -1).Draw(rt, label+"path"),
		Status:    rapid.IntRange(100, 599).Draw(rt, label+"status"),
		Latency:   time.Duration(rapid.Int64Range(0, int64(time.Minute)).Draw(rt, label+"latency")),
		IP:        rapid.SampledFrom([]string{"127.0.0.1", "2001:db8::1", ""}).Draw(rt, label+"ip"),
		At:        time.Unix(0, rapid.Int64Range(0, 1<<62).Draw(rt, label+"at")).UTC(),
	}
}

// TestProperty39_SpoolKeepsEveryWholeRecord claims: whatever rows a
// segment holds, and wherever its last write is torn or one byte of one
// record is changed, decoding it gives back every other record exactly,
// in order, and counts the torn or changed record as exactly one lost row
// (none when nothing was damaged). 100 iterations (rapid's default).
func TestProperty39_SpoolKeepsEveryWholeRecord(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(1, 30).Draw(rt, "rows")
		var data []byte
		var rows []store.RequestLog
		var starts []int
		for i := range n {
			rows = append(rows, drawRow(rt, "row"))
			starts = append(starts, len(data))
			data = store.AppendSpoolRecord(data, uint64(i+1), rows[i])
		}
		starts = append(starts, len(data))
		damaged := -1 // the record damaged, or -1
		switch rapid.IntRange(0, 2).Draw(rt, "damage") {
		case 1: // a torn last write
			cutAt := rapid.IntRange(starts[n-1]+1, len(data)-1).Draw(rt, "cut")
			data = data[:cutAt]
			damaged = n - 1
		case 2: // one byte changed inside one record
			k := rapid.IntRange(0, n-1).Draw(rt, "record")
			at := rapid.IntRange(starts[k], starts[k+1]-1).Draw(rt, "byte")
			data = bytes.Clone(data)
			data[at] ^= byte(rapid.IntRange(1, 255).Draw(rt, "xor"))
			damaged = k
		}
		got, bad := store.DecodeSpool(data)
		var want []store.SpoolRecord
		for i, r := range rows {
			if i != damaged {
				want = append(want, store.SpoolRecord{Seq: uint64(i + 1), RequestLog: r})
			}
		}
		wantBad := 0
		if damaged >= 0 {
			wantBad = 1
		}
		if bad != wantBad {
			rt.Fatalf("DecodeSpool counted %d lost, want %d (damaged record %d of %d)", bad, wantBad, damaged, n)
		}
		if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
			rt.Fatalf("DecodeSpool records (-want +got):\n%s", diff)
		}
	})
}

// FuzzDecodeSpool: any bytes decode without a panic, and every record
// returned re-encodes to bytes found in the input.
func FuzzDecodeSpool(f *testing.F) {
	f.Add([]byte{})
	f.Add(store.AppendSpoolRecord(nil, 1, spoolRow(1)))
	two := store.AppendSpoolRecord(store.AppendSpoolRecord(nil, 1, spoolRow(1)), 2, spoolRow(2))
	f.Add(two)
	f.Add(two[:len(two)-3])
	f.Add([]byte("VLVLVLVL\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rows, bad := store.DecodeSpool(data)
		if bad < 0 || len(rows)*10 > len(data) {
			t.Fatalf("DecodeSpool: %d rows, %d bad from %d bytes", len(rows), bad, len(data))
		}
		for _, r := range rows {
			if !bytes.Contains(data, store.AppendSpoolRecord(nil, r.Seq, r.RequestLog)) {
				t.Fatalf("record %+v does not re-encode to bytes of the input", r)
			}
		}
	})
}

func countLogs(t testing.TB, db *store.DB, ids []string) (rows, distinct int) {
	t.Helper()
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT request_id) FROM api_request_logs
		WHERE request_id::text = ANY($1)`, ids).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	return rows, distinct
}

func spoolFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+store.SpoolExt))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func lostCounter(t testing.TB, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "vectabase_request_logs_lost_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("no vectabase_request_logs_lost_total")
	return 0
}

// wantEachOnceNoneLost checks that every row of ids was written exactly
// once and that no row was counted lost.
func wantEachOnceNoneLost(t *testing.T, db *store.DB, reg *prometheus.Registry, ids []string) {
	t.Helper()
	if rows, distinct := countLogs(t, db, ids); rows != len(ids) || distinct != len(ids) {
		t.Errorf("%d rows, %d distinct, want %d and %d", rows, distinct, len(ids), len(ids))
	}
	if lost := lostCounter(t, reg); lost != 0 {
		t.Errorf("vectabase_request_logs_lost_total = %v, want 0", lost)
	}
}

// takeLogsAway makes every write to api_request_logs fail, as a database
// outage does for the writer, until the returned func puts the table back.
func takeLogsAway(t *testing.T, db *store.DB) (back func()) {
	t.Helper()
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `ALTER TABLE api_request_logs RENAME TO api_request_logs_away`); err != nil {
		t.Fatal(err)
	}
	return func() {
		if _, err := db.Pool.Exec(ctx, `ALTER TABLE api_request_logs_away RENAME TO api_request_logs`); err != nil {
			t.Fatal(err)
		}
	}
}

// waitForLogs waits (at most within) until all of ids are written.
func waitForLogs(t *testing.T, db *store.DB, ids []string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if n, _ := countLogs(t, db, ids); n >= len(ids) || time.Now().After(deadline) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRequestLogSpoolReplaysAfterKill: a writer killed with rows in memory
// (some already committed by its batch COPY, the rest not) leaves them in
// its spool segment; the next writer on that directory replays the
// segment at start, each row lands exactly once, the torn last record is
// counted lost, and the segment file is gone.
func TestRequestLogSpoolReplaysAfterKill(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	dir := t.TempDir()
	// A batch of 10 commits at once; the 5 after it wait for an hour.
	a := store.NewRequestLogWriter(db, store.RequestLogConfig{Batch: 10, Every: time.Hour, SpoolDir: dir}, zerolog.Nop(), nil)
	var ids []string
	for i := range 15 {
		l := spoolRow(i)
		ids = append(ids, l.RequestID)
		a.Add(ctx, l)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if n, _ := countLogs(t, db, ids); n == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first batch of 10 was not committed within 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.Abandon()
	files := spoolFiles(t, dir)
	if len(files) != 1 {
		t.Fatalf("spool files after the kill: %v, want one segment", files)
	}
	// A write torn by the kill (or a power loss).
	torn := store.AppendSpoolRecord(nil, 16, spoolRow(16))
	f, err := os.OpenFile(files[0], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(torn[:len(torn)/2]); err != nil {
		t.Fatal(err)
	}
	f.Close()

	reg := prometheus.NewRegistry()
	b := store.NewRequestLogWriter(db, store.RequestLogConfig{Every: time.Hour, SpoolDir: dir}, zerolog.Nop(), reg)
	// The replay ran in NewRequestLogWriter, before it returned.
	rows, distinct := countLogs(t, db, ids)
	if rows != 15 || distinct != 15 {
		t.Errorf("after the replay: %d rows, %d distinct request ids, want 15 and 15", rows, distinct)
	}
	if lost := lostCounter(t, reg); lost != 1 {
		t.Errorf("vectabase_request_logs_lost_total = %v, want 1 (the torn record)", lost)
	}
	if _, err := os.Stat(files[0]); !os.IsNotExist(err) {
		t.Errorf("the replayed segment %s is still there (stat err = %v)", files[0], err)
	}
	var marks int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM api_request_log_segments`).Scan(&marks); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if marks != 0 {
		t.Errorf("api_request_log_segments keeps %d rows after the replay, want 0", marks)
	}
	if left := spoolFiles(t, dir); len(left) != 0 {
		t.Errorf("spool files after a clean Close: %v", left)
	}
}

// TestRequestLogSpoolLeavesLiveSegments: a second writer started on the
// same directory does not replay the segment a live writer holds; the
// live writer's own Close writes its rows, once.
func TestRequestLogSpoolLeavesLiveSegments(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	dir := t.TempDir()
	a := store.NewRequestLogWriter(db, store.RequestLogConfig{Every: time.Hour, SpoolDir: dir}, zerolog.Nop(), nil)
	var ids []string
	for i := range 20 {
		l := spoolRow(i)
		ids = append(ids, l.RequestID)
		a.Add(ctx, l)
	}
	b := store.NewRequestLogWriter(db, store.RequestLogConfig{Every: time.Hour, SpoolDir: dir, ReplayEvery: time.Millisecond}, zerolog.Nop(), nil)
	time.Sleep(100 * time.Millisecond)
	if n, _ := countLogs(t, db, ids); n != 0 {
		t.Fatalf("%d of the live writer's rows were replayed by another writer", n)
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if rows, distinct := countLogs(t, db, ids); rows != 20 || distinct != 20 {
		t.Errorf("after Close: %d rows, %d distinct, want 20 and 20", rows, distinct)
	}
}

// TestRequestLogSpoolFullBufferLosesNothing: with a buffer of 4 rows and
// no flush for an hour, Add never waits and never drops: the rows past the
// buffer are replayed from the segment, and every row lands exactly once.
func TestRequestLogSpoolFullBufferLosesNothing(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	w := store.NewRequestLogWriter(db, store.RequestLogConfig{Buffer: 4, Every: time.Hour, SpoolDir: t.TempDir()}, zerolog.Nop(), reg)
	var ids []string
	expired, cancel := context.WithCancel(ctx)
	cancel() // Add must not need the request's time to wait
	for i := range 300 {
		l := spoolRow(i)
		ids = append(ids, l.RequestID)
		w.Add(expired, l)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	wantEachOnceNoneLost(t, db, reg, ids)
}

// TestRequestLogNoSpoolCountsDrops: without a spool, a row that finds the
// buffer full past its request's deadline is dropped and counted.
func TestRequestLogNoSpoolCountsDrops(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	w := store.NewRequestLogWriter(db, store.RequestLogConfig{Buffer: 1, Batch: 1000, Every: time.Hour}, zerolog.Nop(), reg)
	expired, cancel := context.WithCancel(ctx)
	cancel()
	for i := range 50 {
		w.Add(expired, spoolRow(i))
	}
	lost := lostCounter(t, reg)
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM api_request_logs`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if float64(n)+lost != 50 || lost == 0 {
		t.Errorf("%d rows written, %v counted lost, want a sum of 50 with some lost", n, lost)
	}
}

// TestProperty40_ReplayInsertsEachRowOnce claims: for a segment of any
// rows, of which any prefix was already committed (with its mark) before
// the crash, and whose last write may be torn, starting a writer on the
// spool replays it so that every whole row is in api_request_logs exactly
// once and the torn one is counted lost; a second replay of the same file
// (a crash between the commit and the file's removal) inserts nothing.
// 100 iterations on one database.
func TestProperty40_ReplayInsertsEachRowOnce(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	rapid.Check(t, func(rt *rapid.T) {
		dir := t.TempDir()
		n := rapid.IntRange(0, 40).Draw(rt, "rows")
		committed := rapid.IntRange(0, n).Draw(rt, "committed")
		torn := rapid.Bool().Draw(rt, "torn")
		seg := uuid.NewString()
		var data []byte
		var ids []string
		for i := range n {
			l := spoolRow(i)
			ids = append(ids, l.RequestID)
			data = store.AppendSpoolRecord(data, uint64(i+1), l)
			if i < committed {
				if _, err := db.Pool.Exec(ctx, `INSERT INTO api_request_logs (request_id, method, path, status_code, latency_ms, created_at)
					VALUES ($1, $2, $3, $4, 0, $5)`, l.RequestID, l.Method, l.Path, l.Status, l.At); err != nil {
					rt.Fatal(err)
				}
			}
		}
		if committed > 0 {
			if _, err := db.Pool.Exec(ctx, `INSERT INTO api_request_log_segments (segment_id, committed_seq) VALUES ($1, $2)`, seg, committed); err != nil {
				rt.Fatal(err)
			}
		}
		if torn {
			rec := store.AppendSpoolRecord(nil, uint64(n+1), spoolRow(n))
			data = append(data, rec[:rapid.IntRange(1, len(rec)-1).Draw(rt, "tear")]...)
		}
		path := filepath.Join(dir, seg+store.SpoolExt)
		for replay := range 2 {
			if err := os.WriteFile(path, data, 0o600); err != nil {
				rt.Fatal(err)
			}
			if replay == 1 {
				// The crash came after the commit, before the file
				// went: the mark must still be there.
				if _, err := db.Pool.Exec(ctx, `INSERT INTO api_request_log_segments (segment_id, committed_seq) VALUES ($1, $2)
					ON CONFLICT DO NOTHING`, seg, n); err != nil {
					rt.Fatal(err)
				}
			}
			reg := prometheus.NewRegistry()
			w := store.NewRequestLogWriter(db, store.RequestLogConfig{Every: time.Hour, SpoolDir: dir}, zerolog.Nop(), reg)
			lost := lostCounter(t, reg)
			if err := w.Close(ctx); err != nil {
				rt.Fatal(err)
			}
			rows, distinct := countLogs(t, db, ids)
			if rows != n || distinct != n {
				rt.Fatalf("replay %d: %d rows, %d distinct of %d (committed before: %d)", replay+1, rows, distinct, n, committed)
			}
			wantLost := 0.0
			if torn {
				wantLost = 1 // on the second replay: the same torn tail, read again
			}
			if lost != wantLost {
				rt.Fatalf("replay %d: lost %v, want %v", replay+1, lost, wantLost)
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				rt.Fatalf("replay %d left the segment file", replay+1)
			}
		}
	})
}

// BenchmarkRequestLogAdd is the request path's cost of one request-log
// row: memory only against appended to the spool first (one write(2)
// under the writer's lock), from parallel requests, with room in memory
// for every row and no flush while it runs (so it measures Add, not the
// COPY behind it). Compare the two sub-benchmarks of one run:
// go test ./store -run '^$' -bench RequestLogAdd -benchtime 100000x.
func BenchmarkRequestLogAdd(b *testing.B) {
	db := pgtest.New(b)
	for _, tc := range []struct {
		name string
		dir  string
	}{{"memory", ""}, {"spool", b.TempDir()}} {
		b.Run(tc.name, func(b *testing.B) {
			if b.N > 1<<17 {
				b.Skip("at most 131072 rows: that is the room in memory")
			}
			w := store.NewRequestLogWriter(db, store.RequestLogConfig{Buffer: 1 << 17, Batch: 1 << 17, Every: time.Hour, SpoolDir: tc.dir}, zerolog.Nop(), nil)
			l := spoolRow(1)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					w.Add(ctx, l)
				}
			})
			b.StopTimer() // the COPY of the rows at Close is not the request's cost
			if err := w.Close(ctx); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// TestRequestLogSpoolReplaysAFailedBatch: when the batch COPY keeps
// failing (here the table is briefly renamed away), the spooled rows are
// not dropped: their segment is replayed once the table is back, and each
// row lands exactly once with nothing counted lost.
func TestRequestLogSpoolReplaysAFailedBatch(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	w := store.NewRequestLogWriter(db, store.RequestLogConfig{Every: 20 * time.Millisecond, SpoolDir: t.TempDir()}, zerolog.Nop(), reg)
	back := takeLogsAway(t, db)
	var ids []string
	for i := range 50 {
		l := spoolRow(i)
		ids = append(ids, l.RequestID)
		w.Add(ctx, l)
	}
	time.Sleep(4 * time.Second) // past the batch's five tries (3.1 s of back-off)
	back()
	waitForLogs(t, db, ids, 30*time.Second)
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	wantEachOnceNoneLost(t, db, reg, ids)
}

// A long database outage fills one spool segment rather than leaving a
// small one behind every failed batch: while a broken segment still waits
// for its replay, the current one is kept for the rows that follow. When
// the database is back, every row arrives once.
func TestRequestLogSpoolOutageKeepsFewSegments(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	w := store.NewRequestLogWriter(db, store.RequestLogConfig{Every: 20 * time.Millisecond, SpoolDir: dir}, zerolog.Nop(), reg)
	back := takeLogsAway(t, db)
	segments := func() int {
		m, _ := filepath.Glob(filepath.Join(dir, "*"))
		return len(m)
	}
	var ids []string
	most := 0
	// About 11 s of outage: three failed batches' back-off and more.
	for i := range 550 {
		l := spoolRow(i)
		ids = append(ids, l.RequestID)
		w.Add(ctx, l)
		most = max(most, segments())
		time.Sleep(20 * time.Millisecond)
	}
	if most > 2 {
		t.Errorf("%d spool segments at once during the outage, want at most 2 (the one owed a replay and the current one)", most)
	}
	back()
	waitForLogs(t, db, ids, 60*time.Second)
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	wantEachOnceNoneLost(t, db, reg, ids)
	if n := segments(); n != 0 {
		t.Errorf("%d spool files left after every row was written, want 0", n)
	}
}
