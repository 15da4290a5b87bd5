package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

// TopAPIKeys ranks keys by requests in the window and counts their 429s;
// requests before the window and keys without traffic are left out.
func TestTopAPIKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	m := store.NewMarketplace(db, keyringtest.New(t, db.Pool))
	u, err := db.CreateUser(ctx, store.NewUser{Email: "dev@example.com", Role: "developer"})
	if err != nil {
		t.Fatal(err)
	}
	key := func(name string) string {
		var id string
		if err := db.Pool.QueryRow(ctx, `INSERT INTO developer_api_keys (developer_id, name, key_hash, key_prefix)
			VALUES ($1, $2, $3, 'vb_live_' || $2) RETURNING id`, u.ID, name, []byte(name)).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	busy, quiet, idle := key("busy"), key("quiet"), key("idle")
	_ = idle
	logs := func(id string, n, status int, at time.Time) {
		if _, err := db.Pool.Exec(ctx, `INSERT INTO api_request_logs (request_id, api_key_id, method, path, status_code, latency_ms, created_at)
			SELECT gen_random_uuid(), $1, 'POST', '/api/whitelist/check', $3, 1, $4 FROM generate_series(1, $2)`, id, n, status, at); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	logs(busy, 7, 200, now)
	logs(busy, 3, 429, now)
	logs(quiet, 2, 200, now)
	logs(quiet, 50, 200, now.Add(-48*time.Hour)) // before the window
	got, err := m.TopAPIKeys(ctx, now.Add(-24*time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].KeyID != busy || got[0].Requests != 10 || got[0].RateLimited != 3 ||
		got[1].KeyID != quiet || got[1].Requests != 2 || got[1].RateLimited != 0 || got[0].Prefix != "vb_live_busy" {
		t.Errorf("TopAPIKeys = %+v, want busy (10, 3 limited) then quiet (2)", got)
	}
	if got, err := m.TopAPIKeys(ctx, now.Add(-24*time.Hour), 1); err != nil || len(got) != 1 || got[0].KeyID != busy {
		t.Errorf("TopAPIKeys(limit 1) = %+v, %v", got, err)
	}
}
