package secrets_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/vectabase/vectabase"
)

// A read's reason (query or X-Access-Reason header) is kept in its audit
// row; a reason too long or with control characters is refused with 400,
// reveals nothing, and the refusal is audited.
func TestSecretReadReasonGoesToTheAuditRow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, admin := e.user("admin", e.h.Password())
	secret := e.h.Secret()
	if r := e.do("PUT", "/api/secrets/db/password", map[string]any{"value": secret}, admin...); r.Status != 201 {
		t.Fatalf("PUT = %d %s", r.Status, r.Body)
	}
	const why = "incident 42: rotate the replica's credentials"
	if r := e.reveal("GET", "/api/secrets/db%2Fpassword?reason="+url.QueryEscape(why), secret, admin...); r.Status != 200 {
		t.Fatalf("GET with reason = %d %s", r.Status, r.Body)
	}
	if ev := e.lastAudit(); ev.Action != "secret.read" || ev.Result != vectabase.ResultAllowed || ev.Details["reason"] != why {
		t.Errorf("audit row of the read = %+v, want secret.read allowed with reason %q", ev, why)
	}
	hdr := append(append([]string{}, admin...), "X-Access-Reason", "on-call check")
	if r := e.reveal("GET", "/api/secrets/db/password", secret, hdr...); r.Status != 200 {
		t.Fatalf("GET with the reason header = %d %s", r.Status, r.Body)
	}
	if ev := e.lastAudit(); ev.Details["reason"] != "on-call check" {
		t.Errorf("audit row of the header read = %+v", ev)
	}
	for _, bad := range []string{strings.Repeat("x", 201), "line\nbreak", "nul\x00", "bell\x07"} {
		r := e.do("GET", "/api/secrets/db%2Fpassword?reason="+url.QueryEscape(bad), nil, admin...)
		if r.Status != 400 || errCode(r) != "VALIDATION_FAILED" || strings.Contains(string(r.Body), secret) {
			t.Errorf("reason %q: %d %s, want 400 VALIDATION_FAILED without the value", bad, r.Status, r.Body)
		}
		if ev := e.lastAudit(); ev.Action != "secret.read" || ev.Result != vectabase.ResultFailure || ev.Details["reason"] != nil {
			t.Errorf("reason %q: audit row %+v, want a failed read without the refused reason", bad, ev)
		}
	}
}
