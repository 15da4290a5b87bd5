// Command realtime benchmarks the change feed over loopback WebSockets,
// beside a baseline measured in the same run: each call commits an UPDATE
// of a product and waits until every one of N subscribed clients has
// received its change event (trigger, NOTIFY, LISTEN, record load,
// authorization, fan-out, WebSocket write); the baseline commits the same
// UPDATE to a product nobody subscribes to (announced, but delivered to no
// one). The ratio of median p50s says what delivery adds to the write;
// its inverse, UPDATE alone / UPDATE + delivery, is issue 19's fan-out
// ratio (goal at least 0.6).
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
//	go run ./bench/realtime [-clients 50] [-rounds 3] [-duration 2s] [-concurrency 1] [-instances 1]
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/bench/benchenv"
	"github.com/vectabase/vectabase/bench/load"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/server/realtime"
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
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the measured rounds to this file")
	flag.Parse()

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

	w := newWaiter(*clients)
	for i := 0; i < *clients; i++ {
		wsURL := "ws://" + addrs[i%len(addrs)] + "/api/realtime?access_token=" + url.QueryEscape(login.Token)
		conn, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
		if err != nil {
			return fmt.Errorf("dial client %d: %w", i, err)
		}
		defer conn.Close()
		if err := conn.WriteJSON(map[string]any{"type": "subscribe", "topic": "products", "filter": map[string]string{"storeId": storeID}}); err != nil {
			return err
		}
		go w.read(conn)
	}
	for w.subscribed() < *clients {
		time.Sleep(10 * time.Millisecond)
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
		ch := w.expect(name)
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

	opts := load.Options{Concurrency: *conc, Requests: 200000, Duration: *duration, Warmup: 20}
	var feedP50, baseP50, feedP99, feedRPS []float64
	var lastFeed, lastBase load.Result
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	for r := 0; r < *rounds; r++ {
		lastBase = load.Run(ctx, opts, baseline)
		lastFeed = load.Run(ctx, opts, delivered)
		if lastFeed.FirstError != nil {
			return lastFeed.FirstError
		}
		feedP50 = append(feedP50, float64(lastFeed.P50))
		feedP99 = append(feedP99, float64(lastFeed.P99))
		feedRPS = append(feedRPS, lastFeed.RPS)
		baseP50 = append(baseP50, float64(lastBase.P50))
		load.Print(os.Stdout, fmt.Sprintf("round %d: to %d clients", r+1, *clients), lastFeed, lastBase)
		fmt.Printf("    delivery %d in %v, p90 %v max %v; baseline p90 %v max %v\n", lastFeed.Requests, lastFeed.Elapsed.Round(time.Millisecond), lastFeed.P90.Round(time.Microsecond), lastFeed.Max.Round(time.Microsecond),
			lastBase.P90.Round(time.Microsecond), lastBase.Max.Round(time.Microsecond))
	}
	fp, bp := load.Median(feedP50), load.Median(baseP50)
	fmt.Printf("median p50: UPDATE + delivery to all %d clients %v, UPDATE alone %v, ratio %.2f\n",
		*clients, time.Duration(fp).Round(time.Microsecond), time.Duration(bp).Round(time.Microsecond), fp/bp)
	fmt.Printf("%d clients over %d instances, %d writers: %.0f deliveries/s (goal >= 20,000), p99 UPDATE + delivery to all %v (goal < 50 ms) (medians)\n",
		*clients, len(hubs), *conc, load.Median(feedRPS)*float64(*clients), time.Duration(load.Median(feedP99)).Round(time.Microsecond))
	fmt.Printf("fan-out ratio, UPDATE alone / UPDATE + delivery (median p50s): %.2f (goal >= 0.6, issue 19)\n", bp/fp)
	return nil
}

// waiter counts, per product name, how many clients received the update
// that set it, and signals when all have.
type waiter struct {
	n    int
	mu   sync.Mutex
	subs int
	want map[string]*pending
}

type pending struct {
	got  int
	done chan struct{}
}

func newWaiter(n int) *waiter { return &waiter{n: n, want: map[string]*pending{}} }

func (w *waiter) subscribed() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.subs
}

func (w *waiter) expect(name string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := &pending{done: make(chan struct{})}
	w.want[name] = p
	return p.done
}

func (w *waiter) read(conn *websocket.Conn) {
	for {
		_, b, err := conn.ReadMessage()
		if err != nil {
			return
		}
		// The clients share the server's cores: read the two fields by
		// hand rather than decode every event (a full json.Unmarshal per
		// client and event cost as much as the server's whole delivery).
		typ, name := field(b, "type"), ""
		if i := bytes.Index(b, []byte(`"record":`)); i >= 0 {
			name = field(b[i:], "name")
		}
		w.mu.Lock()
		switch typ {
		case "subscribed":
			w.subs++
		case "change":
			if p := w.want[name]; p != nil {
				p.got++
				if p.got == w.n {
					close(p.done)
					delete(w.want, name)
				}
			}
		}
		w.mu.Unlock()
	}
}

// field returns the string value of the first "key":"value" in b (values
// here are identifiers and names with no escapes).
func field(b []byte, key string) string {
	i := bytes.Index(b, []byte(`"`+key+`":"`))
	if i < 0 {
		return ""
	}
	rest := b[i+len(key)+4:]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}
