// Command all runs every benchmark under bench/ (and the redactor's Go
// benchmark) one after the other, each sized down to share a 10-minute
// budget, and prints one table: each benchmark's baseline, goal, command
// and the figures it printed (ratios to its baseline measured in the same
// run, CPU per operation, medians). bench/README.md has the same table
// with the full-size commands. Run it from the repository root:
//
//	go run ./bench/all [-budget 10m] [-only name,name]
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"
)

// bench is one row of the table.
type bench struct {
	name     string
	baseline string
	goal     string
	args     []string // after "go"
	env      []string
	keep     *regexp.Regexp // the lines of its output that go into the table
	// share is its part of the budget; a run that passes it is stopped
	// and reported as such.
	share time.Duration
}

var benches = []bench{
	{
		name: "redact", baseline: "the same lines through all nine expressions (before the prefilter); the scanner over whole lines beside the structured path (Fields)", goal: "<= 5 µs per log line",
		args: []string{"test", "-run", "^$", "-bench", "RedactLine", "-benchtime", "20000x", "./server/redact"},
		keep: regexp.MustCompile(`^BenchmarkRedactLine`), share: 40 * time.Second,
	},
	{
		name: "serve", baseline: "GET /healthz on the same server, alternating rounds", goal: "audited secret read <= 350 µs CPU (server + PostgreSQL; Vault 433); idle RSS < 40 MB",
		args: []string{"run", "./bench/serve", "-rounds", "3", "-requests", "2000"},
		keep: regexp.MustCompile(`^(CPU per|RSS)`), share: 90 * time.Second,
	},
	{
		name: "secrets", baseline: "the same reads with the audit write skipped", goal: "audited/unaudited throughput >= 0.50; CPU per audited read <= 350 µs",
		args: []string{"test", "-run", "^$", "-bench", ".", "-benchtime", "1x", "./bench/secrets/"},
		env:  []string{"BENCH_SECRETS_REQUESTS=1500", "BENCH_SECRETS_ROUNDS=11"},
		keep: regexp.MustCompile(`^(median over|CPU per)`), share: 75 * time.Second,
	},
	{
		name: "auth", baseline: "raw argon2id verifications; GET /healthz", goal: "login/argon2id >= 0.90; refresh >= 2,000 req/s (GoTrue 35)",
		args: []string{"run", "./bench/auth", "-rounds", "3"},
		keep: regexp.MustCompile(`^(login/argon2id|CPU per login|refresh:)`), share: 75 * time.Second,
	},
	{
		name: "realtime", baseline: "the same UPDATE of a product nobody subscribes to", goal: "fan-out ratio >= 0.6 (median of rounds' p50 UPDATE alone / UPDATE + delivery to 50 clients); the CPU bound on it and the bare-TCP floor",
		args: []string{"run", "./bench/realtime", "-rounds", "3"},
		keep: regexp.MustCompile(`^(median p50|fan-out ratio|delivery adds|bare loopback|CPU per delivery \(medians\))`), share: 50 * time.Second,
	},
	{
		name: "realtime-1000", baseline: "the same UPDATE of a product nobody subscribes to", goal: "1,000 subscribers over two instances: p99 UPDATE + delivery to all < 50 ms; >= 20,000 deliveries/s",
		args: []string{"run", "./bench/realtime", "-clients", "1000", "-instances", "2", "-concurrency", "4", "-rounds", "3"},
		keep: regexp.MustCompile(`deliveries/s|^CPU per delivery \(medians\)`), share: 60 * time.Second,
	},
	{
		name: "marketplace", baseline: "a bare handler on the same server", goal: ">= 0.60 of the bare handler's req/s; p99 < 10 ms at half load",
		args: []string{"run", "./bench/marketplace", "-rounds", "3", "-duration", "2s"},
		keep: regexp.MustCompile(`ratio|CPU per|goal`), share: 60 * time.Second,
	},
	{
		name: "credits", baseline: "POST /api/developer/verify on the same key", goal: ">= 2,000 consumptions/s on one key; balance exact",
		args: []string{"run", "./bench/credits", "-rounds", "3", "-duration", "2s"},
		keep: regexp.MustCompile(`goal|balance|ratio`), share: 45 * time.Second,
	},
	{
		name: "discord", baseline: "a signed PING interaction", goal: "/whitelist check ratio to PING (see bench/discord)",
		args: []string{"test", "-run", "^$", "-bench", ".", "-benchtime", "1x", "./bench/discord/"},
		keep: regexp.MustCompile(`^median over`), share: 45 * time.Second,
	},
	{
		name: "import", baseline: "pg_dump -Fc + pg_restore of the same source", goal: "<= 2x dump + restore; peak RSS < 200 MB",
		args: []string{"run", "./bench/import", "-scale", "2000", "-rounds", "3"},
		keep: regexp.MustCompile(`^import`), share: 60 * time.Second,
	},
	{
		name: "rotation", baseline: "UPDATE t SET col = col over the same rows; API p99 when idle", goal: "re-encryption near the UPDATE's rate; API p99 during rotation near idle",
		args: []string{"test", "-run", "^$", "-bench", "Rotation", "-benchtime", "1x", "-timeout", "5m", "./bench/rotation"},
		env:  []string{"BENCH_ROTATION_VALUES=50000"},
		keep: regexp.MustCompile(`re-encryption|p99 during|throttled|^API (idle|during)`), share: 60 * time.Second,
	},
	{
		name: "hostile", baseline: "the legitimate client without attack", goal: "peak growth < 32 MiB per single-request attack; legit p99 < 100 ms under slowloris and refusal floods",
		args: []string{"run", "./bench/hostile", "-slowloris", "200", "-refusals", "3000", "-refusal-rounds", "2", "-baseline", "3s"},
		keep: regexp.MustCompile(`goals:|legitimate client without`), share: 75 * time.Second,
	},
}

