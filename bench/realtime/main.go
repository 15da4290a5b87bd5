// Command realtime benchmarks the change feed over loopback WebSockets,
// beside a baseline measured in the same run: each call commits an UPDATE
// of a product and waits until every one of N subscribed clients has
// received its change event (trigger, NOTIFY, LISTEN, authorization,
// fan-out, WebSocket write, the client's read); the baseline commits the
// same UPDATE to a product nobody subscribes to (announced, but delivered
// to no one). Rounds alternate baseline and delivery; each round gives a
// ratio of p50s, and the figure is the median of those ratios (issue 19's
// fan-out ratio, UPDATE alone / UPDATE + delivery, goal at least 0.6),
// printed with the load averages at the start and the end of the run.
//
// The clients run in a child process (the same binary, -role clients), so
// the load generator's CPU is measured apart from the server's: every
// delivery round prints the CPU per delivery of the server process (the
// hubs, and the goroutines committing the UPDATEs), of the clients'
// process and of the database's PostgreSQL backends. On a shared 2-core
// machine their sum bounds what the machine can deliver at all: at most
// 2 s of CPU per second, so deliveries/s <= 2,000,000 µs / (sum µs).
// -inprocess runs the clients in this process, as the harness did before
// (no CPU split).
//
// It uses DATABASE_URL when set (the database is migrated and written to:
// use a throwaway one), else a private PostgreSQL cluster in a temporary
// directory, removed at the end. Every run is bounded in time and count.
//
// With -instances 2 the clients are spread over two hubs and servers on
// the same database, as two `serve` instances would be (PostgreSQL
// LISTEN/NOTIFY carries every change to both); it then also prints the
// deliveries per second (events x clients) and the p99 of UPDATE +
// delivery to all, which bounds the latency from commit (issue 19: 1,000
// subscribers over two instances, p99 under 50 ms, at least 20,000
// deliveries/s: -clients 1000 -instances 2 -concurrency 4).
//
// With one writer, each round also measures the floor (floor.go): the
// same count of messages written over bare loopback TCP connections to
// readers in another child process, with no WebSocket, hub or database,
// and prints the ratio that alone would allow beside the UPDATE.
//
//	go run ./bench/realtime [-clients 50] [-rounds 3] [-duration 2s] [-concurrency 1] [-instances 1] [-inprocess] [-floor-bytes 512] [-cpuprofile FILE]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/bench/benchenv"
	"github.com/vectabase/vectabase/bench/load"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/server/realtime"
	"github.com/vectabase/vectabase/store"
)

func main() {
	if err := realMain(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "bench/realtime:", err)
		os.Exit(1)
	}
}

type nopAuditor struct{}

func (nopAuditor) Record(context.Context, vectabase.AuditEvent) error { return nil }

