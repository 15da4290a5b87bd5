package load

import (
	"context"
	"errors"
	"fmt"
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
	// Without the duration the run would take 2^30 requests of 5 ms each:
	// returning at all, within a deadline no busy machine reaches, shows
	// that it stopped on time.
	done := make(chan Result, 1)
	go func() {
		done <- Run(context.Background(), Options{Concurrency: 2, Requests: 1 << 30, Duration: 200 * time.Millisecond}, func(context.Context) error {
			time.Sleep(5 * time.Millisecond)
			return nil
		})
	}()
	select {
	case r := <-done:
		if r.Requests == 0 || r.P50 < 5*time.Millisecond {
			t.Fatalf("Run() = %+v", r)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("Run() did not stop at its 200 ms duration")
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
// burns: at least what the process's own getrusage counted over the same
// interval, less the rounding of /proc's clock ticks. The test spins until
// the process has used a given amount of CPU, however long a busy machine
// takes to give it (up to a generous deadline), so it asserts no amount of
// CPU per wall-clock time.
func TestProcessCPUSeesABusyProcess(t *testing.T) {
	raw, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Skip("no /proc")
	}
	comm := strings.TrimSpace(string(raw))
	// A name of its own, so that another test binary of the same name
	// (another checkout's go test) exiting meanwhile cannot lower the sum.
	if own := fmt.Sprintf("lt%d", os.Getpid()%1e9); os.WriteFile("/proc/self/comm", []byte(own), 0) == nil {
		t.Cleanup(func() { _ = os.WriteFile("/proc/self/comm", []byte(comm), 0) })
		comm = own
	}
	const spin = 100 * time.Millisecond
	before := ProcessCPU(comm)
	self0 := SelfCPU()
	x := 0
	for deadline := time.Now().Add(2 * time.Minute); SelfCPU()-self0 < spin; x++ {
		if time.Now().After(deadline) {
			t.Skipf("the machine gave this process under %v of CPU in 2 minutes", spin)
		}
	}
	used := SelfCPU() - self0
	after := ProcessCPU(comm)
	// utime and stime are each rounded down to a tick in /proc.
	if got, want := after-before, used-3*clockTick; got < want {
		t.Fatalf("ProcessCPU(%q) grew by %v while getrusage counted %v (%d spins), want at least %v", comm, got, used, x, want)
	}
	if ProcessCPU("no-such-command-name") != 0 {
		t.Fatal("ProcessCPU of an unknown command is not zero")
	}
}
