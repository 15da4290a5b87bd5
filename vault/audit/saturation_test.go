package audit_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/store/pgtest"
	"github.com/vectabase/vectabase/vault/audit"
)

// A writer blocked by an outside transaction holding the chain head's row
// lock: every audited call is refused with UNAVAILABLE (ErrSaturated) while
// the lock is still held, instead of waiting for it (those that do not fit
// in the bounded queue after the enqueue timeout, those in it once the
// writer has been stuck that long); the queue never grows past its bound;
// once the lock goes, new events are accepted again and the chain verifies.
func TestBlockedWriterRefusesFastAndRecovers(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	kr := keyringtest.New(t, db.Pool)
	reg := prometheus.NewRegistry()
	const queue, batch, callers = 4, 2, 40
	l := audit.New(db, kr, zerolog.Nop(), reg, audit.WithQueueSize(queue), audit.WithMaxBatch(batch),
		audit.WithEnqueueTimeout(300*time.Millisecond))
	t.Cleanup(l.Close)
	ctx := context.Background()
	if err := l.Record(ctx, event(0)); err != nil {
		t.Fatalf("first Record err = %v, want nil", err)
	}

	// The outside transaction that blocks every writer.
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM audit_chain_head WHERE id = 1 FOR UPDATE`); err != nil {
		t.Fatal(err)
	}

	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	goroutines := runtime.NumGoroutine()
	errs := make(chan error, callers)
	for i := range callers {
		go func() { errs <- l.Record(rctx, event(i+1)) }()
	}
	// Every call comes back refused while the lock is still held: those
	// that did not fit in the queue after the enqueue timeout, and those
	// held in it once the writer has been stuck for longer than that. A call
	// that waited for the lock would hang here until the 60 s guard.
	refused := 0
	for refused < callers {
		select {
		case err := <-errs:
			if err == nil {
				t.Fatalf("Record succeeded while the chain head is locked")
			}
			if !errors.Is(err, audit.ErrSaturated) || vectabase.ErrorCode(err) != vectabase.EUNAVAILABLE {
				t.Fatalf("Record err = %v (code %s), want ErrSaturated with code UNAVAILABLE", err, vectabase.ErrorCode(err))
			}
			refused++
		case <-rctx.Done():
			t.Fatalf("only %d of %d calls were refused while the writer was blocked; the rest waited", refused, callers)
		}
	}
	// Nothing piles up: every caller's goroutine has returned (the
	// writer's own stays, stuck on its batch).
	// (A goroutine that has sent its result may not have exited yet: look
	// again a few times.)
	n := runtime.NumGoroutine()
	for i := 0; i < 100 && n > goroutines+5; i++ {
		time.Sleep(20 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	if n > goroutines+5 {
		t.Errorf("%d goroutines while the writer is blocked, %d before the calls: calls are piling up", n, goroutines)
	}
	if n := l.QueueLength(); n > queue {
		t.Errorf("queue length = %d, want at most %d", n, queue)
	}
	// While stuck, a new call is refused at once (the writer is known to
	// be stuck), again before the lock goes.
	if err := l.Record(rctx, event(999)); !errors.Is(err, audit.ErrSaturated) {
		t.Errorf("Record while stuck err = %v, want ErrSaturated", err)
	}
	if got := testutil.ToFloat64(counterOf(t, reg, "vectabase_audit_enqueue_timeouts_total")); got != float64(callers+1) {
		t.Errorf("vectabase_audit_enqueue_timeouts_total = %v, want %d", got, callers+1)
	}

	// The lock goes: the held events commit, and new ones are accepted.
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := l.Record(ctx, event(1000))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Record after the lock went err = %v, want nil", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if res := verify(t, l); !res.OK {
		t.Fatalf("Verify after saturation = %+v, want OK", res)
	}
}

func counterOf(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	return counter(t, reg, name)
}

// A request-supplied field longer than MaxField is stored as its first
// MaxField bytes and a hash of the whole; two long values with the same
// head stay distinct.
func TestLongFieldsAreBounded(t *testing.T) {
	t.Parallel()
	a := strings.Repeat("n", 1000) + "a"
	b := strings.Repeat("n", 1000) + "b"
	ca, cb := audit.Clip(a), audit.Clip(b)
	if len(ca) > audit.MaxField+32 || !strings.HasPrefix(ca, strings.Repeat("n", audit.MaxField)) {
		t.Errorf("Clip(1001 bytes) = %d bytes %q, want the first %d bytes and a short hash", len(ca), ca, audit.MaxField)
	}
	if ca == cb {
		t.Errorf("Clip of two long values with one head are equal (%q), want the hash to tell them apart", ca)
	}
	if got := audit.Clip("short"); got != "short" {
		t.Errorf("Clip(short) = %q, want it unchanged", got)
	}
	l, db, _ := newLog(t)
	ev := event(1)
	ev.ResourceID = a
	if err := l.Record(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := db.Pool.QueryRow(context.Background(), `SELECT resource_id FROM audit_logs`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != ca {
		t.Errorf("stored resource_id = %q, want %q", got, ca)
	}
}
