// Command hostile attacks a real `vectabase serve` (the binary, built and
// started here on a throwaway database, loopback only) the way issue 13
// found it could be hurt, and prints for each attack the server's resident
// memory before, at its peak and after, its goroutines and open files
// before and after, the audit and request-log rows it wrote, the answers
// the attack got, and a legitimate client's p99 latency during the attack
// beside the same client's p99 measured without attack in the same run:
//
//   - a 357-byte triple-gzip body that expands to 4 GiB, sent with its
//     three codings and with one;
//   - single gzip, deflate and brotli bombs (about 1 MiB on the wire,
//     about 1 GiB decoded; brotli 256 MiB), and 16 gzip bombs at once;
//   - a 10 MB plain body;
//   - 500 slowloris connections that send a header line a second;
//   - 10,000 anonymous refusals (unauthenticated secret reads with a
//     1,000-character name, and key checks without a key), three times
//     back to back;
//   - forged X-Forwarded-For chains on failed logins, with the server
//     trusting 127.0.0.1 as its proxy: the forged entries must not give
//     fresh per-IP buckets.
//
// Goals (issue 13): peak RSS growth under 32 MiB for any single request;
// the legitimate client's p99 under 100 ms during the slowloris and
// refusal floods. The peak is /proc's VmHWM, reset before each attack
// (clear_refs). Every attack is bounded in count and time.
//
//	go run ./bench/hostile [-slowloris 500] [-slowloris-duration 12s] [-refusals 10000] [-refusal-rounds 3] [-legit-rate 50] [-baseline 8s]
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/bench/benchenv"
	"github.com/vectabase/vectabase/bench/load"
	"github.com/vectabase/vectabase/server/bodytest"
)

func main() {
	if err := realMain(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "bench/hostile:", err)
		os.Exit(1)
	}
}

type flags struct {
	slowloris         int
	slowlorisDuration time.Duration
	refusals          int
	refusalRounds     int
	legitRate         float64
	baseline          time.Duration
}

const (
	adminEmail    = "owner@example.com"
	adminPassword = "correct horse battery staple"
	// The proxy the server trusts (TRUSTED_PROXIES) is the harness itself.
	realClient = "203.0.113.7"
	// Failed logins per IP before 429: low, so the forged-chain attack
	// shows the limit holding within a few dozen argon2id hashes.
	maxFailuresPerIP = 20
)

