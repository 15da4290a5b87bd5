package vault_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/policies"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
	"github.com/vectabase/vectabase/vault"
	"github.com/vectabase/vectabase/vault/audit"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

type env struct {
	db    *store.DB
	kr    *keyring.Keyring
	audit *audit.Log
	svc   *vault.Service
	reg   *prometheus.Registry
	users map[string]vault.Caller // by role
}

func newEnv(t *testing.T, cfg vault.Config) *env {
	t.Helper()
	db := pgtest.New(t)
	kr := keyringtest.New(t, db.Pool)
	reg := prometheus.NewRegistry()
	al := audit.New(db, kr, zerolog.Nop(), reg)
	t.Cleanup(al.Close)
	pol, err := policies.AccessPolicy()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{db: db, kr: kr, audit: al, svc: vault.New(db, kr, al, pol, cfg, reg), reg: reg, users: map[string]vault.Caller{}}
	for _, role := range []string{"admin", "developer", "user"} {
		u, err := db.CreateUser(context.Background(), store.NewUser{Email: role + "@example.com", Role: role})
		if err != nil {
			t.Fatal(err)
		}
		e.users[role] = vault.Caller{Type: vectabase.ActorUser, ID: u.ID, IP: "192.0.2.7", RequestID: "r-" + role}
	}
	return e
}

func intp(i int) *int { return &i }

func code(err error) string {
	if err == nil {
		return ""
	}
	return vectabase.ErrorCode(err)
}

