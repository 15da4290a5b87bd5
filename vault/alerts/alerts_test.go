package alerts_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/policies"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
	"github.com/vectabase/vectabase/vault"
	"github.com/vectabase/vectabase/vault/alerts"
	"github.com/vectabase/vectabase/vault/audit"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// webhook is a local Slack/Discord-shaped webhook: it records each
// delivered message, and fails the first failFirst requests with 500.
type webhook struct {
	mu        sync.Mutex
	failFirst int
	requests  int
	delivered []map[string]string
}

func (w *webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.requests++
	if w.requests <= w.failFirst {
		rw.WriteHeader(http.StatusInternalServerError)
		return
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil || r.Header.Get("Content-Type") != "application/json" {
		rw.WriteHeader(http.StatusBadRequest)
		return
	}
	w.delivered = append(w.delivered, m)
	rw.WriteHeader(http.StatusNoContent)
}

func (w *webhook) count() (requests, delivered int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.requests, len(w.delivered)
}

func countRows(t *testing.T, db *store.DB, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestHoneytokenReadRaisesExactlyOneAlert: a honeytoken read returns the
// decoy value like any read, and exactly one alert reaches the webhook
// (its first delivery fails and is retried) although two instances
// deliver from the same outbox; an ordinary read raises none.
func TestHoneytokenReadRaisesExactlyOneAlert(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	kr := keyringtest.New(t, db.Pool)
	log := audit.New(db, kr, zerolog.Nop(), nil)
	t.Cleanup(log.Close)
	hook := &webhook{failFirst: 1}
	srv := httptest.NewServer(hook)
	t.Cleanup(srv.Close)
	cfg := alerts.Config{WebhookURL: srv.URL}
	a1, a2 := alerts.New(db, log, cfg, zerolog.Nop()), alerts.New(db, log, cfg, zerolog.Nop())
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, a := range []*alerts.Service{a1, a2} {
		wg.Add(1)
		go func() { defer wg.Done(); a.Run(runCtx) }()
	}
	t.Cleanup(func() { stop(); wg.Wait() })

	pol, err := policies.AccessPolicy()
	if err != nil {
		t.Fatal(err)
	}
	v := vault.New(db, kr, log, pol, vault.Config{}, nil)
	v.SetAlerter(a1)
	op := vault.LocalOperator
	for name, value := range map[string]string{"prod/aws_secret_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYDECOYKEY", "prod/db_password": "real"} {
		if _, err := v.Put(ctx, op, name, []byte(value), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.SetHoneytoken(ctx, vault.Caller{Type: vectabase.ActorUser, ID: "00000000-0000-0000-0000-000000000001"}, "prod/aws_secret_key", true); vectabase.ErrorCode(err) != vectabase.EFORBIDDEN {
		t.Fatalf("SetHoneytoken by a plain user err = %v, want FORBIDDEN", err)
	}
	if err := v.SetHoneytoken(ctx, op, "prod/missing", true); vectabase.ErrorCode(err) != vectabase.ENOTFOUND {
		t.Fatalf("SetHoneytoken(missing) err = %v, want NOT_FOUND", err)
	}
	if err := v.SetHoneytoken(ctx, op, "prod/aws_secret_key", true); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Get(ctx, op, "prod/db_password", 0); err != nil {
		t.Fatal(err)
	}
	got, err := v.Get(ctx, vault.Caller{Type: vectabase.ActorLocalOperator, IP: "203.0.113.9", RequestID: "req-1"}, "prod/aws_secret_key", 0)
	if err != nil || string(got.Value) != "wJalrXUtnFEMI/K7MDENG/bPxRfiCYDECOYKEY" {
		t.Fatalf("Get(honeytoken) = %q, %v; want the decoy value", got.Value, err)
	}

	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, n := hook.count(); n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Two more poll rounds of both instances: nothing else may arrive.
	time.Sleep(2500 * time.Millisecond)
	requests, delivered := hook.count()
	if delivered != 1 || requests != 2 {
		t.Fatalf("webhook got %d requests, %d delivered; want 2 requests (one failed, retried) and exactly 1 alert", requests, delivered)
	}
	msg := hook.delivered[0]
	if msg["text"] != msg["content"] || !strings.Contains(msg["text"], `honeytoken secret "prod/aws_secret_key" was read`) ||
		strings.Contains(msg["text"], "DECOYKEY") {
		t.Fatalf("alert = %v, want Slack text == Discord content naming the secret and not its value", msg)
	}
	if n := countRows(t, db, `SELECT count(*) FROM audit_logs WHERE action = 'alert.raised' AND resource_id = 'prod/aws_secret_key'`); n != 1 {
		t.Fatalf("%d alert.raised audit rows, want 1", n)
	}
	if n := countRows(t, db, `SELECT count(*) FROM audit_logs WHERE action = 'secret.honeytoken' AND result = 'allowed'`); n != 1 {
		t.Fatalf("%d secret.honeytoken audit rows allowed, want 1", n)
	}
	if n := countRows(t, db, `SELECT count(*) FROM alerts_outbox WHERE sent_at IS NOT NULL AND attempts = 2`); n != 1 {
		t.Fatalf("%d outbox rows sent on the second attempt, want 1", n)
	}
}

// TestSameEventRaisedTwiceIsOneAlert: two instances raising one event key
// store one alert and one audit row.
func TestSameEventRaisedTwiceIsOneAlert(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	kr := keyringtest.New(t, db.Pool)
	log := audit.New(db, kr, zerolog.Nop(), nil)
	t.Cleanup(log.Close)
	a1, a2 := alerts.New(db, log, alerts.Config{}, zerolog.Nop()), alerts.New(db, log, alerts.Config{}, zerolog.Nop())
	ev := alerts.Alert{Key: "rotation:job-7", Kind: alerts.KindRotationFailed, Message: "DEK rotation job 7 failed", ResourceType: "keyring"}
	var wg sync.WaitGroup
	for _, a := range []*alerts.Service{a1, a2, a1, a2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.RaiseNow(ctx, ev); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := countRows(t, db, `SELECT count(*) FROM alerts_outbox`); n != 1 {
		t.Fatalf("%d outbox rows, want 1", n)
	}
	if n := countRows(t, db, `SELECT count(*) FROM audit_logs WHERE action = 'alert.raised'`); n != 1 {
		t.Fatalf("%d alert.raised rows, want 1", n)
	}
}

// TestWatchRaisesOncePerHour: a check failing on every probe raises one
// alert (per hour), from two instances watching at once.
func TestWatchRaisesOncePerHour(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	kr := keyringtest.New(t, db.Pool)
	log := audit.New(db, kr, zerolog.Nop(), nil)
	t.Cleanup(log.Close)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var probes sync.Map
	for i := range 2 {
		a := alerts.New(db, log, alerts.Config{}, zerolog.Nop())
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			a.Watch(ctx, alerts.KindKEKUnreachable, "the KEK", 20*time.Millisecond, func(context.Context) error {
				n++
				probes.Store(i, n)
				return errors.New("vault: connection refused")
			})
			a.Wait()
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		a, _ := probes.Load(0)
		b, _ := probes.Load(1)
		if a != nil && b != nil && a.(int) >= 5 && b.(int) >= 5 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	if n := countRows(t, db, `SELECT count(*) FROM alerts_outbox WHERE kind = 'kek_unreachable'`); n < 1 || n > 2 {
		// 2 only when the probes straddled an hour boundary.
		t.Fatalf("%d kek_unreachable alerts, want 1", n)
	}
	if n := countRows(t, db, `SELECT count(*) FROM alerts_outbox WHERE message LIKE '%connection refused%'`); n != 0 {
		t.Fatal("the alert carries the error text")
	}
}