func realMain(ctx context.Context) error {
	clients := flag.Int("clients", 50, "subscribed WebSocket clients; each event must reach all of them")
	rounds := flag.Int("rounds", 3, "alternating rounds of each measurement; medians are reported")
	duration := flag.Duration("duration", 2*time.Second, "length of each round")
	conc := flag.Int("concurrency", 1, "concurrent writers (1: the latency of one change at a time)")
	instances := flag.Int("instances", 1, "hubs (server instances) on the same database the clients are spread over")
	inprocess := flag.Bool("inprocess", false, "run the clients in this process (no CPU split between server and clients)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the measured rounds to this file")
	role := flag.String("role", "", "internal: \"clients\" runs the subscribed clients for a parent run, \"tcp\" the bare TCP readers")
	floorSize := flag.Int("floor-bytes", 512, "size of each message of the bare TCP fan-out measured beside (0: skip it)")
	flag.Parse()
	switch *role {
	case "clients":
		return runClients(os.Stdin, os.Stdout)
	case "tcp":
		return runTCPReaders(os.Stdin, os.Stdout)
	}
	loadStart := load.LoadAvg()

	env, cleanup, err := benchenv.Open(ctx, 20)
	if err != nil {
		return err
	}
	defer cleanup()
	log, db, kr, dbURL := zerolog.Nop(), env.DB, env.KR, env.URL
	reg := prometheus.NewRegistry()
	a, err := auth.New(ctx, auth.Config{AccessTTL: time.Hour, RefreshTTL: time.Hour, Issuer: "vectabase",
		Argon2:        auth.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32},
		FailureWindow: time.Minute, AttemptWindow: time.Minute}, db, kr, nopAuditor{}, log, reg)
	if err != nil {
		return err
	}
	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()
	var hubs []*realtime.Hub
	var addrs []string
	for i := 0; i < max(*instances, 1); i++ {
		ireg := prometheus.NewRegistry()
		hub, err := realtime.New(realtime.Config{SendBuffer: 1024}, db, dbURL, a, log, ireg)
		if err != nil {
			return err
		}
		go func() { _ = hub.Run(hctx) }()
		defer hub.Close()
		srv := server.New(server.Config{}, log, ireg)
		srv.Mount(hub.Routes())
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		go func() { _ = srv.Serve(ln) }()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
		hubs, addrs = append(hubs, hub), append(addrs, ln.Addr().String())
	}

	meta := auth.RequestMeta{IP: "127.0.0.1", UserAgent: "bench"}
	email := "bench-" + uuid.NewString()[:8] + "@example.com"
	if _, err := a.Register(ctx, email, "bench password 1", meta); err != nil {
		return err
	}
	login, err := a.Login(ctx, email, "bench password 1", meta)
	if err != nil {
		return err
	}
	storeID := uuid.NewString()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO stores (id, owner_id, name, slug) VALUES ($1, $2, 'bench', $3)`, storeID, login.User.ID, "bench-"+storeID); err != nil {
		return err
	}
	// A second store nobody subscribes to, for the baseline: its changes
	// are announced and reach the hub, which finds no subscriber and
	// delivers nothing.
	quietID := uuid.NewString()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO stores (id, owner_id, name, slug) VALUES ($1, $2, 'quiet', $3)`, quietID, login.User.ID, "quiet-"+quietID); err != nil {
		return err
	}
	// One product per writer in each store, so writers do not queue on one
	// row's lock.
	newProducts := func(store string) ([]string, error) {
		ids := make([]string, *conc)
		for i := range ids {
			ids[i] = uuid.NewString()
			if _, err := db.Pool.Exec(ctx, `INSERT INTO products (id, store_id, name, price_cents) VALUES ($1, $2, 'p', 1)`, ids[i], store); err != nil {
				return nil, err
			}
		}
		return ids, nil
	}
	products, err := newProducts(storeID)
	if err != nil {
		return err
	}
	quiet, err := newProducts(quietID)
	if err != nil {
		return err
	}
	for _, hub := range hubs {
		for !hub.Listening() {
			time.Sleep(10 * time.Millisecond)
		}
	}

	// The clients: in a child process (so its CPU is its own), or here.
	expect := newExpectations()
	cc := clientConfig{Token: login.Token, StoreID: storeID, Clients: *clients}
	for _, addr := range addrs {
		cc.URLs = append(cc.URLs, "ws://"+addr+"/api/realtime")
	}
	childPID := 0
	if *inprocess {
		w := newWaiter(*clients, expect.done)
		if err := w.dial(cc); err != nil {
			return err
		}
		defer w.close()
	} else {
		pid, stop, err := startClients(ctx, cc, expect.done)
		if err != nil {
			return err
		}
		defer stop()
		childPID = pid
	}

	// Each call holds a product of its own until its event is delivered, so
	// one writer's change is never interleaved with another's on the same
	// row (rows too large to announce are loaded when sent, and would show
	// the later name).
	pool := func(ids []string) chan string {
		ch := make(chan string, len(ids))
		for _, id := range ids {
			ch <- id
		}
		return ch
	}
	busy, idle := pool(products), pool(quiet)
	update := func(ctx context.Context, p, name string) error {
		_, err := db.Pool.Exec(ctx, `UPDATE products SET name = $2 WHERE id = $1`, p, name)
		return err
	}
	delivered := func(ctx context.Context) error {
		p := <-busy
		defer func() { busy <- p }() // only once delivered
		name := uuid.NewString()
		ch := expect.expect(name)
		if err := update(ctx, p, name); err != nil {
			return err
		}
		select {
		case <-ch:
			return nil
		case <-time.After(5 * time.Second):
			return errors.New("event not delivered to every client within 5 s")
		}
	}
	// The baseline is the same write to a product of the quiet store.
	baseline := func(ctx context.Context) error {
		p := <-idle
		defer func() { idle <- p }()
		return update(ctx, p, uuid.NewString())
	}

	stopProfile, err := load.CPUProfile(*cpuprofile)
	if err != nil {
		return err
	}
	defer stopProfile()
	opts := load.Options{Concurrency: *conc, Requests: 200000, Duration: *duration, Warmup: 20}
	// The floor: the same number of messages of about an event's size
	// written over bare loopback TCP connections, one writer goroutine per
	// connection as the hub has, to readers in a child process of their
	// own that report when all have read one. No WebSocket framing, no
	// database, no hub: what any delivery over TCP costs on this machine.
	var floor *tcpFanout
	if *floorSize > 0 && !*inprocess && *conc == 1 {
		if floor, err = startTCPFanout(ctx, *clients, *floorSize); err != nil {
			return err
		}
		defer floor.stop()
	}
	var floorP50, floorBounds []float64
	var feedP50, baseP50, ratios, feedP99, feedRPS, srvCPU, cliCPU, pgCPU, extraCPU, bounds []float64
	for r := 0; r < *rounds; r++ {
		bpg0, err := backendCPU(ctx, db)
		if err != nil {
			return err
		}
		bs0 := load.SelfCPU()
		base := load.Run(ctx, opts, baseline)
		bs1 := load.SelfCPU()
		pg0, err := backendCPU(ctx, db)
		if err != nil {
			return err
		}
		s0, c0 := load.SelfCPU(), load.PIDsCPU([]int{childPID})
		feed := load.Run(ctx, opts, delivered)
		s1, c1 := load.SelfCPU(), load.PIDsCPU([]int{childPID})
		pg1, err := backendCPU(ctx, db)
		if err != nil {
			return err
		}
		if feed.FirstError != nil {
			return feed.FirstError
		}
		if floor != nil {
			f0, r0 := load.SelfCPU(), load.PIDsCPU([]int{floor.pid})
			fl := load.Run(ctx, opts, floor.send)
			f1, r1 := load.SelfCPU(), load.PIDsCPU([]int{floor.pid})
			if fl.FirstError != nil {
				return fl.FirstError
			}
			if n := float64((fl.Requests + opts.Warmup) * *clients); n > 0 {
				fmt.Printf("    bare TCP CPU per delivery: writers %.2f µs, readers' process %.2f µs\n", float64((f1-f0).Microseconds())/n, float64((r1-r0).Microseconds())/n)
			}
			floorP50 = append(floorP50, float64(fl.P50))
			floorBounds = append(floorBounds, float64(base.P50)/float64(base.P50+fl.P50))
			fmt.Printf("    bare TCP fan-out of %d-byte messages to %d readers: p50 %v p99 %v; UPDATE alone + that: ratio at most %.2f\n",
				*floorSize, *clients, fl.P50.Round(time.Microsecond), fl.P99.Round(time.Microsecond), floorBounds[len(floorBounds)-1])
		}
		feedP50 = append(feedP50, float64(feed.P50))
		feedP99 = append(feedP99, float64(feed.P99))
		feedRPS = append(feedRPS, feed.RPS)
		baseP50 = append(baseP50, float64(base.P50))
		ratios = append(ratios, float64(base.P50)/float64(feed.P50))
		load.Print(os.Stdout, fmt.Sprintf("round %d: to %d clients", r+1, *clients), feed, base)
		fmt.Printf("    delivery %d in %v, p90 %v max %v; baseline p90 %v max %v; fan-out ratio %.2f\n", feed.Requests, feed.Elapsed.Round(time.Millisecond), feed.P90.Round(time.Microsecond), feed.Max.Round(time.Microsecond),
			base.P90.Round(time.Microsecond), base.Max.Round(time.Microsecond), ratios[r])
		// The warm-up calls fall inside the CPU interval too.
		if n := float64((feed.Requests + opts.Warmup) * *clients); n > 0 && !*inprocess {
			perDelivery := func(d time.Duration) float64 { return float64(d.Microseconds()) / n }
			srvCPU = append(srvCPU, perDelivery(s1-s0))
			cliCPU = append(cliCPU, perDelivery(c1-c0))
			pgCPU = append(pgCPU, perDelivery(cpuSince(pg0, pg1)))
			fmt.Printf("    CPU per delivery: server process %.2f µs, clients' process %.2f µs, PostgreSQL %.2f µs\n", srvCPU[r], cliCPU[r], pgCPU[r])
			// What delivery adds to an UPDATE, in CPU: the feed's CPU
			// per event less the baseline's per UPDATE. Even spread
			// perfectly over 2 cores it adds extra/2 to the latency,
			// which bounds the fan-out ratio from above.
			if bn := float64(base.Requests + opts.Warmup); bn > 0 {
				perEvent := (perDelivery(s1-s0) + perDelivery(c1-c0) + perDelivery(cpuSince(pg0, pg1))) * float64(*clients)
				perUpdate := float64((bs1 - bs0 + cpuSince(bpg0, pg0)).Microseconds()) / bn
				extra := perEvent - perUpdate
				bound := float64(base.P50.Microseconds()) / (float64(base.P50.Microseconds()) + extra/2)
				extraCPU, bounds = append(extraCPU, extra), append(bounds, bound)
				fmt.Printf("    CPU per event %.0f µs (clients %.0f µs of it), per baseline UPDATE %.0f µs: delivery adds %.0f µs of CPU, so on 2 cores the ratio is at most %.2f\n",
					perEvent, perDelivery(c1-c0)*float64(*clients), perUpdate, extra, bound)
			}
		}
	}
	fp, bp := load.Median(feedP50), load.Median(baseP50)
	fmt.Printf("median p50: UPDATE + delivery to all %d clients %v, UPDATE alone %v\n",
		*clients, time.Duration(fp).Round(time.Microsecond), time.Duration(bp).Round(time.Microsecond))
	fmt.Printf("%d clients over %d instances, %d writers: %.0f deliveries/s (goal >= 20,000), p99 UPDATE + delivery to all %v (goal < 50 ms) (medians)\n",
		*clients, len(hubs), *conc, load.Median(feedRPS)*float64(*clients), time.Duration(load.Median(feedP99)).Round(time.Microsecond))
	if len(srvCPU) > 0 {
		sc, cl, pg := load.Median(srvCPU), load.Median(cliCPU), load.Median(pgCPU)
		fmt.Printf("CPU per delivery (medians): server %.2f µs, clients %.2f µs, PostgreSQL %.2f µs; 2 cores bound deliveries/s at %.0f (server alone %.0f)\n",
			sc, cl, pg, 2e6/(sc+cl+pg), 2e6/sc)
		fmt.Printf("delivery adds %.0f µs of CPU per event (median): on 2 cores the fan-out ratio can be at most %.2f (median of rounds)\n",
			load.Median(extraCPU), load.Median(bounds))
	}
	if len(floorP50) > 0 {
		fmt.Printf("bare loopback TCP fan-out to %d readers, no WebSocket, hub or database (median p50): %v; with UPDATE alone the ratio could be at most %.2f (median of rounds)\n",
			*clients, time.Duration(load.Median(floorP50)).Round(time.Microsecond), load.Median(floorBounds))
	}
	fmt.Printf("fan-out ratio, UPDATE alone / UPDATE + delivery (median of %d rounds' p50 ratios): %.2f (goal >= 0.6, issue 19); load average %s at start, %s at end\n",
		len(ratios), load.Median(ratios), loadStart, load.LoadAvg())
	return nil
}

