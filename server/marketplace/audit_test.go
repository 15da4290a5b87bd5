package marketplace_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server/marketplace"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
	"github.com/vectabase/vectabase/vault/audit"
)

// Creating, changing and revoking an API key each leave an audit row: who,
// from where, which key and (for create and change) its name, scopes and
// limit; never the key or its prefix. The chain still verifies.
func TestAPIKeyChangesAreAudited(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dev := e.user(t)
	kb := e.must(t, 201, "POST", "/api/developer/keys", dev, map[string]any{"name": "server", "scopes": []string{"whitelist:read"}, "rateLimitPerMinute": 100})
	key, id := kb["key"].(string), kb["id"].(string)
	e.must(t, 200, "PATCH", "/api/developer/keys/"+id, dev, map[string]any{"rateLimitPerMinute": 200})
	if r := e.call(t, "DELETE", "/api/developer/keys/"+id, dev, nil); r.Status != 204 {
		t.Fatalf("DELETE = %d, want 204", r.Status)
	}
	if r := e.call(t, "DELETE", "/api/developer/keys/"+id, dev, nil); r.Status != 404 {
		t.Fatalf("second DELETE = %d, want 404", r.Status)
	}

	rows, err := e.db.Pool.Query(context.Background(), `SELECT action, actor_type, actor_id, resource_id,
		coalesce(host(ip_address), ''), coalesce(request_id, ''), details::text, row_to_json(a)::text
		FROM audit_logs a WHERE resource_type = 'api_key' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var actions []string
	for rows.Next() {
		var action, actorType, actorID, resID, ip, reqID, details, all string
		if err := rows.Scan(&action, &actorType, &actorID, &resID, &ip, &reqID, &details, &all); err != nil {
			t.Fatal(err)
		}
		actions = append(actions, action)
		if actorType != vectabase.ActorUser || actorID != dev || resID != id || ip == "" || reqID == "" {
			t.Errorf("%s row: actor %s %s, resource %s, ip %q, request %q", action, actorType, actorID, resID, ip, reqID)
		}
		if action != "api_key.revoke" && !strings.Contains(details, `"scopes": ["whitelist:read"]`) {
			t.Errorf("%s details = %s, want the scopes", action, details)
		}
		if strings.Contains(all, key) || strings.Contains(all, key[:12]) {
			t.Errorf("%s row holds the key or its prefix: %s", action, all)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if want := "api_key.create api_key.update api_key.revoke"; strings.Join(actions, " ") != want {
		t.Fatalf("audited %v, want %s", actions, want)
	}
	al := audit.New(e.db, e.kr, zerolog.Nop(), nil)
	defer al.Close()
	if res, err := al.Verify(context.Background()); err != nil || !res.OK {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
}

type failingAuditor struct{}

func (failingAuditor) Record(context.Context, vectabase.AuditEvent) error {
	return errors.New("audit table unwritable")
}

// A key whose creation cannot be audited is refused with 500 and is
// revoked before anyone has seen it.
func TestAPIKeyCreationFailsClosed(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	kr := newKeyring(t, db)
	svc := marketplace.New(db, kr, failingAuditor{}, marketplace.Config{}, zerolog.Nop(), nil)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = svc.Close(ctx)
	})
	ctx := context.Background()
	u, err := db.CreateUser(ctx, store.NewUser{Email: "closed@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	name := "server"
	r, err := svc.CreateAPIKey(ctx, u.ID, marketplace.APIKeyInput{Name: &name})
	if vectabase.ErrorCode(err) != vectabase.EINTERNAL || r.Key != "" {
		t.Fatalf("CreateAPIKey = key %q, err %v; want INTERNAL and no key", r.Key, err)
	}
	var live, revoked int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE revoked_at IS NULL), count(*) FILTER (WHERE revoked_at IS NOT NULL)
		FROM developer_api_keys WHERE developer_id = $1`, u.ID).Scan(&live, &revoked); err != nil {
		t.Fatal(err)
	}
	if live != 0 || revoked != 1 {
		t.Fatalf("after a failed audit: %d live and %d revoked keys, want 0 and 1", live, revoked)
	}
}

// Setting what a product's purchase licenses is audited; other product
// changes leave no such row.
func TestProductLicenseTargetIsAudited(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.user(t)
	st := e.must(t, 201, "POST", "/api/stores", u, map[string]any{"name": "S", "slug": "target-audit"})["id"].(string)
	sys := e.must(t, 201, "POST", "/api/whitelist/systems", u, map[string]any{"name": "s"})["id"].(string)
	p := e.must(t, 201, "POST", "/api/products", u, map[string]any{"storeId": st, "name": "p", "priceCents": 100, "whitelistSystemId": sys})
	if p["whitelistSystemId"] != sys {
		t.Fatalf("created product = %v, want it linked to the system", p)
	}
	id := p["id"].(string)
	e.must(t, 200, "PATCH", "/api/products/"+id, u, map[string]any{"name": "renamed"})
	e.must(t, 200, "PATCH", "/api/products/"+id, u, map[string]any{"whitelistSystemId": nil})
	var n int
	var last string
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*), max(details::text) FILTER (WHERE details->>'whitelistSystemId' IS NULL)
		FROM audit_logs WHERE action = 'product.license_target' AND resource_id = $1 AND actor_id = $2`, id, u).Scan(&n, &last); err != nil {
		t.Fatal(err)
	}
	if n != 2 || last == "" {
		t.Fatalf("product.license_target rows = %d (cleared: %q), want 2: the link and its removal", n, last)
	}
}
