// Package faults is the fault suite of issue 18: real `vectabase serve`
// binaries (built once per run) on real PostgreSQL clusters, under a mixed
// workload (login, refresh, verify, check, secret reads and writes, store
// and product writes, realtime subscribers), while a fault is injected.
// Each scenario checks what a client sees (503 UNAVAILABLE with the
// contract's body, never a 500 or a hang past 5 s), how long the service
// takes to come back, that every write answered 2xx is in the database
// afterwards, and the server's RSS, goroutines and open files before and
// after. The table of figures is printed at the end.
//
//	go test ./bench/faults -v            # the short form CI runs (a few minutes)
//	go test ./bench/faults -v -long      # the long form: a 10-minute soak, more kill -9 moments
package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/store/pgcluster"
)

// TestFault1_PostgresRestart restarts PostgreSQL under the workload, first
// with a fast shutdown, then with an immediate one (a crash for the
// clients: no goodbye on the connections).
func TestFault1_PostgresRestart(t *testing.T) {
	needBinary(t)
	c, dbURL := startCluster(t, nil)
	env := serverEnv(t, dbURL)
	srv := startServe(t, env)
	a := newAPI(srv.base)
	a.setup(t)
	subs := startSubscribers(a, 2)
	defer subs.stop()

	for _, mode := range []string{"fast", "immediate"} {
		t.Run(mode, func(t *testing.T) {
			w := startWorkload(a, 6, 150)
			time.Sleep(2 * time.Second)
			before := srv.vitals()
			if err := pgCtl(c, "stop", "-m", mode); err != nil {
				t.Fatal(err)
			}
			notReady := waitUntil(5*time.Second, func() bool { return !srv.ready() })
			if notReady < 0 {
				t.Errorf("/readyz still 200 5 s after PostgreSQL stopped")
			}
			time.Sleep(3 * time.Second) // the outage, under the workload
			if err := startPG(c); err != nil {
				t.Fatal(err)
			}
			back := waitUntil(30*time.Second, func() bool {
				an := a.do(context.Background(), "POST", "/api/stores", map[string]any{"name": "after " + mode}, nil)
				return an.status == 201 && srv.ready()
			})
			time.Sleep(2 * time.Second)
			st := w.stop()
			after := srv.vitals()
			acked, present := verifyAcked(t, dbURL, st)
			verdict := auditVerify(t, env)
			report("1 PostgreSQL restart ("+mode+")", st.errorsByKind(), fmt.Sprintf("%v", back.Round(10*time.Millisecond)),
				fmt.Sprintf("%d/%d", acked, present), before.String()+" -> "+after.String(),
				fmt.Sprintf("readyz false after %v; slowest answer %v; audit verify %s", notReady.Round(10*time.Millisecond), st.slowest.Round(time.Millisecond), verdict))
			if n := st.bad5xx(); n > 0 {
				t.Errorf("%d answers were 5xx other than 503 UNAVAILABLE (first: %s)\nserver's internal errors:\n%s", n, st.first500, srv.internalErrors(5))
			}
			if st.hangs > 0 {
				t.Errorf("%d answers took longer than 5 s (slowest %v)", st.hangs, st.slowest)
			}
			if back < 0 || back > 5*time.Second {
				t.Errorf("service back %v after the database (want within 5 s)", back)
			}
			if present != acked {
				t.Errorf("%d writes acknowledged, %d present", acked, present)
			}
		})
	}
	if n := subs.events.Load(); n == 0 {
		t.Errorf("realtime subscribers got no change events")
	}
}