// backendCPU is the CPU used so far by each PostgreSQL backend of the
// benchmark's database (the pool's and the LISTEN connections): the
// database's share of a round.
func backendCPU(ctx context.Context, db *store.DB) (map[int]time.Duration, error) {
	rows, err := db.Pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'`)
	if err != nil {
		return nil, err
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, err
	}
	cpu := make(map[int]time.Duration, len(pids))
	for _, pid := range pids {
		cpu[pid] = load.PIDsCPU([]int{pid})
	}
	return cpu, nil
}

// cpuSince sums what each backend alive at the end used since the start
// (all of it for a backend that started meanwhile). A backend that ended
// meanwhile is left out: its last figures are gone with it.
func cpuSince(before, after map[int]time.Duration) time.Duration {
	var sum time.Duration
	for pid, t := range after {
		if d := t - before[pid]; d > 0 {
			sum += d
		}
	}
	return sum
}

// expectations are the events a run waits for: per product name, a
// channel closed once every client has received the update that set it.
type expectations struct {
	mu   sync.Mutex
	want map[string]chan struct{}
}

func newExpectations() *expectations { return &expectations{want: map[string]chan struct{}{}} }

func (e *expectations) expect(name string) <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	ch := make(chan struct{})
	e.want[name] = ch
	return ch
}

