// Package load is a small, bounded load generator for the HTTP harnesses
// under bench/: a fixed number of workers call a function until a request
// count or a time limit is reached, whichever comes first, and the result
// gives throughput and latency percentiles. Harnesses measure a baseline in
// the same run and print both, because the machines are shared and noisy:
// only ratios and medians mean anything.
package load

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Options bound a run. Requests and Duration must both be set: every loop
// stops by itself.
type Options struct {
	Concurrency int           // workers; default 8
	Requests    int           // stop after this many calls in all
	Duration    time.Duration // or after this long
	Warmup      int           // calls made (and not measured) before the run
	// Rate, when > 0, paces the calls to about this many per second in all
	// (an open-loop run for latency at a given load).
	Rate float64
}

// Result is what a run measured.
type Result struct {
	Requests int
	Errors   int
	Elapsed  time.Duration
	RPS      float64
	P50      time.Duration
	P90      time.Duration
	P99      time.Duration
	Max      time.Duration
	// FirstError is the first error a call returned, for diagnosis.
	FirstError error
}

// Run calls fn from opts.Concurrency workers until opts.Requests calls were
// made or opts.Duration passed.
func Run(ctx context.Context, opts Options, fn func(ctx context.Context) error) Result {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 8
	}
	if opts.Requests <= 0 {
		opts.Requests = 10000
	}
	if opts.Duration <= 0 {
		opts.Duration = 10 * time.Second
	}
	for i := 0; i < opts.Warmup; i++ {
		_ = fn(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Duration)
	defer cancel()

	var issued atomic.Int64
	var mu sync.Mutex
	var firstErr error
	lat := make([][]time.Duration, opts.Concurrency)
	errs := make([]int, opts.Concurrency)
	var tick <-chan time.Time
	if opts.Rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / opts.Rate))
		defer t.Stop()
		tick = t.C
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w := range opts.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, opts.Requests/opts.Concurrency+1)
			for ctx.Err() == nil {
				if issued.Add(1) > int64(opts.Requests) {
					break
				}
				if tick != nil {
					select {
					case <-tick:
					case <-ctx.Done():
					}
					if ctx.Err() != nil {
						break
					}
				}
				t0 := time.Now()
				err := fn(ctx)
				d := time.Since(t0)
				if err != nil {
					if ctx.Err() != nil {
						break // cut off by the time limit: not a failure of the target
					}
					errs[w]++
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				mine = append(mine, d)
			}
			lat[w] = mine
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	var all []time.Duration
	r := Result{Elapsed: elapsed, FirstError: firstErr}
	for w := range lat {
		all = append(all, lat[w]...)
		r.Errors += errs[w]
	}
	slices.Sort(all)
	r.Requests = len(all)
	if elapsed > 0 {
		r.RPS = float64(len(all)) / elapsed.Seconds()
	}
	r.P50 = Percentile(all, 50)
	r.P90 = Percentile(all, 90)
	r.P99 = Percentile(all, 99)
	if len(all) > 0 {
		r.Max = all[len(all)-1]
	}
	return r
}

// Percentile returns the p-th percentile of sorted durations.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}

// Median returns the median of values (which it sorts).
func Median(values []float64) float64 {
	if len(values) == 0 {
		return 0
	}
	slices.Sort(values)
	n := len(values)
	if n%2 == 1 {
		return values[n/2]
	}
	return (values[n/2-1] + values[n/2]) / 2
}

// MedianRound returns the round with the median throughput (the upper
// one of an even count); rs is left as it was.
func MedianRound(rs []Result) Result {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b Result) int { return cmp.Compare(a.RPS, b.RPS) })
	return s[len(s)/2]
}

// Print writes one line for r beside its baseline: throughput, latency
// percentiles and the throughput ratio.
func Print(w io.Writer, name string, r, baseline Result) {
	ratio := 0.0
	if baseline.RPS > 0 {
		ratio = r.RPS / baseline.RPS
	}
	fmt.Fprintf(w, "%-28s %9.0f req/s  p50 %-9v p99 %-9v errors %d | baseline %9.0f req/s  p99 %-9v | ratio %.2f\n",
		name, r.RPS, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Errors,
		baseline.RPS, baseline.P99.Round(time.Microsecond), ratio)
}
