// Package discord benchmarks the whitelist bot's interactions endpoint over
// loopback HTTP: /whitelist check (signature check, the guild's
// configuration and permission rules, and the member's whitelist look-ups)
// beside PING (the signature check alone) in the same run on one database.
// The ratio says what a command's database work costs beyond the signature
// Discord makes every request pay.
//
//	go test -run '^$' -bench . -benchtime 1x ./bench/discord/
//
// BENCH_DISCORD_REQUESTS (default 2000 per side and round),
// BENCH_DISCORD_ROUNDS (default 7) and BENCH_DISCORD_CONCURRENCY (default
// 16) tune it. It prints the median of the per-round throughput ratios
// and, steadier on a shared machine, the CPU each request cost this
// process and the database's backends.
//
// Profiled at 0.25-0.33 of PING (issue 15), /whitelist check made four
// queries (guild, rules, two member look-ups) and waited for a
// hash-chained audit row's group commit on every read. It now reads the
// guild's configuration from a 2-second cache, batches the two look-ups
// into one round trip, and writes no audit row for a read; that measured
// 0.55-0.6. Profiled again (BenchmarkInteract in server/discord, pprof
// here), a check then paid one statement per command of ~100 us
// (PostgreSQL spends ~17 us of backend CPU on even SELECT 1), pgx array
// decoding, and ~110 allocations against PING's 6. Concurrent checks now
// share one statement (server/discord's statusBatcher), whose result is
// five columns scanned without allocations per NULL; that measured
// 0.63-0.65 on a quiet machine. The third profile found encoding/json's
// reflection the largest Go cost left: interactions now go through a
// slim decoder held to encoding/json (FuzzDecodeInteractionMatchesJSON),
// replies are appended without reflection (FuzzResponseJSONMatchesMarshal),
// batch waits are pooled and the check's reply is built in one buffer:
// BenchmarkInteract's check went from 87 to 54 allocations (66 to 35 with
// 16 at once); that measured 0.67-0.71 (median 0.69 over 22 runs). The
// fourth profile left ed25519 (the client's signing and the server's
// verification) at three quarters of the CPU and nothing check-only above
// a few microseconds; a longer batch linger (100 -> 200 us) halved the
// database's share: over 28 runs on a quiet machine 0.67-0.78, median
// 0.71, 21 of them at 0.70 or more; CPU per check 139-154 us against
// PING's 102-109 (a CPU ratio of about 0.72). What a check adds is now
// SHA-512 over its larger body (about 4 us, signing and verifying),
// PostgreSQL (10-15 us: its statement costs about 27 us more than SELECT
// 1, shared by the batch) and 15-20 us of Go (decoding, the batch, the
// reply, the garbage of about 35 allocations). The process's and the database's CPU per request are
// printed apart; at 10 ms ticks the database's share of one round is a
// few ticks, so read it over several rounds.
package discord

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase/bench/load"
	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/discord"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
	"github.com/vectabase/vectabase/vault/audit"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

const guildID = "100000000000000001"

