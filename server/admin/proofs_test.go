package admin_test

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/admin"
	"github.com/vectabase/vectabase/store/pgtest"
	"github.com/vectabase/vectabase/vault/audit"
)

// TestProofRoutes: inclusion proofs (admin, audited) and consistency proofs
// (public) against stored checkpoints, served as JSON that the stand-alone
// checker accepts; bad queries and unknown sizes get the contract's errors.
func TestProofRoutes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	kr := keyringtest.New(t, db.Pool)
	l := audit.New(db, kr, zerolog.Nop(), nil)
	t.Cleanup(l.Close)
	c := audit.NewCheckpointer(db, kr, audit.CheckpointConfig{}, zerolog.Nop())
	write := func(n int) {
		for i := range n {
			if err := l.Record(ctx, vectabase.AuditEvent{ActorType: vectabase.ActorSystem, Action: "test.event",
				Result: vectabase.ResultAllowed, ResourceID: strings.Repeat("r", i+1)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	sign := func() []byte {
		cp, err := c.Sign(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return []byte(cp.Note)
	}
	write(5)
	cp5 := sign()
	write(12)
	cp17 := sign()
	vkey, _, err := c.VerifierKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	rows, err := db.Pool.Query(ctx, `SELECT id FROM audit_logs ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		_ = rows.Scan(&id)
		ids = append(ids, id)
	}

	admitted := true
	requireAdmin := func(c *fiber.Ctx) error {
		if !admitted {
			return vectabase.Errorf(vectabase.EFORBIDDEN, "admin only")
		}
		server.SetActor(c, server.Actor{Type: vectabase.ActorUser, ID: "00000000-0000-0000-0000-0000000000ad"})
		return c.Next()
	}
	srv := server.New(server.Config{}, zerolog.Nop(), prometheus.NewRegistry())
	srv.Mount(admin.ProofRoutes(audit.NewProver(l, c), requireAdmin))
	get := func(path string) (int, []byte) {
		t.Helper()
		resp, err := srv.App().Test(httptest.NewRequest("GET", path, nil), -1)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	check := func(raw, kept []byte) audit.CheckResult {
		t.Helper()
		res, err := audit.CheckProof(raw, kept, vkey)
		if err != nil {
			t.Fatalf("CheckProof(%s) = %v", raw, err)
		}
		return res
	}

	// Inclusion against the checkpoint of 5, of 17, and a new one.
	status, raw := get("/api/audit/proof/inclusion?row=" + itoa(ids[3]) + "&size=5")
	if status != 200 {
		t.Fatalf("inclusion of row %d at 5 = %d %s", ids[3], status, raw)
	}
	if res := check(raw, cp5); res.RowID != ids[3] || res.TreeSize != 5 {
		t.Fatalf("checked %+v, want row %d in 5", res, ids[3])
	}
	for _, i := range []int{0, 4, 11, 16} {
		status, raw = get("/api/audit/proof/inclusion?row=" + itoa(ids[i]) + "&size=17")
		if status != 200 {
			t.Fatalf("inclusion of row %d at 17 = %d %s", ids[i], status, raw)
		}
		if res := check(raw, cp17); res.RowID != ids[i] {
			t.Fatalf("checked %+v, want row %d", res, ids[i])
		}
	}
	write(3)
	status, raw = get("/api/audit/proof/inclusion?row=" + itoa(ids[16]))
	if res := check(raw, nil); status != 200 || res.TreeSize < 17 {
		t.Fatalf("inclusion against a new checkpoint = %d %+v", status, res)
	}
	// Consistency from 5 to 17 and to the newest.
	status, raw = get("/api/audit/proof/consistency?from=5&to=17")
	if res := check(raw, cp5); status != 200 || res.FromSize != 5 || res.TreeSize != 17 {
		t.Fatalf("consistency 5 -> 17 = %d %+v", status, res)
	}
	status, raw = get("/api/audit/proof/consistency?from=5")
	if res := check(raw, cp5); status != 200 || res.TreeSize < 17 {
		t.Fatalf("consistency 5 -> newest = %d %+v", status, res)
	}
	// The consistency proof does not pass for another kept checkpoint.
	if _, err := audit.CheckProof(raw, cp17, vkey); !errors.Is(err, audit.ErrBadProof) {
		t.Fatalf("a 5 -> newest proof checked against the checkpoint of 17: %v, want ErrBadProof", err)
	}

	for _, tc := range []struct {
		path   string
		status int
		code   string
	}{
		{"/api/audit/proof/inclusion", 400, "VALIDATION_FAILED"},
		{"/api/audit/proof/inclusion?row=abc", 400, "VALIDATION_FAILED"},
		{"/api/audit/proof/inclusion?row=-1", 400, "VALIDATION_FAILED"},
		{"/api/audit/proof/inclusion?row=0", 400, "VALIDATION_FAILED"},
		{"/api/audit/proof/inclusion?row=99999999999999999999999", 400, "VALIDATION_FAILED"},
		{"/api/audit/proof/inclusion?row=1&size=x", 400, "VALIDATION_FAILED"},
		{"/api/audit/proof/inclusion?row=" + itoa(ids[0]) + "&size=6", 404, "NOT_FOUND"},
		{"/api/audit/proof/inclusion?row=999999&size=17", 404, "NOT_FOUND"},
		{"/api/audit/proof/inclusion?row=" + itoa(ids[10]) + "&size=5", 409, "CONFLICT"},
		{"/api/audit/proof/consistency", 400, "VALIDATION_FAILED"},
		{"/api/audit/proof/consistency?from=9&to=5", 400, "VALIDATION_FAILED"},
		{"/api/audit/proof/consistency?from=5&to=6", 404, "NOT_FOUND"},
		{"/api/audit/proof/consistency?from=" + url.QueryEscape("1e3"), 400, "VALIDATION_FAILED"},
	} {
		status, raw := get(tc.path)
		if status != tc.status || !strings.Contains(string(raw), `"`+tc.code+`"`) {
			t.Errorf("GET %s = %d %s, want %d %s", tc.path, status, raw, tc.status, tc.code)
		}
	}

	// Inclusion is admin only; consistency is public.
	admitted = false
	if status, raw := get("/api/audit/proof/inclusion?row=" + itoa(ids[0]) + "&size=5"); status != 403 {
		t.Fatalf("inclusion without admin = %d %s, want 403", status, raw)
	}
	if status, _ := get("/api/audit/proof/consistency?from=5&to=17"); status != 200 {
		t.Fatalf("consistency without credentials = %d, want 200", status)
	}
	// Every inclusion request, served or refused by the prover, is audited.
	var proved, refused int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE result = 'success'), count(*) FILTER (WHERE result = 'failure')
		FROM audit_logs WHERE action = 'audit.prove'`).Scan(&proved, &refused); err != nil {
		t.Fatal(err)
	}
	if proved != 6 || refused != 3 {
		t.Errorf("audit.prove rows: %d success, %d failure; want 6 and 3", proved, refused)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
