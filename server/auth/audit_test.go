package auth_test

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/store/pgtest"
	"github.com/vectabase/vectabase/vault/audit"
)

// The real audit writer is an auth.Auditor.
var _ auth.Auditor = (*audit.Log)(nil)

// With the real hash-chained audit writer: logins, failed logins and
// refresh-token reuse land in audit_logs with who, what and from where, the
// chain verifies, and no row holds a password or token. A closed writer
// makes login fail closed.
func TestAuditTrailWithRealWriter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	kr := keyringtest.New(t, db.Pool)
	al := audit.New(db, kr, zerolog.Nop(), nil)
	svc, err := auth.New(ctx, testConfig(), db, kr, al, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Config{}, zerolog.Nop(), prometheus.NewRegistry())
	srv.Mount(svc.Routes())
	e := &env{t: t, db: db, kr: kr, svc: svc, srv: srv, aud: &recorder{}, clock: &clock{}, logs: &syncBuffer{}}

	const pw = "An0ther-Secret!"
	u := e.register("trail@example.com", pw)
	e.do("POST", "/api/auth/login", map[string]string{"email": "trail@example.com", "password": "wrong-one!"})
	e.do("POST", "/api/auth/login", map[string]string{"email": "ghost@example.com", "password": "wrong-one!"})
	lr := e.login("trail@example.com", pw)
	_, rr := e.refresh(lr.RefreshToken)
	if r, _ := e.refresh(lr.RefreshToken); r.Status != 401 {
		t.Fatalf("reuse = %d, want 401", r.Status)
	}

	rows, err := db.Pool.Query(ctx, `SELECT action, result, actor_type, coalesce(actor_id, ''), coalesce(resource_id, ''),
		coalesce(host(ip_address), ''), coalesce(request_id, ''), details::text FROM audit_logs ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var action, result, actorType, actorID, resourceID, ip, reqID, details string
		if err := rows.Scan(&action, &result, &actorType, &actorID, &resourceID, &ip, &reqID, &details); err != nil {
			t.Fatal(err)
		}
		got = append(got, action+":"+result)
		all := strings.Join([]string{actorID, resourceID, details}, " ")
		for name, secret := range map[string]string{"password": pw, "access token": lr.Token, "refresh token": lr.RefreshToken, "new refresh token": rr.RefreshToken} {
			if strings.Contains(all, secret) {
				t.Errorf("audit row %s holds the %s", action, name)
			}
		}
		if ip == "" || reqID == "" {
			t.Errorf("audit row %s lacks IP (%q) or request id (%q)", action, ip, reqID)
		}
		if action == "auth.login" && (actorType != "user" || actorID != u.ID) {
			t.Errorf("auth.login row actor = %s %s, want user %s", actorType, actorID, u.ID)
		}
	}
	rows.Close()
	want := []string{"auth.register:success", "auth.login_failed:failure", "auth.login_failed:failure", "auth.login:success", "auth.refresh_reuse:denied"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("audit_logs actions = %v, want %v", got, want)
	}
	res, err := al.Verify(ctx)
	if err != nil || !res.OK {
		t.Errorf("audit chain Verify = %+v, %v, want OK", res, err)
	}

	al.Close()
	r := e.do("POST", "/api/auth/login", map[string]string{"email": "trail@example.com", "password": pw})
	if r.Status != 500 || r.code() != "INTERNAL" {
		t.Fatalf("login with the audit writer closed = %d %s, want 500 INTERNAL (fail closed)", r.Status, r.Body)
	}
}