func BenchmarkInteractionsHTTP(b *testing.B) {
	ctx := context.Background()
	db := pgtest.New(b)
	kr := keyringtest.New(b, db.Pool)
	al := audit.New(db, kr, zerolog.Nop(), nil)
	b.Cleanup(al.Close)
	repo := store.NewBot(db, kr)

	var owner, system string
	if err := db.Pool.QueryRow(ctx, `INSERT INTO users (email) VALUES ('bench@example.com') RETURNING id`).Scan(&owner); err != nil {
		b.Fatal(err)
	}
	if err := db.Pool.QueryRow(ctx, `INSERT INTO whitelist_systems (owner_id, name) VALUES ($1, 'bench') RETURNING id`, owner).Scan(&system); err != nil {
		b.Fatal(err)
	}
	srvRow, err := repo.CreateDiscordServer(ctx, store.NewDiscordServer{GuildID: guildID, OwnerID: owner, WhitelistSystemID: &system})
	if err != nil {
		b.Fatal(err)
	}
	if err := repo.SetCommandPermission(ctx, srvRow.ID, "whitelist", "300000000000000001", true); err != nil {
		b.Fatal(err)
	}
	rid := int64(42)
	discordID := "200000000000000002"
	if _, err := store.NewMarketplace(db, kr).CreateWhitelistUser(ctx, owner, system, store.WhitelistUserFields{RobloxUserID: &rid, DiscordID: &discordID}, "VB-BENCH"); err != nil {
		b.Fatal(err)
	}

	pub, priv, _ := ed25519.GenerateKey(nil)
	bot, err := discord.New(discord.Config{PublicKey: hex.EncodeToString(pub)}, repo, al, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	srv := server.New(server.Config{}, zerolog.Nop(), prometheus.NewRegistry())
	srv.Mount(bot.Routes(discord.Auth{}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(cctx)
	})
	base := "http://" + ln.Addr().String() + "/api/discord/interactions"

	// Every interaction has its own id (the bot handles an id once), so
	// each request has its own body: a template with the id spliced in,
	// made before the round starts (see prepared), as Discord's own encoder
	// costs the server nothing (marshalling a map per request was a third
	// of the check side's client CPU).
	var seq atomic.Int64
	tmpl, _ := json.Marshal(map[string]any{
		"id": "ID", "application_id": "500000000000000001", "token": "bench",
		"type": 2, "guild_id": guildID,
		"member": map[string]any{"user": map[string]any{"id": "200000000000000001"}, "roles": []string{"300000000000000001"}, "permissions": "0"},
		"data": map[string]any{"name": "whitelist", "options": []any{map[string]any{"type": 1, "name": "check",
			"options": []any{map[string]any{"type": 6, "name": "user", "value": discordID}}}}},
	})
	head, tail, _ := bytes.Cut(tmpl, []byte(`"ID"`))
	checkBody := func() []byte {
		b := make([]byte, 0, len(tmpl)+20)
		b = append(append(b, head...), '"')
		b = strconv.AppendInt(b, 400000000000000000+seq.Add(1), 10)
		return append(append(b, '"'), tail...)
	}
	ping := func() []byte { return []byte(`{"type":1}`) }
	// prepared makes n check bodies ahead and hands them out in turn
	// (then makes more, should a run ask for more).
	prepared := func(n int) func() []byte {
		bodies := make([][]byte, n)
		for i := range bodies {
			bodies[i] = checkBody()
		}
		var next atomic.Int64
		return func() []byte {
			if i := next.Add(1) - 1; i < int64(n) {
				return bodies[i]
			}
			return checkBody()
		}
	}

	concurrency := envInt("BENCH_DISCORD_CONCURRENCY", 16)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency, MaxConnsPerHost: concurrency}, Timeout: 10 * time.Second}
	send := func(mk func() []byte, want string) func(context.Context) error {
		return func(ctx context.Context) error {
			body := mk()
			// Signed per request, as Discord does; the signing cost is the
			// client's and the same on both sides.
			ts := strconv.FormatInt(time.Now().Unix(), 10)
			sig := ed25519.Sign(priv, append([]byte(ts), body...))
			req, _ := http.NewRequestWithContext(ctx, "POST", base, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Signature-Timestamp", ts)
			req.Header.Set("X-Signature-Ed25519", hex.EncodeToString(sig))
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !bytes.Contains(out, []byte(want)) {
				return errors.New(resp.Status + " " + string(out))
			}
			return nil
		}
	}
	opts := load.Options{Concurrency: concurrency, Requests: envInt("BENCH_DISCORD_REQUESTS", 2000), Duration: time.Minute, Warmup: 50}
	// The database's share of a request is paid by this database's
	// backends, which the process's own CPU counters miss.
	_ = load.Run(ctx, opts, send(checkBody, "is whitelisted"))
	var pids []int
	if rows, err := db.Pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`); err == nil {
		for rows.Next() {
			var pid int
			if rows.Scan(&pid) == nil {
				pids = append(pids, pid)
			}
		}
		rows.Close()
	}
	// cpu is the CPU this process and the database's backends spent per
	// request of a run: unlike throughput, other work on the machine
	// barely moves it.
	// It returns the process's and the database's shares apart too.
	run := func(newMk func() func() []byte, want string) (r load.Result, total, proc, dbCPU float64) {
		mk := newMk()
		s0, d0 := load.SelfCPU(), load.PIDsCPU(pids)
		r = load.Run(ctx, opts, send(mk, want))
		s1, d1 := load.SelfCPU(), load.PIDsCPU(pids)
		n := float64(max(r.Requests, 1))
		proc, dbCPU = float64(s1-s0)/n, float64(d1-d0)/n
		return r, proc + dbCPU, proc, dbCPU
	}
	pings := func() func() []byte { return ping }
	checks := func() func() []byte { return prepared(opts.Requests + opts.Warmup + 2*concurrency) }
	// Rounds alternate which side runs first, and the ratio is taken per
	// round (each side's neighbour in time), then the median over rounds.
	rounds := envInt("BENCH_DISCORD_ROUNDS", 7)
	var ratios, rpsC, rpsP, p50C, p50P, cpuC, cpuP, procC, procP, dbC, dbP []float64
	for round := range rounds {
		var c, p load.Result
		var cc, cp, pc, pp, dc, dp float64
		if round%2 == 0 {
			p, cp, pp, dp = run(pings, `"type":1`)
			c, cc, pc, dc = run(checks, "is whitelisted")
		} else {
			c, cc, pc, dc = run(checks, "is whitelisted")
			p, cp, pp, dp = run(pings, `"type":1`)
		}
		procC, procP, dbC, dbP = append(procC, pc), append(procP, pp), append(dbC, dc), append(dbP, dp)
		if c.Errors > 0 || p.Errors > 0 {
			b.Fatalf("errors: check %d (%v), ping %d (%v)", c.Errors, c.FirstError, p.Errors, p.FirstError)
		}
		load.Print(os.Stdout, fmt.Sprintf("round %d /whitelist check", round+1), c, p)
		ratios = append(ratios, c.RPS/p.RPS)
		rpsC, rpsP = append(rpsC, c.RPS), append(rpsP, p.RPS)
		p50C, p50P = append(p50C, float64(c.P50)), append(p50P, float64(p.P50))
		cpuC, cpuP = append(cpuC, cc), append(cpuP, cp)
	}
	rc, rp, ratio := load.Median(rpsC), load.Median(rpsP), load.Median(ratios)
	mc, mp := load.Median(cpuC), load.Median(cpuP)
	fmt.Printf("median over %d rounds, %d connections: /whitelist check %.0f req/s p50 %v | PING %.0f req/s p50 %v | ratio %.2f (median of per-round ratios)\n",
		rounds, concurrency, rc, time.Duration(load.Median(p50C)).Round(time.Microsecond),
		rp, time.Duration(load.Median(p50P)).Round(time.Microsecond), ratio)
	fmt.Printf("CPU per request (this process + the database's backends, 10 ms ticks): /whitelist check %v | PING %v | PING/check %.2f\n",
		time.Duration(mc).Round(time.Microsecond), time.Duration(mp).Round(time.Microsecond), mp/max(mc, 1))
	us := func(v []float64) time.Duration { return time.Duration(load.Median(v)).Round(time.Microsecond) }
	fmt.Printf("  of which this process (server and load generator): /whitelist check %v | PING %v; the database's backends: /whitelist check %v | PING %v\n",
		us(procC), us(procP), us(dbC), us(dbP))
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Printf("load average: %s", la)
	}
	b.ReportMetric(rc, "check-req/s")
	b.ReportMetric(rp, "ping-req/s")
	b.ReportMetric(ratio, "ratio")
}