func main() {
	if err := realMain(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/all:", err)
		os.Exit(1)
	}
}

type outcome struct {
	b       bench
	lines   []string
	elapsed time.Duration
	err     error
}

func realMain() error {
	budget := flag.Duration("budget", 10*time.Minute, "time for the whole run; each benchmark gets its share of it")
	only := flag.String("only", "", "comma-separated benchmark names to run (default: all)")
	flag.Parse()
	if _, err := os.Stat("go.mod"); err != nil {
		return errors.New("run from the repository root: go run ./bench/all")
	}
	var total time.Duration
	for _, b := range benches {
		total += b.share
	}
	scale := float64(*budget) / float64(total)
	start := time.Now()
	deadline := start.Add(*budget)
	var outs []outcome
	var chosen []bench
	for _, b := range benches {
		if *only == "" || contains(strings.Split(*only, ","), b.name) {
			chosen = append(chosen, b)
		}
	}
	for i, b := range chosen {
		// A benchmark may run past its share while the ones after it
		// keep half of theirs: most finish well inside their share.
		var reserve time.Duration
		for _, later := range chosen[i+1:] {
			reserve += time.Duration(float64(later.share) * scale / 2)
		}
		limit := time.Until(deadline) - reserve
		if limit <= 0 {
			outs = append(outs, outcome{b: b, err: errors.New("not run: budget spent")})
			continue
		}
		fmt.Fprintf(os.Stderr, "bench/all: %s (at most %v): go %s\n", b.name, limit.Round(time.Second), strings.Join(b.args, " "))
		outs = append(outs, run(b, limit))
	}
	fmt.Printf("\nbench/all: %d benchmarks in %v\n\n", len(outs), time.Since(start).Round(time.Second))
	fmt.Println("| benchmark | baseline (same run) | goal | command | result |")
	fmt.Println("| --- | --- | --- | --- | --- |")
	for _, o := range outs {
		res := strings.Join(o.lines, "<br>")
		if o.err != nil {
			res = strings.TrimPrefix(res+"<br>", "<br>") + "**" + o.err.Error() + "**"
		}
		fmt.Printf("| %s | %s | %s | `go %s` | %s |\n", o.b.name, o.b.baseline, o.b.goal, strings.Join(o.b.args, " "), cell(res))
	}
	return nil
}

// run runs one benchmark in its own process group, stopped (SIGINT, then
// SIGKILL after 15 s, so its clusters and servers are cleaned up) when it
// passes limit.
func run(b bench, limit time.Duration) outcome {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", b.args...)
	cmd.Env = append(os.Environ(), b.env...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 15 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := cmd.Run()
	o := outcome{b: b, elapsed: time.Since(t0)}
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if b.keep.MatchString(line) {
			o.lines = append(o.lines, line)
		}
	}
	switch {
	case ctx.Err() != nil:
		o.err = fmt.Errorf("stopped after %v", limit.Round(time.Second))
	case err != nil:
		tail := out.String()
		if len(tail) > 300 {
			tail = tail[len(tail)-300:]
		}
		o.err = fmt.Errorf("%v: %s", err, strings.TrimSpace(tail))
	}
	return o
}

func cell(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.TrimSpace(x) == s {
			return true
		}
	}
	return false
}
