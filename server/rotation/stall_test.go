package rotation_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase/server/rotation"
	"github.com/vectabase/vectabase/server/rotation/rotationtest"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/vault/alerts"
	"github.com/vectabase/vectabase/vault/alerts/alertstest"
	"github.com/vectabase/vectabase/vault/audit"
)

// waitFor polls until cond holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStalledRotationAlertsOncePerStall: a DEK rotation job that nobody
// works on raises exactly one webhook alert, although two instances watch
// it; after one batch moves it, its next stall raises exactly one more.
// Each alert is audited (alert.raised) and names no value.
func TestStalledRotationAlertsOncePerStall(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	cfg := testConfig
	cfg.StallAfter = time.Second
	e := setup(t, cfg)
	rotationtest.Seed(t, e.db.Pool, e.kr, 6, 64, 1)

	log := audit.New(e.db, e.kr, zerolog.Nop(), nil)
	t.Cleanup(log.Close)
	wh := &alertstest.Hook{}
	srv := httptest.NewServer(wh)
	t.Cleanup(srv.Close)
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	// Two instances: each its own alerts service and rotation service on
	// the one database, neither running the re-encryption worker.
	for range 2 {
		al := alerts.New(e.db, log, alerts.Config{WebhookURL: srv.URL}, zerolog.Nop())
		svc, err := rotation.New(cfg, e.db, e.kr, log, zerolog.Nop(), nil, rotation.WithAlerter(al))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(2)
		go func() { defer wg.Done(); al.Run(runCtx) }()
		go func() { defer wg.Done(); svc.WatchStalls(runCtx) }()
	}
	job, err := e.svc.RotateDEK(ctx, rotation.LocalOperator)
	if err != nil {
		t.Fatal(err)
	}

	waitFor(t, "the first stall alert", func() bool { return len(wh.Bodies()) >= 1 })
	// Several more checks of both instances: no second alert for one stall.
	time.Sleep(2500 * time.Millisecond)
	if got := wh.Bodies(); len(got) != 1 {
		t.Fatalf("webhook got %d alerts for one stall, want 1: %v", len(got), got)
	}

	// The job moves by one batch, stays running, and stalls again.
	// (Units with nothing to do are finished first; each such batch is
	// progress too.)
	for i := 0; ; i++ {
		res, err := store.NewRotations(e.db.Pool).ReencryptBatch(ctx, job.ID, job.TargetKeyID, 1, e.kr)
		if err != nil || !res.Claimed || res.Stopped || i == 50 {
			t.Fatalf("ReencryptBatch = %+v, %v; want a unit of the running job", res, err)
		}
		if res.Reencrypted == 1 {
			break
		}
	}
	waitFor(t, "the second stall alert", func() bool { return len(wh.Bodies()) >= 2 })
	time.Sleep(2500 * time.Millisecond)
	got := wh.Bodies()
	if len(got) != 2 || wh.Bad() != 0 {
		t.Fatalf("webhook got %d alerts (%d malformed) for two stalls, want 2: %v", len(got), wh.Bad(), got)
	}
	for _, m := range got {
		if m["text"] != m["content"] || !strings.Contains(m["text"], "rotation job "+job.ID+" has made no progress") {
			t.Errorf("alert = %v, want Slack text == Discord content naming the stalled job", m)
		}
		for i := range 6 {
			if strings.Contains(m["text"], string(rotationtest.Value(i, 64))) {
				t.Errorf("alert holds a stored value: %v", m)
			}
		}
	}
	if !strings.Contains(got[1]["text"], "1 of about") {
		t.Errorf("second alert = %q, want the progress made (1 value re-encrypted)", got[1]["text"])
	}
	var keys []string
	rows, err := e.db.Pool.Query(ctx, `SELECT event_key FROM alerts_outbox WHERE kind = $1 ORDER BY id`, alerts.KindRotationStalled)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	if len(keys) != 2 || keys[0] == keys[1] || !strings.HasPrefix(keys[0], "key_rotation_stalled:"+job.ID+":") {
		t.Fatalf("outbox keys = %v, want two stall keys of job %s", keys, job.ID)
	}
	var audited int
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_logs WHERE action = 'alert.raised'
		AND details->>'kind' = $1`, alerts.KindRotationStalled).Scan(&audited); err != nil || audited != 2 {
		t.Fatalf("%d alert.raised audit rows (%v), want 2", audited, err)
	}
}
