package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/admin"
	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/server/canarytest"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/backup"
	"github.com/vectabase/vectabase/store/pgtest"
	"github.com/vectabase/vectabase/vault/audit"
)

// The backup routes as serve mounts them: behind the real RequireAdmin,
// audited on the hash-chained trail, with no secret in any response, log,
// metric or audit row. A restore rewinds the database, trail included,
// and appends its own row: the chain still verifies.
func TestBackupRoutesThroughRequireAdmin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := canarytest.New(t)
	log := h.Logger()
	url := pgtest.URL(t)
	db := pgtest.Open(t, url)
	keyFile := filepath.Join(t.TempDir(), "master.key")
	if err := local.GenerateKeyFile(keyFile); err != nil {
		t.Fatal(err)
	}
	kek, err := local.NewFromFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.Open(ctx, store.NewKeysets(db.Pool), kek, keyring.WithRegisterer(h.Registry))
	if err != nil {
		t.Fatal(err)
	}
	al := audit.New(db, kr, log, h.Registry)
	t.Cleanup(al.Close)
	a, err := auth.New(ctx, auth.Config{
		AccessTTL: time.Hour, RefreshTTL: time.Hour, Issuer: "vectabase",
		Argon2:        auth.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32},
		FailureWindow: time.Minute, AttemptWindow: time.Minute,
	}, db, kr, al, log, h.Registry)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := backup.New(backup.Config{Dir: t.TempDir()}, url, kek,
		backup.WithAuditor(al), backup.WithLogger(log), backup.WithRegisterer(h.Registry),
		backup.WithAfterRestore(func(ctx context.Context) error {
			db.Pool.Reset()
			return kr.Reload(ctx)
		}))
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Config{}, log, h.Registry)
	srv.Mount(a.Routes())
	srv.Mount(admin.BackupRoutes(svc, a.RequireAdmin()))
	do := func(method, target string, headers ...string) canarytest.Response {
		t.Helper()
		return h.Do(srv.App(), canarytest.Request(method, target, nil, headers...))
	}
	user := func(role string) (string, []string) {
		t.Helper()
		email, pw := fmt.Sprintf("%s-%d@example.com", role, time.Now().UnixNano()), h.Password()
		r := h.Do(srv.App(), canarytest.Request("POST", "/api/auth/register", fmt.Sprintf(`{"email":%q,"password":%q}`, email, pw), "Content-Type", "application/json"))
		var reg struct{ User struct{ ID string } }
		if r.Status != 201 || json.Unmarshal(r.Body, &reg) != nil {
			t.Fatalf("register = %d %s", r.Status, r.Body)
		}
		if _, err := db.Pool.Exec(ctx, `UPDATE profiles SET role = $1 WHERE id = $2`, role, reg.User.ID); err != nil {
			t.Fatal(err)
		}
		r = h.Do(srv.App(), canarytest.Request("POST", "/api/auth/login", fmt.Sprintf(`{"email":%q,"password":%q}`, email, pw), "Content-Type", "application/json"))
		var login struct{ Token, RefreshToken string }
		if r.Status != 200 || json.Unmarshal(r.Body, &login) != nil {
			t.Fatalf("login = %d %s", r.Status, r.Body)
		}
		h.Add(login.Token)
		h.Add(login.RefreshToken)
		return reg.User.ID, []string{"Authorization", "Bearer " + login.Token}
	}
	adminID, adminAuth := user("admin")
	_, devAuth := user("developer")

	// A secret value in the database: it goes into the (encrypted) backup
	// and must come out nowhere.
	secret := h.Secret()
	ct, err := kr.Encrypt(ctx, keyring.Location{Table: "secret_versions", Column: "value", RowID: "canary@1"}, []byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `WITH s AS (INSERT INTO secrets (name, current_version, created_by, updated_by) VALUES ('canary', 1, 't', 't') RETURNING id)
		INSERT INTO secret_versions (secret_id, version, value, created_by) SELECT id, 1, $1, 't' FROM s`, ct); err != nil {
		t.Fatal(err)
	}

	if r := do("POST", "/api/admin/backups"); r.Status != 401 {
		t.Errorf("create without a token = %d, want 401", r.Status)
	}
	if r := do("POST", "/api/admin/backups", devAuth...); r.Status != 403 {
		t.Errorf("create as a developer = %d, want 403", r.Status)
	}
	r := do("POST", "/api/admin/backups", adminAuth...)
	var b struct{ ID string }
	if r.Status != 201 || json.Unmarshal(r.Body, &b) != nil || b.ID == "" {
		t.Fatalf("create as admin = %d %s, want 201", r.Status, r.Body)
	}
	if r := do("POST", "/api/admin/backups/"+b.ID+"/verify", adminAuth...); r.Status != 200 {
		t.Errorf("verify = %d %s", r.Status, r.Body)
	}
	if _, err := db.Pool.Exec(ctx, `DELETE FROM secrets`); err != nil {
		t.Fatal(err)
	}
	if r := do("POST", "/api/admin/backups/"+b.ID+"/restore", adminAuth...); r.Status != 200 {
		t.Fatalf("restore = %d %s", r.Status, r.Body)
	}

	// The data is back and decrypts with the reloaded keyring.
	var got []byte
	if err := db.Pool.QueryRow(ctx, `SELECT value FROM secret_versions`).Scan(&got); err != nil {
		t.Fatalf("secret after restore: %v", err)
	}
	if pt, err := kr.Decrypt(ctx, keyring.Location{Table: "secret_versions", Column: "value", RowID: "canary@1"}, got); err != nil || string(pt) != secret {
		t.Errorf("Decrypt after restore err = %v (value matches: %t)", err, string(pt) == secret)
	}
	// The admin's session was in the backup: the token still works.
	if r := do("GET", "/api/admin/backups", adminAuth...); r.Status != 200 {
		t.Errorf("list after restore = %d %s", r.Status, r.Body)
	}

	p, err := al.Query(ctx, audit.Filter{Action: "backup.restore", Limit: 5})
	if err != nil || len(p.Items) != 1 || p.Items[0].ActorID != adminID || p.Items[0].Result != "success" || p.Items[0].ResourceID != b.ID {
		t.Errorf("backup.restore audit rows = %+v, %v; want one success by the admin", p.Items, err)
	}
	if v, err := al.Verify(ctx); err != nil || !v.OK {
		t.Errorf("audit chain after restore = %+v, %v; want intact", v, err)
	}
	h.Check(nil)
	h.CheckTables(db, "audit_logs")
}
