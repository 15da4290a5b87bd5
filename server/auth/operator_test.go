package auth_test

import (
	"context"
	"errors"
	"testing"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server/auth"
)

func errorCode(err error) string {
	var ve *vectabase.Error
	if errors.As(err, &ve) {
		return ve.Code
	}
	return ""
}

// The operator's user administration: an admin that signs in, refusals by
// code, a role change for a user without a profile row (as an import may
// leave), audit events without the password, and a change whose audit row
// cannot be written reported as a failure.
func TestOperatorCreateAdminAndSetRole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, testConfig())
	aud := &recorder{}
	op := auth.NewOperator(e.db, aud, fastArgon2)

	u, err := op.CreateAdmin(ctx, " Boss@Example.com ", "boss password")
	if err != nil || u.Role != "admin" || *u.Email != "boss@example.com" {
		t.Fatalf("CreateAdmin = %+v, %v; want an admin boss@example.com", u, err)
	}
	if r := e.do("POST", "/api/auth/login", map[string]string{"email": "boss@example.com", "password": "boss password"}); r.Status != 200 {
		t.Fatalf("login as the new admin = %d %s", r.Status, r.Body)
	}
	for _, c := range []struct{ email, password, code string }{
		{"boss@example.com", "another password", vectabase.ECONFLICT},
		{"BOSS@example.com", "another password", vectabase.ECONFLICT},
		{"not an email", "long enough", vectabase.EVALIDATION},
		{"short@example.com", "short", vectabase.EVALIDATION},
	} {
		if _, err := op.CreateAdmin(ctx, c.email, c.password); errorCode(err) != c.code {
			t.Errorf("CreateAdmin(%q) err = %v, want %s", c.email, err, c.code)
		}
	}
	if _, _, err := op.SetRole(ctx, "boss@example.com", "root"); errorCode(err) != vectabase.EVALIDATION {
		t.Errorf("SetRole(root) err = %v, want %s", err, vectabase.EVALIDATION)
	}
	if _, _, err := op.SetRole(ctx, "nobody@example.com", "admin"); errorCode(err) != vectabase.ENOTFOUND {
		t.Errorf("SetRole(unknown) err = %v, want %s", err, vectabase.ENOTFOUND)
	}

	// A user with no profile row reads as "user" and gets one.
	if _, err := e.db.Pool.Exec(ctx, `INSERT INTO users (email) VALUES ('imported@example.com')`); err != nil {
		t.Fatal(err)
	}
	u, prev, err := op.SetRole(ctx, "Imported@example.com", "developer")
	if err != nil || prev != "user" || u.Role != "developer" {
		t.Fatalf("SetRole(imported) = %+v, %q, %v; want developer, was user", u, prev, err)
	}
	if got, err := e.db.UserRole(ctx, u.ID); err != nil || got != "developer" {
		t.Errorf("UserRole after SetRole = %q, %v; want developer", got, err)
	}

	want := []string{"user.create_admin:success", "user.set_role:success"}
	if got := aud.actions(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("audit = %v, want %v", got, want)
	}
	for _, ev := range aud.events {
		if ev.ActorType != vectabase.ActorLocalOperator || ev.ResourceType != "user" || ev.ResourceID == "" {
			t.Errorf("audit event %+v, want local-operator on a user", ev)
		}
		for k, v := range ev.Details {
			if s, _ := v.(string); s == "boss password" {
				t.Errorf("audit details %s hold the password", k)
			}
		}
	}

	aud.fail = true
	if _, _, err := op.SetRole(ctx, "boss@example.com", "user"); err == nil {
		t.Error("SetRole with the audit trail down err = nil, want an error")
	}
}