func TestPutGetVersionsAndKeepNewest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, vault.Config{MaxVersions: 3})
	op := vault.LocalOperator
	for i := 1; i <= 5; i++ {
		m, err := e.svc.Put(ctx, op, "app/db_password", []byte(fmt.Sprintf("v%d", i)), nil)
		if err != nil || m.Version != i {
			t.Fatalf("Put #%d = %+v, %v; want version %d", i, m, err, i)
		}
	}
	v, err := e.svc.Get(ctx, op, "app/db_password", 0)
	if err != nil || string(v.Value) != "v5" || v.Version != 5 {
		t.Fatalf("Get = %v %q, %v; want v5", v, v.Value, err)
	}
	if v, err := e.svc.Get(ctx, op, "app/db_password", 3); err != nil || string(v.Value) != "v3" {
		t.Fatalf("Get(version 3) = %q, %v; want v3", v.Value, err)
	}
	if _, err := e.svc.Get(ctx, op, "app/db_password", 2); code(err) != vectabase.ENOTFOUND {
		t.Fatalf("Get(version 2, pruned) err = %v, want NOT_FOUND", err)
	}
	vs, err := e.svc.Versions(ctx, op, "app/db_password")
	if err != nil || len(vs) != 3 || vs[0].Version != 5 || vs[2].Version != 3 {
		t.Fatalf("Versions = %+v, %v; want 5,4,3", vs, err)
	}
	// Check-and-set.
	if _, err := e.svc.Put(ctx, op, "app/db_password", []byte("x"), intp(4)); code(err) != vectabase.ECONFLICT {
		t.Fatalf("Put(expected 4, current 5) err = %v, want CONFLICT", err)
	}
	if m, err := e.svc.Put(ctx, op, "app/db_password", []byte("v6"), intp(5)); err != nil || m.Version != 6 {
		t.Fatalf("Put(expected 5) = %+v, %v; want version 6", m, err)
	}
	if _, err := e.svc.Put(ctx, op, "new", []byte("x"), intp(1)); code(err) != vectabase.ECONFLICT {
		t.Fatalf("Put(new, expected 1) err = %v, want CONFLICT", err)
	}
	if _, err := e.svc.Put(ctx, op, "new", []byte("x"), intp(0)); err != nil {
		t.Fatalf("Put(new, expected 0) err = %v, want nil", err)
	}
	// The value is stored only as ciphertext bound to name@version.
	var ct []byte
	if err := e.db.Pool.QueryRow(ctx, `SELECT v.value FROM secret_versions v JOIN secrets s ON s.id = v.secret_id
		WHERE s.name = 'app/db_password' AND v.version = 6`).Scan(&ct); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ct, []byte("v6")) {
		t.Fatal("secret value stored in the clear")
	}
	if _, err := e.kr.Decrypt(ctx, store.SecretValueLocation("app/db_password", 5), ct); err == nil {
		t.Fatal("version 6's ciphertext decrypted as version 5")
	}
	// List shows metadata only; delete removes everything.
	page, err := e.svc.List(ctx, op, 0, "")
	if err != nil || len(page.Items) != 2 || page.Items[0].Name != "app/db_password" || page.Items[0].Version != 6 {
		t.Fatalf("List = %+v, %v", page, err)
	}
	if err := e.svc.Delete(ctx, op, "app/db_password"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Get(ctx, op, "app/db_password", 0); code(err) != vectabase.ENOTFOUND {
		t.Fatalf("Get after Delete err = %v, want NOT_FOUND", err)
	}
	if err := e.svc.Delete(ctx, op, "app/db_password"); code(err) != vectabase.ENOTFOUND {
		t.Fatalf("Delete twice err = %v, want NOT_FOUND", err)
	}
	if res, err := e.audit.Verify(ctx); err != nil || !res.OK {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
}

func TestPoliciesPerRole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, vault.Config{})
	admin, dev, user := e.users["admin"], e.users["developer"], e.users["user"]
	own := "dev/" + dev.ID + "/token"
	for _, tc := range []struct {
		who  vault.Caller
		name string
		want string
	}{
		{admin, "stripe_secret_key", ""},
		{dev, own, ""},
		{dev, "stripe_secret_key", vectabase.EFORBIDDEN},
		{dev, "dev/" + admin.ID + "/x", vectabase.EFORBIDDEN},
		{user, "dev/" + user.ID + "/x", vectabase.EFORBIDDEN},
		{vault.Caller{Type: vectabase.ActorAnonymous}, "x", vectabase.EFORBIDDEN},
		{vault.Caller{Type: vectabase.ActorUser, ID: "not-a-uuid"}, "x", vectabase.EFORBIDDEN},
	} {
		if _, err := e.svc.Put(ctx, tc.who, tc.name, []byte("v"), nil); code(err) != tc.want {
			t.Errorf("Put(%s as %s) err = %v, want %q", tc.name, tc.who.ID, err, tc.want)
		}
	}
	// A developer lists only their namespace; a plain user may not list.
	page, err := e.svc.List(ctx, dev, 0, "")
	if err != nil || len(page.Items) != 1 || page.Items[0].Name != own {
		t.Fatalf("developer List = %+v, %v; want only %s", page, err, own)
	}
	if _, err := e.svc.List(ctx, user, 0, ""); code(err) != vectabase.EFORBIDDEN {
		t.Fatalf("user List err = %v, want FORBIDDEN", err)
	}
	// The server reads its credentials; the environment wins.
	if got, err := e.svc.Credential(ctx, "from-env", "stripe_secret_key"); err != nil || got != "from-env" {
		t.Fatalf("Credential(env set) = %q, %v", got, err)
	}
	if got, err := e.svc.Credential(ctx, "", "stripe_secret_key"); err != nil || got != "v" {
		t.Fatalf("Credential(from vault) = %q, %v", got, err)
	}
	if got, err := e.svc.Credential(ctx, "", "discord_bot_token"); err != nil || got != "" {
		t.Fatalf("Credential(missing) = %q, %v; want empty", got, err)
	}
	p, err := e.audit.Query(ctx, audit.Filter{ActorType: vectabase.ActorSystem})
	if err != nil || len(p.Items) != 2 {
		t.Fatalf("system reads audited: %+v, %v; want 2 rows", p, err)
	}
	if got := testutil.ToFloat64(counterVec(t, e.reg, "write", "denied")); got != 5 {
		t.Errorf("secret_access_total{write,denied} = %v, want 5", got)
	}
}

// A user owns only the secrets they write in their own namespace: a
// platform secret an admin stores belongs to no one, so it is not deleted
// with that admin's account.
func TestOnlyOwnNamespaceSecretsAreOwned(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, vault.Config{})
	admin, dev := e.users["admin"], e.users["developer"]
	own := "dev/" + dev.ID + "/token"
	for _, w := range []struct {
		who  vault.Caller
		name string
	}{{admin, "stripe_secret_key"}, {admin, "dev/" + admin.ID + "/mine"}, {admin, "dev/" + dev.ID + "/for-dev"}, {dev, own}} {
		if _, err := e.svc.Put(ctx, w.who, w.name, []byte("v"), nil); err != nil {
			t.Fatalf("Put(%s): %v", w.name, err)
		}
	}
	want := map[string]string{
		"stripe_secret_key":         "",
		"dev/" + admin.ID + "/mine": admin.ID,
		// Written by the admin into the developer's namespace: it is not
		// the developer's (they did not write it), nor the admin's.
		"dev/" + dev.ID + "/for-dev": "",
		own:                          dev.ID,
	}
	rows, err := e.db.Pool.Query(ctx, `SELECT name, coalesce(owner_id::text, '') FROM secrets`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for rows.Next() {
		var name, owner string
		if err := rows.Scan(&name, &owner); err != nil {
			t.Fatal(err)
		}
		got[name] = owner
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("owner of %s = %q, want %q", name, got[name], w)
		}
	}
}

