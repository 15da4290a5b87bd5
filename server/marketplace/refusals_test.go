package marketplace_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/store/pgtest"
)

// Keyless, malformed and unknown-key calls of the API-key routes leave no
// api_request_logs row and no audit row; they are counted in
// vectabase_refusals_total by reason, and an address past the refusal
// limit gets 429 before its key is looked up. A known key still logs.
func TestUnknownKeysLeaveNoRows(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	kr := newKeyring(t, db)
	e := newInstance(t, db, kr)
	// The same instance behind a server with a refusal limit.
	lim := server.New(server.Config{Refusals: server.RefusalConfig{LimitPerMinute: 50}}, zerolog.Nop(), prometheus.NewRegistry())
	lim.Mount(e.svc.Routes(authHooks(e.auth)))
	dev := e.user(t)
	_, key := e.newKey(t, dev, 1000)

	unknown := "vb_live_" + "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
	for i := range 300 {
		who := []string{"", "key:junk", "key:" + unknown}[i%3]
		r := e.call(t, "POST", "/api/developer/verify", who, "{}")
		if r.Status != 401 {
			t.Fatalf("verify with %q = %d %s, want 401", who, r.Status, r.Raw)
		}
	}
	e.must(t, 200, "POST", "/api/developer/verify", "key:"+key, "{}")
	e.close(t)
	ctx := context.Background()
	var logs, audits int
	if err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM api_request_logs), (SELECT count(*) FROM audit_logs WHERE action <> 'api_key.create')`).Scan(&logs, &audits); err != nil {
		t.Fatal(err)
	}
	if logs != 1 || audits != 0 {
		t.Fatalf("300 refused key calls and 1 good one left %d api_request_logs rows and %d audit rows, want 1 and 0", logs, audits)
	}
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "vectabase_refusals_total" {
			for _, m := range mf.GetMetric() {
				got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	for _, reason := range []string{"api_key_missing", "api_key_malformed", "api_key_unknown"} {
		if got[reason] != 100 {
			t.Errorf("vectabase_refusals_total{reason=%q} = %v, want 100", reason, got[reason])
		}
	}

	// Past the limit: 429 with Retry-After, even for a well-formed key,
	// before any look-up.
	limited := &env{srv: lim, svc: e.svc, db: db}
	var last resp
	for range 60 {
		last = limited.call(t, "POST", "/api/developer/verify", "key:"+unknown, "{}")
	}
	if last.Status != 429 || last.Header.Get("Retry-After") == "" || last.Body["error"] != "RATE_LIMITED" {
		t.Fatalf("61st refused call from one address = %d %s (Retry-After %q), want 429 RATE_LIMITED with Retry-After",
			last.Status, last.Raw, last.Header.Get("Retry-After"))
	}
}
