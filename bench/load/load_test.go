package load

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestRunStopsAtRequestCount(t *testing.T) {
	t.Parallel()
	r := Run(context.Background(), Options{Concurrency: 4, Requests: 200, Duration: 10 * time.Second}, func(context.Context) error { return nil })
	if r.Requests != 200 || r.Errors != 0 {
		t.Fatalf("Run() = %d requests, %d errors; want 200, 0", r.Requests, r.Errors)
	}
}

func TestRunStopsAtDuration(t *testing.T) {
	t.Parallel()
	start := time.Now()
	r := Run(context.Background(), Options{Concurrency: 2, Requests: 1 << 30, Duration: 200 * time.Millisecond}, func(context.Context) error {
		time.Sleep(5 * time.Millisecond)
		return nil
	})
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Run() took %v, want about 200ms", d)
	}
	if r.Requests == 0 || r.P50 < 5*time.Millisecond {
		t.Fatalf("Run() = %+v", r)
	}
}

func TestRunCountsErrors(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	r := Run(context.Background(), Options{Concurrency: 1, Requests: 10, Duration: time.Second}, func(context.Context) error { return boom })
	if r.Errors != 10 || r.Requests != 0 || !errors.Is(r.FirstError, boom) {
		t.Fatalf("Run() = %+v, want 10 errors", r)
	}
}

func TestPercentileAndMedian(t *testing.T) {
	t.Parallel()
	d := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if got := Percentile(d, 50); got != 5 {
		t.Errorf("Percentile(50) = %v, want 5", got)
	}
	if got := Percentile(d, 99); got != 9 {
		t.Errorf("Percentile(99) = %v, want 9", got)
	}
	if got := Median([]float64{3, 1, 2, 10}); got != 2.5 {
		t.Errorf("Median() = %v, want 2.5", got)
	}
}

// ProcessCPU finds this test binary by its command name and sees the CPU it
// burns.
func TestProcessCPUSeesABusyProcess(t *testing.T) {
	raw, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Skip("no /proc")
	}
	comm := strings.TrimSpace(string(raw))
	before := ProcessCPU(comm)
	x := 0
	for end := time.Now().Add(100 * time.Millisecond); time.Now().Before(end); {
		x++
	}
	if after := ProcessCPU(comm); after-before < 50*time.Millisecond {
		t.Fatalf("ProcessCPU(%q) grew by %v over 100 ms of spinning (%d), want at least 50 ms", comm, after-before, x)
	}
	if ProcessCPU("no-such-command-name") != 0 {
		t.Fatal("ProcessCPU of an unknown command is not zero")
	}
}