func (e *expectations) done(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ch := e.want[name]; ch != nil {
		close(ch)
		delete(e.want, name)
	}
}

// clientConfig is what the clients' process is told on its stdin.
type clientConfig struct {
	URLs    []string `json:"urls"`
	Token   string   `json:"token"`
	StoreID string   `json:"storeId"`
	Clients int      `json:"clients"`
}

// startClients starts the clients' process and reports each product name
// every client has received to done. stop ends the process.
func startClients(ctx context.Context, cc clientConfig, done func(string)) (pid int, stop func(), err error) {
	ch, err := startChild(ctx, "clients")
	if err != nil {
		return 0, nil, err
	}
	stop = ch.stop
	if err := json.NewEncoder(ch.in).Encode(cc); err != nil {
		stop()
		return 0, nil, err
	}
	lines := ch.lines
	ready := make(chan error, 1)
	go func() {
		first := true
		for lines.Scan() {
			line := lines.Text()
			if first {
				first = false
				if line != "ready" {
					ready <- fmt.Errorf("clients' process: %s", line)
					return
				}
				ready <- nil
				continue
			}
			done(line)
		}
		if first {
			ready <- errors.New("clients' process ended before it was ready")
		}
	}()
	select {
	case err := <-ready:
		if err != nil {
			stop()
			return 0, nil, err
		}
	case <-time.After(2 * time.Minute):
		stop()
		return 0, nil, errors.New("clients' process not ready within 2 minutes")
	}
	return ch.pid(), stop, nil
}