func counterVec(t *testing.T, reg *prometheus.Registry, action, result string) prometheus.Counter {
	t.Helper()
	mfs, _ := reg.Gather()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	for _, mf := range mfs {
		if mf.GetName() != "vectabase_secret_access_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["action"] == action && labels["result"] == result {
				c.Add(m.GetCounter().GetValue())
			}
		}
	}
	return c
}

func TestConcurrentWritersGetDistinctVersions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, vault.Config{MaxVersions: 100})
	var wg sync.WaitGroup
	versions := make(chan int, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := e.svc.Put(ctx, vault.LocalOperator, "shared", []byte(fmt.Sprint(i)), nil)
			if err != nil {
				t.Error(err)
				return
			}
			versions <- m.Version
		}()
	}
	wg.Wait()
	close(versions)
	seen := map[int]bool{}
	for v := range versions {
		if seen[v] {
			t.Fatalf("version %d given twice", v)
		}
		seen[v] = true
	}
	if len(seen) != 20 {
		t.Fatalf("got %d versions, want 20", len(seen))
	}
}

// TestFailClosedWhenAuditUnwritable: with audit_logs refusing inserts,
// reads return UNAVAILABLE and no value, and writes and deletes change
// nothing.
func TestFailClosedWhenAuditUnwritable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, vault.Config{})
	op := vault.LocalOperator
	if _, err := e.svc.Put(ctx, op, "k", []byte("hunter2"), nil); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		`CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'read-only'; END $$`,
		`CREATE TRIGGER refuse BEFORE INSERT ON audit_logs FOR EACH STATEMENT EXECUTE FUNCTION refuse()`,
	} {
		if _, err := e.db.Pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	v, err := e.svc.Get(ctx, op, "k", 0)
	if code(err) != vectabase.EUNAVAILABLE || v.Value != nil || v.Version != 0 {
		t.Fatalf("Get with unwritable audit = %v %q, %v; want UNAVAILABLE and nothing", v, v.Value, err)
	}
	if _, err := e.svc.Put(ctx, op, "k", []byte("new"), nil); code(err) != vectabase.EUNAVAILABLE {
		t.Fatalf("Put err = %v, want UNAVAILABLE", err)
	}
	if err := e.svc.Delete(ctx, op, "k"); code(err) != vectabase.EUNAVAILABLE {
		t.Fatalf("Delete err = %v, want UNAVAILABLE", err)
	}
	if _, err := e.svc.Get(ctx, e.users["user"], "k", 0); code(err) != vectabase.EUNAVAILABLE {
		t.Fatalf("refused Get err = %v, want UNAVAILABLE (a refusal must be audited too)", err)
	}
	if _, err := e.db.Pool.Exec(ctx, `DROP TRIGGER refuse ON audit_logs`); err != nil {
		t.Fatal(err)
	}
	v, err = e.svc.Get(ctx, op, "k", 0)
	if err != nil || string(v.Value) != "hunter2" || v.Version != 1 {
		t.Fatalf("after the failed write and delete: Get = %q v%d, %v; want hunter2 v1", v.Value, v.Version, err)
	}
	if got := testutil.ToFloat64(counterVec(t, e.reg, "read", "audit_failed")); got != 2 {
		t.Errorf("secret_access_total{read,audit_failed} = %v, want 2", got)
	}
}

// auditRow is what Property 15 reads back.
type auditRow struct {
	actorType, actorID, action, resourceID, result string
	at                                             time.Time
}