// TestFault6_AuditWriterBlocked holds the audit chain's head row locked
// from an outside session under the workload: audited operations must
// answer 503 UNAVAILABLE within AUDIT_ENQUEUE_TIMEOUT (plus a margin for
// the machine), the server's goroutines stay bounded, and everything
// recovers when the lock goes.
func TestFault6_AuditWriterBlocked(t *testing.T) {
	needBinary(t)
	_, dbURL := startCluster(t, nil)
	const enqueueTimeout = time.Second
	env := serverEnv(t, dbURL, "AUDIT_ENQUEUE_TIMEOUT="+enqueueTimeout.String())
	srv := startServe(t, env)
	a := newAPI(srv.base)
	a.setup(t)

	w := startWorkload(a, 16, 0)
	time.Sleep(2 * time.Second)
	before := srv.vitals()
	ctx := context.Background()
	holder, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM audit_chain_head WHERE id = 1 FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	// Probe an audited operation while the lock is held.
	var blocked []answer
	peakG := before.Goroutines
	for range 12 {
		an := a.do(ctx, "GET", "/api/secrets/faults-fixed", nil, nil)
		blocked = append(blocked, an)
		peakG = max(peakG, srv.vitals().Goroutines)
		time.Sleep(300 * time.Millisecond)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	back := waitUntil(30*time.Second, func() bool {
		an := a.do(ctx, "PUT", "/api/secrets/faults-after-block", map[string]string{"value": "x"}, nil)
		return an.status/100 == 2
	})
	time.Sleep(time.Second)
	st := w.stop()
	a.http.CloseIdleConnections()
	time.Sleep(time.Second)
	after := srv.vitals()
	acked, present := verifyAcked(t, dbURL, st)
	verdict := auditVerify(t, env)
	var slowProbe time.Duration
	n503 := 0
	for _, an := range blocked {
		slowProbe = max(slowProbe, an.took)
		if an.status == 503 && an.code == "UNAVAILABLE" {
			n503++
		}
	}
	m := srv.scrape()
	report("6 audit writer blocked (6 s)", st.errorsByKind(), fmt.Sprintf("%v", back.Round(10*time.Millisecond)),
		fmt.Sprintf("%d/%d", acked, present), before.String()+" -> "+after.String(),
		fmt.Sprintf("probe: %d/%d secret reads 503, slowest %v (timeout %v); peak goroutines %d; enqueue timeouts %.0f; audit verify %s",
			n503, len(blocked), slowProbe.Round(time.Millisecond), enqueueTimeout, peakG, sumMetric(m, "vectabase_audit_enqueue_timeouts_total", ""), verdict))
	// The first probe may get in before the writer is stuck on the lock.
	if n503 < len(blocked)-2 {
		t.Errorf("%d of %d secret reads answered 503 UNAVAILABLE while the audit head was locked", n503, len(blocked))
	}
	if slowProbe > enqueueTimeout+2*time.Second {
		t.Errorf("an audited read took %v with the audit writer blocked (AUDIT_ENQUEUE_TIMEOUT %v)", slowProbe, enqueueTimeout)
	}
	if n := st.bad5xx(); n > 0 {
		t.Errorf("%d answers were 5xx other than 503 UNAVAILABLE (first: %s)\nserver's internal errors:\n%s", n, st.first500, srv.internalErrors(5))
	}
	if st.hangs > 0 {
		t.Errorf("%d answers took longer than 5 s (slowest %v)", st.hangs, st.slowest)
	}
	if peakG > before.Goroutines+200 {
		t.Errorf("goroutines grew from %d to %d while the audit writer was blocked", before.Goroutines, peakG)
	}
	if back < 0 || back > 5*time.Second {
		t.Errorf("audited writes back %v after the lock went (want within 5 s)", back)
	}
	if present != acked {
		t.Errorf("%d writes acknowledged, %d present", acked, present)
	}
}

// TestFault5_KillServe kills `serve` with SIGKILL at random moments under
// the workload and starts it again in the same working directory: every
// write answered 2xx is present, no secret is left without its current
// version (no partial state), the audit chain verifies, and every
// API-key request answered 2xx has its request-log row exactly once, or
// is counted in vectabase_request_logs_lost_total (each killed process's
// rows are in its spool segment, replayed by the next start).
func TestFault5_KillServe(t *testing.T) {
	needBinary(t)
	_, dbURL := startCluster(t, nil)
	env := serverEnv(t, dbURL, "API_REQUEST_LOG_FLUSH=200ms")
	srv := startServe(t, env)
	a := newAPI(srv.base)
	a.setup(t)
	moments := 20
	w := startWorkload(a, 8, 0)
	before := srv.vitals()
	var restarts []time.Duration
	var lost float64 // vectabase_request_logs_lost_total of every process, read just before its kill
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 18))
	for range moments {
		time.Sleep(time.Duration(200+rng.IntN(1300)) * time.Millisecond)
		lost += sumMetric(srv.scrape(), "vectabase_request_logs_lost_total", "")
		srv.kill()
		start := time.Now()
		srv.restart(t)
		restarts = append(restarts, time.Since(start))
	}
	time.Sleep(time.Second)
	st := w.stop()
	after := srv.vitals()
	acked, present := verifyAcked(t, dbURL, st)
	verdict := auditVerify(t, env)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var partial int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM secrets s WHERE NOT EXISTS
		(SELECT 1 FROM secret_versions v WHERE v.secret_id = s.id AND v.version = s.current_version)`).Scan(&partial); err != nil {
		t.Fatal(err)
	}
	// The last process's rows reach the table within API_REQUEST_LOG_FLUSH.
	answered := len(st.apiKeyIDs)
	var logged, rows int
	waitUntil(10*time.Second, func() bool {
		_ = conn.QueryRow(ctx, `SELECT count(DISTINCT request_id), count(*) FROM api_request_logs WHERE request_id::text = ANY($1)`,
			st.apiKeyIDs).Scan(&logged, &rows)
		return logged == answered
	})
	lost += sumMetric(srv.scrape(), "vectabase_request_logs_lost_total", "")
	sort.Slice(restarts, func(i, j int) bool { return restarts[i] < restarts[j] })
	report(fmt.Sprintf("5 kill -9 of serve ×%d", moments), st.errorsByKind(), fmt.Sprintf("restart median %v", restarts[len(restarts)/2].Round(10*time.Millisecond)),
		fmt.Sprintf("%d/%d", acked, present), before.String()+" -> "+after.String(),
		fmt.Sprintf("secrets without their current version: %d; API-key requests answered 2xx %d, their request-log rows present %d (%d rows: duplicates %d), counted lost %.0f; audit verify %s",
			partial, answered, logged, rows, rows-logged, lost, verdict))
	if present != acked {
		t.Errorf("%d writes acknowledged, %d present", acked, present)
	}
	if partial != 0 {
		t.Errorf("%d secrets point at a version that does not exist", partial)
	}
	if n := st.bad5xx(); n > 0 {
		t.Errorf("%d answers were 5xx other than 503 UNAVAILABLE (first: %s)", n, st.first500)
	}
	// present + lost == answered, where lost may also count a torn record
	// of a request that was never answered.
	if float64(logged)+lost < float64(answered) {
		t.Errorf("request-log rows: %d API-key requests answered 2xx, %d of their rows present, %.0f counted lost: %d rows neither written nor counted",
			answered, logged, lost, answered-logged-int(lost))
	}
	if rows != logged {
		t.Errorf("request-log rows: %d duplicates (a replay inserted a row twice)", rows-logged)
	}
}

// TestFault7_Soak runs the mixed workload at about 70% of the peak it
// measured first, on two instances sharing the database, for 60 s (10
// minutes with -long), with a DEK rotation re-encrypting everything and a
// backup being made: no 5xx at all, RSS, goroutines and open files flat
// after warm-up (the slope is reported), p99 per window beside the p99 of
// GET /healthz probes in the same window (the machine's own noise), and
// the audit chain verifies after.
func TestFault7_Soak(t *testing.T) {
	needBinary(t)
	_, dbURL := startCluster(t, nil)
	env := serverEnv(t, dbURL, "ROTATION_BATCH_SIZE=50")
	s1 := startServe(t, env)
	s2 := startServe(t, env)
	a := newAPI(s1.base, s2.base)
	a.setup(t)
	subs := startSubscribers(a, 4)
	defer subs.stop()

	duration, window := 60*time.Second, 15*time.Second
	if *long {
		duration, window = 10*time.Minute, time.Minute
	}
	// Peak: closed loop, as fast as 8 workers go.
	pw := startWorkload(a, 8, 0)
	time.Sleep(5 * time.Second)
	peakStats := pw.stop()
	peak := float64(peakStats.ok) / 5
	rate := 0.7 * peak

	ctx := context.Background()
	w := startWorkloadWindows(a, 8, rate, window)
	// The baseline measured in the same run: GET /healthz (no database,
	// no audit) ten times a second, by window. A workload p99 that grows
	// with the baseline's is the machine's load; one that grows alone is
	// the server's.
	probeCtx, stopProbe := context.WithCancel(ctx)
	probeWindows := map[int][]time.Duration{}
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		t0 := time.Now()
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for probeCtx.Err() == nil {
			select {
			case <-probeCtx.Done():
				return
			case <-tk.C:
			}
			an := a.do(probeCtx, "GET", "/healthz", nil, nil)
			if an.err == nil && an.status == 200 {
				i := int(time.Since(t0) / window)
				probeWindows[i] = append(probeWindows[i], an.took)
			}
		}
	}()
	rot := a.do(ctx, "POST", "/api/admin/keys/rotate", map[string]string{"kind": "dek"}, nil)
	if rot.status != 202 {
		t.Errorf("rotate dek: %d %s", rot.status, rot.body)
	}
	type sample struct {
		at time.Duration
		v  [2]vitals
	}
	var samples []sample
	start := time.Now()
	backupDone := make(chan answer, 1)
	for time.Since(start) < duration {
		samples = append(samples, sample{time.Since(start), [2]vitals{s1.vitals(), s2.vitals()}})
		if len(samples) == 3 {
			go func() { backupDone <- a.do(ctx, "POST", "/api/admin/backups", nil, nil) }()
		}
		time.Sleep(2 * time.Second)
	}
	st := w.stop()
	stopProbe()
	<-probeDone
	backup := <-backupDone
	if backup.status != 201 {
		t.Errorf("backup during the soak: %d %s", backup.status, backup.body)
	}
	rotation := a.do(ctx, "GET", "/api/admin/keys/rotation", nil, nil)
	var rj struct {
		Job struct {
			State       string
			Reencrypted int
			Failed      int
		}
	}
	_ = json.Unmarshal(rotation.body, &rj)
	rotated := fmt.Sprintf("%s (%d re-encrypted, %d failed)", rj.Job.State, rj.Job.Reencrypted, rj.Job.Failed)
	acked, present := verifyAcked(t, dbURL, st)
	verdict := auditVerify(t, env)

	// Slopes after warm-up (the first fifth), per minute, least squares.
	warm := samples[len(samples)/5:]
	slope := func(f func(sample) float64) float64 {
		var n, sx, sy, sxx, sxy float64
		for _, s := range warm {
			x := s.at.Minutes()
			y := f(s)
			n++
			sx += x
			sy += y
			sxx += x * x
			sxy += x * y
		}
		d := n*sxx - sx*sx
		if d == 0 {
			return 0
		}
		return (n*sxy - sx*sy) / d
	}
	var slopes []string
	for i := range 2 {
		slopes = append(slopes, fmt.Sprintf("instance %d: RSS %+.1f MiB/min, goroutines %+.1f/min, fds %+.1f/min", i+1,
			slope(func(s sample) float64 { return s.v[i].RSS }),
			slope(func(s sample) float64 { return float64(s.v[i].Goroutines) }),
			slope(func(s sample) float64 { return float64(s.v[i].OpenFDs) })))
	}
	st.mu.Lock()
	var p99s []string
	for i := 0; i < int(duration/window)+1; i++ {
		l := st.windows[i]
		if len(l) == 0 {
			continue
		}
		sort.Slice(l, func(a, b int) bool { return l[a] < l[b] })
		p99 := l[len(l)*99/100]
		cell := p99.Round(100 * time.Microsecond).String()
		if b := probeWindows[i]; len(b) > 0 {
			sort.Slice(b, func(x, y int) bool { return b[x] < b[y] })
			bp99 := b[len(b)*99/100]
			cell += fmt.Sprintf(" (healthz %v, ×%.1f)", bp99.Round(100*time.Microsecond), float64(p99)/float64(max(bp99, time.Microsecond)))
		}
		p99s = append(p99s, cell)
	}
	st.mu.Unlock()
	first, last := samples[len(samples)/5], samples[len(samples)-1]
	var peakRSS [2]float64
	for _, sm := range samples {
		for i := range 2 {
			peakRSS[i] = max(peakRSS[i], sm.v[i].RSS)
		}
	}
	report(fmt.Sprintf("7 soak %v, 2 instances", duration), st.errorsByKind(), "-",
		fmt.Sprintf("%d/%d", acked, present),
		fmt.Sprintf("%s -> %s; %s -> %s", first.v[0], last.v[0], first.v[1], last.v[1]),
		fmt.Sprintf("peak %.0f req/s, soak at %.0f req/s (%d answered 2xx); p99 per %v: %v; %s; peak RSS %.0f and %.0f MiB; rotation %s; backup %d; realtime events %d; audit verify %s",
			peak, rate, st.ok, window, p99s, strings.Join(slopes, "; "), peakRSS[0], peakRSS[1], rotated, backup.status, subs.events.Load(), verdict))
	if rj.Job.State != "done" || rj.Job.Failed > 0 {
		t.Errorf("rotation during the soak: %s", rotated)
	}
	if st.n5xx > 0 {
		t.Errorf("%d answers were 5xx during the soak (%s)", st.n5xx, st.errorsByKind())
	}
	// The soak has no fault to answer within 5 s of: a slow answer here is
	// the machine's load (the CI form shares two cores with every other
	// package's tests), reported in the table, not a broken safeguard. A
	// give-up (the client's 10 s timeout) is still a failure.
	if st.kinds["client timeout"] > 0 || st.kinds["connection error"] > 0 {
		t.Errorf("answers that never came during the soak: %s", st.errorsByKind())
	}
	if present != acked {
		t.Errorf("%d writes acknowledged, %d present", acked, present)
	}
	for i := range 2 {
		if g := last.v[i].Goroutines - first.v[i].Goroutines; g > 100 {
			t.Errorf("instance %d: goroutines grew by %d after warm-up", i+1, g)
		}
		if fd := last.v[i].OpenFDs - first.v[i].OpenFDs; fd > 100 {
			t.Errorf("instance %d: open files grew by %d after warm-up", i+1, fd)
		}
	}
}

// TestFault4_BackupDiskFull makes BACKUP_DIR a 64 KiB tmpfs (as root; the
// scenario is skipped otherwise) and asks for a backup under the workload:
// the backup fails with the contract's error body, leaves no file (partial
// or listed) behind, is recorded in the audit log as failed and counted in
// the metrics, and serving goes on; a backup into room made again succeeds.
func TestFault4_BackupDiskFull(t *testing.T) {
	needBinary(t)
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir, err := os.MkdirTemp("", "vectabase-faults-full-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount a small tmpfs: %v: %s", err, out)
	}
	mounted := true
	unmount := func() {
		if mounted {
			if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v: %s", dir, err, out)
			}
			mounted = false
		}
	}
	t.Cleanup(unmount)

	_, dbURL := startCluster(t, nil)
	env := serverEnv(t, dbURL)
	env = append(env, "BACKUP_DIR="+dir) // the last value wins
	srv := startServe(t, env)
	a := newAPI(srv.base)
	a.setup(t)
	w := startWorkload(a, 4, 100)
	time.Sleep(3 * time.Second) // rows enough for a dump past 64 KiB
	before := srv.vitals()
	ctx := context.Background()
	bk := a.do(ctx, "POST", "/api/admin/backups", nil, nil)
	list := a.do(ctx, "GET", "/api/admin/backups", nil, nil)
	time.Sleep(time.Second)
	st := w.stop()
	after := srv.vitals()
	entries, _ := os.ReadDir(dir)
	var files []string
	for _, e := range entries {
		files = append(files, e.Name())
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var auditResult string
	if err := conn.QueryRow(ctx, `SELECT result FROM audit_logs WHERE action = 'backup.create' ORDER BY id DESC LIMIT 1`).Scan(&auditResult); err != nil {
		t.Errorf("no audit row for the failed backup: %v", err)
	}
	m := srv.scrape()
	failures := sumMetric(m, "vectabase_backup_failures_total", "")
	lastSuccess := sumMetric(m, "vectabase_backup_last_success_timestamp_seconds", "")
	acked, present := verifyAcked(t, dbURL, st)
	verdict := auditVerify(t, env)
	report("4 disk full in BACKUP_DIR (64 KiB)", st.errorsByKind(), "-", fmt.Sprintf("%d/%d", acked, present), before.String()+" -> "+after.String(),
		fmt.Sprintf("backup answered %d %s; listed %s; files left %v; audit result %q; vectabase_backup_failures_total %.0f, last success %.0f; audit verify %s",
			bk.status, bk.code, list.body, files, auditResult, failures, lastSuccess, verdict))
	if bk.status < 400 || bk.code == "" || bk.code == "(no contract body)" {
		t.Errorf("backup into a full disk: %d %s, want the contract's error", bk.status, bk.body)
	}
	if bk.status == 500 {
		t.Errorf("backup into a full disk answered 500 INTERNAL, want 503 UNAVAILABLE naming the full disk: %s", bk.body)
	}
	if len(files) != 0 {
		t.Errorf("files left in BACKUP_DIR after the failed backup: %v", files)
	}
	if strings.Contains(string(list.body), `"id"`) {
		t.Errorf("the failed backup is listed: %s", list.body)
	}
	if auditResult == "" || auditResult == "success" || auditResult == "ok" {
		t.Errorf("audit row of the failed backup has result %q", auditResult)
	}
	if failures != 1 {
		t.Errorf("vectabase_backup_failures_total = %v, want 1", failures)
	}
	if n := st.bad5xx(); n > 0 {
		t.Errorf("%d workload answers were 5xx other than 503 (first: %s)", n, st.first500)
	}
	if present != acked {
		t.Errorf("%d writes acknowledged, %d present", acked, present)
	}
}

// TestFault2_Failover runs the server on a multi-host URL with
// target_session_attrs=read-write over a primary and a synchronous
// streaming standby made with pg_basebackup, kills the primary with
// SIGKILL and promotes the standby: writes resume within 10 s, no
// acknowledged write is lost, and realtime (LISTEN), rate limits (the
// shared counter behind verify) and the rotation worker carry on.
func TestFault2_Failover(t *testing.T) {
	needBinary(t)
	primary, primaryURL := startCluster(t, map[string]string{"wal_level": "replica", "max_wal_senders": "5"})
	standbyDir := filepath.Join(filepath.Dir(primary.DataDir), "standby")
	bb := exec.Command(filepath.Join(primary.BinDir(), "pg_basebackup"), "-h", "127.0.0.1", "-p", strconv.Itoa(primary.Port),
		"-U", "postgres", "-D", standbyDir, "-R", "-X", "stream", "-c", "fast")
	if err := runAsPostgres(bb); err != nil {
		t.Fatal(err)
	}
	port, err := pgcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	standby, err := pgcluster.New(standbyDir, port)
	if err != nil {
		t.Fatal(err)
	}
	standby.Settings = primary.Settings
	if err := startPG(standby); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pgCtl(standby, "stop", "-m", "immediate") })
	ctx := context.Background()
	pc, err := pgx.Connect(ctx, primaryURL)
	if err != nil {
		t.Fatal(err)
	}
	// Every commit waits for the standby to have it.
	for _, q := range []string{`ALTER SYSTEM SET synchronous_standby_names = '*'`, `SELECT pg_reload_conf()`} {
		if _, err := pc.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if waitUntil(30*time.Second, func() bool {
		var n int
		_ = pc.QueryRow(ctx, `SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'`).Scan(&n)
		return n == 1
	}) < 0 {
		t.Fatal("the standby is not synchronous within 30 s")
	}
	pc.Close(ctx)
	multi := fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/postgres?sslmode=disable&target_session_attrs=read-write&connect_timeout=2", primary.Port, standby.Port)
	env := serverEnv(t, multi)
	srv := startServe(t, env)
	a := newAPI(srv.base)
	a.setup(t)
	subs := startSubscribers(a, 2)
	defer subs.stop()
	w := startWorkload(a, 6, 150)
	time.Sleep(3 * time.Second)
	before := srv.vitals()
	if rot := a.do(ctx, "POST", "/api/admin/keys/rotate", map[string]string{"kind": "dek"}, nil); rot.status != 202 {
		t.Errorf("rotate dek: %d %s", rot.status, rot.body)
	}
	eventsBefore := subs.events.Load()

	pidFile, err := os.ReadFile(filepath.Join(primary.DataDir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(pidFile), "\n", 2)[0]))
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the time a failover manager takes to decide
	if err := pgCtl(standby, "promote"); err != nil {
		t.Fatal(err)
	}
	promoted := time.Since(killed)
	back := waitUntil(30*time.Second, func() bool {
		an := a.do(ctx, "POST", "/api/stores", map[string]any{"name": "after failover"}, nil)
		return an.status == 201
	})
	resumed := promoted + back
	if back < 0 {
		resumed = -1
	}
	time.Sleep(5 * time.Second)
	verify := a.do(ctx, "POST", "/api/developer/verify", map[string]any{}, map[string]string{"X-API-Key": a.apiKey})
	var rotState string
	rotDone := waitUntil(60*time.Second, func() bool {
		an := a.do(ctx, "GET", "/api/admin/keys/rotation", nil, nil)
		var rj struct{ Job struct{ State string } }
		_ = json.Unmarshal(an.body, &rj)
		rotState = rj.Job.State
		return rotState == "done"
	})
	st := w.stop()
	eventsAfter := subs.events.Load()
	after := srv.vitals()
	newURL := standby.URL("postgres")
	acked, present := verifyAcked(t, newURL, st)
	verdict := auditVerify(t, env) // on the multi-host URL: the promoted standby
	report("2 failover (kill -9 primary, promote)", st.errorsByKind(), fmt.Sprintf("writes back %v after kill", resumed.Round(10*time.Millisecond)),
		fmt.Sprintf("%d/%d", acked, present), before.String()+" -> "+after.String(),
		fmt.Sprintf("promoted %v after kill; realtime events %d before, %d after; verify after %d (rate limit remaining %q); rotation %s after %v; audit verify %s",
			promoted.Round(10*time.Millisecond), eventsBefore, eventsAfter-eventsBefore, verify.status, verify.header("X-RateLimit-Remaining"), rotState, rotDone.Round(100*time.Millisecond), verdict))
	if resumed < 0 || resumed > 10*time.Second {
		t.Errorf("writes resumed %v after the kill (want within 10 s)", resumed)
	}
	if present != acked {
		t.Errorf("%d writes acknowledged, %d present on the promoted standby", acked, present)
	}
	if n := st.bad5xx(); n > 0 {
		t.Errorf("%d answers were 5xx other than 503 UNAVAILABLE (first: %s)\nserver's internal errors:\n%s", n, st.first500, srv.internalErrors(5))
	}
	if st.hangs > 0 {
		t.Errorf("%d answers took longer than 5 s (slowest %v)", st.hangs, st.slowest)
	}
	if eventsAfter == eventsBefore {
		t.Errorf("realtime subscribers got no change events after the failover")
	}
	if verify.status != 200 || verify.header("X-RateLimit-Remaining") == "" {
		t.Errorf("verify after the failover: %d %s", verify.status, verify.body)
	}
	if rotDone < 0 {
		t.Errorf("the rotation started before the failover is %q 60 s after it", rotState)
	}
}
