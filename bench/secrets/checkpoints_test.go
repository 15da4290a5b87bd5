package secrets

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/bench/load"
	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/policies"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/secrets"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
	"github.com/vectabase/vectabase/vault"
	"github.com/vectabase/vectabase/vault/audit"
)

// BenchmarkSecretReadsCheckpoints measures audited secret reads over HTTP
// with the Merkle tree maintained by the audit writer and checkpoints
// signed (every 1000 rows or 1 s, more often than the default 1000,1m,
// published to a witness directory) beside the same audited reads with
// neither (the writer as it was before checkpoints), each side on its own
// database in the same cluster, in alternating rounds; it prints each
// round's figures and the medians' ratio. Goal: ratio >= 0.90.
//
//	go test -run '^$' -bench SecretReadsCheckpoints -benchtime 1x ./bench/secrets/
func BenchmarkSecretReadsCheckpoints(b *testing.B) {
	ctx := context.Background()
	pol, err := policies.AccessPolicy()
	if err != nil {
		b.Fatal(err)
	}
	concurrency := envInt("BENCH_SECRETS_CONCURRENCY", 32)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * concurrency, MaxConnsPerHost: concurrency}, Timeout: 10 * time.Second}
	type side struct {
		base string
		db   *store.DB
		log  *audit.Log
		cp   *audit.Checkpointer
	}
	setup := func(checkpoints bool) side {
		db := pgtest.New(b)
		kr := keyringtest.New(b, db.Pool)
		var opts []audit.Option
		if !checkpoints {
			opts = append(opts, audit.WithoutMerkleTree())
		}
		al := audit.New(db, kr, zerolog.Nop(), nil, opts...)
		b.Cleanup(al.Close)
		v := vault.New(db, kr, al, pol, vault.Config{}, nil)
		if _, err := v.Put(ctx, vault.LocalOperator, "bench/api_key", []byte(strings.Repeat("s", 64)), nil); err != nil {
			b.Fatal(err)
		}
		s := side{log: al, db: db}
		if checkpoints {
			s.cp = audit.NewCheckpointer(db, kr, audit.CheckpointConfig{
				Every: audit.Every{Rows: 1000, Interval: time.Second}, WitnessDir: b.TempDir(),
			}, zerolog.Nop())
			cctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { defer close(done); s.cp.Run(cctx) }()
			b.Cleanup(func() { cancel(); <-done })
		}
		// The local operator's header-less access: every request is an
		// audited read without the cost of token checks, so the audit
		// path's share of each request is as large as it gets.
		s.base = serve(b, secrets.Routes(v, operator))
		return s
	}
	with, without := setup(true), setup(false)

	read := func(base string) func(context.Context) error {
		return func(ctx context.Context) error {
			req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/secrets/bench%2Fapi_key", nil)
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("%s", resp.Status)
			}
			return nil
		}
	}
	opts := load.Options{Concurrency: concurrency, Requests: envInt("BENCH_SECRETS_REQUESTS", 2000), Duration: time.Minute, Warmup: 100}
	// Many short alternating rounds: on a shared machine one round's ratio
	// swings widely, the median of many settles.
	rounds := envInt("BENCH_SECRETS_ROUNDS", 21)
	var rpsW, rpsO, ratios []float64
	for round := range rounds {
		var w, o load.Result
		if round%2 == 0 {
			o = load.Run(ctx, opts, read(without.base))
			w = load.Run(ctx, opts, read(with.base))
		} else {
			w = load.Run(ctx, opts, read(with.base))
			o = load.Run(ctx, opts, read(without.base))
		}
		if w.Errors > 0 || o.Errors > 0 {
			b.Fatalf("errors: with checkpoints %d (%v), without %d (%v)", w.Errors, w.FirstError, o.Errors, o.FirstError)
		}
		load.Print(os.Stdout, fmt.Sprintf("round %d audited reads, checkpoints on", round+1), w, o)
		rpsW, rpsO = append(rpsW, w.RPS), append(rpsO, o.RPS)
		ratios = append(ratios, w.RPS/o.RPS)
	}
	rw, ro := load.Median(rpsW), load.Median(rpsO)
	var checkpoints int
	_ = with.db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_checkpoints`).Scan(&checkpoints)
	fmt.Printf("median over %d rounds, %d connections: checkpoints on %.0f req/s | off %.0f req/s | ratio of medians %.2f, median of round ratios %.2f (goal >= 0.90); %d checkpoints signed\n",
		rounds, concurrency, rw, ro, rw/ro, load.Median(ratios), checkpoints)
	b.ReportMetric(rw, "checkpointed-req/s")
	b.ReportMetric(ro, "plain-req/s")
	b.ReportMetric(rw/ro, "ratio")
	b.ReportMetric(load.Median(ratios), "median-round-ratio")
	if res, err := with.log.Verify(ctx); err != nil || !res.OK {
		b.Fatalf("audit chain after the run: %+v, %v", res, err)
	}
	cp, err := with.cp.Sign(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if res, err := with.log.VerifyCheckpoint(ctx, with.cp, []byte(cp.Note), ""); err != nil || !res.OK {
		b.Fatalf("the final checkpoint does not verify: %+v, %v", res, err)
	}
}

// operator authenticates every request as the local operator.
func operator(c *fiber.Ctx) error {
	server.SetActor(c, server.Actor{Type: vectabase.ActorLocalOperator})
	return c.Next()
}