func rowsAfter(t *rapid.T, db *store.DB, id int64) []auditRow {
	rows, err := db.Pool.Query(context.Background(), `SELECT actor_type, COALESCE(actor_id, ''), action,
		COALESCE(resource_id, ''), result, occurred_at FROM audit_logs WHERE id > $1 ORDER BY id`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []auditRow
	for rows.Next() {
		var r auditRow
		if err := rows.Scan(&r.actorType, &r.actorID, &r.action, &r.resourceID, &r.result, &r.at); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// TestProperty15_EveryAccessHasOneAuditRow claims: for any sequence of
// secret operations by random callers (admin, developer, plain user,
// unknown user, local operator), each call, allowed or refused, leaves
// exactly one audit row naming that caller and action, stamped within the
// call, whose result is denied exactly when the call was FORBIDDEN.
func TestProperty15_EveryAccessHasOneAuditRow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, vault.Config{MaxVersions: 3})
	callers := []vault.Caller{e.users["admin"], e.users["developer"], e.users["user"], vault.LocalOperator,
		{Type: vectabase.ActorUser, ID: "00000000-0000-4000-8000-000000000000"}}
	dev := e.users["developer"].ID
	names := []string{"app/key", "stripe_secret_key", "dev/" + dev + "/a", "dev/" + dev + "/b/c", "dev/other/x", "bad//name", "", "x"}
	var lastID int64
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(1, 8).Draw(rt, "ops")
		for range n {
			c := rapid.SampledFrom(callers).Draw(rt, "caller")
			c.IP = rapid.SampledFrom([]string{"192.0.2.1", "2001:db8::1", "", "not-an-ip"}).Draw(rt, "ip")
			name := rapid.SampledFrom(names).Draw(rt, "name")
			op := rapid.SampledFrom([]string{"get", "put", "cas", "delete", "list", "versions"}).Draw(rt, "op")
			before := time.Now().Add(-time.Millisecond)
			var err error
			action := ""
			switch op {
			case "get":
				action = vault.ActionRead
				var v vault.Value
				v, err = e.svc.Get(ctx, c, name, rapid.IntRange(0, 4).Draw(rt, "version"))
				if err != nil && v.Value != nil {
					rt.Fatalf("Get failed (%v) but returned a value", err)
				}
			case "put":
				action = vault.ActionWrite
				_, err = e.svc.Put(ctx, c, name, []byte(rapid.String().Draw(rt, "value")), nil)
			case "cas":
				action = vault.ActionWrite
				_, err = e.svc.Put(ctx, c, name, []byte("cas"), intp(rapid.IntRange(0, 5).Draw(rt, "expected")))
			case "delete":
				action = vault.ActionDelete
				err = e.svc.Delete(ctx, c, name)
			case "list":
				action = vault.ActionList
				_, err = e.svc.List(ctx, c, rapid.IntRange(0, 3).Draw(rt, "limit"), "")
			case "versions":
				action = vault.ActionVersions
				_, err = e.svc.Versions(ctx, c, name)
			}
			after := time.Now().Add(time.Millisecond)
			rows := rowsAfter(rt, e.db, lastID)
			if len(rows) != 1 {
				rt.Fatalf("%s %q by %s:%s (err %v) left %d audit rows, want 1", op, name, c.Type, c.ID, err, len(rows))
			}
			r := rows[0]
			if err := e.db.Pool.QueryRow(ctx, `SELECT max(id) FROM audit_logs`).Scan(&lastID); err != nil {
				rt.Fatal(err)
			}
			if r.actorType != c.Type || r.actorID != c.ID || r.action != action {
				rt.Fatalf("audit row %+v, want actor %s:%s action %s", r, c.Type, c.ID, action)
			}
			if op != "list" && r.resourceID != name {
				rt.Fatalf("audit row resource %q, want %q", r.resourceID, name)
			}
			if r.at.Before(before) || r.at.After(after) {
				rt.Fatalf("audit row time %v outside the call [%v, %v]", r.at, before, after)
			}
			if denied := code(err) == vectabase.EFORBIDDEN; denied != (r.result == vectabase.ResultDenied) {
				rt.Fatalf("call err %v but audit result %q", err, r.result)
			}
			if (err == nil) != (r.result == vectabase.ResultAllowed) {
				rt.Fatalf("call err %v but audit result %q", err, r.result)
			}
		}
	})
	res, err := e.audit.Verify(ctx)
	if err != nil || !res.OK {
		t.Fatalf("Verify after the property = %+v, %v", res, err)
	}
}