func realMain(ctx context.Context) error {
	var f flags
	flag.IntVar(&f.slowloris, "slowloris", 500, "slowloris connections")
	flag.DurationVar(&f.slowlorisDuration, "slowloris-duration", 12*time.Second, "how long the slowloris connections keep sending (past HTTP_READ_HEADER_TIMEOUT's 10 s, to show them cut)")
	flag.IntVar(&f.refusals, "refusals", 10000, "anonymous requests of the refusal flood")
	flag.IntVar(&f.refusalRounds, "refusal-rounds", 3, "floods sent back to back (one lasts about a second: more rounds give the legitimate client more samples)")
	flag.Float64Var(&f.legitRate, "legit-rate", 50, "requests/s of the legitimate client (GET /api/auth/me as a signed-in user)")
	flag.DurationVar(&f.baseline, "baseline", 8*time.Second, "length of each baseline run of the legitimate client")
	flag.Parse()
	if _, err := os.Stat("go.mod"); err != nil {
		return errors.New("run from the repository root: go run ./bench/hostile")
	}

	srv, err := benchenv.Boot(ctx, "hostile",
		"ADMIN_EMAIL="+adminEmail, "ADMIN_PASSWORD="+adminPassword,
		"LOG_LEVEL=error", "TRUSTED_PROXIES=127.0.0.1",
		"AUTH_MAX_FAILURES_PER_IP="+strconv.Itoa(maxFailuresPerIP),
	)
	if err != nil {
		return err
	}
	defer srv.Close()
	dbURL := srv.DatabaseURL

	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer db.Close(context.Background())

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	token, err := benchenv.Login(ctx, client, srv.Base, adminEmail, adminPassword)
	if err != nil {
		return err
	}
	legit := func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.Base+"/api/auth/me", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET /api/auth/me = %d", resp.StatusCode)
		}
		return nil
	}
	legitRun := func(ctx context.Context, d time.Duration) load.Result {
		return load.Run(ctx, load.Options{Concurrency: 4, Requests: int(f.legitRate*d.Seconds()) + 1, Duration: d, Rate: f.legitRate, Warmup: 5}, legit)
	}

	fmt.Printf("bench/hostile: serve pid %d on %s; legitimate client %.0f req/s GET /api/auth/me\n", srv.PID(), srv.Base, f.legitRate)
	baseBefore := legitRun(ctx, f.baseline)

	h := &harness{srv: srv.Serve, db: db, client: client}
	triple := bodytest.NestedGzip(3, 4<<30)
	bombs := []struct {
		name string
		body []byte
		enc  string
	}{
		{fmt.Sprintf("triple gzip 4 GiB (%d B), 3 codings", len(triple)), triple, "gzip, gzip, gzip"},
		{fmt.Sprintf("triple gzip 4 GiB (%d B), 1 coding", len(triple)), triple, "gzip"},
		{"gzip bomb 960 MiB", bodytest.Gzip(960 << 20), "gzip"},
		{"deflate bomb 960 MiB", bodytest.Deflate(960 << 20), "deflate"},
		{"brotli bomb 256 MiB", bodytest.Brotli(256<<20, 22), "br"},
	}
	for _, b := range bombs {
		h.attack(ctx, fmt.Sprintf("%s (%d B on the wire)", b.name, len(b.body)), nil, func(ctx context.Context) string {
			return statuses(h.post(ctx, "/api/auth/login", b.body, b.enc, ""))
		})
	}
	h.attack(ctx, "10 MB plain body", nil, func(ctx context.Context) string { return h.plainBody(10_000_000) })
	gz := bombs[2].body
	h.attack(ctx, "16 gzip bombs of 960 MiB at once", nil, func(ctx context.Context) string {
		codes := make([]int, 16)
		var wg sync.WaitGroup
		for i := range codes {
			wg.Add(1)
			go func() { defer wg.Done(); codes[i] = h.post(ctx, "/api/auth/login", gz, "gzip", "") }()
		}
		wg.Wait()
		return statuses(codes...)
	})

	baseMiddle := legitRun(ctx, f.baseline)
	during := func(ctx context.Context, d time.Duration) func() load.Result {
		ch := make(chan load.Result, 1)
		go func() { ch <- legitRun(ctx, d) }()
		return func() load.Result { return <-ch }
	}
	h.attack(ctx, fmt.Sprintf("%d slowloris connections, %s", f.slowloris, f.slowlorisDuration), func(ctx context.Context) func() load.Result {
		return during(ctx, f.slowlorisDuration)
	}, func(ctx context.Context) string { return h.slowloris(ctx, f.slowloris, f.slowlorisDuration) })
	var floodTime time.Duration
	h.attack(ctx, fmt.Sprintf("%d × %d anonymous refusals", f.refusalRounds, f.refusals), func(ctx context.Context) func() load.Result {
		// The flood's length is not known up front: the legitimate client
		// runs until the flood ends (bounded by 2 minutes).
		fctx, cancel := context.WithCancel(ctx)
		h.stopLegit = cancel
		return during(fctx, 2*time.Minute)
	}, func(ctx context.Context) string {
		start := time.Now()
		var parts []string
		for range f.refusalRounds {
			parts = append(parts, h.refusals(ctx, f.refusals))
		}
		s := strings.Join(parts, "; ")
		floodTime = time.Since(start)
		h.stopLegit()
		return s
	})
	h.attack(ctx, "forged X-Forwarded-For chains", nil, func(ctx context.Context) string { return h.forged(ctx, 2*maxFailuresPerIP) })

	// Idle workers of fasthttp's pool live 10 s: after that, whatever the
	// attacks left behind is a leak.
	// The harness's own idle keep-alive connections would hold a server
	// goroutine and descriptor each: close them first.
	client.CloseIdleConnections()
	h.attack(ctx, "nothing: 15 s after the last attack", nil, func(ctx context.Context) string {
		time.Sleep(15 * time.Second)
		return "-"
	})
	baseAfter := legitRun(ctx, f.baseline)
	// The machine is shared: the baseline is the median p99 of three runs
	// without attack (before, between and after the attacks).
	bases := []load.Result{baseBefore, baseMiddle, baseAfter}
	sort.Slice(bases, func(i, j int) bool { return bases[i].P99 < bases[j].P99 })
	h.print(os.Stdout, bases[1], []load.Result{baseBefore, baseMiddle, baseAfter}, floodTime)
	return nil
}

// snapshot is what the harness reads of the server between attacks.
type snapshot struct {
	rssKiB, hwmKiB int64
	goroutines     int
	fds            int
	auditRows      int64
	requestLogs    int64
}