// runClients is the clients' process: it reads its clientConfig, connects
// and subscribes every client, says "ready", then prints the product name
// of each update once every client has received it, until stdin closes.
func runClients(in io.Reader, out io.Writer) error {
	dec := json.NewDecoder(in)
	var cc clientConfig
	if err := dec.Decode(&cc); err != nil {
		return err
	}
	var outMu sync.Mutex
	w := newWaiter(cc.Clients, func(name string) {
		outMu.Lock()
		defer outMu.Unlock()
		_, _ = io.WriteString(out, name+"\n")
	})
	if err := w.dial(cc); err != nil {
		fmt.Fprintln(out, err)
		return err
	}
	defer w.close()
	outMu.Lock()
	_, err := io.WriteString(out, "ready\n")
	outMu.Unlock()
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, in) // until the parent closes stdin
	return nil
}

// waiter counts, per product name, how many clients received the update
// that set it, and calls done when all have.
type waiter struct {
	n     int
	done  func(name string)
	conns []*websocket.Conn
	mu    sync.Mutex
	subs  int
	got   map[string]int
}

func newWaiter(n int, done func(string)) *waiter {
	return &waiter{n: n, done: done, got: map[string]int{}}
}

// dial connects and subscribes every client, and returns once all are
// subscribed.
func (w *waiter) dial(cc clientConfig) error {
	for i := 0; i < cc.Clients; i++ {
		conn, _, err := websocket.DefaultDialer.Dial(cc.URLs[i%len(cc.URLs)]+"?access_token="+url.QueryEscape(cc.Token), nil)
		if err != nil {
			return fmt.Errorf("dial client %d: %w", i, err)
		}
		w.conns = append(w.conns, conn)
		if err := conn.WriteJSON(map[string]any{"type": "subscribe", "topic": "products", "filter": map[string]string{"storeId": cc.StoreID}}); err != nil {
			return err
		}
		go w.read(conn)
	}
	deadline := time.Now().Add(time.Minute)
	for w.subscribed() < cc.Clients {
		if time.Now().After(deadline) {
			return errors.New("clients not all subscribed within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

func (w *waiter) close() {
	for _, c := range w.conns {
		c.Close()
	}
}

func (w *waiter) subscribed() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.subs
}

func (w *waiter) read(conn *websocket.Conn) {
	buf := make([]byte, 0, 1024)
	for {
		_, r, err := conn.NextReader()
		if err != nil {
			return
		}
		// One buffer per client, reused: the clients share the cores
		// with the server, so they allocate nothing per event.
		buf = buf[:0]
		for {
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)]
			}
			m, err := r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+m]
			if err == io.EOF {
				break
			}
			if err != nil {
				return
			}
		}
		// Read the two fields by hand rather than decode every event (a
		// full json.Unmarshal per client and event cost as much as the
		// server's whole delivery).
		typ, name := field(buf, "type"), []byte(nil)
		if i := bytes.Index(buf, []byte(`"record":`)); i >= 0 {
			name = field(buf[i:], "name")
		}
		switch string(typ) {
		case "subscribed":
			w.mu.Lock()
			w.subs++
			w.mu.Unlock()
		case "change":
			w.mu.Lock()
			k := string(name)
			w.got[k]++
			all := w.got[k] == w.n
			if all {
				delete(w.got, k)
			}
			w.mu.Unlock()
			if all {
				w.done(k)
			}
		}
	}
}

// field returns the string value of the first "key":"value" in b (values
// here are identifiers and names with no escapes).
func field(b []byte, key string) []byte {
	i := bytes.Index(b, []byte(`"`+key+`":"`))
	if i < 0 {
		return nil
	}
	rest := b[i+len(key)+4:]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return nil
	}
	return rest[:j]
}
