package secrets_test

import (
	"context"
	"testing"
)

// The vault takes the role the authentication read for this very request:
// a demotion or a promotion decides the next read, with the access token
// (verified and cached) unchanged.
func TestRoleChangeDecidesTheNextRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	id, hdr := e.user("admin", e.h.Password())
	if r := e.do("PUT", "/api/secrets/role_probe", map[string]string{"value": "v-123"}, hdr...); r.Status != 201 {
		t.Fatalf("PUT as admin = %d %s, want 201", r.Status, r.Body)
	}
	for _, step := range []struct {
		role string
		want int
	}{{"admin", 200}, {"user", 403}, {"admin", 200}, {"user", 403}} {
		if _, err := e.db.Pool.Exec(ctx, `UPDATE profiles SET role = $1 WHERE id = $2`, step.role, id); err != nil {
			t.Fatal(err)
		}
		if r := e.reveal("GET", "/api/secrets/role_probe", "v-123", hdr...); r.Status != step.want {
			t.Errorf("GET as %s = %d %s, want %d", step.role, r.Status, r.Body, step.want)
		}
	}
}