func (h *harness) snap(ctx context.Context) snapshot {
	var s snapshot
	pid := strconv.Itoa(h.srv.PID())
	if raw, err := os.ReadFile("/proc/" + pid + "/status"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				switch f[0] {
				case "VmRSS:":
					s.rssKiB, _ = strconv.ParseInt(f[1], 10, 64)
				case "VmHWM:":
					s.hwmKiB, _ = strconv.ParseInt(f[1], 10, 64)
				}
			}
		}
	}
	if ents, err := os.ReadDir("/proc/" + pid + "/fd"); err == nil {
		s.fds = len(ents)
	}
	if resp, err := h.client.Get(h.srv.Metrics); err == nil {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
				s.goroutines, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		resp.Body.Close()
	}
	_ = h.db.QueryRow(ctx, `SELECT (SELECT count(*) FROM audit_logs), (SELECT count(*) FROM api_request_logs)`).Scan(&s.auditRows, &s.requestLogs)
	return s
}

// resetPeak makes VmHWM the current RSS, so the next reading is the peak
// of what happens in between.
func (h *harness) resetPeak() {
	_ = os.WriteFile("/proc/"+strconv.Itoa(h.srv.PID())+"/clear_refs", []byte("5"), 0)
}

type harness struct {
	srv       *benchenv.Serve
	db        *pgx.Conn
	client    *http.Client
	rows      []row
	stopLegit func()
}

type row struct {
	name          string
	outcome       string
	before, after snapshot
	legit         *load.Result
}

// attack runs fn with the server's state read around it; withLegit, when
// set, starts the legitimate client before fn and collects its result
// after.
func (h *harness) attack(ctx context.Context, name string, withLegit func(context.Context) func() load.Result, fn func(context.Context) string) {
	// Let the previous attack's connections close and memory settle.
	time.Sleep(time.Second)
	before := h.snap(ctx)
	h.resetPeak()
	var wait func() load.Result
	if withLegit != nil {
		wait = withLegit(ctx)
	}
	actx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	outcome := fn(actx)
	cancel()
	r := row{name: name, outcome: outcome}
	if wait != nil {
		res := wait()
		r.legit = &res
	}
	time.Sleep(500 * time.Millisecond)
	r.before, r.after = before, h.snap(ctx)
	h.rows = append(h.rows, r)
	fmt.Fprintf(os.Stderr, "  done: %s -> %s\n", name, outcome)
}

// post sends body to path with Content-Encoding enc (and X-Forwarded-For
// xff when set) and returns the status, or -1 when the connection failed.
func (h *harness) post(ctx context.Context, path string, body []byte, enc, xff string) int {
	req, _ := http.NewRequestWithContext(ctx, "POST", h.srv.Base+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if enc != "" {
		req.Header.Set("Content-Encoding", enc)
	}
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return -1
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// plainBody sends n bytes with their Content-Length on a raw connection,
// writing as long as the server reads, and returns the answer's status.
func (h *harness) plainBody(n int) string {
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.srv.Base, "http://"))
	if err != nil {
		return "dial: " + err.Error()
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	go func() {
		fmt.Fprintf(conn, "POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", n)
		chunk := bytes.Repeat([]byte("a"), 64<<10)
		for sent := 0; sent < n; sent += len(chunk) {
			if _, err := conn.Write(chunk[:min(len(chunk), n-sent)]); err != nil {
				return
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "read: " + err.Error()
	}
	resp.Body.Close()
	return strconv.Itoa(resp.StatusCode)
}

// slowloris opens n connections that each send a request line and then a
// header line a second, never finishing, for d; it reports how many the
// server cut off.
func (h *harness) slowloris(ctx context.Context, n int, d time.Duration) string {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	addr := strings.TrimPrefix(h.srv.Base, "http://")
	var cut, opened atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				return
			}
			defer conn.Close()
			opened.Add(1)
			closed := make(chan struct{})
			go func() {
				_, _ = io.Copy(io.Discard, conn)
				close(closed)
			}()
			if _, err := fmt.Fprintf(conn, "GET /api/auth/me?slow=%d HTTP/1.1\r\nHost: x\r\n", i); err != nil {
				cut.Add(1)
				return
			}
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-closed:
					cut.Add(1)
					return
				case <-t.C:
					if _, err := fmt.Fprintf(conn, "X-Slow-%d: x\r\n", rand.IntN(1000)); err != nil {
						cut.Add(1)
						return
					}
				}
			}
		}()
		// Open them over about a second, as a real attacker's ramp.
		if i%50 == 49 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	wg.Wait()
	return fmt.Sprintf("%d opened, %d cut by the server", opened.Load(), cut.Load())
}

// refusals sends n anonymous requests the server refuses, from 32
// workers, and reports the statuses.
func (h *harness) refusals(ctx context.Context, n int) string {
	longName := strings.Repeat("a", 1000)
	var next atomic.Int64
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := map[int]int{}
			for {
				i := next.Add(1)
				if i > int64(n) || ctx.Err() != nil {
					break
				}
				var req *http.Request
				if i%2 == 0 {
					req, _ = http.NewRequestWithContext(ctx, "GET", h.srv.Base+"/api/secrets/"+longName+strconv.FormatInt(i, 10), nil)
				} else {
					req, _ = http.NewRequestWithContext(ctx, "POST", h.srv.Base+"/api/developer/verify", strings.NewReader("{}"))
					req.Header.Set("Content-Type", "application/json")
				}
				resp, err := h.client.Do(req)
				if err != nil {
					mine[-1]++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mine[resp.StatusCode]++
			}
			mu.Lock()
			for k, v := range mine {
				codes[k] += v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return fmtCodes(codes)
}

// forged sends n failed logins, each with a fresh random address left of
// the real client's in X-Forwarded-For (the harness is the trusted proxy),
// and reports the statuses and the addresses the audit rows recorded.
func (h *harness) forged(ctx context.Context, n int) string {
	codes := map[int]int{}
	for i := range n {
		fake := fmt.Sprintf("%d.%d.%d.%d", 1+rand.IntN(220), rand.IntN(256), rand.IntN(256), 1+rand.IntN(254))
		body, _ := json.Marshal(map[string]string{"email": fmt.Sprintf("probe%d@example.com", i), "password": "wrong-password"})
		codes[h.post(ctx, "/api/auth/login", body, "", fake+", "+realClient)]++
	}
	var ips []string
	rows, err := h.db.Query(ctx, `SELECT DISTINCT host(ip_address) FROM audit_logs WHERE action = 'auth.login_failed'`)
	if err == nil {
		for rows.Next() {
			var ip *string
			if rows.Scan(&ip) == nil && ip != nil {
				ips = append(ips, *ip)
			}
		}
		rows.Close()
	}
	return fmt.Sprintf("%s; failed-login audit IPs %v", fmtCodes(codes), ips)
}

func statuses(codes ...int) string {
	m := map[int]int{}
	for _, c := range codes {
		m[c]++
	}
	return fmtCodes(m)
}

func fmtCodes(m map[int]int) string {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var parts []string
	for _, k := range keys {
		if k < 0 {
			parts = append(parts, fmt.Sprintf("conn-error×%d", m[k]))
			continue
		}
		parts = append(parts, fmt.Sprintf("%d×%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func mib(kib int64) string { return fmt.Sprintf("%.1f", float64(kib)/1024) }

func (h *harness) print(w io.Writer, base load.Result, runs []load.Result, flood time.Duration) {
	fmt.Fprintf(w, "\nlegitimate client without attack (before, between, after the attacks):")
	for _, r := range runs {
		fmt.Fprintf(w, " p50 %v p99 %v;", r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond))
	}
	fmt.Fprintf(w, " baseline p99 = the median, %v\n\n", base.P99.Round(time.Microsecond))
	fmt.Fprintf(w, "%-58s | %-8s %-8s %-8s %-10s | %-9s | %-9s | %-11s | %-10s | %s\n",
		"attack", "RSS MiB", "peak", "after", "peak grow", "gorout.", "open fds", "audit rows", "req logs", "legit p99 (baseline) / answers")
	for _, r := range h.rows {
		grow := r.after.hwmKiB - r.before.rssKiB
		legit := "-"
		if r.legit != nil {
			legit = fmt.Sprintf("%v (%v) ×%.2f, %d req, %d err", r.legit.P99.Round(time.Microsecond), base.P99.Round(time.Microsecond),
				float64(r.legit.P99)/float64(max(base.P99, time.Microsecond)), r.legit.Requests, r.legit.Errors)
		}
		fmt.Fprintf(w, "%-58s | %-8s %-8s %-8s %-10s | %4d→%-4d | %4d→%-4d | %5d→%-5d | %4d→%-4d | %s\n",
			r.name, mib(r.before.rssKiB), mib(r.after.hwmKiB), mib(r.after.rssKiB), mib(grow)+" MiB",
			r.before.goroutines, r.after.goroutines, r.before.fds, r.after.fds,
			r.before.auditRows, r.after.auditRows, r.before.requestLogs, r.after.requestLogs, legit)
		fmt.Fprintf(w, "%-58s   answers: %s\n", "", r.outcome)
	}
	if flood > 0 {
		fmt.Fprintf(w, "\nthe refusal flood took %v\n", flood.Round(time.Millisecond))
	}
	fmt.Fprintf(w, "goals: peak growth < 32 MiB for each single-request attack; legit p99 < 100 ms during slowloris and refusals\n")
}
